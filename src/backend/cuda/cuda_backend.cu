// CUDA backend: cuBLAS for GEMM (fp32 in, fp32 accumulate), kernels/cuda launchers for the rest.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cascade/backend.h"
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
    cudaCheck(cudaStreamCreate(&stream_));
    cublasCheck(cublasCreate(&blas_));
    cublasCheck(cublasSetStream(blas_, stream_));
    // Exact fp32 GEMM (no TF32): results must match the CPU backend to fp32 reordering.
    cublasCheck(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  ~CudaBackend() override {
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

  void matmul_wt(const float* x, const float* w, float* y, int n, int in, int out,
                 bool accumulate) override {
    if (n == 0) return;
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
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
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
