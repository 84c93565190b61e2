// estimate_wake(): the receivers' wake-up measured in a trace (see sim.h).
#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "cascade/sim.h"
#include "pairing.h"

namespace cascade {
namespace {

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

WakeEstimate estimate_wake(const Trace& trace, const NetProfile& recorded_on) {
  const std::vector<sim_detail::PairedMessage> msgs = sim_detail::pair_messages(trace);
  auto depart = [&](const sim_detail::PairedMessage& m) {
    return trace.ranks[m.src].spans[m.send_span].t_end;
  };
  // delay = completion (receiver's clock) − departure (sender's clock), per (src, dst).
  std::map<std::pair<int, int>, std::vector<double>> delays;
  for (const sim_detail::PairedMessage& m : msgs) delays[{m.src, m.dst}].push_back(m.t_complete - depart(m));

  std::vector<double> samples;
  for (const sim_detail::PairedMessage& m : msgs) {
    const auto ab = delays.find({m.src, m.dst});
    const auto ba = delays.find({m.dst, m.src});
    if (ba == delays.end()) continue;  // one way only: the clocks cannot be aligned
    // offset = (receiver's clock − sender's clock), if the median delay is the same both ways.
    const double offset = 0.5 * (median_of(ab->second) - median_of(ba->second));
    const double wait_start = trace.ranks[m.dst].spans[m.wait_span].t_start - offset;  // sender's clock
    if (wait_start > depart(m)) continue;  // the receiver was not waiting yet: no wake-up
    const double delay = m.t_complete - offset - depart(m);
    samples.push_back(delay - recorded_on.latency_s - (double)m.wire_bytes / recorded_on.bandwidth_Bps);
  }
  WakeEstimate w;
  w.samples = samples.size();
  if (samples.empty()) return w;
  double sum = 0.0;
  for (double s : samples) sum += s;
  w.mean_s = std::max(0.0, sum / (double)samples.size());
  std::sort(samples.begin(), samples.end());
  w.median_s = median_of(samples);
  w.p90_s = samples[std::min(samples.size() - 1, samples.size() * 9 / 10)];
  return w;
}

}  // namespace cascade
