// A typed array in a backend's memory (device memory for CUDA, host memory for the CPU), owned
// RAII-style. It binds to its backend at the first resize, so scratch buffers can be declared
// before the backend is known. It must not outlive its backend (declare it after).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

#include "cascade/backend.h"

namespace cascade {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend& be, size_t n) { resize(be, n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      be_ = o.be_;
      p_ = o.p_;
      n_ = o.n_;
      cap_ = o.cap_;
      o.p_ = nullptr;
      o.n_ = o.cap_ = 0;
    }
    return *this;
  }

  // n elements; the contents are undefined after a resize that grows past the capacity.
  void resize(Backend& be, size_t n) {
    bind(be);
    if (n > cap_) {
      release();
      p_ = static_cast<T*>(be.alloc(n * sizeof(T)));
      cap_ = n;
    }
    n_ = n;
  }
  // n elements keeping the first min(size(), n) (a KV cache growing by a step's rows); the
  // capacity at least doubles, so appending row by row costs amortised O(1) copies.
  void resize_keep(Backend& be, size_t n) {
    bind(be);
    if (n > cap_) {
      const size_t cap = n > 2 * cap_ ? n : 2 * cap_;
      T* q = static_cast<T*>(be.alloc(cap * sizeof(T)));
      if (n_) be.copy(q, p_, n_ * sizeof(T));
      be.free(p_);
      p_ = q;
      cap_ = cap;
    }
    n_ = n;
  }
  void upload(Backend& be, const std::vector<T>& host) {
    resize(be, host.size());
    if (!host.empty()) be.to_device(p_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) {
      be_->synchronize();
      be_->to_host(host.data(), p_, n_ * sizeof(T));
    }
    return host;
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void bind(Backend& be) {
    if (be_ && be_ != &be) throw std::logic_error("a DeviceBuffer used with two backends");
    be_ = &be;
  }
  void release() {
    if (p_) be_->free(p_);
    p_ = nullptr;
    cap_ = n_ = 0;
  }

  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

}  // namespace cascade
