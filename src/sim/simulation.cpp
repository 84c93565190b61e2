// simulate(): the discrete-event replay of a trace described in sim.h.
//
// Ranks run ahead on their own clocks until they reach a wait whose messages have not all
// arrived; the network is a queue of events (a message departs, a transfer ends, a message
// arrives) processed in time order. A rank's clock only depends on arrivals, and a message can
// only depart from a rank that is running, so processing events in time order while ranks run
// ahead is exact.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/sim.h"

namespace cascade {
namespace {

struct Msg {
  int src = 0, dst = 0, layer = 0, channel = 0;
  uint64_t seq = 0;
  int64_t send_span = -1;  // on src: the message departs at this span's end
  int64_t wait_span = -1;  // on dst: the wait that needs it
  double bytes = 0.0;
  double depart = 0.0, start = 0.0, end = 0.0, arrive = 0.0;
  bool arrived = false;
};

struct RankState {
  size_t cursor = 0;
  bool entered = false;  // the cursor span's start is set (a wait we are blocked in)
  bool blocked = false, done = false;
  double clock = 0.0;
  std::vector<double> gap, start, end;   // per span, simulated
  std::vector<std::vector<int>> sends;   // per span: messages departing at its end
  std::vector<std::vector<int>> waits;   // per span: messages its wait needs
  std::vector<int> bound_by;             // per wait span: the arrival that ended it, or −1
};

enum EventType { kTransferEnd = 0, kArrive = 1, kDepart = 2 };

struct Event {
  double t;
  int type;
  int msg;  // ids are in (src, dst, seq, layer, channel) order: the tie-break
  bool operator>(const Event& o) const {
    return std::tie(t, type, msg) > std::tie(o.t, o.type, o.msg);
  }
};

class Simulation {
 public:
  Simulation(const Trace& trace, const NetProfile& net, const DeviceProfile& device)
      : tr_(trace), net_(net), dev_(device), n_(trace.ranks.size()), st_(n_) {
    if (!(net.bandwidth_Bps > 0.0) || !(net.latency_s >= 0.0))
      throw SimError("network profile '" + net.name + "' needs a bandwidth > 0 and a latency ≥ 0");
    if (device.mode == DeviceProfile::Mode::roofline &&
        !(device.peak_flops > 0.0 && device.mem_bw_Bps > 0.0))
      throw SimError("device profile '" + device.name + "' needs a peak and a bandwidth > 0");
    for (size_t r = 0; r < n_; ++r) {
      if (tr_.ranks[r].rank != (int)r)
        throw SimError("trace: ranks[" + std::to_string(r) + "] says it is rank " +
                       std::to_string(tr_.ranks[r].rank));
      check_spans((int)r);
    }
    pair_messages();
  }

  SimResult run() {
    for (size_t r = 0; r < n_; ++r) advance((int)r);
    while (!events_.empty()) {
      const Event ev = events_.top();
      events_.pop();
      Msg& m = msgs_[ev.msg];
      switch (ev.type) {
        case kDepart:
          ready_.insert({m.depart, ev.msg});
          break;
        case kTransferEnd:
          egress_busy_[m.src] = false;
          ingress_busy_[m.dst] = false;
          events_.push({m.arrive, kArrive, ev.msg});
          break;
        case kArrive: {
          m.arrived = true;
          RankState& s = st_[m.dst];
          if (s.blocked && (int64_t)s.cursor == m.wait_span) advance(m.dst);
          break;
        }
      }
      if (ev.type != kArrive) start_transfers(ev.t);
    }
    for (size_t r = 0; r < n_; ++r)
      if (!st_[r].done) throw stuck_error((int)r);
    return result();
  }

 private:
  std::string name(int r) const {
    const std::string& p = tr_.ranks[r].party;
    return "rank " + std::to_string(r) + (p.empty() ? "" : " (" + p + ")");
  }

  std::string span_str(int r, int64_t i) const {
    const Span& s = tr_.ranks[r].spans[i];
    return "span " + std::to_string(i) + " (" + span_kind_name(s.kind) + ", step " +
           std::to_string(s.step) + (s.layer >= 0 ? ", layer " + std::to_string(s.layer) : "") + ")";
  }

