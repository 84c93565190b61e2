// What each party observes and the security check (exposure.h), on small schedules whose
// observed sets, holes and gaps are worked out by hand in the comments.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cascade/exposure.h"

using namespace cascade;

namespace {

// The hand-worked cases below were worked at ρ = 3 (the rules, not the default ρ, are tested).
constexpr int kRho = 3;


using Runs = std::vector<std::pair<int, int>>;

Schedule plan(int alpha, int c, int beta, int n_prompt, int n_positions,
              AttnSharding sharding = AttnSharding::cluster, int delta = 0,
              LmHead head = LmHead::client) {
  ScheduleParams p;
  p.alpha = alpha;
  p.c = c;
  p.beta = beta;
  p.delta = delta;
  p.n_prompt = n_prompt;
  p.n_positions = n_positions;
  p.attn_sharding = sharding;
  p.lm_head = head;
  return make_schedule(p);
}

Schedule baseline(const std::string& strategy, int alpha, int beta, int n, AttnSharding sharding) {
  ScheduleParams p;
  p.strategy = strategy;
  p.alpha = alpha;
  p.beta = beta;
  p.n_positions = n;
  p.attn_sharding = sharding;
  return make_schedule(p);
}

const PartyExposure& comp(const ExposureReport& r, const Schedule& s, int k) {
  return r.parties.at(s.comp_rank(k) - 1);
}
const PartyExposure& attn(const ExposureReport& r, const Schedule& s, int a, int b) {
  return r.parties.at(s.attn_rank(a, b) - 1);
}

// gap, shortest hole (length, first position), longest run, observed count.
void expect_party(const PartyExposure& e, int gap, int hole, int hole_at, int longest, int observed) {
  SCOPED_TRACE(e.role.name());
  EXPECT_EQ(e.gap, gap);
  EXPECT_EQ(e.shortest_hole, hole);
  EXPECT_EQ(e.shortest_hole_at, hole_at);
  EXPECT_EQ(e.longest_run, longest);
  EXPECT_EQ(e.observed, observed);
}

bool any_contains(const std::vector<std::string>& lines, const std::string& sub) {
  for (const auto& l : lines)
    if (l.find(sub) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(Exposure, HolesRunsAndGap) {
  EXPECT_EQ(runs_of({0, 1, 7, 8, 14}), (Runs{{0, 1}, {7, 8}, {14, 14}}));
  EXPECT_EQ(holes_of({0, 1, 7, 8, 14}), (Runs{{2, 6}, {9, 13}}));
  EXPECT_EQ(gap_of({0, 1, 7, 8, 14}), 6);
  // A leading run of unobserved positions is a hole; trailing unobserved ones are not.
  EXPECT_EQ(holes_of({3, 4, 5}), (Runs{{0, 2}}));
  EXPECT_EQ(gap_of({3, 4, 5}), 4);
  EXPECT_EQ(holes_of({1, 3}), (Runs{{0, 0}, {2, 2}}));
  EXPECT_EQ(gap_of({1, 3}), 2);
  EXPECT_EQ(gap_of({0, 1, 2}), kNoGap);  // no hole
  EXPECT_EQ(gap_of({}), kNoGap);
  EXPECT_EQ(gap_str(kNoGap), "none");
  EXPECT_EQ(gap_str(5), "5");
}

// The default layout, α = β = c = 4 (δ = 16), cluster sharding, 32 prompt positions:
//   CompNode 0 {0-3, 16-19}, 1 {4-7, 20-23}, 2 {8-11, 24-27}, 3 {12-15, 28-31};
//   AttnNode (a, b) observes CompNodes a and b.
TEST(Exposure, ClusterDefaultByHand) {
  const Schedule s = plan(4, 4, 4, 32, 32);
  const ExposureReport r = compute_exposure(s, kRho);
  ASSERT_EQ(r.parties.size(), 4u + 16u);
  expect_party(comp(r, s, 0), 13, 12, 4, 4, 8);   // hole 4..15
  expect_party(comp(r, s, 1), 5, 4, 0, 4, 8);     // leading hole 0..3
  expect_party(comp(r, s, 2), 9, 8, 0, 4, 8);     // leading hole 0..7
  expect_party(comp(r, s, 3), 13, 12, 0, 4, 8);
  EXPECT_DOUBLE_EQ(comp(r, s, 0).fraction, 0.25);
  EXPECT_EQ(comp(r, s, 1).runs, (Runs{{4, 7}, {20, 23}}));
  expect_party(attn(r, s, 0, 2), 5, 4, 4, 4, 16);  // {0-3, 8-11, 16-19, 24-27}
  expect_party(attn(r, s, 1, 3), 5, 4, 0, 4, 16);  // {4-7, 12-15, 20-23, 28-31}
  expect_party(attn(r, s, 0, 1), 9, 8, 8, 8, 16);  // {0-7, 16-23}
  expect_party(attn(r, s, 2, 3), 9, 8, 0, 8, 16);  // {8-15, 24-31}
  expect_party(attn(r, s, 3, 0), 9, 8, 4, 8, 16);  // {0-3, 12-19, 28-31}
  expect_party(attn(r, s, 1, 2), 5, 4, 0, 8, 16);  // {4-11, 20-27}
  expect_party(attn(r, s, 2, 2), 9, 8, 0, 4, 8);   // = CompNode 2
  EXPECT_DOUBLE_EQ(attn(r, s, 0, 2).fraction, 0.5);
  for (const PartyExposure& e : r.parties) {
    EXPECT_FALSE(e.whole_prompt) << e.role.name();
    EXPECT_FALSE(e.sees_generated()) << e.role.name();
  }
  EXPECT_TRUE(r.secure());
  EXPECT_TRUE(compute_exposure(s, 5).secure());
  // The partials split every CompNode hole into one segment per CompNode cluster (β = α):
  // segments of 4, segment gap 5 for all four (CompNode 0: 4-7, 8-11, 12-15).
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(comp(r, s, k).segment_gap, 5) << k;
    EXPECT_EQ(comp(r, s, k).shortest_segment, 4) << k;
  }
  EXPECT_EQ(comp(r, s, 0).shortest_segment_at, 4);
  EXPECT_EQ(comp(r, s, 3).shortest_segment_at, 0);
  EXPECT_EQ(attn(r, s, 0, 1).segment_gap, attn(r, s, 0, 1).gap);  // AttnNodes get no partials
  // ρ = 6 refuses the parties with gap 5: CompNode 1 and AttnNodes (1,1), (0,2), (2,0),
  // (1,3), (3,1), (1,2), (2,1); and CompNodes 0, 2, 3 for their segment gap 5.
  const ExposureReport r6 = compute_exposure(s, 6);
  EXPECT_EQ(r6.violations.size(), 11u);
  EXPECT_TRUE(any_contains(r6.violations, "CompNode 1 (rank 2) has gap 5 < rho = 6: a hole of 4 positions at 0"));
  EXPECT_TRUE(any_contains(r6.violations, "CompNode 0 (rank 1) has segment gap 5 < rho = 6: its layer-0 partials verify a segment of 4 positions at 4"));
  EXPECT_TRUE(any_contains(r6.violations, "AttnNode (2,1) (rank 14) has gap 5"));
  EXPECT_FALSE(any_contains(r6.violations, "AttnNode (0,1)"));
}

// The old rule, `offset`, on the same layout: shard s = offset s inside each cluster, so
// AttnNode (0,2) observes every even position: holes of one position, gap 2.
TEST(Exposure, OffsetDefaultIsRefused) {
  const Schedule s = plan(4, 4, 4, 128, 128, AttnSharding::offset);
  const ExposureReport r = compute_exposure(s, kRho);
  expect_party(attn(r, s, 0, 2), 2, 1, 1, 1, 64);
  expect_party(attn(r, s, 1, 3), 2, 1, 0, 1, 64);   // odd positions: leading hole {0}
  expect_party(attn(r, s, 0, 1), 3, 2, 2, 2, 64);   // {0,1, 4,5, ...}
  expect_party(attn(r, s, 0, 0), 4, 3, 1, 1, 32);   // {0, 4, 8, ...}
  EXPECT_FALSE(r.secure());
  try {
    enforce_security(r, false);
    FAIL() << "expected a refusal";
  } catch (const SecurityError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("AttnNode (0,2) (rank 7) has gap 2 < rho = 3: a hole of 1 position at 1"),
              std::string::npos) << m;
    EXPECT_NE(m.find("--insecure"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(enforce_security(r, /*insecure=*/true));
}

// A short last cluster: α = 3, c = 4, δ = 10 (CompNode 2 holds 2 positions per period).
//   CompNode 0 {0-3, 10-13}, 1 {4-7, 14-17}, 2 {8-9, 18-19}.
// AttnNode (0,1) = {0-7, 10-17}: the short cluster leaves a hole of 2 (8-9): gap 3.
TEST(Exposure, ShortLastCluster) {
  const Schedule s = plan(3, 4, 3, 20, 20, AttnSharding::cluster, 10);
  const ExposureReport r = compute_exposure(s, kRho);
  expect_party(comp(r, s, 0), 7, 6, 4, 4, 8);
  expect_party(comp(r, s, 1), 5, 4, 0, 4, 8);
  expect_party(comp(r, s, 2), 9, 8, 0, 2, 4);
  expect_party(attn(r, s, 0, 2), 5, 4, 4, 6, 12);  // {0-3, 8-13, 18-19}
  expect_party(attn(r, s, 1, 2), 5, 4, 0, 6, 12);  // {4-9, 14-19}
  expect_party(attn(r, s, 0, 1), 3, 2, 8, 8, 16);
  EXPECT_TRUE(r.secure());
  // CompNodes 0 and 1: the short cluster 8-9 is a segment of 2 of their holes 4-9 and 8-13.
  EXPECT_EQ(comp(r, s, 0).segment_gap, 3);
  EXPECT_EQ(comp(r, s, 1).segment_gap, 3);
  EXPECT_EQ(comp(r, s, 2).segment_gap, 5);  // hole 10-17: 10-13, 14-17
  const ExposureReport r4 = compute_exposure(s, 4);
  ASSERT_EQ(r4.violations.size(), 4u);  // (0,1) and (1,0), CompNodes 0 and 1
  EXPECT_TRUE(any_contains(r4.violations, "AttnNode (0,1) (rank 5) has gap 3 < rho = 4: a hole of 2 positions at 8"));
  EXPECT_TRUE(any_contains(r4.violations, "CompNode 0 (rank 1) has segment gap 3 < rho = 4: its layer-0 partials verify a segment of 2 positions at 8"));
}

// Segments of a hole: the shortest runs from the left whose shards do not reappear later in it.
TEST(Exposure, HoleSegments) {
  using Segs = std::vector<std::pair<int, int>>;
  EXPECT_EQ(hole_segments({1, 1, 2, 2, 3, 3}, 0, 6), (Segs{{0, 2}, {2, 4}, {4, 6}}));  // cluster, β = α
  EXPECT_EQ(hole_segments({0, 1, 0, 2, 2, 1, 3}, 0, 7), (Segs{{0, 6}, {6, 7}}));      // shards 0, 1 interleave
  EXPECT_EQ(hole_segments({0, 1, 0, 2, 2, 1, 3}, 3, 5), (Segs{{3, 5}}));
  EXPECT_EQ(hole_segments({1, 0, 1, 0}, 0, 4), (Segs{{0, 4}}));                        // offset: one segment
  EXPECT_EQ(hole_segments({1, 0}, 1, 1), Segs{});
  EXPECT_THROW(hole_segments({1, 0}, 0, 3), std::out_of_range);
}

// The span attack's reach, by hand, on the default layout (α = β = c = 4, 32 positions) with
// SmolLM2's heads (9 query heads on 3 kv heads: 3 mixes per query, d_head 64). Every shard's
// piece of a hole is one cluster of 4, and every own run of 4 gives 12 mixes: all solved.
//   CompNode 0: before 16-19, 4-15 (12);  CompNode 1: 0-3, then 8-19 (4 + 12);
//   CompNode 2: 0-7, then 12-23 (8 + 12);  CompNode 3: 0-11, then 16-27 (12 + 12).
TEST(Exposure, SpanExposedByHand) {
  Schedule s = plan(4, 4, 4, 32, 32);
  EXPECT_EQ(span_exposed(s, 0), -1);  // no model shape: unknown
  s.shape = ModelShape{30, 576, 9, 3, 64, 49152};
  const std::vector<int> want = {12, 16, 20, 24};
  const ExposureReport r = compute_exposure(s, kRho);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(span_exposed(s, k), want[k]) << k;
    EXPECT_EQ(comp(r, s, k).span_exposed, want[k]) << k;
    EXPECT_EQ(comp(r, s, k).unseen, 24) << k;
  }
  EXPECT_EQ(attn(r, s, 0, 1).span_exposed, 0);
  EXPECT_EQ(r.warnings.size(), 4u);
  EXPECT_TRUE(r.secure());  // warned, not refused
  // Heads of 4 dimensions: a piece of 4 unknown rows spans all of them, naming nothing.
  s.shape.d_head = 4;
  EXPECT_EQ(span_exposed(s, 3), 0);
  // One query per run (c = 1, round-robin-like) and one mix per query (MHA): CompNode 0 of
  // α = β = 2 faces one unknown of shard 1 before each own position: all solved.
  Schedule rr = plan(2, 1, 2, 8, 8);
  rr.shape = ModelShape{2, 64, 4, 4, 16, 256};
  EXPECT_EQ(span_exposed(rr, 0), 3);  // 1, 3, 5 (7 is after its last position)
  // α = 6, β = 2, c = 1, MHA: shard 1 has 3 unknowns (1, 3, 5) before position 6, one mix.
  Schedule wide = plan(6, 1, 2, 12, 12);
  wide.shape = rr.shape;
  EXPECT_EQ(span_exposed(wide, 0), 0);
}

// N < δ: α = β = c = 4, 10 positions: CompNode 0 {0-3}, 1 {4-7}, 2 {8, 9}, 3 nothing.
TEST(Exposure, PromptShorterThanPeriod) {
  const Schedule s = plan(4, 4, 4, 10, 10);
  const ExposureReport r = compute_exposure(s, kRho);
  expect_party(comp(r, s, 0), kNoGap, 0, -1, 4, 4);
  expect_party(comp(r, s, 1), 5, 4, 0, 4, 4);
  expect_party(comp(r, s, 2), 9, 8, 0, 2, 2);
  expect_party(comp(r, s, 3), kNoGap, 0, -1, 0, 0);
  expect_party(attn(r, s, 0, 1), kNoGap, 0, -1, 8, 8);  // 0-7 of 0-9: no hole, not the whole prompt
  expect_party(attn(r, s, 1, 3), 5, 4, 0, 4, 4);
  expect_party(attn(r, s, 3, 3), kNoGap, 0, -1, 0, 0);
  EXPECT_TRUE(r.secure());
}

// N = c + 1: α = β = c = 4, 5 positions: AttnNode (0,1) observes {0-4}, the whole prompt.
TEST(Exposure, PromptOfOneClusterPlusOne) {
  const Schedule s = plan(4, 4, 4, 5, 5);
  const ExposureReport r = compute_exposure(s, kRho);
  EXPECT_TRUE(attn(r, s, 0, 1).whole_prompt);
  EXPECT_TRUE(attn(r, s, 1, 0).whole_prompt);
  EXPECT_FALSE(comp(r, s, 0).whole_prompt);
  expect_party(comp(r, s, 1), 5, 4, 0, 1, 1);
  ASSERT_EQ(r.violations.size(), 2u);
  EXPECT_TRUE(any_contains(r.violations, "AttnNode (0,1) (rank 6) observes every prompt position (5 of 5)"));
  // Whole-prompt exposure is refused whatever ρ is.
  EXPECT_FALSE(compute_exposure(s, 1).secure());
}

TEST(Exposure, SingleCompNodeOrSingleShardSeesEverything) {
  const Schedule one = plan(1, 8, 1, 64, 64);  // α = 1: δ = c, CompNode 0 sees it all
  const ExposureReport r = compute_exposure(one, kRho);
  EXPECT_TRUE(comp(r, one, 0).whole_prompt);
  EXPECT_TRUE(attn(r, one, 0, 0).whole_prompt);
  EXPECT_EQ(r.violations.size(), 2u);
  // β = 2 under cluster: shards 0 ∪ 1 hold every CompNode, so AttnNode (0,1) sees it all.
  const Schedule two = plan(4, 4, 2, 64, 64);
  const ExposureReport r2 = compute_exposure(two, kRho);
  EXPECT_TRUE(attn(r2, two, 0, 1).whole_prompt);
  EXPECT_FALSE(attn(r2, two, 0, 0).whole_prompt);
  expect_party(attn(r2, two, 0, 0), 5, 4, 4, 4, 32);  // CompNodes 0 and 2: {0-3, 8-11, ...}
}

// Baselines. Contiguous α = 4 over 16: CompNode k = {4k .. 4k+3}. Round-robin α = 3 over 12:
// CompNode k = {k, k+3, k+6, k+9}.
TEST(Exposure, Baselines) {
  const Schedule ct = baseline(kStrategyContiguous, 4, 2, 16, AttnSharding::cluster);
  const ExposureReport rc = compute_exposure(ct, kRho);
  expect_party(comp(rc, ct, 0), kNoGap, 0, -1, 4, 4);
  expect_party(comp(rc, ct, 2), 9, 8, 0, 4, 4);
  expect_party(attn(rc, ct, 0, 0), 5, 4, 4, 4, 8);  // CompNodes 0, 2
  EXPECT_TRUE(attn(rc, ct, 0, 1).whole_prompt);
  // Offset rule for baselines: att(p) = p mod β, so shard 0 is the even positions.
  const Schedule co = baseline(kStrategyContiguous, 4, 2, 16, AttnSharding::offset);
  const ExposureReport rco = compute_exposure(co, kRho);
  expect_party(attn(rco, co, 0, 0), 2, 1, 1, 1, 8);
  expect_party(attn(rco, co, 1, 1), 2, 1, 0, 1, 8);

  const Schedule rr = baseline(kStrategyRoundRobin, 3, 3, 12, AttnSharding::cluster);
  const ExposureReport rrr = compute_exposure(rr, kRho);
  expect_party(comp(rrr, rr, 0), 3, 2, 1, 1, 4);
  expect_party(comp(rrr, rr, 1), 2, 1, 0, 1, 4);
  expect_party(comp(rrr, rr, 2), 3, 2, 0, 1, 4);
  expect_party(attn(rrr, rr, 0, 1), 2, 1, 2, 2, 8);  // {0,1, 3,4, 6,7, 9,10}
  EXPECT_FALSE(rrr.secure());
}

// Generated positions count. α = 3, c = 2, β = 3 (δ = 6), prompt 0..5, positions 6, 7, 8
// generated: CompNode 0 {0,1, 6,7}, 1 {2,3, 8}, 2 {4,5}.
TEST(Exposure, GeneratedPositionsCount) {
  const Schedule s = plan(3, 2, 3, 6, 9);
  const ExposureReport r = compute_exposure(s, kRho);
  EXPECT_EQ(r.n_prompt, 6);
  EXPECT_EQ(r.n_positions, 9);
  expect_party(comp(r, s, 0), 5, 4, 2, 2, 4);
  EXPECT_EQ(comp(r, s, 0).generated, 2);
  expect_party(comp(r, s, 1), 3, 2, 0, 2, 3);
  EXPECT_EQ(comp(r, s, 1).generated, 1);
  EXPECT_FALSE(comp(r, s, 1).learns_final_token);  // --lm-head client
  EXPECT_FALSE(comp(r, s, 2).sees_generated());
  EXPECT_DOUBLE_EQ(comp(r, s, 0).fraction, 4.0 / 9);
  EXPECT_TRUE(attn(r, s, 0, 1).sees_generated());  // q/k/v rows of 6, 7, 8
  EXPECT_EQ(attn(r, s, 0, 1).generated, 3);
  // A prompt-only plan of the same prompt sees none of them.
  const ExposureReport p = compute_exposure(plan(3, 2, 3, 6, 6), kRho);
  EXPECT_EQ(comp(p, s, 0).observed, 2);
  EXPECT_EQ(comp(p, s, 0).generated, 0);
}

// --lm-head comp: the owner of each step's last position learns the next token.
// α = 2, c = 2 (δ = 4), prompt {0, 1}, positions up to 7: CompNode 0 {0,1, 4,5},
// CompNode 1 {2,3, 6,7}. Steps end at 1, 2, ..., 7; the owner of p learns p + 1:
//   CompNode 0 learns 2 (from 1), 5 (from 4), 6 (from 5)  → {0,1,2, 4,5,6}: hole {3}, gap 2
//   CompNode 1 learns 3, 4, 7, and the final token (from 7) → {2,3,4, 6,7}: holes {0,1}, {5}
// Under --lm-head client the holes stay {2,3} and {0,1},{4,5}: gap 3.
TEST(Exposure, LmHeadCompLearnsNextTokens) {
  const Schedule client = plan(2, 2, 1, 2, 8);
  const ExposureReport rc = compute_exposure(client, kRho);
  expect_party(comp(rc, client, 0), 3, 2, 2, 2, 4);
  expect_party(comp(rc, client, 1), 3, 2, 0, 2, 4);
  EXPECT_FALSE(comp(rc, client, 1).learns_final_token);

  const Schedule cs = plan(2, 2, 1, 2, 8, AttnSharding::cluster, 0, LmHead::comp);
  const ExposureReport r = compute_exposure(cs, kRho);
  const PartyExposure& c0 = comp(r, cs, 0);
  expect_party(c0, 2, 1, 3, 3, 6);
  EXPECT_EQ(c0.runs, (Runs{{0, 2}, {4, 6}}));
  EXPECT_FALSE(c0.learns_final_token);
  const PartyExposure& c1 = comp(r, cs, 1);
  expect_party(c1, 2, 1, 5, 3, 5);
  EXPECT_EQ(c1.runs, (Runs{{2, 4}, {6, 7}}));
  EXPECT_TRUE(c1.learns_final_token);
  EXPECT_TRUE(c1.sees_generated());
  EXPECT_TRUE(any_contains(r.violations, "CompNode 1 (rank 2) has gap 2 < rho = 3: a hole of 1 position at 5"));
  EXPECT_TRUE(c0.whole_prompt);  // the 2-token prompt is CompNode 0's first cluster
  // A prefill-only run: the owner of the last prompt position learns the one sampled token.
  const Schedule pre = plan(2, 2, 1, 3, 3, AttnSharding::cluster, 0, LmHead::comp);
  const ExposureReport rp = compute_exposure(pre, kRho);
  EXPECT_TRUE(comp(rp, pre, 1).learns_final_token);  // position 2 is CompNode 1's
  EXPECT_FALSE(comp(rp, pre, 0).learns_final_token);
}

TEST(Exposure, BadArguments) {
  const Schedule s = plan(2, 2, 2, 8, 8);
  EXPECT_THROW(compute_exposure(s, 0), std::invalid_argument);
  Schedule t = s;
  t.comp.pop_back();
  EXPECT_THROW(compute_exposure(t, kRho), std::invalid_argument);
  EXPECT_THROW(observed_positions(s, s.n_ranks()), std::out_of_range);
  EXPECT_TRUE(observed_positions(s, 0).empty());  // the client holds the prompt: not a party here
}
