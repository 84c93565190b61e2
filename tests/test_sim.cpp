// The network simulator (sim.h) on hand-built traces whose answers are worked out by hand.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <tuple>

#include "cascade/sim.h"

namespace cascade {
namespace {

// Builds a trace rank by rank: spans are appended back to back; a message is a send recorded
// on its sender (posted in a span) and a receive on its receiver (completing in a wait span).
struct TraceBuilder {
  Trace t;

  explicit TraceBuilder(int n) {
    for (int r = 0; r < n; ++r) {
      RankTrace rt;
      rt.rank = r;
      rt.party = "party " + std::to_string(r);
      t.ranks.push_back(rt);
    }
  }

  // Appends a span of `measured` seconds to rank r; returns its index.
  int64_t span(int r, SpanKind kind, double measured, int step = 0, int layer = -1,
               double flops = 0.0, double mem_bytes = 0.0, double cpu_s = -1.0) {
    std::vector<Span>& spans = t.ranks[r].spans;
    Span s;
    s.step = step;
    s.layer = layer;
    s.kind = kind;
    s.t_start = spans.empty() ? 0.0 : spans.back().t_end;
    s.t_end = s.t_start + measured;
    s.cpu_s = cpu_s < 0.0 ? measured : cpu_s;
    s.flops = flops;
    s.mem_bytes = mem_bytes;
    spans.push_back(s);
    return (int64_t)spans.size() - 1;
  }

  // A message of `bytes` wire bytes from src (posted in span post) to dst (completing in its
  // wait span `wait`); seq counts per (src, dst, layer, channel), as the recorder does.
  void message(int src, int64_t post, int dst, int64_t wait, uint64_t bytes, int layer = 0,
               CommKind channel = CommKind::q, bool send_side = true, bool recv_side = true) {
    const uint64_t seq = seq_[{src, dst, layer, (int)channel}]++;
    MessageEvent e;
    e.layer = layer;
    e.channel = (int)channel;
    e.seq = seq;
    e.wire_bytes = bytes;
    e.payload_bytes = bytes;
    if (send_side) {
      e.direction = 0;
      e.peer = dst;
      e.post_span = post;
      e.complete_span = post;
      t.ranks[src].messages.push_back(e);
    }
    if (recv_side) {
      e.direction = 1;
      e.peer = src;
      e.post_span = wait;
      e.complete_span = wait;
      t.ranks[dst].messages.push_back(e);
    }
  }

