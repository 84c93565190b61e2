// End-to-end fidelity of the fp32 reference: logits and greedy continuations of
// SmolLM2-135M-Instruct against those llama.cpp computed in fp32 (F32 weights, F32 KV cache).
// Fixture: data/golden/logits.json + logits.bin, written by scripts/golden/make_logits_golden.py.
// The test feeds the fixture's token ids, so it does not depend on our tokenizer.
//
// logits.bin: 256 int32 header (magic 20261122, version 1, n_rows, n_vocab, rest 0), then
// n_rows × n_vocab float32, little-endian. A row compares as OK when
//   max|ours − ref| / max|ref| ≤ 1e-4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cascade/model.h"
#include "cascade/exactness.h"
#include "cascade/packed_gemm.h"
#include "cascade/reference.h"

namespace {

using json = nlohmann::json;

constexpr int32_t kGoldenMagic = 20261122;
constexpr int32_t kGoldenVersion = 1;
constexpr int kHeaderInts = 256;
constexpr double kRelTol = 1e-4;

std::string source_path(const std::string& rel) {
  return std::string(CASCADE_SOURCE_DIR) + "/" + rel;
}

struct GoldenPrompt {
  std::string name;
  std::vector<int32_t> ids;
  std::vector<int> positions;  // prompt positions with a stored row
  std::vector<int> rows;       // their rows in the bin
  std::vector<int32_t> greedy;
  std::vector<double> margins;  // top1 − top2 of the row that chose greedy[k]
  std::vector<int> decode_pos;  // decode positions (≥ ids.size()) with a stored row
  std::vector<int> decode_rows;
};

struct Golden {
  int n_rows = 0;
  int n_vocab = 0;
  std::vector<float> data;  // (n_rows, n_vocab)
  std::vector<GoldenPrompt> prompts;

