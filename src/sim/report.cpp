// The simulator's report: text for people, JSON for scripts (`cascade simulate`).
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/sim.h"

namespace cascade {
namespace {

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string device_str(const DeviceProfile& d) {
  switch (d.mode) {
    case DeviceProfile::Mode::measured:
      return d.name + " (every span takes its measured wall time)";
    case DeviceProfile::Mode::thread_time:
      return d.name + " (every span takes its thread CPU time)";
    case DeviceProfile::Mode::roofline:
      return d.name + fmt(" (compute spans: roofline of %.4g TFLOP/s, %.4g GB/s)",
                          d.peak_flops / 1e12, d.mem_bw_Bps / 1e9);
  }
  return d.name;
}

const char* mode_name(DeviceProfile::Mode m) {
  switch (m) {
    case DeviceProfile::Mode::measured: return "measured";
    case DeviceProfile::Mode::thread_time: return "thread_time";
    case DeviceProfile::Mode::roofline: return "roofline";
  }
  return "?";
}

std::string receiver_str(const ReceiverProfile& r) {
  if (r.wake_s == 0.0 && r.rx_Bps == 0.0) return r.name + " (wake-up 0, no receive processing)";
  return r.name + fmt(" (wake-up %.1f µs, ", r.wake_s * 1e6) +
         (r.rx_Bps > 0.0 ? fmt("receive processing %.3g GB/s)", r.rx_Bps / 1e9) : "no receive processing)");
}

std::string pct_err(double predicted, double measured) {
  return measured > 0.0 ? fmt("%+6.1f%%", 100.0 * (predicted - measured) / measured) : "      -";
}

// Span kinds that take time on some rank (the others would be empty columns).
std::vector<int> used_kinds(const SimResult& r) {
  std::vector<int> kinds;
  for (int k = 0; k < kNumSpanKinds; ++k) {
    if (k == (int)SpanKind::wait) continue;
    for (const SimRank& sr : r.ranks)
      if (sr.busy_s[k] > 0.0) {
        kinds.push_back(k);
        break;
      }
  }
  return kinds;
}

}  // namespace

std::string sim_report_text(const SimResult& r) {
  std::string s;
  s += fmt("network: %s (latency %.4g µs, bandwidth %.4g GB/s); device: %s\n", r.net.name.c_str(),
           r.net.latency_s * 1e6, r.net.bandwidth_Bps / 1e9, device_str(r.device).c_str());
  s += "receiver: " + receiver_str(r.receiver) + "\n";
  s += fmt("%llu messages simulated, %.6f s on the wire in all\n",
           (unsigned long long)r.messages, r.network_busy_s);
  if (r.cpu_share < 0.95)
    s += fmt("warning: the compute spans had %.0f%% of a CPU while recording (a busy host, or more "
             "ranks than cores): measured times include other processes' time slices; cpu-thread "
             "takes them out of the spans, a receiver measured in the trace keeps them\n",
             100.0 * r.cpu_share);
  if (r.uncosted_measured_s > 0.01 * r.measured_wall_s)
    s += fmt("warning: %llu compute spans carry no flops or bytes and took 0 s on this device; "
             "they were measured at %.6f s in all\n",
             (unsigned long long)r.uncosted_compute_spans, r.uncosted_measured_s);
  s += fmt("\n%-28s %12s %12s %8s\n", "", "predicted s", "measured s", "error");
  auto row = [&](const std::string& what, double p, double m) {
    s += fmt("%-28s %12.6f %12.6f %s\n", what.c_str(), p, m, pct_err(p, m).c_str());
  };
  row("prefill (step 0)", r.prefill_s(), r.measured_prefill_s());
  const int nd = r.decode_steps();
  if (nd > 0) {
    row(fmt("decode, mean of %d steps", nd), r.decode_total_s() / nd, r.measured_decode_total_s() / nd);
    row(fmt("decode, total of %d steps", nd), r.decode_total_s(), r.measured_decode_total_s());
  }
  row("whole run", r.wall_s, r.measured_wall_s);

  const std::vector<int> kinds = used_kinds(r);
  s += "\nper party, predicted seconds (busy by span kind, idle = waiting, end):\n";
  s += fmt("%4s %-16s", "rank", "party");
  for (int k : kinds) s += fmt(" %10s", span_kind_name((SpanKind)k));
  s += fmt(" %10s %10s %10s\n", "idle", "end", "measured");
  for (const SimRank& sr : r.ranks) {
    s += fmt("%4d %-16s", sr.rank, sr.party.c_str());
    for (int k : kinds) s += fmt(" %10.6f", sr.busy_s[k]);
    s += fmt(" %10.6f %10.6f %10.6f\n", sr.idle_s, sr.end_s, sr.measured_end_s);
  }

  const CriticalPath& cp = r.critical;
  const std::string end_party =
      cp.end_rank < (int)r.ranks.size() && !r.ranks[cp.end_rank].party.empty()
          ? " (" + r.ranks[cp.end_rank].party + ")" : "";
  s += fmt("\ncritical path: %.6f s, ending on rank %d%s, through %d messages:\n", cp.total_s(),
           cp.end_rank, end_party.c_str(), cp.messages);
  const double total = cp.total_s() > 0.0 ? cp.total_s() : 1.0;
  for (int k = 0; k < kNumSpanKinds; ++k)
    if (cp.kind_s[k] > 0.0)
      s += fmt("  %-10s %12.6f s %6.1f%%\n", span_kind_name((SpanKind)k), cp.kind_s[k],
               100.0 * cp.kind_s[k] / total);
  s += fmt("  %-10s %12.6f s %6.1f%%  (latency %.6f, transfer %.6f, queueing %.6f)\n", "network",
           cp.network_s(), 100.0 * cp.network_s() / total, cp.latency_s, cp.transfer_s, cp.queue_s);
  s += fmt("  %-10s %12.6f s %6.1f%%  (wake-ups and receive processing)\n", "receivers", cp.receive_s,
           100.0 * cp.receive_s / total);
  return s;
}

std::string sim_report_json(const std::vector<SimResult>& results, const std::string& trace_path,
                            const ReceiverEstimate& measured) {
  using nlohmann::json;
  json out = {{"trace", trace_path},
              {"receiver_measured", {{"samples", measured.samples},
                                     {"wake_us", measured.profile.wake_s * 1e6},
                                     {"rx_GBps", measured.profile.rx_Bps / 1e9},
                                     {"excess_mean_us", measured.mean_s * 1e6},
                                     {"excess_median_us", measured.median_s * 1e6},
                                     {"excess_p90_us", measured.p90_s * 1e6}}},
              {"results", json::array()}};
  for (const SimResult& r : results) {
    auto by_kind = [](const std::array<double, kNumSpanKinds>& a) {
      json j = json::object();
      for (int k = 0; k < kNumSpanKinds; ++k)
        if (k != (int)SpanKind::wait) j[span_kind_name((SpanKind)k)] = a[k];
      return j;
    };
    const int nd = r.decode_steps();
    json j = {
        {"net", {{"name", r.net.name}, {"latency_us", r.net.latency_s * 1e6},
                 {"bandwidth_GBps", r.net.bandwidth_Bps / 1e9}}},
        {"device", {{"name", r.device.name}, {"mode", mode_name(r.device.mode)},
                    {"peak_tflops", r.device.peak_flops / 1e12},
                    {"mem_GBps", r.device.mem_bw_Bps / 1e9}}},
        {"receiver", {{"name", r.receiver.name}, {"wake_us", r.receiver.wake_s * 1e6},
                      {"rx_GBps", r.receiver.rx_Bps / 1e9}}},
        {"predicted", {{"wall_s", r.wall_s}, {"prefill_s", r.prefill_s()},
                       {"decode_steps", nd}, {"decode_total_s", r.decode_total_s()},
                       {"decode_mean_s", nd ? r.decode_total_s() / nd : 0.0}}},
        {"measured", {{"wall_s", r.measured_wall_s}, {"prefill_s", r.measured_prefill_s()},
                      {"decode_steps", nd}, {"decode_total_s", r.measured_decode_total_s()},
                      {"decode_mean_s", nd ? r.measured_decode_total_s() / nd : 0.0}}},
        {"messages", r.messages},
        {"network_busy_s", r.network_busy_s},
        {"uncosted_compute_spans", r.uncosted_compute_spans},
        {"uncosted_measured_s", r.uncosted_measured_s},
        {"cpu_share", r.cpu_share},
    };
    j["steps"] = json::array();
    for (const SimStep& st : r.steps)
      j["steps"].push_back({{"step", st.step}, {"predicted_s", st.predicted_s},
                            {"measured_s", st.measured_s}});
    j["ranks"] = json::array();
    for (const SimRank& sr : r.ranks)
      j["ranks"].push_back({{"rank", sr.rank}, {"party", sr.party}, {"busy_s", by_kind(sr.busy_s)},
                            {"idle_s", sr.idle_s}, {"end_s", sr.end_s},
                            {"measured_end_s", sr.measured_end_s}});
    const CriticalPath& cp = r.critical;
    j["critical_path"] = {{"end_rank", cp.end_rank}, {"messages", cp.messages},
                          {"total_s", cp.total_s()}, {"kinds_s", by_kind(cp.kind_s)},
                          {"network_s", cp.network_s()}, {"latency_s", cp.latency_s},
                          {"transfer_s", cp.transfer_s}, {"queue_s", cp.queue_s},
                          {"receive_s", cp.receive_s}};
    out["results"].push_back(j);
  }
  return out.dump(2);
}

}  // namespace cascade
