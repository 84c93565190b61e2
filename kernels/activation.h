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

// The two GELUs: BERT's exact one, x·Φ(x) = x/2·(1 + erf(x/√2)), and GPT-2's tanh
// approximation ("gelu_new"), x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
enum class Gelu : int { erf = 0, tanh = 1 };

CASCADE_HD float gelu(float x, Gelu kind) {
  if (kind == Gelu::erf) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

}  // namespace cascade::kernels
