// Verifying hole fills against the partials (m, e, u) a CompNode received at layer 0
// (PROTOCOL "Attacks", generalised vocabulary matching on partials).
//
// At layer 0 a key or value row depends only on its token and its position. So the partial
// that AttnNode (att(p), b) returns for an own query p is a function of p's token and of the
// tokens of shard b at positions ≤ p, and of nothing else. A CompNode's hole then splits into
// segments (hole_segments, exposure.h): each one is checked on its own against the partials of the own
// positions right after the hole, while the hidden row after the hole checks the whole hole at
// once. Under `cluster` sharding with β = α a CompNode's hole of δ − c positions is α − 1
// segments of c: its effective hole is c, not δ − c (the planner checks its segment gap).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "cascade/exposure.h"
#include "cascade/gap_attack.h"
#include "cascade/model.h"

namespace cascade {

class Layer0Inverter;

// The layer-0 partials a CompNode received: one per (own position, key shard b).
struct ViewPartials {
  int beta = 0, n_head = 0, d_head = 0;
  std::vector<int32_t> positions;  // own positions, ascending
  std::vector<float> m, e;         // (beta, positions, n_head)
  std::vector<float> u;            // (beta, positions, n_head, d_head)
  bool empty() const { return positions.empty(); }
  int index(int pos) const;        // row of `pos` in positions, −1 when not held
};

// The verifier of the fills of the segment [first, first + len): for each own position in
// `queries` (each after the segment) and each shard of the segment, the partial of the fill —
// keys and values of that shard's positions ≤ the query, from `known` tokens outside the
// segment (the attacker's own and its guesses; every such key must be known) and the fill's
// inside — against the received one. Distance: relative L1 of the scale-free form of the
// partials, (m + ln e, u / e) per head, over every (query, shard, head).
FillVerifier partial_verifier(const Model& model, const Layer0Inverter& table, const ViewPartials& partials,
                              const std::vector<int32_t>& att, const std::vector<int32_t>& known, int first,
                              int len, const std::vector<int>& queries);

}  // namespace cascade
