#!/usr/bin/env python3
"""The learning-based attack end to end on small inputs: `cascade attack features` read back with
h5py (an independent HDF5 reader), its errors, and scripts/learned_attack.py --selftest (an
inversion MLP must learn a trivially learnable case; the vectorised LCS equals the textbook DP;
with --learned-csv, the sweep's configuration syntax, offset sharding included, through
`cascade plan` to learned.csv, and scripts/security_sweep --summary-only reading it).

    python3 tests/attack/test_learned_attack.py BUILD/cascade
"""
import csv
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

    def test_learned_csv_for_the_sweep(self):
        """The selftest's model on the parties of sweep configurations, offset sharding and a schedule
        the planner refuses (2,1,1) among them: learned.csv has every party of each under both
        attacks, named as security_sweep names them, and the sweep's summary reads it."""
        parties = {
            "a2b1c1-cluster": ["CompNode 0", "CompNode 1", "AttnNode (0,0)"],
            "a4b4c4-offset": [f"CompNode {k}" for k in range(4)] + [f"AttnNode ({a},{b})" for a in range(4) for b in range(4)],
            "a4b4c4-cluster": [f"CompNode {k}" for k in range(4)] + [f"AttnNode ({a},{b})" for a in range(4) for b in range(4)],
        }
        with tempfile.TemporaryDirectory() as d:
            learned = os.path.join(d, "learned.csv")
            rc, out = run([sys.executable, os.path.join(ROOT, "scripts", "learned_attack.py"), "--selftest",
                           "--cascade", CASCADE, "--configs", "2,1,1;4,4,4,offset 4,4,4,cluster;4,4,4",
                           "--out-dir", d, "--learned-csv", learned])
            self.assertEqual(rc, 0, out)
            self.assertIn("selftest OK", out)
            self.assertTrue(os.listdir(os.path.join(d, "learned_attack", "models")), "the trained weights are cached")
            with open(learned) as f:
                rows = list(csv.DictReader(f))
            for col in ("config", "party", "attack", "budget", "rouge_tokens", "unseen_accuracy", "floor", "gain"):
                self.assertIn(col, rows[0])
            for attack in ("counts (no rows)", "learned L1"):
                got = {c: sorted(r["party"] for r in rows if r["config"] == c and r["attack"] == attack) for c in parties}
                self.assertEqual(got, {c: sorted(p) for c, p in parties.items()}, attack)
            gain = {(r["config"], r["party"], r["attack"]): float(r["gain"]) for r in rows}
            x = {(r["config"], r["party"]): float(r["x"]) for r in rows}
            # 2,1,1's one AttnNode sees every position: nothing left to gain.
            self.assertEqual(x[("a2b1c1-cluster", "AttnNode (0,0)")], 1.0)
            self.assertEqual(gain[("a2b1c1-cluster", "AttnNode (0,0)", "learned L1")], 0.0)
            # offset reached the planner: AttnNode (0,2) sees offsets 0 and 2 of every cluster, so
            # every position it misses is 1 before one it sees, where the selftest's rows betray the
            # token; under cluster it misses whole clusters (holes of 4), the same fraction.
            for c in ("a4b4c4-offset", "a4b4c4-cluster"):
                self.assertAlmostEqual(x[(c, "AttnNode (0,2)")], 0.5, delta=0.05)
            self.assertGreater(gain[("a4b4c4-offset", "AttnNode (0,2)", "learned L1")],
                               gain[("a4b4c4-cluster", "AttnNode (0,2)", "learned L1")] + 0.1)

            # The sweep's summary: learned rows for every configuration and party type.
            ev = os.path.join(d, "eval.jsonl")
            with open(ev, "w") as f:
                f.write(json.dumps("unused") + "\n")
            rc, out = run([sys.executable, os.path.join(ROOT, "scripts", "security_sweep"), "--summary-only",
                           "--skip-baseline", "--cascade", CASCADE, "--eval", ev, "--out", d,
                           "--configs", "2,1,1 4,4,4,offset 4,4,4,cluster"])
            self.assertEqual(rc, 0, out)
            with open(os.path.join(d, "security.csv")) as f:
                table = list(csv.DictReader(f))
            want = {(a, b, c, s, t, attack) for a, b, c, s, types in
                    (("2", "1", "1", "cluster", ("CompNode", "AttnNode (a,a)")),
                     ("4", "4", "4", "offset", ("CompNode", "AttnNode (a,a)", "AttnNode (a,b≠a)")),
                     ("4", "4", "4", "cluster", ("CompNode", "AttnNode (a,a)", "AttnNode (a,b≠a)")))
                    for t in types for attack in ("counts (no rows)", "learned L1")}
            got = {(t["alpha"], t["beta"], t["c"], t["sharding"], t["party_type"], t["attack"]) for t in table}
            self.assertEqual(got, want)
            views = {(t["sharding"], t["party_type"], t["attack"]): int(t["views"]) for t in table if t["alpha"] == "4"}
            self.assertEqual(views[("offset", "AttnNode (a,b≠a)", "learned L1")], 12, "one row per party")
            with open(os.path.join(d, "security.md")) as f:
                self.assertIn("| 4 | 4 | 4 | offset | AttnNode (a,b≠a) | learned L1 | – | 12 |", f.read())


if __name__ == "__main__":
    CASCADE = os.path.abspath(sys.argv.pop(1))
    unittest.main()
