#include "cascade/transport.h"

#include "cascade/device_link.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <limits>

namespace cascade {

namespace {
volatile std::sig_atomic_t g_termination = 0, g_continued = 0;
// The node's other ranks' PIDs, and which were gone when a signal came (watch_processes).
constexpr int kMaxWatched = 4096;
pid_t g_watched[kMaxWatched];
volatile std::sig_atomic_t g_n_watched = 0, g_gone[kMaxWatched];

// At the signal itself, before any rank it reaches has ended: kill(pid, 0) is async-signal-safe.
void snapshot_gone() {
  const int saved = errno;
  for (int i = 0; i < g_n_watched; ++i)
    if (kill(g_watched[i], 0) != 0 && errno == ESRCH) g_gone[i] = 1;
  errno = saved;
}
extern "C" void note_termination(int sig) {
  snapshot_gone();
  g_termination = sig;
}
extern "C" void note_continue(int) {
  snapshot_gone();
  g_continued = 1;
}
}  // namespace

void watch_processes(const std::vector<pid_t>& pids) {
  g_n_watched = 0;
  const int n = (int)std::min<size_t>(pids.size(), kMaxWatched);
  for (int i = 0; i < n; ++i) {
    g_watched[i] = pids[i];
    g_gone[i] = 0;
  }
  g_n_watched = n;
}

bool process_gone(int i) { return i >= 0 && i < g_n_watched && g_gone[i]; }

void end_waits_on_termination() {
  struct sigaction sa {};
  sa.sa_handler = note_termination;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
  struct sigaction cont {};
  cont.sa_handler = note_continue;  // SIGCONT still continues the process, as always
  sigemptyset(&cont.sa_mask);
  sigaction(SIGCONT, &cont, nullptr);
}

int termination_signal() { return g_termination; }

bool take_continued() {
  if (!g_continued) return false;
  g_continued = 0;
  return true;
}

void Transport::set_device_link(std::unique_ptr<DeviceLink> link) {
  if (link) throw TransportError("the " + name() + " transport cannot carry a device link (" + link->name() + ")");
}

void Transport::send(const Message& msg, const void* payload) {
  std::vector<Handle> h{isend(msg, payload)};
  wait_all(h);
}

void Transport::recv(const Message& expected, void* payload) {
  std::vector<Handle> h{irecv(expected, payload)};
  wait_all(h);
}

void Transport::set_max_chunk_bytes(uint64_t bytes) {
  if (bytes < 1 || bytes > (uint64_t)std::numeric_limits<int>::max())
    throw std::invalid_argument("max chunk bytes must be in 1..2^31 - 1 (an MPI count), got " +
                                std::to_string(bytes));
  max_chunk_bytes_ = bytes;
}

std::string Transport::peer_name(int r) const {
  std::string s = "rank " + std::to_string(r);
  if (namer_) s += " (" + namer_(r) + ")";
  return s;
}

void Transport::account_send(const Message& msg, uint64_t header_bytes) {
  for (const MessagePart& p : msg.parts) sent_[{msg.src, msg.dst, msg.layer, p.kind}] += p.bytes;
  sent_[{msg.src, msg.dst, msg.layer, CommKind::header}] += header_bytes;
  ++messages_sent_;
}

void Transport::account_recv(const Message& msg, uint64_t header_bytes) {
  for (const MessagePart& p : msg.parts)
    received_[{msg.src, msg.dst, msg.layer, p.kind}] += p.bytes;
  received_[{msg.src, msg.dst, msg.layer, CommKind::header}] += header_bytes;
}

std::vector<CommFlow> to_flows(const ByteCounts& counts) {
  std::vector<CommFlow> flows;
  for (const auto& [key, bytes] : counts)
    if (bytes) flows.push_back({key.src, key.dst, key.layer, key.kind, bytes});
  return merge_flows(std::move(flows));
}


}  // namespace cascade
