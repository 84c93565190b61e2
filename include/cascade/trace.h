// Per-layer traces of a run (`cascade run --trace FILE`): what every party did and when, every
// message it sent and received, and optionally (--trace-views) the bytes of every message that
// arrived at it — the input of the network simulator (sim.h) and of the security evaluation.
//
// Recording. Each rank keeps its own TraceRecorder in memory (nothing when tracing is off: the
// roles and the transport hold a null pointer). The roles record the compute spans, the
// transport the `send` spans (isend), the `wait` spans (wait_all, blocking receives) and the
// messages. A rank's time is cut into spans, in program order, that cover it
// from its start (the release of the start barrier) to its end (the stop message): compute
// spans (embed, prepass, pack, attention, merge, postpass, lm_head), `send` (posting messages:
// encoding and handing them to MPI), `wait` (blocked until messages complete) and `other`
// (anything else, e.g. bookkeeping between spans). Compute spans carry the FLOPs and the bytes
// of memory traffic their shapes imply (weights read + activations read and written), so that
// a roofline model can replace their measured time. Messages carry the time they were posted
// and the time they completed, their peer, layer, channel and bytes (wire and payload), and a
// sequence number per (src, dst, layer, channel): the n-th send on a channel is the n-th
// receive (MPI keeps that order), which is how the simulator pairs them.
//
// Step numbers: 0 is the prefill; the decode step at position p is p − n_prompt + 1.
//
// At the end every rank sends its recording to rank 0 (point-to-point, kind `trace`, outside
// the protocol's figure), which writes one HDF5 file (trace_io.h) with this layout:
//
//   /meta                  attributes: trace_version (int, 1), complete (int 0/1; 0: error, the
//                          reason, and /ranks holds only rank 0), views (0/1),
//                          cascade_version, git_commit, start_time (ISO 8601 UTC), command_line,
//                          model_name, model_source (path or synthetic:NAME), model_sha256,
//                          model_shape (int[6]: n_layer, d_model, n_head, n_head_kv, d_head,
//                          n_vocab), d_ff, n_prompt, n_generated, alpha, beta, c, delta, seed,
//                          strategy, attn_sharding, lm_head, rho, backend ("cpu"), transport
//                          ("mpi"), wire_precision ("fp32"), world_size, hosts (string[world]),
//                          bytes_sent, bytes_received, bytes_predicted (the whole run's protocol
//                          and header bytes, counted at both ends and by the model)
//   /schedule/comp         int32[n_positions]   CompNode of each position
//   /schedule/att          int32[n_positions]   attention shard of each position
//   /schedule/parties      compound[world − 1]  rank, kind (1 comp, 2 attn), k, a, b, observed,
//                          fraction, gap (0: none), shortest_hole, longest_run, generated
//   /ranks/<r>             attributes: party (e.g. "AttnNode (0,1)"), host, host_cores,
//                          t0_monotonic_s, wall_s, compute_s, wait_s, bytes_sent,
//                          messages_sent, rss_kb, rss_anon_kb, pss_kb
//   /ranks/<r>/spans       compound[]: step, layer, kind (SpanKind), t_start, t_end, cpu_s,
//                          flops, mem_bytes
//   /ranks/<r>/messages    compound[]: direction (0 sent, 1 received), peer, step, layer,
//                          channel (CommKind), kinds (bit i set: a part of CommKind i), seq,
//                          wire_bytes, payload_bytes, t_post, t_complete, post_span,
//                          complete_span
//   /ranks/<r>/views/...   with --trace-views, for every message this rank received, as it
//                          arrived: parts compound[] (message: index into messages, kind,
//                          positions_offset, n_positions, data_offset, bytes), positions
//                          int32[], data uint8[] (the payloads, exactly the bytes that arrived)
// Times are seconds (double) since the rank's own start; ranks of one run start together (the
// barrier's release), and the simulator uses only durations and the message pairing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/comm_model.h"
#include "cascade/exposure.h"
#include "cascade/memory_stats.h"
#include "cascade/message.h"
#include "cascade/schedule.h"