  const float* row(int r) const { return data.data() + static_cast<size_t>(r) * n_vocab; }
};

// Reads and validates the fixture; returns an empty string or what is wrong with it.
std::string load_golden(Golden& g) {
  const std::string json_path = source_path("data/golden/logits.json");
  const std::string bin_path = source_path("data/golden/logits.bin");
  const std::string regen = " (regenerate with scripts/golden/make_logits_golden.py)";

  std::ifstream bin(bin_path, std::ios::binary);
  if (!bin) return "cannot open " + bin_path + regen;
  int32_t header[kHeaderInts] = {};
  if (!bin.read(reinterpret_cast<char*>(header), sizeof(header)))
    return bin_path + ": truncated header" + regen;
  if (header[0] != kGoldenMagic)
    return bin_path + ": bad magic " + std::to_string(header[0]) + ", expected " +
           std::to_string(kGoldenMagic) + regen;
  if (header[1] != kGoldenVersion)
    return bin_path + ": unsupported version " + std::to_string(header[1]) + regen;
  g.n_rows = header[2];
  g.n_vocab = header[3];
  if (g.n_rows <= 0 || g.n_vocab <= 0)
    return bin_path + ": bad shape " + std::to_string(g.n_rows) + " x " + std::to_string(g.n_vocab);
  const size_t n = static_cast<size_t>(g.n_rows) * g.n_vocab;
  const auto expect_size = sizeof(header) + n * sizeof(float);
  if (std::filesystem::file_size(bin_path) != expect_size)
    return bin_path + ": size " + std::to_string(std::filesystem::file_size(bin_path)) +
           " bytes, header says " + std::to_string(expect_size) + regen;
  g.data.resize(n);
  if (!bin.read(reinterpret_cast<char*>(g.data.data()), n * sizeof(float)))
    return bin_path + ": truncated data" + regen;

  std::ifstream jf(json_path);
  if (!jf) return "cannot open " + json_path + regen;
  try {
    const json meta = json::parse(jf);
    const json& b = meta.at("bin");
    if (b.at("magic").get<int>() != kGoldenMagic || b.at("version").get<int>() != kGoldenVersion ||
        b.at("n_rows").get<int>() != g.n_rows || b.at("n_vocab").get<int>() != g.n_vocab)
      return json_path + ": \"bin\" does not match the header of " + bin_path;
    for (const json& p : meta.at("prompts")) {
      GoldenPrompt gp;
      gp.name = p.at("name").get<std::string>();
      gp.ids = p.at("ids").get<std::vector<int32_t>>();
      gp.positions = p.at("positions").get<std::vector<int>>();
      gp.rows = p.at("rows").get<std::vector<int>>();
      gp.greedy = p.at("greedy").get<std::vector<int32_t>>();
      gp.margins = p.at("greedy_margins").get<std::vector<double>>();
      for (const json& d : p.at("decode")) {
        gp.decode_pos.push_back(d.at("pos").get<int>());
        gp.decode_rows.push_back(d.at("row").get<int>());
      }
      const int n_ids = static_cast<int>(gp.ids.size());
      const int n_greedy = static_cast<int>(gp.greedy.size());
      const std::string where = json_path + ": prompt \"" + gp.name + "\": ";
      if (n_ids == 0 || n_greedy == 0) return where + "no ids or no greedy tokens";
      if (gp.positions.size() != gp.rows.size()) return where + "positions and rows differ in length";
      if (gp.margins.size() != gp.greedy.size()) return where + "greedy_margins has the wrong length";
      for (int32_t t : gp.ids)
        if (t < 0 || t >= g.n_vocab) return where + "token id out of range";
      for (int32_t t : gp.greedy)
        if (t < 0 || t >= g.n_vocab) return where + "greedy id out of range";
      for (int p : gp.positions)
        if (p < 0 || p >= n_ids) return where + "position out of range";
      for (int p : gp.decode_pos)  // decoded positions are n_ids .. n_ids + n_greedy − 2
        if (p < n_ids || p > n_ids + n_greedy - 2) return where + "decode position out of range";
      for (const auto* rs : {&gp.rows, &gp.decode_rows})
        for (int r : *rs)
          if (r < 0 || r >= g.n_rows) return where + "row index out of range";
      g.prompts.push_back(std::move(gp));
    }
  } catch (const std::exception& e) {
    return json_path + ": malformed fixture: " + e.what() + regen;
  }
  if (g.prompts.empty()) return json_path + ": no prompts";
  return "";
}

struct RowDiff {
  double max_diff = 0;
  double rel = 0;
  int argmax_ours = -1;
  int argmax_ref = -1;
};

RowDiff compare_row(const float* ours, const float* ref, int n) {
  RowDiff d;
  for (int i = 0; i < n; ++i)
    d.max_diff = std::max(d.max_diff, std::fabs(double(ours[i]) - double(ref[i])));
  d.rel = cascade::max_rel_error(ours, ref, n);  // the project's one exactness measure (inf on NaN)
  d.argmax_ours = static_cast<int>(std::max_element(ours, ours + n) - ours);
  d.argmax_ref = static_cast<int>(std::max_element(ref, ref + n) - ref);
  return d;
}

// Prints the llm.c-style line and reports whether the row is within tolerance.
bool check_row(int prompt, int pos, const char* kind, const float* ours, const float* ref, int n) {
  const RowDiff d = compare_row(ours, ref, n);
  const bool ok = d.rel <= kRelTol;
  std::printf("%s prompt %d %s %d maxdiff %.2e rel %.2e argmax %d/%d\n", ok ? "OK" : "NOT OK",
              prompt, kind, pos, d.max_diff, d.rel, d.argmax_ours, d.argmax_ref);
  return ok;
}

int argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

class FidelityTest : public ::testing::Test {
 protected:
  // The model is loaded once for the whole suite (dequantising takes seconds).
  static void SetUpTestSuite() {
    golden_ = std::make_unique<Golden>();
    golden_error_ = load_golden(*golden_);
    const std::string path = source_path("data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!std::filesystem::exists(path)) {
      model_error_ = path + " is missing: run scripts/fetch-model";
      return;
    }
    try {
      model_ = std::make_unique<cascade::Model>(cascade::Model::load(path));
    } catch (const std::exception& e) {
      model_error_ = "loading " + path + ": " + e.what();
    }
  }
  static void TearDownTestSuite() {
    model_.reset();
    golden_.reset();
  }
  void SetUp() override {
    ASSERT_TRUE(golden_error_.empty()) << golden_error_;
    ASSERT_TRUE(model_) << model_error_;
    ASSERT_EQ(model_->cfg.n_vocab, golden_->n_vocab) << "fixture and model disagree on n_vocab";
  }

