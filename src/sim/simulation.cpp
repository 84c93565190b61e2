// simulate(): the discrete-event replay of a trace described in sim.h.
//
// Ranks run ahead on their own clocks until they reach a wait whose messages have not all
// arrived; the network is a queue of events (a message departs, a transfer ends, a message
// arrives) processed in time order. A rank's clock only depends on arrivals, and a message can
// only depart from a rank that is running, so processing events in time order while ranks run
// ahead is exact.
#include <algorithm>
#include <array>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/sim.h"
#include "pairing.h"

namespace cascade {
namespace {

struct Msg {
  sim_detail::PairedMessage p;
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
  Simulation(const Trace& trace, const NetProfile& net, const DeviceProfile& device,
             const ReceiverProfile& rx)
      : tr_(trace), net_(net), dev_(device), rx_(rx), n_(trace.ranks.size()), st_(n_) {
    if (!(net.bandwidth_Bps > 0.0) || !(net.latency_s >= 0.0))
      throw SimError("network profile '" + net.name + "' needs a bandwidth > 0 and a latency ≥ 0");
    if (device.mode == DeviceProfile::Mode::roofline &&
        !(device.peak_flops > 0.0 && device.mem_bw_Bps > 0.0))
      throw SimError("device profile '" + device.name + "' needs a peak and a bandwidth > 0");
    if (!(rx.wake_s >= 0.0) || !(rx.rx_Bps >= 0.0))
      throw SimError("receiver profile '" + rx.name + "' needs a wake-up ≥ 0 and a rate ≥ 0");
    for (const sim_detail::PairedMessage& p : sim_detail::pair_messages(trace)) {
      Msg m;
      m.p = p;
      m.bytes = (double)p.wire_bytes;
      msgs_.push_back(m);
    }
    for (size_t r = 0; r < n_; ++r) {
      const size_t n = tr_.ranks[r].spans.size();
      RankState& st = st_[r];
      st.gap.assign(n, 0.0);
      st.start.assign(n, 0.0);
      st.end.assign(n, 0.0);
      st.sends.assign(n, {});
      st.waits.assign(n, {});
      st.bound_by.assign(n, -1);
      for (size_t i = 0; i < n; ++i)
        st.gap[i] = std::max(0.0, tr_.ranks[r].spans[i].t_start - (i ? tr_.ranks[r].spans[i - 1].t_end : 0.0));
    }
    for (size_t id = 0; id < msgs_.size(); ++id) {
      st_[msgs_[id].p.src].sends[msgs_[id].p.send_span].push_back((int)id);
      st_[msgs_[id].p.dst].waits[msgs_[id].p.wait_span].push_back((int)id);
    }
    egress_busy_.assign(n_, false);
    ingress_busy_.assign(n_, false);
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
          egress_busy_[m.p.src] = false;
          ingress_busy_[m.p.dst] = false;
          events_.push({m.arrive, kArrive, ev.msg});
          break;
        case kArrive: {
          m.arrived = true;
          RankState& s = st_[m.p.dst];
          if (s.blocked && (int64_t)s.cursor == m.p.wait_span) advance(m.p.dst);
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
  std::string name(int r) const { return sim_detail::rank_name(tr_, r); }
  std::string span_str(int r, int64_t i) const { return sim_detail::span_name(tr_, r, i); }
  std::string msg_str(const Msg& m) const { return sim_detail::message_name(tr_, m.p); }

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
        std::vector<int>& ids = s.waits[i];
        for (int id : ids)
          if (!msgs_[id].arrived) {
            s.blocked = true;
            return;
          }
        // Take the messages in order of arrival: one that comes while the rank is idle wakes it
        // W later; each costs w / R to take in.
        std::sort(ids.begin(), ids.end(), [&](int a, int b) {
          return std::tie(msgs_[a].arrive, a) < std::tie(msgs_[b].arrive, b);
        });
        for (int id : ids) {
          const Msg& m = msgs_[id];
          if (m.arrive > end) {
            end = m.arrive + rx_.wake_s;
            s.bound_by[i] = id;
          }
          if (rx_.rx_Bps > 0.0) end += m.bytes / rx_.rx_Bps;
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
      if (egress_busy_[m.p.src] || ingress_busy_[m.p.dst]) {
        ++it;
        continue;
      }
      egress_busy_[m.p.src] = ingress_busy_[m.p.dst] = true;
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
      const RankState& snd = st_[m.p.src];
      why = msg_str(m) + ", which " + name(m.p.src) + " posts in " + span_str(m.p.src, m.p.send_span) +
            ", never comes: " + name(m.p.src) +
            (snd.done ? " finished without reaching it"
                      : " is itself stuck in " + span_str(m.p.src, (int64_t)snd.cursor));
      break;
    }
    return SimError("trace: " + name(r) + " waits forever in " + span_str(r, (int64_t)s.cursor) +
                    ": " + why + " (the trace's waits and messages are inconsistent)");
  }

  SimResult result() const {
    SimResult res;
    res.net = net_;
    res.device = dev_;
    res.receiver = rx_;
    res.messages = msgs_.size();
    double cpu = 0.0, wall = 0.0;
    for (const RankTrace& rt : tr_.ranks)
      for (const Span& sp : rt.spans)
        if (is_compute(sp.kind)) {
          cpu += sp.cpu_s;
          wall += sp.seconds();
        }
    if (wall > 0.0) res.cpu_share = cpu / wall;
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
            sp.mem_bytes == 0.0) {
          ++res.uncosted_compute_spans;
          res.uncosted_measured_s += sp.seconds();
        }
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
      if (sp.kind == SpanKind::wait && bound < 0) {
        cp.receive_s += s.end[i] - s.start[i];  // taking in messages that were there already
        --i;
        continue;
      }
      if (bound < 0) {
        cp.kind_s[(int)sp.kind] += s.end[i] - s.start[i];
        --i;
        continue;
      }
      // The wait ended when this message arrived: follow it back to its sender. The part of
      // the wait before its departure ran in parallel with the sender's work.
      const Msg& m = msgs_[bound];
      cp.queue_s += m.start - m.depart;
      cp.transfer_s += m.end - m.start;
      cp.latency_s += m.arrive - m.end;
      cp.receive_s += s.end[i] - m.arrive;
      ++cp.messages;
      r = m.p.src;
      i = m.p.send_span;
    }
    return cp;
  }

  const Trace& tr_;
  NetProfile net_;
  DeviceProfile dev_;
  ReceiverProfile rx_;
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
double CriticalPath::total_s() const { return sum(kind_s) + network_s() + receive_s; }

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

SimResult simulate(const Trace& trace, const NetProfile& net, const DeviceProfile& device,
                   const ReceiverProfile& receiver) {
  return Simulation(trace, net, device, receiver).run();
}

}  // namespace cascade
