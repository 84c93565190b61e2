#pragma once
#include <stdint.h>
#include <string.h>

#include "kernels/common.h"

namespace cascade::kernels {

// bfloat16: the top 16 bits of an IEEE fp32. f32 → bf16 rounds to nearest, ties to even (as
// oneDNN, cuBLAS and torch do); a NaN stays a (quiet) NaN instead of rounding into infinity.
CASCADE_HD uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

CASCADE_HD float bf16_to_f32(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

}  // namespace cascade::kernels
