#!/usr/bin/env python3
"""Learning-based attack on Cascade's views (PROTOCOL.md "Attacks", issue 8; docs/attacks-learned.md).

A party that observes position s but not s-1 .. s-J holds the rows of s and s+1 (its cluster
continues) at layer l: hidden states for a CompNode, k and v rows for an AttnNode. Every row at
layer l >= 1 mixes in earlier tokens through attention, so it may betray the tokens of the hole
before it. The attack is an inversion model trained on a public corpus: an MLP (one ReLU hidden
layer, one softmax head per offset j = 1..J over the K most frequent train tokens + "other")
from [row s, row s+1 (or zeros), has-next flag] to the tokens at s-1 .. s-J. Numpy, float32,
minibatch Adam, a fixed budget of examples seen per model.

Pipeline:
  1. features: `cascade attack features` on the train and eval prompts (cached as .h5 under
     --out-dir/learned_attack/features/; a .h5 given as --train/--eval is used as is),
  2. per layer and row kind (hidden, kv, q): train on the train prompts (the last --val-frac of
     them held out for early stopping and for the confidence threshold); the weights are cached
     under --out-dir/learned_attack/models/, keyed by everything the training depends on, so a
     rerun does not train again (--retrain to force it),
  3. evaluate on the eval prompts: (i) per-offset top-1 accuracy with every row visible (the
     attack's upper bound), beside two baselines that use no rows (the most frequent token; a
     count model on the observed tokens at s, s+1); (ii) per party of Cascade schedules
     (`cascade plan --json --insecure`: each party's observed runs; --configs as the security
     sweep writes them, A,B,C[,offset|cluster]): the party's reconstruction (observed
     tokens in place, predictions within J before each observed run, nothing elsewhere) scored
     by token accuracy on unseen positions and ROUGE-L F1 against the truth, beside the floor
     2x/(1+x) of knowing a fraction x of the tokens in place,
  4. writes learned_attack.md and learned_attack_{offsets,parties,budget}.csv under --out-dir,
     and learned.csv (one row per configuration, party and attack: what scripts/security_sweep
     reads; `security_sweep --learned` runs this script with its configurations and --out).

    scripts/learned_attack.py [--train data/corpus/train.jsonl] [--eval data/corpus/eval.jsonl] \\
        [--train-prompts 2000] [--layers 1,8,16] [--kinds hidden,kv] [--configs "4,4,4;4,4,4,offset"] \\
        [--examples 200000]      # training budget per model: examples seen
    scripts/learned_attack.py --selftest     # a trivially learnable synthetic case, and the LCS
    scripts/learned_attack.py --selftest --configs "4,4,4,offset" --learned-csv x.csv  # + the parties

Run with the project's environment ($(scripts/python-env)); export OPENBLAS_CORETYPE=SkylakeX for
the C++ feature pass on this machine (Debian's OpenBLAS otherwise takes the Xeon for a Prescott).
"""
import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KINDS = ("hidden", "kv", "q")  # CompNode rows; AttnNode rows of its key shard, of its query shard


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- features --------------------------------------------------------------------------------

def features_path(src, layers, args, max_prompts):
    """The features file of `src`: src itself when it is .h5, else a cached `cascade attack
    features` run keyed by the prompts file's contents, the layers, the model and --max-tokens."""
    if src.endswith(".h5"):
        return src
    if not os.path.exists(src):
        sys.exit(f"learned_attack: prompts file '{src}' not found (scripts/corpus makes data/corpus/*.jsonl; "
                 f"or pass --train/--eval)")
    h = hashlib.sha256()
    with open(src, "rb") as f:
        h.update(f.read())
    h.update(repr((sorted(layers), args.model, args.max_tokens, max_prompts, args.q)).encode())
    name = os.path.splitext(os.path.basename(src))[0]
    out_dir = os.path.join(args.out_dir, "learned_attack", "features")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{name}.{h.hexdigest()[:12]}.h5")
    if os.path.exists(out):
        log(f"features: {out} (cached)")
        return out
    cmd = [args.cascade, "attack", "features", "-i", src, "-o", out, "--layers", ",".join(map(str, layers)),
           "--max-tokens", str(args.max_tokens), "--max-prompts", str(max_prompts)]
    if args.model:
        cmd += ["--model", args.model]
    if args.q:
        cmd += ["--q"]
    log("features: " + " ".join(cmd))
    t = time.time()
    subprocess.run(cmd, check=True)
    log(f"features: {time.time() - t:.1f} s")
    return out


class Features:
    """Tokens of one features file (include/cascade/attack_features.h), and its rows per
    (layer, kind) read on demand (rows(key); drop(key) frees them): a layer at a time in memory."""

    def __init__(self, path, layers):
        import h5py
        self.path = path
        with h5py.File(path, "r") as f:
            meta = f["meta"].attrs
            if meta.get("format") != "cascade-attack-features" or int(meta.get("complete", 0)) != 1:
                sys.exit(f"learned_attack: '{path}' is not a complete features file")
            have = [int(l) for l in meta["layers"]]
            missing = [l for l in layers if l not in have]
            if missing:
                sys.exit(f"learned_attack: '{path}' has layers {have}, not {missing}")
            self.n_layer = int(meta["n_layer"])
            self.model = str(meta.get("model", ""))
            self.keys = ({(l, "hidden") for l in layers} | {(l, "kv") for l in layers if "k" in f[f"layer_{l}"]}
                         | {(l, "q") for l in layers if "q" in f[f"layer_{l}"]})
            offsets = f["prompt_offsets"][:].astype(np.int64)
            self.tokens = f["tokens"][:].astype(np.int64)
        self.idx = None  # rows of the file this view holds (None: all)
        self._set(offsets)
        self._cache = {}

    def _set(self, offsets):
        self.offsets = offsets
        self.n_prompts = len(offsets) - 1
        lens = np.diff(offsets)
        self.prompt = np.repeat(np.arange(self.n_prompts), lens)
        self.pos = np.arange(offsets[-1]) - offsets[self.prompt]
        self.length = lens[self.prompt]  # length of each row's prompt

    def rows(self, key):
        if key not in self._cache:
            import h5py
            if key not in self.keys:
                raise KeyError(key)
            with h5py.File(self.path, "r") as f:
                g = f[f"layer_{key[0]}"]
                r = np.concatenate([g["k"][:], g["v"][:]], axis=1) if key[1] == "kv" else g[key[1]][:]
            self._cache[key] = r if self.idx is None else r[self.idx]
        return self._cache[key]

    def drop(self, key):
        self._cache.pop(key, None)

    def subset(self, prompts):
        """A view of some prompts (its rows read on demand too)."""
        sub = Features.__new__(Features)
        sub.path, sub.n_layer, sub.keys, sub._cache = self.path, self.n_layer, self.keys, {}
        sub.model = self.model
        idx = np.concatenate([np.arange(self.offsets[p], self.offsets[p + 1]) for p in prompts])
        sub.idx = idx if self.idx is None else self.idx[idx]
        sub.tokens = self.tokens[idx]
        sub._set(np.concatenate([[0], np.cumsum(np.diff(self.offsets)[prompts])]))
        return sub


