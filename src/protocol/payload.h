// A message payload in the backend's memory. When the transport moves host buffers to and from
// the peer (MPI) and the backend's memory is a device's, the payload is staged through a host
// copy: one download before the send, one upload after the receive; that is all that crosses
// PCIe. With a host-memory backend (CPU), or a device link to the peer (NCCL, device_link.h),
// the transport reads and writes the backend's buffer itself.
#pragma once

#include <vector>

#include "cascade/backend.h"
#include "cascade/device_buffer.h"
#include "cascade/transport.h"

namespace cascade {

class Payload {
 public:
  // n floats for a message to or from `peer`; the contents are undefined afterwards.
  void resize(Backend& be, const Transport& t, int peer, size_t n) {
    be_ = &be;
    staged_ = !be.host_memory() && !t.device_payloads(peer);
    dev_.resize(be, n);
    if (staged_) host_.resize(n);
  }
  float* data() { return dev_.data(); }  // in the backend's memory
  size_t size() const { return dev_.size(); }
  size_t bytes() const { return 4 * dev_.size(); }

  // What to give isend: the data as it is now (staged: downloaded to the host copy).
  const void* for_send() {
    if (!staged_) return dev_.data();
    if (!host_.empty()) be_->to_host(host_.data(), dev_.data(), bytes());  // waits for the stream
    return host_.data();
  }
  // What to give irecv; once the handle completes, call received().
  void* for_recv() { return staged_ ? (void*)host_.data() : (void*)dev_.data(); }
  void received() {
    if (staged_ && !host_.empty()) be_->to_device(dev_.data(), host_.data(), bytes());
  }

 private:
  Backend* be_ = nullptr;
  bool staged_ = false;
  DeviceBuffer<float> dev_;
  std::vector<float> host_;
};

}  // namespace cascade
