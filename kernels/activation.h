#pragma once
#include <math.h>

#include "kernels/common.h"
#include "kernels/exp.h"

namespace cascade::kernels {

// SwiGLU gate: out = silu(gate) · up, silu(g) = g / (1 + e^(−g)). Below g = −88.7, e^(−g)
// leaves fp32 (exp_fast clamps it there) while |silu(g)| = |g|·e^g < 1e−36: it is 0.
CASCADE_HD float silu_mul(float gate, float up) {
  const float silu = gate < -88.7f ? 0.0f : gate / (1.0f + exp_fast(-gate));
  return silu * up;
}

}  // namespace cascade::kernels