# ---- the inversion model ---------------------------------------------------------------------

class Vocab:
    """The K most frequent train tokens; class K is "other"."""

    def __init__(self, train_tokens, K):
        ids, counts = np.unique(train_tokens, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:K]
        self.ids = ids[order]
        self.K = len(self.ids)
        self.lookup = {int(t): i for i, t in enumerate(self.ids)}

    def classes(self, tokens):
        return np.array([self.lookup.get(int(t), self.K) for t in tokens], dtype=np.int64)

    def coverage(self, tokens):
        return float(np.mean(self.classes(tokens) < self.K)) if len(tokens) else 0.0


def targets(feat, cls, J):
    """Y (T, J): class of the token at p-j, -1 where p-j < 0."""
    T = len(feat.tokens)
    Y = np.full((T, J), -1, dtype=np.int64)
    for j in range(1, J + 1):
        ok = feat.pos >= j
        Y[ok, j - 1] = cls[np.nonzero(ok)[0] - j]
    return Y


class MLP:
    """x (D) -> relu(x W1 + b1) (H) -> J heads of K+1 logits."""

    def __init__(self, D, H, J, C, prior, rng):
        self.D, self.H, self.J, self.C = D, H, J, C
        self.W1 = (rng.standard_normal((D, H)) * np.sqrt(2.0 / D)).astype(np.float32)
        self.b1 = np.zeros(H, np.float32)
        self.W2 = (rng.standard_normal((H, J * C)) * np.sqrt(1.0 / H) * 0.5).astype(np.float32)
        self.b2 = np.log(prior + 1e-6).astype(np.float32).reshape(J * C)  # start at the class prior
        self.params = [self.W1, self.b1, self.W2, self.b2]

    def n_params(self):
        return sum(p.size for p in self.params)

    def flops_train_per_example(self):
        # forward x W1 and h W2, backward dW2, dh and dW1 (no dx): 2·(2·D·H + 3·H·J·C)
        return 2 * (2 * self.D * self.H + 3 * self.H * self.J * self.C)

    def forward(self, X, dropout=0.0, rng=None):
        a = X @ self.W1
        a += self.b1
        h = np.maximum(a, 0, out=a)
        if dropout > 0:  # inverted dropout on the hidden units (training only)
            h *= (rng.random(h.shape, dtype=np.float32) >= dropout) * np.float32(1.0 / (1.0 - dropout))
        z = h @ self.W2
        z += self.b2
        return h, z.reshape(len(X), self.J, self.C)

    def probs(self, X):
        _, z = self.forward(X)
        z -= z.max(axis=2, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=2, keepdims=True)
        return z

    def loss_grad(self, X, Y, dropout=0.0, rng=None):
        """Mean cross-entropy over the valid (row, head) pairs, and the gradients."""
        h, z = self.forward(X, dropout, rng)
        z -= z.max(axis=2, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=2, keepdims=True)  # p
        valid = Y >= 0
        n = max(int(valid.sum()), 1)
        b, j = np.nonzero(valid)
        loss = -float(np.log(z[b, j, Y[b, j]] + 1e-12).sum()) / n
        z[b, j, Y[b, j]] -= 1.0
        z[~valid] = 0.0
        z *= 1.0 / n
        dz = z.reshape(len(X), self.J * self.C)
        dW2 = h.T @ dz
        db2 = dz.sum(axis=0)
        dh = dz @ self.W2.T
        dh *= h > 0
        dW1 = X.T @ dh
        db1 = dh.sum(axis=0)
        return loss, [dW1, db1, dW2, db2]


class Adam:
    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            g *= g
            g *= 1 - self.b2
            v += g
            # p -= lr/c1 · m / (sqrt(v/c2) + eps), in place
            np.sqrt(v, out=g)
            g *= 1.0 / np.sqrt(c2)
            g += self.eps
            np.divide(m, g, out=g)
            g *= self.lr / c1
            p -= g


class Inputs:
    """[row s, row s+1 or zeros, has-next] for rows of one Features, standardised."""

    def __init__(self, feat, key, mean, std):
        R = (feat.rows(key) - mean) / std
        self.R = R.astype(np.float32)
        self.has_next = (feat.pos + 1 < feat.length)
        self.d = R.shape[1]

    def batch(self, idx, next_mask):
        """next_mask (len idx) bool: whether row s+1 is given (only where it exists)."""
        nm = next_mask & self.has_next[idx]
        X = np.zeros((len(idx), 2 * self.d + 1), np.float32)
        X[:, :self.d] = self.R[idx]
        nxt = idx[nm] + 1
        X[nm, self.d:2 * self.d] = self.R[nxt]
        X[nm, -1] = 1.0
        return X


