#!/usr/bin/env python3
"""Soak of serve mode: N prompts back to back on one set of ranks (cascade run --prompts), then
the same prompts one-shot for a sample, compared bit for bit. Prints a Markdown summary for
BENCHMARKS.md: prompts, wall time, RSS per party type at the first and the last prompt, and
whether the sampled results equal the one-shot runs.

    bench/soak.py [--prompts 200] [--alpha 2] [--beta 2] [-n 8] [--model PATH] [--cascade build/cascade]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUBJECTS = ["the sea", "a city at night", "winter", "a library", "the moon", "trains", "bread", "mountains",
            "a river", "old maps", "bees", "the desert", "clocks", "a lighthouse", "rain", "chess"]
FORMS = ["Write one sentence about {}.", "What is the best thing about {}?", "Describe {} in five words.",
         "Tell me a fact about {}.", "Give {} a title for a short story."]


def prompt(i):
    return FORMS[i % len(FORMS)].format(SUBJECTS[(i // len(FORMS)) % len(SUBJECTS)]) + f" (#{i})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--alpha", type=int, default=2)
    ap.add_argument("--beta", type=int, default=2)
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--model", default="")
    ap.add_argument("--cascade", default=os.path.join(HERE, "..", "build", "cascade"))
    ap.add_argument("--samples", type=int, default=3, help="prompts rerun one-shot (first, middle, last, ...)")
    a = ap.parse_args()
    np = 1 + a.alpha + a.beta * a.beta
    env = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1")
    mpirun = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    common = ["--alpha", str(a.alpha), "--beta", str(a.beta), "--cluster", "2", "--insecure", "-n", str(a.n),
              "--ignore-eos"] + (["-m", a.model] if a.model else [])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prompts.jsonl")
        with open(path, "w") as f:
            for i in range(a.prompts):
                f.write(json.dumps(prompt(i)) + "\n")
        t0 = time.time()
        p = subprocess.run(mpirun + ["-np", str(np), a.cascade, "run", *common, "--prompts", path],
                           capture_output=True, text=True, env=env)
        wall = time.time() - t0
        if p.returncode != 0:
            sys.exit(f"soak: the serve run failed ({p.returncode}):\n{p.stderr[-3000:]}")
        rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        assert len(rows) == a.prompts, f"{len(rows)} results for {a.prompts} prompts"
        picks = sorted({0, a.prompts // 2, a.prompts - 1} | set(range(1, max(0, a.samples - 2))))
        same = []
        for i in picks:
            out = os.path.join(d, "one.f32")
            q = subprocess.run(mpirun + ["-np", str(np), a.cascade, "run", *common, "--raw", "--prompt", prompt(i),
                                         "--logits-out", out, "--json"], capture_output=True, text=True, env=env)
            if q.returncode != 0:
                sys.exit(f"soak: one-shot run of prompt {i} failed:\n{q.stderr[-2000:]}")
            j = json.loads(q.stdout[q.stdout.index("{"):])
            digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
            same.append((i, digest == rows[i]["logits_sha256"] and j["tokens"] == rows[i]["tokens"]))
    kinds = {"client": [0], "CompNode": list(range(1, 1 + a.alpha)), "AttnNode": list(range(1 + a.alpha, np))}
    times = [r["wall_s"] for r in rows]
    tenth = max(1, len(times) // 10)
    print(f"soak: {a.prompts} prompts, α = {a.alpha}, β = {a.beta} ({np} ranks), -n {a.n}: "
          f"{wall:.1f} s in all (mpirun, loading, planning included); per prompt {sum(times) / len(times):.3f} s "
          f"mean, first tenth {sum(times[:tenth]) / tenth:.3f} s, last tenth {sum(times[-tenth:]) / tenth:.3f} s")
    print("\n| party | ranks | RSS at prompt 1 (MiB, max over ranks) | RSS at prompt %d | change |" % a.prompts)
    print("|---|---|---|---|---|")
    for kind, ranks in kinds.items():
        first = max(rows[0]["rss_kb"][r] for r in ranks) / 1024
        last = max(rows[-1]["rss_kb"][r] for r in ranks) / 1024
        print(f"| {kind} | {len(ranks)} | {first:.1f} | {last:.1f} | {last - first:+.1f} MiB ({100 * (last - first) / first:+.1f} %) |")
    marks = sorted({min(len(rows) - 1, k * len(rows) // 10) for k in range(11)})
    print("\nRSS (MiB, max over the party's ranks) after prompts " + ", ".join(str(m + 1) for m in marks) + ":")
    for kind, ranks in kinds.items():
        print(f"- {kind}: " + ", ".join(f"{max(rows[m]['rss_kb'][r] for r in ranks) / 1024:.1f}" for m in marks) +
              "  (of it anonymous: " + ", ".join(f"{max(rows[m]['rss_anon_kb'][r] for r in ranks) / 1024:.1f}"
                                                 for m in marks) + ")")
    print("\none-shot runs, bit for bit (logits digest and tokens): " +
          ", ".join(f"prompt {i}: {'same' if ok else 'DIFFERENT'}" for i, ok in same))
    if not all(ok for _, ok in same):
        sys.exit(1)


if __name__ == "__main__":
    main()
