#!/usr/bin/env python3
"""Wall time of a Cascade run that fits the cores against single-process inference on them.

Per round, interleaved: (1) `mpirun -np 1+α+β² cascade run --alpha α --beta β` on a 128-token
prompt (data/prompts/bench-128.txt, --raw), -n 1 (the prefill and the first sampled token),
each rank with cascade run's default thread count (the node's CPUs over its ranks: one each
here); its time is the client's wall time from the start barrier to the end (model loading
and packing excluded); (2) `cascade bench generate --tokens 128 --decode 1 --threads T` with T
the machine's CPUs, whose prefill time (128 / its median prefill tok/s) is the single-process
time. Prints both, medians over rounds, and the ratio.

    python3 bench/wall_fit.py [--alpha 2 --beta 1] [--rounds 5] [--precision f32|bf16]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASCADE = os.path.join(ROOT, "build", "cascade")


def run_json(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout[p.stdout.index("{"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=int, default=2)
    ap.add_argument("--beta", type=int, default=1)
    ap.add_argument("--cluster", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--prompt-file", default=os.path.join(ROOT, "data", "prompts", "bench-128.txt"))
    a = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1")
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # each command sets its own threads
        env.pop(k, None)
    n = 1 + a.alpha + a.beta * a.beta
    cascade = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n), CASCADE, "run",
               "--alpha", str(a.alpha), "--beta", str(a.beta), "--cluster", str(a.cluster), "--raw",
               "--prompt-file", a.prompt_file, "-n", "1", "--insecure", "--precision", a.precision, "--json"]
    single = [CASCADE, "bench", "generate", "--tokens", "128", "--decode", "1", "--runs", "5",
              "--threads", str(cpus), "--precision", a.precision, "--json"]
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}, {cpus} CPUs, {n} ranks, "
          f"precision {a.precision}", flush=True)
    walls, singles = [], []
    for r in range(a.rounds):
        j = run_json(cascade, env)
        assert j["bytes"]["sent_received_predicted_equal"], j["bytes"]
        walls.append(j["parties"][0]["wall_s"])
        s = run_json(single, env)
        singles.append(128.0 / s["prefill_tok_s_median"])
        print(f"round {r + 1}: cascade ({a.alpha},{a.beta}) {walls[-1]:.4f} s   single process "
              f"{cpus} threads {singles[-1]:.4f} s   ratio {walls[-1] / singles[-1]:.2f}", flush=True)
    w, s = statistics.median(walls), statistics.median(singles)
    print(f"median: cascade {w:.4f} s, single process {s:.4f} s: {w / s:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
