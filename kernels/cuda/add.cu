#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// y(n) += x(n) (learned positions added to the embedding). Launch: one thread per element,
// blocks of 256. CPU test: DeviceReference.EmulatedCudaMatchesCpuForEveryFamily (gpt2, bert; tests/test_device_reference.cpp).
__global__ void add_kernel(float* y, const float* x, size_t n) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

void add(float* y, const float* x, size_t n, cudaStream_t s) {
  if (n == 0) return;
  CASCADE_LAUNCH(add_kernel, (unsigned)((n + 255) / 256), 256, 0, s)(y, x, n);
}

}  // namespace cascade::CASCADE_CUDA_NS
