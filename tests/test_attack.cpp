// The attack suite on the tiny synthetic model: the attacker's batched forward reproduces the
// victim's rows (an independent path: the single-process reference prefill), vocabulary
// matching recovers a known prompt under every permutation, hole filling recovers a known
// hole, layer-0 rows name their tokens, a CompNode's layer-0 partials verify the segments of
// its holes, and the score's floor is PROTOCOL's 2x/(1+x).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "cascade/continuations.h"
#include "cascade/gap_attack.h"
#include "cascade/layer.h"
#include "cascade/partial_match.h"
#include "cascade/partial_solve.h"
#include "cascade/reference.h"
#include "cascade/schedule.h"
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
  auto be = make_cpu_backend();
  LayerScratch ws;  // after be: its buffers go back to be
  layer_prepass(*be, m, 0, h.data(), pos.data(), 6, q.data(), k.data(), v.data(), ws);
  const Layer0Inverter inv(m);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(inv.token({RowKind::q, 0}, pos[i], q.data() + i * c.d_q()), ids[i]) << "q at " << pos[i];
    EXPECT_EQ(inv.token({RowKind::k, 0}, pos[i], k.data() + i * c.d_kv()), ids[i]) << "k at " << pos[i];
    EXPECT_EQ(inv.token({RowKind::v, 0}, pos[i], v.data() + i * c.d_kv()), ids[i]) << "v at " << pos[i];
  }
}

// The layer-0 partials CompNode 0 of `s` would receive for `ids`, made independently of the
// verifier: the model's prepass over the whole prompt (as the CompNodes run it, not from the
// layer-0 table) and the backend's partial attention per (own query, key shard), as the
// AttnNodes run it.
ViewPartials comp0_partials(const Model& m, const Schedule& s, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.cfg;
  const int n = (int)ids.size();
  std::vector<int32_t> pos(n);
  for (int i = 0; i < n; ++i) pos[i] = i;
  std::vector<float> h((size_t)n * c.d_model), q((size_t)n * c.d_q()), k((size_t)n * c.d_kv()), v(k.size());
  embed_tokens(m, ids.data(), n, h.data());
  auto be = make_cpu_backend();
  LayerScratch ws;  // after be: its buffers go back to be
  layer_prepass(*be, m, 0, h.data(), pos.data(), n, q.data(), k.data(), v.data(), ws);
  ViewPartials vp;
  vp.beta = s.beta, vp.n_head = c.n_head, vp.d_head = c.d_head;
  for (int p : s.positions(0, n, 0)) vp.positions.push_back(p);
  for (int b = 0; b < s.beta; ++b) {
    const std::vector<int> keys = s.positions(0, n, -1, b);
    std::vector<int32_t> kp(keys.begin(), keys.end());
    std::vector<float> K, V;
    for (int j : keys) {
      K.insert(K.end(), k.begin() + (size_t)j * c.d_kv(), k.begin() + (size_t)(j + 1) * c.d_kv());
      V.insert(V.end(), v.begin() + (size_t)j * c.d_kv(), v.begin() + (size_t)(j + 1) * c.d_kv());
    }
    for (int p : vp.positions) {
      std::vector<float> mm(c.n_head), ee(c.n_head), uu((size_t)c.n_head * c.d_head);
      PartialAttnArgs a;
      a.q = q.data() + (size_t)p * c.d_q();
      a.q_pos = &p;
      a.nq = 1;
      a.k = K.data(), a.v = V.data(), a.k_pos = kp.data(), a.nk = (int)kp.size();
      a.n_head = c.n_head, a.n_head_kv = c.n_head_kv, a.d_head = c.d_head;
      a.m = mm.data(), a.e = ee.data(), a.u = uu.data();
      be->partial_attention(a);
      vp.m.insert(vp.m.end(), mm.begin(), mm.end());
      vp.e.insert(vp.e.end(), ee.begin(), ee.end());
      vp.u.insert(vp.u.end(), uu.begin(), uu.end());
    }
  }
  return vp;
}

