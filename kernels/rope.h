#pragma once
#include <math.h>

#include "kernels/common.h"

namespace cascade::kernels {

// Rotary position embedding, "normal" (interleaved-pair) variant used by llama.cpp for the
// llama architecture: within each head, dims (2i, 2i+1) rotate by angle pos·θ^(−2i/d_head).
// cos and sin of pair i's angle at position pos (the CUDA kernel computes them per pair and
// head, the CPU once per pair for every head: the same values).
CASCADE_HD void rope_cos_sin(int i, int d_head, int pos, float theta, float* c, float* s) {
  const float freq = powf(theta, -2.0f * (float)i / (float)d_head);
  const float angle = (float)pos * freq;
  *c = cosf(angle);
  *s = sinf(angle);
}

CASCADE_HD void rope_rotate(float* p /* (2) */, float c, float s) {
  const float x0 = p[0], x1 = p[1];
  p[0] = x0 * c - x1 * s;
  p[1] = x0 * s + x1 * c;
}

// x is (n_heads, d_head) for one position, rotated in place.
CASCADE_HD void rope_row(float* x, int n_heads, int d_head, int pos, float theta) {
  for (int i = 0; i < d_head / 2; ++i) {
    float c, s;
    rope_cos_sin(i, d_head, pos, theta, &c, &s);
    for (int h = 0; h < n_heads; ++h) rope_rotate(x + h * d_head + 2 * i, c, s);
  }
}

}  // namespace cascade::kernels
