// The CUDA emulator itself (tests/emu): thread and block indices, warp intrinsics, shared memory,
// and the misuse it must catch — above all a missing barrier (a seeded race in a test kernel),
// which is what lets the CPU tests vouch for kernels/cuda/*.cu.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/launch.h"

namespace {

using cascade::cuda_emu::dynamic_smem;
using cascade::cuda_emu::kFullMask;
namespace emu = cascade::emu;

// Runs f under both thread orders; restores the default.
template <class F>
void both_orders(F f) {
  for (emu::Order o : {emu::Order::ascending, emu::Order::descending}) {
    emu::set_order(o);
    f(o);
  }
  emu::set_order(emu::Order::ascending);
}

std::string thrown_by(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// ---- indices --------------------------------------------------------------------------------

__global__ void global_ids(int* out) {
  const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int per_block = blockDim.x * blockDim.y * blockDim.z;
  out[block * per_block + thread] += 1 + block * 1000 + thread;
}

TEST(CudaEmulator, EveryThreadOfEveryBlockRunsOnceWithItsIndices) {
  both_orders([](emu::Order) {
    const dim3 grid(3, 2, 2), block(4, 3, 5);
    std::vector<int> out(12 * 60, 0);
    const long before = emu::launch_count();
    CASCADE_LAUNCH(global_ids, grid, block, 0, nullptr)(out.data());
    EXPECT_EQ(emu::launch_count(), before + 1);
    for (int b = 0; b < 12; ++b)
      for (int t = 0; t < 60; ++t) ASSERT_EQ(out[b * 60 + t], 1 + b * 1000 + t) << b << "," << t;
  });
}

// ---- warp intrinsics ------------------------------------------------------------------------

__global__ void shuffles(int* out) {
  const int lane = threadIdx.x % 32, t = threadIdx.x;
  const int v = 100 * (int)(threadIdx.x / 32) + lane;
  out[6 * t + 0] = __shfl_xor_sync(kFullMask, v, 5);
  out[6 * t + 1] = __shfl_down_sync(kFullMask, v, 3, 16);  // within 16-lane segments
  out[6 * t + 2] = __shfl_up_sync(kFullMask, v, 2);
  out[6 * t + 3] = __shfl_sync(kFullMask, v, 7, 8);  // lane 7 of each 8-lane segment
  out[6 * t + 4] = (int)__ballot_sync(kFullMask, lane % 3 == 0);
  out[6 * t + 5] = __any_sync(kFullMask, lane == 31) + 2 * __all_sync(kFullMask, lane < 31);
}

TEST(CudaEmulator, WarpShufflesAndVotesFollowCudaSemantics) {
  both_orders([](emu::Order) {
    std::vector<int> out(64 * 6, -1);
    CASCADE_LAUNCH(shuffles, 1, 64, 0, nullptr)(out.data());
    unsigned every_third = 0;
    for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
    for (int t = 0; t < 64; ++t) {
      const int lane = t % 32, base = 100 * (t / 32);
      EXPECT_EQ(out[6 * t + 0], base + (lane ^ 5)) << t;
      EXPECT_EQ(out[6 * t + 1], base + (lane % 16 + 3 < 16 ? lane + 3 : lane)) << t;
      EXPECT_EQ(out[6 * t + 2], base + (lane >= 2 ? lane - 2 : lane)) << t;
      EXPECT_EQ(out[6 * t + 3], base + lane / 8 * 8 + 7) << t;
      EXPECT_EQ((unsigned)out[6 * t + 4], every_third) << t;
      EXPECT_EQ(out[6 * t + 5], 1) << t;  // any: yes; all: no
    }
  });
}

// ---- the seeded race --------------------------------------------------------------------------

// Sum of x(n) by one block: each thread adds a strided slice into shared memory, then a tree
// reduction over the slots. `barrier` false leaves out the __syncthreads between the steps:
// the classic bug, where a thread reads a slot its partner has not written yet.
__global__ void block_tree_sum(const float* x, int n, float* out, bool barrier) {
  float* slot = dynamic_smem<float>();
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  slot[threadIdx.x] = s;
  if (barrier) __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) slot[threadIdx.x] += slot[threadIdx.x + half];
    if (barrier) __syncthreads();
  }
  if (threadIdx.x == 0) *out = slot[0];
}

// The check the backend tests make (test_backend_ops.cpp): both thread orders, bit-identical
// results, and the right answer.
bool race_free(bool barrier) {
  std::vector<float> x(1000);
  double want = 0.0;
  for (size_t i = 0; i < x.size(); ++i) want += x[i] = (float)(i % 7) - 3.0f;
  std::vector<float> got;
  both_orders([&](emu::Order) {
    float out = 0.0f;
    CASCADE_LAUNCH(block_tree_sum, 1, 128, 128 * sizeof(float), nullptr)(x.data(), (int)x.size(), &out, barrier);
    got.push_back(out);
  });
  return got[0] == got[1] && got[0] == (float)want;
}

TEST(CudaEmulator, CatchesASeededMissingBarrier) {
  EXPECT_TRUE(race_free(true));
  EXPECT_FALSE(race_free(false)) << "the emulator let a reduction without barriers pass";
}

// Each thread reads the slot of the thread before it. Without the barrier, running the threads
// in ascending order hides the race (the lower thread has always written already); only the
// descending order shows it: the reason every check runs both.
__global__ void read_lower_neighbour(float* out, bool barrier) {
  float* slot = dynamic_smem<float>();
  slot[threadIdx.x] = (float)threadIdx.x;
  if (barrier) __syncthreads();
  out[threadIdx.x] = threadIdx.x > 0 ? slot[threadIdx.x - 1] : -1.0f;
}

