// The network simulator: replays a trace (trace.h) as if every party had its own device and
// its own network interface, under a network profile (latency, bandwidth), a device profile
// (measured CPU time, or a roofline of a GPU) and a receiver profile (what the receiving host's
// software adds), to predict the runtime that such a deployment would see. This is how one
// machine reproduces runtime-vs-α curves.
//
// The model (`simulate`):
//   Ranks. Each rank starts at time 0 and replays its spans in program order. A span that is
//   not a `wait` takes its measured duration (t_end − t_start; a gap before it in the trace
//   counts as `other`). Under a roofline device (anything but cpu-measured and cpu-thread)
//   every compute span (is_compute) takes max(flops / peak_flops, mem_bytes / mem_bw) instead,
//   and the host's own spans (send, other) their thread CPU time;
//   under cpu-thread every non-wait span takes its thread CPU time (cpu_s), which removes the
//   time slices other ranks got when parties outnumbered cores (right for single-threaded
//   ranks only). A `wait` span lasts until the rank has received every message it completes
//   (those with complete_span == that span): it takes them in order of arrival; one that
//   arrives while the rank is idle in the wait wakes it W later, and each costs w / R of
//   receive processing (both from the receiver profile):
//     t = wait start; for each message by arrival: t = max(t, arrival + W) ; t += w / R
//   where max(t, arrival + W) is t when the message was there before the rank was idle.
//   Sends that complete in a wait never block it: the rank has handed the bytes to its NIC,
//   which delivers them on its own.
//   Receiver. W is the time from an arrival to the moment an idle receiver runs again: our
//   transport polls with short sleeps (sleep_for(20 µs) takes ~75 µs on Linux, timer slack
//   included) and a busy host's scheduler adds its latency; R is the rate at which it then takes
//   a message in (MPI's copy of a probed message, decoding, the view audit, the copy out). Both
//   belong to the receiving host's software, not to the network, so they stay the same under
//   every network profile. estimate_receiver() measures them in a trace, and `cascade simulate`
//   uses that estimate by default; `ideal` (W = 0, R = ∞) is the network model alone.
//   Messages. A message sent by rank s (direction 0) departs at the simulated end of the span it
//   was posted in (post_span). It is paired with its receive on the destination by
//   (src, dst, layer, channel, seq); an unpaired message is an error.
//   Network. Every rank has one NIC with an egress port (sends one message at a time) and an
//   ingress port (receives one at a time); a (src, dst) link therefore carries one message at a
//   time too (implied by the egress rule). A message of w wire bytes holds the sender's egress
//   and the receiver's ingress for x = w / B seconds from the moment both are free (cut-through:
//   no store-and-forward), and arrives L seconds after its transfer ends:
//     start = the earliest time ≥ departure at which egress(src) and ingress(dst) are free,
//     arrival = start + w / B + L.
//   Transfers are granted the ports in order of departure time, ties broken by (src, dst, seq);
//   a message whose ports are busy does not hold back a later one whose ports are free (a
//   discrete-event simulation, work-conserving and deterministic). Queueing = start − departure.
//   A trace in which some rank waits for a message that is never sent ends in an error naming
//   the rank, span and message: never a hang.
//
// Results: the predicted end of the run (the last rank's end), per step (0 = prefill, s =
// decode step s) the time on rank 0 from the step's first span to its last, per rank its busy
// seconds by span kind, idle (waiting) seconds and end, and the critical path: from the rank
// that ends last, back through its spans; at a wait that ended on an arrival the path follows
// the message that woke the rank last back to the span its sender posted it in (network time:
// latency, transfer and queueing; receiver time: the wake-up and the receive processing), and
// so on to time 0. Its parts add up to the predicted wall time.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/trace.h"

