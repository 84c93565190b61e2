// Dequantisation of ggml tensor blocks to fp32, one function per block type.
//
// Block layouts follow ggml (ggml-common.h); every multi-byte field is little-endian and read
// with memcpy, so blocks need no alignment. QK = elements per block:
//   q4_0 (QK 32, 18 B) {f16 d; u8 qs[16]}             x[j]    = d*((qs[j]&15)-8), x[j+16] = d*((qs[j]>>4)-8)
//   q4_1 (QK 32, 20 B) {f16 d, m; u8 qs[16]}          x[j]    = d*(qs[j]&15)+m,   x[j+16] = d*(qs[j]>>4)+m
//   q5_0 (QK 32, 22 B) {f16 d; u32 qh; u8 qs[16]}     5th bit of x[i] is bit i of qh; minus 16
//   q5_1 (QK 32, 24 B) {f16 d, m; u32 qh; u8 qs[16]}  as q5_0, plus m instead of minus 16
//   q8_0 (QK 32, 34 B) {f16 d; i8 qs[32]}             x[j]    = d*qs[j]
//   q2_k, q3_k, q4_k, q5_k, q6_k (QK 256): "super-blocks" of 16 or 8 sub-blocks with their own
//   6- or 8-bit scales; described next to each function.
// The multiplication order matches ggml's reference C (and the `gguf` Python package), so the
// results are bit-identical to theirs.
#include <cstdio>
#include <cstring>
#include <string>

#include "cascade/gguf.h"

namespace cascade {
namespace {

constexpr size_t QK = 32;     // elements per block of the simple quants
constexpr size_t QK_K = 256;  // elements per K-quant super-block

inline uint16_t rd16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, nan with payload).
float fp16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {                  // inf / nan: keep the payload, exponent all ones
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {              // normal: rebias 15 -> 127
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {             // +-0
    bits = sign;
  } else {                            // subnormal: value = mant * 2^-24; normalise it
    uint32_t e = 113;                 // exponent field of 2^-14 in binary32 (127 - 14)
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3FFu) << 13);
  }
  return bits_to_f32(bits);
}

// All 65536 halves, converted once: the hot loops below do a table load per scale.
struct Fp16Table {
  float v[65536];
  Fp16Table() {
    for (uint32_t i = 0; i < 65536; ++i) v[i] = fp16_bits_to_f32(static_cast<uint16_t>(i));
  }
};
const Fp16Table& fp16_table() {
  static const Fp16Table t;
  return t;
}
inline float h2f(const uint8_t* p) { return fp16_table().v[rd16(p)]; }

void deq_f32(const uint8_t* src, float* dst, size_t n) { std::memcpy(dst, src, n * 4); }

void deq_f16(const uint8_t* src, float* dst, size_t n) {
  const Fp16Table& t = fp16_table();
  for (size_t i = 0; i < n; ++i) dst[i] = t.v[rd16(src + 2 * i)];
}

void deq_bf16(const uint8_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bits_to_f32(static_cast<uint32_t>(rd16(src + 2 * i)) << 16);
}

void deq_q4_0(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 18, dst += QK) {
    const float d = h2f(src);
    const uint8_t* qs = src + 2;
    for (size_t j = 0; j < QK / 2; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
      dst[j + QK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

void deq_q4_1(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 20, dst += QK) {
    const float d = h2f(src), m = h2f(src + 2);
    const uint8_t* qs = src + 4;
    for (size_t j = 0; j < QK / 2; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
      dst[j + QK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

void deq_q5_0(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 22, dst += QK) {
    const float d = h2f(src);
    const uint32_t qh = rd32(src + 2);
    const uint8_t* qs = src + 6;
    for (size_t j = 0; j < QK / 2; ++j) {
      const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo - 16);
      dst[j + QK / 2] = d * static_cast<float>(hi - 16);
    }
  }
}

void deq_q5_1(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 24, dst += QK) {
    const float d = h2f(src), m = h2f(src + 2);
    const uint32_t qh = rd32(src + 4);
    const uint8_t* qs = src + 8;
    for (size_t j = 0; j < QK / 2; ++j) {
      const unsigned lo = (qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4);
      const unsigned hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + QK / 2] = d * static_cast<float>(hi) + m;
    }
  }
}

void deq_q8_0(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 34, dst += QK) {
    const float d = h2f(src);
    const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (size_t j = 0; j < QK; ++j) dst[j] = d * static_cast<float>(qs[j]);
  }
}

// q2_k (84 B): {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}. 16 sub-blocks of 16; sub-block s
// has scale d*(scales[s]&15) and min dmin*(scales[s]>>4). The 2-bit quants: for half h (128
// elements, qs[32h..32h+32)) and shift k in {0,2,4,6}, element 128h+32(k/2)+l is
// (qs[32h+l] >> k) & 3.
void deq_q2_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 84, dst += QK_K) {
    const uint8_t* sc = src;
    const uint8_t* qs = src + 16;
    const float d = h2f(src + 80), dmin = h2f(src + 82);
    for (size_t h = 0; h < 2; ++h) {
      for (size_t k = 0; k < 4; ++k) {
        for (size_t half16 = 0; half16 < 2; ++half16) {
          const size_t s = 8 * h + 2 * k + half16;  // sub-block index
          const float dl = d * static_cast<float>(sc[s] & 0x0F);
          const float ml = dmin * static_cast<float>(sc[s] >> 4);
          for (size_t l = 16 * half16; l < 16 * half16 + 16; ++l) {
            const int q = (qs[32 * h + l] >> (2 * k)) & 3;
            dst[128 * h + 32 * k + l] = dl * static_cast<float>(q) - ml;
          }
        }
      }
    }
  }
}

