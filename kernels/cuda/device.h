// The one header every kernels/cuda/*.cu includes first. With nvcc it is CUDA. As host C++ (tests
// only: CASCADE_CUDA_EMULATOR defined and tests/emu on the include path) the same source runs on
// the CUDA emulator (tests/emu/cuda_emulator.h), which is how the CPU tests run the device code.
#pragma once
#include <math.h>
#include <stddef.h>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
// The launchers' namespace: cascade::cuda for the device build, cascade::cuda_emu for the
// emulated one, so a test binary can hold both without one shadowing the other.
#define CASCADE_CUDA_NS cuda
#define CASCADE_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#elif defined(CASCADE_CUDA_EMULATOR)
#include "cuda_emulator.h"
#define CASCADE_CUDA_NS cuda_emu
#define CASCADE_LAUNCH(kernel, grid, block, smem, stream) \
  ::cascade::emu::launcher(kernel, #kernel, (grid), (block), (smem), (stream))
#else
#error "kernels/cuda/*.cu compile with nvcc, or as host C++ for the tests with CASCADE_CUDA_EMULATOR"
#endif

namespace cascade::CASCADE_CUDA_NS {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr size_t kDefaultSmemBytes = 48 << 10;  // more needs cudaFuncSetAttribute

// The block's dynamic shared memory (the launch's third <<<>>> argument), 16-byte aligned.
template <class T>
__device__ __forceinline__ T* dynamic_smem() {
#if defined(__CUDACC__)
  extern __shared__ float4 cascade_dynamic_smem[];
  return reinterpret_cast<T*>(cascade_dynamic_smem);
#else
  return reinterpret_cast<T*>(::cascade::emu::dynamic_smem());
#endif
}

// Sum and max over the 32 lanes of a warp (butterfly: every lane gets the result).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
// NaN wins, so every lane ends with the same answer (NaN or the max) and branches on it stay
// warp-uniform; `w > v ? w : v` alone keeps a lane's own NaN while its partner drops it.
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(kFullMask, v, o);
    v = (w > v || w != w) ? w : v;
  }
  return v;
}

// Sum over a block of whole warps; scratch is ≥ 32 floats of shared memory. Every thread gets
// the result. It begins with a barrier, so consecutive calls may share one scratch.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch free (a previous block_sum may still be reading it)
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float s = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(s);
}

}  // namespace cascade::CASCADE_CUDA_NS
