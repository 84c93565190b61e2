#!/usr/bin/env python3
"""Validates the network simulator on this machine: records traces of real runs and compares
`cascade simulate --net loopback --device cpu-measured` with the wall time each trace measured.

For each N: `mpirun -np 1+α+β² cascade run --raw --prompt-file data/prompts/bench-N.txt -n G
--trace FILE` (every rank single-threaded), then `cascade simulate FILE --net loopback --json`
twice: with the receiver measured in the trace (the default: wake-up and receive rate) and with
--receiver ideal (the network model alone). Prints one Markdown row per run and the median error
per N.

    python3 bench/sim_validation.py [--tokens 32 128 512] [--alpha 1 --beta 1 --cluster 4]
                                    [-n 4] [--repeats 3] [--openblas-coretype SkylakeX]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASCADE = os.path.join(ROOT, "build", "cascade")


def simulate(trace, *extra):
    out = subprocess.run([CASCADE, "simulate", trace, "--net", "loopback", "--device", "cpu-measured",
                          "--json", *extra], check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    return j, j["results"][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", nargs="+", type=int, default=[32, 128, 512])
    ap.add_argument("--alpha", type=int, default=1)
    ap.add_argument("--beta", type=int, default=1)
    ap.add_argument("--cluster", type=int, default=4)
    ap.add_argument("-n", type=int, default=4, help="tokens to generate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--openblas-coretype", help="set OPENBLAS_CORETYPE (e.g. SkylakeX; see BENCHMARKS.md)")
    ap.add_argument("--keep", help="directory to keep the traces in")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if a.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = a.openblas_coretype
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}", file=sys.stderr)
    ranks = 1 + a.alpha + a.beta * a.beta
    tmp = a.keep or tempfile.mkdtemp(prefix="cascade-simval-")
    os.makedirs(tmp, exist_ok=True)
    print("| N | run | measured s | predicted s | error | receiver (trace) | predicted, ideal receiver "
          "| error | decode step: measured ms | predicted ms |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    errors = {}
    for n in a.tokens:
        prompt = os.path.join(ROOT, "data", "prompts", f"bench-{n}.txt")
        for rep in range(a.repeats):
            trace = os.path.join(tmp, f"run-{n}-{rep}.h5")
            subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), CASCADE,
                            "run", "--alpha", str(a.alpha), "--beta", str(a.beta), "--cluster", str(a.cluster),
                            "--insecure", "--raw", "--prompt-file", prompt, "-n", str(a.n),
                            "--trace", trace, "--force"],
                           check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            j, r = simulate(trace)
            _, r0 = simulate(trace, "--receiver", "ideal")
            meas, pred, pred0 = r["measured"]["wall_s"], r["predicted"]["wall_s"], r0["predicted"]["wall_s"]
            err, err0 = (pred - meas) / meas, (pred0 - meas) / meas
            errors.setdefault(n, []).append((err, err0))
            rx = r["receiver"]
            rx_str = f"{rx['wake_us']:.0f} µs + w / {rx['rx_GBps']:.2g} GB/s" if rx["rx_GBps"] else f"{rx['wake_us']:.0f} µs"
            print(f"| {n} | {rep + 1} | {meas:.3f} | {pred:.3f} | {100 * err:+.1f}% | {rx_str} "
                  f"| {pred0:.3f} | {100 * err0:+.1f}% | {1e3 * r['measured']['decode_mean_s']:.1f} "
                  f"| {1e3 * r['predicted']['decode_mean_s']:.1f} |", flush=True)
    print()
    for n, e in errors.items():
        print(f"N = {n}: median error {100 * statistics.median(x[0] for x in e):+.1f}% "
              f"(ideal receiver: {100 * statistics.median(x[1] for x in e):+.1f}%)")


if __name__ == "__main__":
    main()
