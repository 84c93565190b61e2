// Solving a segment of a CompNode's hole from its layer-0 partials, without enumerating fills
// (PROTOCOL "Attacks"; the verification side is partial_match.h).
//
// For an own query p, head h (kv head g) and key shard b, the received u is a positive
// combination of the value rows of shard b's keys at positions ≤ p:
//     u_{p,h} = Σ_j exp(s_{p,h,j} − m_{p,h}) · v_{j,g}          (v_j: the layer-0 row of token j)
// Take out the keys the attacker already knows (its own tokens and its guesses so far; their
// partial is computed and subtracted) and what is left, r_{p,h}, lies in the span of the value
// rows of the segment's tokens. The own run after the hole gives |queries| × (n_head / n_head_kv)
// such residuals per kv head: when that is at least the number of distinct tokens of the
// segment's shard b, they span exactly that subspace, and a token is in the segment iff its
// value row lies in it (relative distance ~1e-6 for the truth, ~1 for anything else in a
// 64-dimensional head). The residuals' coefficients on those rows are exp(s − m), summed over
// the positions a token holds, and s depends on the key's position through RoPE: that places
// each token (a search for the cheapest exact covers of the segment's positions, a token on up
// to 3 of them).
#pragma once

#include <cstdint>
#include <vector>

#include "cascade/model.h"
#include "cascade/partial_match.h"

namespace cascade {

class Layer0Inverter;

struct SpanSolution {
  // Per segment position: candidate tokens, best first (empty: this shard is not solvable
  // from these queries, e.g. more distinct tokens than residuals).
  std::vector<std::vector<int32_t>> candidates;
  std::vector<std::vector<double>> costs;  // the cost of each there alone (~0: exact)
  // Candidate fills in order of total placement cost, at most `max_fills` of them; positions of
  // a shard the span cannot solve are −1 in every fill.
  std::vector<std::vector<int32_t>> fills;
};

// The segment [first, first + len), with the same arguments as partial_verifier.
SpanSolution span_solve(const Model& model, const Layer0Inverter& table, const ViewPartials& partials,
                        const std::vector<int32_t>& att, const std::vector<int32_t>& known, int first, int len,
                        const std::vector<int>& queries, int64_t max_fills);

}  // namespace cascade