def train_model(train, val, key, vocab, args, rng):
    """Trains one MLP on `train` rows of `key`; early stopping on `val` loss. Returns the model,
    the standardisation and the budget record."""
    J, C = args.J, vocab.K + 1
    R = train.rows(key)
    mean = R.mean(axis=0)
    std = R.std(axis=0) + 1e-6
    Xtr = Inputs(train, key, mean, std)
    Xva = Inputs(val, key, mean, std)
    Ytr = targets(train, vocab.classes(train.tokens), J)
    Yva = targets(val, vocab.classes(val.tokens), J)
    prior = np.stack([np.bincount(Ytr[Ytr[:, j] >= 0, j], minlength=C) for j in range(J)]).astype(np.float64)
    prior /= prior.sum(axis=1, keepdims=True)
    model = MLP(2 * Xtr.d + 1, args.hidden, J, C, prior, rng)
    opt = Adam(model.params, args.lr)
    T = len(train.tokens)
    # Examples: every train position with at least one target (pos >= 1).
    ex = np.nonzero(train.pos >= 1)[0]
    va_idx = np.nonzero(val.pos >= 1)[0]

    def val_loss():
        tot, n = 0.0, 0
        for i in range(0, len(va_idx), 2048):
            idx = va_idx[i:i + 2048]
            P = model.probs(Xva.batch(idx, np.ones(len(idx), bool)))
            Y = Yva[idx]
            b, j = np.nonzero(Y >= 0)
            tot -= float(np.log(P[b, j, Y[b, j]] + 1e-12).sum())
            n += len(b)
        return tot / max(n, 1)

    t0 = time.time()
    best = (val_loss(), [p.copy() for p in model.params], 0)
    log(f"  train {key}: {len(ex)} examples ({T} rows), D={model.D} H={model.H} J={J} C={C}, "
        f"{model.n_params() / 1e6:.2f} M parameters; val loss at start {best[0]:.3f}")
    steps = seen = 0
    epoch = 0
    stop = False
    while epoch < args.epochs and not stop:
        epoch += 1
        perm = ex[rng.permutation(len(ex))]
        ep_loss, ep_n = 0.0, 0
        for i in range(0, len(perm), args.batch):
            idx = perm[i:i + args.batch]
            # Row s+1 withheld now and then: a party's run can end at s (its last position).
            nm = rng.random(len(idx)) >= args.drop_next
            loss, grads = model.loss_grad(Xtr.batch(idx, nm), Ytr[idx], args.dropout, rng)
            opt.step(grads)
            steps += 1
            seen += len(idx)
            ep_loss += loss * len(idx)
            ep_n += len(idx)
            if seen >= args.examples or time.time() - t0 > args.budget_s:
                stop = True
                break
        vl = val_loss()
        log(f"    epoch {epoch}{' (end of the budget)' if stop else ''}: train loss {ep_loss / max(ep_n, 1):.3f}, "
            f"val loss {vl:.3f}, {time.time() - t0:.0f} s")
        if vl < best[0]:
            best = (vl, [p.copy() for p in model.params], epoch)
    for p, b in zip(model.params, best[1]):
        p[...] = b
    wall = time.time() - t0
    budget = {"rows": key[1], "layer": key[0], "train_rows": T, "examples": len(ex), "epochs": epoch,
              "best_epoch": best[2], "steps": steps, "examples_seen": seen, "batch": args.batch,
              "params": model.n_params(), "D": model.D, "H": model.H, "J": J, "C": C,
              "flops": float(model.flops_train_per_example()) * seen, "wall_s": wall, "val_loss": best[0]}
    return model, (mean, std), budget


TRAIN_SETTINGS = ("J", "hidden", "batch", "lr", "examples", "epochs", "budget_s", "dropout", "drop_next")


def model_cache_path(args, train, val, key, vocab, rng):
    """Where the weights trained on `key` with these settings are cached: under
    --out-dir/learned_attack/models/, keyed by the training settings, the model and tokens of the
    train and validation prompts, the output classes and the random generator's state before
    training (the models share one generator, so a cached model is exactly the one a fresh run
    would train, and the generator is restored to its state after it)."""
    h = hashlib.sha256()
    h.update(repr([(k, getattr(args, k)) for k in TRAIN_SETTINGS]).encode())
    h.update(repr((tuple(key), train.model, val.model)).encode())
    for a in (train.tokens, train.offsets, val.tokens, val.offsets, vocab.ids):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    h.update(json.dumps(rng.bit_generator.state, sort_keys=True).encode())
    out_dir = os.path.join(args.out_dir, "learned_attack", "models")
    return os.path.join(out_dir, f"layer{key[0]}-{key[1]}.{h.hexdigest()[:16]}.npz")


def train_cached(train, val, key, vocab, args, rng):
    """train_model, or its cached result (model_cache_path) when this exact training ran before."""
    path = model_cache_path(args, train, val, key, vocab, rng)
    if os.path.exists(path) and not args.retrain:
        with np.load(path, allow_pickle=False) as z:
            W1, b1, W2, b2 = z["W1"], z["b1"], z["W2"], z["b2"]
            J = int(z["J"])
            model = MLP.__new__(MLP)
            model.D, model.H, model.J, model.C = W1.shape[0], W1.shape[1], J, W2.shape[1] // J
            model.W1, model.b1, model.W2, model.b2 = W1, b1, W2, b2
            model.params = [model.W1, model.b1, model.W2, model.b2]
            norm = (z["mean"], z["std"])
            budget = json.loads(str(z["budget"]))
            rng.bit_generator.state = json.loads(str(z["rng_after"]))
        budget["cached"] = True
        log(f"  {key}: trained weights from {path} (cached; trained in {budget['wall_s']:.0f} s)")
        return model, norm, budget
    model, norm, budget = train_model(train, val, key, vocab, args, rng)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part.npz"
    np.savez(tmp, W1=model.W1, b1=model.b1, W2=model.W2, b2=model.b2, J=np.int64(model.J), mean=norm[0],
             std=norm[1], budget=json.dumps(budget), rng_after=json.dumps(rng.bit_generator.state))
    os.replace(tmp, path)
    log(f"  {key}: weights cached in {path}")
    budget["cached"] = False
    return model, norm, budget


def predict(model, norm, feat, key, with_next, bs=2048):
    """Top-1 class among the K real tokens and its probability, per row and head: (T, J) each."""
    X = Inputs(feat, key, *norm)
    T = len(feat.tokens)
    cls = np.zeros((T, model.J), np.int64)
    prob = np.zeros((T, model.J), np.float32)
    for i in range(0, T, bs):
        idx = np.arange(i, min(i + bs, T))
        P = model.probs(X.batch(idx, np.full(len(idx), with_next)))[:, :, :-1]  # drop "other"
        cls[idx] = P.argmax(axis=2)
        prob[idx] = P.max(axis=2)
    return cls, prob


class Prediction:
    """Token and confidence for the tokens at s-1..s-J from the rows of s (and s+1 when given)."""

    def __init__(self, tok_next, p_next, tok_alone, p_alone):
        self.tok = (tok_next, tok_alone)
        self.p = (p_next, p_alone)


def model_prediction(model, norm, feat, key, vocab):
    cn, pn = predict(model, norm, feat, key, True)
    ca, pa = predict(model, norm, feat, key, False)
    return Prediction(vocab.ids[cn], pn, vocab.ids[ca], pa)


