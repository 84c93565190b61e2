#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/common.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"
#include "kernels/exp.h"

namespace cascade::CASCADE_CUDA_NS {
namespace {

constexpr int kWarps = 4;                          // a block is 128 threads
constexpr int kRowsPerWarp = 4;                    // query rows a warp owns
constexpr int kQueryTile = kWarps * kRowsPerWarp;  // 16 queries a block
constexpr int kKeyTile = 32;                       // keys per tile: one per lane
constexpr int kMaxDimsPerLane = 8;                 // d_head ≤ 256

// Shared memory of one block, in floats: q tile (16, d), K tile (32, d + 1) (the +1 keeps
// the lanes' rows in different banks), V tile (32, d), key positions (32), weights (4, 32).
size_t smem_floats(int d) {
  return (size_t)kQueryTile * d + (size_t)kKeyTile * (d + 1) + (size_t)kKeyTile * d + kKeyTile +
         kWarps * kKeyTile;
}

}  // namespace

// Tiled partial attention (kernels/attention.h states the partial (m, e, u)). Launch: grid
// (⌈nq/16⌉, n_head), 128 threads; block (x, h) owns queries 16x … 16x+15 of head h and streams
// kv head g = h / (n_head / n_head_kv) through shared memory 32 keys at a time. Warp w owns 4
// query rows; per tile, lane j scores key j (a dot product over d from shared memory), the
// tile maximum and the sum of weights are warp-shuffle reductions, and the online (m, e, u)
// lives in registers, lane l holding dims l, l+32, … of u. Masked keys (causal: k_pos > q_pos),
// keys past nk and rows past nq are −inf / absent; a row with no visible key ends as the empty
// partial (−inf, 0, 0). CPU tests: BackendOpsDevice.PartialAttention*/cuda_emu (tests/test_backend_ops.cpp).
__global__ void partial_attention_kernel(const float* q, const int32_t* q_pos, int nq,
                                         const float* k, const float* v, const int32_t* k_pos,
                                         int nk, int n_head, int n_head_kv, int d, bool causal,
                                         float scale, float* m_out, float* e_out, float* u_out) {
  const int h = blockIdx.y, g = h / (n_head / n_head_kv);
  const int q0 = blockIdx.x * kQueryTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sq = dynamic_smem<float>();                  // (16, d)
  float* sk = sq + kQueryTile * d;                    // (32, d + 1)
  float* sv = sk + kKeyTile * (d + 1);                // (32, d)
  int* spos = reinterpret_cast<int*>(sv + kKeyTile * d);  // (32)
  float* sw = reinterpret_cast<float*>(spos + kKeyTile) + warp * kKeyTile;  // this warp's (32)

  for (int idx = threadIdx.x; idx < kQueryTile * d; idx += blockDim.x) {
    const int i = q0 + idx / d;
    sq[idx] = i < nq ? q[((long)i * n_head + h) * d + idx % d] : 0.0f;
  }
  int qp[kRowsPerWarp];  // the warp's query positions; INT_MIN: no such row
  float m[kRowsPerWarp], e[kRowsPerWarp], acc[kRowsPerWarp][kMaxDimsPerLane];
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    qp[r] = i < nq ? q_pos[i] : INT_MIN;
    m[r] = kernels::neg_inf();
    e[r] = 0.0f;
    for (int c = 0; c < kMaxDimsPerLane; ++c) acc[r][c] = 0.0f;
  }

  for (int j0 = 0; j0 < nk; j0 += kKeyTile) {
    __syncthreads();  // the previous tile is consumed (and, the first time, the q tile written)
    for (int idx = threadIdx.x; idx < kKeyTile * d; idx += blockDim.x) {
      const int jj = idx / d, t = idx % d, j = j0 + jj;
      const long src = ((long)j * n_head_kv + g) * d + t;
      sk[jj * (d + 1) + t] = j < nk ? k[src] : 0.0f;
      sv[jj * d + t] = j < nk ? v[src] : 0.0f;
    }
    if (threadIdx.x < kKeyTile) {
      const int j = j0 + (int)threadIdx.x;
      spos[threadIdx.x] = j < nk ? k_pos[j] : 0;
    }
    __syncthreads();

    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (qp[r] == INT_MIN) continue;  // the same for every lane of the warp
      const float* qr = sq + (warp * kRowsPerWarp + r) * d;
      const bool visible = j0 + lane < nk && !(causal && spos[lane] > qp[r]);
      float s = kernels::neg_inf();
      if (visible) {
        const float* kr = sk + lane * (d + 1);
        float dot = 0.0f;
        for (int t = 0; t < d; ++t) dot += qr[t] * kr[t];
        s = dot * scale;
      }
      const float tmax = warp_max(s);
      if (tmax == kernels::neg_inf()) continue;  // every key of the tile masked (warp-uniform)
      if (tmax > m[r]) {  // new maximum: rescale what was accumulated so far
        const float rs = m[r] == kernels::neg_inf() ? 0.0f : kernels::exp_fast(m[r] - tmax);
        e[r] *= rs;
        for (int c = 0; c < kMaxDimsPerLane; ++c) acc[r][c] *= rs;
        m[r] = tmax;
      }
      const float w = s == kernels::neg_inf() ? 0.0f : kernels::exp_fast(s - m[r]);
      e[r] += warp_sum(w);
      sw[lane] = w;
      __syncwarp();
      for (int jj = 0; jj < kKeyTile; ++jj) {
        const float wj = sw[jj];
        if (wj == 0.0f) continue;
        for (int c = 0; c < kMaxDimsPerLane; ++c) {
          const int t = lane + 32 * c;
          if (t < d) acc[r][c] += wj * sv[jj * d + t];
        }
      }
      __syncwarp();  // every lane has read sw before the next row overwrites it
    }
  }

  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (qp[r] == INT_MIN) continue;
    const long row = (long)(q0 + warp * kRowsPerWarp + r) * n_head + h;
    for (int c = 0; c < kMaxDimsPerLane; ++c) {
      const int t = lane + 32 * c;
      if (t < d) u_out[row * d + t] = acc[r][c];
    }
    if (lane == 0) {
      m_out[row] = m[r];
      e_out[row] = e[r];
    }
  }
}

void partial_attention(const float* q, const int32_t* q_pos, int nq, const float* k,
                       const float* v, const int32_t* k_pos, int nk, int n_head, int n_head_kv,
                       int d_head, bool causal, float* m, float* e, float* u, cudaStream_t s) {
  if (d_head > 32 * kMaxDimsPerLane)
    throw std::invalid_argument("CUDA partial attention: d_head " + std::to_string(d_head) +
                                " > " + std::to_string(32 * kMaxDimsPerLane));
  if (nq == 0 || n_head == 0) return;
  const size_t smem = smem_floats(d_head) * sizeof(float);
  if (smem > kDefaultSmemBytes)  // d_head > 128
    cudaFuncSetAttribute(partial_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  const dim3 grid((unsigned)((nq + kQueryTile - 1) / kQueryTile), (unsigned)n_head);
  CASCADE_LAUNCH(partial_attention_kernel, grid, 32 * kWarps, smem, s)(
      q, q_pos, nq, k, v, k_pos, nk, n_head, n_head_kv, d_head, causal,
      1.0f / sqrtf((float)d_head), m, e, u);
}

}  // namespace cascade::CASCADE_CUDA_NS
