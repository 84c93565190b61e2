// The attack suite on the tiny synthetic model: the attacker's batched forward reproduces the
// victim's rows (an independent path: the single-process reference prefill), vocabulary
// matching recovers a known prompt under every permutation, hole filling recovers a known
// hole, layer-0 rows name their tokens, and the score's floor is PROTOCOL's 2x/(1+x).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "cascade/continuations.h"
#include "cascade/gap_attack.h"
#include "cascade/layer.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "cascade/vocab_match.h"

namespace cascade {
namespace {

const Model& tiny() {
  // One thread: these batches are small, and OpenMP barriers on a busy 2-core machine cost
  // more than the math.
  set_cpu_threads(1);
  static const Model m = Model::load(ModelSpec{"synthetic:tiny"}, WeightSource::memory);
  return m;
}

double max_rel(const float* a, const float* b, int n) {
  double worst = 0.0, scale = 0.0;
  for (int i = 0; i < n; ++i) scale = std::max(scale, (double)std::fabs(b[i]));
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::fabs((double)a[i] - b[i]) / scale);
  return worst;
}

TEST(Continuations, RowsEqualTheVictimsPrefill) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(12, m.cfg.n_vocab, 7);
  for (const RowSpec spec : {RowSpec{RowKind::hidden, 0}, RowSpec{RowKind::hidden, 1},
                             RowSpec{RowKind::hidden, 2}, RowSpec{RowKind::q, 0}, RowSpec{RowKind::k, 1},
                             RowSpec{RowKind::v, 1}}) {
    SCOPED_TRACE(row_spec_name(spec));
    const int w = row_width(m.cfg, spec);
    const std::vector<float> victim = victim_rows(m, ids, spec);
    Continuations cx(m);
    cx.append({ids.begin(), ids.begin() + 5});
    // Three sequences of 3 new tokens; the middle one is the prompt's positions 5..7.
    std::vector<int32_t> batch = {1, 2, 3, ids[5], ids[6], ids[7], 9, 9, 9};
    std::vector<float> rows(3 * w);
    Continuations::Batch b;
    b.ids = batch.data();
    b.batch = 3;
    b.t = 3;
    b.spec = &spec;
    b.rows = rows.data();
    cx.run(b);
    EXPECT_LT(max_rel(rows.data() + w, victim.data() + 7 * w, w), 1e-5);
    EXPECT_GT(max_rel(rows.data(), victim.data() + 7 * w, w), 1e-3);  // other tokens, other row
    // The same through a kept beam: position 5 first, then 6..7 extending the right parent.
    if (spec.kind == RowKind::hidden && spec.layer == 0) continue;
    SuffixCache kept;
    std::vector<int32_t> first = {4, ids[5]};
    Continuations::Batch b1;
    b1.ids = first.data();
    b1.batch = 2;
    b1.logits = std::vector<float>(2 * m.cfg.n_vocab).data();
    std::vector<float> logits(2 * m.cfg.n_vocab);
    b1.logits = logits.data();
    b1.keep = &kept;
    cx.run(b1);
    std::vector<int32_t> second = {ids[6], ids[7]}, parent = {1};
    Continuations::Batch b2;
    b2.parent = &kept;
    b2.parent_row = parent.data();
    b2.ids = second.data();
    b2.batch = 1;
    b2.t = 2;
    b2.spec = &spec;
    b2.rows = rows.data();
    cx.run(b2);
    EXPECT_LT(max_rel(rows.data(), victim.data() + 7 * w, w), 1e-5);
  }
}

TEST(Continuations, NextLogitsEqualTheReference) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(9, m.cfg.n_vocab, 3);
  Reference ref(m);
  const std::vector<float> want = ref.forward(ids);
  Continuations cx(m);
  cx.append({ids.begin(), ids.begin() + 4});
  cx.append({ids.begin() + 4, ids.end()});
  ASSERT_EQ(cx.next_logits().size(), want.size());
  EXPECT_LT(max_rel(cx.next_logits().data(), want.data(), (int)want.size()), 1e-5);
  EXPECT_EQ(cx.n_past(), 9);
}