namespace cascade {

inline constexpr int kTraceVersion = 1;

enum class SpanKind : int32_t {
  embed = 0,   // token ids → hidden rows
  prepass,     // RMSNorm, the fused Q|K|V GEMM, RoPE
  pack,        // copying rows into send buffers, or unpacking received rows
  send,        // posting messages (encoding, handing them to MPI)
  wait,        // blocked until messages complete
  attention,   // partial attention (m, e, u) of an AttnNode
  merge,       // the merge of partials
  postpass,    // O-projection, residual, RMSNorm, the SwiGLU MLP
  lm_head,     // final norm and output matrix (client under --lm-head client, else a CompNode)
  other,       // the rest of the rank's time
};
inline constexpr int kNumSpanKinds = 10;
const char* span_kind_name(SpanKind kind);  // "embed", "prepass", ...
bool is_compute(SpanKind kind);             // not send, wait or other

struct Span {
  int32_t step = 0;
  int32_t layer = -1;  // −1 outside the layers
  SpanKind kind = SpanKind::other;
  double t_start = 0.0, t_end = 0.0;  // seconds since the rank's start
  double cpu_s = 0.0;                 // thread CPU time inside the span
  double flops = 0.0;                 // floating-point operations the shapes imply
  double mem_bytes = 0.0;             // bytes of memory traffic the shapes imply
  double seconds() const { return t_end - t_start; }
};

struct MessageEvent {
  int32_t direction = 0;  // 0 sent by this rank, 1 received
  int32_t peer = -1;
  int32_t step = 0;
  int32_t layer = -1;
  int32_t channel = 0;    // CommKind of the MPI channel (q for up messages, kv or not)
  int32_t kinds = 0;      // bit i: the message has a part of CommKind i
  uint64_t seq = 0;       // n-th message from src to dst on (layer, channel), from 0
  uint64_t wire_bytes = 0;     // header + payload
  uint64_t payload_bytes = 0;
  double t_post = 0.0, t_complete = 0.0;
  // Index (into RankTrace::spans) of the span in which the message was posted (a `send` span
  // for sends, the `wait` span of the receive for receives) and of the span in which it
  // completed (a `wait` span): the simulator's dependencies.
  int64_t post_span = -1, complete_span = -1;
};

// --trace-views: the parts of the received messages, flattened.
struct ViewPart {
  int64_t message = 0;  // index into RankTrace::messages (a received one)
  int32_t kind = 0;     // CommKind
  uint64_t positions_offset = 0, n_positions = 0;  // into RankTrace::view_positions
  uint64_t data_offset = 0, bytes = 0;             // into RankTrace::view_data
};

struct RankTrace {
  int rank = 0;
  std::string party;  // "CompNode 2"
  std::string host;
  double wall_s = 0.0, compute_s = 0.0, wait_s = 0.0;
  uint64_t bytes_sent = 0, messages_sent = 0;
  uint64_t rss_kb = 0, rss_anon_kb = 0, pss_kb = 0;
  // The rank's time 0 on its host's monotonic clock (CLOCK_MONOTONIC seconds: comparable
  // between the ranks of one host, not across hosts) and the host's online cores.
  double t0_monotonic_s = 0.0;
  int32_t host_cores = 0;
  std::vector<Span> spans;             // in program order, contiguous
  std::vector<MessageEvent> messages;  // in the order they completed
  std::vector<ViewPart> view_parts;
  std::vector<int32_t> view_positions;
  std::vector<uint8_t> view_data;
};

struct TraceMeta {
  bool complete = true;  // false: the run ended early (a rank failed); see error
  // Why an incomplete run ended, as the rank that saved the trace (rank 0) saw it. Such a trace
  // holds only the recordings that rank had (its own): `ranks` may miss ranks.
  std::string error;
  bool views = false;
  std::string cascade_version, git_commit, start_time, command_line;
  std::string model_name, model_source, model_sha256;
  int d_ff = 0;
  int n_generated = 0;
  int rho = 0;
  std::string backend = "cpu", transport = "mpi", wire_precision = "fp32";
  int world_size = 0;
  // Bytes of the whole run (protocol + message headers; reports and traces left out): counted
  // by the senders, by the receivers, and predicted by the communication model.
  uint64_t bytes_sent = 0, bytes_received = 0, bytes_predicted = 0;
  std::vector<std::string> hosts;  // per rank
};

struct Trace {
  TraceMeta meta;
  Schedule schedule;  // with the model shape; its alpha, beta, c, delta, ... are the run's
  std::vector<RankTrace> ranks;  // by rank, 0..world−1 (an incomplete trace: the recorded ones)
};

// The FLOPs and memory bytes of compute spans, from the model's dims (fp32 weights and rows).
struct SpanCost {
  double flops = 0.0, mem_bytes = 0.0;
};
SpanCost cost_prepass(const ModelShape& m, int d_ff, int rows);
SpanCost cost_postpass(const ModelShape& m, int d_ff, int rows);
// `pairs`: (query, key) pairs a partial attention scores, summed over its queries.
SpanCost cost_attention(const ModelShape& m, uint64_t queries, uint64_t keys, uint64_t pairs);
SpanCost cost_merge(const ModelShape& m, int rows, int n_partials);
SpanCost cost_lm_head(const ModelShape& m, int rows);
SpanCost cost_copy(uint64_t bytes);  // embed, pack: bytes read + written

// One rank's recorder. Spans are opened and closed in program order; the recorder fills the
// gaps between them with `other`, so that the spans always cover the rank's time.
class TraceRecorder {
 public:
  TraceRecorder(int rank, bool views);

