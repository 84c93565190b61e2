// estimate_receiver(): the receiving host's wake-up and receive rate, measured in a trace (see
// sim.h).
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

ReceiverEstimate estimate_receiver(const Trace& trace, const NetProfile& recorded_on) {
  const std::vector<sim_detail::PairedMessage> msgs = sim_detail::pair_messages(trace);
  auto depart = [&](const sim_detail::PairedMessage& m) {
    return trace.ranks[m.src].spans[m.send_span].t_end;
  };
  // delay = completion (receiver's clock) − departure (sender's clock), per (src, dst).
  std::map<std::pair<int, int>, std::vector<double>> delays;
  for (const sim_detail::PairedMessage& m : msgs) delays[{m.src, m.dst}].push_back(m.t_complete - depart(m));
  std::map<std::pair<int, int>, double> medians;
  for (const auto& [pair, d] : delays) medians[pair] = median_of(d);

  std::vector<double> bytes, excess;
  for (const sim_detail::PairedMessage& m : msgs) {
    const auto back = medians.find({m.dst, m.src});
    if (back == medians.end()) continue;  // one way only: the clocks cannot be aligned
    // offset = receiver's clock − sender's clock, if the median delay is the same both ways.
    const double offset = 0.5 * (medians.at({m.src, m.dst}) - back->second);
    const double wait_start = trace.ranks[m.dst].spans[m.wait_span].t_start - offset;  // sender's clock
    if (wait_start > depart(m)) continue;  // the receiver was not waiting yet
    const double delay = m.t_complete - offset - depart(m);
    bytes.push_back((double)m.wire_bytes);
    excess.push_back(delay - recorded_on.latency_s - (double)m.wire_bytes / recorded_on.bandwidth_Bps);
  }
  ReceiverEstimate e;
  e.profile.name = "trace";
  e.samples = excess.size();
  if (excess.empty()) return e;
  // Least squares: excess = W + bytes / R.
  const double n = (double)excess.size();
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < excess.size(); ++i) {
    sx += bytes[i];
    sy += excess[i];
    sxx += bytes[i] * bytes[i];
    sxy += bytes[i] * excess[i];
  }
  const double den = n * sxx - sx * sx;
  const double slope = den > 0.0 ? (n * sxy - sx * sy) / den : 0.0;
  if (slope > 0.0) {
    e.profile.rx_Bps = 1.0 / slope;
    e.profile.wake_s = std::max(0.0, (sy - slope * sx) / n);
  } else {
    e.profile.wake_s = std::max(0.0, sy / n);  // no size dependence: the mean
  }
  e.mean_s = sy / n;
  std::sort(excess.begin(), excess.end());
  e.median_s = median_of(excess);
  e.p90_s = excess[std::min(excess.size() - 1, excess.size() * 9 / 10)];
  return e;
}

}  // namespace cascade