  std::map<std::tuple<int, int, int, int>, uint64_t> seq_;
};

// L = 1 ms, B = 1 MB/s: a 1000-byte message takes x = 1 ms on the wire.
const NetProfile kNet{"test", 1e-3, 1e6};
constexpr double kL = 1e-3, kX = 1e-3;
constexpr uint64_t kW = 1000;
const DeviceProfile kMeasured = parse_device_profile("cpu-measured");

void expect_path_adds_up(const SimResult& r) {
  EXPECT_NEAR(r.critical.total_s(), r.wall_s, 1e-12);
}

// A computes 1 s and sends w bytes to B (posting takes 0.25 s: the message departs at its
// end), which waits for them and computes 1 s.
TraceBuilder chain() {
  TraceBuilder b(2);
  b.span(0, SpanKind::prepass, 1.0, 0, 0);
  const int64_t send = b.span(0, SpanKind::send, 0.25, 0, 0);
  const int64_t wait = b.span(1, SpanKind::wait, 1.5, 0, 0);  // measured: irrelevant
  b.span(1, SpanKind::postpass, 1.0, 0, 0);
  b.message(0, send, 1, wait, kW);
  return b;
}

TEST(Sim, ChainEndsAfterComputeLatencyTransferCompute) {
  const SimResult r = simulate(chain().t, kNet, kMeasured);
  EXPECT_NEAR(r.wall_s, 1.25 + kL + kX + 1.0, 1e-12);
  EXPECT_NEAR(r.ranks[0].end_s, 1.25, 1e-12);
  EXPECT_NEAR(r.ranks[1].end_s, 1.25 + kL + kX + 1.0, 1e-12);
  EXPECT_NEAR(r.ranks[1].idle_s, 1.25 + kL + kX, 1e-12);
  EXPECT_NEAR(r.ranks[1].busy_s[(int)SpanKind::postpass], 1.0, 1e-12);
  EXPECT_NEAR(r.measured_wall_s, 2.5, 1e-12);
  EXPECT_EQ(r.messages, 1u);
  expect_path_adds_up(r);
}

TEST(Sim, ChainCriticalPathByKind) {
  const SimResult r = simulate(chain().t, kNet, kMeasured);
  const CriticalPath& cp = r.critical;
  EXPECT_EQ(cp.end_rank, 1);
  EXPECT_EQ(cp.messages, 1);
  EXPECT_NEAR(cp.kind_s[(int)SpanKind::prepass], 1.0, 1e-12);   // A's compute
  EXPECT_NEAR(cp.kind_s[(int)SpanKind::send], 0.25, 1e-12);      // A's posting
  EXPECT_NEAR(cp.kind_s[(int)SpanKind::postpass], 1.0, 1e-12);  // B's
  EXPECT_NEAR(cp.kind_s[(int)SpanKind::wait], 0.0, 1e-12);      // replaced by the network
  EXPECT_NEAR(cp.latency_s, kL, 1e-12);
  EXPECT_NEAR(cp.transfer_s, kX, 1e-12);
  EXPECT_NEAR(cp.queue_s, 0.0, 1e-12);
  EXPECT_NEAR(cp.total_s(), 2.25 + kL + kX, 1e-12);
}

TEST(Sim, IdleReceiverWakesUpAndTakesTheMessageIn) {
  // The chain with a receiver of W = 0.125 s and R = 8000 B/s (w / R = 0.125 s): B resumes
  // W + w / R after the arrival; on the critical path that is the receiver's, not the network's.
  const ReceiverProfile rx{"test", 0.125, 8000.0};
  const SimResult r = simulate(chain().t, kNet, kMeasured, rx);
  EXPECT_NEAR(r.wall_s, 1.25 + kL + kX + 0.25 + 1.0, 1e-12);
  EXPECT_NEAR(r.ranks[1].idle_s, 1.25 + kL + kX + 0.25, 1e-12);
  EXPECT_NEAR(r.critical.receive_s, 0.25, 1e-12);
  EXPECT_NEAR(r.critical.network_s(), kL + kX, 1e-12);
  EXPECT_EQ(r.receiver.name, "test");
  expect_path_adds_up(r);
}

TEST(Sim, ReceiverTakesMessagesInOrderOfArrival) {
  // Rank 2 waits for 2w from rank 1 (arrives at L + 2x) and w from rank 0 posted at 0.5 s:
  // with W = 0.125 s and R = 8000 B/s it wakes at L + 2x + W, takes the first in (0.25 s), is
  // idle again, wakes at 0.5 + L + x + W and takes the second in (0.125 s).
  TraceBuilder b(3);
  b.span(0, SpanKind::postpass, 0.5);
  const int64_t s0 = b.span(0, SpanKind::send, 0.0);
  const int64_t s1 = b.span(1, SpanKind::send, 0.0);
  const int64_t wait = b.span(2, SpanKind::wait, 0.0);
  b.message(1, s1, 2, wait, 2 * kW);
  b.message(0, s0, 2, wait, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured, ReceiverProfile{"test", 0.125, 8000.0});
  EXPECT_NEAR(r.wall_s, 0.5 + kL + kX + 0.125 + 0.125, 1e-12);
  EXPECT_NEAR(r.critical.kind_s[(int)SpanKind::postpass], 0.5, 1e-12);
  EXPECT_NEAR(r.critical.receive_s, 0.25, 1e-12);
  expect_path_adds_up(r);
  // A message that arrives while the rank is taking another in needs no wake-up.
  TraceBuilder c(3);
  const int64_t c0 = c.span(0, SpanKind::send, 0.0);
  const int64_t c1 = c.span(1, SpanKind::send, 0.0);
  const int64_t cw2 = c.span(2, SpanKind::wait, 0.0);
  c.message(1, c1, 2, cw2, 2 * kW);
  c.message(0, c0, 2, cw2, kW);
  // Both depart at 0 into rank 2's ingress: rank 0's (src order) arrives at L + x, rank 1's at
  // L + 3x; the rank wakes at L + x + W, takes w in until L + x + W + 0.125 > L + 3x, then 2w.
  EXPECT_NEAR(simulate(c.t, kNet, kMeasured, ReceiverProfile{"test", 0.125, 8000.0}).wall_s,
              kL + kX + 0.125 + 0.125 + 0.25, 1e-12);
}

TEST(Sim, MessagesThereBeforeTheWaitCostOnlyTheirProcessing) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  b.span(1, SpanKind::attention, 5.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.1);
  b.message(0, send, 1, wait, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured, ReceiverProfile{"test", 0.125, 8000.0});
  EXPECT_NEAR(r.wall_s, 5.125, 1e-12);
  EXPECT_NEAR(r.critical.receive_s, 0.125, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, WaitAfterArrivalTakesNoTime) {
  // B computes 5 s before it waits: the message is long there, the wait lasts 0 s, and the
  // critical path stays on B.
  TraceBuilder b(2);
  b.span(0, SpanKind::prepass, 1.0);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  b.span(1, SpanKind::attention, 5.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.1);
  b.span(1, SpanKind::postpass, 1.0);
  b.message(0, send, 1, wait, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.wall_s, 6.0, 1e-12);
  EXPECT_NEAR(r.ranks[1].idle_s, 0.0, 1e-12);
  EXPECT_EQ(r.critical.messages, 0);
  EXPECT_NEAR(r.critical.kind_s[(int)SpanKind::attention], 5.0, 1e-12);
  EXPECT_NEAR(r.critical.network_s(), 0.0, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, FanInSerialisesOnTheReceiversIngress) {
  // Three senders post w bytes at t = 0 to rank 0: its ingress takes them one after another,
  // so they arrive at L + x, L + 2x, L + 3x.
  TraceBuilder b(4);
  const int64_t wait = b.span(0, SpanKind::wait, 0.5);
  b.span(0, SpanKind::merge, 0.25);
  for (int s = 1; s <= 3; ++s) b.message(s, b.span(s, SpanKind::send, 0.0), 0, wait, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[0].idle_s, kL + 3 * kX, 1e-12);
  EXPECT_NEAR(r.wall_s, kL + 3 * kX + 0.25, 1e-12);
  EXPECT_NEAR(r.network_busy_s, 3 * kX, 1e-12);
  // The last one in (rank 3's: ties go by src) queued 2x behind the others.
  EXPECT_EQ(r.critical.messages, 1);
  EXPECT_NEAR(r.critical.queue_s, 2 * kX, 1e-12);
  EXPECT_NEAR(r.critical.transfer_s, kX, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, FanOutSerialisesOnTheSendersEgress) {
  // Rank 0 posts w bytes to ranks 1 and 2 at once: its egress sends one after the other.
  TraceBuilder b(3);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  const int64_t w1 = b.span(1, SpanKind::wait, 0.0);
  const int64_t w2 = b.span(2, SpanKind::wait, 0.0);
  b.message(0, send, 1, w1, kW);
  b.message(0, send, 2, w2, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[1].end_s, kL + kX, 1e-12);      // lower dst first
  EXPECT_NEAR(r.ranks[2].end_s, kL + 2 * kX, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, ContendedLinkCarriesOneMessageAtATime) {
  // Two messages back to back on the link 0 → 1; B waits for the first, computes x/2, waits
  // for the second: the second arrives at L + 2x, not L + x.
  TraceBuilder b(2);
  const int64_t s1 = b.span(0, SpanKind::send, 0.0);
  const int64_t s2 = b.span(0, SpanKind::send, 0.0);
  const int64_t w1 = b.span(1, SpanKind::wait, 0.0);
  b.span(1, SpanKind::pack, kX / 2);
  const int64_t w2 = b.span(1, SpanKind::wait, 0.0);
  b.message(0, s1, 1, w1, kW);
  b.message(0, s2, 1, w2, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[1].end_s, kL + 2 * kX, 1e-12);
  EXPECT_NEAR(r.ranks[1].idle_s, kL + 2 * kX - kX / 2, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, BusyPortDoesNotHoldBackAFreeOne) {
  // 0 → 1 holds 1's ingress for 10x from t = 0. 2 → 1 departs at x/2 and must wait for it;
  // 2 → 3 departs later, at x, but its ports are free: it goes at once (work-conserving), and
  // 2 → 1 then waits for 2's egress too.
  TraceBuilder b(4);
  const int64_t s0 = b.span(0, SpanKind::send, 0.0);
  b.span(2, SpanKind::other, kX / 2);
  const int64_t s21 = b.span(2, SpanKind::send, 0.0);
  b.span(2, SpanKind::other, kX / 2);
  const int64_t s23 = b.span(2, SpanKind::send, 0.0);
  const int64_t w1 = b.span(1, SpanKind::wait, 0.0);
  const int64_t w3 = b.span(3, SpanKind::wait, 0.0);
  b.message(0, s0, 1, w1, 10 * kW);
  b.message(2, s21, 1, w1, kW);
  b.message(2, s23, 3, w3, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[3].end_s, kX + kX + kL, 1e-12);
  EXPECT_NEAR(r.ranks[1].end_s, 10 * kX + kX + kL, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, WaitForTwoMessagesEndsOnTheLaterOne) {
  // Rank 2 waits for a message from rank 0 (posted at 1 s) and one from rank 1 (posted at
  // 3 s): it resumes at 3 + L + x, and its critical path runs through rank 1.
  TraceBuilder b(3);
  b.span(0, SpanKind::prepass, 1.0);
  const int64_t s0 = b.span(0, SpanKind::send, 0.0);
  b.span(1, SpanKind::attention, 3.0);
  const int64_t s1 = b.span(1, SpanKind::send, 0.0);
  const int64_t wait = b.span(2, SpanKind::wait, 0.0);
  b.span(2, SpanKind::merge, 0.5);
  b.message(0, s0, 2, wait, kW);
  b.message(1, s1, 2, wait, kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[2].end_s, 3.0 + kL + kX + 0.5, 1e-12);
  EXPECT_NEAR(r.wall_s, 3.5 + kL + kX, 1e-12);
  EXPECT_NEAR(r.critical.kind_s[(int)SpanKind::attention], 3.0, 1e-12);
  EXPECT_NEAR(r.critical.kind_s[(int)SpanKind::prepass], 0.0, 1e-12);
  EXPECT_NEAR(r.critical.kind_s[(int)SpanKind::merge], 0.5, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, SendsInAWaitDoNotBlockIt) {
  // Rank 0 posts a large message and waits (for nothing it receives): it goes on at once.
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  b.span(0, SpanKind::wait, 2.0);  // completes the send in the real run
  b.span(0, SpanKind::postpass, 1.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.0);
  b.message(0, send, 1, wait, 100 * kW);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.ranks[0].end_s, 1.0, 1e-12);
  EXPECT_NEAR(r.ranks[0].idle_s, 0.0, 1e-12);
  EXPECT_NEAR(r.ranks[1].end_s, kL + 100 * kX, 1e-12);
}

TEST(Sim, RooflineDeviceReplacesComputeSpans) {
  // A prepass of 2e12 flops and 1e9 bytes measured at 5 s; a pack of 1e9 bytes measured at
  // 0.5 s; a send span of 0.25 s (0.125 s of CPU) takes its CPU time on a roofline device.
  TraceBuilder b(1);
  b.span(0, SpanKind::prepass, 5.0, 0, 0, 2e12, 1e9, 4.0);
  b.span(0, SpanKind::pack, 0.5, 0, 0, 0.0, 1e9, 0.4);
  b.span(0, SpanKind::send, 0.25, 0, 0, 0.0, 0.0, 0.125);
  const DeviceProfile dev = parse_device_profile("custom:1,1000");  // 1 TFLOP/s, 1000 GB/s
  const SimResult r = simulate(b.t, kNet, dev);
  EXPECT_NEAR(r.ranks[0].busy_s[(int)SpanKind::prepass], 2.0, 1e-12);   // flops-bound
  EXPECT_NEAR(r.ranks[0].busy_s[(int)SpanKind::pack], 1e-3, 1e-12);     // memory-bound
  EXPECT_NEAR(r.ranks[0].busy_s[(int)SpanKind::send], 0.125, 1e-12);
  EXPECT_NEAR(r.wall_s, 2.0 + 1e-3 + 0.125, 1e-12);
  EXPECT_EQ(r.uncosted_compute_spans, 0u);
  EXPECT_NEAR(r.cpu_share, 4.4 / 5.5, 1e-12);  // compute spans only
  EXPECT_NE(sim_report_text(r).find("compute spans had 80% of a CPU"), std::string::npos);
  // cpu-measured: the wall times; cpu-thread: the CPU times.
  EXPECT_NEAR(simulate(b.t, kNet, kMeasured).wall_s, 5.75, 1e-12);
  EXPECT_NEAR(simulate(b.t, kNet, parse_device_profile("cpu-thread")).wall_s, 4.525, 1e-12);
}

TEST(Sim, RooflineCountsComputeSpansWithoutCosts) {
  TraceBuilder b(1);
  b.span(0, SpanKind::attention, 1.0);
  b.span(0, SpanKind::other, 1.0);
  const SimResult r = simulate(b.t, kNet, parse_device_profile("h100"));
  EXPECT_EQ(r.uncosted_compute_spans, 1u);
  EXPECT_NEAR(r.uncosted_measured_s, 1.0, 1e-12);
  EXPECT_NEAR(r.wall_s, 1.0, 1e-12);
  EXPECT_NE(sim_report_text(r).find("1 compute spans carry no flops or bytes"), std::string::npos);
}

TEST(Sim, StepTimesOnRankZero) {
  // Rank 0: step 0 computes 1 s, sends to rank 1 and waits (3 s measured) for its answer, which
  // rank 1 computes in 0.5 s; step 1 computes 0.25 s and step 2 0.125 s.
  TraceBuilder b(2);
  b.span(0, SpanKind::embed, 1.0, 0);
  const int64_t s0 = b.span(0, SpanKind::send, 0.0, 0);
  const int64_t w0 = b.span(0, SpanKind::wait, 3.0, 0);
  b.span(0, SpanKind::lm_head, 0.25, 1);
  b.span(0, SpanKind::lm_head, 0.125, 2);
  const int64_t w1 = b.span(1, SpanKind::wait, 1.0, 0);
  b.span(1, SpanKind::attention, 0.5, 0);
  const int64_t s1 = b.span(1, SpanKind::send, 0.0, 0);
  b.message(0, s0, 1, w1, kW, -1, CommKind::tokens);
  b.message(1, s1, 0, w0, kW, -1, CommKind::hidden);
  const SimResult r = simulate(b.t, kNet, kMeasured);
  ASSERT_EQ(r.steps.size(), 3u);
  EXPECT_EQ(r.steps[0].step, 0);
  EXPECT_NEAR(r.steps[0].predicted_s, 1.0 + 2 * (kL + kX) + 0.5, 1e-12);
  EXPECT_NEAR(r.steps[0].measured_s, 4.0, 1e-12);
  EXPECT_NEAR(r.steps[1].predicted_s, 0.25, 1e-12);
  EXPECT_NEAR(r.steps[2].predicted_s, 0.125, 1e-12);
  EXPECT_NEAR(r.prefill_s(), r.steps[0].predicted_s, 0.0);
  EXPECT_EQ(r.decode_steps(), 2);
  EXPECT_NEAR(r.decode_total_s(), 0.375, 1e-12);
  EXPECT_NEAR(r.measured_decode_total_s(), 0.375, 1e-12);
  EXPECT_NEAR(r.measured_wall_s, 4.375, 1e-12);
  expect_path_adds_up(r);
}

TEST(Sim, GapsInTheTraceCountAsOther) {
  TraceBuilder b(1);
  b.span(0, SpanKind::prepass, 1.0);
  b.t.ranks[0].spans.push_back({0, -1, SpanKind::postpass, 1.5, 2.0, 0.5, 0.0, 0.0});
  const SimResult r = simulate(b.t, kNet, kMeasured);
  EXPECT_NEAR(r.wall_s, 2.0, 1e-12);
  EXPECT_NEAR(r.ranks[0].busy_s[(int)SpanKind::other], 0.5, 1e-12);
  expect_path_adds_up(r);
}

// A ping-pong in true time, `rounds` times, round k with (k + 1)·w bytes each way: rank 0
// computes 5 ms, posts m1 and waits; rank 1 completes m1 at its arrival + W + bytes / R,
// computes 1 ms, posts m2, which rank 0 completes at its arrival + W + bytes / R. Rank 1's
// clock started 0.7 ms after rank 0's (the barrier's release reached it later).
TraceBuilder ping_pong(int rounds, double wake, double rx_Bps) {
  const double ms = 1e-3, offset = 0.7 * ms;
  TraceBuilder b(2);
  b.span(1, SpanKind::other, 0.0);
  double t = 0.0;  // true time at the start of the round
  for (int k = 0; k < rounds; ++k) {
    const uint64_t w = (k + 1) * kW;
    const double hop = kL + w / kNet.bandwidth_Bps + wake + w / rx_Bps;
    b.span(0, SpanKind::prepass, 5 * ms);
    const int64_t s1 = b.span(0, SpanKind::send, 0.0);
    const int64_t w0 = b.span(0, SpanKind::wait, hop + 1 * ms + hop);
    const double m1_done = t + 5 * ms + hop - offset;  // rank 1's clock
    const int64_t w1 = b.span(1, SpanKind::wait, m1_done - b.t.ranks[1].spans.back().t_end);
    b.span(1, SpanKind::attention, 1 * ms);
    const int64_t s2 = b.span(1, SpanKind::send, 0.0);
    b.message(0, s1, 1, w1, w);
    b.t.ranks[1].messages.back().t_complete = m1_done;
    b.message(1, s2, 0, w0, w);
    t += 5 * ms + hop + 1 * ms + hop;
    b.t.ranks[0].messages.back().t_complete = t;
  }
  return b;
}

TEST(SimReceiver, EstimatedFromBothDirectionsDespiteClockOffsets) {
  const TraceBuilder b = ping_pong(3, 0.5e-3, 4e6);  // W = 0.5 ms, R = 4 MB/s
  const ReceiverEstimate e = estimate_receiver(b.t, kNet);
  EXPECT_EQ(e.samples, 6u);
  EXPECT_EQ(e.profile.name, "trace");
  EXPECT_NEAR(e.profile.wake_s, 0.5e-3, 1e-9);
  EXPECT_NEAR(e.profile.rx_Bps, 4e6, 1e-3);
  EXPECT_NEAR(e.median_s, 0.5e-3 + 2 * kW / 4e6, 1e-12);  // the excess of the middle round
  // Replayed with it on the network it ran on, the run takes what it took.
  const SimResult r = simulate(b.t, kNet, kMeasured, e.profile);
  EXPECT_NEAR(r.wall_s, r.measured_wall_s, 1e-9);
  EXPECT_LT(simulate(b.t, kNet, kMeasured).wall_s, r.measured_wall_s - 6 * 0.5e-3);  // ideal
}

TEST(SimReceiver, WithoutSizeDependenceTheWakeUpIsTheMean) {
  const TraceBuilder b = ping_pong(1, 0.5e-3, 1e300);
  const ReceiverEstimate e = estimate_receiver(b.t, kNet);
  EXPECT_EQ(e.samples, 2u);
  EXPECT_NEAR(e.profile.wake_s, 0.5e-3, 1e-12);
  EXPECT_NEAR(e.p90_s, 0.5e-3, 1e-12);  // every sample, once the clocks are aligned
  EXPECT_EQ(e.profile.rx_Bps, 0.0);
}

TEST(SimReceiver, ReceiverNotYetWaitingAndOneWayPairsGiveNoSample) {
  // Rank 2 only receives (one way: its clock cannot be aligned); rank 1 gets a message long
  // before it waits for it.
  TraceBuilder b = ping_pong(3, 0.5e-3, 1e300);
  b.t.ranks.push_back(RankTrace{});
  b.t.ranks[2].rank = 2;
  const int64_t w2 = b.span(2, SpanKind::wait, 3e-3);
  const int64_t s3 = b.span(0, SpanKind::send, 0.0);
  b.message(0, s3, 2, w2, kW);
  b.span(1, SpanKind::attention, 50e-3);
  const int64_t w3 = b.span(1, SpanKind::wait, 0.0);
  b.message(0, s3, 1, w3, kW);
  b.t.ranks[1].messages.back().t_complete = b.t.ranks[1].spans[w3].t_end;
  const ReceiverEstimate e = estimate_receiver(b.t, kNet);
  EXPECT_EQ(e.samples, 6u);
  EXPECT_NEAR(e.profile.wake_s, 0.5e-3, 1e-9);
  EXPECT_EQ(estimate_receiver(chain().t, kNet).samples, 0u);  // one way only
  EXPECT_EQ(estimate_receiver(chain().t, kNet).profile.wake_s, 0.0);
}

std::string sim_error(const Trace& t) {
  try {
    simulate(t, kNet, kMeasured);
  } catch (const SimError& e) {
    return e.what();
  }
  return "no error";
}

TEST(SimErrors, SendWithoutReceive) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.0);
  b.message(0, send, 1, wait, kW, 3, CommKind::q, true, false);
  const std::string e = sim_error(b.t);
  EXPECT_NE(e.find("unpaired message"), std::string::npos) << e;
  EXPECT_NE(e.find("sent but never received"), std::string::npos) << e;
  EXPECT_NE(e.find("rank 0 (party 0) → rank 1 (party 1) at layer 3 on channel q"), std::string::npos) << e;
}

TEST(SimErrors, ReceiveWithoutSend) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.0);
  b.message(0, send, 1, wait, kW, 3, CommKind::q, false, true);
  b.t.meta.complete = false;
  const std::string e = sim_error(b.t);
  EXPECT_NE(e.find("received but never sent"), std::string::npos) << e;
  EXPECT_NE(e.find("the trace is incomplete"), std::string::npos) << e;
}

TEST(SimErrors, WaitWhoseMessageNeverComesIsAnErrorNotAHang) {
  // Each rank waits for the other's message, which the other posts only after its own wait.
  TraceBuilder b(2);
  const int64_t w0 = b.span(0, SpanKind::wait, 0.0);
  const int64_t s0 = b.span(0, SpanKind::send, 0.0);
  const int64_t w1 = b.span(1, SpanKind::wait, 0.0);
  const int64_t s1 = b.span(1, SpanKind::send, 0.0);
  b.message(0, s0, 1, w1, kW);
  b.message(1, s1, 0, w0, kW);
  const std::string e = sim_error(b.t);
  EXPECT_NE(e.find("rank 0 (party 0) waits forever in span 0 (wait, step 0)"), std::string::npos) << e;
  EXPECT_NE(e.find("is itself stuck in span 0 (wait"), std::string::npos) << e;
}

TEST(SimErrors, MessageCompletingOutsideAWait) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  const int64_t not_wait = b.span(1, SpanKind::merge, 1.0);
  b.message(0, send, 1, not_wait, kW);
  EXPECT_NE(sim_error(b.t).find("completes in span 0 (merge, step 0), not in a wait span"),
            std::string::npos);
}

TEST(SimErrors, SpanIndexOutOfRangeAndOverlaps) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  b.span(1, SpanKind::wait, 0.0);
  b.message(0, send, 1, 7, kW);
  EXPECT_NE(sim_error(b.t).find("complete_span 7 is outside its 1 spans"), std::string::npos);

