// A device link moves message payloads from one rank's device memory straight into another's
// (NCCL over NVLink or the network), without staging them through host memory. It carries
// payloads only: the transport (mpi_transport.h) still sends every message's header over MPI,
// so byte accounting, the views audit and the "unexpected content" checks are the same as
// without it, and the client (rank 0, on the CPU) is never on the link.
//
// Ordering: the link is given the ops of one wait_all as one group (NCCL: ncclGroupStart/End,
// so a CompNode's sends of the up messages and receives of the partials progress together),
// issued after the compute already issued on the backend's stream (an event, no host sync),
// and the compute issued afterwards waits for the received bytes the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cascade {

class DeviceLink {
 public:
  struct Op {
    bool send = false;
    int peer = -1;          // a world rank the link covers
    void* buf = nullptr;    // device memory; a send's must stay unchanged until issue() returns
    uint64_t bytes = 0;
  };

  virtual ~DeviceLink() = default;
  virtual std::string name() const = 0;  // "nccl": the transport's name in traces
  virtual bool covers(int rank) const = 0;

  // Issues `ops` as one group; returns its ticket. The sends' bytes are read as the compute
  // issued so far leaves them (the link copies them before issue returns, in stream order).
  virtual int64_t issue(const std::vector<Op>& ops) = 0;
  // Whether compute issued from now on sees the group's received bytes: at once for NCCL (stream
  // order), when they have landed for a host-staged link. Throws on a link error.
  virtual bool ready(int64_t ticket) = 0;
  // The peer of the oldest group still unfinished after `seconds` (a dead or stuck peer),
  // or −1. Checked while waiting: a link that never completes becomes a named timeout.
  virtual int overdue(double seconds) = 0;
  // Device bytes to the host (only for recording views in a trace; a synchronisation).
  virtual void to_host(void* dst, const void* src, uint64_t bytes) = 0;
};

}  // namespace cascade
