// Validation of a trace's spans and the pairing of its sends with their receives.
#include "pairing.h"

#include <cmath>
#include <map>
#include <tuple>
#include <utility>

namespace cascade::sim_detail {
namespace {

void check_spans(const Trace& t, int r) {
  const std::vector<Span>& spans = t.ranks[r].spans;
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if ((int)s.kind < 0 || (int)s.kind >= kNumSpanKinds)
      throw SimError("trace: " + rank_name(t, r) + " span " + std::to_string(i) + " has kind " +
                     std::to_string((int)s.kind) + ", not a SpanKind");
    if (!(s.t_end >= s.t_start) || !std::isfinite(s.t_start) || !std::isfinite(s.t_end))
      throw SimError("trace: " + rank_name(t, r) + " " + span_name(t, r, (int64_t)i) +
                     " ends before it starts");
    if (i > 0 && s.t_start < spans[i - 1].t_end - 1e-9)
      throw SimError("trace: " + rank_name(t, r) + " " + span_name(t, r, (int64_t)i) +
                     " starts before " + span_name(t, r, (int64_t)i - 1) +
                     " ends: spans must be contiguous, in program order");
  }
}

}  // namespace

std::string rank_name(const Trace& t, int r) {
  const std::string& p = t.ranks[r].party;
  return "rank " + std::to_string(r) + (p.empty() ? "" : " (" + p + ")");
}

std::string span_name(const Trace& t, int r, int64_t i) {
  const Span& s = t.ranks[r].spans[i];
  return "span " + std::to_string(i) + " (" + span_kind_name(s.kind) + ", step " +
         std::to_string(s.step) + (s.layer >= 0 ? ", layer " + std::to_string(s.layer) : "") + ")";
}

std::string message_name(const Trace& t, const PairedMessage& m) {
  return "the message " + rank_name(t, m.src) + " → " + rank_name(t, m.dst) +
         (m.layer >= 0 ? " at layer " + std::to_string(m.layer) : " outside the layers") +
         " on channel " + comm_kind_name(static_cast<CommKind>(m.channel)) + " (seq " +
         std::to_string(m.seq) + ")";
}

std::vector<PairedMessage> pair_messages(const Trace& t) {
  const int n = (int)t.ranks.size();
  for (int r = 0; r < n; ++r) {
    if (t.ranks[r].rank != r)
      throw SimError("trace: ranks[" + std::to_string(r) + "] says it is rank " +
                     std::to_string(t.ranks[r].rank));
    check_spans(t, r);
  }
  using Key = std::tuple<int, int, uint64_t, int, int>;  // src, dst, seq, layer, channel
  std::map<Key, std::pair<const MessageEvent*, const MessageEvent*>> pairs;
  for (int r = 0; r < n; ++r) {
    const std::vector<Span>& spans = t.ranks[r].spans;
    for (const MessageEvent& e : t.ranks[r].messages) {
      if (e.peer < 0 || e.peer >= n || e.peer == r)
        throw SimError("trace: " + rank_name(t, r) + " has a message with peer " +
                       std::to_string(e.peer) + " (world size " + std::to_string(n) + ")");
      if (e.direction != 0 && e.direction != 1)
        throw SimError("trace: " + rank_name(t, r) + " has a message with direction " +
                       std::to_string(e.direction));
      const bool sent = e.direction == 0;
      const Key key = sent ? Key{r, e.peer, e.seq, e.layer, e.channel}
                           : Key{e.peer, r, e.seq, e.layer, e.channel};
      auto& slot = sent ? pairs[key].first : pairs[key].second;
      if (slot)
        throw SimError("trace: " + rank_name(t, r) + " has two " + (sent ? "sends" : "receives") +
                       " with the same (src, dst, layer, channel, seq) = (" +
                       std::to_string(std::get<0>(key)) + ", " + std::to_string(std::get<1>(key)) +
                       ", " + std::to_string(e.layer) + ", " + std::to_string(e.channel) + ", " +
                       std::to_string(e.seq) + ")");
      const int64_t span = sent ? e.post_span : e.complete_span;
      if (span < 0 || span >= (int64_t)spans.size())
        throw SimError("trace: " + rank_name(t, r) + ": a " + (sent ? "sent" : "received") +
                       " message's " + (sent ? "post_span " : "complete_span ") +
                       std::to_string(span) + " is outside its " + std::to_string(spans.size()) +
                       " spans");
      if (!sent && spans[span].kind != SpanKind::wait)
        throw SimError("trace: " + rank_name(t, r) + ": a message from rank " +
                       std::to_string(e.peer) + " completes in " + span_name(t, r, span) +
                       ", not in a wait span");
      slot = &e;
    }
  }
  std::vector<PairedMessage> out;
  out.reserve(pairs.size());
  for (const auto& [key, pr] : pairs) {
    PairedMessage m;
    std::tie(m.src, m.dst, m.seq, m.layer, m.channel) = key;
    if (!pr.first || !pr.second)
      throw SimError("trace: unpaired message: " + message_name(t, m) +
                     (pr.first ? " was sent but never received" : " was received but never sent") +
                     (t.meta.complete ? "" : " (the trace is incomplete: the run ended early)"));
    if (pr.first->wire_bytes != pr.second->wire_bytes)
      throw SimError("trace: " + message_name(t, m) + " was sent with " +
                     std::to_string(pr.first->wire_bytes) + " wire bytes but received with " +
                     std::to_string(pr.second->wire_bytes));
    m.send_span = pr.first->post_span;
    m.wait_span = pr.second->complete_span;
    m.wire_bytes = pr.first->wire_bytes;
    m.t_complete = pr.second->t_complete;
    out.push_back(m);
  }
  return out;
}

}  // namespace cascade::sim_detail