// q3_k (110 B): {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}. Low 2 bits as in q2_k; the
// third bit of element 32g+l (g = 0..7) is bit g of hmask[l], and a CLEAR bit subtracts 4.
// 16 signed 6-bit scales: low nibble from scales[s%8] (>>4 for s>=8), high 2 bits from
// scales[8 + s%4] >> 2*(s/4); minus 32.
void deq_q3_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 110, dst += QK_K) {
    const uint8_t* hm = src;
    const uint8_t* qs = src + 32;
    const uint8_t* sc = src + 96;
    const float d = h2f(src + 108);
    float dl[16];
    for (size_t s = 0; s < 16; ++s) {
      const int lo = (s < 8 ? sc[s] : sc[s - 8] >> 4) & 0x0F;
      const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
      dl[s] = d * static_cast<float>((lo | (hi << 4)) - 32);
    }
    for (size_t h = 0; h < 2; ++h) {
      for (size_t k = 0; k < 4; ++k) {
        const size_t g = 4 * h + k;  // group of 32
        for (size_t l = 0; l < 32; ++l) {
          const int low = (qs[32 * h + l] >> (2 * k)) & 3;
          const int q = low - (((hm[l] >> g) & 1) ? 0 : 4);
          dst[32 * g + l] = dl[2 * g + l / 16] * static_cast<float>(q);
        }
      }
    }
  }
}