TEST(VocabMatch, RecoversAKnownPromptUnderEveryPermutation) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(16, m.cfg.n_vocab, 11);
  for (const RowSpec spec : {RowSpec{RowKind::hidden, 1}, RowSpec{RowKind::hidden, 2}, RowSpec{RowKind::k, 1}}) {
    for (Permutation p : {Permutation::none, Permutation::rows, Permutation::dims, Permutation::both}) {
      SCOPED_TRACE(row_spec_name(spec) + " " + permutation_name(p));
      const int w = row_width(m.cfg, spec);
      const std::vector<float> rows = permute_rows(victim_rows(m, ids, spec), 16, w, p, 5, /*per_row_dims=*/true);
      VocabMatchOptions o;
      o.row = spec;
      o.perm = p;
      o.batch = 64;
      const VocabMatchResult r = vocab_match(m, rows, 16, o);
      EXPECT_EQ(r.tokens, ids);
      EXPECT_EQ(r.full_scans, 0);  // every true token under eps
      for (const MatchedPosition& pos : r.positions) EXPECT_LT(pos.distance, 1e-4);
    }
  }
}

TEST(VocabMatch, ShuffledRowsAreNotReadInPlace) {
  // With rows shuffled, the plain attack (row i for position i) fails: the check can fail.
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(12, m.cfg.n_vocab, 13);
  const RowSpec spec{RowKind::hidden, 1};
  const std::vector<float> rows = permute_rows(victim_rows(m, ids, spec), 12, m.cfg.d_model, Permutation::rows, 2);
  VocabMatchOptions o;
  o.row = spec;
  o.batch = 64;
  EXPECT_NE(vocab_match(m, rows, 12, o).tokens, ids);
}

TEST(GapAttack, FillsAKnownHole) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(14, m.cfg.n_vocab, 17);
  const RowSpec spec{RowKind::hidden, 1};
  const int w = row_width(m.cfg, spec);
  const std::vector<float> victim = victim_rows(m, ids, spec);
  for (int len : {1, 2}) {
    SCOPED_TRACE(len);
    const int start = 8, p = start + len;
    Continuations cx(m);
    cx.append({ids.begin(), ids.begin() + start});
    GapOptions o;
    o.beam = m.cfg.n_vocab;  // every partial fill kept: the enumeration is exhaustive
    o.budget = (int64_t)m.cfg.n_vocab * (len == 1 ? 1 : m.cfg.n_vocab);
    o.milestones = {1};
    const HoleResult r = fill_hole(cx, len, ids[p], spec, victim.data() + (size_t)p * w, o);
    EXPECT_TRUE(r.matched);
    EXPECT_EQ(r.guess, std::vector<int32_t>(ids.begin() + start, ids.begin() + p));
    EXPECT_LT(r.distance, 1e-4);
    ASSERT_EQ(r.milestones.size(), 2u);
    EXPECT_EQ(r.milestones[0].budget, 1);
    EXPECT_EQ(r.milestones[0].matched, r.match_rank == 0);
    EXPECT_EQ(cx.n_past(), start);  // the prefix is left as it was
  }
}

TEST(GapAttack, ASmallBudgetMissesAnUnlikelyFill) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(12, m.cfg.n_vocab, 19);
  const RowSpec spec{RowKind::hidden, 1};
  const std::vector<float> victim = victim_rows(m, ids, spec);
  Continuations cx(m);
  cx.append({ids.begin(), ids.begin() + 6});
  // The true token's rank in the proposal decides whether a budget of its rank finds it.
  std::vector<float> lp = proposal_logprobs(cx, 0);
  int rank = 0;
  for (float x : lp) rank += x > lp[ids[6]];
  GapOptions o;
  o.budget = rank;  // every fill more probable than the truth, not the truth
  if (rank == 0) GTEST_SKIP() << "the true token is the most probable";
  const HoleResult r = fill_hole(cx, 1, ids[7], spec, victim.data() + 7 * m.cfg.d_model, o);
  EXPECT_FALSE(r.matched);
  EXPECT_EQ(r.verified, rank);
  o.budget = rank + 1;
  EXPECT_TRUE(fill_hole(cx, 1, ids[7], spec, victim.data() + 7 * m.cfg.d_model, o).matched);
}

