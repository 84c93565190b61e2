// The three Cascade roles (PROTOCOL.md). Every MPI rank plays one party:
//   rank 0        client/planner: sends the schedule, each CompNode its own token ids, receives
//                 the final logits row, samples, drives decoding (control messages)
//   ranks 1..α    CompNodes: embedding, pre-pass (norm, Q/K/V, RoPE), merge of partials,
//                 O-proj, MLP; the owner of the last position applies the final norm + LM head
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
//   owner of last pos.    logits row → client
//   per decode step       client → every rank: control (DECODE, p); client → comp(p): token id;
//                         then the layers as above for the single position p
//   end                   client → every rank: control (STOP)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cascade/model.h"
#include "cascade/sampler.h"
#include "cascade/schedule.h"
#include "cascade/transport.h"

namespace cascade {

class Backend;

// Time one party spent, split as the benchmark needs it.
struct PartyStats {
  double wall_s = 0.0;     // from receiving the schedule to the stop message
  double compute_s = 0.0;  // inside compute sections (GEMMs, kernels, packing)
  double wait_s = 0.0;     // blocked waiting for messages
  uint64_t bytes_sent = 0;
  uint64_t messages_sent = 0;
};

struct ClientOptions {
  int n_generate = 16;       // tokens to sample (the first comes from the prefill's logits)
  int32_t stop_token = -1;   // stop early when this token is sampled (−1: never)
  SamplerOptions sampler;
  bool keep_logits = false;  // keep every logits row received (tests)
  // Called with each sampled token as it arrives (streaming output).
  std::function<void(int32_t)> on_token;
};

struct ClientResult {
  std::vector<int32_t> tokens;             // sampled tokens
  std::vector<std::vector<float>> logits;  // rows received, if keep_logits
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

// Fault injection for tests: this party stops answering (sleeps) at the given layer.
struct FaultOptions {
  int stall_rank = -1;
  int stall_layer = 0;
};

// Rank 1..α. `model` holds the weights. The role fills in compute_s; run_cascade the rest.
PartyStats run_comp_node(Transport& t, const Schedule& schedule, const Model& model,
                         Backend& backend, const FaultOptions& fault = {});
// AttnNode ranks. Only the shapes of `cfg` are used; an AttnNode holds no weights. The role
// fills in compute_s; run_cascade the rest.
PartyStats run_attn_node(Transport& t, const Schedule& schedule, const ModelConfig& cfg,
                         Backend& backend, const FaultOptions& fault = {});

// ---- a whole run, every rank ------------------------------------------------------------

struct CascadeSetup {
  // Rank 0 only: the schedule, the prompt, sampling.
  Schedule schedule;
  std::vector<int32_t> prompt;
  ClientOptions client;
  // Every other rank, called once its role is known: CompNodes need the weights, AttnNodes
  // the shapes only.
  std::function<const Model&()> model;
  std::function<ModelConfig()> config;
  FaultOptions fault;
};

// What rank 0 learns at the end (other ranks: ran, schedule and their own stats only).
struct CascadeReport {
  bool ran = false;                // false: the client aborted the run before it started
  Schedule schedule;
  ClientResult client;             // rank 0
  std::vector<PartyStats> stats;   // per rank (rank 0: all ranks; others: their own at [0])
  ByteCounts sent;                 // rank 0: bytes sent by every rank, merged
  ByteCounts received;             // rank 0: bytes received by every rank, merged
};

// Runs this rank's party: rank 0 sends the schedule and drives the client; others receive
// it, load what their role needs, and serve. A barrier after loading keeps model loading
// out of the timings. At the end every rank reports its stats, sent and received bytes to
// rank 0 (point-to-point, kind report; the reports' own bytes are in no report).
CascadeReport run_cascade(Transport& t, const CascadeSetup& setup);

// Control message (8 bytes): a command and a position.
struct Control {
  int32_t command = 0;
  int32_t position = 0;
};
inline constexpr int32_t kControlDecode = 1;
inline constexpr int32_t kControlStop = 2;

}  // namespace cascade
