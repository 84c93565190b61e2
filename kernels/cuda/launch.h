// The CUDA launchers: one op per kernels/cuda/*.cu. All pointers are device memory; every
// launcher returns at once (work is queued on `s`). Compiled by nvcc into cascade::cuda, and by
// the tests as host C++ on the CUDA emulator into cascade::cuda_emu (kernels/cuda/device.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device.h"

namespace cascade::CASCADE_CUDA_NS {

void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t s);
void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d, float eps,
               cudaStream_t s);
void add(float* y, const float* x, size_t n, cudaStream_t s);
void add_bias(float* y, const float* b, int n, int d, cudaStream_t s);
void gelu(float* x, size_t n, bool tanh_approx, cudaStream_t s);
void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta,
          cudaStream_t s);
void swiglu(const float* gu, float* out, int n, int d_ff, cudaStream_t s);
// out(n, d) = table rows ids(n); ids are checked on the host before (no bounds check here).
void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out,
                 cudaStream_t s);
// Throws std::invalid_argument for d_head > 256.
void partial_attention(const float* q, const int32_t* q_pos, int nq, const float* k,
                       const float* v, const int32_t* k_pos, int nk, int n_head, int n_head_kv,
                       int d_head, bool causal, float* m, float* e, float* u, cudaStream_t s);
// y(n) = x(n) rounded to bf16 (kernels/bf16.h).
void to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t s);
void merge_partials(const float* m, const float* e, const float* u, int nb, int nq, int n_head,
                    int d_head, float* o, cudaStream_t s);

}  // namespace cascade::CASCADE_CUDA_NS
