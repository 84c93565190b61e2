#pragma once
#include <math.h>

#include "kernels/common.h"

namespace cascade::kernels {

// Rotary position embedding, "normal" (interleaved-pair) variant used by llama.cpp for the
// llama architecture: within each head, dims (2i, 2i+1) rotate by angle pos·θ^(−2i/d_head).
// x is (n_heads, d_head) for one position, rotated in place.
CASCADE_HD void rope_row(float* x, int n_heads, int d_head, int pos, float theta) {
  for (int i = 0; i < d_head / 2; ++i) {
    const float freq = powf(theta, -2.0f * (float)i / (float)d_head);
    const float angle = (float)pos * freq;
    const float c = cosf(angle), s = sinf(angle);
    for (int h = 0; h < n_heads; ++h) {
      float* p = x + h * d_head + 2 * i;
      const float x0 = p[0], x1 = p[1];
      p[0] = x0 * c - x1 * s;
      p[1] = x0 * s + x1 * c;
    }
  }
}

}  // namespace cascade::kernels
