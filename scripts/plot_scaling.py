#!/usr/bin/env python3
"""Runtime-vs-node-count curves from a sweep's traces (jobs/sweep.sbatch, cascade run --trace).

For every trace: its configuration from /meta (h5py), and `cascade simulate --json` under each
network profile (one device and one NIC per party). Traces are grouped by (model, prompt
length); per group it writes

  <out>/scaling-<model>-N<n>.png   runtime vs α: one panel per network, the simulated run's
                                   critical path stacked by what it is made of (GEMMs,
                                   attention, data movement, network, receiving hosts), and a
                                   panel of every network's runtime vs α
  <out>/bytes-<model>-N<n>.png     bytes vs α: counted by the senders, by the receivers, and
                                   predicted by the communication model
  <out>/scaling.csv, scaling.md    the numbers behind the plots (one row per trace and network)

and prints, per group and network, runtime(α = 8) / runtime(α = 2) (the paper's claim is that
runtime grows sublinearly with the number of nodes).

    .venv/bin/python3 scripts/plot_scaling.py results/<job>/*.h5 -o docs/ \\
        [--nets nvlink,ib-200g,lan-10g,lan-1g] [--device cpu-thread] [--receiver custom:115,3]

Defaults: `--device cpu-thread` (every compute span takes its CPU time: the sweeps here run
1 + α + β² ranks on 2 cores, so wall time inside a span counts other ranks' time slices);
`--receiver custom:115,3` (the wake-up and receive rate of our transport's receiving host,
measured on an uncontended run; see BENCHMARKS.md "Simulator validation").
"""
import argparse
import collections
import csv
import json
import os
import subprocess
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the critical path is made of: span kinds (trace.h) and the simulator's network terms.
CATEGORIES = [
    ("GEMMs (pre-pass, MLP, LM head)", ("prepass", "postpass", "lm_head"), "#4c72b0"),
    ("attention + merge", ("attention", "merge"), "#dd8452"),
    ("data movement (embed, pack, send, other)", ("embed", "pack", "send", "other"), "#8c8c8c"),
    ("network (latency, transfer, queueing)", ("@network",), "#55a868"),
    ("receiving hosts", ("@receive",), "#c44e52"),
]


