#!/usr/bin/env python3
"""Tests of bench/smpc/crypten_bert.py, the CrypTen BERT peer of Cascade's SMPC benchmark.

Run with the interpreter of bench/smpc/setup-crypten:
    $(bench/smpc/setup-crypten) -m unittest tests/smpc/test_crypten_bert.py -v
(or: that python tests/smpc/test_crypten_bert.py). About 25 s on 2 busy cores.

  test_plaintext_matches_numpy: a tiny GGUF (2 layers, d=64, 4 heads, d_ff=128) made by the
      script's make-test-gguf, the script's --plaintext forward (exact softmax, erf GELU) against
      an independent numpy BERT written here from the math, to 1e-5.
  test_mpc_exact_relu / test_mpc_2quad: the 2-party CrypTen forward (revealed with
      --decrypt-out) against the plaintext forward with the same nonlinearities, to 1e-2 abs
      (16-bit fixed point), and the JSON result's fields.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "bench", "smpc", "crypten_bert.py")
SEQ = 12


def run(*args, timeout=300):
    r = subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("crypten_bert.py %s failed (%d):\n%s\n%s"
                             % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
    return r.stdout


def read_f32(path, n, d):
    a = np.fromfile(path, dtype="<f4")
    assert a.size == n * d, "%s: %d floats, want %d x %d" % (path, a.size, n, d)
    return a.reshape(n, d).astype(np.float64)


def numpy_bert(gguf_path, ids):
    """Reference BERT (post-LN, exact softmax, erf GELU) in float64 numpy, read straight from
    the GGUF with gguf.GGUFReader (ne = [in, out]; data as (out, in))."""
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    meta = lambda k: r.fields[k].contents()
    assert meta("general.architecture") == "bert"
    L, d, H = meta("bert.block_count"), meta("bert.embedding_length"), meta("bert.attention.head_count")
    dff, eps = meta("bert.feed_forward_length"), meta("bert.attention.layer_norm_epsilon")
    T = {}
    for t in r.tensors:
        T[t.name] = np.array(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])
    # llama.cpp layout: ffn_up has ne = [d, d_ff] -> numpy (d_ff, d) = (out, in)
    assert T["blk.0.ffn_up.weight"].shape == (dff, d)
    assert T["blk.0.ffn_down.weight"].shape == (d, dff)

    def ln(x, g, b):
        m = x.mean(axis=1, keepdims=True)
        v = ((x - m) ** 2).mean(axis=1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * g + b

    def erf(x):
        return np.vectorize(math.erf)(x)

    n, dh = len(ids), d // H
    h = T["token_embd.weight"][ids] + T["position_embd.weight"][:n] + T["token_types.weight"][0]
    h = ln(h, T["token_embd_norm.weight"], T["token_embd_norm.bias"])
    for i in range(L):
        P = lambda name: T["blk.%d.%s" % (i, name)]
        q = h @ P("attn_q.weight").T + P("attn_q.bias")
        k = h @ P("attn_k.weight").T + P("attn_k.bias")
        v = h @ P("attn_v.weight").T + P("attn_v.bias")
        o = np.zeros((n, d))
        for j in range(H):
            sl = slice(j * dh, (j + 1) * dh)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(dh)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            o[:, sl] = (e / e.sum(axis=1, keepdims=True)) @ v[:, sl]
        h = ln(h + o @ P("attn_output.weight").T + P("attn_output.bias"),
               P("attn_output_norm.weight"), P("attn_output_norm.bias"))
        u = h @ P("ffn_up.weight").T + P("ffn_up.bias")
        g = 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))
        h = ln(h + g @ P("ffn_down.weight").T + P("ffn_down.bias"),
               P("layer_output_norm.weight"), P("layer_output_norm.bias"))
    return h


class CryptenBertTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="test_crypten_bert.")
        cls.gguf = os.path.join(cls.tmp.name, "tiny.gguf")
        run("make-test-gguf", cls.gguf, "--layers", 2, "--d", 64, "--heads", 4, "--d-ff", 128,
            "--vocab", 100, "--ctx", 64, "--seed", 3)
        cls.ids = np.random.default_rng(7).integers(0, 100, SEQ)
        cls.ids_file = os.path.join(cls.tmp.name, "ids.txt")
        with open(cls.ids_file, "w") as f:
            f.write(" ".join(map(str, cls.ids)) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def plaintext(self, *mode):
        out = self.path("plain_%s.f32" % "_".join(mode).replace("-", ""))
        run("--gguf", self.gguf, "--ids", self.ids_file, "--plaintext", "--out", out, *mode)
        return read_f32(out, SEQ, 64)

    def mpc(self, tag, *mode):
        out, js = self.path("mpc_%s.f32" % tag), self.path("mpc_%s.json" % tag)
        run("--gguf", self.gguf, "--ids", self.ids_file, "--decrypt-out", out, "--json", js,
            "--timeout", 240, *mode)
        with open(js) as f:
            res = json.load(f)
        return read_f32(out, SEQ, 64), res

    def test_plaintext_matches_numpy(self):
        ref = numpy_bert(self.gguf, self.ids)
        got = self.plaintext()
        err = np.abs(got - ref).max()
        self.assertLess(err, 1e-5, "plaintext vs numpy BERT: max abs err %g" % err)
        # the random-id path (--seq/--seed) draws numpy default_rng(seed) ids
        out = self.path("plain_seq.f32")
        run("--gguf", self.gguf, "--seq", SEQ, "--seed", 7, "--plaintext", "--out", out)
        self.assertLess(np.abs(read_f32(out, SEQ, 64) - ref).max(), 1e-5)

    def check_mpc(self, tag, mode, config):
        ref = self.plaintext(*mode)
        got, res = self.mpc(tag, *mode)
        err = np.abs(got - ref).max()
        self.assertLess(err, 1e-2, "%s: MPC vs plaintext max abs err %g" % (tag, err))
        # and the MPC output is not trivially close to something else (e.g. all zeros)
        self.assertGreater(np.abs(ref).max(), 0.5)
        self.assertEqual(res["system"], "crypten")
        self.assertEqual(res["config"], config)
        self.assertEqual(res["seq"], SEQ)
        self.assertEqual([res["model"][k] for k in ("layers", "d", "heads", "d_ff", "vocab")],
                         [2, 64, 4, 128, 100])
        for k in ("bytes_sent", "bytes_crypten", "rounds", "peak_rss_bytes", "wall_s_per_party"):
            self.assertEqual(len(res[k]), 2, k)
            self.assertTrue(all(v > 0 for v in res[k]), k)
        self.assertGreater(res["wall_s"], 0)
        self.assertTrue(res["crypten_version"] and res["torch_version"])
        return err

    def test_mpc_exact_relu(self):
        self.check_mpc("exact", ["--softmax", "exact", "--gelu", "relu"], "exact")

    def test_mpc_2quad(self):
        self.check_mpc("2quad", ["--config", "mpcformer-2quad"], "mpcformer-2quad")


if __name__ == "__main__":
    unittest.main()
