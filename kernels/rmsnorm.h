#pragma once
#include <math.h>

#include "kernels/common.h"

namespace cascade::kernels {

// y(d) = x(d) / sqrt(mean(x²) + eps) * w(d). y may alias x.
CASCADE_HD void rmsnorm_row(const float* x, const float* w, float* y, int d, float eps) {
  float ss = 0.0f;
  for (int i = 0; i < d; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / sqrtf(ss / (float)d + eps);
  for (int i = 0; i < d; ++i) y[i] = x[i] * scale * w[i];
}

}  // namespace cascade::kernels
