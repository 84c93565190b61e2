#!/usr/bin/env python3
"""The learning-based attack end to end on small inputs: `cascade attack features` read back with
h5py (an independent HDF5 reader), its errors, and scripts/learned_attack.py --selftest (an
inversion MLP must learn a trivially learnable case; the vectorised LCS equals the textbook DP).

    python3 tests/attack/test_learned_attack.py BUILD/cascade
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASCADE = None
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def run(args, timeout=300):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout + p.stderr


class AttackFeaturesCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def prompts(self, lines):
        path = os.path.join(self.dir, "p.jsonl")
        with open(path, "w") as f:
            for x in lines:
                f.write(json.dumps(x) + "\n")
        return path

    def test_token_id_prompts_on_a_synthetic_model(self):
        src = self.prompts([[1, 2, 3, 4, 5], [7] * 9, [250]])
        out = os.path.join(self.dir, "f.h5")
        rc, log = run([CASCADE, "attack", "features", "-i", src, "-o", out, "-m", "synthetic:tiny",
                       "--layers", "0,1,2"])
        self.assertEqual(rc, 0, log)
        with h5py.File(out, "r") as f:
            meta = f["meta"].attrs
            self.assertEqual(meta["format"], "cascade-attack-features")
            self.assertEqual(int(meta["complete"]), 1)
            self.assertEqual(list(meta["layers"]), [0, 1, 2])
            self.assertEqual(list(f["prompt_offsets"][:]), [0, 5, 14, 15])
            self.assertEqual(list(f["tokens"][:5]), [1, 2, 3, 4, 5])
            self.assertEqual(list(f["positions"][5:14]), list(range(9)))
            d, dkv = int(meta["d_model"]), int(meta["d_kv"])
            self.assertEqual(f["layer_1/hidden"].shape, (15, d))
            self.assertEqual(f["layer_1/k"].shape, (15, dkv))
            self.assertNotIn("k", f["layer_2"], "no k, v rows after the last layer")
            # A prompt of one repeated token: its v rows are equal (no RoPE on v, same input), so its
            # hidden rows are too; its k rows are rotated to their positions, so they differ.
            h, k = f["layer_2/hidden"][:], f["layer_1/k"][:]
            self.assertTrue(np.allclose(h[5], h[6]))
            self.assertFalse(np.allclose(k[5], k[6]), "k after RoPE depends on the position")
            self.assertTrue(np.all(np.isfinite(h)))
        rc, log = run([CASCADE, "attack", "features", "-i", src, "-o", out, "-m", "synthetic:tiny"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--force", log)

    def test_errors_are_clear(self):
        out = os.path.join(self.dir, "f.h5")
        cases = [
            (["text", "-m", "synthetic:tiny", "--layers", "1"], "no tokenizer"),
            ([[1, 2], "-m", "synthetic:tiny", "--layers", "1,9"], "outside 0..2"),
            ([[1, 2], "-m", "synthetic:tiny", "--layers", "1,x"], "not a layer number"),
            ([[1, 2], "-m", "synthetic:tiny", "--layers", "1,1"], "twice"),
            ([[1, 99999], "-m", "synthetic:tiny", "--layers", "1"], "p.jsonl:1: token id 99999 at position 1 is outside"),
            ([{"a": 1}, "-m", "synthetic:tiny", "--layers", "1"], "p.jsonl:1"),
            ([[1, 2], "-m", os.path.join(self.dir, "none.gguf")], "not found"),
        ]
        for (line, *opts), want in cases:
            rc, log = run([CASCADE, "attack", "features", "-i", self.prompts([line]), "-o", out, "--force", *opts])
            self.assertNotEqual(rc, 0, (line, opts, log))
            self.assertIn(want, log, (line, opts))
            self.assertFalse(os.path.exists(out), "no file left behind")

    def test_help(self):
        rc, out = run([CASCADE, "attack", "features", "--help"])
        self.assertEqual(rc, 0, out)
        self.assertIn("--layers", out)


class LearnedAttack(unittest.TestCase):
    def test_selftest(self):
        rc, out = run([sys.executable, os.path.join(ROOT, "scripts", "learned_attack.py"), "--selftest"])
        self.assertEqual(rc, 0, out)
        self.assertIn("selftest OK", out)


if __name__ == "__main__":
    CASCADE = os.path.abspath(sys.argv.pop(1))
    unittest.main()
