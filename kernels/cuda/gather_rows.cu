#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// Embedding gather: out(n, d) = table[ids[i]] row by row. Launch: one thread per output
// element, blocks of 256 (coalesced along d). CPU test: BackendOpsDevice.GatherRows/cuda_emu.
__global__ void gather_rows_kernel(const float* table, const int32_t* ids, size_t total, int d,
                                   float* out) {
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < total) out[idx] = table[(size_t)ids[idx / d] * d + idx % d];
}

void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out,
                 cudaStream_t s) {
  const size_t total = (size_t)n * d;
  if (total == 0) return;
  CASCADE_LAUNCH(gather_rows_kernel, (unsigned)((total + 255) / 256), 256, 0, s)(table, ids, total,
                                                                                 d, out);
}

}  // namespace cascade::CASCADE_CUDA_NS
