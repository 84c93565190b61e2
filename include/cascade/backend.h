// Backend: where tensors live and how the math runs. The only code that knows CPU from GPU.
// Every pointer passed to a backend lives in that backend's memory (host memory for the CPU
// backend, device memory for CUDA). Shapes are row-major; (n, d) means n rows of d floats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "cascade/packed_gemm.h"
#include "cascade/weight_cache.h"

namespace cascade {

struct Model;

// Arguments of partial attention for a block of queries against a block of keys.
struct PartialAttnArgs {
  const float* q = nullptr;      // (nq, n_head, d_head), RoPE applied
  const int32_t* q_pos = nullptr;  // (nq) absolute positions
  int nq = 0;
  const float* k = nullptr;      // (nk, n_head_kv, d_head), RoPE applied
  const float* v = nullptr;      // (nk, n_head_kv, d_head)
  const int32_t* k_pos = nullptr;  // (nk)
  int nk = 0;
  int n_head = 0, n_head_kv = 0, d_head = 0;
  bool causal = true;
  float* m = nullptr;            // out (nq, n_head)
  float* e = nullptr;            // out (nq, n_head)
  float* u = nullptr;            // out (nq, n_head, d_head)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool host_memory() const = 0;  // can the host dereference this backend's pointers?

  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  // The stream the backend's work is issued on (CUDA: its cudaStream_t), for a device link to
  // order its transfers after it; nullptr for the CPU.
  virtual void* native_stream() { return nullptr; }
  // Within the backend's memory: bytes from src to dst, and rows of `cols` floats between
  // strided layouts (dst row i at dst + i·dst_stride, src row i at src + i·src_stride).
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_rows(float* dst, size_t dst_stride, const float* src, size_t src_stride,
                         int rows, int cols) = 0;

  // Capability query (as ggml's supports_op): can prepare_weights take `precision` here? Every
  // backend runs every op of this interface in fp32; bf16 GEMMs need a CPU with AVX512_BF16 or
  // AMX, or an NVIDIA GPU of compute capability 8.0 or more.
  virtual bool supports(Precision precision) const { return precision == Precision::f32; }

  // Prepares `model`'s weight matrices for matmul_wt in `precision`: afterwards matmul_wt with
  // one of them (by its address in the model) reads the prepared copy; other matrices still
  // work as before. The CPU backend packs them for oneDNN (gemm_weights.h); the default keeps
  // fp32 as it is and refuses bf16. `opt` only names a lock timeout or forces private memory.
  // (Defined here, not in backend.cpp: a program that never names the CUDA backend must not
  // link it, or every process would load cuBLAS and touch its 84 MB of static data.)
  virtual void prepare_weights(const Model&, Precision precision, const WeightLoadOptions&) {
    if (!supports(precision))
      throw std::runtime_error("the " + name() + " backend has no " + precision_name(precision) +
                               " GEMMs (use --precision f32)");
  }

  // y(n, out) = x(n, in) · w(out, in)ᵀ, plus y when accumulate (the residual add for free).
  virtual void matmul_wt(const float* x, const float* w, float* y, int n, int in, int out,
                         bool accumulate) = 0;
  // y(n, d) = rmsnorm(x(n, d)) · w(d)
  virtual void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps) = 0;
  // y(n, d) = layernorm(x(n, d)) · w(d) + b(d) (biased variance, as torch)
  virtual void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d,
                         float eps) = 0;
  // y(n) += x(n)
  virtual void add(float* y, const float* x, size_t n) = 0;
  // y(n, d) += b(d) on every row (the bias of a projection)
  virtual void add_bias(float* y, const float* b, int n, int d) = 0;
  // x(n) = gelu(x) in place; tanh: GPT-2's approximation, else BERT's exact (erf) one
  virtual void gelu(float* x, size_t n, bool tanh_approx) = 0;
  // x(n, n_heads, d_head) rotated in place, row i at position pos[i]
  virtual void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head,
                    float theta) = 0;
  // out(n, d_ff) = silu(gu[:, :d_ff]) ⊙ gu[:, d_ff:] for gu(n, 2·d_ff) (SwiGLU)
  virtual void swiglu(const float* gu, float* out, int n, int d_ff) = 0;
  // out(n, d) = rows ids(n) of table(·, d) (the embedding lookup); ids are checked by the caller
  virtual void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out) = 0;
  virtual void partial_attention(const PartialAttnArgs& a) = 0;
  // o(nq, n_head, d_head) = merge of nb partials; m, e are (nb, nq, n_head), u is
  // (nb, nq, n_head, d_head).
  virtual void merge_partials(const float* m, const float* e, const float* u, int nb, int nq,
                              int n_head, int d_head, float* o) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws std::runtime_error when CUDA was not built in or no device is present.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);
bool cuda_available();  // built with CUDA and at least one device visible
int cuda_device_count();  // visible CUDA devices (0 without CUDA)
// "cpu" or "cuda"
std::unique_ptr<Backend> make_backend(const std::string& name);

// Thread count of the CPU math (OpenMP loops and OpenBLAS); <= 0 leaves the defaults.
void set_cpu_threads(int n);

}  // namespace cascade