def count_prediction(train, feat, J):
    """Baseline without rows: the token at s-j from counts of (t_s, t_s+1) -> t_s-j in the train
    prompts, backing off to t_s alone, then to the most frequent token at offset j."""
    T = len(feat.tokens)
    toks = [np.zeros((T, J), np.int64) for _ in range(2)]
    probs = [np.zeros((T, J), np.float32) for _ in range(2)]
    tr_next = np.where(train.pos + 1 < train.length, np.roll(train.tokens, -1), -1)
    fe_next = np.where(feat.pos + 1 < feat.length, np.roll(feat.tokens, -1), -1)
    for j in range(1, J + 1):
        ok = np.nonzero(train.pos >= j)[0]
        tgt = train.tokens[ok - j]
        major_ids, major_counts = np.unique(tgt, return_counts=True)
        major = int(major_ids[major_counts.argmax()])
        major_p = float(major_counts.max() / len(tgt))
        tables = []
        for ctx in (np.stack([train.tokens[ok], tr_next[ok]], 1), train.tokens[ok][:, None]):
            table = {}
            for c, t in zip(map(tuple, ctx.tolist()), tgt.tolist()):
                d = table.setdefault(c, {})
                d[t] = d.get(t, 0) + 1
            best = {}
            for c, d in table.items():
                t, n = max(d.items(), key=lambda kv: kv[1])
                best[c] = (t, n / sum(d.values()))
            tables.append(best)
        for i in range(T):
            for w, use_next in ((0, True), (1, False)):
                got = None
                if use_next and fe_next[i] >= 0:
                    got = tables[0].get((int(feat.tokens[i]), int(fe_next[i])))
                if got is None:
                    got = tables[1].get((int(feat.tokens[i]),))
                if got is None:
                    got = (major, major_p)
                toks[w][i, j - 1], probs[w][i, j - 1] = got
    return Prediction(toks[0], probs[0], toks[1], probs[1])


def majority_prediction(train, feat, J):
    T = len(feat.tokens)
    tok = np.zeros((T, J), np.int64)
    for j in range(1, J + 1):
        ok = np.nonzero(train.pos >= j)[0]
        ids, counts = np.unique(train.tokens[ok - j], return_counts=True)
        tok[:, j - 1] = ids[counts.argmax()]
    p = np.zeros((T, J), np.float32)
    return Prediction(tok, p, tok, p)


# ---- evaluation ------------------------------------------------------------------------------

def offset_accuracy(pred, feat, J):
    """(i) Every row visible: the token at p-j predicted from rows p, p+1 (row p alone at the
    prompt's last position), top-1, over eval positions p >= j."""
    out = []
    last = feat.pos + 1 >= feat.length
    for j in range(1, J + 1):
        ok = np.nonzero(feat.pos >= j)[0]
        tok = np.where(last[ok], pred.tok[1][ok, j - 1], pred.tok[0][ok, j - 1])
        out.append(float(np.mean(tok == feat.tokens[ok - j])))
    return out


def lcs_lengths(truth, recon):
    """LCS length of truth (N) against every row of recon (P, M), entries < 0 never matching.
    Row-by-row DP, vectorised over parties and columns: dp_i[j] = max over k <= j of
    max(dp_{i-1}[k], dp_{i-1}[k-1] + 1 where truth[i] == recon[k-1])."""
    P, M = recon.shape
    dp = np.zeros((P, M + 1), np.int32)
    for t in truth:
        cand = np.maximum(dp[:, 1:], np.where(recon == t, dp[:, :-1] + 1, 0))
        dp[:, 1:] = np.maximum.accumulate(cand, axis=1)
    return dp[:, M]


def lcs_slow(a, b):
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            dp[i + 1][j + 1] = dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
    return dp[len(a)][len(b)]


def parse_config(text):
    """One schedule as the security sweep writes it: A,B,C[,offset|cluster] (alpha, beta, c;
    attention sharding, default cluster). Its name is the sweep's: a{A}b{B}c{C}-{sharding}."""
    parts = [p.strip() for p in text.strip().split(",")]
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts[:3]):
        raise ValueError(f"configuration '{text}': expected A,B,C or A,B,C,offset|cluster")
    sharding = parts[3] if len(parts) == 4 else "cluster"
    if sharding not in ("offset", "cluster"):
        raise ValueError(f"configuration '{text}': the attention sharding is offset or cluster, not '{sharding}'")
    a, b, c = map(int, parts[:3])
    return {"alpha": a, "beta": b, "c": c, "sharding": sharding, "name": f"a{a}b{b}c{c}-{sharding}"}


def parse_configs(text):
    """--configs: schedules separated by ';' or whitespace (the sweep's --configs), '' for none."""
    out = []
    for item in re.split(r"[;\s]+", text.strip()):
        if item:
            cfg = parse_config(item)
            if cfg["name"] not in [c["name"] for c in out]:
                out.append(cfg)
    return out


def config_label(cfg):
    """(α,β,c) for the report; the sharding too when it is not the default cluster."""
    label = "(%d,%d,%d)" % (cfg["alpha"], cfg["beta"], cfg["c"])
    return label if cfg["sharding"] == "cluster" else label + " " + cfg["sharding"]


def plan_parties(args, cfg, n_max):
    """Every party of the schedule cfg (cdelta, its attention sharding) over n_max positions,
    from `cascade plan --json`, --insecure (the sweep attacks refused schedules too, e.g. 2,1,1
    and every offset one): its observed positions (the runs of the exposure report) and, per
    observed position, which rows it holds there: hidden rows for a CompNode; for AttnNode
    (a, b) k/v rows at the positions of key shard b and q rows only at those of query shard a
    (the schedule's att array gives each position's shard under either sharding)."""
    cmd = [args.cascade, "plan", "--alpha", str(cfg["alpha"]), "--beta", str(cfg["beta"]), "--cluster",
           str(cfg["c"]), "--attn-sharding", cfg["sharding"], "--tokens", str(n_max), "--generate", "1",
           "--insecure", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"learned_attack: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.strip()}")
    j = json.loads(p.stdout)
    att = np.array(j["schedule"]["att"][:n_max])
    parties = []
    for p in j["exposure"]["parties"]:
        obs = np.zeros(n_max, bool)
        for a, b in p["runs"]:
            obs[a:min(b, n_max - 1) + 1] = True
        party = {"name": p["party"], "kind": p["kind"], "observed": obs}
        if p["kind"] == "attn":
            kv = obs & (att == p["b"])
            q_only = obs & ~kv
            assert np.all(att[q_only] == p["a"]), "an AttnNode observes its two shards only"
            party["q_only"] = q_only
        parties.append(party)
    return parties


