#include "kernels/activation.h"
#include "kernels/cuda/launch.h"

namespace cascade::cuda {

__global__ void silu_mul_kernel(float* gate, const float* up, size_t n) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = kernels::silu_mul(gate[i], up[i]);
}

void silu_mul(float* gate, const float* up, size_t n, cudaStream_t s) {
  if (n == 0) return;
  silu_mul_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(gate, up, n);
}

}  // namespace cascade::cuda