Schedule cluster_schedule(int alpha, int c, int n) {
  ScheduleParams sp;
  sp.alpha = sp.beta = alpha;
  sp.c = c;
  sp.n_positions = n;
  return make_schedule(sp);
}

// α = β = 3, c = 2, 18 positions: CompNode 0 holds {0,1, 6,7, 12,13}; its hole 2-5 is shard
// 1's {2,3} and shard 2's {4,5}, each checked alone by the partials of positions 6 and 7.
struct Comp0Layout {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(18, m.cfg.n_vocab, 29);
  const Schedule s = cluster_schedule(3, 2, 18);
  const ViewPartials vp = comp0_partials(m, s, ids);
  const Layer0Inverter table{m};
  std::vector<int32_t> known = own_tokens();
  std::vector<int32_t> own_tokens() const {
    std::vector<int32_t> k(ids.size(), -1);
    for (int p : {0, 1, 6, 7, 12, 13}) k[p] = ids[p];
    return k;
  }
};

TEST(PartialMatch, TheTruthMatchesAndOneWrongTokenDoesNot) {
  Comp0Layout l;
  const Model& m = l.m;
  const auto &ids = l.ids, &known = l.known;
  const Schedule& s = l.s;
  const ViewPartials& vp = l.vp;
  const Layer0Inverter& table = l.table;
  Continuations cx(m);
  for (int first : {2, 4}) {
    SCOPED_TRACE(first);
    const FillVerifier verify = partial_verifier(m, table, vp, s.att, known, first, 2, {6, 7});
    // Fills: the truth, its second token wrong, its first token wrong.
    const std::vector<std::vector<int32_t>> entries = {{ids[first]}, {(ids[first] + 1) % 256}};
    const int32_t parent[3] = {0, 0, 1};
    const int32_t last[3] = {ids[first + 1], (ids[first + 1] + 1) % 256, ids[first + 1]};
    FillBatch fb;
    fb.entries = &entries, fb.parent = parent, fb.last = last, fb.n = 3, fb.len = 2;
    double d[3];
    verify(cx, fb, d);
    EXPECT_LT(d[0], 1e-5);
    EXPECT_GT(d[1], 1e-3);
    EXPECT_GT(d[2], 1e-3);
  }
  // Position 12's partial against shard 1 covers 8 and 9 too, which the attacker does not know.
  EXPECT_THROW(partial_verifier(m, table, vp, s.att, known, 2, 2, {12, 13}), std::invalid_argument);
}

// α = β = 4, c = 1: every CompNode hole is 3 segments of one token, each verified by one
// query's partial. A budget of V fills per segment recovers every hole; the hidden row after
// a hole of 3 (V³ fills) at the same budget does not.
TEST(PartialMatch, AttackViewFillsEveryHoleSegmentBySegment) {
  const Model& m = tiny();
  const int n = 24;
  const std::vector<int32_t> ids = synthetic_prompt(n, m.cfg.n_vocab, 31);
  const Schedule s = cluster_schedule(4, 1, n);
  PartyView view;
  view.role = s.role_of_rank(s.comp_rank(0));
  view.n_prompt = n;
  view.tokens.assign(n, -1);
  for (int p : s.positions(0, n, 0)) view.tokens[p] = ids[p];
  view.shard.assign(s.att.begin(), s.att.end());
  view.partials = comp0_partials(m, s, ids);
  const RowSpec spec{RowKind::hidden, 1};
  const std::vector<float> hidden = victim_rows(m, ids, spec);
  ViewRows rows{spec, {}, {}};
  for (int p : s.positions(0, n, 0)) {
    rows.positions.push_back(p);
    rows.data.insert(rows.data.end(), hidden.begin() + (size_t)p * m.cfg.d_model, hidden.begin() + (size_t)(p + 1) * m.cfg.d_model);
  }
  view.rows.push_back(rows);
  ViewAttackOptions o;
  o.gap.budget = m.cfg.n_vocab;
  o.verify = Verify::partials;
  const ViewAttackResult r = attack_view(m, view, o);
  EXPECT_EQ(r.holes.size(), 15u);  // positions 1-3, 5-7, ..., 17-19: 5 holes of 3 segments
  for (int p = 0; p <= 20; ++p) {
    EXPECT_EQ(r.recovered[p], ids[p]) << p;
    EXPECT_TRUE(r.confident[p]) << p;
  }
  o.span = true;  // the span solver: one verified fill per segment
  const ViewAttackResult rs = attack_view(m, view, o);
  EXPECT_EQ(rs.recovered, r.recovered);
  EXPECT_EQ(rs.span_solved, 15);
  EXPECT_EQ(rs.verified, 15);
  o.span = false;
  o.verify = Verify::rows;
  const ViewAttackResult rr = attack_view(m, view, o);
  int right = 0;
  for (int p = 0; p <= 20; ++p) right += view.tokens[p] < 0 && rr.recovered[p] == ids[p];
  EXPECT_LT(right, 15 / 2) << "the hidden rows alone should not fill holes of 3 at a budget of V";
}

