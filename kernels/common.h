// Shared by the CPU backend (plain C++ in OpenMP loops) and the CUDA launchers (nvcc):
// every per-row op is written once, as an inline function callable from host and device.
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define CASCADE_HD __host__ __device__ __forceinline__
#else
#define CASCADE_HD inline
#endif

namespace cascade::kernels {

// −inf marks an empty partial; INFINITY (math.h) is usable in host and device code alike.
CASCADE_HD float neg_inf() { return -INFINITY; }

}  // namespace cascade::kernels
