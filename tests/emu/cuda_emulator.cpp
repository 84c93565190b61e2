// The CUDA emulator's scheduler: one block at a time, its threads as ucontext fibers.
#include "cuda_emulator.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace cascade::emu {
namespace {

constexpr size_t kStackBytes = 256 << 10;  // per fiber; mapped lazily, so mostly virtual
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmem = 48 << 10, kMaxSmem = 227 << 10;

enum class State { ready, at_barrier, at_warp, done };

struct Fiber {
  ucontext_t ctx;
  dim3 tid;
  int linear = 0;
  State state = State::ready;
  unsigned warp_mask = 0;  // the mask of the warp intrinsic it waits in
};

struct Block {
  const char* kernel = "";
  dim3 bid, bdim, gdim;
  std::vector<Fiber> fibers;
  std::vector<unsigned char> smem;
  std::vector<uint64_t> slots;  // (warps, 32) payloads of warp intrinsics
  ucontext_t scheduler;
  std::string error;  // misuse seen inside a fiber; the scheduler throws it
  const std::function<void()>* body = nullptr;
};

Order g_order = Order::ascending;
long g_launches = 0;
std::map<const void*, int> g_smem_limit;
thread_local Block* g_block = nullptr;
thread_local Fiber* g_fiber = nullptr;

// Fiber stacks, mapped once and reused by every launch.
std::vector<char*>& stacks(size_t n) {
  static thread_local std::vector<char*> pool;
  while (pool.size() < n) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("CUDA emulator: cannot map a fiber stack");
    pool.push_back(static_cast<char*>(p));
  }
  return pool;
}

std::string where(const Block& b, const Fiber& f) {
  return std::string(b.kernel) + " block (" + std::to_string(b.bid.x) + "," +
         std::to_string(b.bid.y) + "," + std::to_string(b.bid.z) + ") thread " +
         std::to_string(f.linear);
}

Fiber& current() {
  if (!g_fiber) throw std::logic_error("CUDA emulator: a device intrinsic called outside a kernel");
  return *g_fiber;
}

// Parks the calling fiber in `s` and returns to the scheduler; returns when released.
void park(State s) {
  Fiber& f = current();
  f.state = s;
  swapcontext(&f.ctx, &g_block->scheduler);
}

// Misuse inside a fiber: record it and never come back (the scheduler abandons the block).
[[noreturn]] void fail(const std::string& what) {
  Fiber& f = current();
  if (g_block->error.empty()) g_block->error = where(*g_block, f) + ": " + what;
  f.state = State::done;
  swapcontext(&f.ctx, &g_block->scheduler);
  __builtin_unreachable();
}

void fiber_entry() {
  (*g_block->body)();
  g_fiber->state = State::done;  // returning resumes the scheduler (uc_link)
}

// Releases the warp intrinsics of warp [w0, w0 + 32) whose lanes have all arrived (every lane of
// the mask waiting with that very mask); false when none could be.
bool release_warp(Block& b, int w0) {
  const int n = (int)b.fibers.size();
  bool any = false;
  for (int l = 0; l < 32 && w0 + l < n; ++l) {
    Fiber& f = b.fibers[w0 + l];
    if (f.state != State::at_warp) continue;
    const unsigned mask = f.warp_mask;
    bool all = true;
    for (int m = 0; m < 32; ++m) {
      if (!(mask >> m & 1u)) continue;
      if (w0 + m >= n) {
        b.error = where(b, f) + ": warp intrinsic mask names lane " + std::to_string(m) + ", which the block does not have";
        return false;
      }
      const Fiber& g = b.fibers[w0 + m];
      if (g.state == State::done) {
        b.error = where(b, f) + ": warp intrinsic mask names lane " + std::to_string(m) + ", which has exited";
        return false;
      }
      if (g.state != State::at_warp || g.warp_mask != mask) all = false;
    }
    if (!all) continue;
    for (int m = 0; m < 32; ++m)
      if (mask >> m & 1u) b.fibers[w0 + m].state = State::ready;
    any = true;
  }
  return any;
}

// Releases __syncthreads when every thread waits there; false when it cannot (yet).
bool release_barrier(Block& b) {
  const int n = (int)b.fibers.size();
  int at_barrier = 0, done = 0;
  for (const Fiber& f : b.fibers) {
    at_barrier += f.state == State::at_barrier;
    done += f.state == State::done;
  }
  if (at_barrier == 0 || at_barrier + done < n) return false;
  if (done > 0) {
    b.error = std::string(b.kernel) + " block (" + std::to_string(b.bid.x) + "," + std::to_string(b.bid.y) + "," +
              std::to_string(b.bid.z) + "): __syncthreads reached by " + std::to_string(at_barrier) +
              " threads while " + std::to_string(done) + " have exited (a barrier in divergent code)";
    return false;
  }
  for (Fiber& f : b.fibers) f.state = State::ready;
  return true;
}

void check(const Block& b) {
  if (!b.error.empty()) throw std::runtime_error("CUDA emulator: " + b.error);
}

