#pragma once
#include <math.h>

#include "kernels/common.h"

namespace cascade::kernels {

// Index of the largest value; the first one on ties (as llama.cpp's greedy sampler).
CASCADE_HD int argmax_row(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// y(n) = softmax(x(n) / temperature), numerically stable. y may alias x.
CASCADE_HD void softmax_row(const float* x, float* y, int n, float temperature) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = fmaxf(mx, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    y[i] = expf((x[i] - mx) / temperature);
    sum += y[i];
  }
  for (int i = 0; i < n; ++i) y[i] /= sum;
}

}  // namespace cascade::kernels
