#!/usr/bin/env python3
"""What tracing costs: the same `cascade run` without --trace, with --trace, and with
--trace --trace-views, interleaved, every rank single-threaded; medians of --repeats runs.

Reports the wall time of the run (the slowest party's, from the start barrier to the stop
message; what --json prints per party), the compute summed over all parties, and the trace
file's size.

    python3 bench/trace_overhead.py [--alpha 4 --beta 4 --cluster 4] [--prompt-file F] [-n 8]
                                    [--repeats 7] [--openblas-coretype SkylakeX]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=int, default=4)
    ap.add_argument("--beta", type=int, default=4)
    ap.add_argument("--cluster", type=int, default=4)
    ap.add_argument("--prompt-file", default=os.path.join(ROOT, "data", "prompts", "bench-128.txt"))
    ap.add_argument("-n", type=int, default=8, help="tokens to generate")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--openblas-coretype", help="set OPENBLAS_CORETYPE (see BENCHMARKS.md)")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if a.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = a.openblas_coretype
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}", file=sys.stderr)
    n = 1 + a.alpha + a.beta * a.beta
    modes = {"off": [], "trace": ["--trace"], "trace+views": ["--trace", "--trace-views"]}
    results = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.h5")
        for i in range(a.repeats):
            for mode, flags in modes.items():
                cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n),
                       os.path.join(ROOT, "build", "cascade"), "run", "--alpha", str(a.alpha), "--beta", str(a.beta),
                       "--cluster", str(a.cluster), "--raw", "--prompt-file", a.prompt_file, "-n", str(a.n),
                       "--ignore-eos", "--insecure", "--json"]
                if flags:
                    cmd += [flags[0], path, "--force"] + flags[1:]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
                j = json.loads(p.stdout[p.stdout.index("{"):])
                size = os.path.getsize(path) if flags else 0
                results[mode].append((max(q["wall_s"] for q in j["parties"]), j["compute_s_sum"], size))
            print(f"round {i + 1}/{a.repeats}", file=sys.stderr, flush=True)
    base_wall = statistics.median(r[0] for r in results["off"])
    base_compute = statistics.median(r[1] for r in results["off"])
    print(f"α = {a.alpha}, β = {a.beta}, c = {a.cluster}, {os.path.basename(a.prompt_file)}, -n {a.n}: "
          f"medians of {a.repeats} interleaved runs, single-threaded ranks")
    print(f"{'mode':<12} {'wall s':>8} {'vs off':>7} {'Σ compute s':>12} {'vs off':>7} {'trace MB':>9}")
    for mode in modes:
        wall = statistics.median(r[0] for r in results[mode])
        comp = statistics.median(r[1] for r in results[mode])
        size = statistics.median(r[2] for r in results[mode]) / 1e6
        print(f"{mode:<12} {wall:>8.3f} {wall / base_wall:>6.3f}x {comp:>12.3f} {comp / base_compute:>6.3f}x {size:>9.1f}")


if __name__ == "__main__":
    main()
