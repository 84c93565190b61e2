// The planner: which CompNode owns each position and which attention shard it falls in
// ((c, δ)-sharding, PROTOCOL.md), what each party observes (exposure), the security check,
// and the wire format of a Schedule. Pure functions, no MPI.
//
// Rank layout (PROTOCOL.md "Parties"): rank 0 is the client, ranks 1..α the CompNodes,
// then the β² AttnNodes in row-major (a, b) order: AttnNode (a, b) is rank 1 + α + a·β + b.
// Every index here is 0-based (positions, CompNodes, shards).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cascade {

// Strategy names, as written on the command line and in a serialised Schedule.
//   cdelta       comp(p) = floor((p mod δ) / c), att(p) = ((p mod δ) mod c) mod β, 1 ≤ β ≤ c.
// Baselines (for comparison; their attention shard is att(p) = p mod β, any β ≥ 1):
//   contiguous   α equal blocks of B = ceil(n_positions / α) consecutive positions
//                (recorded as c = B, δ = α·B; trailing CompNodes may get nothing),
//   round-robin  comp(p) = p mod α (recorded as c = 1, δ = α),
//   random       each position gets a CompNode drawn uniformly from std::mt19937_64(seed)
//                by rejection sampling on the raw 64-bit output (identical on every
//                machine); recorded as c = 0, δ = 0 (not periodic).
inline constexpr const char* kStrategyCDelta = "cdelta";
inline constexpr const char* kStrategyContiguous = "contiguous";
inline constexpr const char* kStrategyRoundRobin = "round-robin";
inline constexpr const char* kStrategyRandom = "random";

// Who an MPI rank is.
struct RankRole {
  enum Kind { client, comp, attn };
  Kind kind = client;
  int k = -1;  // CompNode index (kind == comp)
  int a = -1;  // query shard (kind == attn)
  int b = -1;  // key/value shard (kind == attn)
  std::string name() const;  // "client", "CompNode 3", "AttnNode (0,1)"
};

struct Schedule {
  std::string strategy = kStrategyCDelta;
  int alpha = 1;    // CompNodes
  int beta = 1;     // attention shards (β² AttnNodes)
  int c = 1;        // cluster size (see the strategy notes above for baselines)
  int delta = 1;    // period δ (0 for random)
  uint64_t seed = 0;  // random strategy only (kept for the record otherwise)
  int n_prompt = 0;     // prompt length N: prefill covers positions 0..n_prompt-1
  int n_positions = 0;  // positions planned, 0..n_positions-1 (prompt + tokens to generate)
  std::vector<int32_t> comp;  // (n_positions) CompNode of each position, 0..alpha-1
  std::vector<int32_t> att;   // (n_positions) attention shard of each position, 0..beta-1

  int n_ranks() const { return 1 + alpha + beta * beta; }
  int comp_rank(int k) const { return 1 + k; }
  int attn_rank(int a, int b) const { return 1 + alpha + a * beta + b; }
  RankRole role_of_rank(int rank) const;  // throws std::out_of_range outside 0..n_ranks()-1

  // Positions (ascending) of CompNode k / attention shard s among 0..n-1; n < 0 means
  // n_positions.
  std::vector<int> positions_of_comp(int k, int n = -1) const;
  std::vector<int> positions_of_shard(int s, int n = -1) const;
  // Number of positions among 0..n-1 owned by CompNode k and in attention shard s.
  int rows_of_comp_in_shard(int k, int s, int n = -1) const;
};

struct ScheduleParams {
  std::string strategy = kStrategyCDelta;
  int alpha = 1;
  int beta = 1;
  int c = 1;          // cdelta only
  int delta = 0;      // cdelta only; 0 means α·c
  uint64_t seed = 0;  // random only
  int n_positions = 0;
  int n_prompt = 0;   // 0 means n_positions
};

// Builds a schedule. Throws std::invalid_argument (naming the parameter) on alpha < 1,
// beta < 1, c < 1 or beta > c (cdelta), delta outside (α−1)·c < δ ≤ α·c, an unknown
// strategy, n_positions < 1, n_prompt outside 1..n_positions, or a rank count beyond int.
Schedule make_schedule(const ScheduleParams& params);

// Checks a schedule (e.g. one just received): parameter ranges, array lengths, every
// comp < alpha and att < beta, and that the arrays follow the strategy's formula (the random
// strategy's CompNodes are only range-checked). Throws std::runtime_error.
void validate(const Schedule& s);

