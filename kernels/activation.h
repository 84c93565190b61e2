#pragma once
#include <math.h>

#include "kernels/common.h"
#include "kernels/exp.h"

namespace cascade::kernels {

// SwiGLU gate: out = silu(gate) · up, silu(g) = g / (1 + e^(−g)).
CASCADE_HD float silu_mul(float gate, float up) { return gate / (1.0f + exp_fast(-gate)) * up; }

}  // namespace cascade::kernels
