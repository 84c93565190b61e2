// A host emulator of the CUDA execution model, for tests only. kernels/cuda/*.cu compile as host
// C++ against it (kernels/cuda/device.h includes this header when CASCADE_CUDA_EMULATOR is
// defined), so the CPU tests run every line of the device code:
//  - a block's threads are fibers (ucontext) on the calling OS thread; a fiber runs until it
//    reaches __syncthreads, a warp intrinsic or its end. __syncthreads releases when every
//    thread of the block waits there; a warp intrinsic when every lane of its mask waits there;
//  - dynamic shared memory is per block and filled with 0xFF bytes (NaN floats, −1 ints) when
//    the block starts, so a read that a missing barrier lets run early reads poison;
//  - between two barriers the fibers run in one order, ascending or descending thread index
//    (set_order), and the blocks too. A race-free kernel gives bit-identical results in both
//    orders; tests run every kernel in both and compare (a missing __syncthreads shows);
//  - misuse throws std::runtime_error out of the launch: __syncthreads while some threads of
//    the block have exited (divergent barrier), a warp intrinsic whose mask names an exited or
//    absent lane, deadlock, more than 1024 threads, a zero grid, more dynamic shared memory
//    than 48 KiB unless raised with cudaFuncSetAttribute (227 KiB at most, as sm_90).
// Global memory is host memory; there are no streams (a launch runs to completion).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace cascade::emu {

enum class Order { ascending, descending };
void set_order(Order o);  // the order fibers (and blocks) run in; ascending by default
long launch_count();  // kernels launched so far (a test can check its kernels really ran here)

const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void syncthreads();
unsigned char* dynamic_smem();  // this block's dynamic shared memory

// Warp intrinsics: every lane of `mask` deposits a payload and waits for the others, then
// reads lane `src`'s. src outside the mask is an error (CUDA leaves the value undefined).
uint64_t warp_exchange(unsigned mask, uint64_t payload, int src);
unsigned warp_ballot(unsigned mask, bool pred);
int lane_id();

void set_max_dynamic_smem(const void* kernel, int bytes);
void run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()>& thread_body);

template <class... P>
struct Launch {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t smem;
  template <class... A>
  void operator()(A&&... a) const {
    const std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);  // converted as by <<<>>>
    run_grid(reinterpret_cast<const void*>(kernel), name, grid, block, smem,
             [&] { std::apply(kernel, args); });
  }
};

template <class... P>
Launch<P...> launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem,
                      cudaStream_t) {
  return {kernel, name, grid, block, smem};
}

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type over 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

}  // namespace cascade::emu

// ---- what device code sees ----------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
// Static __shared__ arrays would be one copy for every block and escape the poisoning: kernels
// use dynamic shared memory (cascade::cuda::dynamic_smem) only.
#define __shared__ static_assert(false, "use dynamic shared memory: dynamic_smem<T>()");
#define threadIdx (::cascade::emu::thread_idx())
#define blockIdx (::cascade::emu::block_idx())
#define blockDim (::cascade::emu::block_dim())
#define gridDim (::cascade::emu::grid_dim())
constexpr int warpSize = 32;

inline void __syncthreads() { ::cascade::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::cascade::emu::warp_exchange(mask, 0, ::cascade::emu::lane_id()); }

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ::cascade::emu::lane_id();
  const int s = (lane / width) * width + ((src % width) + width) % width;
  return ::cascade::emu::from_bits<T>(::cascade::emu::warp_exchange(mask, ::cascade::emu::to_bits(v), s));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::cascade::emu::lane_id();
  int s = lane ^ lane_mask;
  if (s / width != lane / width) s = lane;  // outside the segment: own value
  return ::cascade::emu::from_bits<T>(::cascade::emu::warp_exchange(mask, ::cascade::emu::to_bits(v), s));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::cascade::emu::lane_id();
  const int s = (lane % width) + (int)delta < width ? lane + (int)delta : lane;
  return ::cascade::emu::from_bits<T>(::cascade::emu::warp_exchange(mask, ::cascade::emu::to_bits(v), s));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::cascade::emu::lane_id();
  const int s = (lane % width) >= (int)delta ? lane - (int)delta : lane;
  return ::cascade::emu::from_bits<T>(::cascade::emu::warp_exchange(mask, ::cascade::emu::to_bits(v), s));
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::cascade::emu::warp_ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return (__ballot_sync(mask, pred) & mask) != 0; }
inline int __all_sync(unsigned mask, int pred) { return (__ballot_sync(mask, pred) & mask) == mask; }

template <class F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
    ::cascade::emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
  return cudaSuccess;
}
