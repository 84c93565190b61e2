// CUDA backend: cuBLAS for GEMM (fp32 in, fp32 accumulate; or, once prepare_weights(bf16), bf16
// weights and inputs with fp32 accumulation through cublasGemmEx), kernels/cuda launchers for
// the rest.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "cascade/backend.h"
#include "cascade/model.h"
#include "kernels/cuda/launch.h"

#define cudaCheck(call)                                                                   \
  do {                                                                                    \
    cudaError_t err_ = (call);                                                            \
    if (err_ != cudaSuccess)                                                              \
      throw std::runtime_error(std::string("CUDA error at ") + __FILE__ + ":" +           \
                               std::to_string(__LINE__) + ": " + cudaGetErrorString(err_)); \
  } while (0)
#define cublasCheck(call)                                                                 \
  do {                                                                                    \
    cublasStatus_t st_ = (call);                                                          \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      throw std::runtime_error(std::string("cuBLAS error at ") + __FILE__ + ":" +         \
                               std::to_string(__LINE__) + ": status " + std::to_string(st_)); \
  } while (0)

namespace cascade {
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    cudaCheck(cudaSetDevice(device));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    major_ = prop.major;
    cudaCheck(cudaStreamCreate(&stream_));
    cublasCheck(cublasCreate(&blas_));
    cublasCheck(cublasSetStream(blas_, stream_));
    // Exact fp32 GEMM (no TF32): results must match the CPU backend to fp32 reordering.
    cublasCheck(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  ~CudaBackend() override {
    for (auto& [w, b] : bf16_) cudaFree(b);
    cudaFree(x_bf16_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda:" + std::to_string(device_); }
  bool host_memory() const override { return false; }

  void* alloc(size_t bytes) override {
    void* p = nullptr;
    cudaCheck(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
  }
  void free(void* p) override { cudaFree(p); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    cudaCheck(cudaStreamSynchronize(stream_));
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    cudaCheck(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { cudaCheck(cudaStreamSynchronize(stream_)); }
  void* native_stream() override { return stream_; }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void copy_rows(float* dst, size_t dst_stride, const float* src, size_t src_stride, int rows,
                 int cols) override {
    if (rows == 0 || cols == 0) return;
    cudaCheck(cudaMemcpy2DAsync(dst, dst_stride * sizeof(float), src, src_stride * sizeof(float),
                                cols * sizeof(float), rows, cudaMemcpyDeviceToDevice, stream_));
  }
  void add(float* y, const float* x, size_t n) override {
    cuda::add(y, x, n, stream_);
    cudaCheck(cudaGetLastError());
  }

  // bf16: every weight matrix of `model` (its pointers are device memory: device_model.h)
  // rounded to bf16 once, on the device, as the CPU backend packs them (gemm_weights.h): per
  // layer Q|K|V, output, gate|up (or up) and down, and a decoder's LM head. The fp32 copies stay
  // (the embedding reads the token rows).
  bool supports(Precision precision) const override {
    return precision == Precision::f32 || major_ >= 8;  // bf16 GEMMs: Ampere and later
  }

  void prepare_weights(const Model& model, Precision precision, const WeightLoadOptions&) override {
    for (auto& [w, b] : bf16_) cudaFree(b);
    bf16_.clear();
    if (precision == Precision::f32) return;
    if (!supports(precision))
      throw std::runtime_error("the " + name() + " backend has no bf16 GEMMs: its GPU is of compute capability " +
                               std::to_string(major_) + ".x, bf16 needs 8.0 or more (use --precision f32)");
    const ModelConfig& c = model.cfg;
    const size_t d = c.d_model, d_qkv = c.d_q() + 2 * c.d_kv();
    auto convert = [&](const float* w, size_t n) {
      if (!w || bf16_.count(w)) return;
      uint16_t* b = nullptr;
      cudaCheck(cudaMalloc(&b, n * sizeof(uint16_t)));
      bf16_[w] = b;
      cuda::to_bf16(w, b, n, stream_);
      cudaCheck(cudaGetLastError());
    };
    for (const LayerWeights& l : model.layers) {
      convert(l.wqkv, d_qkv * d);
      convert(l.wo, d * c.d_q());
      convert(l.w_gate_up, 2 * (size_t)c.d_ff * d);
      convert(l.w_up, (size_t)c.d_ff * d);
      convert(l.w_down, d * c.d_ff);
    }
    if (!c.encoder()) convert(model.lm_head(), (size_t)c.n_vocab * d);
    cudaCheck(cudaStreamSynchronize(stream_));
  }

  void matmul_wt(const float* x, const float* w, float* y, int n, int in, int out,
                 bool accumulate) override {
    if (n == 0) return;
    const auto b = bf16_.find(w);
    if (b != bf16_.end()) {  // bf16 weights and inputs, fp32 accumulation and output
      const size_t count = (size_t)n * in;
      if (count > x_bf16_cap_) {
        cudaFree(x_bf16_);
        cudaCheck(cudaMalloc(&x_bf16_, count * sizeof(uint16_t)));
        x_bf16_cap_ = count;
      }
      cuda::to_bf16(x, x_bf16_, count, stream_);
      cudaCheck(cudaGetLastError());
      const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
      cublasCheck(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, b->second, CUDA_R_16BF, in,
                               x_bf16_, CUDA_R_16BF, in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
      return;
    }
    // Row-major y(n,out) = x(n,in)·w(out,in)ᵀ is column-major yᵀ(out,n) = w·xᵀ:
    // A = w seen column-major as (in,out) → op T; B = x seen as (in,n) → op N.
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasCheck(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, in, x, in,
                            &beta, y, out));
  }
  void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps) override {
    cuda::rmsnorm(x, w, y, n, d, eps, stream_);
    cudaCheck(cudaGetLastError());
  }
  void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d,
                 float eps) override {
    cuda::layernorm(x, w, b, y, n, d, eps, stream_);
    cudaCheck(cudaGetLastError());
  }
  void add_bias(float* y, const float* b, int n, int d) override {
    cuda::add_bias(y, b, n, d, stream_);
    cudaCheck(cudaGetLastError());
  }
  void gelu(float* x, size_t n, bool tanh_approx) override {
    cuda::gelu(x, n, tanh_approx, stream_);
    cudaCheck(cudaGetLastError());
  }
  void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta) override {
    cuda::rope(x, pos, n, n_heads, d_head, theta, stream_);
    cudaCheck(cudaGetLastError());
  }
  void swiglu(const float* gu, float* out, int n, int d_ff) override {
    cuda::swiglu(gu, out, n, d_ff, stream_);
    cudaCheck(cudaGetLastError());
  }
  void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out) override {
    cuda::gather_rows(table, ids, n, d, out, stream_);
    cudaCheck(cudaGetLastError());
  }
  void partial_attention(const PartialAttnArgs& a) override {
    cuda::partial_attention(a.q, a.q_pos, a.nq, a.k, a.v, a.k_pos, a.nk, a.n_head, a.n_head_kv,
                            a.d_head, a.causal, a.m, a.e, a.u, stream_);
    cudaCheck(cudaGetLastError());
  }
  void merge_partials(const float* m, const float* e, const float* u, int nb, int nq,
                      int n_head, int d_head, float* o) override {
    cuda::merge_partials(m, e, u, nb, nq, n_head, d_head, o, stream_);
    cudaCheck(cudaGetLastError());
  }

 private:
  int device_;
  int major_ = 0;  // compute capability
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::unordered_map<const float*, uint16_t*> bf16_;  // fp32 weight matrix → its bf16 copy
  uint16_t* x_bf16_ = nullptr;                        // the GEMM input rounded to bf16
  size_t x_bf16_cap_ = 0;
};

}  // namespace

}  // namespace cascade

// The plugin's entry points (backend.cpp loads them with dlsym).
extern "C" int cascade_cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

// Throws std::runtime_error (CUDA or cuBLAS failing to start); the caller owns the result.
extern "C" cascade::Backend* cascade_cuda_backend_create(int device) {
  return new cascade::CudaBackend(device);
}