// The span solver on the same layout: each segment's value rows span what its partials mix, so
// the segment's tokens come out of the membership test, placed by RoPE, with no enumeration.
TEST(PartialSolve, ReadsASegmentOffTheSpanOfItsPartials) {
  Comp0Layout l;
  const Model& m = l.m;
  const std::vector<int32_t>& ids = l.ids;
  std::vector<int32_t>& known = l.known;
  const Schedule& s = l.s;
  const ViewPartials& vp = l.vp;
  const Layer0Inverter& table = l.table;
  for (int first : {2, 4}) {
    SCOPED_TRACE(first);
    const SpanSolution sol = span_solve(m, table, vp, s.att, known, first, 2, {6, 7}, 10);
    ASSERT_FALSE(sol.fills.empty());
    EXPECT_EQ(sol.fills[0], std::vector<int32_t>(ids.begin() + first, ids.begin() + first + 2));
  }
  // Later holes: shard 1's keys 2, 3 are known now (the attacker's guesses), 8, 9 are not.
  known[2] = ids[2], known[3] = ids[3], known[4] = ids[4], known[5] = ids[5];
  const SpanSolution later = span_solve(m, table, vp, s.att, known, 8, 2, {12, 13}, 10);
  ASSERT_FALSE(later.fills.empty());
  EXPECT_EQ(later.fills[0], std::vector<int32_t>(ids.begin() + 8, ids.begin() + 10));
  // A wrong earlier guess of a key adds its true and its guessed value rows to the residual's
  // span; the segment's tokens are still in it, and still placed first.
  known[2] = (ids[2] + 1) % 256;
  const SpanSolution wrong = span_solve(m, table, vp, s.att, known, 8, 2, {12, 13}, 10);
  ASSERT_FALSE(wrong.fills.empty());
  EXPECT_EQ(wrong.fills[0], std::vector<int32_t>(ids.begin() + 8, ids.begin() + 10));
  EXPECT_GT(wrong.candidates[0].size(), later.candidates[0].size());
}

// More unknown keys of a shard than mixtures: α = 6, β = 2, c = 1 leaves CompNode 0 one query
// (2 heads per kv head here: 2 mixtures) against shard 1's 3 unknown keys 1, 3, 5 of its hole.
TEST(PartialSolve, FewerMixturesThanUnknownKeysSolveNothing) {
  const Model& m = tiny();
  const std::vector<int32_t> ids = synthetic_prompt(14, m.cfg.n_vocab, 37);
  ScheduleParams sp;
  sp.alpha = 6, sp.beta = 2, sp.c = 1, sp.n_positions = 14;
  const Schedule s = make_schedule(sp);
  const ViewPartials vp = comp0_partials(m, s, ids);
  const Layer0Inverter table(m);
  std::vector<int32_t> known(ids.size(), -1);
  known[0] = ids[0], known[6] = ids[6];
  const SpanSolution sol = span_solve(m, table, vp, s.att, known, 1, 5, {6}, 100);
  for (const std::vector<int32_t>& f : sol.fills) EXPECT_NE(f, std::vector<int32_t>(ids.begin() + 1, ids.begin() + 6));
  EXPECT_TRUE(sol.candidates[0].empty());  // shard 1: position 1 gets no candidate
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
