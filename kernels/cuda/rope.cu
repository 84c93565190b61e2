#include "kernels/cuda/launch.h"
#include "kernels/rope.h"

namespace cascade::cuda {

__global__ void rope_kernel(float* x, const int32_t* pos, int n, int n_heads, int d_head,
                            float theta) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // one thread per row
  if (i < n) kernels::rope_row(x + (long)i * n_heads * d_head, n_heads, d_head, pos[i], theta);
}

void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta,
          cudaStream_t s) {
  if (n == 0) return;
  rope_kernel<<<(n + 127) / 128, 128, 0, s>>>(x, pos, n, n_heads, d_head, theta);
}

}  // namespace cascade::cuda