namespace cascade {

// Built-in network profiles (numbers and sources in src/sim/profiles.cpp and README.md):
//   loopback   0.61 µs, 7.7 GB/s   this machine's shared-memory MPI (`cascade bench net`)
//   nvlink     2 µs,   450 GB/s    NVLink 4 (H100 SXM5), one direction
//   ib-200g    2 µs,   25 GB/s     InfiniBand HDR 200 Gb/s (ConnectX-6)
//   lan-10g    50 µs,  1.25 GB/s   10 Gigabit Ethernet, kernel TCP through one switch
//   lan-1g     100 µs, 0.125 GB/s  Gigabit Ethernet
//   wan-100m   20 ms,  0.0125 GB/s 100 Mb/s wide-area link
//   custom:LAT_US,GBPS             e.g. custom:50,1.25
struct NetProfile {
  std::string name;
  double latency_s = 0.0;        // L
  double bandwidth_Bps = 0.0;    // B, bytes per second (> 0)
};

// Built-in device profiles:
//   cpu-measured   compute spans take their measured wall time (the default)
//   cpu-thread     every non-wait span takes its thread CPU time (oversubscribed runs)
//   a100           19.5 TFLOP/s fp32, 1555 GB/s (A100 40 GB SXM4, HBM2)
//   h100           67 TFLOP/s fp32, 3350 GB/s (H100 SXM5, HBM3)
//   custom:TFLOPS,GBPS             e.g. custom:19.5,1555
struct DeviceProfile {
  enum class Mode { measured, thread_time, roofline };
  std::string name;
  Mode mode = Mode::measured;
  double peak_flops = 0.0;   // FLOP/s (roofline only)
  double mem_bw_Bps = 0.0;   // bytes/s (roofline only)
};

// What the receiving host adds to every message (see the model above):
//   ideal                 W = 0, R = ∞: the network model alone
//   trace                 measured in the trace (estimate_receiver; `cascade simulate` only)
//   custom:WAKE_US,GBPS   e.g. custom:75,5 (GBPS 0 or inf: no processing time)
struct ReceiverProfile {
  std::string name = "ideal";
  double wake_s = 0.0;       // W
  double rx_Bps = 0.0;       // R, bytes per second; 0: receive processing takes no time
};

// Parse a profile name; throw std::invalid_argument naming the accepted forms.
NetProfile parse_net_profile(const std::string& spec);
DeviceProfile parse_device_profile(const std::string& spec);
ReceiverProfile parse_receiver_profile(const std::string& spec);  // not `trace`
std::vector<NetProfile> builtin_net_profiles();
std::vector<DeviceProfile> builtin_device_profiles();
// "custom:0.6,4.3" for a measured latency and bandwidth (what `cascade bench net` prints).
std::string custom_net_spec(double latency_s, double bandwidth_Bps);

// The time a span takes on a device: its measured time, its CPU time, or the roofline time of a
// compute span (non-compute spans take their CPU time on a roofline device).
double span_seconds(const Span& span, const DeviceProfile& device);

struct SimRank {
  int rank = 0;
  std::string party;
  std::array<double, kNumSpanKinds> busy_s{};  // by SpanKind; the wait entry stays 0
  double idle_s = 0.0;           // in wait spans (receive processing included)
  double end_s = 0.0;            // predicted
  double measured_end_s = 0.0;   // the end of its last span in the trace
  double busy_total() const;
};

struct SimStep {
  int step = 0;                  // 0 = prefill, s = decode step s
  double predicted_s = 0.0;      // rank 0, first span of the step to its last
  double measured_s = 0.0;       // the same in the trace
};

struct CriticalPath {
  int end_rank = 0;              // the rank that ends last, where the walk starts
  std::array<double, kNumSpanKinds> kind_s{};  // seconds of each span kind on the path
  double latency_s = 0.0, transfer_s = 0.0, queue_s = 0.0;  // the network on the path
  double receive_s = 0.0;        // receivers on the path: wake-ups and receive processing
  int messages = 0;              // messages the path goes through
  double network_s() const { return latency_s + transfer_s + queue_s; }
  double total_s() const;        // = SimResult::wall_s
};

struct SimResult {
  NetProfile net;
  DeviceProfile device;
  ReceiverProfile receiver;
  double wall_s = 0.0;           // predicted: the end of the rank that ends last
  double measured_wall_s = 0.0;  // the trace's: the latest end of any rank's last span
  std::vector<SimStep> steps;    // by step, 0..last
  std::vector<SimRank> ranks;    // by rank
  CriticalPath critical;
  uint64_t messages = 0;         // transfers simulated
  double network_busy_s = 0.0;   // Σ transfer time over all messages
  // Compute spans a roofline device gave 0 s because the trace has neither flops nor bytes
  // for them, and their measured seconds: legitimate for empty work (an AttnNode packing no
  // partials), a prediction to distrust when they held much of the measured time.
  uint64_t uncosted_compute_spans = 0;
  double uncosted_measured_s = 0.0;
  // Σ cpu_s / Σ (t_end − t_start) over the trace's compute spans: below ~0.95 the recording host
  // was busy or had more ranks than cores, so measured times include other processes' time
  // slices (cpu-thread removes them from the spans; a `trace` receiver still has them).
  double cpu_share = 1.0;

  double prefill_s() const;           // predicted step 0
  double decode_total_s() const;      // predicted, steps ≥ 1
  double measured_prefill_s() const;
  double measured_decode_total_s() const;
  int decode_steps() const;
};

class SimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Replays `trace` (see the model above). Throws SimError on an inconsistent trace: a span
// index out of range, a message completing outside a wait span, a send without its receive or
// a receive without its send, a wait for a message that never comes.
SimResult simulate(const Trace& trace, const NetProfile& net, const DeviceProfile& device,
                   const ReceiverProfile& receiver = ReceiverProfile{});

// The receiver measured in a trace. For every message received by a rank that was already
// waiting for it, excess = (its completion on the receiver) − (the end of the span its sender
// posted it in) − (L + w / B of `recorded_on`, the network the trace ran on); the median line
// excess = W + w / R over those messages (least absolute deviations: robust to the heavy tail
// of scheduler delays a busy or oversubscribed host adds) gives the profile (R = ∞ and W = the
// median when the slope is not positive; W ≥ 0). Ranks' clocks start at the release of the start barrier, which each rank
// sees at its own time, so per pair of ranks the offset between their clocks is taken from the
// messages both ways (half the difference of the two directions' median delays: it assumes the
// median is the same both ways). Pairs with messages one way only are left out; without any
// sample the profile is `ideal`.
struct ReceiverEstimate {
  ReceiverProfile profile;   // named "trace"
  uint64_t samples = 0;
  double mean_s = 0.0, median_s = 0.0, p90_s = 0.0;  // of the excess
};
ReceiverEstimate estimate_receiver(const Trace& trace, const NetProfile& recorded_on);

// Text report (the profiles, prefill / decode / whole run predicted beside measured, the
// per-party table and the critical path by kind) and its JSON form, for `cascade simulate`.
std::string sim_report_text(const SimResult& r);
std::string sim_report_json(const std::vector<SimResult>& results, const std::string& trace_path,
                            const ReceiverEstimate& measured = {});

}  // namespace cascade
