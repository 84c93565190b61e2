#include "kernels/activation.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// x = gelu(x) in place with kernels/activation.h's formula. Launch: one thread per element,
// blocks of 256. CPU test: BackendOpsDevice.AddBiasAndGelu/cuda_emu (tests/test_backend_ops.cpp).
__global__ void gelu_kernel(float* x, size_t n, kernels::Gelu kind) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = kernels::gelu(x[i], kind);
}

void gelu(float* x, size_t n, bool tanh_approx, cudaStream_t s) {
  if (n == 0) return;
  CASCADE_LAUNCH(gelu_kernel, (unsigned)((n + 255) / 256), 256, 0, s)(
      x, n, tanh_approx ? kernels::Gelu::tanh : kernels::Gelu::erf);
}

}  // namespace cascade::CASCADE_CUDA_NS
