// CPU backend: oneDNN on packed weights for a prepared model's matrices (packed_gemm.h),
// OpenBLAS for other GEMMs, the shared kernels/*.h functions in OpenMP loops for the rest.
#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cascade/backend.h"
#include "cascade/gemm_weights.h"
#include "cascade/packed_gemm.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/layernorm.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace cascade {
namespace {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool host_memory() const override { return true; }

  void* alloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_rows(float* dst, size_t dst_stride, const float* src, size_t src_stride, int rows,
                 int cols) override {
    for (int i = 0; i < rows; ++i)
      std::memcpy(dst + i * dst_stride, src + i * src_stride, sizeof(float) * cols);
  }
  void add(float* y, const float* x, size_t n) override {
    const int64_t count = (int64_t)n;
#pragma omp parallel for if (count > 65536)
    for (int64_t i = 0; i < count; ++i) y[i] += x[i];
  }

  bool supports(Precision precision) const override {
    return precision == Precision::f32 || cpu_has_bf16();
  }

  void prepare_weights(const Model& model, Precision precision,
                       const WeightLoadOptions& opt) override {
    auto gemm = std::make_unique<PackedGemm>(precision);
    weights_ = pack_gemm_weights(model, *gemm, opt);
    gemm_ = std::move(gemm);
  }

  void matmul_wt(const float* x, const float* w, float* y, int n, int in, int out,
                 bool accumulate) override {
    if (n == 0) return;
    if (weights_) {
      if (const void* packed = weights_->find(w)) {
        gemm_->matmul(packed, x, y, n, in, out, accumulate);
        return;
      }
    }
    if (n == 1) {  // decode: a GEMV; sgemm would pack the whole weight matrix for one row
      cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1,
                  accumulate ? 1.0f : 0.0f, y, 1);
      return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in,
                accumulate ? 1.0f : 0.0f, y, out);
  }

  void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps) override {
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; ++i) kernels::rmsnorm_row(x + (long)i * d, w, y + (long)i * d, d, eps);
  }

  void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d,
                 float eps) override {
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; ++i)
      kernels::layernorm_row(x + (long)i * d, w, b, y + (long)i * d, d, eps);
  }

  void add_bias(float* y, const float* b, int n, int d) override {
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; ++i) {
      float* r = y + (long)i * d;
#pragma omp simd
      for (int j = 0; j < d; ++j) r[j] += b[j];
    }
  }

  void gelu(float* x, size_t n, bool tanh_approx) override {
    const kernels::Gelu kind = tanh_approx ? kernels::Gelu::tanh : kernels::Gelu::erf;
    const int64_t count = (int64_t)n;
#pragma omp parallel for if (count > 4096)
    for (int64_t i = 0; i < count; ++i) x[i] = kernels::gelu(x[i], kind);
  }

  void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta) override {
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; ++i)
      kernels::rope_row(x + (long)i * n_heads * d_head, n_heads, d_head, pos[i], theta);
  }

  void swiglu(const float* gu, float* out, int n, int d_ff) override {
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; ++i) {
      const float* g = gu + (size_t)i * 2 * d_ff;
      float* y = out + (size_t)i * d_ff;
#pragma omp simd
      for (int j = 0; j < d_ff; ++j) y[j] = kernels::silu_mul(g[j], g[d_ff + j]);
    }
  }

  void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out) override {
    for (int i = 0; i < n; ++i)
      std::memcpy(out + (size_t)i * d, table + (size_t)ids[i] * d, sizeof(float) * d);
  }

  void partial_attention(const PartialAttnArgs& a) override {
    const int group = a.n_head / a.n_head_kv;  // query heads per kv head (GQA)
    const int kv_stride = a.n_head_kv * a.d_head;
    const float scale = 1.0f / std::sqrt((float)a.d_head);
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int i = 0; i < a.nq; ++i) {
      for (int h = 0; h < a.n_head; ++h) {
        const long qh = (long)i * a.n_head + h;
        const int g = h / group;
        kernels::partial_attention_row(a.q + qh * a.d_head, a.k + g * a.d_head,
                                       a.v + g * a.d_head, a.k_pos, a.nk, kv_stride, a.d_head,
                                       a.q_pos[i], a.causal, scale, a.m + qh, a.e + qh,
                                       a.u + qh * a.d_head);
      }
    }
  }

  void merge_partials(const float* m, const float* e, const float* u, int nb, int nq,
                      int n_head, int d_head, float* o) override {
    const long rows = (long)nq * n_head;
#pragma omp parallel for if (rows > 64)
    for (long r = 0; r < rows; ++r)
      kernels::merge_partials_row(m + r, e + r, u + r * d_head, nb, rows, rows * d_head, d_head,
                                  o + r * d_head);
  }

 private:
  std::unique_ptr<PackedGemm> gemm_;           // after prepare_weights
  std::shared_ptr<const GemmWeights> weights_;  // the prepared model's packed matrices
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

void set_cpu_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace cascade
