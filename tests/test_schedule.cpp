// Planner: (c, δ)-sharding, attention sharding rules, baselines, wire format. (Exposure and
// the security check: test_exposure.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "cascade/schedule.h"

using namespace cascade;

namespace {

Schedule cdelta(int alpha, int c, int beta, int n, int delta = 0,
                AttnSharding sharding = AttnSharding::offset) {
  ScheduleParams p;
  p.alpha = alpha;
  p.c = c;
  p.beta = beta;
  p.delta = delta;
  p.n_positions = n;
  p.attn_sharding = sharding;
  return make_schedule(p);
}

Schedule baseline(const std::string& strategy, int alpha, int beta, int n, uint64_t seed = 0,
                  AttnSharding sharding = AttnSharding::offset) {
  ScheduleParams p;
  p.strategy = strategy;
  p.alpha = alpha;
  p.beta = beta;
  p.seed = seed;
  p.n_positions = n;
  p.attn_sharding = sharding;
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

}  // namespace

TEST(Schedule, PaperFigure) {
  // c = 2, δ = 7, α = 4; 1-based figure sets {1,2,8,9}, {3,4,10,11} and, with c = β = 2,
  // AttnNode sets {1,3,8,10}, {2,4,9,11} (the positions of those two CompNodes per shard).
  // The figure's AttnNodes split clusters by offset: the `offset` rule.
  Schedule s = cdelta(4, 2, 2, 11, 7, AttnSharding::offset);
  EXPECT_EQ(s.delta, 7);
  EXPECT_EQ(s.positions(0, 11, 0), (std::vector<int>{0, 1, 7, 8}));
  EXPECT_EQ(s.positions(0, 11, 1), (std::vector<int>{2, 3, 9, 10}));
  EXPECT_EQ(s.positions(0, 11, 2), (std::vector<int>{4, 5}));
  EXPECT_EQ(s.positions(0, 11, 3), (std::vector<int>{6}));
  std::set<int> shown{0, 1, 7, 8, 2, 3, 9, 10};
  std::vector<int> att0, att1;
  for (int p : s.positions(0, 11, -1, 0))
    if (shown.count(p)) att0.push_back(p);
  for (int p : s.positions(0, 11, -1, 1))
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

TEST(Schedule, ClusterShardingIsTheDefault) {
  ScheduleParams p;
  p.alpha = 4;
  p.c = 4;
  p.beta = 4;
  p.n_positions = 40;
  EXPECT_EQ(p.attn_sharding, AttnSharding::cluster);
  EXPECT_EQ(p.lm_head, LmHead::client);
  Schedule s = make_schedule(p);
  for (int q = 0; q < 40; ++q) EXPECT_EQ(s.att[q], s.comp[q]) << q;  // β = α: shard k = CompNode k
  // β < α: shard s holds CompNodes s, s + β, ...
  p.beta = 3;
  s = make_schedule(p);
  for (int q = 0; q < 40; ++q) EXPECT_EQ(s.att[q], s.comp[q] % 3) << q;
  EXPECT_EQ(s.positions(0, 40, -1, 0), (std::vector<int>{0, 1, 2, 3, 12, 13, 14, 15, 16, 17, 18, 19,
                                                         28, 29, 30, 31, 32, 33, 34, 35}));
  // Baselines follow the rule too.
  Schedule rr = baseline(kStrategyRoundRobin, 4, 2, 10, 0, AttnSharding::cluster);
  EXPECT_EQ(rr.att, (std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1}));
  Schedule ct = baseline(kStrategyContiguous, 3, 3, 9, 0, AttnSharding::cluster);
  EXPECT_EQ(ct.att, (std::vector<int32_t>{0, 0, 0, 1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(std::string(attn_sharding_name(AttnSharding::offset)), "offset");
  EXPECT_EQ(parse_attn_sharding("cluster"), AttnSharding::cluster);
  EXPECT_EQ(parse_lm_head("comp"), LmHead::comp);
  EXPECT_THROW(parse_attn_sharding("rows"), std::invalid_argument);
  EXPECT_THROW(parse_lm_head("server"), std::invalid_argument);
}

TEST(Schedule, PositionSets) {
  Schedule s = cdelta(3, 2, 2, 20, 0, AttnSharding::offset);  // δ = 6
  EXPECT_EQ(s.positions(0, 20, 1), (std::vector<int>{2, 3, 8, 9, 14, 15}));
  EXPECT_EQ(s.positions(0, 20, 1, 1), (std::vector<int>{3, 9, 15}));
  EXPECT_EQ(s.positions(8, 10, 1), (std::vector<int>{8, 9}));
  EXPECT_EQ(s.positions(5, 5), std::vector<int>{});
  EXPECT_EQ(s.positions(0, 20).size(), 20u);
  EXPECT_THROW(s.positions(0, 21), std::out_of_range);
  EXPECT_THROW(s.positions(-1, 3), std::out_of_range);
  EXPECT_THROW(s.positions(4, 3), std::out_of_range);
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
    for (int sh = 0; sh < 4; ++sh) EXPECT_EQ(s.positions(0, 16, k, sh).size(), 1u);
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
  q.attn_sharding = AttnSharding::offset;
  EXPECT_TRUE(contains(make_error(q), "'offset' needs 1 <= beta <= c")) << make_error(q);
  q.attn_sharding = AttnSharding::cluster;  // β ≤ α is what cluster needs
  EXPECT_EQ(make_error(q), "");
  q.beta = 5;
  EXPECT_TRUE(contains(make_error(q), "needs 1 <= beta <= alpha, got beta = 5 > alpha = 4"))
      << make_error(q);
  q = p;
  q.shape = {30, 576, 9, 2, 64, 49152};  // 9 heads over 2 kv heads
  EXPECT_TRUE(contains(make_error(q), "n_head_kv")) << make_error(q);
  q.shape = {30, 576, 9, 3, 0, 49152};
  EXPECT_TRUE(contains(make_error(q), "dimension")) << make_error(q);
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
  // Baselines under offset accept any beta >= 1 (c is not theirs).
  q = p;
  q.strategy = kStrategyRoundRobin;
  q.beta = 5;
  q.attn_sharding = AttnSharding::offset;
  EXPECT_EQ(make_error(q), "");
}

TEST(Schedule, Baselines) {
  Schedule c = baseline(kStrategyContiguous, 4, 2, 10);  // blocks of 3: 0,0,0,1,1,1,2,2,2,3
  EXPECT_EQ(c.c, 3);
  EXPECT_EQ(c.positions(0, 10, 0), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(c.positions(0, 10, 3), (std::vector<int>{9}));
  EXPECT_EQ(c.positions(0, 10, -1, 1), (std::vector<int>{1, 3, 5, 7, 9}));  // offset: p mod β
  Schedule c9 = baseline(kStrategyContiguous, 4, 1, 9);  // the last CompNode gets nothing
  EXPECT_TRUE(c9.positions(0, 9, 3).empty());
  validate(c9);

  Schedule r = baseline(kStrategyRoundRobin, 3, 2, 9);
  EXPECT_EQ(r.positions(0, 9, 1), (std::vector<int>{1, 4, 7}));
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

TEST(Wire, RoundTrip) {
  Schedule shaped = cdelta(4, 4, 4, 30, 0, AttnSharding::cluster);
  shaped.shape = {30, 576, 9, 3, 64, 49152};
  shaped.lm_head = LmHead::comp;
  Schedule bert = cdelta(4, 4, 4, 30, 0, AttnSharding::cluster);
  bert.shape = {12, 768, 12, 12, 64, 30522, Family::bert};
  for (const Schedule& s : {cdelta(4, 2, 2, 11, 7), cdelta(8, 8, 8, 200), shaped, bert,
                            baseline(kStrategyRandom, 3, 5, 77, 0xdeadbeefcafeULL),
                            baseline(kStrategyContiguous, 4, 1, 9, 0, AttnSharding::cluster)}) {
    std::vector<uint8_t> buf = serialize(s);
    EXPECT_EQ(buf.size(), 80 + s.strategy.size() + 8 * s.n_positions);
    Schedule t = deserialize(buf);
    EXPECT_EQ(t.strategy, s.strategy);
    EXPECT_EQ(t.attn_sharding, s.attn_sharding);
    EXPECT_EQ(t.lm_head, s.lm_head);
    EXPECT_EQ(t.shape, s.shape);
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
  EXPECT_EQ(good[4], 3);  // version 3, little-endian

  std::vector<uint8_t> bad = good;
  bad[0] = 'X';
  EXPECT_TRUE(contains(deserialize_error(bad), "bad magic")) << deserialize_error(bad);

  bad = good;
  bad[4] = 1;  // the version before attention sharding, LM head and shape travelled
  EXPECT_TRUE(contains(deserialize_error(bad), "unsupported schedule version 1"))
      << deserialize_error(bad);

  // Offsets: magic 4, version 4, length 4, "cdelta" 6 → attn_sharding at 18, lm_head at 22,
  // alpha..delta 26..41, seed 42..49, n_prompt 50, n_positions 54, shape 58..85 (family at
  // 82), comp at 86.
  bad = good;
  bad[18] = 7;
  EXPECT_TRUE(contains(deserialize_error(bad), "unknown attention sharding 7")) << deserialize_error(bad);
  bad = good;
  bad[22] = 2;
  EXPECT_TRUE(contains(deserialize_error(bad), "unknown LM head placement 2")) << deserialize_error(bad);
  bad = good;
  bad[18] = 0;  // cluster: β = 2 ≤ α = 4 is fine, but the shards no longer follow the rule
  EXPECT_TRUE(contains(deserialize_error(bad), "cdelta with cluster sharding gives")) << deserialize_error(bad);
  bad = good;
  bad[82] = 3;  // no such model family
  EXPECT_TRUE(contains(deserialize_error(bad), "model family 3")) << deserialize_error(bad);
  bad = good;
  bad[58] = 3;  // n_layer 3 with every other dim 0
  EXPECT_TRUE(contains(deserialize_error(bad), "model shape")) << deserialize_error(bad);

  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    EXPECT_NE(deserialize_error(cut), "") << "prefix of " << n << " bytes accepted";
  }
  EXPECT_TRUE(contains(deserialize_error({good.begin(), good.begin() + 20}), "truncated"));

  bad = good;
  bad.push_back(0);
  EXPECT_TRUE(contains(deserialize_error(bad), "bytes of arrays")) << deserialize_error(bad);

  // comp[0] (right after the 86-byte header of "cdelta") set to 4 ≥ α.
  bad = good;
  const size_t comp0 = 80 + 6;
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
  EXPECT_TRUE(contains(deserialize_error(bad), "cdelta with offset sharding gives")) << deserialize_error(bad);

  // A huge n_positions must not allocate: it fails the size check.
  bad = good;
  const size_t npos = 54;
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
  t = s;
  t.attn_sharding = AttnSharding::cluster;  // same shape, other rule: the arrays disagree
  EXPECT_THROW(validate(t), std::runtime_error);
}