// The 8 (scale, min) pairs of q4_k/q5_k, 6 bits each, packed into 12 bytes:
// j < 4: sc = s[j]&63, m = s[j+4]&63; j >= 4: sc = (s[j+4]&15) | (s[j-4]>>6)<<4,
// m = (s[j+4]>>4) | (s[j]>>6)<<4.
inline void k_scale_min(const uint8_t* s, size_t j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// q4_k (144 B): {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}. 8 sub-blocks of 32: sub-block
// 2c takes the low nibbles of qs[32c..32c+32), sub-block 2c+1 the high ones;
// x = d*sc*q - dmin*m.
void deq_q4_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 144, dst += QK_K) {
    const float d = h2f(src), dmin = h2f(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qs = src + 16;
    for (size_t j = 0; j < 8; ++j) {
      int sc, m;
      k_scale_min(scales, j, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const uint8_t* q = qs + 32 * (j / 2);
      const int shift = 4 * static_cast<int>(j % 2);
      for (size_t l = 0; l < 32; ++l)
        dst[32 * j + l] = d1 * static_cast<float>((q[l] >> shift) & 0x0F) - m1;
    }
  }
}

// q5_k (176 B): {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}. As q4_k, and the
// fifth bit of element 32j+l is bit j of qh[l].
void deq_q5_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 176, dst += QK_K) {
    const float d = h2f(src), dmin = h2f(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + 48;
    for (size_t j = 0; j < 8; ++j) {
      int sc, m;
      k_scale_min(scales, j, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const uint8_t* q = qs + 32 * (j / 2);
      const int shift = 4 * static_cast<int>(j % 2);
      for (size_t l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = d1 * static_cast<float>(v) - m1;
      }
    }
  }
}

// q6_k (210 B): {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}. Two halves of 128 elements;
// half h uses ql[64h..64h+64), qh[32h..32h+32). For l < 32 (ql = ql_h, qh = qh_h, y = 128h):
//   y[l]    = (ql[l]    & 15) | ((qh[l]>>0 & 3) << 4)
//   y[l+32] = (ql[l+32] & 15) | ((qh[l]>>2 & 3) << 4)
//   y[l+64] = (ql[l]    >> 4) | ((qh[l]>>4 & 3) << 4)
//   y[l+96] = (ql[l+32] >> 4) | ((qh[l]>>6 & 3) << 4)
// each minus 32, times d*scales[i/16] for output index i.
void deq_q6_k(const uint8_t* src, float* dst, size_t nb) {
  for (size_t b = 0; b < nb; ++b, src += 210, dst += QK_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = h2f(src + 208);
    float ds[16];
    for (size_t s = 0; s < 16; ++s) ds[s] = d * static_cast<float>(sc[s]);
    for (size_t h = 0; h < 2; ++h) {
      const uint8_t* L = ql + 64 * h;
      const uint8_t* H = qh + 32 * h;
      float* y = dst + 128 * h;
      const float* dh = ds + 8 * h;
      for (size_t l = 0; l < 32; ++l) {
        const int q1 = ((L[l] & 0x0F) | (((H[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((L[l + 32] & 0x0F) | (((H[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32;
        const size_t is = l / 16;
        y[l] = dh[is + 0] * static_cast<float>(q1);
        y[l + 32] = dh[is + 2] * static_cast<float>(q2);
        y[l + 64] = dh[is + 4] * static_cast<float>(q3);
        y[l + 96] = dh[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

float fp16_to_f32(uint16_t h) { return fp16_table().v[h]; }
float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

const char* ggml_type_name(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return "f32";
    case GgmlType::F16: return "f16";
    case GgmlType::Q4_0: return "q4_0";
    case GgmlType::Q4_1: return "q4_1";
    case GgmlType::Q5_0: return "q5_0";
    case GgmlType::Q5_1: return "q5_1";
    case GgmlType::Q8_0: return "q8_0";
    case GgmlType::Q8_1: return "q8_1";
    case GgmlType::Q2_K: return "q2_k";
    case GgmlType::Q3_K: return "q3_k";
    case GgmlType::Q4_K: return "q4_k";
    case GgmlType::Q5_K: return "q5_k";
    case GgmlType::Q6_K: return "q6_k";
    case GgmlType::Q8_K: return "q8_k";
    case GgmlType::BF16: return "bf16";
  }
  thread_local char buf[32];
  std::snprintf(buf, sizeof buf, "unknown(%u)", type);
  return buf;
}

size_t ggml_block_size(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: return 1;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q8_0: case GgmlType::Q8_1: return QK;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: case GgmlType::Q8_K: return QK_K;
  }
  return 0;
}

size_t ggml_type_size(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: return 2;
    case GgmlType::BF16: return 2;
    case GgmlType::Q4_0: return 18;
    case GgmlType::Q4_1: return 20;
    case GgmlType::Q5_0: return 22;
    case GgmlType::Q5_1: return 24;
    case GgmlType::Q8_0: return 34;
    case GgmlType::Q8_1: return 36;
    case GgmlType::Q2_K: return 84;
    case GgmlType::Q3_K: return 110;
    case GgmlType::Q4_K: return 144;
    case GgmlType::Q5_K: return 176;
    case GgmlType::Q6_K: return 210;
    case GgmlType::Q8_K: return 292;
  }
  return 0;
}

bool ggml_can_dequantize(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::Q8_1: case GgmlType::Q8_K: return false;  // ggml's dot-product scratch types
    default: return ggml_type_size(type) != 0;
  }
}

void dequantize_row(uint32_t type, const uint8_t* src, float* dst, size_t n) {
  const size_t bs = ggml_block_size(type);
  if (!ggml_can_dequantize(type))
    throw GgufError(std::string("dequantize_row: cannot dequantise tensor type ") +
                    std::to_string(type) + " (" + ggml_type_name(type) + ")");
  if (n % bs != 0)
    throw GgufError(std::string("dequantize_row: ") + std::to_string(n) +
                    " elements is not a multiple of the " + ggml_type_name(type) +
                    " block size " + std::to_string(bs));
  const size_t nb = n / bs;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: deq_f32(src, dst, n); return;
    case GgmlType::F16: deq_f16(src, dst, n); return;
    case GgmlType::BF16: deq_bf16(src, dst, n); return;
    case GgmlType::Q4_0: deq_q4_0(src, dst, nb); return;
    case GgmlType::Q4_1: deq_q4_1(src, dst, nb); return;
    case GgmlType::Q5_0: deq_q5_0(src, dst, nb); return;
    case GgmlType::Q5_1: deq_q5_1(src, dst, nb); return;
    case GgmlType::Q8_0: deq_q8_0(src, dst, nb); return;
    case GgmlType::Q2_K: deq_q2_k(src, dst, nb); return;
    case GgmlType::Q3_K: deq_q3_k(src, dst, nb); return;
    case GgmlType::Q4_K: deq_q4_k(src, dst, nb); return;
    case GgmlType::Q5_K: deq_q5_k(src, dst, nb); return;
    case GgmlType::Q6_K: deq_q6_k(src, dst, nb); return;
    default: break;
  }
  throw GgufError("dequantize_row: unhandled type " + std::to_string(type));
}

}  // namespace cascade
