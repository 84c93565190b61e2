// The three Cascade roles (PROTOCOL.md). Every MPI rank plays one party:
//   rank 0        client/planner: sends the schedule, each CompNode its own token ids, receives
//                 the final row of each step, applies the final norm + LM head (--lm-head
//                 client), samples, drives decoding (control messages)
//   ranks 1..α    CompNodes: embedding, pre-pass (norm, Q/K/V, RoPE), merge of partials,
//                 O-proj, MLP; under --lm-head comp the owner of the last position applies
//                 the final norm + LM head itself
//   the rest      AttnNodes (a, b): partial attention (m, e, u) of query shard a against
//                 key/value shard b, keeping their K/V rows as the KV cache for decoding
//
// Message sequence (all point-to-point; see comm_model.h for the exact bytes; every message
// also carries a header with the positions of its rows, message.h):
//   client → every rank   schedule (validated on arrival; an empty one means "abort")
//   client → CompNode k   token ids of k's prompt positions
//   per layer             CompNode k → AttnNode (a, b): q rows of k's positions in shard a,
//                           then k rows and v rows of k's positions in shard b
//                         AttnNode (a, b) → CompNode k: (m, e, u) of k's rows in shard a
//   owner of last pos.    final hidden row (--lm-head client) or logits row (comp) → client
//   per decode step       client → every rank: control (DECODE, p); client → comp(p): token id;
//                         then the layers as above for the single position p
//   end                   client → every rank: control (STOP); every rank → client: its report
// Every party checks every message it receives against its view (view.h) and aborts the run on
// a violation; no MPI collective is used (transport.h), so a dead or stuck peer is a timeout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cascade/fault.h"
#include "cascade/memory_stats.h"
#include "cascade/model.h"
#include "cascade/packed_gemm.h"
#include "cascade/sampler.h"
#include "cascade/schedule.h"
#include "cascade/trace.h"
#include "cascade/transport.h"