def party_eval(feat, parties, preds, src, J, tau):
    """(ii) Per party and prompt: observed tokens in place, the predictions (confidence >= tau)
    at the unseen positions within J before an observed position s, nothing elsewhere. The
    prediction at s-j comes from preds[src[party][s]] (the model of the rows the party holds at
    s), with row s+1 when the party holds s+1 from the same source. Returns per party sums over
    prompts: ROUGE-L F1, floor, observed fraction x, unseen positions, those within reach (J
    before an observed one), predictions placed, correct placed, correct of all."""
    P = len(parties)
    acc = {k: np.zeros(P) for k in ("rouge", "floor", "x", "unseen", "reach", "placed", "correct", "correct_all")}
    for i in range(feat.n_prompts):
        o0, o1 = feat.offsets[i], feat.offsets[i + 1]
        N = o1 - o0
        truth = feat.tokens[o0:o1]
        obs = np.stack([p["observed"][:N] for p in parties])  # (P, N)
        srcs = np.stack([sr[:N] for sr in src])                # (P, N) index into preds
        idx = np.arange(N)
        # next observed position after u, per party (N: none)
        nxt_obs = np.where(obs, idx, N)
        nxt = np.minimum.accumulate(nxt_obs[:, ::-1], axis=1)[:, ::-1]  # first observed >= u
        nxt = np.concatenate([nxt[:, 1:], np.full((P, 1), N)], axis=1)  # first observed > u
        j = nxt - idx
        reach = (~obs) & (nxt < N) & (j <= J)
        recon = np.where(obs, truth, -1)
        s = np.minimum(nxt, N - 1)
        sn = np.minimum(s + 1, N - 1)
        src_s = np.take_along_axis(srcs, s, axis=1)
        has_next = ((s + 1 < N) & np.take_along_axis(obs, sn, axis=1)
                    & (np.take_along_axis(srcs, sn, axis=1) == src_s))
        jj = np.clip(j, 1, J) - 1
        rows = o0 + s
        tok = np.zeros((P, N), np.int64)
        prb = np.zeros((P, N), np.float32)
        for k, pred in enumerate(preds):
            use = src_s == k
            tok = np.where(use, np.where(has_next, pred.tok[0][rows, jj], pred.tok[1][rows, jj]), tok)
            prb = np.where(use, np.where(has_next, pred.p[0][rows, jj], pred.p[1][rows, jj]), prb)
        place = reach & (prb >= tau)
        recon = np.where(place, tok, recon)
        # left-justify what was placed (dropped positions removed), pad with -2
        keep = recon >= 0
        lens = keep.sum(axis=1)
        packed = np.full((P, N), -2, np.int64)
        order = np.argsort(~keep, axis=1, kind="stable")
        packed_vals = np.take_along_axis(recon, order, axis=1)
        mask = np.arange(N)[None, :] < lens[:, None]
        packed[mask] = packed_vals[mask]
        lcs = lcs_lengths(truth, packed)
        prec = np.where(lens > 0, lcs / np.maximum(lens, 1), 0.0)
        rec = lcs / N
        f1 = np.where(lcs > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        x = obs.sum(axis=1) / N
        correct = reach & (tok == truth[None, :])
        acc["rouge"] += f1
        acc["floor"] += 2 * x / (1 + x)
        acc["x"] += x
        acc["unseen"] += (~obs).sum(axis=1)
        acc["reach"] += reach.sum(axis=1)
        acc["placed"] += place.sum(axis=1)
        acc["correct"] += (correct & place).sum(axis=1)
        acc["correct_all"] += correct.sum(axis=1)
    return acc


def summarise(acc, parties, kind, n_prompts):
    sel = np.array([p["kind"] == kind for p in parties])
    if not sel.any():
        return None
    r = acc["rouge"][sel] / n_prompts
    fl = acc["floor"][sel] / n_prompts
    return {"parties": int(sel.sum()), "x": float(np.mean(acc["x"][sel] / n_prompts)),
            "floor": float(np.mean(fl)), "rouge": float(np.mean(r)), "gain": float(np.mean(r - fl)),
            "max_rouge": float(np.max(r)), "max_gain": float(np.max(r - fl)),
            "unseen_acc": float(acc["correct"][sel].sum() / max(acc["unseen"][sel].sum(), 1)),
            "reach": float(acc["reach"][sel].sum() / max(acc["unseen"][sel].sum(), 1)),
            "reach_acc": float(acc["correct_all"][sel].sum() / max(acc["reach"][sel].sum(), 1)),
            "placed": float(acc["placed"][sel].sum() / max(acc["reach"][sel].sum(), 1))}


TAUS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.01)  # 1.01: place nothing (the floor)


def evaluate_parties(val, ev, parties, kind, preds_val, preds_ev, src, J):
    """The parties of one kind under one attack: the confidence threshold chosen on the
    validation prompts (mean ROUGE-L), then applied to the eval prompts. Returns (tau, summary at
    tau, summary at tau = 0, per-party rows at tau: per_party)."""
    sel = [i for i, p in enumerate(parties) if p["kind"] == kind]
    ps, sr = [parties[i] for i in sel], [src[i] for i in sel]
    best = None
    for tau in TAUS:
        s = summarise(party_eval(val, ps, preds_val, sr, J, tau), ps, kind, val.n_prompts)
        if best is None or s["rouge"] > best[1]:
            best = (tau, s["rouge"])
    tau = best[0]
    acc = party_eval(ev, ps, preds_ev, sr, J, tau)
    at_tau = summarise(acc, ps, kind, ev.n_prompts)
    at_0 = at_tau if tau == 0.0 else summarise(party_eval(ev, ps, preds_ev, sr, J, 0.0), ps, kind, ev.n_prompts)
    return tau, at_tau, at_0, per_party(acc, ps, ev.n_prompts)


def per_party(acc, parties, n_prompts):
    """One row per party from party_eval's sums: its mean over the prompts of ROUGE-L, floor,
    gain and x, and its unseen accuracy (correct placed predictions / positions it did not see)."""
    out = []
    for i, p in enumerate(parties):
        r, fl = acc["rouge"][i] / n_prompts, acc["floor"][i] / n_prompts
        out.append({"party": p["name"], "rouge_tokens": float(r), "floor": float(fl), "gain": float(r - fl),
                    "unseen_accuracy": float(acc["correct"][i] / max(acc["unseen"][i], 1)),
                    "x": float(acc["x"][i] / n_prompts), "prompts": int(n_prompts)})
    return out


LEARNED_CSV_KEYS = ("config", "party", "attack", "budget", "rouge_tokens", "unseen_accuracy", "floor", "gain", "x",
                    "tau", "prompts", "train_examples")


def sweep_attack_name(keys):
    """The attack's name in the security sweep's table (learned.csv): the layer of the model; the
    rows are the party's (hidden for CompNodes, k/v for AttnNodes, "+q": q rows at the query
    shard's positions too)."""
    if keys == ["counts"]:
        return "counts (no rows)"
    kinds = "+".join(k[1] for k in keys)
    return f"learned L{keys[0][0]}" + ("" if kinds in ("hidden", "kv") else f" {kinds}")