bool neighbour_read_race_free(bool barrier) {
  std::vector<std::vector<float>> got;
  both_orders([&](emu::Order) {
    std::vector<float> out(64, 0.0f);
    CASCADE_LAUNCH(read_lower_neighbour, 1, 64, 64 * sizeof(float), nullptr)(out.data(), barrier);
    got.push_back(out);
  });
  for (int t = 0; t < 64; ++t)
    if (!(got[0][t] == got[1][t] && got[0][t] == (float)t - 1.0f)) return false;
  return true;
}

TEST(CudaEmulator, CatchesARaceOnlyTheDescendingOrderShows) {
  EXPECT_TRUE(neighbour_read_race_free(true));
  EXPECT_FALSE(neighbour_read_race_free(false));
}

// Shared memory starts as NaN poison in every block: a read before any write shows.
__global__ void read_shared_unwritten(float* out) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = dynamic_smem<float>()[threadIdx.x];
  dynamic_smem<float>()[threadIdx.x] = 1.0f;  // must not leak into the next block
}

TEST(CudaEmulator, SharedMemoryIsPoisonedPerBlock) {
  std::vector<float> out(2 * 32, 0.0f);
  CASCADE_LAUNCH(read_shared_unwritten, 2, 32, 32 * sizeof(float), nullptr)(out.data());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

// ---- misuse -----------------------------------------------------------------------------------

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x >= 40) return;  // these threads never reach the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void shuffle_with_exited_lane(int* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(kFullMask, (int)threadIdx.x, 1);
}

__global__ void half_warp_at_syncwarp(int*) {
  if (threadIdx.x % 32 < 16)
    __syncwarp();  // waits for lanes 16-31, which wait at __syncthreads
  else
    __syncthreads();
}

TEST(CudaEmulator, RefusesDivergentBarriersExitedLanesAndDeadlocks) {
  std::vector<int> out(64, 0);
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(divergent_barrier, 1, 64, 0, nullptr)(out.data()); })
                .find("divergent"),
            std::string::npos);
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(shuffle_with_exited_lane, 1, 32, 0, nullptr)(out.data()); })
                .find("exited"),
            std::string::npos);
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(half_warp_at_syncwarp, 1, 64, 0, nullptr)(out.data()); })
                .find("deadlock"),
            std::string::npos);
  // The emulator is usable again after a failed launch.
  EXPECT_EQ(thrown_by([&] { CASCADE_LAUNCH(global_ids, 1, 64, 0, nullptr)(out.data()); }), "");
}

__global__ void touch_shared(int* out) {
  dynamic_smem<int>()[threadIdx.x] = 1;
  out[threadIdx.x] = dynamic_smem<int>()[threadIdx.x];
}

TEST(CudaEmulator, RefusesWhatTheDeviceWouldRefuse) {
  std::vector<int> out(1025, 0);
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(touch_shared, 1, 1025, 4 * 1025, nullptr)(out.data()); })
                .find("invalid launch configuration"),
            std::string::npos);
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(touch_shared, 0, 32, 128, nullptr)(out.data()); })
                .find("invalid launch configuration"),
            std::string::npos);
  // Over 48 KiB of dynamic shared memory needs cudaFuncSetAttribute, as on the device.
  const size_t big = 64 << 10;
  EXPECT_NE(thrown_by([&] { CASCADE_LAUNCH(touch_shared, 1, 32, big, nullptr)(out.data()); })
                .find("cudaFuncSetAttribute"),
            std::string::npos);
  cudaFuncSetAttribute(touch_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big);
  EXPECT_EQ(thrown_by([&] { CASCADE_LAUNCH(touch_shared, 1, 32, big, nullptr)(out.data()); }), "");
  EXPECT_EQ(out[31], 1);
}

}  // namespace

// ---- a kernel of kernels/cuda: bf16 conversion ------------------------------------------------

// Hand-worked roundings (ties to even, NaN stays NaN, overflow to infinity), then every element of
// an array that is no multiple of the block: the grid covers it, each element once, each as the
// CPU rounds it (kernels/bf16.h, itself checked against oneDNN in test_packed_gemm.cpp).
TEST(CudaEmulator, ToBf16RoundsEveryElementAsTheCpu) {
  auto bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  const std::vector<float> x = {1.0f, bits(0x3F808000u), bits(0x3F818000u), bits(0x3F808001u), -0.0f,
                                INFINITY, bits(0x7F7FFFFFu), NAN};
  const std::vector<uint16_t> want = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x8000, 0x7F80, 0x7F80};
  std::vector<uint16_t> y(x.size(), 0);
  cascade::cuda_emu::to_bf16(x.data(), y.data(), x.size(), nullptr);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(y[i], want[i]) << i;
  EXPECT_EQ(y[7] & 0x7F80, 0x7F80);
  EXPECT_NE(y[7] & 0x007F, 0) << "NaN must stay NaN";

  std::vector<float> big(1000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::sin(0.37f * i) * std::pow(10.0f, (float)(i % 9) - 4.0f);
  std::vector<uint16_t> out(big.size() + 1, 0xBEEF);  // one past the end must stay untouched
  cascade::cuda_emu::to_bf16(big.data(), out.data(), big.size(), nullptr);
  for (size_t i = 0; i < big.size(); ++i) ASSERT_EQ(out[i], cascade::kernels::f32_to_bf16(big[i])) << i;
  EXPECT_EQ(out.back(), 0xBEEF);
}
