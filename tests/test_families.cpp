// The gpt2 and bert families (model_config.h) against Hugging Face transformers: tiny models
// with seeded random weights (every bias and LayerNorm parameter away from its init), and the
// real all-MiniLM-L6-v2 (a BERT) when scripts/fetch-minilm has put it in data/models/.
// Fixtures: data/golden/families/*.{gguf,json,bin}, written by
// scripts/golden/make_family_golden.py (transformers in float64). A row compares as OK when
//   max|ours − ref| / max|ref| ≤ 1e-4;
// GPT-2's tanh GELU and BERT's erf GELU differ by ~2e-4 on these models, so swapping them fails.
// Also: the layer math of each family against a plain double-precision implementation, and
// the new kernels (LayerNorm, the two GELUs) against libm in double.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/exactness.h"
#include "cascade/model.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "kernels/activation.h"
#include "kernels/layernorm.h"

using namespace cascade;
using json = nlohmann::json;

namespace {

constexpr double kRelTol = 1e-4;

std::string source_path(const std::string& rel) { return std::string(CASCADE_SOURCE_DIR) + "/" + rel; }

struct Fixture {
  json meta;
  std::vector<int32_t> ids;
  std::vector<float> out;  // the first array of the .bin
  int rows = 0, cols = 0;
};

// Reads <dir>/<name>.json and its .bin (the first array: logits or last hidden states).
Fixture read_fixture(const std::string& name) {
  Fixture f;
  const std::string base = source_path("data/golden/families/" + name);
  std::ifstream js(base + ".json");
  if (!js) throw std::runtime_error(base + ".json missing");
  f.meta = json::parse(js);
  f.ids = f.meta.at("token_ids").get<std::vector<int32_t>>();
  const json& arr = f.meta.at("bin").at("arrays").at(0);
  f.rows = arr.at("shape").at(0).get<int>();
  f.cols = arr.at("shape").at(1).get<int>();
  std::ifstream bin(base + ".bin", std::ios::binary);
  if (!bin) throw std::runtime_error(base + ".bin missing");
  bin.seekg(arr.at("offset_bytes").get<long>());
  f.out.resize((size_t)f.rows * f.cols);
  bin.read(reinterpret_cast<char*>(f.out.data()), 4 * f.out.size());
  if (!bin) throw std::runtime_error(base + ".bin is too short");
  return f;
}

// Worst row of got against want, both (rows, cols).
double worst_row(const std::vector<float>& got, const std::vector<float>& want, int rows, int cols) {
  double worst = 0;
  for (int r = 0; r < rows; ++r)
    worst = std::max(worst, max_rel_error(got.data() + (size_t)r * cols, want.data() + (size_t)r * cols, cols));
  return worst;
}

}  // namespace

TEST(Families, Gpt2TinyMatchesTransformers) {
  const Fixture f = read_fixture("gpt2-tiny");
  const Model m = Model::load(source_path("data/golden/families/gpt2-tiny.gguf"), WeightSource::memory);
  ASSERT_EQ(m.cfg.family, Family::gpt2);
  EXPECT_TRUE(m.cfg.causal());
  ASSERT_EQ(f.cols, m.cfg.n_vocab);
  Reference ref(m);
  const std::vector<float> logits = ref.forward(f.ids, /*all_logits=*/true);  // (20, n_vocab)
  ASSERT_EQ(logits.size(), f.out.size());
  const double err = worst_row(logits, f.out, f.rows, f.cols);
  EXPECT_LE(err, kRelTol);
  std::printf("gpt2-tiny: worst row rel err %.2e over %d positions\n", err, f.rows);
}

TEST(Families, Gpt2DecodeStepsMatchTheWholeSequence) {
  // The KV cache path: prefill 7 tokens, then one token at a time, each row against the fixture.
  const Fixture f = read_fixture("gpt2-tiny");
  const Model m = Model::load(source_path("data/golden/families/gpt2-tiny.gguf"), WeightSource::memory);
  Reference ref(m);
  std::vector<int32_t> head(f.ids.begin(), f.ids.begin() + 7);
  std::vector<float> row = ref.forward(head);
  double worst = max_rel_error(row.data(), f.out.data() + 6ull * f.cols, f.cols);
  for (int p = 7; p < f.rows; ++p) {
    row = ref.forward({f.ids[p]});
    worst = std::max(worst, max_rel_error(row.data(), f.out.data() + (size_t)p * f.cols, f.cols));
  }
  EXPECT_LE(worst, kRelTol);
}

TEST(Families, BertTinyMatchesTransformers) {
  const Fixture f = read_fixture("bert-tiny");
  const Model m = Model::load(source_path("data/golden/families/bert-tiny.gguf"), WeightSource::memory);
  ASSERT_EQ(m.cfg.family, Family::bert);
  EXPECT_FALSE(m.cfg.causal());
  EXPECT_EQ(m.cfg.n_token_types, 2);
  ASSERT_EQ(f.cols, m.cfg.d_model);
  Reference ref(m);
  EXPECT_THROW(ref.forward(f.ids), std::invalid_argument);  // no LM head
  const std::vector<float> hidden = ref.encode(f.ids);       // (20, d)
  const double err = worst_row(hidden, f.out, f.rows, f.cols);
  EXPECT_LE(err, kRelTol);
  std::printf("bert-tiny: worst row rel err %.2e over %d positions\n", err, f.rows);
}

