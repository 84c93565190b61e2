// ROUGE-L: how much of a reference text a candidate recovers, by the longest common
// subsequence (LCS) of their words or token ids. The attack suite scores a reconstructed
// prompt against the real one with it. Values match the PyPI package `rouge-score`
// (RougeScorer(['rougeL'], use_stemmer=False)) exactly: see scripts/golden/make_rouge_golden.py
// and tests/test_rouge.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cascade {

// precision = lcs / len(candidate), recall = lcs / len(reference),
// f1 = 2·P·R / (P + R); all three are 0 when either sequence is empty or nothing matches.
struct RougeScore {
  double precision = 0;
  double recall = 0;
  double f1 = 0;
};

RougeScore rouge_l(const std::vector<std::string>& reference, const std::vector<std::string>& candidate);
RougeScore rouge_l_tokens(const std::vector<int32_t>& reference, const std::vector<int32_t>& candidate);

// The words of `text` (UTF-8) as rouge-score's default tokenizer makes them: Python's
// str.lower(), every run of characters outside [a-z0-9] becomes one separator, empty words
// dropped. So "Don't stop!" is {"don", "t", "stop"} and "café" is {"caf"}. Two non-ASCII
// characters lower-case to ASCII and are kept: U+0130 'İ' (to "i" and a combining dot, which
// separates) and U+212A KELVIN SIGN (to "k"). Bytes that are not valid UTF-8 separate.
std::vector<std::string> rouge_words(const std::string& text);

// rouge_l(rouge_words(reference), rouge_words(candidate)).
RougeScore rouge_l_text(const std::string& reference, const std::string& candidate);

}  // namespace cascade
