#!/usr/bin/env python3
"""End-to-end checks of the `cascade` command line: bad input gets a clear message and a
non-zero exit on every rank, and a dead or stuck peer ends the run (no hang).

    python3 tests/cli/test_cli.py BUILD/cascade [MPIEXEC]
"""
import array
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

CASCADE = None
MPIRUN = "mpirun"
VENV_PYTHON = None  # a Python with h5py (optional third argument)
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def run(args, timeout=240):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout + p.stderr


def mpirun(np, *args, timeout=240):
    return run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), CASCADE, "run", *args],
               timeout=timeout)


def mpirun_mpmd(*groups, timeout=240):
    """mpirun -np N1 cascade run ARGS1 : -np N2 cascade run ARGS2 ... (ranks in order)."""
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe"]
    for i, (np, args) in enumerate(groups):
        cmd += ([":"] if i else []) + ["-np", str(np), CASCADE, "run", *args]
    return run(cmd, timeout=timeout)


def tiny_gguf(magic=b"GGUF", version=3, arch="llama", block_count=None, ttype=0, offset=0):
    """A small GGUF built byte by byte: llama metadata, one f32 tensor; each argument damages it."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def kv_u32(k, v):
        return s(k) + struct.pack("<II", 4, v)

    kvs = [s("general.architecture") + struct.pack("<I", 8) + s(arch),
           block_count if block_count is not None else kv_u32(arch + ".block_count", 1),
           kv_u32(arch + ".context_length", 64), kv_u32(arch + ".embedding_length", 8),
           kv_u32(arch + ".feed_forward_length", 16), kv_u32(arch + ".attention.head_count", 2)]
    info = s("token_embd.weight") + struct.pack("<IQQIQ", 2, 8, 4, ttype, offset)
    head = magic + struct.pack("<IQQ", version, 1, len(kvs)) + b"".join(kvs) + info
    head += b"\0" * (-len(head) % 32)
    return head + b"\0" * (8 * 4 * 4)


def bad_input_rows():
    """The rows of README's bad-input table: (input, argv, message, exit code)."""
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = readme.split("### Bad input: message and exit code", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| Bad input"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        what, cmd, msg, code = cells
        # `A` or `B` (…): either message (two parties can each catch it; the first ends the run).
        msgs = [m.lstrip("`").split("`")[0] for m in msg.split("` or `")] if "` or `" in msg else [msg[1:-1]]
        rows.append((what, shlex.split(cmd.strip("`")), msgs, int(code)))
    return rows


def world_ranks_of(cmd_marker):
    """{MPI rank: pid} of the processes whose command line holds `cmd_marker`."""
    ranks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read()
            env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd_marker.encode() not in cmd:
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                ranks[int(e.split(b"=")[1])] = int(pid)
    return ranks


# Open MPI's mpirun ends the whole job about a second after a rank dies; with this, the job goes
# on and Cascade's timeouts name the dead party (README "Dead or stuck peers"). It also makes
# mpirun exit 0 when ranks merely exit non-zero, so the project does not use it otherwise.
KEEP_JOB = ["--mca", "orte_abort_on_non_zero_status", "0"]


def run_and_stop(np, args, target, alpha, timeout=120, sig=signal.SIGSTOP, launcher=()):
    """Starts `mpirun LAUNCHER -np np cascade run ARGS` on a synthetic model, waits for its third
    streamed token id (decoding has begun), sends `sig` (SIGSTOP: stuck; SIGKILL: dead) to rank
    `target`, and waits for the job to end. Returns (exit code, output, seconds from the signal to
    the end); a stopped process is killed at the end."""
    marker = "--prompt-seed=%d" % os.getpid()  # finds this job's ranks and no other's
    p = subprocess.Popen([MPIRUN, "--allow-run-as-root", "--oversubscribe", *launcher, "-np", str(np), CASCADE,
                          "run", *args, marker], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    out = b""
    deadline = time.time() + timeout
    # The ids stream after the exposure table's last span-attack warning (one per CompNode).
    end_of_table = b"(the span attack)\n"
    def decoding():
        if out.count(end_of_table) < alpha:
            return False
        # Three token ids (the last three words numbers: a warning line may follow the table).
        last = out[out.rindex(end_of_table) + len(end_of_table):].split()[-3:]
        return len(last) == 3 and all(w.isdigit() for w in last)
    while not decoding() and p.poll() is None and time.time() < deadline:
        out += os.read(p.stdout.fileno(), 1)
    pid = world_ranks_of(marker).get(target)
    if pid is None:
        p.kill()
        return -1, out.decode(errors="replace") + "\n(no rank %d found)" % target, 0.0
    os.kill(pid, sig)
    t0 = time.time()
    try:
        rest, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, _ = p.communicate()
        rest += b"\n(HUNG: killed after %d s)" % timeout
    seconds = time.time() - t0
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return p.returncode, (out + rest).decode(errors="replace"), seconds


SMALL = ["--alpha", "2", "--beta", "2", "--cluster", "2", "-n", "4", "--insecure"]  # 7 ranks


def row_rel_errors(a, b, width):
    """Per row of `width` floats: max |a − b| / max |b| (the project's exactness measure)."""
    return [max(abs(x - y) for x, y in zip(a[i:i + width], b[i:i + width])) / max(abs(y) for y in b[i:i + width])
            for i in range(0, len(b), width)]


def first_json(out):
    """The first JSON object in `out` (stdout and stderr together: warnings may follow it)."""
    return json.JSONDecoder().raw_decode(out[out.index("{"):])[0]


class Cli(unittest.TestCase):
    def test_help(self):
        for sub in ([], ["generate"], ["run"], ["plan"], ["comm-model"], ["bench", "generate"], ["bench", "net"],
                    ["simulate"], ["tokenize"]):
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

    def test_plan_offset_sharding_is_refused(self):
        # The old rule: AttnNode (0,2) sees every other position (holes of 1, gap 2).
        rc, out = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "4", "--attn-sharding", "offset"])
        self.assertNotEqual(rc, 0)
        self.assertIn("AttnNode (0,2) (rank 7) has gap 2 < rho = 8", out)
        rc, out = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "8"])  # cluster: the default
        self.assertEqual(rc, 0, out)

    def test_plan_default_job_passes_with_the_span_warning(self):
        # The main job's schedule: 19 prompt tokens, 64 generated (82 positions planned). It
        # passes the check, and each CompNode is warned of what the span attack reads off its
        # layer-0 partials (the same counts as the main job prints).
        rc, out = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "8", "--tokens", "19",
                       "--generate", "64"])
        self.assertEqual(rc, 0, out)
        self.assertIn("security: OK for ρ = 8", out)
        self.assertIn("exposure over 82 planned positions (19 prompt + 63 generated)", out)
        for k, got, unseen in ((0, 48, 58), (1, 56, 58), (2, 40, 64), (3, 48, 66)):
            self.assertIn(f"warning: CompNode {k} (rank {k + 1}) recovers {got} of its {unseen} unseen positions "
                          "from its layer-0 partials (the span attack)", out)
        self.assertEqual(out.count("  warning: "), 4)
        self.assertIn("but the check does not cover the span attack: 4 CompNodes give away", out)

    def test_plan_json_exposure(self):
        rc, out = run([CASCADE, "plan", "--alpha", "4", "--beta", "4", "--cluster", "4", "--tokens", "32", "--json", "--insecure"])
        self.assertEqual(rc, 0, out)
        j = json.loads(out)
        self.assertEqual(j["schedule"]["attn_sharding"], "cluster")
        self.assertEqual(j["schedule"]["lm_head"], "client")
        p = {e["party"]: e for e in j["exposure"]["parties"]}
        self.assertEqual((p["AttnNode (0,2)"]["gap"], p["AttnNode (0,2)"]["shortest_hole"],
                          p["AttnNode (0,2)"]["observed"]), (5, 4, 16))
        self.assertEqual(p["CompNode 1"]["shortest_hole_at"], 0)
        self.assertFalse(p["CompNode 1"]["sees_generated"])

    def test_plan_refuses_insecure_schedule(self):
        rc, out = run([CASCADE, "plan", "--alpha", "1", "--beta", "1", "--cluster", "8", "--tokens", "32"])
        self.assertNotEqual(rc, 0)
        rc, out = run([CASCADE, "plan", "--alpha", "1", "--beta", "1", "--cluster", "8", "--tokens", "32", "--insecure"])
        self.assertEqual(rc, 0, out)

    def test_wrong_world_size(self):
        rc, out = mpirun(5, "-n", "2")  # the default α = β = 4, c = 8 needs 21 ranks
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
        rc, out = mpirun(7, *SMALL, "--fault", "stall:2:3", "--timeout", "5", timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"timed out after \d+ s waiting for \S+ from rank \d+ "
                              r"\((CompNode|AttnNode)[^)]*\)+ at layer [34]")

    def test_sigstop_mid_decode_names_the_stopped_party(self):
        # A real stuck process (SIGSTOP: Open MPI does not notice it), mid-decode, in an α = 4,
        # β = 1 run: the run ends on every rank within a few timeouts, non-zero, and the message
        # names the stopped party, not the healthy client the idle parties wait on.
        for target, named in ((5, r"from rank 5 \(AttnNode \(0,0\)\) at layer \d+"),
                              (2, r"from rank 2 \(CompNode 1\) at layer \d+"),
                              (0, r"(to|from) rank 0 \(client\)")):
            with self.subTest(target=target):
                rc, out, seconds = run_and_stop(
                    6, ["--alpha", "4", "--beta", "1", "--cluster", "4", "--insecure", "--timeout", "3",
                        "-n", "400", "--ignore-eos", "--model", "synthetic:smollm2-135m", "--layers", "4",
                        "--tokens", "16"], target, alpha=4)
                self.assertNotEqual(rc, 0, out)
                self.assertLess(seconds, 30, out)
                self.assertRegex(out, r"timed out after \d+ s (waiting for|sending) \S+ " + named, out)
                if target != 0:
                    self.assertNotRegex(out, r"waiting for \S+ from rank 0 \(client\)", out)

    def assert_every_rank_ended(self, out, world, dead):
        """Every rank but the dead one said why it ended: its own error, or whose it stopped for."""
        for r in range(world):
            if r != dead:
                self.assertRegex(out, r"cascade run: rank %d \([^)]*\)*: (error|stopped): " % r, out)

    def test_sigkill_mid_decode_names_the_dead_party(self):
        # A dead process (SIGKILL), mid-decode, α = 4, β = 1, under plain mpirun: Open MPI ends
        # the job about a second later (SIGCONT, 1 s, SIGTERM, SIGKILL); at its SIGCONT every
        # other rank finds the dead rank of its node gone and names its party and rank, and says
        # at which layer it was. The job ends non-zero, the client's trace is saved.
        for target, named in ((5, r"rank 5 \(AttnNode \(0,0\)\)"), (2, r"rank 2 \(CompNode 1\)"),
                              (0, r"rank 0 \(client\)")):
            with self.subTest(target=target):
                rc, out, seconds = run_and_stop(
                    6, ["--alpha", "4", "--beta", "1", "--cluster", "4", "--insecure", "--timeout", "30",
                        "-n", "400", "--ignore-eos", "--model", "synthetic:smollm2-135m", "--layers", "4",
                        "--tokens", "16"], target, alpha=4, sig=signal.SIGKILL)
                self.assertNotEqual(rc, 0, out)
                self.assertLess(seconds, 15, out)  # not the 30 s timeout
                self.assertRegex(out, r"error: " + named + r" died: its process is gone \(this rank was "
                                      r"(at layer \d+|outside the layers)\)", out)
                self.assertNotIn("timed out", out)
                self.assert_every_rank_ended(out, 6, target)

    def test_sigkill_in_prefill_names_the_dead_party_and_layer(self):
        # The party SIGKILLs itself (--fault kill) in the prefill: AttnNode (0,0) at layer 1,
        # CompNode 1 at layer 2, the client once it has sent the prompt's token ids. With --trace,
        # the client's recording is saved, marked incomplete with the reason.
        run6 = ["--alpha", "4", "--beta", "1", "--cluster", "4", "--insecure", "--timeout", "30", "-n", "4",
                "--model", "synthetic:smollm2-135m", "--layers", "4", "--tokens", "16"]
        # Whoever notices first says it; the others repeat it (stopped: …), with where the first
        # one was ("rank N was …") and where they were ("this rank was …").
        for fault, dead, named in (("kill:5:1", 5, r"rank 5 \(AttnNode \(0,0\)\) died: its process is gone "
                                                   r"(\(rank \d+ was [^)]*\) )?\(this rank was at layer 1\)"),
                                   ("kill:2:2", 2, r"rank 2 \(CompNode 1\) died: its process is gone "
                                                   r"(\(rank \d+ was [^)]*\) )?\(this rank was at layer 2\)"),
                                   ("kill:0", 0, r"rank 0 \(client\) died: its process is gone")):
            with self.subTest(fault=fault), tempfile.TemporaryDirectory() as d:
                trace = os.path.join(d, "t.h5")
                t0 = time.time()
                rc, out = mpirun(6, *run6, "--fault", fault, "--trace", trace, timeout=120)
                self.assertNotEqual(rc, 0, out)
                self.assertLess(time.time() - t0, 20, out)
                self.assertRegex(out, r"process rank %d .*exited on signal 9" % dead, out)  # mpirun's
                self.assertRegex(out, r"(error|stopped): .*" + named, out)
                self.assertNotIn("timed out", out)
                self.assertNotRegex(out, r"\(this rank was [^)]*\) \(this rank was", out)  # whose place is whose
                self.assert_every_rank_ended(out, 6, dead)
                rc, summary = run([CASCADE, "trace", "summary", trace])
                if dead == 0:  # the client, which saves the trace, is the dead one
                    self.assertIn("the file is only a placeholder", summary)
                else:
                    self.assertIn("(INCOMPLETE)", summary)
                    self.assertRegex(summary, r"the run ended early: rank 0 \(client\)(: | stopped: .*)" +
                                     named.split(r" (\(rank")[0])

    def test_sigkill_with_the_job_kept_is_named_by_the_timeouts(self):
        # If the launcher keeps the job going (Open MPI: KEEP_JOB; a rank on another node, whose
        # process this node cannot see), the timeouts name the dead party. CompNode 1 dies at
        # layer 2: the AttnNode waits on it, the other CompNodes on the AttnNode. The probe
        # finds the AttnNode alive and waiting, so only the AttnNode speaks, naming CompNode 1;
        # the others stop on its notice.
        t0 = time.time()
        rc, out = run([MPIRUN, "--allow-run-as-root", "--oversubscribe", *KEEP_JOB, "-np", "6", CASCADE, "run",
                       "--alpha", "4", "--beta", "1", "--cluster", "4", "--insecure", "--timeout", "3", "-n", "4",
                       "--model", "synthetic:smollm2-135m", "--layers", "4", "--tokens", "16",
                       "--fault", "kill:2:2"], timeout=120)
        self.assertNotEqual(rc, 0, out)  # the abort's exit status (KEEP_JOB hides plain non-zero exits)
        self.assertLess(time.time() - t0, 40, out)
        self.assertRegex(out, r"rank 5 \(AttnNode \(0,0\)\): error: timed out after \d+ s waiting for q\+kv from "
                              r"rank 2 \(CompNode 1\) at layer 2: the peer is dead or stuck", out)
        for live in (0, 1, 3, 4, 5):
            self.assertNotRegex(out, r"timed out after \d+ s (waiting for \S+ from|sending \S+ to) rank %d " % live,
                                out)
        self.assert_every_rank_ended(out, 6, 2)

    def test_killed_run_leaves_an_incomplete_trace(self):
        # The client's recording up to the end, marked incomplete with the reason that names the
        # dead party; what needs every rank's recording refuses it clearly.
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.h5")
            rc, out = mpirun(6, "--alpha", "4", "--beta", "1", "--cluster", "4", "--insecure", "--timeout", "30",
                             "-n", "4", "--model", "synthetic:smollm2-135m", "--layers", "4", "--tokens", "16",
                             "--fault", "kill:5:1", "--trace", trace, timeout=120)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("the trace so far (rank 0's recording) is in " + trace + ", marked incomplete", out)
            rc, j = run([CASCADE, "trace", "summary", trace, "--json"])
            self.assertEqual(rc, 0, j)
            j = json.loads(j)
            self.assertFalse(j["complete"])
            self.assertRegex(j["error"], r"^rank 0 \(client\)(: | stopped: .*)rank 5 \(AttnNode \(0,0\)\) died: "
                                         r"its process is gone")
            self.assertEqual([p["party"] for p in j["parties"]], ["client"])
            self.assertGreater(j["parties"][0]["spans"], 0)
            self.assertEqual(j["world_size"], 6)
            for cmd in (["simulate", trace], ["attack", "view", "--trace", trace]):
                rc, msg = run([CASCADE, *cmd])
                self.assertNotEqual(rc, 0, msg)
                self.assertIn("is incomplete: the run ended early (rank 0 (client)", msg)
                self.assertIn("holds the recordings of rank 0 of 6", msg)
            if VENV_PYTHON:  # any HDF5 reader sees the same
                rc, h = run([VENV_PYTHON, "-c", "import h5py,sys; f = h5py.File(sys.argv[1]); "
                             "print(int(f['meta'].attrs['complete']), sorted(f['ranks']))", trace])
                self.assertEqual(h.strip(), "0 ['0']", h)

    def test_party_stuck_before_start_is_named_by_the_client(self):
        # AttnNode (1,1) (rank 6) never reaches the start barrier: no collective hangs, and the
        # client, which knows who is missing, names it (the others wait longer).
        rc, out = mpirun(7, *SMALL, "--fault", "stall-start:6", "--timeout", "3", timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertIn("rank 0 (client): error: timed out after 6 s at the barrier: rank 6 (AttnNode (1,1)) never arrived", out)

    def test_party_stuck_before_its_report_is_named(self):
        rc, out = mpirun(7, *SMALL, "--fault", "stall-end:3", "--timeout", "3", timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"rank 0 \(client\): error: timed out after \d+ s waiting for report from "
                              r"rank 3 \(AttnNode \(0,0\)\)")

    def test_misrouted_message_is_caught_by_its_receiver(self):
        # CompNode 0 swaps its up messages to AttnNodes (0,0) and (0,1) at layer 2 (offset
        # sharding: both carry q and k/v rows) and skips its own check: the receivers' audit
        # must refuse the k/v rows of the other shard.
        rc, out = mpirun(7, *SMALL, "--attn-sharding", "offset", "--fault", "misroute:1:2", "--timeout", "20",
                         timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"rank [34] \(AttnNode \(0,[01]\)\): error: view violation: CompNode 0 → "
                              r"AttnNode \(0,[01]\) at layer 2 \(q\+kv\): row of position \d+ is in attention "
                              r"shard [01], not [01]")

    def test_leaked_hidden_state_is_caught_by_its_receiver(self):
        rc, out = mpirun(7, *SMALL, "--fault", "leak:2:1", "--timeout", "20", timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"error: view violation: CompNode 1 → AttnNode \(\d,\d\) at layer 1 "
                              r"\((q\+)?kv\+hidden\): an AttnNode receives no token ids, hidden states")

    def test_the_same_fault_is_refused_by_an_honest_sender(self):
        # Without the fault's "skip your own check", the sender refuses before bytes leave:
        # shown on the view check itself in tests/test_view.cpp; here only that a bad fault
        # spec is refused cleanly.
        rc, out = mpirun(7, *SMALL, "--fault", "explode:1")
        self.assertNotEqual(rc, 0)
        self.assertIn("--fault KIND:RANK[:LAYER]", out)

    def test_attn_nodes_never_open_the_model(self):
        # Ranks 3..6 (the AttnNodes) are given a model path that does not exist.
        good = [*SMALL]
        rc, out = mpirun_mpmd((3, good), (4, [*good, "--model", "/nonexistent/model.gguf"]))
        self.assertEqual(rc, 0, out)
        self.assertIn("sent = received = predicted", out)

    def test_comp_node_with_a_missing_model_fails_clearly(self):
        rc, out = mpirun_mpmd((1, SMALL), (1, [*SMALL, "--model", "/nonexistent/model.gguf"]), (5, SMALL),
                              timeout=120)
        self.assertNotEqual(rc, 0)
        self.assertIn("rank 1 (CompNode 0): error:", out)
        self.assertIn("/nonexistent/model.gguf", out)

    def test_synthetic_weights_are_shared_not_copied(self):
        # 4 layers of SmolLM2-135M's shape: 56 MB of layer weights that every CompNode reads.
        # They must be the weight cache's shared pages (RssFile), not a private copy (RssAnon).
        rc, out = mpirun(7, "--model", "synthetic:smollm2-135m", "--layers", "4", "--tokens", "32", "-n", "2",
                         "--alpha", "2", "--beta", "2", "--cluster", "4", "--insecure", "--json")
        self.assertEqual(rc, 0, out)
        j = first_json(out)
        comps = [p for p in j["parties"] if p["party"].startswith("CompNode")]
        layer_kb = 4 * 14 * 1000  # 4 layers × ~14 MB
        for p in comps:
            m = p["memory_kb"]
            self.assertGreater(m["rss_file"], layer_kb, p)     # the weights are mapped
            self.assertLess(m["rss_anon"], layer_kb / 2, p)    # and not copied
        # Shared: each CompNode's proportional share is less than what it maps.
        self.assertLess(sum(p["memory_kb"]["pss"] for p in comps), sum(p["memory_kb"]["rss"] for p in comps))

    def test_precision_bf16_run_and_bad_precision(self):
        rc, out = mpirun(7, *SMALL, "--precision", "fp16")
        self.assertNotEqual(rc, 0)
        self.assertIn("--precision", out)
        flags = open("/proc/cpuinfo").read()
        if "avx512_bf16" not in flags and "amx_bf16" not in flags:
            self.skipTest("no AVX512_BF16/AMX: bf16 runs refuse to start (checked in test_packed_gemm)")
        rc, out = mpirun(7, *SMALL, "--precision", "bf16", "--compare-reference", "--json")
        self.assertEqual(rc, 0, out)
        ref = first_json(out)["reference"]
        self.assertTrue(ref["same_tokens"], ref)
        # bf16 rounding shows (so the run was not fp32) but stays small
        self.assertGreater(ref["max_rel_err"], 1e-5, ref)
        self.assertLess(ref["max_rel_err"], 5e-2, ref)

    def test_bad_input_table(self):
        """Runs every row of README's bad-input table in a folder holding the files it names."""
        rows = bad_input_rows()
        self.assertGreaterEqual(len(rows), 25)
        with tempfile.TemporaryDirectory() as d:
            files = {"bad-magic.gguf": tiny_gguf(magic=b"GGUX"), "version-4.gguf": tiny_gguf(version=4),
                     "offset-past-eof.gguf": tiny_gguf(offset=1 << 20), "unknown-type.gguf": tiny_gguf(ttype=99),
                     "wrong-type.gguf": tiny_gguf(block_count=struct.pack("<Q", 17) + b"llama.block_count" +
                                                  struct.pack("<IQ", 8, 3) + b"one"),
                     "mamba.gguf": tiny_gguf(arch="mamba"),
                     "truncated.gguf": open(os.path.join(REPO, "data/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                                            "rb").read(1000000)}
            for name, data in files.items():
                open(os.path.join(d, name), "wb").write(data)
            rc, out = run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "3", CASCADE, "run", "-m",
                           "synthetic:tiny", "--alpha", "1", "--beta", "1", "--insecure", "-n", "2", "--trace",
                           os.path.join(d, "good.h5")])
            self.assertEqual(rc, 0, out)
            good = open(os.path.join(d, "good.h5"), "rb").read()
            open(os.path.join(d, "truncated.h5"), "wb").write(good[:20000])
            open(os.path.join(d, "corrupt.h5"), "wb").write(bytes((i * 7919 + 13) % 251 for i in range(4096)))
            if VENV_PYTHON:  # another trace version: an attribute rewritten with h5py
                open(os.path.join(d, "wrong-version.h5"), "wb").write(good)
                subprocess.run([VENV_PYTHON, "-c", "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); "
                                "f['meta'].attrs['trace_version'] = 99", os.path.join(d, "wrong-version.h5")],
                               check=True)
            for what, argv, msg, code in rows:
                with self.subTest(what):
                    if "wrong-version.h5" in argv and not VENV_PYTHON:
                        self.skipTest("no Python with h5py given (third argument) to make another trace version")
                    if argv[0] == "mpirun":
                        argv = [MPIRUN, "--allow-run-as-root", "--oversubscribe"] + argv[1:]
                    argv = [os.path.abspath(CASCADE) if a == "cascade" else a for a in argv]
                    p = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=ENV, cwd=d)
                    out = p.stdout + p.stderr
                    self.assertEqual(p.returncode, code, out[-2000:])
                    self.assertTrue(any(m in out for m in msg), "none of %s in: %s" % (msg, out[-3000:]))

    def test_serve_mode_runs_every_prompt_as_a_one_shot_run_would(self):
        # --prompts: one set of ranks, several prompts back to back; each result equals, bit for bit,
        # the one-shot run of the same prompt (logits digest and tokens); a bad line refuses the
        # whole file before any compute, naming file and line.
        with tempfile.TemporaryDirectory() as d:
            prompts = os.path.join(d, "p.jsonl")
            with open(prompts, "w") as f:
                for i in range(6):
                    f.write(json.dumps([(7 * i + k) % 250 + 1 for k in range(5 + i)]) + "\n")
            args = ["-m", "synthetic:tiny", "--alpha", "2", "--beta", "2", "--cluster", "2", "--insecure", "-n", "4"]
            rc, out = mpirun(7, *args, "--prompts", prompts)
            self.assertEqual(rc, 0, out)
            lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            self.assertEqual([l["prompt"] for l in lines], list(range(6)))
            self.assertTrue(all(len(l["rss_kb"]) == 7 for l in lines))
            for i in (0, 5):
                ids = ",".join(str((7 * i + k) % 250 + 1) for k in range(5 + i))
                logits = os.path.join(d, "one.f32")
                rc, one = mpirun(7, *args, "--ids", ids, "--logits-out", logits, "--json")
                self.assertEqual(rc, 0, one)
                import hashlib
                self.assertEqual(hashlib.sha256(open(logits, "rb").read()).hexdigest(), lines[i]["logits_sha256"], i)
                self.assertEqual(first_json(one)["tokens"], lines[i]["tokens"])
            with open(prompts, "a") as f:
                f.write("[1, 2, 99999]\n")
            rc, out = mpirun(7, *args, "--prompts", prompts)
            self.assertEqual(rc, 2, out)
            self.assertIn("p.jsonl:7: token id 99999 at position 2 is outside the vocabulary", out)
            self.assertNotIn('"prompt"', out)

    def test_backend_and_transport_errors(self):
        # NCCL moves device buffers: refused on the CPU backend by the client, before anything runs.
        rc, out = mpirun(3, "-m", "synthetic:tiny", "--alpha", "1", "--beta", "1", "--insecure", "-n", "2",
                         "--transport", "nccl")
        self.assertEqual(rc, 2, out)
        self.assertIn("--transport nccl moves payloads GPU to GPU: it needs --backend cuda", out)
        rc, out = mpirun(3, "-m", "synthetic:tiny", "--alpha", "1", "--beta", "1", "--insecure", "-n", "2",
                         "--transport", "tcp")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("--transport", out)
        rc, out = run([CASCADE, "generate", "-m", "synthetic:tiny", "-n", "2", "--backend", "tpu"])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("--backend", out)
        if os.path.exists("/dev/nvidia0"):
            self.skipTest("a GPU is present: the no-device errors below cannot happen here")
        # No GPU: every party says so and the run ends non-zero, naming the party.
        rc, out = mpirun(3, "-m", "synthetic:tiny", "--alpha", "1", "--beta", "1", "--insecure", "-n", "2",
                         "--backend", "cuda")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"rank \d \((CompNode 0|AttnNode \(0,0\))\): error: CUDA backend: (no CUDA device|this build has no CUDA)")
        rc, out = run([CASCADE, "generate", "-m", "synthetic:tiny", "-n", "2", "--backend", "cuda"])
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"error: CUDA backend: (no CUDA device|this build has no CUDA)")

    def test_threads_default_fits_the_node_and_oversubscribing_is_warned(self):
        rc, out = mpirun(7, *SMALL)  # 7 ranks on this machine's cores: one thread each, no warning
        self.assertEqual(rc, 0, out)
        self.assertNotIn("threads will contend", out)
        t = len(os.sched_getaffinity(0)) + 1  # more than the node has, whatever it has
        rc, out = mpirun(7, *SMALL, "--threads", str(t))
        self.assertEqual(rc, 0, out)
        self.assertIn(f"--threads {t} × 7 ranks on this node", out)

    def test_same_command_same_logits_bit_for_bit(self):
        # Determinism on the CPU backend: the same run twice, and with 2 threads per rank, writes
        # identical logits (oneDNN splits a GEMM's outputs, not its sums, across threads); so does
        # `generate` at 1 and 2 threads. Other (α, β) or shardings merge partials in another order:
        # equal to 1e-4, not bit for bit (README, "Determinism").
        with tempfile.TemporaryDirectory() as d:
            files = []
            for i, extra in enumerate(([], [], ["--threads", "2"])):
                f = os.path.join(d, "run%d.f32" % i)
                rc, out = mpirun(7, *SMALL, "--logits-out", f, *extra)
                self.assertEqual(rc, 0, out)
                files.append(open(f, "rb").read())
            self.assertEqual(len(files[0]), 4 * 4 * 49152)  # -n 4 rows of n_vocab floats
            self.assertEqual(files[0], files[1])
            self.assertEqual(files[0], files[2])
            gen = []
            for t in ("1", "2"):
                f = os.path.join(d, "gen%s.f32" % t)
                rc, out = run([CASCADE, "generate", "-n", "4", "--threads", t, "--logits-out", f])
                self.assertEqual(rc, 0, out)
                gen.append(open(f, "rb").read())
            self.assertEqual(gen[0], gen[1])
            a, b = array.array("f", files[0]), array.array("f", gen[0])
            self.assertEqual(len(a), len(b))
            for r, err in enumerate(row_rel_errors(a, b, 49152)):
                self.assertLessEqual(err, 1e-4, "row %d" % r)
            rc, out = mpirun(7, *SMALL, "--logits-out", "/nonexistent/dir/l.f32")
            self.assertNotEqual(rc, 0)
            self.assertIn("cannot write --logits-out file", out)
            rc, out = run([CASCADE, "generate", "--model", "synthetic:bert-tiny", "--tokens", "4",
                           "--logits-out", os.path.join(d, "x.f32")])
            self.assertNotEqual(rc, 0)
            self.assertIn("--logits-out is for decoders", out)

    def test_small_run_succeeds(self):
        rc, out = mpirun(7, *SMALL)
        self.assertEqual(rc, 0, out)
        self.assertIn("sent = received = predicted by the communication model, for every (src, dst, layer, kind)", out)
        self.assertIn("views: every message was checked", out)
        self.assertIn("cascade: warning: 2 CompNodes can read other CompNodes' tokens off their layer-0 partials", out)

    def test_run_json_and_lm_head(self):
        tokens = {}
        for head in ("client", "comp"):
            rc, out = mpirun(7, *SMALL, "--json", "--lm-head", head)
            self.assertEqual(rc, 0, out)
            j, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])  # stderr's warnings may follow
            self.assertEqual(j["lm_head"], head)
            self.assertTrue(j["bytes"]["sent_received_predicted_equal"])
            self.assertGreater(j["bytes"]["headers"], 0)
            self.assertEqual(len(j["tokens"]), 4)
            self.assertEqual(len(j["parties"]), 7)
            self.assertGreater(j["parties"][1]["memory_kb"]["rss"], 0)
            tokens[head] = j["tokens"]
        # The same tokens either way: only who computes the logits changes.
        self.assertEqual(tokens["client"], tokens["comp"])

    def test_simulate_a_recorded_trace(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "run.h5")
            rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "4", "--insecure", "-n", "3",
                             "--trace", trace)
            self.assertEqual(rc, 0, out)
            rc, out = run([CASCADE, "simulate", trace, "--net", "loopback,custom:50,1.25,wan-100m", "--json"])
            self.assertEqual(rc, 0, out)
            j = json.loads(out)
            self.assertEqual([r["net"]["name"] for r in j["results"]], ["loopback", "custom:50,1.25", "wan-100m"])
            self.assertGreater(j["receiver_measured"]["samples"], 0)
            walls = [r["predicted"]["wall_s"] for r in j["results"]]
            measured = j["results"][0]["measured"]["wall_s"]
            # Loose: this host is shared; bench/sim_validation.py measures the real error.
            self.assertLess(abs(walls[0] - measured), 0.5 * measured, out)
            self.assertLess(walls[0], walls[1])
            self.assertLess(walls[1], walls[2])
            for r in j["results"]:
                self.assertEqual(r["predicted"]["decode_steps"], 2)
                self.assertAlmostEqual(r["critical_path"]["total_s"], r["predicted"]["wall_s"], places=9)
            rc, out = run([CASCADE, "simulate", trace, "--device", "a100,cpu-measured", "--receiver", "ideal"])
            self.assertEqual(rc, 0, out)
            self.assertIn("device: a100 (compute spans: roofline of 19.5 TFLOP/s, 1555 GB/s)", out)
            self.assertIn("critical path:", out)
            self.assertIn("summary", out)

    def test_simulate_errors(self):
        rc, out = run([CASCADE, "simulate", "/nonexistent/run.h5", "--net", "lan-10g"])
        self.assertNotEqual(rc, 0)
        self.assertIn("/nonexistent/run.h5", out)
        rc, out = run([CASCADE, "simulate", "/nonexistent/run.h5", "--net", "lan10g"])
        self.assertNotEqual(rc, 0)
        self.assertIn("unknown network profile 'lan10g'", out)
        self.assertIn("custom:LAT_US,GBPS", out)
        rc, out = run([CASCADE, "simulate", "/nonexistent/run.h5", "--device", "v100"])
        self.assertNotEqual(rc, 0)
        self.assertIn("cpu-measured, cpu-thread, a100, h100", out)

    def test_bench_net(self):
        rc, out = run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2", CASCADE, "bench", "net",
                       "--max-bytes", "65536", "--factor", "4", "--seconds", "0.01", "--repeats", "1"])
        self.assertEqual(rc, 0, out)
        rows = [l.split() for l in out.splitlines() if l.strip() and l.split()[0].isdigit()]
        self.assertEqual([int(r[0]) for r in rows], [8, 32, 128, 512, 2048, 8192, 32768])
        self.assertTrue(all(r[4] == "0" for r in rows), out)  # #wrong
        self.assertIn("--net custom:", out)
        rc, out = run([CASCADE, "bench", "net"])  # one rank
        self.assertNotEqual(rc, 0)
        self.assertIn("needs exactly 2 MPI ranks", out)

    # ---- synthetic models (--model synthetic:NAME: real shapes, generated weights, no tokenizer)

    def test_synthetic_unknown_name(self):
        rc, out = run([CASCADE, "generate", "--model", "synthetic:nope"])
        self.assertNotEqual(rc, 0)
        self.assertIn("unknown synthetic model 'nope'; known: llama2-7b, llama2-13b, llama3-8b", out)
        rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "1", "--insecure", "-n", "2",
                         "--model", "synthetic:nope")
        self.assertNotEqual(rc, 0)
        self.assertEqual(out.count("unknown synthetic model 'nope'"), 1, out)  # rank 0 alone says it

    def test_synthetic_model_takes_no_text_prompt(self):
        rc, out = mpirun(3, "--alpha", "1", "--beta", "1", "--cluster", "1", "--insecure", "-n", "2",
                         "--model", "synthetic:tiny", "--prompt", "Hello")
        self.assertNotEqual(rc, 0)
        self.assertIn("synthetic:tiny has no tokenizer, so --prompt, --prompt-file and --raw do not apply: "
                      "give the prompt as --ids I,J,... or --tokens N", out)
        rc, out = run([CASCADE, "generate", "--model", "synthetic:tiny", "--prompt", "Hello"])
        self.assertNotEqual(rc, 0)
        self.assertIn("has no tokenizer", out)

    def test_synthetic_layers_bounds(self):
        rc, out = run([CASCADE, "generate", "--model", "synthetic:tiny", "--layers", "3"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--layers 3 is out of range for synthetic:tiny: it has 2 layers (1 ≤ L ≤ 2)", out)
        rc, out = run([CASCADE, "generate", "--layers", "1"])  # the default GGUF model
        self.assertNotEqual(rc, 0)
        self.assertIn("--layers 1 is for synthetic models", out)
        rc, out = run([CASCADE, "plan", "--model", "synthetic:llama3-8b", "--layers", "2", "--json"])
        self.assertEqual(rc, 0, out)
        m = json.loads(out)["model"]
        self.assertEqual((m["n_layer"], m["n_head"], m["n_head_kv"], m["d_head"], m["n_vocab"]), (2, 32, 8, 128, 128256))

    # ---- model families (gpt2, bert) ----------------------------------------------------------

    def test_bert_run_returns_every_hidden_row(self):
        with tempfile.TemporaryDirectory() as tmp:
            out_file = os.path.join(tmp, "h.f32")
            rc, out = mpirun(7, "--alpha", "2", "--beta", "2", "--cluster", "2", "--insecure", "--model",
                             "synthetic:bert-tiny", "--tokens", "10", "--json", "--compare-reference",
                             "--hidden-out", out_file)
            self.assertEqual(rc, 0, out)
            j = first_json(out)
            self.assertEqual(j["family"], "bert")
            self.assertEqual((j["hidden"]["rows"], j["hidden"]["d"]), (10, 64))
            self.assertEqual(j["tokens"], [])
            self.assertTrue(j["bytes"]["sent_received_predicted_equal"], j["bytes"]["differences"])
            self.assertLessEqual(j["reference"]["max_rel_err"], 1e-4)
            self.assertEqual(os.path.getsize(out_file), 10 * 64 * 4)
            # The same rows from the single-process forward.
            ref_file = os.path.join(tmp, "r.f32")
            rc, out = run([CASCADE, "generate", "--model", "synthetic:bert-tiny", "--tokens", "10", "--hidden-out", ref_file])
            self.assertEqual(rc, 0, out)
            self.assertIn("last hidden states: 10 × 64", out)
            a = array.array("f", open(out_file, "rb").read())
            b = array.array("f", open(ref_file, "rb").read())
            self.assertEqual(len(a), len(b))
            for r, err in enumerate(row_rel_errors(a, b, 64)):
                self.assertLessEqual(err, 1e-4, "row %d" % r)

    def test_family_input_errors(self):
        rc, out = run([CASCADE, "generate", "--model", "synthetic:tiny", "--tokens", "4", "--hidden-out", "/tmp/x.f32"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--hidden-out is for encoders (bert); llama outputs tokens", out)
        rc, out = run([CASCADE, "generate", "--model", "synthetic:bert-tiny", "--ids", "1,2,256"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--ids: token id 256 at position 2 is outside the vocabulary 0..255", out)
        rc, out = run([CASCADE, "generate", "--model", "synthetic:bert-tiny", "--ids", "1,2", "--tokens", "3"])
        self.assertNotEqual(rc, 0)
        self.assertIn("give the prompt one way", out)
        rc, out = run([CASCADE, "generate", "--model", "synthetic:bert-tiny", "--tokens", "513"])
        self.assertNotEqual(rc, 0)
        self.assertIn("input (513 tokens) exceeds the model context of 512", out)
        rc, out = mpirun(7, "--alpha", "2", "--beta", "2", "--cluster", "2", "--insecure", "--model",
                         "synthetic:bert-tiny", "--tokens", "4", "--hidden-out", "/nonexistent/dir/h.f32")
        self.assertNotEqual(rc, 0)
        self.assertIn("cannot write --hidden-out file '/nonexistent/dir/h.f32'", out)
        rc, out = run([CASCADE, "bench", "generate", "--model", "synthetic:bert-tiny", "--runs", "1"])
        self.assertNotEqual(rc, 0)
        self.assertIn("bert is an encoder", out)
        rc, out = run([CASCADE, "attack", "vocab", "--model", "synthetic:gpt2-tiny", "--tokens", "4", "-t", "1"])
        self.assertNotEqual(rc, 0)
        self.assertIn("cascade attack vocab supports the llama family only; synthetic:gpt2-tiny is gpt2", out)
        # The comm model of an encoder: one pass, every last hidden row to the client.
        rc, out = run([CASCADE, "comm-model", "--model", "synthetic:bert-tiny", "--tokens", "16", "--alpha", "2",
                       "--beta", "2", "--cluster", "2", "--json"])
        self.assertEqual(rc, 0, out)
        j = json.loads(out)
        self.assertEqual(j["generate"], 1)
        self.assertEqual(j["run"]["bytes"]["hidden"], 16 * 64 * 4)
        self.assertEqual(j["decode_step"]["bytes"]["hidden"], 0)

    def test_export_gguf(self):
        with tempfile.TemporaryDirectory() as tmp:
            f = os.path.join(tmp, "g.gguf")
            rc, out = run([CASCADE, "export-gguf", "--model", "synthetic:gpt2-tiny", "-o", f])
            self.assertEqual(rc, 0, out)
            rc, out = run([CASCADE, "export-gguf", "--model", "synthetic:gpt2-tiny", "-o", f])
            self.assertNotEqual(rc, 0)
            self.assertIn("exists (pass --force to overwrite it)", out)
            rc, out = run([CASCADE, "export-gguf", "--model", f, "-o", f + "2"])
            self.assertNotEqual(rc, 0)
            self.assertIn("export-gguf writes synthetic models", out)
            # The file generates what the synthetic model generates, token for token.
            a = run([CASCADE, "generate", "--model", f, "--tokens", "8", "-n", "6"])
            b = run([CASCADE, "generate", "--model", "synthetic:gpt2-tiny", "--tokens", "8", "-n", "6"])
            self.assertEqual(a[0], 0, a[1])
            self.assertEqual(b[0], 0, b[1])
            self.assertEqual(a[1].splitlines()[0], b[1].splitlines()[0])  # the generated ids

    def test_synthetic_run_equals_reference(self):
        rc, out = mpirun(7, *SMALL, "--model", "synthetic:tiny", "--tokens", "12", "--json", "--compare-reference")
        self.assertEqual(rc, 0, out)
        j, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])
        self.assertEqual(j["model"], "synthetic:tiny")
        self.assertIsNone(j["text"])
        self.assertEqual(j["prompt_tokens"], 12)
        self.assertTrue(j["bytes"]["sent_received_predicted_equal"], j["bytes"]["differences"])
        self.assertTrue(j["reference"]["same_tokens"])
        self.assertLessEqual(j["reference"]["max_rel_err"], 1e-4)
        self.assertEqual(len(j["tokens"]), 4)
        # The single-process command prints the same ids, for the same --tokens prompt.
        p = subprocess.run([CASCADE, "generate", "--model", "synthetic:tiny", "--tokens", "12", "-n", "4"],
                           capture_output=True, text=True, timeout=120, env=ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([int(t) for t in p.stdout.split()], j["tokens"])


if __name__ == "__main__":
    CASCADE = sys.argv[1]
    if len(sys.argv) > 2:
        MPIRUN = sys.argv[2]
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        VENV_PYTHON = sys.argv[3]
    unittest.main(argv=[sys.argv[0], "-v"])