  std::string msg_str(const Msg& m) const {
    return "the message " + name(m.src) + " → " + name(m.dst) +
           (m.layer >= 0 ? " at layer " + std::to_string(m.layer) : " outside the layers") +
           " on channel " + comm_kind_name(static_cast<CommKind>(m.channel)) + " (seq " +
           std::to_string(m.seq) + ")";
  }

  void check_spans(int r) {
    const std::vector<Span>& spans = tr_.ranks[r].spans;
    for (size_t i = 0; i < spans.size(); ++i) {
      const Span& s = spans[i];
      if ((int)s.kind < 0 || (int)s.kind >= kNumSpanKinds)
        throw SimError("trace: " + name(r) + " span " + std::to_string(i) + " has kind " +
                       std::to_string((int)s.kind) + ", not a SpanKind");
      if (!(s.t_end >= s.t_start) || !std::isfinite(s.t_start) || !std::isfinite(s.t_end))
        throw SimError("trace: " + name(r) + " " + span_str(r, i) + " ends before it starts");
      if (i > 0 && s.t_start < spans[i - 1].t_end - 1e-9)
        throw SimError("trace: " + name(r) + " " + span_str(r, i) + " starts before " +
                       span_str(r, i - 1) + " ends: spans must be contiguous, in program order");
    }
    RankState& st = st_[r];
    st.gap.assign(spans.size(), 0.0);
    st.start.assign(spans.size(), 0.0);
    st.end.assign(spans.size(), 0.0);
    st.sends.assign(spans.size(), {});
    st.waits.assign(spans.size(), {});
    st.bound_by.assign(spans.size(), -1);
    for (size_t i = 0; i < spans.size(); ++i)
      st.gap[i] = std::max(0.0, spans[i].t_start - (i ? spans[i - 1].t_end : 0.0));
  }

  // Pairs every send with its receive by (src, dst, layer, channel, seq).
  void pair_messages() {
    using Key = std::tuple<int, int, uint64_t, int, int>;  // src, dst, seq, layer, channel
    std::map<Key, std::pair<const MessageEvent*, const MessageEvent*>> pairs;
    for (size_t r = 0; r < n_; ++r) {
      const std::vector<Span>& spans = tr_.ranks[r].spans;
      for (const MessageEvent& e : tr_.ranks[r].messages) {
        if (e.peer < 0 || e.peer >= (int)n_ || e.peer == (int)r)
          throw SimError("trace: " + name((int)r) + " has a message with peer " +
                         std::to_string(e.peer) + " (world size " + std::to_string(n_) + ")");
        if (e.direction != 0 && e.direction != 1)
          throw SimError("trace: " + name((int)r) + " has a message with direction " +
                         std::to_string(e.direction));
        const bool sent = e.direction == 0;
        const Key key = sent ? Key{(int)r, e.peer, e.seq, e.layer, e.channel}
                             : Key{e.peer, (int)r, e.seq, e.layer, e.channel};
        auto& slot = sent ? pairs[key].first : pairs[key].second;
        if (slot)
          throw SimError("trace: " + name((int)r) + " has two " + (sent ? "sends" : "receives") +
                         " with the same (src, dst, layer, channel, seq) = (" +
                         std::to_string(std::get<0>(key)) + ", " + std::to_string(std::get<1>(key)) +
                         ", " + std::to_string(e.layer) + ", " + std::to_string(e.channel) + ", " +
                         std::to_string(e.seq) + ")");
        const int64_t span = sent ? e.post_span : e.complete_span;
        if (span < 0 || span >= (int64_t)spans.size())
          throw SimError("trace: " + name((int)r) + ": a " + (sent ? "sent" : "received") +
                         " message's " + (sent ? "post_span " : "complete_span ") +
                         std::to_string(span) + " is outside its " + std::to_string(spans.size()) +
                         " spans");
        if (!sent && spans[span].kind != SpanKind::wait)
          throw SimError("trace: " + name((int)r) + ": a message from rank " +
                         std::to_string(e.peer) + " completes in " + span_str((int)r, span) +
                         ", not in a wait span");
        slot = &e;
      }
    }
    for (const auto& [key, pr] : pairs) {
      Msg m;
      std::tie(m.src, m.dst, m.seq, m.layer, m.channel) = key;
      if (!pr.first || !pr.second) {
        throw SimError("trace: unpaired message: " + msg_str(m) + (pr.first ? " was sent but never received"
                                                                           : " was received but never sent") +
                       (tr_.meta.complete ? "" : " (the trace is incomplete: the run ended early)"));
      }
      if (pr.first->wire_bytes != pr.second->wire_bytes)
        throw SimError("trace: " + msg_str(m) + " was sent with " +
                       std::to_string(pr.first->wire_bytes) + " wire bytes but received with " +
                       std::to_string(pr.second->wire_bytes));
      m.send_span = pr.first->post_span;
      m.wait_span = pr.second->complete_span;
      m.bytes = (double)pr.first->wire_bytes;
      const int id = (int)msgs_.size();
      msgs_.push_back(m);
      st_[m.src].sends[m.send_span].push_back(id);
      st_[m.dst].waits[m.wait_span].push_back(id);
    }
    egress_busy_.assign(n_, false);
    ingress_busy_.assign(n_, false);
  }