def write_learned_csv(path, rows):
    """learned.csv for scripts/security_sweep: one row per (configuration, party, attack), the
    party's mean over the eval prompts. budget is 0: the attack's budget is its training
    (train_examples, examples seen per model), not fills per hole as in the sweep's vocab-gap rows."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".part", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LEARNED_CSV_KEYS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in LEARNED_CSV_KEYS})
    os.replace(path + ".part", path)


def attack_parties(plans, preds, layers, val, ev, J, examples):
    """(ii) Every party of every schedule in plans [(cfg, parties)] under every attack in preds
    (val and eval predictions per key: "counts", (layer, kind)). A CompNode attacks with the
    hidden-row model of a layer; an AttnNode with the k/v-row model, and where a q-row model of
    the layer was trained also ("kv+q") with it at the positions of its query shard (where it
    holds q rows, not k/v rows). The count baseline serves every party. Returns the report's rows
    (per configuration, kind of party and attack) and learned.csv's (per party too)."""
    party_rows, learned_rows = [], []
    for cfg, parties in plans:
        comp_src = [np.where(p["observed"], 0, -1) for p in parties]
        kvq_src = [np.where(p["observed"], np.where(p.get("q_only", np.zeros_like(p["observed"])), 1, 0), -1)
                   for p in parties]
        attacks = [("comp", "token counts at s, s+1 (no rows)", ["counts"], comp_src),
                   ("attn", "token counts at s, s+1 (no rows)", ["counts"], comp_src)]
        for layer in layers:
            if (layer, "hidden") in preds:
                attacks.append(("comp", f"MLP layer {layer} hidden", [(layer, "hidden")], comp_src))
            if (layer, "kv") in preds:
                label = f"MLP layer {layer} kv" + (" (as if k/v rows at every observed position)"
                                                   if (layer, "q") in preds else "")
                attacks.append(("attn", label, [(layer, "kv")], comp_src))
                if (layer, "q") in preds:
                    attacks.append(("attn", f"MLP layer {layer} kv+q", [(layer, "kv"), (layer, "q")], kvq_src))
        for kind_p, name, keys, src in attacks:
            if not any(p["kind"] == kind_p for p in parties):
                continue
            tau, s, s0, each = evaluate_parties(val, ev, parties, kind_p, [preds[k][0] for k in keys],
                                                [preds[k][1] for k in keys], src, J)
            learned_rows += [{"config": cfg["name"], "attack": sweep_attack_name(keys), "budget": 0, "tau": tau,
                              "train_examples": 0 if keys == ["counts"] else examples, **r} for r in each]
            party_rows.append({"config": config_label(cfg), "party": "CompNode" if kind_p == "comp" else "AttnNode",
                               "attack": name, "tau": tau, **s, "rouge_tau0": s0["rouge"],
                               "unseen_acc_tau0": s0["unseen_acc"]})
            log(f"  {party_rows[-1]['config']} {party_rows[-1]['party']:8s} {name:32s} tau={tau:.1f} "
                f"ROUGE-L {s['rouge']:.3f} (floor {s['floor']:.3f}, gain {s['gain']:+.3f}, max over parties "
                f"{s['max_rouge']:.3f}) unseen acc {s['unseen_acc']:.3f}")
    return party_rows, learned_rows


# ---- self-test -------------------------------------------------------------------------------

def selftest(args):
    """A case an inversion MLP must learn: row p = E[t_p] + 0.7·F[t_p-1] + noise over 300 random
    tokens. Offset 1 must be recovered (well above chance), offset 3 must stay near chance.
    The configuration syntax always; with --learned-csv also the parties of --configs (planned by
    --cascade) attacked with that model, learned.csv written, and the weights' cache (under
    --out-dir) read back."""
    rng = np.random.default_rng(0)
    for text, want in (("4,4,4", "a4b4c4-cluster"), ("4,4,4,offset", "a4b4c4-offset"),
                       ("8,2,8,cluster", "a8b2c8-cluster"), (" 2,1,1 ", "a2b1c1-cluster")):
        assert parse_config(text)["name"] == want, (text, parse_config(text))
    assert [c["name"] for c in parse_configs("2,1,1;4,4,4,offset 8,8,8,cluster;;4,4,4,offset")] == \
        ["a2b1c1-cluster", "a4b4c4-offset", "a8b8c8-cluster"]
    for bad in ("4,4", "4,4,4,diagonal", "a,4,4", "4,4,4,offset,1"):
        try:
            parse_config(bad)
        except ValueError:
            continue
        raise AssertionError(f"configuration '{bad}' must be refused")
    for _ in range(200):  # the vectorised LCS against the textbook DP
        a = rng.integers(0, 5, rng.integers(1, 12))
        b = rng.integers(-2, 5, (3, rng.integers(1, 12)))
        got = lcs_lengths(a, b)
        want = [lcs_slow(list(a), [x for x in row if x >= 0]) for row in b]
        assert list(got) == want, (a, b, got, want)
    V, d = 250, 48
    E = rng.standard_normal((V, d)).astype(np.float32)
    F = rng.standard_normal((V, d)).astype(np.float32)

    def fake(n_prompts):
        f = Features.__new__(Features)
        lens = rng.integers(20, 40, n_prompts)
        f.offsets = np.concatenate([[0], np.cumsum(lens)])
        f.n_prompts = n_prompts
        f.tokens = rng.integers(0, V, f.offsets[-1])
        f.prompt = np.repeat(np.arange(n_prompts), lens)
        f.pos = np.arange(f.offsets[-1]) - f.offsets[f.prompt]
        f.length = lens[f.prompt]
        prev = np.where(f.pos >= 1, np.roll(f.tokens, 1), 0)
        R = E[f.tokens] + 0.7 * F[prev] * (f.pos >= 1)[:, None] + 0.3 * rng.standard_normal((len(f.tokens), d))
        f.keys, f.idx, f._cache = {(1, "hidden")}, None, {(1, "hidden"): R.astype(np.float32)}
        f.model, f.path = "selftest", ""
        return f

    train, val, ev = fake(400), fake(40), fake(60)
    vocab = Vocab(train.tokens, 256)
    a = argparse.Namespace(J=3, hidden=128, lr=2e-3, epochs=6, batch=256, budget_s=60, examples=10 ** 9, drop_next=0.1,
                           dropout=0.0)
    model, norm, budget = train_model(train, val, (1, "hidden"), vocab, a, rng)
    acc = offset_accuracy(model_prediction(model, norm, ev, (1, "hidden"), vocab), ev, a.J)
    log(f"selftest: offset accuracy {['%.3f' % x for x in acc]} (chance {1 / V:.4f}), "
        f"{budget['wall_s']:.1f} s, coverage {vocab.coverage(ev.tokens):.2f}")
    assert acc[0] > 0.5, "offset 1 is in the rows and must be learnt"
    assert acc[2] < 0.05, "offset 3 is not in the rows"
    if args.learned_csv:
        selftest_parties(args, train, val, ev, vocab, a, rng)
    print("selftest OK")


