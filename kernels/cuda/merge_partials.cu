#include "kernels/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace cascade::CASCADE_CUDA_NS {

// o(rows, d_head) = merge of nb partials (kernels/attention.h, merge_partials_row); m, e are
// (nb, rows), u is (nb, rows, d_head), rows = nq·n_head. Launch: one warp per (row, head),
// 4 warps a block; the lanes split d_head (each lane reads every partial's m and e, nb is β).
// CPU test: BackendOpsDevice.MergePartials/cuda_emu (tests/test_backend_ops.cpp).
__global__ void merge_partials_kernel(const float* m, const float* e, const float* u, int nb,
                                      long rows, int d_head, float* o) {
  const long r = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;  // a whole warp leaves together: no shuffles below
  const int lane = threadIdx.x % 32;
  kernels::merge_partials_row(m + r, e + r, u + r * d_head, nb, rows, rows * d_head, d_head,
                              o + r * d_head, lane, 32);
}

void merge_partials(const float* m, const float* e, const float* u, int nb, int nq, int n_head,
                    int d_head, float* o, cudaStream_t s) {
  const long rows = (long)nq * n_head;
  if (rows == 0) return;
  CASCADE_LAUNCH(merge_partials_kernel, (unsigned)((rows + 3) / 4), 128, 0, s)(m, e, u, nb, rows,
                                                                               d_head, o);
}

}  // namespace cascade::CASCADE_CUDA_NS
