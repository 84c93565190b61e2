#include <math.h>

#include "kernels/attention.h"
#include "kernels/cuda/launch.h"

namespace cascade::cuda {

// One thread per (query row, head). d_head ≤ 256.
__global__ void partial_attention_kernel(const float* q, const int32_t* q_pos, int nq,
                                         const float* k, const float* v, const int32_t* k_pos,
                                         int nk, int n_head, int n_head_kv, int d_head,
                                         bool causal, float* m, float* e, float* u) {
  const long qh = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (qh >= (long)nq * n_head) return;
  const int i = (int)(qh / n_head), h = (int)(qh % n_head);
  const int g = h / (n_head / n_head_kv);
  kernels::partial_attention_row(q + qh * d_head, k + g * d_head, v + g * d_head, k_pos, nk,
                                 n_head_kv * d_head, d_head, q_pos[i], causal,
                                 1.0f / sqrtf((float)d_head), m + qh, e + qh, u + qh * d_head);
}

void partial_attention(const float* q, const int32_t* q_pos, int nq, const float* k,
                       const float* v, const int32_t* k_pos, int nk, int n_head, int n_head_kv,
                       int d_head, bool causal, float* m, float* e, float* u, cudaStream_t s) {
  const long rows = (long)nq * n_head;
  if (rows == 0) return;
  partial_attention_kernel<<<(unsigned)((rows + 63) / 64), 64, 0, s>>>(
      q, q_pos, nq, k, v, k_pos, nk, n_head, n_head_kv, d_head, causal, m, e, u);
}

}  // namespace cascade::cuda