  // Runs rank r from its cursor until a wait that lacks a message, or to its end.
  void advance(int r) {
    RankState& s = st_[r];
    const std::vector<Span>& spans = tr_.ranks[r].spans;
    s.blocked = false;
    while (s.cursor < spans.size()) {
      const size_t i = s.cursor;
      if (!s.entered) {
        s.clock += s.gap[i];
        s.start[i] = s.clock;
        s.entered = true;
      }
      double end = s.clock;
      if (spans[i].kind == SpanKind::wait) {
        for (int id : s.waits[i]) {
          const Msg& m = msgs_[id];
          if (!m.arrived) {
            s.blocked = true;
            return;
          }
          if (m.arrive > end) {
            end = m.arrive;
            s.bound_by[i] = id;
          }
        }
      } else {
        end += span_seconds(spans[i], dev_);
      }
      s.end[i] = end;
      for (int id : s.sends[i]) {
        msgs_[id].depart = end;
        events_.push({end, kDepart, id});
      }
      s.clock = end;
      s.entered = false;
      ++s.cursor;
    }
    s.done = true;
  }

  // Grants free ports to ready messages in (departure, src, dst, seq) order.
  void start_transfers(double now) {
    for (auto it = ready_.begin(); it != ready_.end();) {
      Msg& m = msgs_[it->second];
      if (egress_busy_[m.src] || ingress_busy_[m.dst]) {
        ++it;
        continue;
      }
      egress_busy_[m.src] = ingress_busy_[m.dst] = true;
      m.start = now;
      m.end = now + m.bytes / net_.bandwidth_Bps;
      m.arrive = m.end + net_.latency_s;
      events_.push({m.end, kTransferEnd, it->second});
      it = ready_.erase(it);
    }
  }

  SimError stuck_error(int r) const {
    const RankState& s = st_[r];
    std::string why;
    for (int id : s.waits[s.cursor]) {
      const Msg& m = msgs_[id];
      if (m.arrived) continue;
      const RankState& snd = st_[m.src];
      why = msg_str(m) + ", which " + name(m.src) + " posts in " + span_str(m.src, m.send_span) +
            ", never comes: " + name(m.src) +
            (snd.done ? " finished without reaching it"
                      : " is itself stuck in " + span_str(m.src, (int64_t)snd.cursor));
      break;
    }
    return SimError("trace: " + name(r) + " waits forever in " + span_str(r, (int64_t)s.cursor) +
                    ": " + why + " (the trace's waits and messages are inconsistent)");
  }

