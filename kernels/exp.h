#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/common.h"

namespace cascade::kernels {

// e^x in fp32 without a libm call, so that loops over it vectorise (libm's expf is scalar and
// was the largest non-GEMM cost of a prefill). Range reduction x = k·ln2 + r, |r| ≤ ln2/2,
// with ln2 split in two (Cody–Waite) so that r is exact; e^r by its degree-7 Taylor
// polynomial (truncation error < 2e-9 relative); 2^k by building the exponent bits of two
// halves 2^(k/2)·2^(k−k/2): near the top of the range k reaches 128, whose own exponent field
// would read as +inf. Accurate to ~2 ulp on [−87.3, 88.7]; inputs are clamped to that range
// (so e^x for x > 88.7 is e^88.7 ≈ 3.3e38, finite, and e^−inf ≈ 1e−38, not 0: callers that need
// an exact 0 for an empty set test for −inf themselves).
CASCADE_HD float exp_fast(float x) {
  // Plain comparisons and the 1.5·2²³ rounding trick instead of fminf/fmaxf/floorf, which
  // GCC leaves as libm calls without -ffast-math and which would stop the loop vectorising.
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
  const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ki = (int32_t)k;  // k ∈ [−126, 128]
  const int32_t k1 = ki >> 1;      // floor(k / 2) ∈ [−63, 64]
  const int32_t bits1 = (k1 + 127) << 23, bits2 = (ki - k1 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &bits1, sizeof s1);
  memcpy(&s2, &bits2, sizeof s2);
  return p * s1 * s2;  // both factors are powers of two: exact unless the result overflows
}

}  // namespace cascade::kernels
