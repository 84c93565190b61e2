#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// Fused LayerNorm, weight and bias (biased variance, two reductions as kernels/layernorm.h, so a
// large mean does not cancel the variance). Launch: a block of 256 threads per row (grid n),
// block_sum over strided slices. y may alias x (reads precede the second reduction's barriers).
// CPU test: BackendOpsDevice.Layernorm/cuda_emu (tests/test_backend_ops.cpp).
__global__ void layernorm_kernel(const float* x, const float* w, const float* b, float* y, int d,
                                 float eps) {
  const float* xr = x + (long)blockIdx.x * d;
  float* yr = y + (long)blockIdx.x * d;
  float* scratch = dynamic_smem<float>();
  float s = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
  const float mean = block_sum(s, scratch) / (float)d;
  float v = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
  const float scale = 1.0f / sqrtf(block_sum(v, scratch) / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = (xr[i] - mean) * scale * w[i] + b[i];
}

void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d, float eps,
               cudaStream_t s) {
  if (n == 0) return;
  CASCADE_LAUNCH(layernorm_kernel, n, 256, 32 * sizeof(float), s)(x, w, b, y, d, eps);
}

}  // namespace cascade::CASCADE_CUDA_NS
