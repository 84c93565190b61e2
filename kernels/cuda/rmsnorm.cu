#include "kernels/cuda/launch.h"
#include "kernels/rmsnorm.h"

namespace cascade::cuda {

__global__ void rmsnorm_kernel(const float* x, const float* w, float* y, int n, int d, float eps) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // one thread per row
  if (i < n) kernels::rmsnorm_row(x + (long)i * d, w, y + (long)i * d, d, eps);
}

void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t s) {
  if (n == 0) return;
  rmsnorm_kernel<<<(n + 127) / 128, 128, 0, s>>>(x, w, y, n, d, eps);
}

}  // namespace cascade::cuda
