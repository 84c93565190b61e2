#!/usr/bin/env python3
"""Cascade's compute overhead against the single-process reference, on one prompt of N = 128
tokens of the default model (PROTOCOL.md; issue: "Cascade over MPI").

For each (α, β): `mpirun -np 1+α+β² cascade run --compare-reference --json -n 1` on
data/prompts/bench-128.txt (exactly 128 tokens, --raw), every rank single-threaded. Reports the
CPU time spent inside compute sections summed over all parties ÷ the reference's CPU time for
the same prefill (rank 0 reruns it after the Cascade run), plus wall time, waiting time, bytes
and messages per layer (protocol bytes: message headers and reports excluded). Medians over
--repeats runs.

    python3 bench/cascade_overhead.py [--configs 2,1 4,2 4,4 8,2] [--cluster 4] [--repeats 3]
                                      [--openblas-coretype SkylakeX | --native-openblas]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["2,1", "4,2", "4,4", "8,2"], help="α,β pairs")
    ap.add_argument("--cluster", type=int, default=4, help="cluster size c (δ = α·c)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-file", default=os.path.join(ROOT, "data", "prompts", "bench-128.txt"))
    ap.add_argument("--native-openblas", action="store_true",
                    help="unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (see BENCHMARKS.md)")
    ap.add_argument("--openblas-coretype", help="set OPENBLAS_CORETYPE (e.g. SkylakeX; see BENCHMARKS.md)")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                    help="the weight GEMMs' precision (the reference uses the same)")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if a.native_openblas:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if a.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = a.openblas_coretype
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}, precision {a.precision}", file=sys.stderr)
    rows = []
    for cfg in a.configs:
        alpha, beta = (int(x) for x in cfg.split(","))
        n = 1 + alpha + beta * beta
        runs = []
        for _ in range(a.repeats):
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n),
                   os.path.join(ROOT, "build", "cascade"), "run", "--alpha", str(alpha), "--beta", str(beta),
                   "--cluster", str(a.cluster), "--raw", "--prompt-file", a.prompt_file, "-n", "1",
                   "--threads", "1", "--insecure", "--compare-reference", "--json", "--precision", a.precision]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
            j = json.loads(p.stdout[p.stdout.index("{"):])
            assert j["bytes"]["sent_received_predicted_equal"] and j["reference"]["same_tokens"], j
            runs.append(j)
        med = lambda f: statistics.median(f(j) for j in runs)
        rows.append(dict(
            alpha=alpha, beta=beta, ranks=n, prompt=runs[0]["prompt_tokens"],
            overhead=med(lambda j: j["reference"]["overhead"]),
            compute=med(lambda j: j["compute_s_sum"]),
            comp=med(lambda j: sum(p["compute_s"] for p in j["parties"] if p["party"].startswith("CompNode"))),
            attn=med(lambda j: sum(p["compute_s"] for p in j["parties"] if p["party"].startswith("AttnNode"))),
            ref=med(lambda j: j["reference"]["compute_s"]),
            wall=med(lambda j: max(p["wall_s"] for p in j["parties"])),
            wait=med(lambda j: sum(p["wait_s"] for p in j["parties"])),
            bytes=runs[0]["bytes"]["protocol"], msgs=runs[0]["messages_per_layer"],
            err=max(j["reference"]["max_rel_err"] for j in runs)))
        r = rows[-1]
        print(f"α={alpha} β={beta}: overhead {r['overhead']:.2f}x", file=sys.stderr, flush=True)
    print(f"N = {rows[0]['prompt']} prompt tokens, c = {a.cluster}, medians of {a.repeats} runs, "
          f"single-threaded ranks, CPU time in compute sections")
    print(f"{'α':>3} {'β':>3} {'ranks':>5} {'Σ compute s':>12} {'CompNodes s':>12} {'AttnNodes s':>12} "
          f"{'reference s':>12} {'overhead':>9} {'wall s':>8} {'Σ wait s':>9} {'bytes':>11} "
          f"{'msgs/layer':>10} {'max rel err':>11}")
    for r in rows:
        print(f"{r['alpha']:>3} {r['beta']:>3} {r['ranks']:>5} {r['compute']:>12.3f} {r['comp']:>12.3f} "
              f"{r['attn']:>12.3f} {r['ref']:>12.3f} {r['overhead']:>8.2f}x {r['wall']:>8.3f} "
              f"{r['wait']:>9.3f} {r['bytes']:>11} {r['msgs']:>10} {r['err']:>11.1e}")


if __name__ == "__main__":
    main()
