#pragma once
#include <math.h>

#include "kernels/common.h"

namespace cascade::kernels {

// y(d) = (x − mean(x)) / sqrt(var(x) + eps) · w(d) + b(d), the biased variance (as torch's
// LayerNorm). Two passes over x, so a large mean does not cancel the variance. y may alias x.
CASCADE_HD void layernorm_row(const float* x, const float* w, const float* b, float* y, int d,
                              float eps) {
  float mean = 0.0f;
  for (int i = 0; i < d; ++i) mean += x[i];
  mean /= (float)d;
  float var = 0.0f;
  for (int i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float scale = 1.0f / sqrtf(var / (float)d + eps);
  for (int i = 0; i < d; ++i) y[i] = (x[i] - mean) * scale * w[i] + b[i];
}

}  // namespace cascade::kernels
