#include "kernels/bf16.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// y(n) = bf16(x(n)), round to nearest even, NaN kept (kernels/bf16.h, the CPU's rounding): the
// weights once, and the activations before each bf16 GEMM. Launch: one thread per element,
// blocks of 256. CPU test: CudaEmulator.ToBf16RoundsEveryElementAsTheCpu (tests/test_cuda_emulator.cpp).
__global__ void to_bf16_kernel(const float* x, uint16_t* y, size_t n) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = kernels::f32_to_bf16(x[i]);
}

void to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t s) {
  if (n == 0) return;
  CASCADE_LAUNCH(to_bf16_kernel, (unsigned)((n + 255) / 256), 256, 0, s)(x, y, n);
}

}  // namespace cascade::CASCADE_CUDA_NS