  SimResult result() const {
    SimResult res;
    res.net = net_;
    res.device = dev_;
    res.messages = msgs_.size();
    for (const Msg& m : msgs_) res.network_busy_s += m.end - m.start;
    for (size_t r = 0; r < n_; ++r) {
      const RankTrace& rt = tr_.ranks[r];
      const RankState& s = st_[r];
      SimRank sr;
      sr.rank = (int)r;
      sr.party = rt.party;
      for (size_t i = 0; i < rt.spans.size(); ++i) {
        const Span& sp = rt.spans[i];
        const double d = s.end[i] - s.start[i];
        sr.busy_s[(int)SpanKind::other] += s.gap[i];
        if (sp.kind == SpanKind::wait) sr.idle_s += d;
        else sr.busy_s[(int)sp.kind] += d;
        if (dev_.mode == DeviceProfile::Mode::roofline && is_compute(sp.kind) && sp.flops == 0.0 &&
            sp.mem_bytes == 0.0)
          ++res.uncosted_compute_spans;
      }
      sr.end_s = s.clock;
      sr.measured_end_s = rt.spans.empty() ? 0.0 : rt.spans.back().t_end;
      res.measured_wall_s = std::max(res.measured_wall_s, sr.measured_end_s);
      res.wall_s = std::max(res.wall_s, sr.end_s);
      res.ranks.push_back(sr);
    }
    // Steps, on rank 0: first span of the step to its last.
    if (n_ > 0) {
      const std::vector<Span>& spans = tr_.ranks[0].spans;
      const RankState& s = st_[0];
      std::map<int, std::array<double, 4>> by_step;  // predicted first, last; measured first, last
      for (size_t i = 0; i < spans.size(); ++i) {
        auto [it, fresh] = by_step.try_emplace(spans[i].step, std::array<double, 4>{
            s.start[i], s.end[i], spans[i].t_start, spans[i].t_end});
        if (fresh) continue;
        std::array<double, 4>& a = it->second;
        a = {std::min(a[0], s.start[i]), std::max(a[1], s.end[i]),
             std::min(a[2], spans[i].t_start), std::max(a[3], spans[i].t_end)};
      }
      for (const auto& [step, a] : by_step) res.steps.push_back({step, a[1] - a[0], a[3] - a[2]});
    }
    res.critical = critical_path(res);
    return res;
  }

  CriticalPath critical_path(const SimResult& res) const {
    CriticalPath cp;
    for (size_t r = 0; r < n_; ++r)
      if (res.ranks[r].end_s > res.ranks[cp.end_rank].end_s) cp.end_rank = (int)r;
    if (n_ == 0) return cp;
    int r = cp.end_rank;
    int64_t i = (int64_t)tr_.ranks[r].spans.size() - 1;
    while (i >= 0) {
      const RankState& s = st_[r];
      const Span& sp = tr_.ranks[r].spans[i];
      cp.kind_s[(int)SpanKind::other] += s.gap[i];
      const int bound = sp.kind == SpanKind::wait ? s.bound_by[i] : -1;
      if (bound < 0) {
        cp.kind_s[(int)sp.kind] += s.end[i] - s.start[i];  // a wait here lasted 0 s
        --i;
        continue;
      }
      // The wait ended when this message arrived: follow it back to its sender. The part of
      // the wait before its departure ran in parallel with the sender's work.
      const Msg& m = msgs_[bound];
      cp.queue_s += m.start - m.depart;
      cp.transfer_s += m.end - m.start;
      cp.latency_s += m.arrive - m.end;
      ++cp.messages;
      r = m.src;
      i = m.send_span;
    }
    return cp;
  }

  const Trace& tr_;
  NetProfile net_;
  DeviceProfile dev_;
  size_t n_;
  std::vector<RankState> st_;
  std::vector<Msg> msgs_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::set<std::pair<double, int>> ready_;  // (departure, id): waiting for their ports
  std::vector<bool> egress_busy_, ingress_busy_;
};

double sum(const std::array<double, kNumSpanKinds>& a) {
  double t = 0.0;
  for (double v : a) t += v;
  return t;
}

}  // namespace

double SimRank::busy_total() const { return sum(busy_s); }
double CriticalPath::total_s() const { return sum(kind_s) + network_s(); }

double SimResult::prefill_s() const {
  for (const SimStep& s : steps)
    if (s.step == 0) return s.predicted_s;
  return 0.0;
}
double SimResult::measured_prefill_s() const {
  for (const SimStep& s : steps)
    if (s.step == 0) return s.measured_s;
  return 0.0;
}
double SimResult::decode_total_s() const {
  double t = 0.0;
  for (const SimStep& s : steps)
    if (s.step > 0) t += s.predicted_s;
  return t;
}
double SimResult::measured_decode_total_s() const {
  double t = 0.0;
  for (const SimStep& s : steps)
    if (s.step > 0) t += s.measured_s;
  return t;
}
int SimResult::decode_steps() const {
  int n = 0;
  for (const SimStep& s : steps) n += s.step > 0;
  return n;
}

SimResult simulate(const Trace& trace, const NetProfile& net, const DeviceProfile& device) {
  return Simulation(trace, net, device).run();
}

}  // namespace cascade