  void start();  // the rank's time 0 (after the start barrier)
  void set_step(int step) { step_ = step; }
  int step() const { return step_; }

  void begin(SpanKind kind, int layer);
  void end(SpanCost cost = {});
  // The same with a reading of this thread's CPU clock the caller took (ComputeTimer::now()),
  // so that a compute section reads that clock once at each end, not twice.
  void begin(SpanKind kind, int layer, double cpu_now);
  void end(SpanCost cost, double cpu_now);

  // Index the open span will have in RankTrace::spans (−1 when none is open).
  int64_t current_span() const { return is_open_ ? open_index_ : -1; }

  // A completed message, from the transport (Transport::set_trace), inside its wait span: as
  // sent, or as it arrived (parts and payload in arrived order: recorded as views when enabled).
  void message(const Message& msg, bool outgoing, uint64_t wire_bytes, int channel,
               std::chrono::steady_clock::time_point posted, int64_t post_span,
               std::chrono::steady_clock::time_point completed, const uint8_t* payload);

  // Closes the timeline (a last `other` span up to now) and copies the rank's totals in.
  void finish(double wall_s, double compute_s, double wait_s, uint64_t bytes_sent,
              uint64_t messages_sent, const MemoryStats& memory);
  RankTrace& data() { return data_; }

 private:
  double now() const;
  double since_start(std::chrono::steady_clock::time_point t) const;
  void add_gap(double t, double cpu);  // an `other` span from the last span's end to t

  RankTrace data_;
  bool views_;
  int step_ = 0;
  std::chrono::steady_clock::time_point t0_;
  double last_end_ = 0.0;  // end of the last span, where `other` starts
  double cpu_last_ = 0.0;  // thread CPU time then
  Span open_;
  int64_t open_index_ = -1;
  bool is_open_ = false;
  std::map<std::tuple<int, int, int, int>, uint64_t> seq_;  // (direction, peer, layer, channel)
};

// A rank's recording as bytes (sent to rank 0 at the end) and back; decode validates sizes.
std::vector<uint8_t> encode_rank_trace(const RankTrace& r);
RankTrace decode_rank_trace(const uint8_t* data, size_t size);

}  // namespace cascade
