// The planner's schedule: which CompNode owns each position and which attention shard it
// falls in ((c, δ)-sharding, PROTOCOL.md), who applies the LM head, the model dims every party
// needs, and the schedule's wire format. Pure functions, no MPI. What each party observes and
// the security check are in exposure.h.
//
// Rank layout (PROTOCOL.md "Parties"): rank 0 is the client, ranks 1..α the CompNodes,
// then the β² AttnNodes in row-major (a, b) order: AttnNode (a, b) is rank 1 + α + a·β + b.
// Every index here is 0-based (positions, CompNodes, shards).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/model_config.h"

namespace cascade {

// CompNode strategies, as written on the command line and in a serialised Schedule.
//   cdelta       comp(p) = floor((p mod δ) / c), (α−1)·c < δ ≤ α·c.
// Baselines (for comparison):
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

// Attention shard of a position (PROTOCOL.md "Attention shards"):
//   cluster  att(p) = comp(p) mod β, 1 ≤ β ≤ α (whole clusters; the default, every strategy)
//   offset   cdelta: att(p) = ((p mod δ) mod c) mod β, 1 ≤ β ≤ c (a cluster split by offset);
//            baselines: att(p) = p mod β, any β ≥ 1
enum class AttnSharding : int32_t { cluster = 0, offset = 1 };
// Who applies the final norm and the output matrix (PROTOCOL.md "One layer"):
//   client  the owner of the last position sends its final hidden row (d floats) to the
//           client, which computes the logits: no CompNode learns the generated tokens
//   comp    the owner computes the logits row and sends it; it learns each next token
enum class LmHead : int32_t { client = 0, comp = 1 };

const char* attn_sharding_name(AttnSharding a);  // "cluster", "offset"
const char* lm_head_name(LmHead h);              // "client", "comp"
// Throw std::invalid_argument naming the accepted values.
AttnSharding parse_attn_sharding(const std::string& name);
LmHead parse_lm_head(const std::string& name);

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
  AttnSharding attn_sharding = AttnSharding::cluster;
  LmHead lm_head = LmHead::client;
  int alpha = 1;    // CompNodes
  int beta = 1;     // attention shards (β² AttnNodes)
  int c = 1;        // cluster size (see the strategy notes above for baselines)
  int delta = 1;    // period δ (0 for random)
  uint64_t seed = 0;  // random strategy only (kept for the record otherwise)
  int n_prompt = 0;     // prompt length N: prefill covers positions 0..n_prompt-1
  int n_positions = 0;  // positions planned, 0..n_positions-1: the prompt, then one per
                        // decode step (a run sampling G tokens plans N + G − 1)
  ModelShape shape;     // the model's dims (empty when only planning, e.g. `cascade plan`
                        // without a model: exposure needs none, messages do)
  std::vector<int32_t> comp;  // (n_positions) CompNode of each position, 0..alpha-1
  std::vector<int32_t> att;   // (n_positions) attention shard of each position, 0..beta-1

  int n_ranks() const { return 1 + alpha + beta * beta; }
  int comp_rank(int k) const { return 1 + k; }
  int attn_rank(int a, int b) const { return 1 + alpha + a * beta + b; }
  RankRole role_of_rank(int rank) const;  // throws std::out_of_range outside 0..n_ranks()-1

  // THE position-set function (every role, the comm model and the views use it): the
  // positions p in first..end-1, ascending, with comp(p) == k (k < 0: any CompNode) and
  // att(p) == shard (shard < 0: any shard). Throws std::out_of_range outside 0..n_positions.
  std::vector<int> positions(int first, int end, int k = -1, int shard = -1) const;
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
  AttnSharding attn_sharding = AttnSharding::cluster;
  LmHead lm_head = LmHead::client;
  ModelShape shape;   // optional (see Schedule::shape)
};

// Builds a schedule. Throws std::invalid_argument (naming the parameter) on alpha < 1,
// beta < 1, c < 1, β > α (cluster) or β > c (offset, cdelta), delta outside
// (α−1)·c < δ ≤ α·c, an unknown strategy, n_positions < 1, n_prompt outside 1..n_positions,
// an inconsistent shape, or a rank count beyond int.
Schedule make_schedule(const ScheduleParams& params);

// Checks a schedule (e.g. one just received): parameter ranges, array lengths, every
// comp < alpha and att < beta, the shape, and that the arrays follow the strategy's and the
// sharding rule's formulas (the random strategy's CompNodes are only range-checked). Throws
// std::runtime_error.
void validate(const Schedule& s);

// Throws std::runtime_error("this schedule needs 1 + α + β² = 21 ranks (α = 4, β = 4), but
// the job has 8") unless world == s.n_ranks().
void check_world_size(const Schedule& s, int world);

// Wire format (little-endian): "CSCH", u32 version = 3, u32 strategy length + bytes,
// i32 attn_sharding, i32 lm_head, i32 alpha, beta, c, delta, u64 seed, i32 n_prompt,
// n_positions, i32 shape (n_layer, d_model, n_head, n_head_kv, d_head, n_vocab, family),
// i32 comp[n_positions], i32 att[n_positions].
// Size = 80 + strategy length + 8·n_positions bytes.
inline constexpr uint32_t kScheduleVersion = 3;
std::vector<uint8_t> serialize(const Schedule& s);
// Checks magic, version, sizes (the buffer must be exactly one schedule) and validate();
// throws std::runtime_error saying what is wrong.
Schedule deserialize(const uint8_t* data, size_t size);
inline Schedule deserialize(const std::vector<uint8_t>& buf) {
  return deserialize(buf.data(), buf.size());
}

}  // namespace cascade