TEST(Families, MiniLmMatchesTransformers) {
  const std::string path = source_path("data/models/all-MiniLM-L6-v2.F32.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " absent: run scripts/fetch-minilm";
  const Fixture f = read_fixture("minilm-l6-v2");
  const Model m = Model::load(path, WeightSource::memory);
  ASSERT_EQ(m.cfg.family, Family::bert);
  ASSERT_EQ(m.cfg.n_layer, 6);
  ASSERT_EQ(f.cols, m.cfg.d_model);
  Reference ref(m);
  const std::vector<float> hidden = ref.encode(f.ids);
  const double err = worst_row(hidden, f.out, f.rows, f.cols);
  EXPECT_LE(err, kRelTol);
  std::printf("all-MiniLM-L6-v2: worst row rel err %.2e over %d tokens\n", err, f.rows);
}

TEST(Families, SyntheticShapesLoadAndRun) {
  // The same code on the synthetic tiny shapes: finite, non-constant outputs.
  for (const char* name : {"synthetic:gpt2-tiny", "synthetic:bert-tiny"}) {
    SCOPED_TRACE(name);
    const Model m = Model::load(ModelSpec{name}, WeightSource::memory);
    Reference ref(m);
    const std::vector<int32_t> ids = synthetic_prompt(9, m.cfg.n_vocab);
    const std::vector<float> out = m.cfg.encoder() ? ref.encode(ids) : ref.forward(ids);
    double lo = out[0], hi = out[0];
    for (float v : out) {
      ASSERT_TRUE(std::isfinite(v));
      lo = std::min(lo, (double)v);
      hi = std::max(hi, (double)v);
    }
    EXPECT_GT(hi - lo, 1e-3);
  }
}

TEST(Families, BidirectionalAttentionSeesLaterTokens) {
  // Changing the last token changes bert's first row (it attends forward) but not gpt2's.
  for (const char* name : {"synthetic:gpt2-tiny", "synthetic:bert-tiny"}) {
    SCOPED_TRACE(name);
    const Model m = Model::load(ModelSpec{name}, WeightSource::memory);
    std::vector<int32_t> a = synthetic_prompt(6, m.cfg.n_vocab), b = a;
    b.back() = (b.back() + 1) % m.cfg.n_vocab;
    Reference ra(m), rb(m);
    const int w = m.cfg.encoder() ? m.cfg.d_model : m.cfg.n_vocab;
    const std::vector<float> oa = m.cfg.encoder() ? ra.encode(a) : ra.forward(a, true);
    const std::vector<float> ob = m.cfg.encoder() ? rb.encode(b) : rb.forward(b, true);
    const double first_row = max_rel_error(ob.data(), oa.data(), w);
    if (m.cfg.encoder())
      EXPECT_GT(first_row, 1e-3);
    else
      EXPECT_EQ(first_row, 0.0);
  }
}

TEST(Kernels, LayerNormMatchesDouble) {
  const int d = 37;
  std::vector<float> x(d), w(d), b(d), y(d);
  for (int i = 0; i < d; ++i) {
    x[i] = 100.0f + std::sin(1.3f * i) * 3.0f;  // a large mean: two passes keep the variance
    w[i] = 1.0f + 0.1f * std::cos(0.7f * i);
    b[i] = 0.05f * i - 0.5f;
  }
  kernels::layernorm_row(x.data(), w.data(), b.data(), y.data(), d, 1e-5f);
  double mean = 0, var = 0;
  for (float v : x) mean += v;
  mean /= d;
  for (float v : x) var += (v - mean) * (v - mean);
  var /= d;
  for (int i = 0; i < d; ++i) {
    const double want = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
    EXPECT_NEAR(y[i], want, 2e-5 * (1 + std::fabs(want))) << i;
  }
}

TEST(Kernels, GeluBothForms) {
  for (double x = -9.0; x <= 9.0; x += 0.37) {
    const double erf_form = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    const double tanh_form =
        0.5 * x * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(kernels::gelu((float)x, kernels::Gelu::erf), erf_form, 1e-6 * (1 + std::fabs(x))) << x;
    EXPECT_NEAR(kernels::gelu((float)x, kernels::Gelu::tanh), tanh_form, 1e-6 * (1 + std::fabs(x))) << x;
  }
  // The two forms differ where it matters (so a swap is visible in the family tests).
  EXPECT_GT(std::fabs(kernels::gelu(-1.5f, kernels::Gelu::erf) - kernels::gelu(-1.5f, kernels::Gelu::tanh)), 1e-4);
}
