#!/usr/bin/env python3
"""llama.cpp baseline: prefill and decode throughput of SmolLM2-135M-Instruct on the CPU.

Runs llama.cpp (through llama-cpp-python) on the fp32 copy of the model that
scripts/golden/make_logits_golden.py writes, with the settings of the golden logits: F32
weights, F32 KV cache, no flash attention, n_ctx 512, n_batch 512. Only the last position's
logits are computed (logits_all=False), as in generation; pass --logits-all to compute every
row, as the fixture run does.

Measures, over --runs runs after one warm-up run, with the KV cache cleared before each run
(prints the median and the best run; on a shared machine the best is the steadier number):
  prefill: one eval of a --prompt-tokens prompt (default 128)  -> tokens/s
  decode:  --decode-tokens greedy steps of one token each (default 64) -> tokens/s
Timing is time.perf_counter() around Llama.eval (includes a few µs of Python per call).

    /opt/golden-venv/bin/python bench/llama_cpp_bench.py [--threads 2] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "data/models/SmolLM2-135M-Instruct.F32.gguf"
GGML_TYPE_F32 = 0

TEXT = ("The history of computing is a story of abstraction. Early machines were programmed by "
        "rewiring panels; then came stored programs, assemblers, compilers, operating systems, "
        "networks and languages that hid the hardware behind ever simpler interfaces. ")


def clear(llm) -> None:
    llm.reset()
    ctx = llm._ctx
    if hasattr(ctx, "memory_clear"):
        ctx.memory_clear(True)
    else:
        ctx.kv_cache_clear()


def last_logits(llm) -> np.ndarray:
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))


def one_run(llm, prompt: list[int], n_decode: int) -> tuple[float, float]:
    clear(llm)
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    tok = int(np.argmax(last_logits(llm)))
    t_dec = 0.0
    for _ in range(n_decode):
        t2 = time.perf_counter()
        llm.eval([tok])
        t_dec += time.perf_counter() - t2
        tok = int(np.argmax(last_logits(llm)))
    return len(prompt) / (t1 - t0), n_decode / t_dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--logits-all", action="store_true", help="compute logits at every position")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import llama_cpp

    if not args.model.exists():
        sys.exit(f"{args.model} is missing: run scripts/fetch-model, then "
                 "scripts/golden/make_logits_golden.py (it writes the F32 copy)")
    n_ctx = 512
    if args.prompt_tokens + args.decode_tokens > n_ctx:
        sys.exit(f"prompt + decode tokens must fit in n_ctx = {n_ctx}")
    settings = dict(n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=args.threads,
                    n_threads_batch=args.threads, n_gpu_layers=0, logits_all=args.logits_all,
                    type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False, seed=0,
                    verbose=False)
    llm = llama_cpp.Llama(model_path=str(args.model), **settings)

    ids = llm.tokenize(TEXT.encode(), add_bos=True, special=True)
    prompt = (ids * (args.prompt_tokens // len(ids) + 1))[:args.prompt_tokens]

    one_run(llm, prompt, args.decode_tokens)  # warm-up
    prefill, decode = [], []
    for _ in range(args.runs):
        p, d = one_run(llm, prompt, args.decode_tokens)
        prefill.append(p)
        decode.append(d)

    result = {
        "engine": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp)",
        "model": args.model.name,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "decode_tokens": args.decode_tokens,
        "runs": args.runs,
        "logits_all": args.logits_all,
        "kv_cache": "f32",
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 2),
        "prefill_tok_s_best": round(max(prefill), 1),
        "decode_tok_s_best": round(max(decode), 2),
        "prefill_tok_s_all": [round(x, 1) for x in prefill],
        "decode_tok_s_all": [round(x, 2) for x in decode],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['engine']}, {args.model.name}, {args.threads} threads, F32 KV cache, "
          f"median of {args.runs} runs")
    print(f"  prefill {args.prompt_tokens:4d} tokens: {result['prefill_tok_s']:9.1f} tok/s median, "
          f"{result['prefill_tok_s_best']:.1f} best  (runs: {', '.join(f'{x:.1f}' for x in prefill)})")
    print(f"  decode  {args.decode_tokens:4d} tokens: {result['decode_tok_s']:9.2f} tok/s median, "
          f"{result['decode_tok_s_best']:.2f} best  (runs: {', '.join(f'{x:.2f}' for x in decode)})")


if __name__ == "__main__":
    main()
