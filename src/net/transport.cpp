#include "cascade/transport.h"

namespace cascade {

uint64_t Message::bytes() const {
  uint64_t n = 0;
  for (const MessagePart& p : parts) n += p.bytes;
  return n;
}

void Transport::send(const Message& msg, const void* buf) {
  std::vector<Handle> h{isend(msg, buf)};
  wait_all(h);
}

void Transport::recv(const Message& msg, void* buf) {
  std::vector<Handle> h{irecv(msg, buf)};
  wait_all(h);
}

std::string Transport::peer_name(int r) const {
  std::string s = "rank " + std::to_string(r);
  if (namer_) s += " (" + namer_(r) + ")";
  return s;
}

void Transport::account_send(const Message& msg) {
  for (const MessagePart& p : msg.parts) sent_[{msg.src, msg.dst, msg.layer, p.kind}] += p.bytes;
  ++messages_sent_;
  if (audit_) audit_(msg, true);
}

void Transport::account_recv(const Message& msg) {
  for (const MessagePart& p : msg.parts)
    received_[{msg.src, msg.dst, msg.layer, p.kind}] += p.bytes;
  if (audit_) audit_(msg, false);
}

std::vector<CommFlow> to_flows(const ByteCounts& counts) {
  std::vector<CommFlow> flows;
  for (const auto& [key, bytes] : counts)
    if (bytes) flows.push_back({key.src, key.dst, key.layer, key.kind, bytes});
  return merge_flows(std::move(flows));
}

}  // namespace cascade
