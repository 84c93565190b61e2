#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"
#include "kernels/rope.h"

namespace cascade::CASCADE_CUDA_NS {

// RoPE in place on x(n, n_heads, d_head), row i at position pos[i] (kernels/rope.h). Launch:
// one thread per (row, head, pair), blocks of 256; the pairs of a head are adjacent threads, so
// a warp reads and writes contiguous floats. CPU test: BackendOpsDevice.Rope/cuda_emu.
__global__ void rope_kernel(float* x, const int32_t* pos, size_t total, int n_heads, int d_head,
                            float theta) {
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int half = d_head / 2;
  const int i = (int)(idx % half);
  const size_t row = idx / half / n_heads;
  float c, s;
  kernels::rope_cos_sin(i, d_head, pos[row], theta, &c, &s);
  kernels::rope_rotate(x + (idx / half) * d_head + 2 * i, c, s);
}

void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta,
          cudaStream_t s) {
  const size_t total = (size_t)n * n_heads * (d_head / 2);
  if (total == 0) return;
  CASCADE_LAUNCH(rope_kernel, (unsigned)((total + 255) / 256), 256, 0, s)(x, pos, total, n_heads,
                                                                          d_head, theta);
}

}  // namespace cascade::CASCADE_CUDA_NS