TEST(Layer0Inverter, NamesTheTokenOfALayer0Row) {
  // Rows made by the model's own prepass at far-apart positions (RoPE turns q and k a lot).
  const Model& m = tiny();
  const ModelConfig& c = m.cfg;
  const std::vector<int32_t> ids = synthetic_prompt(6, c.n_vocab, 23);
  const std::vector<int32_t> pos = {0, 37, 150, 301, 420, 499};
  std::vector<float> h(6 * c.d_model), q(6 * c.d_q()), k(6 * c.d_kv()), v(k.size());
  embed_tokens(m, ids.data(), 6, h.data());
  LayerScratch ws;
  auto be = make_cpu_backend();
  layer_prepass(*be, m, 0, h.data(), pos.data(), 6, q.data(), k.data(), v.data(), ws);
  const Layer0Inverter inv(m);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(inv.token({RowKind::q, 0}, pos[i], q.data() + i * c.d_q()), ids[i]) << "q at " << pos[i];
    EXPECT_EQ(inv.token({RowKind::k, 0}, pos[i], k.data() + i * c.d_kv()), ids[i]) << "k at " << pos[i];
    EXPECT_EQ(inv.token({RowKind::v, 0}, pos[i], v.data() + i * c.d_kv()), ids[i]) << "v at " << pos[i];
  }
}

TEST(ScoreAttack, TheFloorIsKnowingTheObservedTokens) {
  const std::vector<int32_t> truth = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<int32_t> known = {-1, -1, 3, -1, -1, -1, 7, -1};
  std::vector<int32_t> rec = known;
  std::vector<char> conf = {0, 0, 1, 0, 0, 0, 1, 0};
  AttackScore s = score_attack(truth, rec, conf, known);
  EXPECT_EQ(s.observed, 2);
  EXPECT_EQ(s.unseen, 6);
  EXPECT_DOUBLE_EQ(s.floor, 2 * 0.25 / 1.25);
  EXPECT_NEAR(s.rouge_tokens, s.floor, 1e-12);  // the known tokens alone score the floor
  EXPECT_NEAR(s.gain, 0.0, 1e-12);
  rec[0] = 1, rec[1] = 9;  // one right and one wrong guess, both matched
  conf[0] = conf[1] = 1;
  s = score_attack(truth, rec, conf, known);
  EXPECT_EQ(s.unseen_correct, 1);
  EXPECT_EQ(s.unseen_confident, 2);
  // LCS 3 of 4 claimed, 8 true: P 3/4, R 3/8.
  EXPECT_NEAR(s.rouge_confident, 2 * 0.75 * 0.375 / (0.75 + 0.375), 1e-12);
  EXPECT_NEAR(s.rouge_tokens, s.rouge_confident, 1e-12);
  // Unmatched guesses count in the other output: 4 right of 6 guessed, then the better one.
  rec = {1, 2, 3, 4, 9, 9, 7, -1};
  conf = {0, 0, 1, 0, 0, 0, 1, 0};
  s = score_attack(truth, rec, conf, known);
  EXPECT_NEAR(s.rouge_confident, s.floor, 1e-12);
  EXPECT_NEAR(s.rouge_all, 2 * (5.0 / 7) * (5.0 / 8) / (5.0 / 7 + 5.0 / 8), 1e-12);
  EXPECT_NEAR(s.rouge_tokens, s.rouge_all, 1e-12);
  EXPECT_NEAR(s.gain, s.rouge_all - s.floor, 1e-12);
}

}  // namespace
}  // namespace cascade