// Throws std::runtime_error("this schedule needs 1 + α + β² = 21 ranks (α = 4, β = 4), but
// the job has 8") unless world == s.n_ranks().
void check_world_size(const Schedule& s, int world);

// Wire format (little-endian): "CSCH", u32 version = 1, u32 strategy length + bytes,
// i32 alpha, beta, c, delta, u64 seed, i32 n_prompt, n_positions, i32 comp[n_positions],
// i32 att[n_positions]. Size = 44 + strategy length + 8·n_positions bytes.
inline constexpr uint32_t kScheduleVersion = 1;
std::vector<uint8_t> serialize(const Schedule& s);
// Checks magic, version, sizes (the buffer must be exactly one schedule) and validate();
// throws std::runtime_error saying what is wrong.
Schedule deserialize(const uint8_t* data, size_t size);
inline Schedule deserialize(const std::vector<uint8_t>& buf) {
  return deserialize(buf.data(), buf.size());
}

// ---- exposure (PROTOCOL.md "Exposure") ----------------------------------------------------
//
// A party's exposure is the set of prompt positions whose layer-0 rows it receives:
// CompNode k its own positions; AttnNode (a, b) the union of query shard a and key shard b.
// Computed over the prompt, positions 0..n-1, generically from comp[] / att[].
//
// Gap of a set of positions: split it into runs (maximal sets of consecutive positions); the
// gap is the smallest (first position of a run − last position of the run before it), so
// always ≥ 2. A set with one run or none has no gap (kNoGap, printed "none"), which passes
// the security check, EXCEPT that a set holding every position 0..n-1 of a prompt of n ≥ 2
// tokens has gap 1 ("whole prompt": nothing is hidden, as δ − c + 1 = 1 when α = 1).
// Under cdelta a CompNode's gap is δ − c + 1, and an attention shard's gap is β when β | c.
//
// DECISION on AttnNodes: an AttnNode receives two row sets, q rows of shard a and k/v rows of
// shard b. Its security gap is min(gap of shard a, gap of shard b) (shards without a gap are
// skipped), matching PROTOCOL's "AttnNodes: β when β divides c". The gap of the union is
// reported too (union_gap); when the union is the whole prompt (β = 1, or β = 2 off the
// diagonal) the report says "AttnNode (0,1) observes every position: whole prompt exposed",
// and an off-diagonal AttnNode whose union gap is < ρ gets a warning. Neither is a refusal.
inline constexpr int kNoGap = 0;
inline constexpr int kDefaultRho = 3;

struct PartyExposure {
  RankRole role;
  int rank = 0;
  std::vector<std::pair<int, int>> runs;  // observed positions as [first, last] runs
  int observed = 0;        // number of positions observed
  double fraction = 0.0;   // observed / n
  int gap = kNoGap;        // security gap (CompNode: its positions; AttnNode: min of q/kv)
  int gap_q = kNoGap;      // AttnNode: gap of query shard a
  int gap_kv = kNoGap;     // AttnNode: gap of key/value shard b
  int union_gap = kNoGap;  // AttnNode: gap of shard a ∪ shard b (CompNode: = gap)
  bool whole_prompt = false;  // observes every position 0..n-1
};

struct ExposureReport {
  int n = 0;    // prompt length the exposure is computed over
  int rho = kDefaultRho;
  std::vector<PartyExposure> parties;   // CompNodes 0..α-1, then AttnNodes in rank order
  std::vector<std::string> warnings;    // whole-prompt exposure, small union gaps
  std::vector<std::string> violations;  // parties whose security gap is < ρ
  bool secure() const { return violations.empty(); }
};

class SecurityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Gap of a sorted set of positions within 0..n-1 (see above). kNoGap for none.
int gap_of(const std::vector<int>& sorted_positions, int n);
// Runs of a sorted set of positions.
std::vector<std::pair<int, int>> runs_of(const std::vector<int>& sorted_positions);
// "none" for kNoGap, else the number.
std::string gap_str(int gap);

// Exposure of every party over positions 0..n-1 (1 ≤ n ≤ s.n_positions, ρ ≥ 1; else
// std::invalid_argument).
ExposureReport compute_exposure(const Schedule& s, int n, int rho = kDefaultRho);
// Throws SecurityError listing every offending party and its gap, unless insecure or the
// report is secure.
void enforce_security(const ExposureReport& report, bool insecure);
// compute_exposure + enforce_security; returns the report.
ExposureReport check_security(const Schedule& s, int n, int rho = kDefaultRho,
                              bool insecure = false);

}  // namespace cascade
