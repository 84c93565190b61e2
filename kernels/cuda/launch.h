// CUDA launchers of the kernels/*.h math: one op per .cu file, each a thin grid over the very
// same __host__ __device__ row functions the CPU backend runs. All pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace cascade::cuda {

void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t s);
void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d, float eps,
               cudaStream_t s);
void add_bias(float* y, const float* b, int n, int d, cudaStream_t s);
void gelu(float* x, size_t n, bool tanh_approx, cudaStream_t s);
void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta,
          cudaStream_t s);
void swiglu(const float* gu, float* out, int n, int d_ff, cudaStream_t s);
void partial_attention(const float* q, const int32_t* q_pos, int nq, const float* k,
                       const float* v, const int32_t* k_pos, int nk, int n_head, int n_head_kv,
                       int d_head, bool causal, float* m, float* e, float* u, cudaStream_t s);
void merge_partials(const float* m, const float* e, const float* u, int nb, int nq, int n_head,
                    int d_head, float* o, cudaStream_t s);

}  // namespace cascade::cuda
