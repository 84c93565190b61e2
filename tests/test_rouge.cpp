// ROUGE-L: every pair of the golden fixture (rouge-score's values, see
// scripts/golden/make_rouge_golden.py), the word tokenizer on each text, and cases worked by hand.
#include "cascade/rouge.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

using cascade::rouge_l;
using cascade::rouge_l_text;
using cascade::rouge_l_tokens;
using cascade::rouge_words;
using cascade::RougeScore;
using Words = std::vector<std::string>;

const std::string kGoldenPath = std::string(CASCADE_SOURCE_DIR) + "/data/golden/rouge.json";
constexpr double kTol = 1e-12;

nlohmann::json load_golden() {
  std::ifstream in(kGoldenPath);
  if (!in) ADD_FAILURE() << "cannot read " << kGoldenPath << " (scripts/golden/make_rouge_golden.py makes it)";
  return in ? nlohmann::json::parse(in) : nlohmann::json::object();
}

// The first 80 bytes of a text as a JSON string, for failure messages (a cut character
// becomes U+FFFD instead of throwing).
std::string head(const std::string& text) {
  return nlohmann::json(text.substr(0, 80)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         (text.size() > 80 ? "..." : "");
}

// Largest |ours - golden| over P, R, F1.
double max_diff(const RougeScore& s, const nlohmann::json& g) {
  return std::max({std::abs(s.precision - g.at("precision").get<double>()),
                   std::abs(s.recall - g.at("recall").get<double>()),
                   std::abs(s.f1 - g.at("f1").get<double>())});
}

void expect_score(const RougeScore& s, double p, double r, double f) {
  EXPECT_NEAR(s.precision, p, kTol);
  EXPECT_NEAR(s.recall, r, kTol);
  EXPECT_NEAR(s.f1, f, kTol);
}

TEST(Rouge, GoldenTextPairs) {
  const nlohmann::json golden = load_golden();
  ASSERT_TRUE(golden.contains("text_pairs"));
  const auto& pairs = golden.at("text_pairs");
  ASSERT_GE(pairs.size(), 60u);
  double worst = 0;
  size_t words_ok = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& g = pairs[i];
    const std::string ref = g.at("reference"), cand = g.at("candidate");
    SCOPED_TRACE("text pair " + std::to_string(i) + ": " + head(ref) + " vs " + head(cand));
    const Words ref_words = rouge_words(ref), cand_words = rouge_words(cand);
    EXPECT_EQ(ref_words, g.at("reference_words").get<Words>());
    EXPECT_EQ(cand_words, g.at("candidate_words").get<Words>());
    words_ok += ref_words == g.at("reference_words").get<Words>() &&
                cand_words == g.at("candidate_words").get<Words>();
    const RougeScore s = rouge_l_text(ref, cand);
    const double d = max_diff(s, g);
    EXPECT_LE(d, kTol) << "P " << s.precision << " R " << s.recall << " F1 " << s.f1;
    worst = std::max(worst, d);
  }
  std::printf("%s: %zu text pairs, words identical in %zu, max |diff| of P, R, F1 = %.3g (rouge-score %s)\n",
              worst <= kTol && words_ok == pairs.size() ? "OK" : "NOT OK", pairs.size(), words_ok, worst,
              golden.value("rouge_score_version", "?").c_str());
}

TEST(Rouge, GoldenTokenPairs) {
  const nlohmann::json golden = load_golden();
  ASSERT_TRUE(golden.contains("token_pairs"));
  const auto& pairs = golden.at("token_pairs");
  ASSERT_GE(pairs.size(), 20u);
  double worst = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& g = pairs[i];
    SCOPED_TRACE("token pair " + std::to_string(i));
    const RougeScore s = rouge_l_tokens(g.at("reference").get<std::vector<int32_t>>(),
                                        g.at("candidate").get<std::vector<int32_t>>());
    const double d = max_diff(s, g);
    EXPECT_LE(d, kTol) << "P " << s.precision << " R " << s.recall << " F1 " << s.f1;
    worst = std::max(worst, d);
  }
  std::printf("%s: %zu token pairs, max |diff| of P, R, F1 = %.3g\n", worst <= kTol ? "OK" : "NOT OK",
              pairs.size(), worst);
}

