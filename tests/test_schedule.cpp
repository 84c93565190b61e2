// Planner: (c, δ)-sharding, baselines, exposure, security check, wire format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "cascade/schedule.h"

using namespace cascade;

namespace {

Schedule cdelta(int alpha, int c, int beta, int n, int delta = 0) {
  ScheduleParams p;
  p.alpha = alpha;
  p.c = c;
  p.beta = beta;
  p.delta = delta;
  p.n_positions = n;
  return make_schedule(p);
}

Schedule baseline(const std::string& strategy, int alpha, int beta, int n, uint64_t seed = 0) {
  ScheduleParams p;
  p.strategy = strategy;
  p.alpha = alpha;
  p.beta = beta;
  p.seed = seed;
  p.n_positions = n;
  return make_schedule(p);
}

// Message of the std::invalid_argument thrown by make_schedule, or "" if none.
std::string make_error(const ScheduleParams& p) {
  try {
    make_schedule(p);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::string deserialize_error(const std::vector<uint8_t>& buf) {
  try {
    deserialize(buf);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

// Parties are listed in rank order, from rank 1.
const PartyExposure& party(const ExposureReport& r, const Schedule&, int rank) {
  return r.parties.at(rank - 1);
}

}  // namespace

TEST(Schedule, PaperFigure) {
  // c = 2, δ = 7, α = 4; 1-based figure sets {1,2,8,9}, {3,4,10,11} and, with c = β = 2,
  // AttnNode sets {1,3,8,10}, {2,4,9,11} (the positions of those two CompNodes per shard).
  Schedule s = cdelta(4, 2, 2, 11, 7);
  EXPECT_EQ(s.delta, 7);
  EXPECT_EQ(s.positions_of_comp(0), (std::vector<int>{0, 1, 7, 8}));
  EXPECT_EQ(s.positions_of_comp(1), (std::vector<int>{2, 3, 9, 10}));
  EXPECT_EQ(s.positions_of_comp(2), (std::vector<int>{4, 5}));
  EXPECT_EQ(s.positions_of_comp(3), (std::vector<int>{6}));
  std::set<int> shown{0, 1, 7, 8, 2, 3, 9, 10};
  std::vector<int> att0, att1;
  for (int p : s.positions_of_shard(0))
    if (shown.count(p)) att0.push_back(p);
  for (int p : s.positions_of_shard(1))
    if (shown.count(p)) att1.push_back(p);
  EXPECT_EQ(att0, (std::vector<int>{0, 2, 7, 9}));
  EXPECT_EQ(att1, (std::vector<int>{1, 3, 8, 10}));
  EXPECT_EQ(s.n_ranks(), 1 + 4 + 4);
}

TEST(Schedule, DefaultDeltaIsAlphaTimesC) {
  Schedule s = cdelta(8, 8, 8, 200);
  EXPECT_EQ(s.delta, 64);
  EXPECT_EQ(s.n_prompt, 200);
  for (int p = 0; p < 200; ++p) {
    EXPECT_EQ(s.comp[p], (p % 64) / 8);
    EXPECT_EQ(s.att[p], (p % 64) % 8);
  }
  EXPECT_EQ(s.n_ranks(), 73);  // the paper's 72 participants + client
}

TEST(Schedule, RanksAndRoles) {
  Schedule s = cdelta(4, 4, 4, 16);
  EXPECT_EQ(s.n_ranks(), 21);
  EXPECT_EQ(s.comp_rank(0), 1);
  EXPECT_EQ(s.comp_rank(3), 4);
  EXPECT_EQ(s.attn_rank(0, 0), 5);
  EXPECT_EQ(s.attn_rank(1, 2), 5 + 4 + 2);
  EXPECT_EQ(s.attn_rank(3, 3), 20);
  EXPECT_EQ(s.role_of_rank(0).kind, RankRole::client);
  EXPECT_EQ(s.role_of_rank(3).kind, RankRole::comp);
  EXPECT_EQ(s.role_of_rank(3).k, 2);
  RankRole r = s.role_of_rank(s.attn_rank(1, 2));
  EXPECT_EQ(r.kind, RankRole::attn);
  EXPECT_EQ(r.a, 1);
  EXPECT_EQ(r.b, 2);
  EXPECT_EQ(r.name(), "AttnNode (1,2)");
  EXPECT_EQ(s.role_of_rank(2).name(), "CompNode 1");
  EXPECT_THROW(s.role_of_rank(21), std::out_of_range);
  EXPECT_THROW(s.role_of_rank(-1), std::out_of_range);
  for (int k = 0; k < 4; ++k)
    for (int sh = 0; sh < 4; ++sh) EXPECT_EQ(s.rows_of_comp_in_shard(k, sh), 1);
}

TEST(Schedule, InvalidArguments) {
  ScheduleParams p;
  p.alpha = 4;
  p.c = 2;
  p.beta = 2;
  p.n_positions = 16;
  EXPECT_EQ(make_error(p), "");

  ScheduleParams q = p;
  q.alpha = 0;
  EXPECT_TRUE(contains(make_error(q), "alpha")) << make_error(q);
  q = p;
  q.beta = 0;
  EXPECT_TRUE(contains(make_error(q), "beta")) << make_error(q);
  q = p;
  q.beta = 3;
  EXPECT_TRUE(contains(make_error(q), "beta <= c")) << make_error(q);
  q = p;
  q.c = 0;
  EXPECT_TRUE(contains(make_error(q), "cluster size")) << make_error(q);
  q = p;
  q.delta = 6;  // (α−1)·c = 6 is not allowed
  EXPECT_TRUE(contains(make_error(q), "delta")) << make_error(q);
  q.delta = 9;
  EXPECT_TRUE(contains(make_error(q), "7 <= delta <= 8")) << make_error(q);
  q.delta = 7;
  EXPECT_EQ(make_error(q), "");
  q = p;
  q.strategy = "zigzag";
  EXPECT_TRUE(contains(make_error(q), "unknown strategy 'zigzag'")) << make_error(q);
  q = p;
  q.n_positions = 0;
  EXPECT_TRUE(contains(make_error(q), "positions")) << make_error(q);
  q = p;
  q.n_prompt = 17;
  EXPECT_TRUE(contains(make_error(q), "prompt length")) << make_error(q);
  // Baselines accept any beta >= 1 (c is not theirs).
  q = p;
  q.strategy = kStrategyRoundRobin;
  q.beta = 5;
  EXPECT_EQ(make_error(q), "");
}

TEST(Schedule, Baselines) {
  Schedule c = baseline(kStrategyContiguous, 4, 2, 10);  // blocks of 3: 0,0,0,1,1,1,2,2,2,3
  EXPECT_EQ(c.c, 3);
  EXPECT_EQ(c.positions_of_comp(0), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(c.positions_of_comp(3), (std::vector<int>{9}));
  EXPECT_EQ(c.positions_of_shard(1), (std::vector<int>{1, 3, 5, 7, 9}));
  Schedule c9 = baseline(kStrategyContiguous, 4, 1, 9);  // the last CompNode gets nothing
  EXPECT_TRUE(c9.positions_of_comp(3).empty());
  validate(c9);

  Schedule r = baseline(kStrategyRoundRobin, 3, 2, 9);
  EXPECT_EQ(r.positions_of_comp(1), (std::vector<int>{1, 4, 7}));
  EXPECT_EQ(r.c, 1);
  EXPECT_EQ(r.delta, 3);
}

TEST(Schedule, RandomIsSeededAndDeterministic) {
  Schedule a = baseline(kStrategyRandom, 5, 3, 1000, 42);
  Schedule b = baseline(kStrategyRandom, 5, 3, 1000, 42);
  Schedule c = baseline(kStrategyRandom, 5, 3, 1000, 43);
  EXPECT_EQ(a.comp, b.comp);
  EXPECT_NE(a.comp, c.comp);
  std::vector<int> count(5, 0);
  for (int k : a.comp) {
    ASSERT_GE(k, 0);
    ASSERT_LT(k, 5);
    ++count[k];
  }
  for (int k = 0; k < 5; ++k) {
    EXPECT_GT(count[k], 150);  // ~200 each
    EXPECT_LT(count[k], 250);
  }
  for (int p = 0; p < 1000; ++p) EXPECT_EQ(a.att[p], p % 3);
  validate(a);
  // Golden values (checked against an independent Python mt19937_64 with the same rejection
  // rule): the assignment must be identical on every machine.
  const std::vector<int32_t> golden{1, 4, 0, 2, 1, 3, 1, 4, 0, 2, 0, 2, 2, 1, 4, 2};
  EXPECT_EQ(std::vector<int32_t>(a.comp.begin(), a.comp.begin() + 16), golden);
}

TEST(Exposure, GapHelper) {
  EXPECT_EQ(gap_of({}, 10), kNoGap);
  EXPECT_EQ(gap_of({3, 4, 5}, 10), kNoGap);        // one run
  EXPECT_EQ(gap_of({0, 1, 7, 8, 14}, 20), 6);      // runs [0,1] [7,8] [14]
  EXPECT_EQ(gap_of({0, 2, 3, 9}, 10), 2);
  EXPECT_EQ(gap_of({0, 1, 2, 3}, 4), 1);           // whole prompt
  EXPECT_EQ(gap_of({0}, 1), kNoGap);               // a 1-token prompt has no gap
  EXPECT_EQ(gap_str(kNoGap), "none");
  EXPECT_EQ(gap_str(5), "5");
  EXPECT_EQ(runs_of({0, 1, 7, 8, 14}),
            (std::vector<std::pair<int, int>>{{0, 1}, {7, 8}, {14, 14}}));
}

TEST(Exposure, CDeltaFractionsAndGaps) {
  Schedule s = cdelta(8, 8, 8, 128);
  ExposureReport r = compute_exposure(s, 128);
  ASSERT_EQ(r.parties.size(), 8u + 64u);
  for (int k = 0; k < 8; ++k) {
    const PartyExposure& e = party(r, s, s.comp_rank(k));
    EXPECT_EQ(e.role.k, k);
    EXPECT_EQ(e.observed, 16);
    EXPECT_DOUBLE_EQ(e.fraction, 1.0 / 8);
    EXPECT_EQ(e.gap, 64 - 8 + 1);  // δ − c + 1
    EXPECT_EQ(e.runs.size(), 2u);
  }
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) {
      const PartyExposure& e = party(r, s, s.attn_rank(a, b));
      EXPECT_EQ(e.role.a, a);
      EXPECT_EQ(e.role.b, b);
      EXPECT_EQ(e.gap_q, 8);  // β when β | c
      EXPECT_EQ(e.gap_kv, 8);
      EXPECT_EQ(e.gap, 8);
      EXPECT_DOUBLE_EQ(e.fraction, a == b ? 1.0 / 8 : 2.0 / 8);
      EXPECT_FALSE(e.whole_prompt);
      const int d = std::abs(a - b);
      if (a != b) {
        EXPECT_EQ(e.union_gap, std::min(d, 8 - d) == 1 ? 7 : std::min(d, 8 - d));
      }
    }
  EXPECT_TRUE(r.secure());
  // Off-diagonal unions with gap 2 (|a − b| = 2 or 6) are warned about, not refused.
  bool warned = false;
  for (const auto& w : r.warnings)
    if (contains(w, "AttnNode (0,2)") && contains(w, "gap 2")) warned = true;
  EXPECT_TRUE(warned);
}

TEST(Exposure, ShortLastClusterAndDiagonalGap) {
  Schedule s = cdelta(4, 2, 2, 70, 7);
  ExposureReport r = compute_exposure(s, 70);
  EXPECT_EQ(party(r, s, s.comp_rank(0)).gap, 7 - 2 + 1);
  EXPECT_EQ(party(r, s, s.comp_rank(1)).gap, 6);
  EXPECT_EQ(party(r, s, s.comp_rank(3)).gap, 7);  // one position per period
  EXPECT_EQ(party(r, s, s.comp_rank(3)).observed, 10);
}

TEST(Exposure, BetaTwoOffDiagonalIsWholePrompt) {
  Schedule s = cdelta(4, 4, 2, 64);
  ExposureReport r = compute_exposure(s, 64, 2);
  const PartyExposure& off = party(r, s, s.attn_rank(0, 1));
  EXPECT_TRUE(off.whole_prompt);
  EXPECT_EQ(off.observed, 64);
  EXPECT_DOUBLE_EQ(off.fraction, 1.0);
  EXPECT_EQ(off.union_gap, 1);
  EXPECT_EQ(off.gap, 2);  // the security gap is per row set
  const PartyExposure& diag = party(r, s, s.attn_rank(1, 1));
  EXPECT_FALSE(diag.whole_prompt);
  EXPECT_EQ(diag.gap, 2);
  EXPECT_DOUBLE_EQ(diag.fraction, 0.5);
  bool said = false;
  for (const auto& w : r.warnings)
    if (w == "AttnNode (0,1) observes every position: whole prompt exposed") said = true;
  EXPECT_TRUE(said);
  EXPECT_TRUE(r.secure());  // ρ = 2: a warning, not a refusal
  EXPECT_FALSE(compute_exposure(s, 64, 3).secure());  // shard gap 2 < 3
}

TEST(Exposure, BetaOneIsWholePromptAndRefused) {
  Schedule s = cdelta(8, 8, 1, 128);
  ExposureReport r = compute_exposure(s, 128);
  const PartyExposure& e = party(r, s, s.attn_rank(0, 0));
  EXPECT_TRUE(e.whole_prompt);
  EXPECT_EQ(e.gap, 1);
  EXPECT_FALSE(r.secure());
}

TEST(Security, RefusesSingleCompNode) {
  // c = 8, α = 1: δ = 8, the CompNode sees every position: δ − c + 1 = 1 < ρ.
  Schedule s = cdelta(1, 8, 8, 64);
  try {
    check_security(s, 64);
    FAIL() << "expected a refusal";
  } catch (const SecurityError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "CompNode 0 (rank 1) has gap 1 < rho = 3")) << m;
    EXPECT_TRUE(contains(m, "--insecure")) << m;
  }
  ExposureReport r = check_security(s, 64, 3, /*insecure=*/true);
  EXPECT_FALSE(r.secure());
  EXPECT_EQ(r.violations.size(), 1u);  // the AttnNodes (gap 8) are fine
}

TEST(Security, RhoEdges) {
  Schedule s = cdelta(8, 8, 8, 128);  // CompNode gap 57, AttnNode gap 8
  EXPECT_TRUE(compute_exposure(s, 128, 1).secure());
  EXPECT_TRUE(compute_exposure(s, 128, 8).secure());
  ExposureReport r9 = compute_exposure(s, 128, 9);
  EXPECT_EQ(r9.violations.size(), 64u);  // every AttnNode, no CompNode
  for (const auto& v : r9.violations) EXPECT_TRUE(contains(v, "AttnNode")) << v;
  EXPECT_EQ(compute_exposure(s, 128, 57).violations.size(), 64u);
  EXPECT_EQ(compute_exposure(s, 128, 58).violations.size(), 72u);
  EXPECT_THROW(compute_exposure(s, 128, 0), std::invalid_argument);
  EXPECT_THROW(compute_exposure(s, 129), std::invalid_argument);
  EXPECT_THROW(compute_exposure(s, 0), std::invalid_argument);
  // Whole-prompt rule even at ρ = 2; ρ = 1 accepts anything.
  Schedule one = cdelta(1, 4, 4, 16);
  EXPECT_FALSE(compute_exposure(one, 16, 2).secure());
  EXPECT_TRUE(compute_exposure(one, 16, 1).secure());
}

TEST(Security, ShortPromptsAndBaselines) {
  // A prompt shorter than c sits in CompNode 0's first cluster: whole prompt, refused.
  Schedule s = cdelta(8, 8, 8, 5);
  ExposureReport r = compute_exposure(s, 5);
  EXPECT_TRUE(party(r, s, s.comp_rank(0)).whole_prompt);
  EXPECT_FALSE(r.secure());
  // A 1-token prompt has no gap anywhere: nothing to refuse.
  EXPECT_TRUE(compute_exposure(cdelta(8, 8, 8, 1), 1).secure());
  // Exposure over the prompt only: positions planned beyond it do not count.
  Schedule g = cdelta(8, 8, 8, 100);
  EXPECT_EQ(party(compute_exposure(g, 64), g, 1).observed, 8);
  // Contiguous blocks are single runs: no gap, so they pass (they are the insecure baseline
  // by fraction/contiguity, not by the gap measure).
  Schedule c = baseline(kStrategyContiguous, 4, 4, 64);
  ExposureReport rc = compute_exposure(c, 64);
  EXPECT_EQ(party(rc, c, 1).gap, kNoGap);
  EXPECT_TRUE(rc.secure());
  // Round-robin: CompNode gap α.
  Schedule rr = baseline(kStrategyRoundRobin, 2, 4, 64);
  ExposureReport rrr = compute_exposure(rr, 64);
  EXPECT_EQ(party(rrr, rr, 1).gap, 2);
  EXPECT_FALSE(rrr.secure());
}

TEST(Wire, RoundTrip) {
  for (const Schedule& s : {cdelta(4, 2, 2, 11, 7), cdelta(8, 8, 8, 200),
                            baseline(kStrategyRandom, 3, 5, 77, 0xdeadbeefcafeULL),
                            baseline(kStrategyContiguous, 4, 1, 9)}) {
    std::vector<uint8_t> buf = serialize(s);
    EXPECT_EQ(buf.size(), 44 + s.strategy.size() + 8 * s.n_positions);
    Schedule t = deserialize(buf);
    EXPECT_EQ(t.strategy, s.strategy);
    EXPECT_EQ(t.alpha, s.alpha);
    EXPECT_EQ(t.beta, s.beta);
    EXPECT_EQ(t.c, s.c);
    EXPECT_EQ(t.delta, s.delta);
    EXPECT_EQ(t.seed, s.seed);
    EXPECT_EQ(t.n_prompt, s.n_prompt);
    EXPECT_EQ(t.n_positions, s.n_positions);
    EXPECT_EQ(t.comp, s.comp);
    EXPECT_EQ(t.att, s.att);
    EXPECT_EQ(serialize(t), buf);
  }
  ScheduleParams p;
  p.alpha = 2;
  p.c = 2;
  p.beta = 2;
  p.n_positions = 10;
  p.n_prompt = 6;
  Schedule t = deserialize(serialize(make_schedule(p)));
  EXPECT_EQ(t.n_prompt, 6);
}

TEST(Wire, CorruptInput) {
  const Schedule s = cdelta(4, 2, 2, 11, 7);
  const std::vector<uint8_t> good = serialize(s);
  EXPECT_EQ(good[0], 'C');
  EXPECT_EQ(good[4], 1);  // version 1, little-endian

  std::vector<uint8_t> bad = good;
  bad[0] = 'X';
  EXPECT_TRUE(contains(deserialize_error(bad), "bad magic")) << deserialize_error(bad);

  bad = good;
  bad[4] = 2;
  EXPECT_TRUE(contains(deserialize_error(bad), "unsupported schedule version 2"))
      << deserialize_error(bad);

  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    EXPECT_NE(deserialize_error(cut), "") << "prefix of " << n << " bytes accepted";
  }
  EXPECT_TRUE(contains(deserialize_error({good.begin(), good.begin() + 20}), "truncated"));

  bad = good;
  bad.push_back(0);
  EXPECT_TRUE(contains(deserialize_error(bad), "bytes of arrays")) << deserialize_error(bad);

  // comp[0] (right after the 50-byte header of "cdelta") set to 4 ≥ α.
  bad = good;
  const size_t comp0 = 44 + 6;
  bad[comp0] = 4;
  EXPECT_TRUE(contains(deserialize_error(bad), "CompNode 4, outside 0..3"))
      << deserialize_error(bad);
  bad[comp0] = 0xff;  // −1 after the other bytes
  bad[comp0 + 1] = bad[comp0 + 2] = bad[comp0 + 3] = 0xff;
  EXPECT_TRUE(contains(deserialize_error(bad), "outside 0..3")) << deserialize_error(bad);

  // att out of range.
  bad = good;
  bad[comp0 + 4 * 11] = 2;
  EXPECT_TRUE(contains(deserialize_error(bad), "attention shard 2")) << deserialize_error(bad);

  // In range but not what cdelta gives.
  bad = good;
  bad[comp0] = 1;
  EXPECT_TRUE(contains(deserialize_error(bad), "cdelta gives")) << deserialize_error(bad);

  // A huge n_positions must not allocate: it fails the size check.
  bad = good;
  const size_t npos = 44 + 6 - 4;
  bad[npos] = bad[npos + 1] = bad[npos + 2] = 0xff;
  bad[npos + 3] = 0x7f;
  EXPECT_TRUE(contains(deserialize_error(bad), "bytes of arrays")) << deserialize_error(bad);

  EXPECT_THROW(deserialize(nullptr, 0), std::runtime_error);
}

TEST(Wire, WorldSize) {
  Schedule s = cdelta(4, 4, 4, 16);
  EXPECT_NO_THROW(check_world_size(s, 21));
  try {
    check_world_size(s, 8);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "needs 1 + α + β² = 21 ranks")) << e.what();
    EXPECT_TRUE(contains(e.what(), "but the job has 8")) << e.what();
  }
}

TEST(Wire, ValidateCatchesEdits) {
  Schedule s = cdelta(4, 4, 4, 16);
  validate(s);
  Schedule t = s;
  t.comp.pop_back();
  EXPECT_THROW(validate(t), std::runtime_error);
  t = s;
  t.att[3] = 0;
  EXPECT_THROW(validate(t), std::runtime_error);
  t = s;
  t.strategy = "zigzag";
  EXPECT_THROW(validate(t), std::runtime_error);
}
