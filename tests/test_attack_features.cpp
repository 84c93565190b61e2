// Features of the learning-based attack (attack_features.h) on the tiny synthetic model:
// the rows must be the model's own, checked against independent paths (the reference's
// logits from the last hidden row, the embedding table, causality), and survive the HDF5 file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "cascade/attack_features.h"
#include "cascade/layer.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "test_util.h"

using namespace cascade;
using cascade_test::error_of;
using cascade_test::temp_path;

namespace {

const Model& tiny() {
  static const Model m = Model::load(ModelSpec{"synthetic:tiny"});
  return m;
}

// max |a − b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, (double)std::fabs(a[i] - b[i]));
    den = std::max(den, (double)std::fabs(b[i]));
  }
  return den > 0 ? num / den : num;
}

}  // namespace

// The last hidden row through the LM head gives Reference::forward's logits, for every position.
TEST(AttackFeatures, LastHiddenGivesTheReferenceLogits) {
  const Model& m = tiny();
  const int L = m.cfg.n_layer;
  const std::vector<int32_t> ids = synthetic_prompt(23, m.cfg.n_vocab, 7);
  auto be = make_cpu_backend();
  const PromptFeatures f = compute_features(*be, m, ids, {L});
  ASSERT_EQ(f.hidden.size(), 1u);
  EXPECT_TRUE(f.k[0].empty() && f.v[0].empty()) << "no k, v rows at layer n_layer";
  std::vector<float> logits(ids.size() * (size_t)m.cfg.n_vocab);
  final_logits(*be, m, f.hidden[0].data(), (int)ids.size(), logits.data());
  Reference ref(m);
  const std::vector<float> want = ref.forward(ids, /*all_logits=*/true);
  const double err = rel_err(logits, want);
  std::printf("%s last hidden row → logits vs Reference: max rel diff %.2e\n", err <= 1e-5 ? "OK" : "NOT OK", err);
  EXPECT_LE(err, 1e-5);
}

// Layer 0 is the embedding table; k, v of a layer are its pre-pass on that layer's hidden
// rows; asking for other layers alongside changes nothing.
TEST(AttackFeatures, LayersAreConsistent) {
  const Model& m = tiny();
  const ModelConfig& c = m.cfg;
  const std::vector<int32_t> ids = synthetic_prompt(17, c.n_vocab, 3);
  const int n = (int)ids.size();
  auto be = make_cpu_backend();
  const PromptFeatures f = compute_features(*be, m, ids, {c.n_layer, 0, 1}, /*with_q=*/true);
  ASSERT_EQ(f.layers, (std::vector<int>{c.n_layer, 0, 1}));
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < c.d_model; ++i)
      ASSERT_EQ(f.hidden[1][(size_t)p * c.d_model + i], m.tok_embd[(size_t)ids[p] * c.d_model + i])
          << "layer 0 is the embedding, position " << p;
  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0);
  for (int s : {1, 2}) {
    const int l = f.layers[s];
    std::vector<float> q((size_t)n * c.d_q()), k((size_t)n * c.d_kv()), v(k.size());
    LayerScratch ws;
    layer_prepass(*be, m, l, f.hidden[s].data(), pos.data(), n, q.data(), k.data(), v.data(), ws);
    EXPECT_EQ(f.k[s], k) << "layer " << l;
    EXPECT_EQ(f.v[s], v) << "layer " << l;
    EXPECT_EQ(f.q[s], q) << "layer " << l;
  }
  EXPECT_TRUE(f.q[0].empty()) << "no q rows at layer n_layer";
  const PromptFeatures one = compute_features(*be, m, ids, {1});
  EXPECT_EQ(one.hidden[0], f.hidden[2]);
  EXPECT_EQ(one.k[0], f.k[2]);
  EXPECT_TRUE(one.q[0].empty()) << "q rows only when asked";
}

// A row depends only on the tokens up to its position: a prefix gives the same rows.
TEST(AttackFeatures, RowsAreCausal) {
  const Model& m = tiny();
  const ModelConfig& c = m.cfg;
  const std::vector<int32_t> ids = synthetic_prompt(20, c.n_vocab, 5);
  const std::vector<int32_t> prefix(ids.begin(), ids.begin() + 9);
  auto be = make_cpu_backend();
  const PromptFeatures a = compute_features(*be, m, ids, {1, c.n_layer});
  const PromptFeatures b = compute_features(*be, m, prefix, {1, c.n_layer});
  for (int s = 0; s < 2; ++s) {
    const std::vector<float> head(a.hidden[s].begin(), a.hidden[s].begin() + b.hidden[s].size());
    EXPECT_LE(rel_err(head, b.hidden[s]), 1e-6) << "layer " << a.layers[s];
  }
  // ... and a change at position 12 leaves rows 0..11 alone but moves row 12 onwards.
  std::vector<int32_t> other = ids;
  other[12] = (other[12] + 1) % c.n_vocab;
  const PromptFeatures d = compute_features(*be, m, other, {c.n_layer});
  const size_t row = c.d_model;
  EXPECT_TRUE(std::equal(d.hidden[0].begin(), d.hidden[0].begin() + 12 * row, a.hidden[1].begin()));
  EXPECT_FALSE(std::equal(d.hidden[0].begin() + 12 * row, d.hidden[0].end(), a.hidden[1].begin() + 12 * row));
}

