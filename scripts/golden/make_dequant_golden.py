#!/usr/bin/env python3
"""Golden fixture for Cascade's GGUF dequantisation (tests/test_gguf.cpp).

Reference: the PyPI `gguf` package (gguf.GGUFReader to read the file, gguf.quants.dequantize to
dequantise), an implementation independent of ours.

Two parts:
  * "tensors": for a few tensors of the real model (token_embd.weight is q8_0, the blk.* ones
    q4_1, output_norm.weight f32), the shape and type, the dequantised values at fixed flat
    indices (first, last and pseudo-random ones; ne[0] is the fastest-varying dimension), and
    the float64 sum and sum of absolute values of all elements.
  * "blocks": for every block type Cascade dequantises, a few blocks of seeded random bytes
    (with the fp16 scale fields replaced by sane values, so no inf/nan) and their dequantised
    values, to check the block layouts of types the model does not use (q4_0, q5_*, k-quants).

Floats are written with repr() of the float32 value, so they parse back exactly.

Usage (the venv needs `gguf` and `numpy`, e.g. /opt/golden-venv):
    /opt/golden-venv/bin/python scripts/golden/make_dequant_golden.py [model.gguf] [out.json]
Defaults: data/models/SmolLM2-135M-Instruct.Q4_1.gguf -> data/golden/dequant.json
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "data/models/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "data/golden/dequant.json")

TENSORS = ["token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight",
           "output_norm.weight"]
N_RANDOM = 192   # pseudo-random indices per tensor, plus the first and last 32
SEED = 1234

# Byte offsets of the fp16 scale fields in each block, so they can be set to sane values.
HALF_FIELDS = {
    T.F16: None, T.BF16: None,
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
N_BLOCKS = {T.F16: 16, T.BF16: 16, T.Q2_K: 1, T.Q3_K: 1, T.Q4_K: 1, T.Q5_K: 1, T.Q6_K: 1}


def f32_list(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def tensor_goldens(model):
    reader = GGUFReader(model)
    by_name = {t.name: t for t in reader.tensors}
    rng = np.random.default_rng(SEED)
    out = []
    for name in TENSORS:
        t = by_name[name]
        qtype = T(t.tensor_type)
        values = dequantize(t.data, qtype).astype(np.float32).ravel()
        n = values.size
        assert n == int(np.prod([int(x) for x in t.shape])), name
        idx = sorted(set(range(min(32, n))) | set(range(max(0, n - 32), n)) |
                     set(int(i) for i in rng.integers(0, n, N_RANDOM)))
        out.append({
            "name": name,
            "type": qtype.name.lower(),
            "ne": [int(x) for x in t.shape],   # GGUFReader's shape is ne order (ne[0] first)
            "n_elements": int(n),
            "indices": idx,
            "values": f32_list(values[idx]),
            "sum": float(values.astype(np.float64).sum()),
            "sum_abs": float(np.abs(values.astype(np.float64)).sum()),
        })
        print(f"{name:28s} {qtype.name:5s} ne={out[-1]['ne']} sum={out[-1]['sum']:.6f}",
              file=sys.stderr)
    return out


def block_goldens():
    rng = np.random.default_rng(SEED + 1)
    out = []
    for qtype, halves in HALF_FIELDS.items():
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        nb = N_BLOCKS.get(qtype, 3)   # elements of f16/bf16, else blocks
        raw = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
        if qtype == T.BF16:   # keep the exponent away from inf/nan: |x| < 2^64
            raw[:, 1] = (raw[:, 1] & 0x80) | rng.integers(0x20, 0x5f, nb, dtype=np.uint8)
        for off in halves or []:
            # scales in [2^-10, 2^-2), random sign; a mix of magnitudes like real files
            d = (rng.uniform(0.001, 0.25, nb) * rng.choice([-1, 1], nb)).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(nb, 2)
        if qtype == T.F16:    # a few special values: subnormals, inf, nan, -0, max
            special = np.array([0x0001, 0x03ff, 0x8000, 0x7bff, 0x7c00, 0xfc00, 0x0400],
                               dtype=np.uint16)
            raw[:len(special)] = special.view(np.uint8).reshape(-1, 2)
        data = raw.reshape(-1)
        values = dequantize(data, qtype).astype(np.float32).ravel()
        assert values.size == nb * block_elems
        out.append({
            "type": qtype.name.lower(),
            "type_id": int(qtype),
            "bytes": data.tobytes().hex(),
            # json has no inf/nan: they are stored as the strings "inf", "-inf", "nan"
            "values": [v if np.isfinite(v) else ("nan" if np.isnan(v) else
                                                 "inf" if v > 0 else "-inf")
                       for v in f32_list(values)],
        })
    return out


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else MODEL
    out_path = sys.argv[2] if len(sys.argv) > 2 else OUT
    golden = {
        "format": "cascade-dequant-golden",
        "version": 1,
        "generator": "scripts/golden/make_dequant_golden.py (gguf.GGUFReader + gguf.quants.dequantize)",
        "model": os.path.basename(model),
        "model_size": os.path.getsize(model),
        "tensors": tensor_goldens(model),
        "blocks": block_goldens(),
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
