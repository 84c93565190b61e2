#!/usr/bin/env python3
"""End-to-end checks of the `cascade` command line: bad input gets a clear message and a
non-zero exit on every rank, and a dead or stuck peer ends the run (no hang).

    python3 tests/cli/test_cli.py BUILD/cascade [MPIEXEC]
"""
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


def run(args, timeout=240):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout + p.stderr


def mpirun(np, *args, timeout=240):
    return run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), CASCADE, "run", *args],
               timeout=timeout)


class Cli(unittest.TestCase):
    def test_help(self):
        for sub in ([], ["generate"], ["run"], ["plan"], ["comm-model"], ["bench", "generate"]):
            rc, out = run([CASCADE, *sub, "--help"])
            self.assertEqual(rc, 0, out)
            self.assertIn("Usage", out)

    def test_unknown_flag(self):
        rc, out = run([CASCADE, "generate", "--no-such-flag"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--no-such-flag", out)

    def test_corrupt_model(self):
        with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
            f.write(b"GGUF\x03\x00\x00\x00" + b"\xff" * 10)
            f.flush()
            rc, out = run([CASCADE, "generate", "--model", f.name])
            self.assertNotEqual(rc, 0)
            self.assertIn(f.name, out)
            self.assertIn("truncated", out)

    def test_missing_model(self):
        rc, out = run([CASCADE, "generate", "--model", "/nonexistent/model.gguf"])
        self.assertNotEqual(rc, 0)
        self.assertIn("not found", out)

    def test_plan_refuses_insecure_schedule(self):
        rc, out = run([CASCADE, "plan", "--alpha", "1", "--beta", "1", "--cluster", "8", "--tokens", "32"])
        self.assertNotEqual(rc, 0)
        rc, out = run([CASCADE, "plan", "--alpha", "1", "--beta", "1", "--cluster", "8", "--tokens", "32", "--insecure"])
        self.assertEqual(rc, 0, out)

    def test_wrong_world_size(self):
        rc, out = mpirun(5, "-n", "2")  # the default α = β = c = 4 needs 21 ranks
        self.assertNotEqual(rc, 0)
        self.assertIn("21 ranks", out)
        self.assertIn("has 5", out)

    def test_beta_larger_than_cluster(self):
        rc, out = mpirun(6, "--alpha", "1", "--beta", "2", "--cluster", "1", "-n", "2")
        self.assertNotEqual(rc, 0)
        self.assertIn("beta", out.lower())

    def test_alpha_below_one(self):
        rc, out = mpirun(2, "--alpha", "0", "-n", "2")
        self.assertNotEqual(rc, 0)
        self.assertIn("alpha", out)

    def test_empty_prompt(self):
        rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "1", "--insecure", "--prompt", "", "-n", "2")
        self.assertNotEqual(rc, 0)
        self.assertIn("prompt is empty", out)

    def test_prompt_longer_than_context(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write("word " * 9000)
            f.flush()
            rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "1", "--insecure", "--raw",
                             "--prompt-file", f.name, "-n", "2")
            self.assertNotEqual(rc, 0)
            self.assertIn("exceeds the model context", out)

    def test_refused_schedule(self):
        rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "1", "-n", "2")
        self.assertNotEqual(rc, 0)
        self.assertIn("CompNode 0", out)

    def test_stuck_peer_times_out(self):
        # CompNode 1 (rank 2) stops answering at layer 3. The parties waiting on it (its
        # AttnNodes) or on them (CompNode 0) time out and end the job, naming the party they
        # waited for and the layer; which of them is first is a race, so accept any.
        rc, out = mpirun(7, "--alpha", "2", "--beta", "2", "--cluster", "2", "-n", "4",
                         "--stall-rank", "2", "--stall-layer", "3", "--timeout", "5", "--insecure", timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"timed out after \d+ s waiting for \S+ from rank \d+ "
                              r"\((CompNode|AttnNode)[^)]*\)+ at layer [34]")

    def test_small_run_succeeds(self):
        rc, out = mpirun(7, "--alpha", "2", "--beta", "2", "--cluster", "2", "-n", "4", "--insecure")
        self.assertEqual(rc, 0, out)
        self.assertIn("equal for every (src, dst, layer, kind)", out)


if __name__ == "__main__":
    CASCADE = sys.argv[1]
    if len(sys.argv) > 2:
        MPIRUN = sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
