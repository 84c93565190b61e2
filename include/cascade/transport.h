// Point-to-point messages between parties. Every message is self-describing (message.h): the
// receiver decodes what arrived and compares it with what it expected, and both ends count
// the bytes they really sent or received, per (src, dst, layer, kind), from the encoded
// stream. An audit hook sees every message sent and received (tests use it to check each
// party's view), and a timeout turns a dead or stuck peer into an error naming the peer and
// the layer instead of a hang. MPI is the implementation for host buffers; an NCCL one for
// device buffers can sit behind the same interface.
#pragma once

#include <cstdint>
#include <sys/types.h>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/comm_model.h"
#include "cascade/message.h"

namespace cascade {

class TraceRecorder;
class DeviceLink;

// Called for every message: outgoing = true on the sender when it is posted (as encoded: empty
// parts dropped), false on the receiver when it has arrived (as decoded). May throw: the
// exception leaves isend, wait_all or recv_any.
using AuditHook = std::function<void(const Message& msg, bool outgoing)>;
// Called with every received message as delivered to its caller: the caller's expected parts
// (in the caller's order) and the bytes written to the caller's buffer (recv_any: the payload it
// returns). Tests compare it with the trace's views (what arrived).
using DeliveryHook = std::function<void(const Message& msg, const uint8_t* payload)>;

class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The run was ended elsewhere, and a wait stopped early instead of timing out: another rank
// failed and said why (Transport::notify_abort), or the launcher is ending the job (SIGTERM,
// SIGINT: see end_waits_on_termination).
class RunEnded : public TransportError {
 public:
  using TransportError::TransportError;
};

// From now on SIGTERM and SIGINT end this process's waits with RunEnded instead of ending the
// process: Open MPI's mpirun sends SIGTERM to every rank when one has died, SLURM at a job's
// time limit or scancel. The rank can then say where it was and save what it has (a trace).
// SIGCONT is noted too: Open MPI 4.1's mpirun sends it a second before that SIGTERM (and
// SIGKILL follows the SIGTERM by milliseconds), so the waits then look for dead ranks on this
// node, and name one they find.
void end_waits_on_termination();
// The signal that asked this process to end (SIGTERM, SIGINT), or 0.
int termination_signal();
// Whether SIGCONT came since the last call.
bool take_continued();
// PIDs to look at when SIGCONT, SIGTERM or SIGINT comes (the other ranks of this node): which
// of them were gone at that moment, process_gone(i) says afterwards. Looking at the signal
// itself, not later, keeps ranks that end on the same signal from being taken for dead.
void watch_processes(const std::vector<pid_t>& pids);
bool process_gone(int i);

// Bytes per (src, dst, layer, kind).
struct ByteKey {
  int src, dst, layer;
  CommKind kind;
  bool operator<(const ByteKey& o) const {
    return std::tie(src, dst, layer, kind) < std::tie(o.src, o.dst, o.layer, o.kind);
  }
};
using ByteCounts = std::map<ByteKey, uint64_t>;

// A message whose size the receiver did not know, as it arrived.
struct Received {
  Message msg;
  std::vector<uint8_t> payload;  // the parts' payloads back to back, in arrived part order
};

class Transport {
 public:
  using Handle = int;

  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "mpi", or its device link's ("nccl"): in traces
  // Are payloads to and from `peer` device memory (a device link, device_link.h, covers both
  // ranks)? Otherwise they are host memory, and the roles stage a device backend's payloads
  // through host copies (payload.h): CUDA-aware MPI is never assumed.
  virtual bool device_payloads(int /*peer*/) const { return false; }
  // From now on, payloads between ranks the link covers travel on it (headers stay on this
  // transport). A device payload given to isend must stay unchanged until its handle is waited
  // for (the link issues a wait_all's ops as one group).
  virtual void set_device_link(std::unique_ptr<DeviceLink> link);

