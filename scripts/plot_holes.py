#!/usr/bin/env python3
"""The gap experiment's table and plot, from `cascade attack holes` results (a CSV).

For every hole length h and budget B (fills verified per hole):
  verified recovery  the fraction of hole tokens in holes whose fill matched the row after
                     the hole (the attack found the exact fill within B tries)
  guess accuracy     the fraction of hole tokens the attacker's guess has right, matched or not
                     (its nearest fill: this includes what the language model's prior guesses
                     right without any verification, e.g. "the" or a comma)
  seconds            mean wall time per hole up to that budget (enumeration + verification)
and, per budget, the safe hole length: the smallest h0 such that verified recovery is below 5%
for every measured h ≥ h0. `cascade plan --budget B` recommends ρ = h0 + 1 from the same CSV.

    .venv/bin/python3 scripts/plot_holes.py docs/security/holes.csv -o docs/security
writes <out>/holes.md and <out>/holes.png.
"""
import argparse
import collections
import csv
import os


def load(path):
    seen, rows = set(), []
    with open(path) as f:
        for r in csv.DictReader(f):
            key = (r["prompt"], r["len"], r["budget"])
            if key in seen:  # a rerun's duplicate: the first one counts
                continue
            seen.add(key)
            rows.append(r)
    return rows


def summarise(rows):
    cells = collections.defaultdict(lambda: {"holes": 0, "tokens": 0, "verified": 0, "guessed": 0, "seconds": 0.0})
    for r in rows:
        c = cells[(int(r["len"]), int(r["budget"]))]
        h = int(r["len"])
        c["holes"] += 1
        c["tokens"] += h
        c["verified"] += h if r["matched"] == "1" else 0
        c["guessed"] += int(r["recovered"])
        c["seconds"] += float(r["seconds"])
    return cells


def safe_length(cells, budget, threshold=0.05):
    lengths = sorted(h for (h, b) in cells if b == budget)
    safe = None
    for h in reversed(lengths):
        c = cells[(h, budget)]
        if c["verified"] / c["tokens"] >= threshold:
            break
        safe = h
    return safe, lengths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("-o", "--out", default=".")
    args = ap.parse_args()
    rows = load(args.csv)
    cells = summarise(rows)
    budgets = sorted({b for (_, b) in cells})
    lengths = sorted({h for (h, _) in cells})
    prompts = sorted({int(r["prompt"]) for r in rows})
    beam = sorted({r["beam"] for r in rows})
    md = [f"Gap experiment: {len(rows) // max(1, len(budgets))} holes over {len(prompts)} eval prompts "
          f"(prompts {', '.join(map(str, prompts))}), beam {', '.join(beam)}, verified on hidden@1.", "",
          "| hole length | holes | " + " | ".join(f"verified B={b} | guess B={b} | s/hole B={b}" for b in budgets) + " |",
          "|---|---|" + "---|---|---|" * len(budgets)]
    for h in lengths:
        line = f"| {h} | {cells[(h, budgets[0])]['holes']} |"
        for b in budgets:
            c = cells[(h, b)]
            line += (f" {100 * c['verified'] / c['tokens']:.0f}% | {100 * c['guessed'] / c['tokens']:.0f}% |"
                     f" {c['seconds'] / c['holes']:.1f} |")
        md.append(line)
    md += ["", "| budget | safe hole length h0 (verified recovery < 5% for every h ≥ h0) | ρ = h0 + 1 |", "|---|---|---|"]
    for b in budgets:
        h0, _ = safe_length(cells, b)
        md.append(f"| {b} | {h0 if h0 else 'none measured'} | {h0 + 1 if h0 else '-'} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "holes.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plot; run with .venv/bin/python3)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for b in budgets:
        ax1.plot(lengths, [100 * cells[(h, b)]["verified"] / cells[(h, b)]["tokens"] for h in lengths], "o-",
                 label=f"verified, B = {b}")
        ax1.plot(lengths, [100 * cells[(h, b)]["guessed"] / cells[(h, b)]["tokens"] for h in lengths], "x:",
                 label=f"guess, B = {b}")
        ax2.plot(lengths, [cells[(h, b)]["seconds"] / cells[(h, b)]["holes"] for h in lengths], "o-", label=f"B = {b}")
    ax1.axhline(5, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("hole length (positions)")
    ax1.set_ylabel("hole tokens recovered (%)")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("hole length (positions)")
    ax2.set_ylabel("wall seconds per hole")
    ax2.legend(fontsize=7)
    fig.suptitle("Filling a hole with LM-ordered fills verified against the next row (SmolLM2-135M)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "holes.png"), dpi=120)
    print(f"wrote {os.path.join(args.out, 'holes.png')}")


if __name__ == "__main__":
    main()
