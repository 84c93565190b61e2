#!/usr/bin/env python3
"""The attack suite end to end through the shipped command line:
  - the unsharded baseline (`cascade attack vocab`) recovers a short real-model prompt at
    layer 1 and a deep layer, plain and permuted (≥ 98% of the tokens: here all of them);
  - the attacks test the planner's verdicts on what parties of a traced run received
    (`cascade run --trace --trace-views`, then `cascade attack view`): the AttnNode (0,2) of
    an `offset` (4,4,4) schedule, which the planner refuses (gap 2), loses ≥ 90% of its unseen
    tokens; a CompNode of the `cluster` default (c = 8), with a hole of 8, loses none at the same
    budget; a CompNode of a `cluster` (4,4,1) schedule (holes of 3, refused: segment gap 2) loses
    every unseen token to its layer-0 partials (`--verify partials`; with `--span`, one fill verified
    per segment), and few to its hidden rows;
  - bad input gets a clear error and a non-zero exit.

    python3 tests/attack/test_attack_cli.py BUILD/cascade [MPIEXEC]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

CASCADE = None
MPIRUN = "mpirun"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def run(args, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout, p.stderr


class Baseline(unittest.TestCase):
    def test_short_prompt_layers_1_and_8_every_permutation(self):
        rc, out, err = run([CASCADE, "attack", "vocab", "-p", "The weather today is sunny and warm.",
                            "--row", "hidden@1", "--row", "hidden@8", "--perm", "all", "--json", "-q", "-t", "1"])
        self.assertEqual(rc, 0, err)
        runs = json.loads(out)
        self.assertEqual(len(runs), 8)
        for r in runs:
            with self.subTest(row=r["row"], perm=r["perm"]):
                self.assertGreaterEqual(r["accuracy"], 0.98, r)
                self.assertEqual(r["recovered"], r["truth"])


class Views(unittest.TestCase):
    """A 40-token prompt of the tiny synthetic model (vocabulary 256): a budget of 256 fills
    covers every 1-token fill and almost none of a 3-token or an 8-token hole."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.traces = {}
        # offset: α = β = c = 4 (refused: AttnNode (0,2) has gap 2); cluster: the default
        # α = β = 4, c = 8 (every gap ≥ 9).
        for name, extra in (("offset", ["--attn-sharding", "offset", "--insecure"]), ("cluster", ["--cluster", "8"]),
                            ("cluster1", ["--cluster", "1", "--insecure"])):
            path = os.path.join(cls.dir.name, name + ".h5")
            rc, out, err = run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "21", CASCADE, "run",
                                "--model", "synthetic:tiny", "--tokens", "40", "--alpha", "4", "--beta", "4",
                                "--cluster", "4", "-n", "1", "--trace", path, "--trace-views", *extra])
            if rc != 0:
                raise RuntimeError(out + err)
            cls.traces[name] = path

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def attack(self, trace, party, budget, verify="rows", *extra):
        rc, out, err = run([CASCADE, "attack", "view", "--trace", trace, "--party", party, "--budget", str(budget),
                            "--verify", verify, *extra, "--json", "-q", "-t", "1"])
        self.assertEqual(rc, 0, err)
        return json.loads(out)[0]

    def test_refused_offset_attn_node_loses_its_unseen_tokens(self):
        r = self.attack(self.traces["offset"], "attn:0,2", 256)
        self.assertEqual(r["party"], "AttnNode (0,2)")
        self.assertGreater(r["unseen"], 0)
        self.assertGreaterEqual(r["unseen_correct"], 0.9 * r["unseen"], r)
        self.assertGreater(r["gain"], 0.2, r)

    def test_default_comp_node_keeps_its_holes(self):
        r = self.attack(self.traces["cluster"], "comp:1", 256)
        self.assertEqual(r["holes_matched"], 0, r)
        self.assertAlmostEqual(r["gain"], 0.0, places=9)
        self.assertEqual(r["verified"], 256 * r["holes"])

    def test_partials_fill_what_the_hidden_rows_cannot(self):
        # CompNode 3 holds 3, 7, ..., 39: every unseen position is in a hole of 3, one segment
        # of 1 per key shard.
        r = self.attack(self.traces["cluster1"], "comp:3", 256, "partials")
        self.assertEqual((r["verify"], r["unseen"], r["holes"]), ("partials", 30, 30), r)
        self.assertEqual(r["unseen_correct"], 30, r)
        self.assertEqual(r["holes_matched"], 30, r)
        span = self.attack(self.traces["cluster1"], "comp:3", 256, "partials", "--span")
        self.assertEqual((span["verify"], span["unseen_correct"], span["span_solved"]), ("partials+span", 30, 30), span)
        self.assertEqual(span["verified"], 30, span)  # one fill per segment: the span named it
        rows = self.attack(self.traces["cluster1"], "comp:3", 256, "rows")
        self.assertLess(rows["unseen_correct"], 15, rows)
        rc, out, err = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "1", "--tokens", "40", "--rho", "4"])
        self.assertNotEqual(rc, 0)
        self.assertIn("CompNode 0 (rank 1) has segment gap 2 < rho = 4", err)  # its gap, 4, passes

    def test_plan_warns_of_the_span_attack(self):
        # The main job's layout, 64 tokens: CompNode 0 holds 0-7 and 32-39; before 32 each key
        # shard has 8 unknown positions, and its run of 8 gives 3 × 8 mixes: 24 of 48 unseen.
        rc, out, err = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "8", "--tokens", "64"])
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: CompNode 0 (rank 1) recovers 24 of its 48 unseen positions from its layer-0 partials", out)
        self.assertIn("security: OK", out)
        self.assertIn("but the check does not cover the span attack: 4 CompNodes give away", out)

    def test_errors(self):
        for args, msg in ((["--party", "attn:4,0"], "no such AttnNode"), (["--party", "comp:x"], "not a party"),
                          (["--layer", "7"], "layer")):
            rc, out, err = run([CASCADE, "attack", "view", "--trace", self.traces["offset"], *args, "-q"])
            self.assertNotEqual(rc, 0)
            self.assertIn(msg, err)
        rc, out, err = run([CASCADE, "attack", "view", "--trace", self.traces["offset"], "--party", "attn:0,1",
                            "--verify", "partials", "-q"])
        self.assertNotEqual(rc, 0)
        self.assertIn("CompNodes only", err)
        rc, out, err = run([CASCADE, "attack", "view", "--trace", self.traces["cluster1"], "--span", "-q"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--span needs --verify partials", err)
        with tempfile.NamedTemporaryFile("w", suffix=".csv") as f:  # a CSV of other columns is not appended to
            f.write("trace,alpha,beta\n")
            f.flush()
            rc, out, err = run([CASCADE, "attack", "view", "--trace", self.traces["cluster1"], "--party", "comp:0",
                                "--budget", "1", "--csv", f.name, "-q"])
            self.assertNotEqual(rc, 0)
            self.assertIn("other columns", err)
        rc, out, err = run([CASCADE, "attack", "vocab", "--model", "synthetic:tiny", "--row", "hidden@9"])
        self.assertNotEqual(rc, 0)
        self.assertIn("out of range", err)


if __name__ == "__main__":
    CASCADE = sys.argv.pop(1)
    if len(sys.argv) > 1:
        MPIRUN = sys.argv.pop(1)
    unittest.main(verbosity=2)
