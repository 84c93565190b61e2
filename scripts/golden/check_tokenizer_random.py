#!/usr/bin/env python3
"""Random strings through two tokenizers: Cascade's (`cascade tokenize --jsonl`) and Hugging Face
`tokenizers`, built from the GGUF's own vocabulary and merges exactly as make_tokenizer_golden.py
builds the reference of the committed fixture. Prints how many of N seeded random strings get
identical ids, and the first mismatches; exits 1 on any mismatch.

The strings mix ASCII words, digits, punctuation, whitespace runs (spaces, tabs, newlines, \\r),
accented Latin, Greek, CJK, emoji, and the chat template's special tokens.

    python3 -m venv /opt/tok-venv && /opt/tok-venv/bin/pip install tokenizers==0.23.3 gguf==0.19.0
    /opt/tok-venv/bin/python scripts/golden/check_tokenizer_random.py --count 30000 [--seed 1]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_golden import MODEL, ROOT, build_reference, read_gguf  # noqa: E402

PIECES = [
    "the", "The", " quick", "brown", "fox", "jumps", "over", "lazy", "dog", "don't", "it's", "WE'LL",
    "hello", "world", "Cascade", "token", "sharding", "1", "23", "456", "2024", "3.14", "-7", "1e10",
    ",", ".", "!", "?", ";", ":", "(", ")", "[", "]", "{", "}", "\"", "'", "-", "--", "—", "…", "#",
    "@", "$", "%", "&", "*", "+", "=", "/", "\\", "<", ">", "|", "~", "`", "^", "_",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000",
    "café", "naïve", "résumé", "Straße", "ñ", "Ωμέγα", "λόγος", "漢字", "日本語", "한국어", "中文",
    "🤖", "👍🏽", "🇫🇷", "e\u0301", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "user", "assistant",
]


def random_string(rng):
    n = rng.randint(0, 24)
    s = "".join(rng.choice(PIECES) for _ in range(n))
    if rng.random() < 0.2:  # some raw random code points too
        s += "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff),
                                     rng.randint(0x4e00, 0x9fff), rng.randint(0x1f300, 0x1faff)]))
                     for _ in range(rng.randint(1, 8)))
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--cascade", default=os.path.join(ROOT, "build/cascade"))
    args = ap.parse_args()

    meta = read_gguf(args.model)
    ref, _, _ = build_reference(meta)
    rng = random.Random(args.seed)
    texts = [random_string(rng) for _ in range(args.count)]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
        path = f.name
    try:
        out = subprocess.run([args.cascade, "tokenize", "--model", args.model, "--jsonl", path],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    finally:
        os.unlink(path)
    assert len(out) == len(texts), (len(out), len(texts))
    bad = []
    for text, line in zip(texts, out):
        want = ref.encode(text, add_special_tokens=False).ids
        if json.loads(line) != want:
            bad.append(text)
    print(f"{len(texts) - len(bad)} of {len(texts)} random strings (seed {args.seed}) get identical ids "
          f"from cascade tokenize and Hugging Face tokenizers")
    for t in bad[:10]:
        print("MISMATCH:", json.dumps(t, ensure_ascii=False))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
