#include "kernels/cuda/launch.h"

namespace cascade::cuda {

// One thread per element of y(n, d); b(d) is broadcast over the rows.
__global__ void add_bias_kernel(float* y, const float* b, int n, int d) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < (size_t)n * d) y[i] += b[i % d];
}

void add_bias(float* y, const float* b, int n, int d, cudaStream_t s) {
  const size_t total = (size_t)n * d;
  if (total == 0) return;
  add_bias_kernel<<<(unsigned)((total + 255) / 256), 256, 0, s>>>(y, b, n, d);
}

}  // namespace cascade::cuda
