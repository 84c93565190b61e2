// Point-to-point messages between parties, with byte accounting per (src, dst, layer, kind),
// an audit hook that sees every message sent and received (tests use it to check each
// party's view), and a timeout so that a dead or stuck peer ends the run with a message
// naming the peer and the layer instead of a hang. MPI is the implementation for host
// buffers; an NCCL one for device buffers can sit behind the same interface.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/comm_model.h"

namespace cascade {

// A message may carry several kinds of rows back to back (the up message of a
// (CompNode, AttnNode) pair carries q rows then k/v rows); each part is accounted separately.
struct MessagePart {
  CommKind kind = CommKind::q;
  uint64_t bytes = 0;
};

struct Message {
  int src = -1;
  int dst = -1;
  int layer = -1;                  // -1 for client traffic outside the layers
  std::vector<MessagePart> parts;
  std::vector<int> positions;      // positions of the rows carried, as declared by the party
                                   // that built or expects the message (audit only; not sent)
  uint64_t bytes() const;
  CommKind kind() const { return parts.empty() ? CommKind::control : parts.front().kind; }
};

// Called for every message: outgoing = true on the sender when it is posted, false on the
// receiver when it has arrived (with its real size checked).
using AuditHook = std::function<void(const Message& msg, bool outgoing)>;

class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes and messages per (src, dst, layer, kind).
struct ByteKey {
  int src, dst, layer;
  CommKind kind;
  bool operator<(const ByteKey& o) const {
    return std::tie(src, dst, layer, kind) < std::tie(o.src, o.dst, o.layer, o.kind);
  }
};
using ByteCounts = std::map<ByteKey, uint64_t>;

class Transport {
 public:
  using Handle = int;

  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Non-blocking. The buffer must stay untouched until the handle is waited for. The message
  // size is msg.bytes(); msg.src is this rank.
  virtual Handle isend(const Message& msg, const void* buf) = 0;
  // Non-blocking receive of exactly msg.bytes() bytes from msg.src (a different size is an
  // error when it arrives).
  virtual Handle irecv(const Message& msg, void* buf) = 0;
  // Waits for all handles (then forgets them), up to the timeout.
  virtual void wait_all(std::vector<Handle>& handles) = 0;
  // Blocking receive of a message whose size the receiver does not know (the schedule).
  virtual std::vector<uint8_t> recv_any_size(int src, int layer, CommKind kind) = 0;

  // Out of band (not accounted, not audited): a barrier, and the end-of-run report that every
  // rank sends to rank 0 (returns every rank's bytes on rank 0, nothing elsewhere).
  virtual void barrier() = 0;
  virtual std::vector<std::vector<uint8_t>> gather_to_root(const std::vector<uint8_t>& mine) = 0;

  void send(const Message& msg, const void* buf);
  void recv(const Message& msg, void* buf);

  // Names a rank in error messages ("AttnNode (1,2)"); default "rank N".
  void set_peer_namer(std::function<std::string(int)> f) { namer_ = std::move(f); }
  void set_audit_hook(AuditHook hook) { audit_ = std::move(hook); }
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }

  const ByteCounts& sent() const { return sent_; }
  const ByteCounts& received() const { return received_; }
  uint64_t messages_sent() const { return messages_sent_; }
  double wait_seconds() const { return wait_s_; }  // time spent blocked in wait/recv
  std::string peer_name(int rank) const;  // "rank 5 (AttnNode (0,0))"

 protected:
  void account_send(const Message& msg);
  void account_recv(const Message& msg);

  std::function<std::string(int)> namer_;
  AuditHook audit_;
  double timeout_s_ = 300.0;
  ByteCounts sent_, received_;
  uint64_t messages_sent_ = 0;
  double wait_s_ = 0.0;
};

// MPI transport over MPI_COMM_WORLD (host buffers). MPI must be initialised. (mpi_transport.h
// takes any communicator.)
std::unique_ptr<Transport> make_mpi_transport();

// Flattens counts to (src, dst, layer, kind, bytes) flows, sorted; for comparing with the
// communication model (comm_model.h).
std::vector<CommFlow> to_flows(const ByteCounts& counts);

}  // namespace cascade