TEST(Rouge, HandWorkedScores) {
  // LCS of (a b c d) and (a c x) is (a c): P = 2/3, R = 2/4, F1 = 2·(1/3)/(7/6) = 4/7.
  expect_score(rouge_l({"a", "b", "c", "d"}, {"a", "c", "x"}), 2.0 / 3, 0.5, 4.0 / 7);
  // Swapping reference and candidate swaps P and R.
  expect_score(rouge_l({"a", "c", "x"}, {"a", "b", "c", "d"}), 0.5, 2.0 / 3, 4.0 / 7);
  // ABCBDAB vs BDCABA: LCS 4 (BCBA), P = 4/6, R = 4/7, F1 = 8/13.
  expect_score(rouge_l_tokens({1, 2, 3, 2, 4, 1, 2}, {2, 4, 3, 1, 2, 1}), 4.0 / 6, 4.0 / 7, 8.0 / 13);
  expect_score(rouge_l_tokens({1, 2, 3, 4}, {4, 3, 2, 1}), 0.25, 0.25, 0.25);
  expect_score(rouge_l_tokens({7, 7, 7}, {7, 7, 7}), 1, 1, 1);
  // Empty or disjoint: all zero, never NaN.
  expect_score(rouge_l({}, {}), 0, 0, 0);
  expect_score(rouge_l({"a"}, {}), 0, 0, 0);
  expect_score(rouge_l_tokens({}, {1}), 0, 0, 0);
  expect_score(rouge_l({"a", "b"}, {"c"}), 0, 0, 0);
  expect_score(rouge_l_text("?!", "Hello"), 0, 0, 0);
  // Case and punctuation do not count: both are (the cat sat).
  expect_score(rouge_l_text("The cat, sat.", "the CAT sat"), 1, 1, 1);
}

TEST(Rouge, HandWorkedWords) {
  EXPECT_EQ(rouge_words(""), Words{});
  EXPECT_EQ(rouge_words(" \t\n.,;!? "), Words{});
  EXPECT_EQ(rouge_words("Don't stop!"), (Words{"don", "t", "stop"}));
  EXPECT_EQ(rouge_words("e-mail x2 3.14"), (Words{"e", "mail", "x2", "3", "14"}));
  EXPECT_EQ(rouge_words("café naïve"), (Words{"caf", "na", "ve"}));
  EXPECT_EQ(rouge_words("İstanbul aİb"), (Words{"i", "stanbul", "ai", "b"}));  // U+0130 -> i + U+0307
  EXPECT_EQ(rouge_words("5\u212a \u212aelvin"), (Words{"5k", "kelvin"}));       // KELVIN SIGN -> k
  EXPECT_EQ(rouge_words("東京tokyo🤖 ｂ"), (Words{"tokyo"}));
  // Bytes that are not UTF-8 separate, including truncated U+0130 and U+212A at the end.
  EXPECT_EQ(rouge_words("ab\xff" "cd\xc4"), (Words{"ab", "cd"}));
  EXPECT_EQ(rouge_words("ab\xe2\x84"), (Words{"ab"}));
}

TEST(Rouge, LongSequences) {
  // 3000 × 2000 ids: the candidate is every third id dropped, so the LCS is the candidate.
  std::vector<int32_t> ref(3000), cand;
  for (int32_t i = 0; i < 3000; ++i) ref[i] = i % 97;
  for (int32_t i = 0; i < 3000; ++i)
    if (i % 3 != 2) cand.push_back(ref[i]);
  expect_score(rouge_l_tokens(ref, cand), 1, 2.0 / 3, 0.8);
}

}  // namespace
