#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// y(n, d) += b(d). Launch: one thread per element, blocks of 256.
// CPU test: BackendOpsDevice.AddBiasAndGelu/cuda_emu (tests/test_backend_ops.cpp).
__global__ void add_bias_kernel(float* y, const float* b, size_t total, int d) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) y[i] += b[i % d];
}

void add_bias(float* y, const float* b, int n, int d, cudaStream_t s) {
  const size_t total = (size_t)n * d;
  if (total == 0) return;
  CASCADE_LAUNCH(add_bias_kernel, (unsigned)((total + 255) / 256), 256, 0, s)(y, b, total, d);
}

}  // namespace cascade::CASCADE_CUDA_NS
