// estimate_receiver(): the receiving host's wake-up and receive rate, measured in a trace (see
// sim.h).
#include <algorithm>
#include <cmath>
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
  // Median regression excess = W + bytes / R (least absolute deviations, by iteratively
  // reweighted least squares): the excess has a heavy tail of scheduler delays (other processes,
  // or other ranks when parties outnumber cores) that a device per party would not see, and the
  // median line ignores it where a least-squares line would chase it.
  const double n = (double)excess.size();
  const double scale = 1e6;  // bytes in MB: keeps the normal equations well conditioned
  double w_s = 0.0, slope = 0.0;  // W, and seconds per MB
  for (int iter = 0; iter < 100; ++iter) {
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < excess.size(); ++i) {
      const double x = bytes[i] / scale, y = excess[i];
      const double r = iter == 0 ? 1.0 : std::fabs(y - w_s - slope * x);
      const double w = 1.0 / std::max(r, 1e-9);
      sw += w;
      sx += w * x;
      sy += w * y;
      sxx += w * x * x;
      sxy += w * x * y;
    }
    const double den = sw * sxx - sx * sx;
    const double b = den > 1e-12 * sw * sxx ? (sw * sxy - sx * sy) / den : 0.0;  // one size: no slope
    const double a = (sy - b * sx) / sw;
    const bool done = std::fabs(a - w_s) < 1e-9 && std::fabs(b - slope) < 1e-9;
    w_s = a;
    slope = b;
    if (done) break;
  }
  if (slope > 0.0) {
    e.profile.rx_Bps = scale / slope;
    e.profile.wake_s = std::max(0.0, w_s);
  } else {
    e.profile.wake_s = std::max(0.0, median_of(excess));  // no size dependence: the median
  }
  double sy = 0.0;
  for (double v : excess) sy += v;
  e.mean_s = sy / n;
  std::sort(excess.begin(), excess.end());
  e.median_s = median_of(excess);
  e.p90_s = excess[std::min(excess.size() - 1, excess.size() * 9 / 10)];
  return e;
}

}  // namespace cascade
