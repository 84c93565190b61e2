#!/usr/bin/env python3
"""Golden fixture for Cascade's byte-level BPE tokenizer (tests/test_tokenizer.cpp).

Reference: the Hugging Face `tokenizers` library, built from the GGUF's own vocabulary and merges
(read with the `gguf` package) in the shape of SmolLM2's tokenizer.json:
    pre_tokenizer = Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]
    decoder       = ByteLevel
    control tokens (token_type 3) added as special tokens, user-defined ones (4) as added tokens.

Cross-check (when importable): transformers' own GGUF tokenizer conversion
(`convert_gguf_tokenizer`). It knows no "smollm" pre-tokenizer, so it does NOT split digits;
strings without digits must agree, strings with digits are reported, not failed.

Usage: python scripts/golden/make_tokenizer_golden.py [model.gguf] [out.json]
"""
import json
import os
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "data/models/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "data/golden/tokenizer.json")

LONG_PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. In 1905, Albert Einstein published four papers "
    "that changed physics; one of them (on special relativity) introduced E = mc^2. Today, large "
    "language models — trained on trillions of tokens — split text into sub-word pieces before "
    "anything else happens. A byte-level BPE tokenizer never needs an <unk> token: every byte "
    "has its own symbol, and merges learned from data glue frequent pairs together, rank by rank, "
    "until no learned pair is left. Isn't that neat? It's 100% deterministic, costs O(n^2) per "
    "word at worst, and handles naïve café résumé text, 漢字, and emoji 🤖 alike.\n\n"
    "Second paragraph:\tindented with a tab, ending with spaces   "
)

STRINGS = [
    "",
    " ",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading spaces and two trailing  ",
    "many     spaces     between",
    "tabs\tand\t\ttabs",
    "new\nline",
    "paragraphs\n\n\nthree newlines",
    "windows\r\nline endings\r\n",
    "mixed \t \n whitespace \n\n",
    "\n",
    "   ",
    "1234567",
    "pi is 3.14159 and e is 2.71828",
    "year 2024, room 101, 0.5%, -42, 1e10",
    "phone: +1 (555) 123-4567",
    "don't it's WE'LL they're I've she'd I'm",
    "DON'T IT'S You'Re",
    "def f(x):\n    return x ** 2 + 1  # square\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }",
    "Wait... what?!?! (really) [yes] {no} <maybe> --- *** ///",
    "email: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    "café naïve résumé über Straße",
    "Ünïcödé ÀÉÎÕÜ",
    "中文分词测试：你好，世界！",
    "日本語のテキスト、カタカナとひらがな。",
    "مرحبا بالعالم",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "emoji 😀 test 🤖🚀",
    "family 👨\u200d👩\u200d👧\u200d👦 and flags 🇫🇷🇯🇵🇺🇸",
    "skin tone 👍🏽 heart ❤️",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM.<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|><|im_start|>",
    "a <|im_start| partial special <|im_end",
    "superscript ² and fraction ½ and roman Ⅻ and arabic-indic ٣٤٥",
    "non-breaking\u00a0space and em\u2003space",
    "zero\u200bwidth",
    "ALL CAPS SHOUTING AND lowercase whispering",
    "x" * 100,
    "!!!???...,,,;;;:::",
    "a\u00a0\u00a0b  x\u3000\u3000y",
    "vertical\x0btab form\x0cfeed next\x85line line\u2028separator",
    # Bytes SmolLM2's vocabulary has no token for (0x04; 0xF1 starts U+40000): dropped.
    "ctrl\x04char and plane-4 \U00040000 char",
    LONG_PARAGRAPH,
]


def read_gguf(path):
    reader = gguf.GGUFReader(path)

    def field(name):
        f = reader.fields[name]
        return f.contents()

    return {
        "model": field("tokenizer.ggml.model"),
        "pre": field("tokenizer.ggml.pre"),
        "tokens": field("tokenizer.ggml.tokens"),
        "token_type": field("tokenizer.ggml.token_type"),
        "merges": field("tokenizer.ggml.merges"),
        "bos": field("tokenizer.ggml.bos_token_id"),
        "eos": field("tokenizer.ggml.eos_token_id"),
    }


def build_reference(meta):
    vocab = {tok: i for i, tok in enumerate(meta["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in meta["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(meta["tokens"], meta["token_type"]) if ty == 3]
    user = [t for t, ty in zip(meta["tokens"], meta["token_type"]) if ty == 4]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    if user:
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
    assert tok.get_vocab_size() == len(meta["tokens"]), "added tokens grew the vocabulary"
    return tok, len(control), len(user)


def transformers_crosscheck(meta, ref_rows):
    """Compare with transformers' GGUF conversion; returns a summary string or None."""
    try:
        import transformers
        from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer
    except Exception as e:  # noqa: BLE001
        print(f"transformers cross-check skipped: {e}", file=sys.stderr)
        return None
    d = {
        "tokenizer_type": meta["model"],
        "pre_tokenizer_type": meta["pre"],
        "tokens": meta["tokens"],
        "token_type": meta["token_type"],
        "merges": meta["merges"],
        "bos_token_id": meta["bos"],
        "eos_token_id": meta["eos"],
    }
    backend, _ = convert_gguf_tokenizer("llama", d)
    same, differ_digits, differ_other = 0, 0, []
    for row in ref_rows:
        ids = backend.encode(row["text"], add_special_tokens=False).ids
        if ids == row["ids"]:
            same += 1
        elif any(c.isnumeric() for c in row["text"]):
            differ_digits += 1
        else:
            differ_other.append(row["text"])
    if differ_other:
        print("MISMATCH vs transformers on digit-free strings:", differ_other, file=sys.stderr)
        sys.exit(1)
    return (f"transformers {transformers.__version__} convert_gguf_tokenizer: {same} identical, "
            f"{differ_digits} differ (all contain digits: it does not split digits for pre=smollm)")


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else MODEL
    out = sys.argv[2] if len(sys.argv) > 2 else OUT
    meta = read_gguf(model)
    assert meta["model"] == "gpt2" and meta["pre"] == "smollm", (meta["model"], meta["pre"])
    tok, n_control, n_user = build_reference(meta)

    rows = []
    for text in STRINGS:
        enc = tok.encode(text, add_special_tokens=False)
        ids = list(enc.ids)
        decoded = tok.decode(ids, skip_special_tokens=False)
        # Only text with bytes the vocabulary lacks may fail to round-trip.
        assert decoded == text or "\x04" in text, (text, decoded)
        rows.append({"text": text, "ids": ids, "tokens": list(enc.tokens), "decoded": decoded,
                     "roundtrip": decoded == text})

    crosscheck = transformers_crosscheck(meta, rows)
    doc = {
        "magic": "cascade-tokenizer-golden",
        "version": 1,
        "model_file": os.path.basename(model),
        "reference": {
            "library": f"tokenizers {tokenizers.__version__}",
            "gguf_reader": f"gguf {getattr(gguf, '__version__', 'unknown')}",
            "construction": "BPE(vocab, merges from GGUF); pre_tokenizer Sequence[Digits(individual_digits=True), "
                            "ByteLevel(add_prefix_space=False, use_regex=True)]; decoder ByteLevel; "
                            f"{n_control} control tokens as special AddedTokens, {n_user} user-defined",
            "encode": "encode(text, add_special_tokens=False)",
            "crosscheck": crosscheck,
        },
        "bos": meta["bos"],
        "eos": meta["eos"],
        "vocab_size": len(meta["tokens"]),
        "cases": rows,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(rows)} cases")
    if crosscheck:
        print(crosscheck)


if __name__ == "__main__":
    main()
