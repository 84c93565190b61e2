#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// Fused RMSNorm and its weight, one pass after the reduction. Launch: a block of 256 threads
// per row (grid n); each thread sums the squares of a strided slice, block_sum (warp shuffles
// and 8 floats of shared memory) gives Σx². y may alias x: every thread reads its elements
// before the reduction's barriers and writes them after.
// CPU test: BackendOpsDevice.Rmsnorm/cuda_emu (tests/test_backend_ops.cpp).
__global__ void rmsnorm_kernel(const float* x, const float* w, float* y, int d, float eps) {
  const float* xr = x + (long)blockIdx.x * d;
  float* yr = y + (long)blockIdx.x * d;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, dynamic_smem<float>());
  const float scale = 1.0f / sqrtf(ss / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t s) {
  if (n == 0) return;
  CASCADE_LAUNCH(rmsnorm_kernel, n, 256, 32 * sizeof(float), s)(x, w, y, d, eps);
}

}  // namespace cascade::CASCADE_CUDA_NS