  TraceBuilder o(1);
  o.span(0, SpanKind::prepass, 1.0);
  o.t.ranks[0].spans.push_back({0, -1, SpanKind::postpass, 0.5, 2.0, 0.0, 0.0, 0.0});
  EXPECT_NE(sim_error(o.t).find("starts before span 0 (prepass, step 0) ends"), std::string::npos);
}

TEST(SimErrors, SizeMismatchBetweenTheEnds) {
  TraceBuilder b(2);
  const int64_t send = b.span(0, SpanKind::send, 0.0);
  const int64_t wait = b.span(1, SpanKind::wait, 0.0);
  b.message(0, send, 1, wait, kW);
  b.t.ranks[1].messages[0].wire_bytes = kW + 1;
  EXPECT_NE(sim_error(b.t).find("sent with 1000 wire bytes but received with 1001"), std::string::npos);
}

TEST(SimProfiles, BuiltInsAndCustom) {
  const NetProfile lan = parse_net_profile("lan-10g");
  EXPECT_DOUBLE_EQ(lan.latency_s, 50e-6);
  EXPECT_DOUBLE_EQ(lan.bandwidth_Bps, 1.25e9);
  EXPECT_DOUBLE_EQ(parse_net_profile("nvlink").bandwidth_Bps, 450e9);
  EXPECT_DOUBLE_EQ(parse_net_profile("wan-100m").latency_s, 20e-3);
  for (const NetProfile& p : builtin_net_profiles()) EXPECT_EQ(parse_net_profile(p.name).name, p.name);
  const NetProfile c = parse_net_profile("custom:2.5,12");
  EXPECT_DOUBLE_EQ(c.latency_s, 2.5e-6);
  EXPECT_DOUBLE_EQ(c.bandwidth_Bps, 12e9);
  EXPECT_EQ(parse_net_profile(custom_net_spec(2.5e-6, 12e9)).bandwidth_Bps, 12e9);

  const DeviceProfile a100 = parse_device_profile("a100");
  EXPECT_EQ(a100.mode, DeviceProfile::Mode::roofline);
  EXPECT_DOUBLE_EQ(a100.peak_flops, 19.5e12);
  EXPECT_DOUBLE_EQ(a100.mem_bw_Bps, 1555e9);
  EXPECT_DOUBLE_EQ(parse_device_profile("h100").peak_flops, 67e12);
  EXPECT_EQ(parse_device_profile("cpu-measured").mode, DeviceProfile::Mode::measured);
  for (const DeviceProfile& p : builtin_device_profiles()) EXPECT_EQ(parse_device_profile(p.name).name, p.name);
}

TEST(SimProfiles, Receivers) {
  EXPECT_EQ(parse_receiver_profile("ideal").wake_s, 0.0);
  EXPECT_EQ(parse_receiver_profile("ideal").rx_Bps, 0.0);
  const ReceiverProfile r = parse_receiver_profile("custom:75,5");
  EXPECT_DOUBLE_EQ(r.wake_s, 75e-6);
  EXPECT_DOUBLE_EQ(r.rx_Bps, 5e9);
  EXPECT_EQ(parse_receiver_profile("custom:75,inf").rx_Bps, 0.0);
  for (const std::string bad : {"trace", "custom:75", "custom:-1,5", "fast"}) {
    try {
      parse_receiver_profile(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("ideal, or custom:WAKE_US,GBPS"), std::string::npos) << e.what();
    }
  }
}

TEST(SimProfiles, ParseErrorsNameTheAcceptedForms) {
  for (const std::string bad : {"lan10g", "custom:", "custom:50", "custom:50,0", "custom:-1,2",
                                "custom:50,1.25,3", "custom:x,1"}) {
    try {
      parse_net_profile(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("'" + bad + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("loopback, nvlink, ib-200g, lan-10g, lan-1g, wan-100m"), std::string::npos) << m;
      EXPECT_NE(m.find("custom:LAT_US,GBPS"), std::string::npos) << m;
    }
  }
  for (const std::string bad : {"a10", "custom:0,1", "custom:1"}) {
    try {
      parse_device_profile(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("cpu-measured, cpu-thread, a100, h100"), std::string::npos) << m;
      EXPECT_NE(m.find("custom:TFLOPS,GBPS"), std::string::npos) << m;
    }
  }
}

TEST(SimReport, TextAndJsonCarryTheNumbers) {
  const SimResult r = simulate(chain().t, kNet, kMeasured);
  const std::string text = sim_report_text(r);
  EXPECT_NE(text.find("network: test (latency 1000 µs, bandwidth 0.001 GB/s)"), std::string::npos) << text;
  EXPECT_NE(text.find("whole run"), std::string::npos) << text;
  EXPECT_NE(text.find("2.252000"), std::string::npos) << text;
  EXPECT_NE(text.find("critical path: 2.252000 s, ending on rank 1 (party 1), through 1 messages"),
            std::string::npos) << text;
  const std::string json = sim_report_json({r}, "run.h5");
  EXPECT_NE(json.find("\"wall_s\": 2.252"), std::string::npos) << json;
  EXPECT_NE(json.find("\"trace\": \"run.h5\""), std::string::npos) << json;
}

}  // namespace
}  // namespace cascade
