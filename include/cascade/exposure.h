// What each party observes, and the security check (PROTOCOL.md "What a party observes, and
// the gap check", "Exposure"). Pure functions of a Schedule.
//
// A party observes position p when it receives any row of p (token id, hidden state, q, k, v):
//   CompNode k      its own positions; under --lm-head comp also each next token it samples
//                   from the logits of the step whose last position it owns (p + 1 for every
//                   own p from N − 1 on; the one after the last planned position counts as
//                   `learns_final_token`, it is outside the planned positions)
//   AttnNode (a,b)  shard a ∪ shard b (q rows of one, k/v rows of the other: one attacker)
// over every planned position: the prompt and the generated ones.
//
// Holes of an observed set S: the maximal runs of unobserved positions that end just before
// an observed position (the leading run 0..s−1 before the first observed s is one; the
// unobserved positions after the last observed one are not, since no row the party holds
// depends on them). Filling a hole of h positions costs V^h forward passes at most. The gap is
// 1 + the shortest hole, and kNoGap (∞) when there is no hole.
//
// A CompNode also receives, at layer 0, the partial of each own query against each key shard
// b: a function of the query's token and the tokens of shard b before it only. So a hole of a
// CompNode splits into segments (hole_segments) that the partials verify one at a time
// (src/attack/partial_match.cpp does it): its segment gap is 1 + the shortest segment.
//
// Worse, a partial's u is a positive mix of the value rows of its shard's keys. With the keys
// it knows taken out, what is left lies in the span of the value rows it does not know; when
// the own run after a hole gives at least as many mixes ((n_head / n_head_kv) × its length) as
// a shard has unknown positions (and fewer than d_head), the span names those tokens outright
// (src/attack/partial_solve.cpp, the span attack): `span_exposed` counts them. No (c, δ)
// schedule with c < d_head avoids it (CompNode 1 solves CompNode 0's first cluster), so it is
// reported and warned about, not refused: the fix belongs to the protocol (README "Attacks").
//
// Security condition: every party's gap ≥ ρ, every CompNode's segment gap ≥ ρ, and no party
// observes every prompt position.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cascade/schedule.h"

namespace cascade {

inline constexpr int kNoGap = 0;  // "none": the set has no hole (∞ for the check)
// The default ρ comes from the gap experiment (cascade attack holes, docs/security/holes.csv;
// `cascade plan --budget B` recomputes it): with 10^3 to 10^5 LM-ordered fills verified per
// hole, a hole of 6 positions was filled (1 of 3 measured), and no hole of 7 to 16 was, so
// holes must be ≥ 7 positions: ρ = 8. README "Attacks" has the table and the reasoning.
inline constexpr int kDefaultRho = 8;

struct PartyExposure {
  RankRole role;
  int rank = 0;
  std::vector<std::pair<int, int>> runs;  // observed positions as [first, last] runs
  int observed = 0;            // positions observed, among 0..n_positions-1
  double fraction = 0.0;       // observed / n_positions
  int gap = kNoGap;            // 1 + shortest hole; kNoGap when there is no hole
  int shortest_hole = 0;       // positions in the shortest hole (0: none)
  int shortest_hole_at = -1;   // its first position (-1: none)
  int segment_gap = kNoGap;    // CompNodes: 1 + the shortest segment of a hole; AttnNodes: gap
  int shortest_segment = 0;    // positions in it (0: none)
  int shortest_segment_at = -1;
  // CompNodes: planned positions of other CompNodes that the span attack recovers from the
  // layer-0 partials (−1: the schedule has no model shape; 0 for AttnNodes).
  int span_exposed = 0;
  int unseen = 0;              // planned positions not observed
  int longest_run = 0;         // longest run of consecutive observed positions
  int generated = 0;           // observed positions ≥ n_prompt (generated tokens)
  bool learns_final_token = false;  // --lm-head comp: owns the last planned position
  bool whole_prompt = false;   // observes every prompt position 0..n_prompt-1
  bool sees_generated() const { return generated > 0 || learns_final_token; }
};

struct ExposureReport {
  int n_prompt = 0;
  int n_positions = 0;  // positions the report covers: 0..n_positions-1
  int rho = kDefaultRho;
  std::vector<PartyExposure> parties;   // CompNodes 0..α-1, then AttnNodes in rank order
  std::vector<std::string> violations;  // one line per refused party
  std::vector<std::string> warnings;    // one line per CompNode with span_exposed > 0
  bool secure() const { return violations.empty(); }
};

class SecurityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Observed positions of the party at `rank` (≥ 1), sorted, within 0..n_positions-1.
std::vector<int> observed_positions(const Schedule& s, int rank);
// Runs of a sorted set of positions.
std::vector<std::pair<int, int>> runs_of(const std::vector<int>& sorted_positions);
// Holes of a sorted set of positions, as [first, last] runs (see above).
std::vector<std::pair<int, int>> holes_of(const std::vector<int>& sorted_positions);
// The segments of the hole [first, end) under the attention shards `att` (size ≥ end): from
// the left, the shortest runs [s, t) such that no shard with a position in [s, t) has one in
// [t, end). A fill of a segment changes the layer-0 partials of its own shards only, and no
// later position of the hole does: the segment can be verified before the rest is known.
// Under `cluster` sharding with β = α a CompNode's hole is α − 1 segments of c.
std::vector<std::pair<int, int>> hole_segments(const std::vector<int32_t>& att, int first, int end);
// 1 + the shortest hole of a sorted set, or kNoGap.
int gap_of(const std::vector<int>& sorted_positions);
// "none" for kNoGap, else the number.
std::string gap_str(int gap);

// The span attack's reach for CompNode k (see above): walking its own runs in order, the
// unknown positions of each key shard before a run are recovered when they are no more than
// the run's mixes and fewer than d_head; otherwise they stay unknown (and add to the next
// run's). Returns the positions recovered; −1 without a model shape.
int span_exposed(const Schedule& s, int k);
// Exposure of every party over all planned positions (ρ ≥ 1; else std::invalid_argument).
ExposureReport compute_exposure(const Schedule& s, int rho = kDefaultRho);
// Throws SecurityError listing every offending party, unless insecure or the report is secure.
void enforce_security(const ExposureReport& report, bool insecure);
// compute_exposure + enforce_security; returns the report.
ExposureReport check_security(const Schedule& s, int rho = kDefaultRho, bool insecure = false);

}  // namespace cascade