void run_block(Block& b) {
  const int n = (int)(b.bdim.x * b.bdim.y * b.bdim.z);
  b.fibers.assign(n, Fiber{});
  b.slots.assign((size_t)(n + 31) / 32 * 32, 0);
  std::fill(b.smem.begin(), b.smem.end(), 0xFF);  // poison: NaN as float, −1 as int
  std::vector<char*>& pool = stacks(n);
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.tid = dim3(i % b.bdim.x, i / b.bdim.x % b.bdim.y, i / (b.bdim.x * b.bdim.y));
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = pool[i];
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  // One warp at a time, as far as it gets (through its warp intrinsics) before the next warp
  // runs: warps drift apart as far as the barriers allow, so a missing barrier shows.
  const int warps = (n + 31) / 32;
  for (;;) {
    bool ran = false;
    for (int k = 0; k < warps; ++k) {
      const int w0 = 32 * (g_order == Order::ascending ? k : warps - 1 - k);
      const int lanes = n - w0 < 32 ? n - w0 : 32;
      do {
        for (int l = 0; l < lanes; ++l) {
          Fiber& f = b.fibers[w0 + (g_order == Order::ascending ? l : lanes - 1 - l)];
          if (f.state != State::ready) continue;
          g_fiber = &f;
          swapcontext(&b.scheduler, &f.ctx);
          g_fiber = nullptr;
          ran = true;
          check(b);
        }
      } while (release_warp(b, w0));
      check(b);
    }
    bool all_done = true;
    for (const Fiber& f : b.fibers) all_done = all_done && f.state == State::done;
    if (all_done) return;
    const bool released = release_barrier(b);
    check(b);
    if (!released && !ran)
      throw std::runtime_error(std::string("CUDA emulator: ") + b.kernel +
                               ": deadlock (threads wait at __syncthreads and at warp intrinsics that can never all meet)");
  }
}

}  // namespace

void set_order(Order o) { g_order = o; }
long launch_count() { return g_launches; }

const dim3& thread_idx() { return current().tid; }
const dim3& block_idx() { return g_block->bid; }
const dim3& block_dim() { return g_block->bdim; }
const dim3& grid_dim() { return g_block->gdim; }
int lane_id() { return current().linear % 32; }
unsigned char* dynamic_smem() { return g_block->smem.data(); }

void syncthreads() { park(State::at_barrier); }

uint64_t warp_exchange(unsigned mask, uint64_t payload, int src) {
  Fiber& f = current();
  const int lane = f.linear % 32, w0 = f.linear - lane;
  if (!(mask >> lane & 1u)) fail("calls a warp intrinsic with a mask that leaves out its own lane");
  if (src < 0 || src >= 32 || !(mask >> src & 1u))
    fail("reads lane " + std::to_string(src) + ", outside the intrinsic's mask");
  g_block->slots[f.linear] = payload;
  f.warp_mask = mask;
  park(State::at_warp);  // every lane of the mask has deposited
  const uint64_t v = g_block->slots[w0 + src];
  park(State::at_warp);  // every lane has read before any deposits again
  return v;
}

unsigned warp_ballot(unsigned mask, bool pred) {
  Fiber& f = current();
  const int lane = f.linear % 32, w0 = f.linear - lane;
  if (!(mask >> lane & 1u)) fail("calls __ballot_sync with a mask that leaves out its own lane");
  g_block->slots[f.linear] = pred;
  f.warp_mask = mask;
  park(State::at_warp);
  unsigned r = 0;
  for (int m = 0; m < 32; ++m)
    if ((mask >> m & 1u) && g_block->slots[w0 + m]) r |= 1u << m;
  park(State::at_warp);
  return r;
}

void set_max_dynamic_smem(const void* kernel, int bytes) {
  if (bytes < 0 || (size_t)bytes > kMaxSmem)
    throw std::runtime_error("CUDA emulator: cudaFuncSetAttribute: " + std::to_string(bytes) +
                             " bytes of dynamic shared memory (at most " + std::to_string(kMaxSmem) + ")");
  g_smem_limit[kernel] = bytes;
}

void run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()>& thread_body) {
  const long threads = (long)block.x * block.y * block.z;
  if (threads < 1 || threads > kMaxThreads || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
      grid.y > 65535 || grid.z > 65535)
    throw std::runtime_error(std::string("CUDA emulator: ") + name + ": invalid launch configuration (grid " +
                             std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" + std::to_string(grid.z) +
                             ", block of " + std::to_string(threads) + " threads)");
  const auto lim = g_smem_limit.find(kernel);
  const size_t limit = lim == g_smem_limit.end() ? kDefaultSmem : (size_t)lim->second;
  if (smem > limit)
    throw std::runtime_error(std::string("CUDA emulator: ") + name + ": " + std::to_string(smem) +
                             " bytes of dynamic shared memory, more than the kernel's limit of " +
                             std::to_string(limit) + " (raise it with cudaFuncSetAttribute)");
  if (g_block) throw std::logic_error("CUDA emulator: a launch from inside a kernel");
  ++g_launches;
  Block b;
  b.kernel = name;
  b.gdim = grid;
  b.bdim = block;
  b.smem.resize(smem);
  b.body = &thread_body;
  const long nblocks = (long)grid.x * grid.y * grid.z;
  g_block = &b;
  try {
    for (long k = 0; k < nblocks; ++k) {
      const long i = g_order == Order::ascending ? k : nblocks - 1 - k;
      b.bid = dim3((unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y), (unsigned)(i / ((long)grid.x * grid.y)));
      run_block(b);
    }
  } catch (...) {
    g_block = nullptr;
    throw;
  }
  g_block = nullptr;
}

}  // namespace cascade::emu
