#include "kernels/activation.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// out(n, d_ff) = silu(gate) ⊙ up for gu(n, 2·d_ff) = [gate | up] (kernels/activation.h).
// Launch: one thread per output element, blocks of 256.
// CPU test: BackendOpsDevice.SiluMul/cuda_emu (tests/test_backend_ops.cpp).
__global__ void swiglu_kernel(const float* gu, float* out, size_t total, int d_ff) {
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const size_t i = idx / d_ff, j = idx % d_ff;
  out[idx] = kernels::silu_mul(gu[i * 2 * d_ff + j], gu[i * 2 * d_ff + d_ff + j]);
}

void swiglu(const float* gu, float* out, int n, int d_ff, cudaStream_t s) {
  const size_t total = (size_t)n * d_ff;
  if (total == 0) return;
  CASCADE_LAUNCH(swiglu_kernel, (unsigned)((total + 255) / 256), 256, 0, s)(gu, out, total, d_ff);
}

}  // namespace cascade::CASCADE_CUDA_NS
