#include "kernels/activation.h"
#include "kernels/cuda/launch.h"

namespace cascade::cuda {

// One thread per output element; gu is (n, 2·d_ff), out is (n, d_ff).
__global__ void swiglu_kernel(const float* gu, float* out, int n, int d_ff) {
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (size_t)n * d_ff) return;
  const size_t i = idx / d_ff, j = idx % d_ff;
  out[idx] = kernels::silu_mul(gu[i * 2 * d_ff + j], gu[i * 2 * d_ff + d_ff + j]);
}

void swiglu(const float* gu, float* out, int n, int d_ff, cudaStream_t s) {
  const size_t total = (size_t)n * d_ff;
  if (total == 0) return;
  swiglu_kernel<<<(unsigned)((total + 255) / 256), 256, 0, s>>>(gu, out, n, d_ff);
}

}  // namespace cascade::cuda