def selftest_parties(args, train, val, ev, vocab, a, rng):
    """The selftest's model through the per-party path: the weights' cache, the plans of
    --configs (offset ones too), learned.csv."""
    a.out_dir, a.retrain = args.out_dir, False
    key = (1, "hidden")
    before = json.dumps(rng.bit_generator.state)
    model, norm, budget = train_cached(train, val, key, vocab, a, rng)
    after = json.dumps(rng.bit_generator.state)
    rng.bit_generator.state = json.loads(before)
    model2, norm2, budget2 = train_cached(train, val, key, vocab, a, rng)
    assert budget2["cached"] and not budget["cached"], "the second identical training must come from the cache"
    assert json.dumps(rng.bit_generator.state) == after, "the cache restores the generator's state after training"
    assert all(np.array_equal(p, q) for p, q in zip(model.params, model2.params)) and np.array_equal(norm[1], norm2[1])
    p1 = model_cache_path(a, train, val, key, vocab, rng)
    a.examples += 1
    assert model_cache_path(a, train, val, key, vocab, rng) != p1, "the cache key includes the training budget"
    a.examples -= 1
    configs = parse_configs(args.configs)
    n_max = int(max(np.diff(ev.offsets).max(), np.diff(val.offsets).max()))
    plans = [(cfg, plan_parties(args, cfg, n_max)) for cfg in configs]
    pv, pe = model_prediction(model, norm, val, key, vocab), model_prediction(model, norm, ev, key, vocab)
    preds = {"counts": (count_prediction(train, val, a.J), count_prediction(train, ev, a.J)),
             (1, "hidden"): (pv, pe), (1, "kv"): (pv, pe)}  # the same rows serve as the AttnNodes' here
    _, rows = attack_parties(plans, preds, [1], val, ev, a.J, a.examples)
    write_learned_csv(args.learned_csv, rows)
    with open(args.learned_csv) as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(rows) == sum(2 * len(ps) for _, ps in plans), (len(back), len(rows))
    for cfg, parties in plans:
        for attack in ("counts (no rows)", "learned L1"):
            got = sorted(r["party"] for r in back if r["config"] == cfg["name"] and r["attack"] == attack)
            assert got == sorted(p["name"] for p in parties), (cfg["name"], attack, got)
    for r in back:
        assert abs(float(r["rouge_tokens"]) - float(r["floor"]) - float(r["gain"])) < 1e-9, r
        assert 0 <= float(r["floor"]) <= 1 and 0 <= float(r["unseen_accuracy"]) <= 1 and int(r["budget"]) == 0, r
    log(f"selftest: {len(back)} rows of {len(plans)} configurations in {args.learned_csv}")


# ---- report ------------------------------------------------------------------------------------

