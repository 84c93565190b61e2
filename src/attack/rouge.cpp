#include "cascade/rouge.h"

#include <algorithm>
#include <cstddef>

namespace cascade {
namespace {

// Length of the LCS of a and b: the classic O(n·m) dynamic programme, keeping one row of
// min(n, m) + 1 entries (each row depends only on the one above it).
template <typename T>
size_t lcs_length(const std::vector<T>& a, const std::vector<T>& b) {
  const std::vector<T>& outer = a.size() >= b.size() ? a : b;
  const std::vector<T>& inner = a.size() >= b.size() ? b : a;
  std::vector<size_t> row(inner.size() + 1, 0);  // row[j]: LCS of outer[0..i) and inner[0..j)
  for (const T& x : outer) {
    size_t diag = 0;  // row[j - 1] of the previous row
    for (size_t j = 1; j <= inner.size(); ++j) {
      const size_t up = row[j];
      row[j] = x == inner[j - 1] ? diag + 1 : std::max(up, row[j - 1]);
      diag = up;
    }
  }
  return row[inner.size()];
}

template <typename T>
RougeScore score(const std::vector<T>& reference, const std::vector<T>& candidate) {
  RougeScore s;
  if (reference.empty() || candidate.empty()) return s;
  const double lcs = static_cast<double>(lcs_length(reference, candidate));
  s.precision = lcs / static_cast<double>(candidate.size());
  s.recall = lcs / static_cast<double>(reference.size());
  // Same operations in the same order as rouge_score.scoring.fmeasure, so the doubles agree.
  if (s.precision + s.recall > 0) s.f1 = 2 * s.precision * s.recall / (s.precision + s.recall);
  return s;
}

}  // namespace

RougeScore rouge_l(const std::vector<std::string>& reference, const std::vector<std::string>& candidate) {
  return score(reference, candidate);
}

RougeScore rouge_l_tokens(const std::vector<int32_t>& reference, const std::vector<int32_t>& candidate) {
  return score(reference, candidate);
}

std::vector<std::string> rouge_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  auto separate = [&] {
    if (!word.empty()) words.push_back(word);
    word.clear();
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      word += static_cast<char>(c);
      ++i;
    } else if (c >= 'A' && c <= 'Z') {
      word += static_cast<char>(c - 'A' + 'a');
      ++i;
    } else if (c == 0xC4 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) == 0xB0) {
      // U+0130 lower-cases to "i" + U+0307: the 'i' joins the word, the dot ends it.
      word += 'i';
      separate();
      i += 2;
    } else if (c == 0xE2 && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0x84 &&
               static_cast<unsigned char>(text[i + 2]) == 0xAA) {
      word += 'k';  // U+212A KELVIN SIGN lower-cases to ASCII 'k'
      i += 3;
    } else {
      // Any other byte: ASCII punctuation or space, or part of a non-ASCII character whose
      // lower case has no ASCII letter or digit. Continuation bytes (0x80-0xBF) never start
      // one of the two sequences above, so scanning byte by byte is safe.
      separate();
      ++i;
    }
  }
  separate();
  return words;
}

RougeScore rouge_l_text(const std::string& reference, const std::string& candidate) {
  return rouge_l(rouge_words(reference), rouge_words(candidate));
}

}  // namespace cascade