  static std::unique_ptr<cascade::Model> model_;
  static std::unique_ptr<Golden> golden_;
  static std::string model_error_, golden_error_;
};

std::unique_ptr<cascade::Model> FidelityTest::model_;
std::unique_ptr<Golden> FidelityTest::golden_;
std::string FidelityTest::model_error_;
std::string FidelityTest::golden_error_;

// Prefill of each prompt: every stored row within tolerance.
TEST_F(FidelityTest, PromptLogits) {
  const Golden& g = *golden_;
  const int nv = g.n_vocab;
  for (size_t pi = 0; pi < g.prompts.size(); ++pi) {
    const GoldenPrompt& p = g.prompts[pi];
    SCOPED_TRACE("prompt " + std::to_string(pi) + " (" + p.name + ")");
    cascade::Reference ref(*model_);
    const std::vector<float> logits = ref.forward(p.ids, /*all_logits=*/true);
    ASSERT_EQ(logits.size(), p.ids.size() * static_cast<size_t>(nv));
    EXPECT_EQ(ref.n_past(), static_cast<int>(p.ids.size()));
    for (size_t k = 0; k < p.positions.size(); ++k) {
      const int pos = p.positions[k];
      const float* ours = logits.data() + static_cast<size_t>(pos) * nv;
      EXPECT_TRUE(check_row(static_cast<int>(pi), pos, "pos", ours, g.row(p.rows[k]), nv))
          << "logits at position " << pos << " differ from llama.cpp by more than rel "
          << kRelTol;
    }
  }
}

// Greedy decoding through the KV cache: identical ids, and the stored decode rows within
// tolerance.
TEST_F(FidelityTest, GreedyDecode) {
  const Golden& g = *golden_;
  const int nv = g.n_vocab;
  for (size_t pi = 0; pi < g.prompts.size(); ++pi) {
    const GoldenPrompt& p = g.prompts[pi];
    SCOPED_TRACE("prompt " + std::to_string(pi) + " (" + p.name + ")");
    cascade::Reference ref(*model_);
    ref.reset();
    std::vector<float> logits = ref.forward(p.ids);
    ASSERT_EQ(logits.size(), static_cast<size_t>(nv));
    std::vector<int32_t> ours;
    for (size_t k = 0; k < p.greedy.size(); ++k) {
      const int32_t tok = argmax(logits);
      ours.push_back(tok);
      ASSERT_EQ(tok, p.greedy[k]) << "greedy token " << k << " differs from llama.cpp (top1 − top2 "
                                  << "margin there: " << p.margins[k] << ")";
      if (k + 1 == p.greedy.size()) break;
      const int pos = ref.n_past();
      logits = ref.forward({tok});
      ASSERT_EQ(logits.size(), static_cast<size_t>(nv));
      for (size_t d = 0; d < p.decode_pos.size(); ++d) {
        if (p.decode_pos[d] != pos) continue;
        EXPECT_TRUE(check_row(static_cast<int>(pi), pos, "decode pos", logits.data(),
                              g.row(p.decode_rows[d]), nv))
            << "decode logits at position " << pos << " differ from llama.cpp by more than rel "
            << kRelTol;
      }
    }
    std::printf("OK prompt %d greedy %zu tokens identical\n", static_cast<int>(pi), ours.size());
  }
}

}  // namespace

namespace {

// bf16 GEMMs (--precision bf16) against llama.cpp's fp32 logits: how far every stored row is
// (max relative error, printed) and whether it picks the same top token, and how many greedy
// tokens agree before the first difference. Tolerances: rows within kBf16RelTol, ≥ 90 % of
// the stored rows with llama.cpp's argmax, the first 8 greedy tokens of every prompt identical.
// Measured on an AMX CPU: max rel 0.8–1.2e-2, 12 of 12 argmax, 32 of 32 greedy tokens
// (BENCHMARKS.md, "bf16").
constexpr double kBf16RelTol = 0.05;

TEST_F(FidelityTest, Bf16AgainstLlamaCppFp32) {
  if (!cascade::cpu_has_bf16()) GTEST_SKIP() << "no AVX512_BF16/AMX on this CPU";
  const Golden& g = *golden_;
  const int nv = g.n_vocab;
  int rows = 0, agree = 0;
  for (size_t pi = 0; pi < g.prompts.size(); ++pi) {
    const GoldenPrompt& p = g.prompts[pi];
    SCOPED_TRACE("prompt " + std::to_string(pi) + " (" + p.name + ")");
    cascade::Reference ref(*model_, nullptr, cascade::Precision::bf16);
    const std::vector<float> logits = ref.forward(p.ids, /*all_logits=*/true);
    double worst = 0;
    for (size_t k = 0; k < p.positions.size(); ++k) {
      const RowDiff d = compare_row(logits.data() + (size_t)p.positions[k] * nv, g.row(p.rows[k]), nv);
      worst = std::max(worst, d.rel);
      agree += d.argmax_ours == d.argmax_ref;
      ++rows;
      EXPECT_LE(d.rel, kBf16RelTol) << "position " << p.positions[k];
    }
    // greedy from the prefill's last row, feeding back our own tokens
    cascade::Reference dec(*model_, nullptr, cascade::Precision::bf16);
    std::vector<float> l = dec.forward(p.ids);
    size_t same = 0;
    while (same < p.greedy.size()) {
      const int32_t tok = argmax(l);
      if (tok != p.greedy[same]) break;
      ++same;
      if (same < p.greedy.size()) l = dec.forward({tok});
    }
    std::printf("bf16 prompt %zu (%s): max rel %.3e over %zu rows; greedy identical for %zu/%zu tokens\n",
                pi, p.name.c_str(), worst, p.positions.size(), same, p.greedy.size());
    EXPECT_GE(same, std::min<size_t>(8, p.greedy.size()));
  }
  std::printf("bf16: argmax as llama.cpp fp32 in %d of %d rows\n", agree, rows);
  EXPECT_GE(agree, (int)std::ceil(0.9 * rows));
}

}  // namespace