def fmt(x, d=3):
    return f"{x:.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default=os.path.join(ROOT, "data/corpus/train.jsonl"),
                    help="train prompts (.jsonl, one JSON string a line) or their features (.h5)")
    ap.add_argument("--eval", default=os.path.join(ROOT, "data/corpus/eval.jsonl"),
                    help="held-out eval prompts (.jsonl) or their features (.h5)")
    ap.add_argument("--layers", default="1,8,16", help="layers to attack (features: cascade attack features)")
    ap.add_argument("--kinds", default="hidden,kv", help="row kinds: hidden (CompNodes), kv (AttnNodes), q "
                    "(AttnNodes, their query shard; needs --q features)")
    ap.add_argument("--q", action="store_true", help="features with q rows (cascade attack features --q)")
    ap.add_argument("--configs", default="4,4,4;8,8,8", help="the schedules (cdelta, delta = alpha*c), separated by "
                    "';' or spaces, each A,B,C[,offset|cluster] as the security sweep writes them (attention "
                    "sharding, default cluster)")
    ap.add_argument("-J", type=int, default=4, help="offsets predicted before an observed row (s-1..s-J)")
    ap.add_argument("-K", type=int, default=4096, help="output classes: the K most frequent train tokens + other")
    ap.add_argument("--hidden", type=int, default=512, help="hidden units of the MLP")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--examples", type=int, default=200000,
                    help="training budget per model: examples seen (minibatch steps x batch), over as many epochs as needed")
    ap.add_argument("--epochs", type=int, default=10, help="at most this many epochs per model")
    ap.add_argument("--budget-s", type=float, default=900, help="wall-time cap of training per model (a safety net: "
                    "the budget is --examples, so that results do not depend on the machine's load)")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout on the hidden units while training")
    ap.add_argument("--drop-next", type=float, default=0.05, help="fraction of train examples without row s+1")
    ap.add_argument("--val-frac", type=float, default=0.1, help="train prompts held out for early stopping and tau")
    ap.add_argument("--max-tokens", type=int, default=128, help="cut prompts to this many tokens")
    ap.add_argument("--train-prompts", type=int, default=2000, help="use the first N train prompts (0: all)")
    ap.add_argument("--eval-prompts", type=int, default=0, help="use the first N eval prompts (0: all)")
    ap.add_argument("--model", default="", help="model for the features (default: the project's)")
    ap.add_argument("--cascade", default=os.path.join(ROOT, "build/cascade"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "results"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true", help="train even where weights of the same training are cached "
                    "(--out-dir/learned_attack/models/)")
    ap.add_argument("--learned-csv", default=None, help="where to write the per-party rows for scripts/security_sweep "
                    "(default --out-dir/learned.csv)")
    ap.add_argument("--selftest", action="store_true", help="check the attack on a trivially learnable case")
    args = ap.parse_args()
    if args.selftest:
        return selftest(args)
    layers = [int(x) for x in args.layers.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            sys.exit(f"learned_attack: --kinds: '{k}' is not one of {', '.join(KINDS)}")
    try:
        configs = parse_configs(args.configs)
    except ValueError as e:
        sys.exit(f"learned_attack: --configs: {e}")
    if not os.path.exists(args.cascade):
        sys.exit(f"learned_attack: {args.cascade} not found: build first (cmake --build build)")
    t_start = time.time()
    train_all = Features(features_path(args.train, layers, args, args.train_prompts), layers)
    ev = Features(features_path(args.eval, layers, args, args.eval_prompts), layers)
    if args.train.endswith(".h5") and args.train_prompts and train_all.n_prompts > args.train_prompts:
        train_all = train_all.subset(np.arange(args.train_prompts))
    if args.eval.endswith(".h5") and args.eval_prompts and ev.n_prompts > args.eval_prompts:
        ev = ev.subset(np.arange(args.eval_prompts))
    n_val = max(1, int(round(train_all.n_prompts * args.val_frac)))
    train = train_all.subset(np.arange(train_all.n_prompts - n_val))
    val = train_all.subset(np.arange(train_all.n_prompts - n_val, train_all.n_prompts))
    del train_all
    vocab = Vocab(train.tokens, args.K)
    cov_train, cov_eval = vocab.coverage(train.tokens), vocab.coverage(ev.tokens)
    log(f"data: {train.n_prompts} train prompts ({len(train.tokens)} tokens), {val.n_prompts} validation "
        f"({len(val.tokens)}), {ev.n_prompts} eval ({len(ev.tokens)}); K = {vocab.K}: coverage "
        f"{cov_train:.3f} train, {cov_eval:.3f} eval")
    rng = np.random.default_rng(args.seed)
    n_max = int(max(np.diff(ev.offsets).max(), np.diff(val.offsets).max()))
    plans = [(cfg, plan_parties(args, cfg, n_max)) for cfg in configs]

    J = args.J
    offsets_rows, budgets = [], []
    # Predictions on the validation and eval prompts, per attack: (val, eval).
    preds = {"counts": (count_prediction(train, val, J), count_prediction(train, ev, J))}
    for name, pe in (("majority token (no rows)", majority_prediction(train, ev, J)),
                     ("token counts at s, s+1 (no rows)", preds["counts"][1])):
        acc = offset_accuracy(pe, ev, J)
        offsets_rows.append({"attack": name, "layer": "-", "rows": "-", **{f"acc_j{j + 1}": a for j, a in enumerate(acc)}})
    for layer in layers:
        for kind in kinds:
            key = (layer, kind)
            if key not in ev.keys or key not in train.keys:
                log(f"layer {layer}: no {kind} rows in the features (k, v exist below n_layer only; q with "
                    f"`cascade attack features --q`); skipped")
                continue
            log(f"layer {layer}, {kind} rows:")
            model, norm, budget = train_cached(train, val, key, vocab, args, rng)
            budgets.append(budget)
            pe = model_prediction(model, norm, ev, key, vocab)
            acc = offset_accuracy(pe, ev, J)
            log("  eval top-1 per offset: " + ", ".join(f"j={j + 1}: {a:.3f}" for j, a in enumerate(acc)))
            offsets_rows.append({"attack": "MLP", "layer": layer, "rows": kind,
                                 **{f"acc_j{j + 1}": a for j, a in enumerate(acc)}})
            preds[key] = (model_prediction(model, norm, val, key, vocab), pe)
            for f in (train, val, ev):
                f.drop(key)
    party_rows, learned_rows = attack_parties(plans, preds, layers, val, ev, J, args.examples)
    total_s = time.time() - t_start
    if configs:
        path = args.learned_csv or os.path.join(args.out_dir, "learned.csv")
        write_learned_csv(path, learned_rows)
        log(f"wrote {path}: {len(learned_rows)} rows (configuration, party, attack)")
    write_report(args, vocab, cov_train, cov_eval, train, val, ev, offsets_rows, party_rows, budgets, total_s)


def write_report(args, vocab, cov_train, cov_eval, train, val, ev, offsets_rows, party_rows, budgets, total_s):
    os.makedirs(args.out_dir, exist_ok=True)
    J = args.J

    def write_csv(name, rows):
        if not rows:
            return
        with open(os.path.join(args.out_dir, name), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)

    write_csv("learned_attack_offsets.csv", offsets_rows)
    write_csv("learned_attack_parties.csv", party_rows)
    write_csv("learned_attack_budget.csv", budgets)
    L = []
    L.append("# Learning-based attack: measured\n")
    L.append(f"Command: `{' '.join(sys.argv)}`  ")
    L.append(f"Data: {train.n_prompts} train prompts ({len(train.tokens)} tokens), {val.n_prompts} validation "
             f"({len(val.tokens)}), {ev.n_prompts} held-out eval prompts ({len(ev.tokens)} tokens); "
             f"train: `{args.train}`, eval: `{args.eval}`.  ")
    L.append(f"Output classes: the K = {vocab.K} most frequent train tokens + other; coverage "
             f"{cov_train:.3f} of train tokens, {cov_eval:.3f} of eval tokens (an out-of-vocabulary "
             f"target is always a miss). Total wall time {total_s:.0f} s.\n")
    L.append(f"## (i) Every row visible: top-1 accuracy of the token at p-j from rows p, p+1 (eval)\n")
    L.append("| attack | layer | rows | " + " | ".join(f"j={j}" for j in range(1, J + 1)) + " |")
    L.append("|---|---|---|" + "---|" * J)
    for r in offsets_rows:
        L.append(f"| {r['attack']} | {r['layer']} | {r['rows']} | " +
                 " | ".join(fmt(r[f'acc_j{j}']) for j in range(1, J + 1)) + " |")
    L.append("\n## (ii) Per party of a Cascade schedule (eval prompts, mean over parties of each kind)\n")
    L.append("x: observed fraction; floor 2x/(1+x): ROUGE-L F1 of the observed tokens alone; tau: the "
             "confidence threshold for placing a prediction (chosen on the validation prompts; 1.01 = place "
             "none); reach: unseen positions within J before an observed one (the only ones the attack "
             "predicts); unseen acc: correct placed predictions / all unseen positions; acc@reach: top-1 "
             "accuracy on the reachable positions (all predictions).\n")
    L.append("| (α,β,c) | party | attack | x | floor | ROUGE-L | gain | max over parties: ROUGE-L (gain) | tau | "
             "ROUGE-L tau=0 | reach | acc@reach | unseen acc |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in party_rows:
        L.append(f"| {r['config']} | {r['party']} ×{r['parties']} | {r['attack']} | {fmt(r['x'])} | "
                 f"{fmt(r['floor'])} | {fmt(r['rouge'])} | {r['gain']:+.3f} | {fmt(r['max_rouge'])} "
                 f"({r['max_gain']:+.3f}) | {r['tau']:.1f} | {fmt(r['rouge_tau0'])} | {fmt(r['reach'])} | "
                 f"{fmt(r['reach_acc'])} | {fmt(r['unseen_acc'])} |")
    L.append("\n## Training budget (per model)\n")
    L.append("| layer | rows | examples | epochs (best) | steps × batch | parameters | train FLOPs | wall s | val loss |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for b in budgets:
        L.append(f"| {b['layer']} | {b['rows']} | {b['examples']} | {b['epochs']} ({b['best_epoch']}) | "
                 f"{b['steps']} × {b['batch']} | {b['params'] / 1e6:.2f} M | {b['flops'] / 1e12:.2f} T | "
                 f"{b['wall_s']:.0f} | {b['val_loss']:.3f} |")
    text = "\n".join(L) + "\n"
    with open(os.path.join(args.out_dir, "learned_attack.md"), "w") as f:
        f.write(text)
    print(text)
    log(f"wrote {args.out_dir}/learned_attack.md and learned_attack_{{offsets,parties,budget}}.csv")


if __name__ == "__main__":
    main()
