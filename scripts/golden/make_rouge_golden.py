#!/usr/bin/env python3
"""Golden fixture for Cascade's ROUGE-L (include/cascade/rouge.h, tests/test_rouge.cpp).

Regenerates data/golden/rouge.json. Reference: the PyPI package `rouge-score`,
RougeScorer(['rougeL'], use_stemmer=False), the implementation papers report ROUGE with.

Two parts, both from a seeded generator (the same file every run):
  * "text_pairs": (reference, candidate) texts. References are sentences from a word list in
    mixed case with punctuation, digits and contractions; candidates are the same words after
    random deletions, adjacent swaps, substitutions and insertions, rendered again. Some pairs
    carry non-ASCII words (accents, 'İ', the Kelvin sign, CJK, emoji, full-width letters,
    other scripts' digits), and some texts are empty or punctuation only. Stored per pair:
    both texts, both word lists (rouge-score's tokenizer) and P, R, F1.
  * "token_pairs": token-id sequences. rouge-score takes text, so ids are written as words
    "t<id>" joined by spaces; its tokenizer gives back exactly those words.
Floats are written with repr(), so they parse back exactly.

If `rouge_score` is not importable, the script makes a throwaway venv ($ROUGE_VENV, default
/tmp/rouge-venv), pip-installs rouge-score there and runs itself again with that Python.

Usage: python3 scripts/golden/make_rouge_golden.py [out.json]
"""
import json
import os
import random
import subprocess
import sys

ROUGE_SCORE_VERSION = "0.1.2"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data/golden/rouge.json")
SEED = 20261130

try:
    from rouge_score import rouge_scorer, tokenizers
except ImportError:
    venv = os.environ.get("ROUGE_VENV", "/tmp/rouge-venv")
    py = os.path.join(venv, "bin", "python3")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        sys.exit(f"make_rouge_golden: rouge_score still not importable in {venv}")
    if not os.path.exists(py):
        print(f"make_rouge_golden: making a venv in {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    print(f"make_rouge_golden: pip install rouge-score=={ROUGE_SCORE_VERSION} into {venv}", file=sys.stderr)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"rouge-score=={ROUGE_SCORE_VERSION}"], check=True)
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])

from importlib.metadata import version  # noqa: E402

WORDS = """the a an of to in on at by for with from about over under after before and or but
not no yes all some many few one two three first last new old big small long short high low
good bad great little own other same right left next early late young open close time year
day night week people man woman child world life hand part place case point group number
fact home water room mother father area money story month lot book eye job word business issue
side kind head house service friend power hour game line end member law car city community
name president team minute idea body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy music market sense nation plan college interest
death experience effect class control care field development role effort rate heart drug show
leader light voice wife police mind price report decision son view relationship town road arm
difference value building action model season society tax director position player record paper
space ground form event official matter center couple site project activity star table need
court oil situation cost industry figure street image phone data picture practice piece land
product doctor wall patient worker news test movie north love support technology step baby
computer type attention film tree source organization hair window evidence population truth
say make go know take see come think look want give use find tell ask work seem feel try
leave call keep let begin help talk turn start run move like live believe hold bring happen
write provide sit stand lose pay meet include continue set learn lead understand watch follow
stop create speak read allow add spend grow offer remember consider appear buy wait serve die
send expect build stay fall cut reach kill remain""".split()

# Non-ASCII words and what rouge-score makes of them (see rouge_words in rouge.h).
FOREIGN = ["café", "naïve", "résumé", "Straße", "Ölçek", "İstanbul", "Dİyarbakır",
           "5\u212a", "\u212aelvin", "東京", "日本語テキスト", "🤖", "emoji🙂face", "Ａｂｃ",
           "x²", "½", "١٢٣", "ΑΒΓ", "Москва", "ﬁne", "naïveté", "coöperate", "über", "façade"]

PUNCT_AFTER = ["", "", "", "", ",", ".", "!", "?", ";", ":", " —", "...", "'s", "'"]


def render(words, rng):
    """A sentence of `words`: random capitals, punctuation, brackets and hyphens."""
    out = []
    for i, w in enumerate(words):
        r = rng.random()
        if r < 0.15:
            w = w.capitalize()
        elif r < 0.20:
            w = w.upper()
        if rng.random() < 0.05:
            w = "(" + w + ")"
        elif rng.random() < 0.05:
            w = '"' + w + '"'
        w += rng.choice(PUNCT_AFTER)
        out.append(w)
        if i + 1 < len(words) and rng.random() < 0.05:
            out.append("-")
    sep = [rng.choice([" ", " ", " ", "  ", "\t", "\n"]) for _ in out]
    return "".join(w + s for w, s in zip(out, sep)).rstrip()


