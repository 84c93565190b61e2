// The exactness measure: how far a row of logits (or any values) is from the reference's.
// One function for every comparison with the single-process reference or with llama.cpp:
// the fidelity test, the MPI exactness grid and `cascade run --compare-reference`.
#pragma once

#include <cstddef>

namespace cascade {

// max_i |got_i − ref_i| / max_i |ref_i|. A NaN or ±inf anywhere in either row gives +inf (so a
// broken row never passes a tolerance, and std::max over rows keeps it), as does a non-zero
// difference against an all-zero reference; identical all-zero rows give 0.
double max_rel_error(const float* got, const float* ref, size_t n);

}  // namespace cascade
