#!/usr/bin/env python3
"""A trace written by `cascade run --trace` read back with h5py (an independent HDF5 reader) and
compared with what the same run printed (--json), and the trace commands end to end.

    python3 tests/trace/test_trace_h5.py BUILD/cascade [MPIEXEC]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

CASCADE = None
MPIRUN = "mpirun"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
SMALL = ["--alpha", "2", "--beta", "2", "--cluster", "2", "-n", "4", "--insecure"]  # 7 ranks


def run(args, timeout=240):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout, p.stderr


def cascade_run(np_, *args):
    return run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), CASCADE, "run", *args])


class TraceFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls.dir.name, "run.h5")
        rc, out, err = cascade_run(7, *SMALL, "--trace", cls.path, "--trace-views", "--json")
        assert rc == 0, out + err
        cls.j = json.loads(out[out.index("{"):])
        cls.h5 = h5py.File(cls.path, "r")

    @classmethod
    def tearDownClass(cls):
        cls.h5.close()
        cls.dir.cleanup()

    def test_meta_is_the_run(self):
        m = self.h5["meta"].attrs
        j = self.j
        self.assertEqual(m["trace_version"], 1)
        self.assertEqual(m["complete"], 1)
        self.assertEqual(m["views"], 1)
        for key in ("alpha", "beta", "c", "delta"):
            self.assertEqual(m[key], j[key], key)
        self.assertEqual(m["n_prompt"], j["prompt_tokens"])
        self.assertEqual(m["n_generated"], len(j["tokens"]))
        self.assertEqual(m["world_size"], j["ranks"])
        self.assertEqual(m["attn_sharding"], j["attn_sharding"])
        self.assertEqual(m["lm_head"], j["lm_head"])
        self.assertEqual(list(m["model_shape"]), [30, 576, 9, 3, 64, 49152])
        self.assertEqual(len(m["hosts"]), j["ranks"])
        self.assertIn("--trace", m["command_line"])
        self.assertRegex(m["start_time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(len(m["model_sha256"]), 64)
        # The run's bytes at both ends and predicted: what the run printed.
        self.assertEqual(m["bytes_sent"], j["bytes"]["protocol"] + j["bytes"]["headers"])
        self.assertEqual(m["bytes_received"], m["bytes_sent"])
        self.assertEqual(m["bytes_predicted"], m["bytes_sent"])

    def test_schedule_and_exposure(self):
        s = self.h5["schedule"]
        self.assertEqual(list(s["comp"][:]), self.j["schedule"]["comp"])
        self.assertEqual(list(s["att"][:]), self.j["schedule"]["att"])
        parties = s["parties"][:]
        by_rank = {p["rank"]: p for p in self.j["exposure"]["parties"]}
        for row in parties:
            e = by_rank[int(row["rank"])]
            self.assertEqual(int(row["observed"]), e["observed"])
            self.assertEqual(int(row["gap"]), e["gap"] or 0)
            self.assertEqual(int(row["longest_run"]), e["longest_run"])

    def test_ranks_match_what_the_run_printed(self):
        for p in self.j["parties"]:
            g = self.h5["ranks"][str(p["rank"])]
            self.assertEqual(g.attrs["party"], p["party"])
            self.assertEqual(g.attrs["bytes_sent"], p["bytes_sent"])
            self.assertEqual(g.attrs["messages_sent"], p["messages_sent"])
            self.assertAlmostEqual(g.attrs["compute_s"], p["compute_s"], places=9)
            self.assertEqual(g.attrs["host_cores"], os.cpu_count())
            # One host, one monotonic clock: the ranks start within a second of each other.
            self.assertLess(abs(g.attrs["t0_monotonic_s"] - self.h5["ranks/0"].attrs["t0_monotonic_s"]), 1.0)
            spans = g["spans"][:]
            # Contiguous from 0, covering the rank's wall time.
            self.assertEqual(spans["t_start"][0], 0.0)
            self.assertTrue(np.all(spans["t_start"][1:] == spans["t_end"][:-1]))
            self.assertGreaterEqual(spans["t_end"][-1], 0.99 * p["wall_s"])
            msgs = g["messages"][:]
            sent = msgs[msgs["direction"] == 0]
            if p["rank"] > 0:  # the client's schedule messages precede the trace
                self.assertEqual(int(sent["wire_bytes"].sum()), p["bytes_sent"])
            # Compute spans carry FLOPs (CompNodes' GEMMs, AttnNodes' attention).
            kinds = set(int(k) for k in spans["kind"])
            if p["party"].startswith("CompNode"):
                # 30 layers × (the prefill + each decode step at a position this CompNode owns)
                k = p["rank"] - 1
                n_prompt, comp = self.j["prompt_tokens"], self.j["schedule"]["comp"]
                decodes = sum(1 for q in range(n_prompt, n_prompt + len(self.j["tokens"]) - 1) if comp[q] == k)
                prepass = spans[spans["kind"] == 1]
                self.assertEqual(len(prepass), 30 * (1 + decodes))
                self.assertTrue(np.all(prepass["flops"] > 0))
            if p["party"].startswith("AttnNode"):
                self.assertIn(5, kinds)  # attention

    def test_views_are_in_each_partys_view(self):
        att = self.h5["schedule"]["att"][:]
        comp = self.h5["schedule"]["comp"][:]
        beta = int(self.h5["meta"].attrs["beta"])
        alpha = int(self.h5["meta"].attrs["alpha"])
        kinds = {"tokens": 1, "control": 2, "q": 3, "kv": 4, "partial": 5, "hidden": 6}
        seen = 0
        for r in range(1, 1 + alpha + beta * beta):
            g = self.h5["ranks"][str(r)]
            parts = g["views"]["parts"][:]
            pos = g["views"]["positions"][:]
            data = g["views"]["data"]
            msgs = g["messages"][:]
            for part in parts:
                if part["kind"] == kinds["control"]:  # the decode position, sent to every party
                    continue
                p = pos[part["positions_offset"]:part["positions_offset"] + part["n_positions"]]
                sender = int(msgs[part["message"]]["peer"])
                if r <= alpha:  # CompNode r−1: its own positions only
                    self.assertTrue(np.all(comp[p] == r - 1))
                else:           # AttnNode (a, b): q rows of shard a, k/v of shard b, the sender's
                    a, b = divmod(r - 1 - alpha, beta)
                    self.assertNotIn(int(part["kind"]), (kinds["tokens"], kinds["hidden"], kinds["partial"]))
                    shard = a if part["kind"] == kinds["q"] else b
                    self.assertTrue(np.all(att[p] == shard))
                    self.assertTrue(np.all(comp[p] == sender - 1))
                # Rows of q are d_q floats each, bytes as the view says.
                if part["kind"] == kinds["q"]:
                    self.assertEqual(part["bytes"], len(p) * 576 * 4)
                    row = np.frombuffer(data[part["data_offset"]:part["data_offset"] + part["bytes"]].tobytes(),
                                        dtype=np.float32)
                    self.assertTrue(np.all(np.isfinite(row)))
                seen += 1
        self.assertGreater(seen, 100)

    def test_summary_and_export(self):
        rc, out, err = run([CASCADE, "trace", "summary", self.path, "--json"])
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual([p["bytes_sent"] for p in s["parties"]], [p["bytes_sent"] for p in self.j["parties"]])
        self.assertEqual(s["decode_steps"], 3)
        rc, out, err = run([CASCADE, "trace", "summary", self.path])
        self.assertEqual(rc, 0, err)
        self.assertIn("AttnNode (1,1)", out)
        chrome = self.path + ".json"
        rc, out, err = run([CASCADE, "trace", "export", self.path, "--chrome", "-o", chrome])
        self.assertEqual(rc, 0, err)
        with open(chrome) as f:
            ev = json.load(f)["traceEvents"]
        names = {e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
        self.assertEqual(len(names), 7)
        starts = [e for e in ev if e["ph"] == "s"]
        ends = [e for e in ev if e["ph"] == "f"]
        self.assertEqual(len(starts), len(ends))
        self.assertGreater(len(starts), 500)
        self.assertTrue(all(e["dur"] >= 0 for e in ev if e["ph"] == "X"))


class TracePaths(unittest.TestCase):
    def test_unwritable_path_fails_before_compute(self):
        rc, out, err = cascade_run(7, *SMALL, "--trace", "/nonexistent-dir/run.h5")
        self.assertNotEqual(rc, 0)
        self.assertIn("cannot create trace file '/nonexistent-dir/run.h5'", out + err)
        self.assertNotIn("exposure over", out)  # nothing planned, nothing computed

    def test_existing_file_needs_force(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "run.h5")
            with open(path, "w") as f:
                f.write("keep me")
            rc, out, err = cascade_run(7, *SMALL, "--trace", path)
            self.assertNotEqual(rc, 0)
            self.assertIn("exists; pass --force", out + err)
            with open(path) as f:
                self.assertEqual(f.read(), "keep me")
            rc, out, err = cascade_run(7, *SMALL, "--trace", path, "--force")
            self.assertEqual(rc, 0, out + err)
            self.assertTrue(h5py.is_hdf5(path))

    def test_bad_trace_files(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.h5")
            with open(path, "w") as f:
                f.write("not hdf5")
            rc, out, err = run([CASCADE, "trace", "summary", path])
            self.assertNotEqual(rc, 0)
            self.assertIn("is not an HDF5 file", out + err)


if __name__ == "__main__":
    CASCADE = sys.argv[1]
    if len(sys.argv) > 2:
        MPIRUN = sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