def random_word(rng, foreign):
    r = rng.random()
    if foreign and r < 0.2:
        return rng.choice(FOREIGN)
    if r < 0.28:
        return str(rng.randrange(0, 3000))
    return rng.choice(WORDS)


def edit(seq, rng, new_item, n_edits):
    """Random deletions, adjacent swaps, substitutions and insertions."""
    seq = list(seq)
    for _ in range(n_edits):
        op = rng.choice(["delete", "swap", "substitute", "insert"])
        if op == "insert" or not seq:
            seq.insert(rng.randrange(len(seq) + 1), new_item())
        elif op == "delete":
            del seq[rng.randrange(len(seq))]
        elif op == "swap" and len(seq) >= 2:
            i = rng.randrange(len(seq) - 1)
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
        else:
            seq[rng.randrange(len(seq))] = new_item()
    return seq


def text_pairs(rng):
    pairs = [
        ("", ""), ("The cat sat.", ""), ("", "The cat sat."), ("!!! ... ---", "?!"),
        ("Hello, World!", "hello world"), ("Don't stop believing.", "don t STOP believing"),
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("alpha beta gamma", "delta epsilon zeta"),
        ("café naïve İstanbul 5\u212a", "caf na ve i stanbul 5k"),
        ("東京 and 日本", "🤖 and"),
    ]
    for k in range(64):
        foreign = k % 4 == 0
        n = rng.choice([1, 3, 8, 15, 25, 40]) if k < 56 else rng.randrange(120, 260)
        ref = [random_word(rng, foreign) for _ in range(n)]
        n_edits = rng.randrange(0, max(2, n // 2) + 1)
        cand = edit(ref, rng, lambda: random_word(rng, foreign), n_edits)
        if k % 11 == 5:
            cand = [random_word(rng, foreign) for _ in range(rng.randrange(1, 10))]  # unrelated
        pairs.append((render(ref, rng), render(cand, rng)))
    return pairs


def token_pairs(rng):
    pairs = [([], []), ([1, 2, 3], []), ([], [7]), ([5, 5, 5], [5, 5]), ([1, 2, 3, 4], [4, 3, 2, 1])]
    for k in range(24):
        vocab = 49152 if k % 3 else 12  # a small vocabulary makes many repeats
        n = rng.choice([1, 4, 16, 32, 64, 128, 200])
        ref = [rng.randrange(vocab) for _ in range(n)]
        cand = edit(ref, rng, lambda: rng.randrange(vocab), rng.randrange(0, n + 1))
        pairs.append((ref, cand))
    return pairs


def as_words(ids):
    return " ".join(f"t{i}" for i in ids)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    rng = random.Random(SEED)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tok = tokenizers.DefaultTokenizer(use_stemmer=False)  # the scorer's own default

    doc = {
        "generator": "scripts/golden/make_rouge_golden.py",
        "reference": "rouge-score: RougeScorer(['rougeL'], use_stemmer=False)",
        "rouge_score_version": version("rouge-score"),
        "python": sys.version.split()[0],  # str.lower() follows this Python's Unicode tables
        "seed": SEED,
        "text_pairs": [],
        "token_pairs": [],
    }
    for ref, cand in text_pairs(rng):
        s = scorer.score(ref, cand)["rougeL"]
        doc["text_pairs"].append({
            "reference": ref, "candidate": cand,
            "reference_words": tok.tokenize(ref), "candidate_words": tok.tokenize(cand),
            "precision": s.precision, "recall": s.recall, "f1": s.fmeasure})
    for ref, cand in token_pairs(rng):
        assert tok.tokenize(as_words(ref)) == [f"t{i}" for i in ref]
        s = scorer.score(as_words(ref), as_words(cand))["rougeL"]
        doc["token_pairs"].append({
            "reference": ref, "candidate": cand,
            "precision": s.precision, "recall": s.recall, "f1": s.fmeasure})

    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{out}: {len(doc['text_pairs'])} text pairs, {len(doc['token_pairs'])} token pairs "
          f"(rouge-score {doc['rouge_score_version']}, Python {doc['python']})")


if __name__ == "__main__":
    main()
