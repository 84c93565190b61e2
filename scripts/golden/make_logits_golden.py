#!/usr/bin/env python3
"""Golden logits of SmolLM2-135M-Instruct, computed by llama.cpp in fp32.

Writes data/golden/logits.json (prompts, token ids, positions, greedy continuations,
metadata) and data/golden/logits.bin (the logits rows), the fixture of
tests/test_fidelity.cpp.

Regenerate (from the repository root, with the venv of scripts/golden/README.md):

    scripts/fetch-model
    /opt/golden-venv/bin/python scripts/golden/make_logits_golden.py

Cascade dequantises every tensor to fp32 and computes in fp32. For a like-for-like
reference, llama.cpp must do the same, so this script first writes an F32 copy of the
GGUF (data/models/SmolLM2-135M-Instruct.F32.gguf: every tensor dequantised to F32 with the
`gguf` package, all metadata kept, general.file_type = 0 (ALL_F32)), then runs llama.cpp on
that copy on the CPU with an F32 KV cache and flash attention off. With the Q4_1 file
llama.cpp would quantise the activations to Q8_1 inside every matmul, and with the default
F16 KV cache it would round K and V to fp16: both far above our tolerance.

For each prompt the script stores the token ids (tokenised by llama.cpp, special=True), the
full logits row (n_vocab floats) at a few prompt positions, a 32-token greedy (argmax)
continuation decoded one token at a time with the KV cache, and the logits rows of two of
those decode steps.

logits.bin (llm.c style): a header of 256 int32 — magic 20261122, version 1, n_rows,
n_vocab, the rest zero — then n_rows × n_vocab float32, little-endian, row-major.

Checks before writing: argmax of the last prompt row is the first greedy token (and likewise
for the decode rows); llama.cpp's prefill agrees with its one-token-at-a-time decode; and an
independent float64 numpy forward pass (numpy_forward, from the same F32 weights) agrees
with every stored prompt row to max|Δ|/max|ref| < 1e-5. The last two numbers are stored in
logits.json.

Options: --threads N, --reuse-f32 (keep an existing F32 copy), --no-numpy-check,
--q4-crosscheck (also print how far llama.cpp on the Q4_1 file is from the fp32 reference;
nothing is stored).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL_Q4 = ROOT / "data/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_F32 = ROOT / "data/models/SmolLM2-135M-Instruct.F32.gguf"
OUT_DIR = ROOT / "data/golden"

BIN_MAGIC = 20261122
BIN_VERSION = 1
BIN_HEADER_INTS = 256
N_GREEDY = 32

GGML_TYPE_F32 = 0

PROMPTS = [
    ("short", "The quick brown fox jumps over the"),
    ("paragraph",
     "In 1969, Neil Armstrong and Buzz Aldrin landed on the Moon aboard the Apollo 11 "
     "lunar module Eagle, while Michael Collins orbited above in the command module. "
     "The mission's main goal was"),
    ("chat",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
     "Face<|im_end|>\n"
     "<|im_start|>user\nI am writing a short guide for new programmers. Please explain, in "
     "a few clear sentences, what a hash table is, why looking up a key is usually fast, "
     "what a collision is, and two common ways of handling collisions. Then give one "
     "everyday analogy (for example a library, a coat check or a post office) that makes "
     "the idea easy to remember, and finish with a one-line Python example that uses a "
     "dict.<|im_end|>\n"
     "<|im_start|>assistant\n"),
]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- F32 copy of the GGUF ----------------------------------------------------------------

F32_METHOD = ("gguf-py {ver}: GGUFReader + gguf.quants.dequantize (fp32 d*q+m) + GGUFWriter; "
              "all metadata copied, general.file_type = 0 (ALL_F32)")


def convert_to_f32(src: Path, dst: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    tmp = dst.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    for field in reader.fields.values():
        # GGUF.* are virtual (header) fields; the writer adds general.architecture itself.
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == "general.file_type":
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        # numpy shape is (ne[1], ne[0]); the writer reverses it back to ne.
        w = np.ascontiguousarray(w.reshape(tuple(int(n) for n in reversed(t.shape))))
        writer.add_tensor(t.name, w, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


# ---- llama.cpp ---------------------------------------------------------------------------

def llama_settings(threads: int) -> dict:
    return dict(n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                n_threads_batch=threads, n_gpu_layers=0, logits_all=True,
                type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False, seed=0,
                verbose=False)


def open_llama(path: Path, threads: int):
    import llama_cpp

    params = inspect.signature(llama_cpp.Llama.__init__).parameters
    settings = llama_settings(threads)
    missing = [k for k in settings if k not in params]
    if missing:
        sys.exit(f"llama-cpp-python {llama_cpp.__version__} lacks Llama() parameters {missing}")
    llm = llama_cpp.Llama(model_path=str(path), **settings)
    # The context must really have the F32 cache and no flash attention.
    cp = llm.context_params
    assert cp.type_k == GGML_TYPE_F32 and cp.type_v == GGML_TYPE_F32, (cp.type_k, cp.type_v)
    return llm


def clear(llm) -> None:
    """Empties the KV cache and the token counter, so the next eval starts at position 0."""
    llm.reset()
    ctx = llm._ctx
    if hasattr(ctx, "memory_clear"):
        ctx.memory_clear(True)
    else:
        ctx.kv_cache_clear()


def eval_rows(llm, ids: list[int]) -> np.ndarray:
    """Evaluates ids after what is already in the cache; returns their logits (len(ids), n_vocab)."""
    start = llm.n_tokens
    llm.eval(ids)
    return np.array(llm.scores[start:start + len(ids)], dtype=np.float32)


def prompt_positions(n: int) -> list[int]:
    return sorted({0, n // 3, (2 * n) // 3, n - 1})


def run_prompt(llm, ids: list[int]):
    """Prefill, then greedy decode one token at a time. Returns (prompt logits, greedy ids,
    decode logits keyed by position, top-1 − top-2 margins of the greedy steps)."""
    clear(llm)
    n = len(ids)
    prompt_logits = eval_rows(llm, ids)
    row = prompt_logits[-1]
    greedy, margins, decode = [], [], {}
    for step in range(N_GREEDY):
        top2 = np.partition(row, -2)[-2:]
        margins.append(float(top2[1] - top2[0]))
        tok = int(np.argmax(row))
        greedy.append(tok)
        if step == N_GREEDY - 1:
            break
        pos = n + step
        row = eval_rows(llm, [tok])[0]
        decode[pos] = row
    return prompt_logits, greedy, decode, margins


def max_rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def numpy_forward(path: Path, ids: list[int]) -> np.ndarray:
    """A third, independent opinion: the forward pass in float64 numpy from the F32 GGUF.
    Returns the logits of every position (len(ids), n_vocab)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    f = {k: r.fields[k].contents() for k in r.fields if not k.startswith("GGUF.")}
    n_layer, n_head, n_head_kv = (f[f"llama.{k}"] for k in (
        "block_count", "attention.head_count", "attention.head_count_kv"))
    eps, theta = f["llama.attention.layer_norm_rms_epsilon"], f["llama.rope.freq_base"]

    def w(name: str) -> np.ndarray:
        t = next(t for t in r.tensors if t.name == name)
        return np.asarray(t.data, dtype=np.float64).reshape(tuple(int(n) for n in reversed(t.shape)))

    def rms_norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    n = len(ids)
    embd = w("token_embd.weight")  # (n_vocab, d)
    d_head = embd.shape[1] // n_head
    # RoPE "normal" variant: rotates the pairs (2i, 2i+1) by pos * theta^(-2i/d_head).
    ang = np.arange(n)[:, None] * theta ** (-2.0 * np.arange(d_head // 2) / d_head)
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]  # (n, 1, d_head/2)

    def rope(x):  # x is (n, h, d_head)
        out = np.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
        out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
        return out

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = embd[ids]  # (n, d)
    for l in range(n_layer):
        b = f"blk.{l}."
        h = rms_norm(x, w(b + "attn_norm.weight"))
        q = rope((h @ w(b + "attn_q.weight").T).reshape(n, n_head, d_head))
        k = rope((h @ w(b + "attn_k.weight").T).reshape(n, n_head_kv, d_head))
        v = (h @ w(b + "attn_v.weight").T).reshape(n, n_head_kv, d_head)
        k = np.repeat(k, n_head // n_head_kv, axis=1)
        v = np.repeat(v, n_head // n_head_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d_head) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", s, v).reshape(n, -1) @ w(b + "attn_output.weight").T
        h = rms_norm(x, w(b + "ffn_norm.weight"))
        g, u = h @ w(b + "ffn_gate.weight").T, h @ w(b + "ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ w(b + "ffn_down.weight").T
    return rms_norm(x, w("output_norm.weight")) @ embd.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse-f32", action="store_true", help="keep an existing F32 copy")
    ap.add_argument("--q4-crosscheck", action="store_true",
                    help="also print the distance of llama.cpp on the Q4_1 file (not stored)")
    ap.add_argument("--no-numpy-check", action="store_true",
                    help="skip the float64 numpy forward that cross-checks llama.cpp")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args()

    import gguf
    import llama_cpp

    if not MODEL_Q4.exists():
        sys.exit(f"{MODEL_Q4} is missing: run scripts/fetch-model")
    q4_sha = sha256_of(MODEL_Q4)
    if not (args.reuse_f32 and MODEL_F32.exists()):
        t0 = time.perf_counter()
        convert_to_f32(MODEL_Q4, MODEL_F32)
        print(f"wrote {MODEL_F32} ({time.perf_counter() - t0:.1f} s)")
    f32_sha = sha256_of(MODEL_F32)
    gguf_ver = getattr(gguf, "__version__", None)
    if gguf_ver is None:
        from importlib.metadata import version
        gguf_ver = version("gguf")

    llm = open_llama(MODEL_F32, args.threads)
    n_vocab = llm.n_vocab()

    rows: list[np.ndarray] = []
    prompts_json = []
    for idx, (name, text) in enumerate(PROMPTS):
        # add_bos=True lets the model's metadata decide (tokenizer.ggml.add_bos_token = false).
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        n = len(ids)
        t0 = time.perf_counter()
        prompt_logits, greedy, decode, margins = run_prompt(llm, ids)
        dt = time.perf_counter() - t0
        positions = prompt_positions(n)
        entry_rows = []
        for p in positions:
            entry_rows.append(len(rows))
            rows.append(prompt_logits[p])
        decode_positions = [n, n + N_GREEDY - 2]  # first and last decode step
        decode_json = []
        for p in decode_positions:
            decode_json.append({"pos": p, "row": len(rows)})
            rows.append(decode[p])

        # Sanity: argmax at the last prompt position is the first greedy token; argmax of a
        # decode row at position p is greedy[p - n + 1].
        assert int(np.argmax(prompt_logits[-1])) == greedy[0]
        for p in decode_positions:
            assert int(np.argmax(decode[p])) == greedy[p - n + 1]
        assert np.all(np.isfinite(prompt_logits))

        cont = llm.detokenize(greedy).decode("utf-8", errors="replace")
        print(f"prompt {idx} ({name}): {n} tokens, positions {positions}, decode {decode_positions},"
              f" min greedy margin {min(margins):.3g}, {dt:.1f} s")
        print(f"  continuation: {cont!r}")
        prompts_json.append({
            "name": name,
            "text": text,
            "ids": ids,
            "positions": positions,
            "rows": entry_rows,
            "greedy": greedy,
            "greedy_margins": [round(m, 5) for m in margins],
            "greedy_text": cont,
            "decode": decode_json,
        })

    # Internal consistency of llama.cpp: prompt 1 decoded one token at a time vs. prefilled.
    ids1 = prompts_json[1]["ids"]
    clear(llm)
    one_by_one = np.stack([eval_rows(llm, [t])[0] for t in ids1])
    clear(llm)
    batched = eval_rows(llm, ids1)
    consistency = max(max_rel(one_by_one[p], batched[p]) for p in range(len(ids1)))
    print(f"llama.cpp prefill vs one-token-at-a-time, prompt 1: max rel {consistency:.2e}")

    data = np.stack(rows).astype("<f4")

    # Third opinion: float64 numpy on the same F32 weights, at every stored prompt row.
    numpy_rel = None
    if not args.no_numpy_check:
        numpy_rel = 0.0
        for idx, p in enumerate(prompts_json):
            ours = numpy_forward(MODEL_F32, p["ids"])
            for pos, r in zip(p["positions"], p["rows"]):
                numpy_rel = max(numpy_rel, max_rel(ours[pos], data[r]))
                assert int(np.argmax(ours[pos])) == int(np.argmax(data[r])), (idx, pos)
        print(f"numpy float64 forward vs llama.cpp fp32, all stored prompt rows: "
              f"max rel {numpy_rel:.2e}")
        assert numpy_rel < 1e-5, "llama.cpp's fp32 logits disagree with the numpy forward"

    args.out_dir.mkdir(parents=True, exist_ok=True)
    header = np.zeros(BIN_HEADER_INTS, dtype="<i4")
    header[:4] = [BIN_MAGIC, BIN_VERSION, data.shape[0], n_vocab]
    bin_path = args.out_dir / "logits.bin"
    with open(bin_path, "wb") as f:
        f.write(header.tobytes())
        f.write(data.tobytes())

    meta = {
        "description": "Logits of SmolLM2-135M-Instruct computed by llama.cpp in fp32 (F32 "
                       "weights, F32 KV cache); the fixture of tests/test_fidelity.cpp.",
        "regenerate": "/opt/golden-venv/bin/python scripts/golden/make_logits_golden.py",
        "generator": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp)",
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "model": {"file": MODEL_Q4.name, "sha256": q4_sha},
        "reference_model": {"file": MODEL_F32.name, "sha256": f32_sha,
                            "conversion": F32_METHOD.format(ver=gguf_ver)},
        "llama_cpp_settings": {k: v for k, v in llama_settings(args.threads).items()
                               if k != "verbose"},
        "tokenization": "Llama.tokenize(text, add_bos=True, special=True); the model's "
                        "add_bos_token is false, so no BOS is added",
        "greedy": f"{N_GREEDY} tokens: argmax of the last prompt row, then repeatedly eval of "
                  "the argmax token (one token per eval, KV cache); greedy_margins[k] is "
                  "top1 - top2 of the row that chose greedy[k]",
        "decode_rows": "decode[i].pos = p >= len(ids): the logits row produced by evaluating "
                       "the single token greedy[p - len(ids)] at position p; its argmax is "
                       "greedy[p - len(ids) + 1]",
        "check_prefill_vs_incremental_max_rel": float(f"{consistency:.3e}"),
        "check_numpy_float64_max_rel": None if numpy_rel is None else float(f"{numpy_rel:.3e}"),
        "bin": {"file": bin_path.name, "magic": BIN_MAGIC, "version": BIN_VERSION,
                "header_int32": BIN_HEADER_INTS, "n_rows": int(data.shape[0]),
                "n_vocab": int(n_vocab), "dtype": "float32 little-endian, row-major"},
        "prompts": prompts_json,
    }
    json_path = args.out_dir / "logits.json"
    with open(json_path, "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # Read back what was written.
    raw = np.fromfile(bin_path, dtype="<i4", count=BIN_HEADER_INTS)
    assert list(raw[:4]) == [BIN_MAGIC, BIN_VERSION, data.shape[0], n_vocab]
    back = np.fromfile(bin_path, dtype="<f4", offset=4 * BIN_HEADER_INTS)
    assert back.size == data.size and np.array_equal(back.reshape(data.shape), data)
    print(f"wrote {json_path} and {bin_path} ({data.shape[0]} rows x {n_vocab}, "
          f"{bin_path.stat().st_size / 1e6:.2f} MB)")

    if args.q4_crosscheck:
        del llm
        q4 = open_llama(MODEL_Q4, args.threads)
        for idx, p in enumerate(prompts_json):
            clear(q4)
            lq = eval_rows(q4, p["ids"])
            rel = max(max_rel(lq[pos], data[r]) for pos, r in zip(p["positions"], p["rows"]))
            same = int(np.argmax(lq[-1])) == p["greedy"][0]
            print(f"Q4_1 (Q8_1 activations, F32 cache) vs fp32, prompt {idx}: "
                  f"max rel {rel:.2e}, same next token: {same}")


if __name__ == "__main__":
    main()
