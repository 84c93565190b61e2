#!/usr/bin/env python3
"""Memory of every party of one `cascade run`, sampled from /proc while it runs.

Launches `mpirun -np 1+α+β² CASCADE run ARGS...`, finds the rank processes (descendants of
mpirun, rank from OMPI_COMM_WORLD_RANK in /proc/<pid>/environ), reads /proc/<pid>/status
(RssAnon, RssFile, RssShmem, VmHWM) and /proc/<pid>/smaps_rollup (Pss) of each about every
--interval seconds, and prints per party type (client, CompNode, AttnNode) the peaks over the
run, and the node total: the sum over all ranks of each rank's peak Pss (Pss splits a shared
page among the processes that map it, so the sum bounds what the node held; the largest sum
within one sampling round is printed too, since the ranks need not peak at the same moment).

    python3 bench/weight_memory.py [--cascade build/cascade] [--np N] -- --alpha 4 --beta 4 --cluster 4 -n 64 --insecure

Arguments it does not know go to `cascade run` (α and β, default 4, are read from them to
size -np). Ranks are single-threaded (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = 1).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("rss_anon", "rss_file", "rss_shmem", "pss", "hwm")
STATUS_KEYS = {"RssAnon": "rss_anon", "RssFile": "rss_file", "RssShmem": "rss_shmem", "VmHWM": "hwm"}


def option_value(args, name, default):
    """The value of `--name V` or `--name=V` in a pass-through argument list."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def ppid_map():
    """pid -> parent pid for every process (from /proc/<pid>/stat)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            out[int(d)] = int(s[s.rindex(")") + 2:].split()[1])  # after "(comm) state"
        except (OSError, ValueError):
            pass
    return out


def descendants(root):
    parent = ppid_map()
    kids = {}
    for pid, pp in parent.items():
        kids.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def rank_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def sample(pid):
    """kB of each field, or None once the process is gone."""
    m = dict.fromkeys(FIELDS, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in STATUS_KEYS:
                    m[STATUS_KEYS[k]] = int(v.split()[0])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    m["pss"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return m


def party_type(rank, alpha):
    return "client" if rank == 0 else "CompNode" if rank <= alpha else "AttnNode"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other arguments are passed to `cascade run`, e.g. --alpha 4 --beta 4 --cluster 4 -n 64.")
    ap.add_argument("--cascade", default=os.path.join(ROOT, "build", "cascade"), help="the cascade binary")
    ap.add_argument("--np", type=int, help="MPI ranks (default 1 + α + β² from the run arguments)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    ap.add_argument("--per-rank", action="store_true", help="also print every rank's peaks")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a, run_args = ap.parse_known_args()
    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    alpha = int(option_value(run_args, "--alpha", 4))
    beta = int(option_value(run_args, "--beta", 4))
    n = a.np or 1 + alpha + beta * beta
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n), a.cascade, "run", *run_args]

    peak = {}  # rank -> field -> kB
    pids = {}  # pid -> rank
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        samples = 0
        peak_sum_pss = 0  # the largest sum of Pss over the ranks within one sampling round
        while p.poll() is None:
            if len(pids) < n:  # still looking for ranks
                for pid in descendants(p.pid):
                    if pid not in pids:
                        r = rank_of(pid)
                        if r is not None:
                            pids[pid] = r
            round_pss = 0
            for pid, r in pids.items():
                m = sample(pid)
                if m is None:
                    continue
                round_pss += m["pss"]
                pk = peak.setdefault(r, dict.fromkeys(FIELDS, 0))
                for k in FIELDS:
                    pk[k] = max(pk[k], m[k])
            peak_sum_pss = max(peak_sum_pss, round_pss)
            samples += 1
            time.sleep(a.interval)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{stdout}\n{stderr}")
    if len(peak) != n:
        sys.exit(f"sampled {len(peak)} of {n} ranks (the run was too short to catch them all?)")

    types = ["client", "CompNode", "AttnNode"]
    by_type = {t: [r for r in sorted(peak) if party_type(r, alpha) == t] for t in types}
    summary = {}
    for t in types:
        ranks = by_type[t]
        if not ranks:
            continue
        summary[t] = dict(ranks=len(ranks),
                          **{f"max_peak_{k}_kb": max(peak[r][k] for r in ranks) for k in FIELDS},
                          sum_peak_pss_kb=sum(peak[r]["pss"] for r in ranks))
    total = sum(v["pss"] for v in peak.values())
    weights_lines = [l for l in stderr.splitlines() if "weights:" in l]
    if a.json:
        print(json.dumps(dict(command=cmd, ranks=n, samples=samples, wall_s=wall, by_type=summary,
                              per_rank={str(r): peak[r] for r in sorted(peak)},
                              node_total_pss_kb=total, node_peak_simultaneous_pss_kb=peak_sum_pss,
                              weights_messages=weights_lines), indent=2))
        return
    mib = lambda kb: kb / 1024
    print(f"# {' '.join(cmd)}")
    print(f"# {n} ranks, {samples} samples every {a.interval} s over {wall:.1f} s; MiB; peaks per rank, "
          f"max over the ranks of a type")
    for l in weights_lines:
        print(f"# {l}")
    print(f"{'party':<9} {'ranks':>5} {'RssAnon':>9} {'RssFile':>9} {'RssShmem':>9} {'Pss':>9} "
          f"{'VmHWM':>9} {'Σ Pss':>9}")
    for t, s in summary.items():
        print(f"{t:<9} {s['ranks']:>5} {mib(s['max_peak_rss_anon_kb']):>9.1f} {mib(s['max_peak_rss_file_kb']):>9.1f} "
              f"{mib(s['max_peak_rss_shmem_kb']):>9.1f} {mib(s['max_peak_pss_kb']):>9.1f} "
              f"{mib(s['max_peak_hwm_kb']):>9.1f} {mib(s['sum_peak_pss_kb']):>9.1f}")
    print(f"node total (Σ over ranks of peak Pss): {mib(total):.1f} MiB; "
          f"largest Σ Pss within one sampling round: {mib(peak_sum_pss):.1f} MiB")
    if a.per_rank:
        print(f"\n{'rank':>4} {'party':<9} {'RssAnon':>9} {'RssFile':>9} {'RssShmem':>9} {'Pss':>9} {'VmHWM':>9}")
        for r in sorted(peak):
            v = peak[r]
            print(f"{r:>4} {party_type(r, alpha):<9} {mib(v['rss_anon']):>9.1f} {mib(v['rss_file']):>9.1f} "
                  f"{mib(v['rss_shmem']):>9.1f} {mib(v['pss']):>9.1f} {mib(v['hwm']):>9.1f}")


if __name__ == "__main__":
    main()
