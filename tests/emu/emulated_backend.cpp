#include "emulated_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <stdexcept>

#include "kernels/cuda/launch.h"

namespace cascade_test {
namespace {

using cascade::Backend;
namespace dev = cascade::cuda_emu;

// "Device memory" the host cannot touch: every allocation is its own mapping, PROT_NONE except
// while one of the backend's own calls runs. Host code that dereferences a device pointer (a
// layer that forgot its data lives on the device) crashes the test instead of passing.
class DeviceMemory {
 public:
  void* alloc(size_t bytes) {
    const size_t len = (bytes + page_ - 1) / page_ * page_ + page_;
    void* p = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cuda-emu: out of memory");
    maps_[p] = len;
    return p;
  }
  void free(void* p) {
    const auto it = maps_.find(p);
    if (it == maps_.end()) return;
    munmap(p, it->second);
    maps_.erase(it);
  }
  // Throws unless every non-null pointer lies in one of the allocations: a kernel handed a host
  // pointer would fault on the device (cudaErrorIllegalAddress).
  void need(const char* op, std::initializer_list<const void*> ptrs) const {
    for (const void* p : ptrs) {
      if (!p) continue;
      auto it = maps_.upper_bound(const_cast<void*>(p));
      const bool inside = it != maps_.begin() &&
                          (--it, (const char*)p < (const char*)it->first + it->second);
      if (!inside) throw std::logic_error(std::string("cuda-emu: ") + op + " was given a host pointer");
    }
  }
  // Open while in scope: the backend's own code may touch every allocation.
  class Open {
   public:
    explicit Open(DeviceMemory& m) : m_(m) { m_.protect(PROT_READ | PROT_WRITE); }
    ~Open() { m_.protect(PROT_NONE); }

   private:
    DeviceMemory& m_;
  };

 private:
  void protect(int prot) {
    for (const auto& [p, len] : maps_) mprotect(p, len, prot);
  }
  size_t page_ = (size_t)sysconf(_SC_PAGESIZE);
  std::map<void*, size_t> maps_;
};

class EmulatedCudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda-emu"; }
  bool host_memory() const override { return false; }
  void* alloc(size_t bytes) override { return mem_.alloc(bytes); }
  void free(void* p) override { mem_.free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    DeviceMemory::Open open(mem_);
    mem_.need("to_device", {dst});
    std::memcpy(dst, src, bytes);
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    DeviceMemory::Open open(mem_);
    mem_.need("to_host", {src});
    std::memcpy(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    DeviceMemory::Open open(mem_);
    mem_.need("copy", {dst, src});
    std::memcpy(dst, src, bytes);
  }
  void copy_rows(float* dst, size_t dst_stride, const float* src, size_t src_stride, int rows,
                 int cols) override {
    DeviceMemory::Open open(mem_);
    mem_.need("copy_rows", {dst, src});
    for (int i = 0; i < rows; ++i)
      std::memcpy(dst + i * dst_stride, src + i * src_stride, sizeof(float) * cols);
  }
  void add(float* y, const float* x, size_t n) override {
    DeviceMemory::Open open(mem_);
    mem_.need("add", {y, x});
    dev::add(y, x, n, nullptr);
  }

  void matmul_wt(const float* x, const float* w, float* y, int n, int in, int out,
                 bool accumulate) override {
    DeviceMemory::Open open(mem_);
    mem_.need("matmul_wt", {x, w, y});
    cpu_->matmul_wt(x, w, y, n, in, out, accumulate);
  }
  void rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps) override {
    DeviceMemory::Open open(mem_);
    mem_.need("rmsnorm", {x, w, y});
    dev::rmsnorm(x, w, y, n, d, eps, nullptr);
  }
  void layernorm(const float* x, const float* w, const float* b, float* y, int n, int d,
                 float eps) override {
    DeviceMemory::Open open(mem_);
    mem_.need("layernorm", {x, w, b, y});
    dev::layernorm(x, w, b, y, n, d, eps, nullptr);
  }
  void add_bias(float* y, const float* b, int n, int d) override {
    DeviceMemory::Open open(mem_);
    mem_.need("add_bias", {y, b});
    dev::add_bias(y, b, n, d, nullptr);
  }
  void gelu(float* x, size_t n, bool tanh_approx) override {
    DeviceMemory::Open open(mem_);
    mem_.need("gelu", {x});
    dev::gelu(x, n, tanh_approx, nullptr);
  }
  void rope(float* x, const int32_t* pos, int n, int n_heads, int d_head, float theta) override {
    DeviceMemory::Open open(mem_);
    mem_.need("rope", {x, pos});
    dev::rope(x, pos, n, n_heads, d_head, theta, nullptr);
  }
  void swiglu(const float* gu, float* out, int n, int d_ff) override {
    DeviceMemory::Open open(mem_);
    mem_.need("swiglu", {gu, out});
    dev::swiglu(gu, out, n, d_ff, nullptr);
  }
  void gather_rows(const float* table, const int32_t* ids, int n, int d, float* out) override {
    DeviceMemory::Open open(mem_);
    mem_.need("gather_rows", {table, ids, out});
    dev::gather_rows(table, ids, n, d, out, nullptr);
  }
  void partial_attention(const cascade::PartialAttnArgs& a) override {
    DeviceMemory::Open open(mem_);
    mem_.need("partial_attention", {a.q, a.q_pos, a.k, a.v, a.k_pos, a.m, a.e, a.u});
    dev::partial_attention(a.q, a.q_pos, a.nq, a.k, a.v, a.k_pos, a.nk, a.n_head, a.n_head_kv,
                           a.d_head, a.causal, a.m, a.e, a.u, nullptr);
  }
  void merge_partials(const float* m, const float* e, const float* u, int nb, int nq,
                      int n_head, int d_head, float* o) override {
    DeviceMemory::Open open(mem_);
    mem_.need("merge_partials", {m, e, u, o});
    dev::merge_partials(m, e, u, nb, nq, n_head, d_head, o, nullptr);
  }

 private:
  DeviceMemory mem_;
  std::unique_ptr<Backend> cpu_ = cascade::make_cpu_backend();
};

}  // namespace

std::unique_ptr<cascade::Backend> make_emulated_cuda_backend() {
  return std::make_unique<EmulatedCudaBackend>();
}

void set_emulator_descending(bool descending) {
  cascade::emu::set_order(descending ? cascade::emu::Order::descending : cascade::emu::Order::ascending);
}
long emulator_launches() { return cascade::emu::launch_count(); }

}  // namespace cascade_test