  // Non-blocking send of msg to msg.dst (msg.src is set to this rank). `payload` holds the
  // parts' payloads back to back in part order. The transport copies header and payload into
  // its own buffer, so the caller's buffer is free again when isend returns. Parts with 0 bytes
  // and no positions are dropped. The channel (MPI tag) is (layer, kind of the first part
  // given, kv counted as q): the receiver must expect the same first kind.
  virtual Handle isend(const Message& msg, const void* payload) = 0;
  // Non-blocking receive from expected.src; completes in wait_all. The message must carry
  // exactly the expected layer and non-empty parts (kind, positions, bytes), in any part
  // order, else wait_all throws "unexpected content". The payloads are written to `payload`
  // in the EXPECTED part order; `payload` must stay valid until the handle is waited for.
  // Receives from one peer on one channel complete in the order they were posted.
  virtual Handle irecv(const Message& expected, void* payload) = 0;
  // Waits for all handles, up to the timeout, then forgets them (also when it throws: receives
  // not yet complete are dropped).
  virtual void wait_all(std::vector<Handle>& handles) = 0;
  // Blocking receive (with the timeout) of a message whose size the receiver does not know
  // (the schedule, the logits row, a control message, the end-of-run report), from `src` on
  // channel (layer, channel). Accounted and audited like any other.
  virtual Received recv_any(int src, int layer, CommKind channel) = 0;

  // Every rank waits until all have arrived, with the timeout (no MPI collective: a rank that
  // never arrives is named). Out of band: not accounted, not audited.
  virtual void barrier() = 0;

  // This rank is failing with `why`: tells every other rank, whose waits then end at once with
  // RunEnded("…: why") instead of timing out one by one and naming whoever each waited for (a
  // healthy party). Best effort and bounded (a dead peer cannot take it). Out of band.
  virtual void notify_abort(const std::string& why) { (void)why; }

  void send(const Message& msg, const void* payload);
  void recv(const Message& expected, void* payload);

  // Names a rank in error messages ("AttnNode (1,2)"); default "rank N".
  void set_peer_namer(std::function<std::string(int)> f) { namer_ = std::move(f); }
  void set_audit_hook(AuditHook hook) { audit_ = std::move(hook); }
  void set_delivery_hook(DeliveryHook hook) { delivery_ = std::move(hook); }
  // With a recorder (trace.h), isend is recorded as a `send` span, wait_all and recv_any as a
  // `wait` span, and every completed message as an event (and a view if the recorder keeps
  // them). nullptr (the default) records nothing.
  void set_trace(TraceRecorder* trace) { trace_ = trace; }
  TraceRecorder* trace() const { return trace_; }  // the roles record their compute spans in it
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }
  // Largest piece a message is sent in (default 1 GiB; at most 2^31 − 1, MPI counts are int).
  // The header must fit in the first piece.
  void set_max_chunk_bytes(uint64_t bytes);
  uint64_t max_chunk_bytes() const { return max_chunk_bytes_; }

  // Header bytes are counted under CommKind::header. reset_counts() starts them, the messages
  // sent and the wait time again from zero (each run of a series: cascade run --prompts).
  void reset_counts() {
    sent_.clear();
    received_.clear();
    messages_sent_ = 0;
    wait_s_ = 0.0;
  }
  const ByteCounts& sent() const { return sent_; }
  const ByteCounts& received() const { return received_; }
  uint64_t messages_sent() const { return messages_sent_; }
  double wait_seconds() const { return wait_s_; }  // time spent blocked in wait/recv
  std::string peer_name(int rank) const;  // "rank 5 (AttnNode (0,0))"

 protected:
  // `msg` as encoded or decoded; header_bytes = the stream's size − msg.payload_bytes().
  void account_send(const Message& msg, uint64_t header_bytes);
  void account_recv(const Message& msg, uint64_t header_bytes);

  std::function<std::string(int)> namer_;
  AuditHook audit_;
  DeliveryHook delivery_;
  TraceRecorder* trace_ = nullptr;
  double timeout_s_ = 300.0;
  uint64_t max_chunk_bytes_ = 1ull << 30;
  ByteCounts sent_, received_;
  uint64_t messages_sent_ = 0;
  double wait_s_ = 0.0;
};

// MPI transport over MPI_COMM_WORLD (host buffers). MPI must be initialised. (mpi_transport.h
// takes any communicator.)
std::unique_ptr<Transport> make_mpi_transport();

// Flattens counts to (src, dst, layer, kind, bytes) flows, sorted, zero-byte ones left out; for
// comparing with the communication model (comm_model.h) or sent with received.
std::vector<CommFlow> to_flows(const ByteCounts& counts);

}  // namespace cascade
