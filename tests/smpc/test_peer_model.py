#!/usr/bin/env python3
"""Both sides of the SMPC comparison run the same model: Cascade's plain forward (cascade
generate) and the CrypTen harness's BERT run in plaintext torch (float64, exact softmax and erf
GELU) agree to 1e-4 relative (per row, max|Δ| / max|ref|) on the weights of a synthetic BERT
that `cascade export-gguf` wrote, on the tiny test shape and on BERT-Base's real dims (2 layers).
Then Cascade over MPI (α = 2, β = 2) gives the same hidden states as its plain forward.

    test_peer_model.py CASCADE MPIEXEC HARNESS_PYTHON
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, "bench", "smpc", "crypten_bert.py")
TOL = 1e-4


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    if r.returncode != 0:
        sys.exit("FAILED: %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(cmd), r.stdout[-3000:], r.stderr[-3000:]))
    return r


def worst_row(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    return max(float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want))


def main():
    cascade, mpiexec, harness_py = sys.argv[1:4]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for model, layers, n in (("synthetic:bert-tiny", None, 24), ("synthetic:bert-base", 2, 128)):
            name = model.split(":")[1]
            gguf = os.path.join(tmp, name + ".gguf")
            cmd = [cascade, "export-gguf", "-m", model, "-o", gguf]
            if layers:
                cmd += ["--layers", str(layers)]
            run(cmd)
            d = 64 if name == "bert-tiny" else 768
            vocab = 256 if name == "bert-tiny" else 30522
            ids = np.random.default_rng(7).integers(0, vocab, n)
            ids_file = os.path.join(tmp, name + ".ids")
            with open(ids_file, "w") as f:
                f.write(" ".join(map(str, ids)))
            ours = os.path.join(tmp, name + ".cascade.f32")
            theirs = os.path.join(tmp, name + ".torch.f32")
            run([cascade, "generate", "-m", gguf, "--ids", ",".join(map(str, ids)), "--hidden-out", ours, "-t", "1"])
            run([harness_py, HARNESS, "run", "--gguf", gguf, "--ids", ids_file, "--plaintext",
                 "--softmax", "exact", "--gelu", "exact", "--out", theirs])
            a = np.fromfile(ours, dtype="<f4").reshape(n, d)
            b = np.fromfile(theirs, dtype="<f4").reshape(n, d)
            err = worst_row(a, b)
            ok = err <= TOL
            failed += not ok
            print("%s %s (%s layers, %d tokens): cascade generate vs CrypTen harness plaintext: worst row rel err %.2e"
                  % ("OK    " if ok else "NOT OK", model, layers or "all", n, err), flush=True)
            if name == "bert-tiny":  # the distributed run on the same file
                dist = os.path.join(tmp, name + ".mpi.f32")
                env = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
                run([mpiexec, "--allow-run-as-root", "--oversubscribe", "-np", "7", cascade, "run", "-m", gguf,
                     "--alpha", "2", "--beta", "2", "-c", "4", "--ids", ",".join(map(str, ids)),
                     "--hidden-out", dist, "--insecure", "--timeout", "120"], env=env)
                c = np.fromfile(dist, dtype="<f4").reshape(n, d)
                err = worst_row(c, a)
                ok = err <= TOL
                failed += not ok
                print("%s cascade run (α = 2, β = 2) vs cascade generate: worst row rel err %.2e"
                      % ("OK    " if ok else "NOT OK", err), flush=True)
    print("%s" % ("all agree" if not failed else "%d disagreements" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