namespace cascade {

struct RankTrace;

class Backend;
class DeviceLink;

// Time one party spent, split as the benchmark needs it.
struct PartyStats {
  double wall_s = 0.0;     // from receiving the schedule to the stop message
  double compute_s = 0.0;  // inside compute sections (GEMMs, kernels, packing)
  double wait_s = 0.0;     // blocked waiting for messages
  uint64_t bytes_sent = 0;
  uint64_t messages_sent = 0;
  MemoryStats memory;      // at the end of the run (peak RSS in hwm_kb)
};

struct ClientOptions {
  int n_generate = 16;       // tokens to sample (the first comes from the prefill's logits);
                             // an encoder samples none and must be given 1 (one pass)
  int32_t stop_token = -1;   // stop early when this token is sampled (−1: never)
  SamplerOptions sampler;
  bool keep_logits = false;  // keep every logits row (tests, --compare-reference)
  // --lm-head client: the weights whose final norm and output matrix the client applies to
  // each final hidden row (the client is the user, who may hold them). Unused under comp.
  const Model* model = nullptr;
  // The backend of the LM head, its weights prepared (Backend::prepare_weights); nullptr: a
  // CPU backend made by run_client, in fp32.
  Backend* backend = nullptr;
  // Called with each sampled token as it arrives (streaming output).
  std::function<void(int32_t)> on_token;
  Fault fault;  // test-only (fault.h): kill at rank 0
};

struct ClientResult {
  std::vector<int32_t> tokens;             // sampled tokens
  std::vector<std::vector<float>> logits;  // every logits row, if keep_logits
  std::vector<float> hidden;               // an encoder's output: (n_prompt, d) last hidden rows
  double compute_s = 0.0;                  // CPU time in the LM head (--lm-head client)
};

// Rank 0: sends the schedule to every rank (the world size must be schedule.n_ranks()).
void send_schedule(Transport& t, const Schedule& schedule);
// Rank 0, after send_schedule: prefill of `prompt` (schedule.n_prompt tokens), then decoding.
ClientResult run_client(Transport& t, const Schedule& schedule, const std::vector<int32_t>& prompt,
                        const ClientOptions& opt);

// Rank 0 when the run cannot start (bad arguments, refused schedule): tells every other rank
// to exit (an empty schedule message).
void abort_run(Transport& t);

// Ranks ≥ 1: receive the schedule from rank 0 and validate it; returns false when the
// client aborted the run. Throws on a malformed schedule or a wrong world size.
bool receive_schedule(Transport& t, Schedule& schedule);

// Rank 1..α. `model` holds the weights in `backend`'s memory (device_model.h; its shape must be
// the schedule's). The role fills in compute_s; run_cascade the rest.
PartyStats run_comp_node(Transport& t, const Schedule& schedule, const Model& model,
                         Backend& backend, const Fault& fault = {});
// AttnNode ranks: no weights; the dims come with the schedule (schedule.shape). The role fills
// in compute_s; run_cascade the rest.
PartyStats run_attn_node(Transport& t, const Schedule& schedule, Backend& backend,
                         const Fault& fault = {});

// ---- a whole run, every rank ------------------------------------------------------------

struct CascadeSetup {
  // Rank 0 only: the schedule (with the model's shape), the prompt, sampling (and the
  // weights of the LM head under --lm-head client).
  Schedule schedule;
  std::vector<int32_t> prompt;
  ClientOptions client;
  // CompNodes only, called once the role is known: the weights. AttnNodes never load a model:
  // the dims they need travel in the schedule.
  std::function<const Model&()> model;
  // CompNodes and the LM head at the client: the weight GEMMs' precision (packed_gemm.h).
  Precision precision = Precision::f32;
  // CompNodes and AttnNodes: their backend, made once the role is known (a CUDA one: the
  // node-local rank's GPU); nullptr: the CPU. The client always runs on the CPU: it is the
  // user's machine, and the LM head it applies is one row per step.
  std::function<std::unique_ptr<Backend>()> backend;
  // CompNodes and AttnNodes, with a device backend: the device link their payloads take
  // (device_link.h, NCCL), made once the backend is (collective over the parties); nullptr:
  // payloads go through the transport, staged through the host.
  std::function<std::unique_ptr<DeviceLink>(Backend&)> link;
  Fault fault;
  // Every rank: record a trace (trace.h), and with views the bytes every message carried.
  bool trace = false;
  bool trace_views = false;
  // With trace: where a run that throws leaves this rank's recording up to the error (rank 0
  // saves it in an incomplete trace). nullptr: dropped.
  RankTrace* partial_trace = nullptr;
};

// What rank 0 learns at the end (other ranks: ran, schedule and their own stats only).
struct CascadeReport {
  bool ran = false;                // false: the client aborted the run before it started
  Schedule schedule;
  ClientResult client;             // rank 0
  std::vector<PartyStats> stats;   // per rank (rank 0: all ranks; others: their own at [0])
  ByteCounts sent;                 // rank 0: bytes sent by every rank, merged
  ByteCounts received;             // rank 0: bytes received by every rank, merged
  std::vector<RankTrace> traces;   // with setup.trace: rank 0 every rank's recording, by rank;
                                   // others their own at [0]
};

// Runs this rank's party: rank 0 sends the schedule and drives the client; others receive
// it, load what their role needs, and serve. Every rank audits what it receives against its
// view (a ViewViolation aborts), and what it sends against the receiver's. A barrier after
// loading keeps model loading out of the timings. At the end every rank reports its stats,
// sent and received bytes to rank 0 (point-to-point, kind report; the reports' own bytes are
// in no report).
CascadeReport run_cascade(Transport& t, const CascadeSetup& setup);

// Where the byte counts of a finished run (rank 0's report) disagree: what every sender counted
// against what every receiver counted, per (src, dst, layer, kind), and both against the
// communication model for the tokens generated. Empty when all three are equal. The end-of-run
// reports are outside the model and left out.
std::vector<std::string> byte_count_differences(const CascadeReport& rep);

// Control message (8 bytes): a command and a position.
struct Control {
  int32_t command = 0;
  int32_t position = 0;
};
inline constexpr int32_t kControlDecode = 1;
inline constexpr int32_t kControlStop = 2;

}  // namespace cascade
