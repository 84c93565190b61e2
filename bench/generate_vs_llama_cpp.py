#!/usr/bin/env python3
"""Single-process throughput: `cascade bench generate` against llama.cpp (llama-cpp-python on
an fp32 copy of the same GGUF), in interleaved rounds on the same machine, as ratios.

    python3 bench/generate_vs_llama_cpp.py [--threads 2] [--rounds 3] [--runs 5]

Needs build/cascade (scripts/build), the venv of scripts/golden/README.md at /opt/golden-venv
(llama-cpp-python) and data/models/SmolLM2-135M-Instruct.F32.gguf (made by
scripts/golden/make_logits_golden.py). Ours runs three ways per round, with the environment as
it is: the weight GEMMs on packed fp32 (the default), on packed bf16 (CPUs with AVX512_BF16 or
AMX; --no-bf16 leaves it out), and on OpenBLAS with unpacked weights (the path before packing,
whose speed depends on OPENBLAS_CORETYPE: see BENCHMARKS.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out[out.index("{"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default="/opt/golden-venv/bin/python")
    ap.add_argument("--no-bf16", action="store_true", help="leave out ours in bf16 (a CPU without it)")
    a = ap.parse_args()
    env = dict(os.environ)
    ours = [os.path.join(ROOT, "build", "cascade"), "bench", "generate", "--json", "--tokens", "128",
            "--decode", "64", "--runs", str(a.runs), "--threads", str(a.threads)]
    llama = [a.python, os.path.join(ROOT, "bench", "llama_cpp_bench.py"), "--json", "--threads",
             str(a.threads), "--prompt-tokens", "128", "--decode-tokens", "64", "--runs", str(a.runs)]
    variants = [("ours packed f32", ours), ("ours packed bf16", ours + ["--precision", "bf16"]),
                ("ours OpenBLAS f32", ours + ["--openblas"]), ("llama.cpp fp32", llama)]
    if a.no_bf16:
        variants = [v for v in variants if "bf16" not in v[0]]
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}", flush=True)
    res = {name: [] for name, _ in variants}
    for r in range(a.rounds):
        for name, cmd in variants:
            j = run_json(cmd, env)
            pre = j.get("prefill_tok_s_median", j.get("prefill_tok_s"))
            dec = j.get("decode_tok_s_median", j.get("decode_tok_s"))
            if isinstance(pre, dict):
                pre, dec = pre["median"], dec["median"]
            res[name].append((pre, dec))
            print(f"round {r + 1}: {name:24s} prefill {pre:8.1f} tok/s  decode {dec:6.1f} tok/s", flush=True)
    med = {k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v)) for k, v in res.items()}
    base = med["llama.cpp fp32"]
    print(f"\nmedian of {a.rounds} rounds, {a.threads} threads, 128-token prompt, 64 decoded tokens:")
    print(f"{'':26s}{'prefill tok/s':>14s}{'decode tok/s':>14s}{'prefill ×':>11s}{'decode ×':>10s}")
    for k, (p, d) in med.items():
        print(f"{k:26s}{p:14.1f}{d:14.1f}{p / base[0]:11.2f}{d / base[1]:10.2f}")
    f32 = med["ours packed f32"][0]
    for k, (p, _) in med.items():
        if k.startswith("ours") and k != "ours packed f32":
            print(f"{k}: prefill {p / f32:.2f}× ours packed f32")


if __name__ == "__main__":
    sys.exit(main())
