// Transport over MPI point-to-point calls.
//
// A message is its encoded stream (message.h), sent as ⌈S/C⌉ MPI messages of at most C bytes
// on one tag (MPI keeps their order), so no size goes through an MPI int unchecked. The
// receiver never posts a sized receive: it probes (MPI_Improbe) the first piece, learns the
// total from the header inside it, then probes and receives the rest. So a message of another
// size than expected is "unexpected content", never an MPI truncation error.
//
// With a device link (device_link.h), a message between two ranks on the link is its header
// alone on MPI, as above, while its payload goes device to device: the ops of one wait_all are
// issued to the link as one group, and a receive completes once its header has arrived and
// matched the expectation (in part order: a link cannot reorder) and the link has the bytes in
// (stream order for NCCL). The accounting is the same: header bytes and payload bytes.
//
// Waiting polls MPI_Test/MPI_Improbe with short sleeps instead of blocking in MPI_Wait: Open
// MPI busy-polls in MPI_Wait, which starves the other ranks when parties outnumber cores, and
// polling lets us enforce the timeout (a peer dying mid-message ends in an error, not a hang).
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <new>
#include <thread>

#include "cascade/device_link.h"
#include "cascade/mpi_transport.h"
#include "cascade/trace.h"

namespace cascade {
namespace {

using Clock = std::chrono::steady_clock;

// A rank of this node whose process is gone (dead_on_this_node): this rank's own finding.
class PeerDied : public TransportError {
 public:
  using TransportError::TransportError;
};

// Rethrows the run's end (RunEnded, PeerDied) with where this rank was; not whom it waited for
// (not to blame). Anything else goes on as it was.
[[noreturn]] void rethrow_saying_where(const std::string& where) {
  try {
    throw;
  } catch (const RunEnded& e) {
    throw RunEnded(std::string(e.what()) + " (this rank was " + where + ")");
  } catch (const PeerDied& e) {
    throw PeerDied(std::string(e.what()) + " (this rank was " + where + ")");
  }
}

// Tag = (layer + 1)·16 + channel: one per (layer, channel). Channels are CommKinds (< 11); the
// liveness probes use tags 11 and 12, the abort notices 13 and the barrier 14 and 15 (slots of
// layer −1 that no channel reaches).
constexpr int kTagsPerLayer = 16;
constexpr int kTagProbe = 11;
constexpr int kTagProbeAnswer = 12;
constexpr int kTagAbort = 13;
constexpr int kTagBarrierArrive = 14;
constexpr int kTagBarrierRelease = 15;
static_assert(kNumCommKinds <= kTagProbe, "channels would collide with the out-of-band tags");

// The channel of a message as the caller gave it: the kind of its first part, kv counted as q
// (a kv-only up message is still the (CompNode, AttnNode) up channel).
CommKind channel_of(const Message& msg) {
  if (msg.parts.empty())
    throw TransportError("a message needs at least one part: its kind names the channel");
  const CommKind k = msg.parts.front().kind;
  return k == CommKind::kv ? CommKind::q : k;
}

std::string layer_str(int layer) {
  return layer < 0 ? std::string("outside the layers") : "at layer " + std::to_string(layer);
}

// "q+kv" (the parts as the caller gave them).
std::string kinds_str(const std::vector<MessagePart>& parts) {
  std::string s;
  for (const MessagePart& p : parts) s += (s.empty() ? "" : "+") + std::string(comm_kind_name(p.kind));
  return s.empty() ? "an empty message" : s;
}

// "q 2 rows 1152 B + kv 1 row 768 B" (non-empty parts).
std::string parts_str(const std::vector<MessagePart>& parts) {
  std::string s;
  for (const MessagePart& p : parts) {
    if (part_is_empty(p)) continue;
    const size_t n = p.positions.size();
    s += (s.empty() ? "" : " + ") + std::string(comm_kind_name(p.kind)) + " " + std::to_string(n) +
         (n == 1 ? " row " : " rows ") + std::to_string(p.bytes) + " B";
  }
  return s.empty() ? "nothing" : s;
}

bool same_part(const MessagePart& a, const MessagePart& b) {
  return a.kind == b.kind && a.bytes == b.bytes && a.positions == b.positions;
}

// The first difference between the expected and the arrived non-empty parts, for the error.
std::string first_difference(const std::vector<MessagePart>& expected,
                             const std::vector<MessagePart>& arrived) {
  std::vector<bool> used(arrived.size(), false);
  for (const MessagePart& e : expected) {
    if (part_is_empty(e)) continue;
    const char* kind = comm_kind_name(e.kind);
    size_t match = arrived.size(), same_kind = arrived.size();
    for (size_t i = 0; i < arrived.size(); ++i) {
      if (used[i]) continue;
      if (same_part(e, arrived[i])) { match = i; break; }
      if (arrived[i].kind == e.kind && same_kind == arrived.size()) same_kind = i;
    }
    if (match < arrived.size()) { used[match] = true; continue; }
    if (same_kind == arrived.size()) return std::string("no ") + kind + " part arrived";
    const MessagePart& a = arrived[same_kind];
    for (size_t j = 0; j < e.positions.size() && j < a.positions.size(); ++j)
      if (e.positions[j] != a.positions[j])
        return std::string(kind) + " row #" + std::to_string(j) + " is position " +
               std::to_string(a.positions[j]) + ", expected " + std::to_string(e.positions[j]);
    if (e.positions.size() != a.positions.size())
      return std::string(kind) + " has " + std::to_string(a.positions.size()) + " rows, expected " +
             std::to_string(e.positions.size());
    return std::string(kind) + " has " + std::to_string(a.bytes) + " bytes, expected " +
           std::to_string(e.bytes);
  }
  for (size_t i = 0; i < arrived.size(); ++i)
    if (!used[i] && !part_is_empty(arrived[i]))
      return std::string("an unexpected ") + comm_kind_name(arrived[i].kind) + " part arrived";
  return "none";
}

// Buffers MPI may still read or write after we gave up on a request (a peer died mid-message):
// they must outlive it, so they are kept until the program exits.
void orphan(std::vector<uint8_t>&& buf) {
  static std::deque<std::vector<uint8_t>> orphans;
  orphans.push_back(std::move(buf));
}

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag);
    tag_ub_ = flag && ub ? *ub : 32767;  // 32767: the least the MPI standard guarantees
    // The ranks on this node and their PIDs (collective, at the start, when all are alive):
    // a rank whose process is gone is dead, and can be named as such (dead_on_this_node).
    MPI_Comm node;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    int n = 1;
    MPI_Comm_size(node, &n);
    const int mine[2] = {rank_, (int)getpid()};
    std::vector<int> all(2 * n);
    MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, node);
    MPI_Comm_free(&node);
    std::vector<pid_t> pids;
    for (int i = 0; i < n; ++i)
      if (all[2 * i] != rank_) {
        node_peers_.push_back(all[2 * i]);
        pids.push_back((pid_t)all[2 * i + 1]);
      }
    watch_processes(pids);
  }

  ~MpiTransport() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    std::vector<Handle> left;
    for (const auto& kv : pending_) left.push_back(kv.first);
    abandon(left);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return link_ ? link_->name() : "mpi"; }
  bool device_payloads(int peer) const override {
    return link_ && peer != rank_ && link_->covers(rank_) && link_->covers(peer);
  }
  void set_device_link(std::unique_ptr<DeviceLink> link) override { link_ = std::move(link); }

  Handle isend(const Message& msg_in, const void* payload) override {
    check_peer(msg_in.dst);
    if (trace_) trace_->begin(SpanKind::send, msg_in.layer);
    Pending p;
    p.posted = Clock::now();
    p.outgoing = true;
    p.peer = msg_in.dst;
    p.layer = msg_in.layer;
    p.tag = tag_of(msg_in.layer, channel_of(msg_in));
    p.given = msg_in.parts;
    Message msg = without_empty_parts(msg_in);
    msg.src = rank_;
    p.linked = device_payloads(p.peer);
    try {
      p.buf = p.linked ? encode_message_header(msg) : encode_message(msg, payload);
    } catch (const std::invalid_argument& e) {
      throw TransportError(std::string("cannot send to ") + peer_name(msg.dst) + " " +
                           layer_str(msg.layer) + ": " + e.what());
    }
    const uint64_t header_bytes = p.linked ? p.buf.size() : p.buf.size() - msg.payload_bytes();
    if (p.linked) p.link_op = {true, p.peer, const_cast<void*>(payload), msg.payload_bytes()};
    if (header_bytes > max_chunk_bytes_)
      throw TransportError("the header of a message to " + peer_name(msg.dst) + " " +
                           layer_str(msg.layer) + " is " + std::to_string(header_bytes) +
                           " bytes, more than one chunk (" + std::to_string(max_chunk_bytes_) +
                           " bytes): raise the chunk size");
    if (audit_) audit_(msg, true);
    for (uint64_t off = 0; off < p.buf.size(); off += max_chunk_bytes_) {
      const int n = (int)std::min<uint64_t>(max_chunk_bytes_, p.buf.size() - off);
      p.reqs.push_back(MPI_REQUEST_NULL);
      MPI_Isend(p.buf.data() + off, n, MPI_BYTE, p.peer, p.tag, comm_, &p.reqs.back());
    }
    account_send(msg, header_bytes);
    if (trace_) {
      p.post_span = trace_->current_span();
      p.sent = std::move(msg);
      trace_->end();
    }
    return add(std::move(p));
  }

  Handle irecv(const Message& expected, void* payload) override {
    check_peer(expected.src);
    Pending p;
    p.posted = Clock::now();
    p.peer = expected.src;
    p.layer = expected.layer;
    p.channel = channel_of(expected);
    p.tag = tag_of(expected.layer, p.channel);
    p.given = expected.parts;
    p.payload = payload;
    p.linked = device_payloads(p.peer);
    if (p.linked) p.link_op = {false, p.peer, payload, expected.payload_bytes()};
    return add(std::move(p));
  }

  Received recv_any(int src, int layer, CommKind channel) override {
    check_peer(src);
    Pending p;
    p.posted = Clock::now();
    p.peer = src;
    p.layer = layer;
    p.channel = channel == CommKind::kv ? CommKind::q : channel;
    p.tag = tag_of(layer, p.channel);
    p.any_size = true;
    const Handle h = add(std::move(p));
    std::vector<Handle> hs{h};
    wait_all(hs);
    Received r = std::move(any_results_.at(h));
    any_results_.erase(h);
    return r;
  }

  void wait_all(std::vector<Handle>& handles) override {
    const auto t0 = Clock::now();
    for (Handle h : handles)
      if (!pending_.count(h)) throw std::logic_error("wait_all: unknown transport handle");
    if (trace_ && !handles.empty()) trace_->begin(SpanKind::wait, pending_.at(handles[0]).layer);
    try {
      issue_link_ops(handles);
      int spins = 0;
      // Past the timeout, the peer waited for is probed before it is blamed: a live one that is
      // itself waiting (on a dead or stuck party further along) answers from its own wait, and
      // this wait goes on (up to kMaxExtensions timeouts more), so that only the rank waiting
      // on the culprit itself names it. No answer within half a timeout: dead or stuck.
      constexpr int kMaxExtensions = 4;
      int extensions = 0, probed = -1;
      Clock::time_point deadline_t0 = t0, probe_sent;
      for (;;) {
        bool progress = false, all_done = true;
        for (Handle h : handles) {
          auto it = pending_.find(h);
          if (it == pending_.end()) continue;  // finished in an earlier round
          if (!(it->second.outgoing ? send_done(it->second) : recv_done(h, it->second))) {
            all_done = false;
            continue;
          }
          Pending p = std::move(it->second);
          pending_.erase(it);
          if (!p.outgoing) finish_recv(h, p);
          else if (trace_)
            trace_->message(p.sent, true, p.buf.size() + p.link_op.bytes, (int)p.tag % kTagsPerLayer,
                            p.posted, p.post_span, Clock::now(), nullptr);
          progress = true;
        }
        if (all_done) break;
        bool overdue = false;
        try {
          overdue = !progress && idle(deadline_t0, spins);
        } catch (const TransportError&) {
          rethrow_saying_where(where_str(handles));
        }
        if (link_ && spins % 1024 == 0) check_link();
        if (!overdue) continue;
        const int peer = first_pending(handles)->peer;
        if (probed != peer) {
          send_probe(peer);
          probed = peer;
          probe_sent = Clock::now();
        } else if (answered(peer) && extensions < kMaxExtensions) {
          ++extensions;  // alive and waiting itself: it, or the one it waits on, will speak
          probed = -1;
          deadline_t0 = Clock::now();
        } else if (seconds_since(probe_sent) > 0.5 * timeout_s_) {
          throw timeout_error(handles, seconds_since(t0));
        }
      }
    } catch (...) {
      abandon(handles);
      handles.clear();
      wait_s_ += seconds_since(t0);
      if (trace_ && trace_->current_span() >= 0) trace_->end();
      throw;
    }
    handles.clear();
    wait_s_ += seconds_since(t0);
    if (trace_ && trace_->current_span() >= 0) trace_->end();
  }

  // Rank 0 gathers a 0-byte arrival from every rank, then releases them, on tags of its own.
  void barrier() override {
    try {
      wait_at_barrier();
    } catch (const TransportError&) {
      rethrow_saying_where("at the barrier");
    }
  }

 private:
  void wait_at_barrier() {
    if (size_ == 1) return;
    const auto t0 = Clock::now();
    const int arrive = kTagBarrierArrive, release = kTagBarrierRelease;
    int spins = 0;
    auto timed_out = [&](const std::string& what) {
      return TransportError("timed out after " + std::to_string((int)seconds_since(t0)) +
                            " s at the barrier: " + what);
    };
    if (rank_ != 0) {
      MPI_Request req;
      MPI_Isend(nullptr, 0, MPI_BYTE, 0, arrive, comm_, &req);
      while (!probe_empty(0, release)) {
        if (idle(t0, spins)) {
          MPI_Request_free(&req);
          throw timed_out("no release from " + peer_name(0) +
                          ": it or another rank is dead or stuck");
        }
      }
      MPI_Wait(&req, MPI_STATUS_IGNORE);  // complete: rank 0 received it before releasing
      return;
    }
    std::vector<bool> arrived(size_, false);
    arrived[0] = true;
    int n_arrived = 1;
    while (n_arrived < size_) {
      bool progress = false;
      for (int r = 1; r < size_; ++r)
        if (!arrived[r] && probe_empty(r, arrive)) {
          arrived[r] = true;
          ++n_arrived;
          progress = true;
        }
      if (n_arrived < size_ && !progress && idle(t0, spins)) {
        std::string missing;
        int n_missing = 0;
        for (int r = 1; r < size_; ++r)
          if (!arrived[r]) missing += (n_missing++ ? ", " : "") + peer_name(r);
        throw timed_out(missing + " never arrived: dead or stuck");
      }
    }
    std::vector<MPI_Request> reqs(size_ - 1);
    for (int r = 1; r < size_; ++r) MPI_Isend(nullptr, 0, MPI_BYTE, r, release, comm_, &reqs[r - 1]);
    for (;;) {
      int done = 0;
      MPI_Testall((int)reqs.size(), reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (done) return;
      if (idle(t0, spins)) {
        for (MPI_Request& q : reqs)
          if (q != MPI_REQUEST_NULL) MPI_Request_free(&q);
        throw timed_out("could not release every rank: one is dead or stuck");
      }
    }
  }

  struct Pending {
    bool outgoing = false;
    int peer = -1, layer = -1, tag = 0;
    CommKind channel = CommKind::q;
    std::vector<MessagePart> given;  // the parts as the caller gave them (send or expected)
    Message sent;                    // send: the message as encoded (for the trace)
    Clock::time_point posted;        // when isend or irecv was called
    int64_t post_span = -1;          // trace: the send span it was posted in
    bool any_size = false;           // recv_any: no expectation
    void* payload = nullptr;         // irecv: where the expected parts go
    std::vector<uint8_t> buf;        // the encoded stream
    std::vector<MPI_Request> reqs;   // send: one per piece; receive: the piece in flight
    uint64_t landed = 0;             // receive: bytes received so far
    uint64_t in_flight = 0;          // receive: size of the piece in flight
    uint64_t total = 0;              // receive: the stream's size, once the header is in
    bool linked = false;             // the payload travels on the device link
    DeviceLink::Op link_op;          // linked: the payload's op (bytes 0 when not linked)
    int64_t ticket = -1;             // linked: the link group it was issued in
  };

  // The link ops of these handles not yet issued, as one group (a CompNode's up sends and
  // partial receives progress together: no order between them can deadlock).
  void issue_link_ops(const std::vector<Handle>& handles) {
    if (!link_) return;
    std::vector<DeviceLink::Op> ops;
    std::vector<Pending*> group;
    for (Handle h : handles) {
      Pending& p = pending_.at(h);
      if (!p.linked || p.ticket >= 0 || p.link_op.bytes == 0) continue;
      ops.push_back(p.link_op);
      group.push_back(&p);
    }
    if (ops.empty()) return;
    const int64_t ticket = link_->issue(ops);
    for (Pending* p : group) p->ticket = ticket;
  }

  // Link transfers get twice the timeout: a missing header, with its probe (1.5 timeouts at
  // most, unless the peer answers), names the culprit first; this is for the payload of a
  // header that did arrive.
  void check_link() {
    const double limit = 2 * timeout_s_;
    const int peer = link_->overdue(limit);
    if (peer >= 0)
      throw TransportError("timed out after " + std::to_string((int)limit) + " s: the " + link_->name() +
                           " transfers with " + peer_name(peer) + " never finished: the peer is dead or stuck");
  }

  int tag_of(int layer, CommKind channel) const {
    const long long tag = (long long)(layer + 1) * kTagsPerLayer + (int)channel;
    if (layer < -1 || tag > tag_ub_)
      throw TransportError("layer " + std::to_string(layer) + " needs MPI tag " +
                           std::to_string(tag) + ", outside this MPI's 0..MPI_TAG_UB = " +
                           std::to_string(tag_ub_));
    return (int)tag;
  }

  Handle add(Pending p) {
    const Handle h = next_++;
    pending_.emplace(h, std::move(p));
    return h;
  }

  void check_peer(int r) const {
    if (r < 0 || r >= size_ || r == rank_)
      throw TransportError("invalid peer rank " + std::to_string(r) + " (world size " +
                           std::to_string(size_) + ", this is rank " + std::to_string(rank_) + ")");
  }

  static double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // Spin briefly, then sleep a little; true once the timeout has passed. Throws RunEnded when
  // another rank's abort notice is in or the launcher asked this process to end.
  bool idle(Clock::time_point t0, int& spins) {
    if (++spins < 64) return false;
    check_run_ended();
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 2000 ? 20 : 200));
    return seconds_since(t0) > timeout_s_;
  }

  // Liveness probes (out of band, 0 bytes): any rank in a wait answers them (idle).
  void send_probe(int peer) {
    MPI_Request req;
    MPI_Isend(nullptr, 0, MPI_BYTE, peer, kTagProbe, comm_, &req);
    MPI_Request_free(&req);  // 0 bytes: eager
  }
  bool answered(int peer) {
    bool any = false;
    while (probe_empty(peer, kTagProbeAnswer)) any = true;
    return any;
  }
  void answer_probes() {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      MPI_Iprobe(MPI_ANY_SOURCE, kTagProbe, comm_, &flag, &st);
      if (!flag) return;
      MPI_Recv(nullptr, 0, MPI_BYTE, st.MPI_SOURCE, kTagProbe, comm_, MPI_STATUS_IGNORE);
      MPI_Request req;
      MPI_Isend(nullptr, 0, MPI_BYTE, st.MPI_SOURCE, kTagProbeAnswer, comm_, &req);
      MPI_Request_free(&req);
    }
  }

  // The first of these handles still pending (nullptr: none).
  const Pending* first_pending(const std::vector<Handle>& handles) const {
    for (Handle h : handles)
      if (auto it = pending_.find(h); it != pending_.end()) return &it->second;
    return nullptr;
  }

  // "rank 5 (AttnNode (0,0))" for every rank of this node whose process was gone when the last
  // SIGCONT, SIGTERM or SIGINT came.
  std::string dead_on_this_node() const {
    std::string dead;
    for (size_t i = 0; i < node_peers_.size(); ++i)
      if (process_gone((int)i)) dead += (dead.empty() ? "" : ", ") + peer_name(node_peers_[i]);
    return dead;
  }

  void check_run_ended() {
    answer_probes();
    // Another rank's failure first: a rank that was stopped (SIGSTOP) and is resumed by the
    // launcher's SIGCONT must repeat what that rank found, not take the ending ranks for dead.
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagAbort, comm_, &flag, &st);
    if (flag) {
      int n = 0;
      MPI_Get_count(&st, MPI_CHAR, &n);
      std::string why(std::max(n, 0), '\0');
      MPI_Recv(why.data(), n, MPI_CHAR, st.MPI_SOURCE, kTagAbort, comm_, MPI_STATUS_IGNORE);
      throw RunEnded(why);
    }
    // Open MPI's mpirun sends SIGCONT a second before it ends the job over a dead rank: if a
    // rank of this node was gone then, this rank names it (and the run ends the usual way).
    if (take_continued()) {
      const std::string dead = dead_on_this_node();
      if (!dead.empty()) throw PeerDied(dead + " died: its process is gone");
    }
    if (const int sig = termination_signal()) {
      const std::string dead = dead_on_this_node();
      throw RunEnded(std::string("the launcher is ending the job (") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                     "): " + (dead.empty() ? "a rank has died (the launcher names it), or the job was "
                                             "interrupted, cancelled or ran out of time"
                                           : dead + " died: its process is gone"));
    }
  }

 public:
  void notify_abort(const std::string& why) override {
    // Each receiver adds where it was (rethrow_saying_where): this rank's own place, said the
    // same way, becomes "(rank N was …)" so the two are not confused.
    abort_note_ = why;
    for (size_t at; (at = abort_note_.find("(this rank was ")) != std::string::npos;)
      abort_note_.replace(at, 10, "(rank " + std::to_string(rank_));
    std::vector<MPI_Request> reqs;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      reqs.emplace_back();
      MPI_Isend(abort_note_.data(), (int)abort_note_.size(), MPI_CHAR, r, kTagAbort, comm_, &reqs.back());
    }
    // Small, so eager: sent once buffered. A peer that cannot take it gets at most a second.
    const auto t0 = Clock::now();
    int done = 0;
    while (!done && seconds_since(t0) < 1.0) {
      MPI_Testall((int)reqs.size(), reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    for (MPI_Request& q : reqs)
      if (q != MPI_REQUEST_NULL) MPI_Request_free(&q);
  }

 private:
  // Receives a 0-byte message from `src` on `tag` if one is there.
  bool probe_empty(int src, int tag) {
    int flag = 0;
    MPI_Message mm;
    MPI_Improbe(src, tag, comm_, &flag, &mm, MPI_STATUS_IGNORE);
    if (flag) MPI_Mrecv(nullptr, 0, MPI_BYTE, &mm, MPI_STATUS_IGNORE);
    return flag;
  }

  bool send_done(Pending& p) {
    int done = 0;
    MPI_Testall((int)p.reqs.size(), p.reqs.data(), &done, MPI_STATUSES_IGNORE);
    return done;
  }

  // Advances a receive as far as the arrived pieces allow; true when the whole stream is in
  // (linked: the header, and the link has the payload in).
  bool recv_done(Handle h, Pending& p) {
    if (p.linked && p.total > 0 && p.landed >= p.total)  // the header is in
      return p.link_op.bytes == 0 || link_->ready(p.ticket);
    for (;;) {
      if (!p.reqs.empty()) {  // a piece in flight
        int flag = 0;
        MPI_Test(&p.reqs[0], &flag, MPI_STATUS_IGNORE);
        if (!flag) return false;
        p.reqs.clear();
        p.landed += p.in_flight;
        if (p.total == 0) learn_size(p);
        if (p.landed >= p.total) return !p.linked || p.link_op.bytes == 0 || link_->ready(p.ticket);
      }
      // Receives from one peer on one channel take its messages in posting order.
      if (p.landed == 0 && earlier_receive_on(h, p)) return false;
      int flag = 0;
      MPI_Message mm;
      MPI_Status st;
      MPI_Improbe(p.peer, p.tag, comm_, &flag, &mm, &st);
      if (!flag) return false;
      MPI_Count n = 0;
      MPI_Get_elements_x(&st, MPI_BYTE, &n);
      const bool first = p.landed == 0;
      if (n < 0 || n > std::numeric_limits<int>::max() ||
          (!first && p.landed + (uint64_t)n > p.buf.size()))
        throw TransportError(describe(p) + ": a piece of " + std::to_string((long long)n) +
                             " bytes overruns the " + std::to_string(p.buf.size()) +
                             " bytes its header announced");
      if (first) p.buf.resize((size_t)n);
      p.reqs.assign(1, MPI_REQUEST_NULL);
      p.in_flight = (uint64_t)n;
      MPI_Imrecv(p.buf.data() + p.landed, (int)n, MPI_BYTE, &mm, &p.reqs[0]);
    }
  }

  bool earlier_receive_on(Handle h, const Pending& p) const {
    for (const auto& [other, q] : pending_) {
      if (other >= h) break;
      if (!q.outgoing && q.peer == p.peer && q.tag == p.tag) return true;
    }
    return false;
  }

  // The first piece is in: its header says how large the whole stream is.
  void learn_size(Pending& p) {
    Message head;
    uint64_t header = 0;
    try {
      header = decode_message_header(p.buf.data(), p.landed, head);
    } catch (const MessageError& e) {
      throw TransportError("message from " + describe(p) + ": " + e.what());
    }
    p.total = header + (p.linked ? 0 : head.payload_bytes());
    if (p.total <= p.landed) return;  // all in (a longer first piece fails the decode later)
    try {
      p.buf.resize(p.total);
    } catch (const std::bad_alloc&) {
      throw TransportError("message from " + describe(p) + " announces " + std::to_string(p.total) +
                           " bytes: cannot allocate them");
    }
  }

  // The stream is in: decode, account, audit, compare with the expectation, deliver.
  void finish_recv(Handle h, Pending& p) {
    Message got;
    uint64_t offset = 0;
    try {
      if (p.linked) {
        offset = decode_message_header(p.buf.data(), p.buf.size(), got);
        if (offset != p.buf.size()) throw MessageError("bytes after the header of a device-link message");
      } else {
        offset = decode_message(p.buf.data(), p.buf.size(), got);
      }
    } catch (const MessageError& e) {
      throw TransportError("message from " + describe(p) + ": " + e.what());
    }
    got.src = p.peer;
    got.dst = rank_;
    account_recv(got, p.linked ? p.buf.size() : p.buf.size() - got.payload_bytes());
    if (audit_) audit_(got, false);
    if (p.linked) return finish_linked_recv(p, got);
    if (trace_)  // as it arrived: parts and payload in arrived order
      trace_->message(got, false, p.buf.size(), (int)p.channel, p.posted, trace_->current_span(),
                      Clock::now(), p.buf.data() + offset);

    if (p.any_size) {
      if (got.layer != p.layer)
        throw TransportError("unexpected content from " + describe(p) + ": it says layer " +
                             std::to_string(got.layer));
      p.buf.erase(p.buf.begin(), p.buf.begin() + offset);
      if (delivery_) delivery_(got, p.buf.data());
      any_results_[h] = Received{std::move(got), std::move(p.buf)};
      return;
    }
    // Match every expected part with an equal arrived one, in any order.
    std::vector<uint64_t> arrived_at(got.parts.size());  // payload offset of each arrived part
    for (size_t i = 0, at = offset; i < got.parts.size(); at += got.parts[i].bytes, ++i) arrived_at[i] = at;
    std::vector<bool> used(got.parts.size(), false);
    std::vector<size_t> source;  // per expected part: the arrived part it matched
    bool ok = got.layer == p.layer;
    for (const MessagePart& e : p.given) {
      size_t match = got.parts.size();
      if (!part_is_empty(e))
        for (size_t i = 0; i < got.parts.size() && match == got.parts.size(); ++i)
          if (!used[i] && same_part(e, got.parts[i])) match = i;
      if (match < got.parts.size()) used[match] = true;
      else if (!part_is_empty(e)) ok = false;
      source.push_back(match);
    }
    for (size_t i = 0; i < got.parts.size(); ++i) ok &= used[i] || part_is_empty(got.parts[i]);
    if (!ok) {
      const std::string diff = got.layer != p.layer
                                   ? "it says layer " + std::to_string(got.layer)
                                   : first_difference(p.given, got.parts);
      throw TransportError("unexpected content from " + describe(p) + ": expected " +
                           parts_str(p.given) + ", got " + parts_str(got.parts) +
                           "; first difference: " + diff);
    }
    uint8_t* out = static_cast<uint8_t*>(p.payload);
    for (size_t j = 0; j < p.given.size(); ++j) {
      if (source[j] == got.parts.size() || p.given[j].bytes == 0) continue;  // nothing to copy (out may be null)
      std::memcpy(out, p.buf.data() + arrived_at[source[j]], p.given[j].bytes);
      out += p.given[j].bytes;
    }
    if (delivery_) {
      Message delivered{got.src, got.dst, got.layer, {}};
      for (const MessagePart& e : p.given)
        if (!part_is_empty(e)) delivered.parts.push_back(e);
      delivery_(delivered, static_cast<const uint8_t*>(p.payload));
    }
  }

  // A linked receive whose header is in: the payload is already where the caller wanted it (the
  // link wrote the sender's parts in the sender's order), so the parts must be the expected
  // ones in the expected order.
  void finish_linked_recv(Pending& p, const Message& got) {
    std::vector<MessagePart> want;
    for (const MessagePart& e : p.given)
      if (!part_is_empty(e)) want.push_back(e);
    bool ok = got.layer == p.layer && got.parts.size() == want.size();
    for (size_t i = 0; ok && i < want.size(); ++i) ok = same_part(want[i], got.parts[i]);
    if (!ok) {
      const std::string diff = got.layer != p.layer ? "it says layer " + std::to_string(got.layer)
                               : first_difference(p.given, got.parts) != "none"
                                   ? first_difference(p.given, got.parts)
                                   : std::string("the parts are in another order (a device link cannot reorder them)");
      throw TransportError("unexpected content from " + describe(p) + ": expected " + parts_str(p.given) +
                           ", got " + parts_str(got.parts) + "; first difference: " + diff);
    }
    if (!trace_ && !delivery_) return;
    std::vector<uint8_t> host(got.payload_bytes());  // views and tests: a copy off the device
    if (!host.empty()) link_->to_host(host.data(), p.payload, host.size());
    if (trace_)
      trace_->message(got, false, p.buf.size() + host.size(), (int)p.channel, p.posted, trace_->current_span(),
                      Clock::now(), host.data());
    if (delivery_) delivery_(got, host.data());
  }

  // "rank 2 (CompNode 1) at layer 3 (q)"
  std::string describe(const Pending& p) const {
    return peer_name(p.peer) + " " + layer_str(p.layer) + " (" + comm_kind_name(p.channel) + ")";
  }

  // "waiting for partial from rank 5 (AttnNode (0,0)) at layer 1": the first unfinished handle.
  std::string waiting_str(const std::vector<Handle>& handles) const {
    const Pending* p = first_pending(handles);
    if (!p) return "waiting";
    const std::string what = p->any_size ? comm_kind_name(p->channel) : kinds_str(p->given);
    const std::string partial =
        !p->outgoing && p->landed > 0
            ? " (" + std::to_string(p->landed) + " of " + std::to_string(p->total) + " bytes in)"
            : "";
    return std::string(p->outgoing ? "sending " : "waiting for ") + what + (p->outgoing ? " to " : " from ") +
           peer_name(p->peer) + " " + layer_str(p->layer) + partial;
  }

  // "at layer 3" or "outside the layers" (between steps, or at the start or end).
  std::string where_str(const std::vector<Handle>& handles) const {
    const Pending* p = first_pending(handles);
    return layer_str(p ? p->layer : -1);
  }

  TransportError timeout_error(const std::vector<Handle>& handles, double waited) const {
    return TransportError("timed out after " + std::to_string((int)waited) + " s " + waiting_str(handles) +
                          ": the peer is dead or stuck");
  }

  // Forgets handles: requests MPI still works on are freed, their buffers kept (orphan).
  void abandon(const std::vector<Handle>& handles) {
    for (Handle h : handles) {
      auto it = pending_.find(h);
      if (it == pending_.end()) continue;
      bool busy = false;
      for (MPI_Request& r : it->second.reqs) {
        int flag = 1;
        if (r != MPI_REQUEST_NULL) MPI_Test(&r, &flag, MPI_STATUS_IGNORE);
        if (!flag) {
          MPI_Request_free(&r);
          busy = true;
        }
      }
      if (busy) orphan(std::move(it->second.buf));
      pending_.erase(it);
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  long long tag_ub_ = 32767;
  Handle next_ = 0;
  std::map<Handle, Pending> pending_;  // ordered: receives on one channel match in this order
  std::map<Handle, Received> any_results_;  // recv_any's message, between wait_all and return
  std::unique_ptr<DeviceLink> link_;        // payloads between covered ranks (device_link.h)
  std::string abort_note_;                  // notify_abort's text, alive while MPI sends it
  std::vector<int> node_peers_;             // the other ranks on this node (watch_processes)
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm) {
  return std::make_unique<MpiTransport>(comm);
}
std::unique_ptr<Transport> make_mpi_transport() { return make_mpi_transport(MPI_COMM_WORLD); }

}  // namespace cascade