TEST(AttackFeatures, FileRoundTrip) {
  const Model& m = tiny();
  const ModelConfig& c = m.cfg;
  auto be = make_cpu_backend();
  const std::vector<int> layers{0, 1, c.n_layer};
  const std::vector<std::vector<int32_t>> prompts{synthetic_prompt(5, c.n_vocab, 1),
                                                  synthetic_prompt(11, c.n_vocab, 2),
                                                  synthetic_prompt(1, c.n_vocab, 3)};
  const std::string path = temp_path("features.h5");
  std::vector<PromptFeatures> fs;
  {
    FeaturesWriter w(path, c, layers, "synthetic:tiny", "test", /*with_q=*/true);
    EXPECT_NE(error_of([&] { w.append(compute_features(*be, m, prompts[0], layers)); }).find("without q"),
              std::string::npos);
    for (const auto& p : prompts) {
      fs.push_back(compute_features(*be, m, p, layers, /*with_q=*/true));
      w.append(fs.back());
    }
    EXPECT_EQ(w.n_prompts(), 3);
    EXPECT_EQ(w.n_tokens(), 17);
    EXPECT_NE(error_of([&] { read_features(path); }).find("unfinished"), std::string::npos)
        << "a file still being written says so";
    w.finish();
  }
  const FeaturesFile r = read_features(path);
  EXPECT_EQ(r.model, "synthetic:tiny");
  EXPECT_EQ(r.layers, layers);
  EXPECT_EQ(r.d_model, c.d_model);
  EXPECT_EQ(r.d_kv, c.d_kv());
  EXPECT_EQ(r.prompt_offsets, (std::vector<int64_t>{0, 5, 16, 17}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t o = r.prompt_offsets[i], n = (int64_t)prompts[i].size();
    EXPECT_TRUE(std::equal(prompts[i].begin(), prompts[i].end(), r.tokens.begin() + o));
    for (int64_t p = 0; p < n; ++p) EXPECT_EQ(r.positions[o + p], p);
    for (size_t s = 0; s < layers.size(); ++s) {
      EXPECT_TRUE(std::equal(fs[i].hidden[s].begin(), fs[i].hidden[s].end(), r.hidden[s].begin() + o * c.d_model));
      if (layers[s] < c.n_layer) {
        EXPECT_TRUE(std::equal(fs[i].v[s].begin(), fs[i].v[s].end(), r.v[s].begin() + o * c.d_kv()));
        EXPECT_TRUE(std::equal(fs[i].q[s].begin(), fs[i].q[s].end(), r.q[s].begin() + o * c.d_q()));
      }
    }
  }
  EXPECT_TRUE(r.with_q);
  EXPECT_EQ(r.d_q, c.d_q());
  EXPECT_TRUE(r.k[2].empty());
  EXPECT_TRUE(r.q[2].empty());
  std::remove(path.c_str());
}

TEST(AttackFeatures, ClearErrors) {
  const Model& m = tiny();
  const ModelConfig& c = m.cfg;
  auto be = make_cpu_backend();
  const std::vector<int32_t> ids{1, 2, 3};
  EXPECT_NE(error_of([&] { compute_features(*be, m, ids, {c.n_layer + 1}); }).find("outside 0.."), std::string::npos);
  EXPECT_NE(error_of([&] { compute_features(*be, m, ids, {1, 1}); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([&] { compute_features(*be, m, ids, {}); }).find("no layers"), std::string::npos);
  EXPECT_NE(error_of([&] { compute_features(*be, m, {}, {1}); }).find("empty prompt"), std::string::npos);
  EXPECT_NE(error_of([&] { compute_features(*be, m, {1, c.n_vocab}, {1}); }).find("position 1"), std::string::npos);
  EXPECT_NE(error_of([&] { read_features(temp_path("none.h5")); }).find("not found"), std::string::npos);
  const std::string junk = temp_path("junk.h5");
  if (FILE* fp = std::fopen(junk.c_str(), "w")) {
    std::fputs("not hdf5", fp);
    std::fclose(fp);
  }
  EXPECT_NE(error_of([&] { read_features(junk); }).find("not an HDF5 file"), std::string::npos);
  std::remove(junk.c_str());
}
