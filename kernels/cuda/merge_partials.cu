#include "kernels/attention.h"
#include "kernels/cuda/launch.h"

namespace cascade::cuda {

// One thread per (row, head); m, e are (nb, rows), u is (nb, rows, d_head).
__global__ void merge_partials_kernel(const float* m, const float* e, const float* u, int nb,
                                      long rows, int d_head, float* o) {
  const long r = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows)
    kernels::merge_partials_row(m + r, e + r, u + r * d_head, nb, rows, rows * d_head, d_head,
                                o + r * d_head);
}

void merge_partials(const float* m, const float* e, const float* u, int nb, int nq, int n_head,
                    int d_head, float* o, cudaStream_t s) {
  const long rows = (long)nq * n_head;
  if (rows == 0) return;
  merge_partials_kernel<<<(unsigned)((rows + 127) / 128), 128, 0, s>>>(m, e, u, nb, rows, d_head, o);
}

}  // namespace cascade::cuda
