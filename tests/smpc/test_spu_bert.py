#!/usr/bin/env python3
"""SPU really computes the model: a tiny BERT (2 layers, d=64, 4 heads, FFN 128, vocab 1000,
seq 8) run under SPU ABY3 (3 parties) must match the plaintext Flax forward with the same PUMA
approximations within fixed-point tolerance, and PUMA's GeLU must stay close to the exact one.

Run with the SPU venv (bench/smpc/setup-spu):
  .venv-spu/bin/python tests/smpc/test_spu_bert.py              # sim and multiprocess (~30 s)
  .venv-spu/bin/python tests/smpc/test_spu_bert.py --mode sim   # one mode
Prints OK / NOT OK per check with the max difference; exit status 1 on any failure.
Also collected by pytest if it is installed in the venv.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "smpc"))

import numpy as np  # noqa: E402

import spu_bert  # noqa: E402

TOL_ABS = 5e-3  # 18 fractional bits: one ulp is 3.8e-6; measured error ~5e-4. Tight enough to catch
#   a compile without the PUMA patches (exact vs PUMA softmax/GeLU differ by ~8e-3 here).
TINY = ["--layers", "2", "--hidden", "64", "--heads", "4", "--ffn", "128", "--vocab", "1000", "--seq", "8"]


def check(name, diff, tol):
    ok = diff <= tol
    print(f"{'OK' if ok else 'NOT OK'} {name}: max |diff| {diff:.3e} (tol {tol:g})", flush=True)
    return ok


def gelu_close_to_exact():
    import jax
    import jax.numpy as jnp
    x = jnp.linspace(-8.0, 8.0, 4001)
    diff = float(jnp.max(jnp.abs(spu_bert.puma_gelu(x) - jax.nn.gelu(x, approximate=False))))
    return check("PUMA GeLU vs exact GeLU on [-8, 8]", diff, 2.5e-2)  # worst at x=3: 0.0199


def secure_matches_plaintext(mode):
    r = spu_bert.run(spu_bert.parse_args(TINY + ["--mode", mode, "--no-exact"]))
    out, ref = r["output"], r["ref_approx"]
    ok = out.shape == ref.shape == (8, 64)
    if not ok:
        print(f"NOT OK {mode}: output shape {out.shape}, reference {ref.shape}")
    # The output is a LayerNorm output, O(1): a wrong model (e.g. no approximation patch, a lost
    # layer) would differ by far more than the tolerance.
    ok &= check(f"{mode}: SPU output vs plaintext Flax (same approximations)", float(np.max(np.abs(out - ref))), TOL_ABS)
    ok &= check(f"{mode}: bytes were counted", 0.0 if r["bytes_sent"]["total"] > 0 else 1.0, 0.0)
    return ok


def write_gguf_bert(path, shape, params):
    """Writes Flax BERT params as a llama.cpp-convention BERT GGUF (f32): weights (out, in)."""
    import gguf
    w = gguf.GGUFWriter(path, "bert")
    w.add_uint32("bert.block_count", shape["layers"])
    w.add_uint32("bert.embedding_length", shape["hidden"])
    w.add_uint32("bert.feed_forward_length", shape["ffn"])
    w.add_uint32("bert.attention.head_count", shape["heads"])
    w.add_float32("bert.attention.layer_norm_epsilon", shape["eps"])
    w.add_uint32("bert.context_length", shape["max_pos"])
    w.add_uint32("bert.vocab_size", shape["vocab"])
    e = params["embeddings"]
    w.add_tensor("token_embd.weight", e["word_embeddings"]["embedding"])
    w.add_tensor("position_embd.weight", e["position_embeddings"]["embedding"])
    w.add_tensor("token_types.weight", e["token_type_embeddings"]["embedding"])
    w.add_tensor("token_embd_norm.weight", e["LayerNorm"]["scale"])
    w.add_tensor("token_embd_norm.bias", e["LayerNorm"]["bias"])
    for i, l in params["encoder"]["layer"].items():
        a = l["attention"]
        pairs = [("attn_q", a["self"]["query"]), ("attn_k", a["self"]["key"]), ("attn_v", a["self"]["value"]),
                 ("attn_output", a["output"]["dense"]), ("ffn_up", l["intermediate"]["dense"]),
                 ("ffn_down", l["output"]["dense"])]
        for name, d in pairs:
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(d["kernel"].T))
            w.add_tensor(f"blk.{i}.{name}.bias", d["bias"])
        for name, n in (("attn_output_norm", a["output"]["LayerNorm"]), ("layer_output_norm", l["output"]["LayerNorm"])):
            w.add_tensor(f"blk.{i}.{name}.weight", n["scale"])
            w.add_tensor(f"blk.{i}.{name}.bias", n["bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_roundtrip():
    """--gguf loads the same params (and model shape) that were written."""
    import tempfile
    import jax
    shape, _, params = spu_bert.build_model(spu_bert.parse_args(TINY))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tiny-bert.gguf")
        write_gguf_bert(path, shape, params)
        shape2, _, params2 = spu_bert.build_model(spu_bert.parse_args(["--gguf", path, "--seq", "8"]))
    same_shape = all(shape2[k] == shape[k] for k in ("layers", "hidden", "heads", "ffn", "vocab", "max_pos"))
    if not same_shape:
        print(f"NOT OK gguf: shape {shape2} != {shape}")
    a, ta = jax.tree_util.tree_flatten(params)
    b, tb = jax.tree_util.tree_flatten(params2)
    if ta != tb:
        print("NOT OK gguf: parameter trees differ")
        return False
    diff = max(float(np.max(np.abs(x - y))) if x.shape == y.shape else np.inf for x, y in zip(a, b))
    return check("GGUF write/load round trip of a tiny BERT", diff, 0.0) and same_shape


def test_gguf():
    assert gguf_roundtrip()


def test_gelu():
    assert gelu_close_to_exact()


def test_secure_sim():
    assert secure_matches_plaintext("sim")


def test_secure_multiprocess():
    assert secure_matches_plaintext("multiprocess")


def main():
    modes = ["sim", "multiprocess"]
    if "--mode" in sys.argv:
        modes = [sys.argv[sys.argv.index("--mode") + 1]]
    ok = gelu_close_to_exact()
    ok &= gguf_roundtrip()
    for m in modes:
        ok &= secure_matches_plaintext(m)
    print("ALL OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
