#include "cascade/transport.h"

#include "cascade/device_link.h"

#include <csignal>
#include <limits>

namespace cascade {

namespace {
volatile std::sig_atomic_t g_termination = 0;
extern "C" void note_termination(int sig) { g_termination = sig; }
}  // namespace

void end_waits_on_termination() {
  struct sigaction sa {};
  sa.sa_handler = note_termination;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
}

int termination_signal() { return g_termination; }

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
