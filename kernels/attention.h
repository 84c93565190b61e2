// Partial attention and the merge of partials: the heart of Cascade (PROTOCOL.md, steps 2-3).
// A partial over a set of keys J is the state (m, e, u) with the softmax division deferred:
//   m = max_j s_j,  e = Σ_j exp(s_j − m),  u(d_h) = Σ_j exp(s_j − m) · v_j
// The empty partial (no key visible) is (−inf, 0, 0) and is the identity of merge.
#pragma once
#include <math.h>

#include "kernels/common.h"
#include "kernels/exp.h"

namespace cascade::kernels {

// One (query position, head): q(d_h) against nk keys K(nk, ·) and values V(nk, ·), rows
// `stride` floats apart (the kv-head offset is already applied to K and V). Keys with
// k_pos[j] > q_pos are masked when causal. Online softmax over chunks of keys: scores of a
// chunk first, then one rescale per chunk and a vectorisable exp; fp32 accumulation.
CASCADE_HD void partial_attention_row(const float* q, const float* K, const float* V,
                                      const int* k_pos, int nk, int stride, int d_h, int q_pos,
                                      bool causal, float scale, float* m_out, float* e_out,
                                      float* u /* (d_h) */) {
  constexpr int kChunk = 32;
  float m = neg_inf(), e = 0.0f;
  for (int t = 0; t < d_h; ++t) u[t] = 0.0f;
  for (int j0 = 0; j0 < nk; j0 += kChunk) {
    const int nc = nk - j0 < kChunk ? nk - j0 : kChunk;
    float sc[kChunk], w[kChunk];
    float cmax = neg_inf();
    for (int jj = 0; jj < nc; ++jj) {
      const int j = j0 + jj;
      if (causal && k_pos[j] > q_pos) {
        sc[jj] = neg_inf();
        continue;
      }
      const float* k = K + (long)j * stride;
      float s = 0.0f;
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#pragma omp simd reduction(+ : s)  // vectorise the dot product on the CPU (reassociates the sum)
#endif
      for (int t = 0; t < d_h; ++t) s += q[t] * k[t];
      sc[jj] = s * scale;
      cmax = sc[jj] > cmax ? sc[jj] : cmax;  // not fmaxf: a libm call on the CPU
    }
    if (cmax == neg_inf()) continue;  // every key of the chunk masked
    if (cmax > m) {                   // new maximum: rescale what was accumulated so far
      const float r = m == neg_inf() ? 0.0f : exp_fast(m - cmax);
      e *= r;
      for (int t = 0; t < d_h; ++t) u[t] *= r;
      m = cmax;
    }
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#pragma omp simd
#endif
    for (int jj = 0; jj < nc; ++jj) w[jj] = sc[jj] == neg_inf() ? 0.0f : exp_fast(sc[jj] - m);
    for (int jj = 0; jj < nc; ++jj) {
      if (w[jj] == 0.0f) continue;
      const float* v = V + (long)(j0 + jj) * stride;
      e += w[jj];
      for (int t = 0; t < d_h; ++t) u[t] += w[jj] * v[t];
    }
  }
  *m_out = m;
  *e_out = e;
}

// Merge nb partials of one (position, head) into the attention output o(d_h):
//   n = max_b m_b,  w_b = exp(m_b − n) (0 when m_b = −inf),  o = Σ w_b·u_b / Σ w_b·e_b.
// Partial b lives at m[b·stride_m], e[b·stride_m], u[b·stride_u]. All partials empty → o = 0
// (never NaN: exp(−inf − (−inf)) is never evaluated). Only dims t0, t0 + dt, ... are written
// (the CUDA kernel's lanes split them; the CPU passes 0, 1).
CASCADE_HD void merge_partials_row(const float* m, const float* e, const float* u, int nb,
                                   long stride_m, long stride_u, int d_h, float* o, int t0 = 0,
                                   int dt = 1) {
  float n = neg_inf();
  for (int b = 0; b < nb; ++b) n = fmaxf(n, m[b * stride_m]);
  for (int t = t0; t < d_h; t += dt) o[t] = 0.0f;
  if (n == neg_inf()) return;
  float denom = 0.0f;
  for (int b = 0; b < nb; ++b) {
    const float mb = m[b * stride_m];
    if (mb == neg_inf()) continue;
    const float w = expf(mb - n);
    denom += w * e[b * stride_m];
    const float* ub = u + b * stride_u;
    for (int t = t0; t < d_h; t += dt) o[t] += w * ub[t];
  }
  const float inv = 1.0f / denom;
  for (int t = t0; t < d_h; t += dt) o[t] *= inv;
}

// Merge two partials into one, (m1, e1, u1) ← (m1, e1, u1) ⊕ (m2, e2, u2). Associative and
// commutative up to fp32 rounding; the empty partial is the identity.
CASCADE_HD void combine_partials(float* m1, float* e1, float* u1, float m2, float e2,
                                 const float* u2, int d_h) {
  if (m2 == neg_inf()) return;
  if (*m1 == neg_inf()) {
    *m1 = m2;
    *e1 = e2;
    for (int t = 0; t < d_h; ++t) u1[t] = u2[t];
    return;
  }
  const float n = fmaxf(*m1, m2);
  const float w1 = expf(*m1 - n), w2 = expf(m2 - n);
  *e1 = w1 * *e1 + w2 * e2;
  for (int t = 0; t < d_h; ++t) u1[t] = w1 * u1[t] + w2 * u2[t];
  *m1 = n;
}

}  // namespace cascade::kernels