def simulate(cascade, path, nets, device, receiver):
    cmd = [cascade, "simulate", path, "--net", ",".join(nets), "--device", device, "--receiver", receiver,
           "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"plot_scaling: {' '.join(cmd)} failed:\n{p.stderr}")
    return {r["net"]["name"]: r for r in json.loads(p.stdout)["results"]}


def breakdown(result):
    cp = result["critical_path"]
    kinds = cp["kinds_s"]
    out = []
    for _, members, _ in CATEGORIES:
        v = 0.0
        for m in members:
            if m == "@network":
                v += cp["network_s"]
            elif m == "@receive":
                v += cp["receive_s"]
            else:
                v += kinds.get(m, 0.0)
        out.append(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("traces", nargs="+", help="trace files (.h5) of a sweep")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    ap.add_argument("--nets", default="nvlink,ib-200g,lan-10g,lan-1g", help="network profiles")
    ap.add_argument("--device", default="cpu-thread", help="device profile (cascade simulate --device)")
    ap.add_argument("--receiver", default="custom:115,3", help="receiver profile (cascade simulate --receiver)")
    ap.add_argument("--cascade", default=os.path.join(ROOT, "build", "cascade"))
    ap.add_argument("--title", default="", help="added to the plots' titles")
    a = ap.parse_args()
    nets = a.nets.split(",")
    os.makedirs(a.out, exist_ok=True)

    rows = []
    groups = collections.defaultdict(list)
    for path in a.traces:
        with h5py.File(path, "r") as f:
            m = f["meta"].attrs
            if int(m["complete"]) != 1:
                print(f"plot_scaling: {path}: the run did not finish; left out", file=sys.stderr)
                continue
            cfg = dict(path=path, model=str(m["model_name"]), source=str(m["model_source"]),
                       n_prompt=int(m["n_prompt"]), n_generated=int(m["n_generated"]),
                       alpha=int(m["alpha"]), beta=int(m["beta"]), c=int(m["c"]),
                       ranks=int(m["world_size"]), layers=int(m["model_shape"][0]),
                       bytes_sent=int(m["bytes_sent"]), bytes_received=int(m["bytes_received"]),
                       bytes_predicted=int(m["bytes_predicted"]),
                       measured_wall=max(float(f["ranks"][r].attrs["wall_s"]) for r in f["ranks"]))
        cfg["sim"] = simulate(a.cascade, path, nets, a.device, a.receiver)
        key = (cfg["source"].split(" ")[0], cfg["n_prompt"])
        groups[key].append(cfg)
        for net in nets:
            r = cfg["sim"][net]
            shown = cfg["source"] if cfg["source"].startswith("synthetic:") else os.path.basename(cfg["source"])
            rows.append(dict(model=shown, n_prompt=cfg["n_prompt"], n_generated=cfg["n_generated"],
                             layers=cfg["layers"], alpha=cfg["alpha"], beta=cfg["beta"], c=cfg["c"],
                             ranks=cfg["ranks"], net=net, device=a.device,
                             predicted_s=r["predicted"]["wall_s"], prefill_s=r["predicted"]["prefill_s"],
                             measured_wall_s=cfg["measured_wall"], bytes_sent=cfg["bytes_sent"],
                             bytes_received=cfg["bytes_received"], bytes_predicted=cfg["bytes_predicted"],
                             **{name.split(" ")[0]: v for (name, _, _), v in zip(CATEGORIES, breakdown(r))}))

    if not rows:
        sys.exit("plot_scaling: no complete traces")
    with open(os.path.join(a.out, "scaling.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    md = ["| model | N | α | β | ranks | network | predicted s | measured s (here) | bytes sent | = predicted |",
          "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['n_prompt']} | {r['alpha']} | {r['beta']} | {r['ranks']} | {r['net']} | "
                  f"{r['predicted_s']:.4f} | {r['measured_wall_s']:.4f} | {r['bytes_sent']} | "
                  f"{'yes' if r['bytes_sent'] == r['bytes_predicted'] == r['bytes_received'] else 'NO'} |")
    ratios = []
    for (model, n), cfgs in sorted(groups.items()):
        cfgs.sort(key=lambda c: c["alpha"])
        alphas = [c["alpha"] for c in cfgs]
        name = os.path.basename(model.replace("synthetic:", "synthetic-")).replace(".gguf", "")
        layers = cfgs[0]["layers"]
        shown = f"{model} ({layers} layers)" if model.startswith("synthetic:") else os.path.basename(model)
        title = f"{shown}, N = {n}{', ' + a.title if a.title else ''}; simulated, device {a.device}, " \
                f"receiver {a.receiver}"
        ticks = [f"{c['alpha']}\nβ={c['beta']}\n{c['ranks']} ranks" for c in cfgs]
        # Runtime: one panel per network (stacked critical path), one with every network's line.
        fig, axes = plt.subplots(1, len(nets) + 1, figsize=(4.2 * (len(nets) + 1), 4.2))
        for ax, net in zip(axes, nets):
            bottom = [0.0] * len(cfgs)
            for i, (label, _, color) in enumerate(CATEGORIES):
                vals = [breakdown(c["sim"][net])[i] for c in cfgs]
                ax.bar(ticks, vals, bottom=bottom, color=color, label=label if ax is axes[0] else None)
                bottom = [b + v for b, v in zip(bottom, vals)]
            ax.set_title(net)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel("α (CompNodes)")
            ax.set_ylabel("simulated runtime, s")
        fig.legend(loc="lower center", ncol=len(CATEGORIES), fontsize=8, frameon=False)
        ax = axes[-1]
        for net in nets:
            ax.plot(alphas, [c["sim"][net]["predicted"]["wall_s"] for c in cfgs], "o-", label=net)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(alphas)
        ax.set_xticklabels([str(x) for x in alphas])
        ax.set_xlabel("α (CompNodes)")
        ax.set_title("runtime vs α")
        ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fig.savefig(os.path.join(a.out, f"scaling-{name}-N{n}.png"), dpi=110)
        plt.close(fig)
        # Bytes: measured at both ends vs the model.
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ax.plot(alphas, [c["bytes_predicted"] / 1e6 for c in cfgs], "k-", label="communication model")
        ax.plot(alphas, [c["bytes_sent"] / 1e6 for c in cfgs], "o", label="sent (counted by senders)")
        ax.plot(alphas, [c["bytes_received"] / 1e6 for c in cfgs], "x", ms=9, label="received (counted by receivers)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(alphas)
        ax.set_xticklabels([str(x) for x in alphas])
        ax.set_xlabel("α (CompNodes); β = " + ", ".join(str(c["beta"]) for c in cfgs))
        ax.set_ylabel("MB moved in the run (protocol + headers)")
        ax.set_title(f"{shown}, N = {n}: bytes of the whole run", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, f"bytes-{name}-N{n}.png"), dpi=110)
        plt.close(fig)
        by_alpha = {c["alpha"]: c for c in cfgs}
        if 2 in by_alpha and 8 in by_alpha:
            for net in nets:
                r8 = by_alpha[8]["sim"][net]["predicted"]["wall_s"]
                r2 = by_alpha[2]["sim"][net]["predicted"]["wall_s"]
                ratios.append((shown, n, net, r2, r8, r8 / r2))
    md.append("")
    md.append("| model | N | network | runtime α = 2 s | runtime α = 8 s | α = 8 / α = 2 |")
    md.append("|---|---:|---|---:|---:|---:|")
    for model, n, net, r2, r8, q in ratios:
        md.append(f"| {model} | {n} | {net} | {r2:.4f} | {r8:.4f} | {q:.2f} |")
    with open(os.path.join(a.out, "scaling.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    for model, n, net, r2, r8, q in ratios:
        print(f"{model} N={n} {net}: runtime(α=8) / runtime(α=2) = {r8:.4f} / {r2:.4f} = {q:.2f}"
              f" ({'sublinear' if q < 4 else 'not sublinear'} in α: α grew 4x)")
    print(f"wrote {a.out}/scaling-*.png, bytes-*.png, scaling.csv, scaling.md")


if __name__ == "__main__":
    main()
