// Tests of synthetic models (src/model/synthetic.cpp) and their weight cache:
//   * each name's shape, as its source publishes it (written here, not read from the table);
//     unknown names and layer counts out of range are errors that say what is allowed;
//   * the weights are deterministic: values recomputed by an independent implementation (Python,
//     see kGoldenWeights) equal the generator's bits; two loads give the same bytes; any one
//     element regenerated alone equals the stored one;
//   * the cache is built once and mapped the second time; other layers or seeds are other files;
//   * the weights have the intended scale (mean 0, std 0.02, norms 1, bounded);
//   * the reference forward pass on `tiny` gives finite, non-constant logits and a
//     deterministic greedy continuation.
// Every test works in its own temporary cache directory and removes it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/comm_model.h"
#include "cascade/model.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "cascade/weight_cache.h"
#include "kernels/softmax.h"
#include "test_util.h"

namespace cascade {
namespace {

namespace fs = std::filesystem;

using cascade_test::TempDir;

WeightLoadOptions in_dir(const std::string& dir) {
  WeightLoadOptions o;
  o.cache_dir = dir;
  return o;
}

ModelSpec spec(const std::string& name, int layers = 0, uint64_t seed = kDefaultWeightSeed) {
  return ModelSpec{"synthetic:" + name, layers, seed};
}

// ---- shapes --------------------------------------------------------------------------------

struct Want {
  const char* name;
  int n_layer, d_model, n_head, n_head_kv, d_head, d_ff, n_vocab, n_ctx;
  float rope_theta;
  bool tied;
  const char* arch = "llama";
  float eps = 1e-5f;
};
// From the models' config.json files (Hugging Face), independently of src/model/synthetic.cpp.
const Want kWant[] = {
    {"llama2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 4096, 10000.0f, false},
    {"llama2-13b", 40, 5120, 40, 40, 128, 13824, 32000, 4096, 10000.0f, false},
    {"llama3-8b", 32, 4096, 32, 8, 128, 14336, 128256, 8192, 500000.0f, false},
    {"smollm2-1.7b", 24, 2048, 32, 32, 64, 8192, 49152, 8192, 130000.0f, true},
    {"smollm2-135m", 30, 576, 9, 3, 64, 1536, 49152, 8192, 100000.0f, true},
    {"tiny", 2, 64, 4, 2, 16, 128, 256, 512, 10000.0f, false},
    {"gpt2", 12, 768, 12, 12, 64, 3072, 50257, 1024, 0.0f, true, "gpt2"},
    {"gpt2-medium", 24, 1024, 16, 16, 64, 4096, 50257, 1024, 0.0f, true, "gpt2"},
    {"gpt2-tiny", 2, 64, 4, 4, 16, 256, 256, 512, 0.0f, true, "gpt2"},
    {"bert-base", 12, 768, 12, 12, 64, 3072, 30522, 512, 0.0f, true, "bert", 1e-12f},
    {"bert-large", 24, 1024, 16, 16, 64, 4096, 30522, 512, 0.0f, true, "bert", 1e-12f},
    {"bert-tiny", 2, 64, 4, 4, 16, 256, 256, 512, 0.0f, true, "bert", 1e-12f},
};

TEST(Synthetic, ShapeOfEachName) {
  ASSERT_EQ(synthetic_shapes().size(), std::size(kWant));
  for (const Want& w : kWant) {
    SCOPED_TRACE(w.name);
    const ModelConfig c = synthetic_config(std::string("synthetic:") + w.name);
    EXPECT_EQ(c.name, std::string("synthetic:") + w.name);
    EXPECT_EQ(c.arch, w.arch);
    EXPECT_EQ(c.n_layer, w.n_layer);
    EXPECT_EQ(c.d_model, w.d_model);
    EXPECT_EQ(c.n_head, w.n_head);
    EXPECT_EQ(c.n_head_kv, w.n_head_kv);
    EXPECT_EQ(c.d_head, w.d_head);
    EXPECT_EQ(c.d_ff, w.d_ff);
    EXPECT_EQ(c.n_vocab, w.n_vocab);
    EXPECT_EQ(c.n_ctx, w.n_ctx);
    EXPECT_EQ(c.rope_theta, w.rope_theta);
    EXPECT_EQ(c.norm_eps, w.eps);
    EXPECT_EQ(c.tied_output, w.tied);
    EXPECT_EQ(model_config(spec(w.name)).shape(), c.shape());  // the same through a ModelSpec
  }
  // The planner's built-in dims are the smollm2-135m row.
  EXPECT_EQ(smollm2_135m_config().shape(), synthetic_config("synthetic:smollm2-135m").shape());
}

TEST(Synthetic, UnknownNameListsTheKnownOnes) {
  EXPECT_TRUE(is_synthetic("synthetic:tiny"));
  EXPECT_FALSE(is_synthetic("tiny"));
  EXPECT_FALSE(is_synthetic("data/models/synthetic:tiny"));
  for (const std::string& bad : std::vector<std::string>{"synthetic:nope", "synthetic:", "synthetic:Tiny", "synthetic:tiny "}) {
    SCOPED_TRACE(bad);
    try {
      synthetic_config(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("unknown synthetic model '" + bad.substr(10) + "'"), std::string::npos) << msg;
      for (const Want& w : kWant) EXPECT_NE(msg.find(w.name), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(Model::load(spec("nope")), std::invalid_argument);
}

TEST(Synthetic, LayersBounds) {
  EXPECT_EQ(synthetic_config("synthetic:llama2-7b", 0).n_layer, 32);  // 0: all
  EXPECT_EQ(synthetic_config("synthetic:llama2-7b", 1).n_layer, 1);
  EXPECT_EQ(synthetic_config("synthetic:llama2-7b", 32).n_layer, 32);
  EXPECT_EQ(synthetic_config("synthetic:llama2-7b", 2).d_model, 4096);  // only the depth changes
  for (int bad : {33, -1, 1000}) {
    try {
      synthetic_config("synthetic:llama2-7b", bad);
      ADD_FAILURE() << "accepted --layers " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("1 ≤ L ≤ 32"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Model::load(spec("tiny", 3)), std::invalid_argument);
  // A GGUF file takes no layer count (its cache is keyed by the file alone).
  try {
    model_config(ModelSpec{"/some/model.gguf", 2});
    ADD_FAILURE() << "--layers accepted for a GGUF file";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("synthetic"), std::string::npos) << e.what();
  }
}

// ---- the generator -------------------------------------------------------------------------

// Computed by an independent implementation, scripts/golden/synthetic_weights.py (Python
// integers): SplitMix64's mixer, FNV-1a of the name, four 16-bit pieces, the f32 scale.
struct Golden {
  uint64_t seed;
  const char* tensor;
  uint64_t index;
  float value;
};
const Golden kGoldenWeights[] = {
    {1, "token_embd.weight", 0, -0x1.b890800000000p-7f},
    {1, "blk.1.ffn_up.weight", 777, -0x1.9263da0000000p-8f},
    {2, "token_embd.weight", 0, -0x1.49e2ea0000000p-8f},
    {1, "output.weight", 16383, -0x1.3c8cb40000000p-7f},
};

TEST(Synthetic, GeneratorMatchesAnIndependentImplementation) {
  for (const Golden& g : kGoldenWeights) {
    const float got = synthetic_weight(g.seed, g.tensor, g.index);
    EXPECT_EQ(std::memcmp(&got, &g.value, sizeof got), 0)
        << g.tensor << "[" << g.index << "] seed " << g.seed << ": " << got << ", expected " << g.value
        << " (if the generator changed on purpose, bump kSyntheticGeneratorVersion)";
  }
  EXPECT_EQ(synthetic_weight(1, "blk.0.attn_norm.weight", 5), 1.0f);
  EXPECT_EQ(synthetic_weight(7, "output_norm.weight", 0), 1.0f);
  // Random prompts, from the same Python implementation.
  EXPECT_EQ(synthetic_prompt(8, 256, 1), (std::vector<int32_t>{140, 20, 97, 12, 110, 217, 107, 21}));
  EXPECT_EQ(synthetic_prompt(8, 32000, 1),
            (std::vector<int32_t>{7820, 25876, 6497, 26636, 12398, 28633, 15723, 17941}));
  EXPECT_NE(synthetic_prompt(8, 256, 2), synthetic_prompt(8, 256, 1));
}

TEST(Synthetic, FillEqualsElementByElement) {
  std::vector<float> a(100003);
  synthetic_fill(5, "blk.3.ffn_down.weight", a.size(), a.data());  // OpenMP threads
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != synthetic_weight(5, "blk.3.ffn_down.weight", i)) ++bad;
  EXPECT_EQ(bad, 0u);
}

// ---- loading through the cache ---------------------------------------------------------------

TEST(Synthetic, CacheIsBuiltOnceThenMapped) {
  TempDir cache;
  WeightLoadReport r1, r2;
  const Model m1 = Model::load(spec("tiny"), in_dir(cache.path), &r1);
  EXPECT_TRUE(r1.built);
  EXPECT_FALSE(r1.fell_back);
  const std::string name = fs::path(r1.cache_path).filename().string();
  EXPECT_TRUE(std::regex_match(name, std::regex(R"(synthetic-tiny-L2\.[0-9a-f]{16}\.f32\.cache)"))) << name;
  EXPECT_EQ(name, weight_cache_file_name("synthetic-tiny-L2", to_hex(synthetic_key(m1.cfg, kDefaultWeightSeed))));
  EXPECT_TRUE(m1.weights->file_backed());

  const Model m2 = Model::load(spec("tiny"), in_dir(cache.path), &r2);
  EXPECT_FALSE(r2.built) << "the second load generated the weights again";
  EXPECT_EQ(r2.cache_path, r1.cache_path);
  EXPECT_EQ(r2.build_s, 0.0);
  EXPECT_NE(m1.weights.get(), m2.weights.get());
  EXPECT_EQ(cache.files(), (std::vector<std::string>{name, name + ".lock"}));
  EXPECT_EQ(m2.cfg.shape(), synthetic_config("synthetic:tiny").shape());
}

TEST(Synthetic, TwoLoadsSameBytesAndAnyElementRegenerates) {
  TempDir a, b;
  WeightLoadReport ra, rb;
  const Model ma = Model::load(spec("tiny"), in_dir(a.path), &ra);
  const Model mb = Model::load(spec("tiny"), in_dir(b.path), &rb);  // built again, elsewhere
  ASSERT_TRUE(ra.built && rb.built);
  ASSERT_EQ(ma.weights->size(), mb.weights->size());
  EXPECT_EQ(std::memcmp(ma.weights->data(), mb.weights->data(), ma.weights->size()), 0);
  // Private memory: the same tensors (its header has no key).
  const Model mp = Model::load(spec("tiny"), WeightSource::memory);
  EXPECT_FALSE(mp.weights->file_backed());
  const size_t data_at = ma.weights->entries().front().offset;
  EXPECT_EQ(std::memcmp(ma.weights->data() + data_at, mp.weights->data() + data_at,
                        ma.weights->size() - data_at), 0);

  // Single elements regenerated alone, through the Model's pointers (stacked tensors: ffn_up
  // is the second half of w_gate_up, attn_v the last rows of wqkv).
  const ModelConfig& c = ma.cfg;
  const uint64_t s = kDefaultWeightSeed, d = c.d_model;
  EXPECT_EQ(ma.tok_embd[255 * d + 63], synthetic_weight(s, "token_embd.weight", 255 * d + 63));
  EXPECT_EQ(ma.output[16383], synthetic_weight(s, "output.weight", 16383));
  EXPECT_EQ(ma.layers[1].w_gate_up[c.d_ff * d + 777], synthetic_weight(s, "blk.1.ffn_up.weight", 777));
  EXPECT_EQ(ma.layers[1].w_gate_up[777], synthetic_weight(s, "blk.1.ffn_gate.weight", 777));
  EXPECT_EQ(ma.layers[0].wqkv[(c.d_q() + c.d_kv()) * d + 5], synthetic_weight(s, "blk.0.attn_v.weight", 5));
  EXPECT_EQ(ma.layers[0].w_down[100], synthetic_weight(s, "blk.0.ffn_down.weight", 100));
  EXPECT_EQ(ma.layers[1].attn_norm[7], 1.0f);
}

TEST(Synthetic, OtherLayersOrSeedAreOtherFiles) {
  TempDir cache;
  WeightLoadReport r2, r1, rs;
  const Model m2 = Model::load(spec("tiny", 2), in_dir(cache.path), &r2);
  const Model m1 = Model::load(spec("tiny", 1), in_dir(cache.path), &r1);
  const Model ms = Model::load(spec("tiny", 2, 2), in_dir(cache.path), &rs);
  EXPECT_TRUE(r2.built && r1.built && rs.built);
  EXPECT_NE(r1.cache_path, r2.cache_path);
  EXPECT_NE(rs.cache_path, r2.cache_path);
  EXPECT_NE(fs::path(r1.cache_path).filename().string().find("synthetic-tiny-L1."), std::string::npos);
  EXPECT_EQ(cache.files().size(), 6u);  // three caches, three locks
  EXPECT_EQ(m1.cfg.n_layer, 1);
  // A cut model is the first layers of the whole one; another seed is other weights.
  const size_t n_qkv = size_t(m2.cfg.d_q() + 2 * m2.cfg.d_kv()) * m2.cfg.d_model;
  EXPECT_EQ(std::memcmp(m1.layers[0].wqkv, m2.layers[0].wqkv, n_qkv * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(ms.layers[0].wqkv, m2.layers[0].wqkv, n_qkv * sizeof(float)), 0);
  // Keys differ in every field of the spec.
  const ModelConfig c = synthetic_config("synthetic:tiny");
  EXPECT_NE(synthetic_key(c, 1), synthetic_key(c, 2));
  EXPECT_NE(synthetic_key(c, 1), synthetic_key(synthetic_config("synthetic:tiny", 1), 1));
  EXPECT_NE(synthetic_key(c, 1), synthetic_key(synthetic_config("synthetic:smollm2-135m", 2), 1));
}

TEST(Synthetic, CacheGoesUnderDataModelsByDefault) {
  const char* old = std::getenv("CASCADE_CACHE_DIR");
  const std::string saved = old ? old : "";
  ::unsetenv("CASCADE_CACHE_DIR");
  const WeightOrigin o = synthetic_weight_origin(synthetic_config("synthetic:tiny"), 1);
  const std::vector<std::string> dirs = weight_cache_dirs_from(o.home_dir);
  ASSERT_GE(dirs.size(), 2u);
  EXPECT_EQ(fs::path(dirs[0]), fs::path(CASCADE_SOURCE_DIR) / "data" / "models");
  ::setenv("CASCADE_CACHE_DIR", "/x/cache", 1);
  EXPECT_EQ(weight_cache_dirs_from(o.home_dir), (std::vector<std::string>{"/x/cache"}));
  if (old)
    ::setenv("CASCADE_CACHE_DIR", saved.c_str(), 1);
  else
    ::unsetenv("CASCADE_CACHE_DIR");
  EXPECT_EQ(o.file_stem, "synthetic-tiny-L2");
}

// ---- scale ---------------------------------------------------------------------------------

TEST(Synthetic, WeightsAreFiniteWithTheIntendedScale) {
  TempDir cache;
  const Model m = Model::load(spec("tiny"), in_dir(cache.path));
  const ModelConfig& c = m.cfg;
  const size_t d = c.d_model, nv = c.n_vocab;
  std::vector<std::pair<const float*, size_t>> matrices = {{m.tok_embd, nv * d}, {m.output, nv * d}};
  std::vector<std::pair<const float*, size_t>> norms = {{m.out_norm, d}};
  for (const LayerWeights& w : m.layers) {
    matrices.push_back({w.wqkv, size_t(c.d_q() + 2 * c.d_kv()) * d});
    matrices.push_back({w.wo, d * c.d_q()});
    matrices.push_back({w.w_gate_up, 2 * size_t(c.d_ff) * d});
    matrices.push_back({w.w_down, d * c.d_ff});
    norms.push_back({w.attn_norm, d});
    norms.push_back({w.ffn_norm, d});
  }
  double sum = 0, sum2 = 0, max_abs = 0;
  size_t n = 0, nonfinite = 0;
  for (const auto& [p, count] : matrices)
    for (size_t i = 0; i < count; ++i, ++n) {
      if (!std::isfinite(p[i])) ++nonfinite;
      sum += p[i];
      sum2 += double(p[i]) * p[i];
      max_abs = std::max(max_abs, std::fabs(double(p[i])));
    }
  const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  std::printf("  tiny: %zu weights, mean %.2e, std %.5f, max |w| %.4f\n", n, mean, sd, max_abs);
  EXPECT_EQ(nonfinite, 0u);
  EXPECT_LT(std::fabs(mean), 5 * 0.02 / std::sqrt(double(n)));  // 5 standard errors
  EXPECT_NEAR(sd, 0.02, 0.0004);
  EXPECT_LE(max_abs, 0.02 * std::sqrt(12.0) * 1.0001);  // Irwin–Hall(4) is bounded at 2·sqrt(3)σ
  EXPECT_GT(max_abs, 0.02 * 2.5);                       // but not squeezed
  for (const auto& [p, count] : norms)
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(p[i], 1.0f);
}

// ---- the reference forward pass ------------------------------------------------------------

TEST(Synthetic, ReferenceLogitsAreFiniteAndGreedyDecodingIsDeterministic) {
  TempDir cache;
  const Model m = Model::load(spec("tiny"), in_dir(cache.path));
  const int V = m.cfg.n_vocab;
  const std::vector<int32_t> prompt = synthetic_prompt(24, V);
  auto greedy = [&](std::vector<float>* first_logits) {
    Reference ref(m);
    std::vector<float> logits = ref.forward(prompt);
    if (first_logits) *first_logits = logits;
    std::vector<int32_t> out;
    for (int i = 0; i < 12; ++i) {
      out.push_back(kernels::argmax_row(logits.data(), V));
      logits = ref.forward({out.back()});
    }
    return out;
  };
  std::vector<float> logits;
  const std::vector<int32_t> a = greedy(&logits), b = greedy(nullptr);
  ASSERT_EQ(logits.size(), size_t(V));
  double lo = logits[0], hi = logits[0];
  for (float x : logits) {
    ASSERT_TRUE(std::isfinite(x));
    lo = std::min(lo, double(x));
    hi = std::max(hi, double(x));
  }
  std::printf("  tiny: logits in [%.4f, %.4f]\n", lo, hi);
  EXPECT_GT(hi - lo, 0.1) << "logits (nearly) constant";
  EXPECT_LT(hi - lo, 100.0);
  EXPECT_EQ(a, b);
  // Not stuck on one token.
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 1u);
}

}  // namespace
}  // namespace cascade
