// Communication model (PROTOCOL.md "Communication model"): every message the protocol sends,
// and so the exact number of bytes every rank sends, per (src, dst, layer, kind), for a
// prefill, a decode step and a whole run. The transport counts what it really sends and
// receives with the same keys, and the three must be equal.
//
// Facts of our protocol the model includes (b = bytes per element of q/k/v/partials; the
// model dims are the schedule's `shape`):
//   per layer, for each position p (every layer alike):
//     q       CompNode comp(p) → AttnNodes (att(p), ·):  β·d_q·b
//     kv      CompNode comp(p) → AttnNodes (·, att(p)):  β·2·d_kv·b   (k and v together)
//     partial AttnNodes (att(p), ·) → comp(p):           β·n_h·(d_h + 2)·b   ((m, e, u) per head)
//   One message per (CompNode, AttnNode) pair with traffic per layer and direction, carrying
//   all its rows.
//   client (rank 0):
//     schedule  serialize(schedule).size() bytes to every other rank, once, before prefill
//     tokens    4 bytes (int32) per prompt token, one message to each CompNode owning any;
//               4 bytes to comp(p) per decode step
//     control   8 bytes (int32 command, int32 position) to every other rank per decode step,
//               and one final stop message of 8 bytes to every other rank
//     hidden    --lm-head client: d·4 bytes (fp32) from the CompNode owning the step's last
//               position to the client: one row after prefill, one per decode step
//     logits    --lm-head comp: n_vocab·4 bytes instead, from the same CompNode
//   header    every message is self-describing (net/message.h): a header of
//               12 + Σ_parts (16 + 4·rows) bytes (its parts' kinds, sizes and positions),
//             reported beside the protocol's figure, which excludes it.
// A run sampling G tokens = prefill (schedule + tokens + layers + final row → token 1), then
// G − 1 decode steps at positions N .. N+G−2, then the stop message. Barrier messages (0
// bytes), the end-of-run report (kind `report`) and the trace recordings sent to rank 0 with
// --trace (kind `trace`) are outside the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cascade/model_config.h"
#include "cascade/schedule.h"

namespace cascade {

// What a message part carries. hidden: the final hidden row of the last position (d floats) sent
// to the client under --lm-head client; logits: the logits row under --lm-head comp. header:
// the self-describing header every message carries (its parts' kinds and positions). report:
// the end-of-run report every rank sends to rank 0; trace: its trace recording (--trace); both
// outside the protocol's figure.
enum class CommKind : int { schedule = 0, tokens, control, q, kv, partial, hidden, logits, header, report, trace };
inline constexpr int kNumCommKinds = 11;
const char* comm_kind_name(CommKind kind);  // "schedule", "tokens", ..., "trace"

inline constexpr uint64_t kTokenBytes = 4;    // int32 token id
inline constexpr uint64_t kControlBytes = 8;  // int32 command + int32 position
inline constexpr uint64_t kFloatBytes = 4;    // fp32 element of a hidden or logits row

// Built-in dims of SmolLM2-135M-Instruct (the project's test model), used when no GGUF is
// given: 30 layers, d 576, 9 heads, 3 kv heads, d_head 64, ffn 1536, vocab 49152.
ModelConfig smollm2_135m_config();

// Bytes of one kind from one rank to another at one layer (layer = -1: client traffic).
struct CommFlow {
  int src = 0;
  int dst = 0;
  int layer = -1;
  CommKind kind = CommKind::q;
  uint64_t bytes = 0;
  bool operator==(const CommFlow& o) const {
    return src == o.src && dst == o.dst && layer == o.layer && kind == o.kind && bytes == o.bytes;
  }
};

// One message the protocol sends, as the model sees it: its parts' kinds, payload bytes and
// rows (positions carried, which the header lists).
struct PlannedMessage {
  struct Part {
    CommKind kind;
    uint64_t bytes;
    uint64_t rows;
  };
  int src = 0, dst = 0, layer = -1;
  std::vector<Part> parts;  // non-empty parts only
  uint64_t header_bytes() const;  // 12 + Σ (16 + 4·rows)
};

// Totals of a prefill, a decode step or a run.
struct CommEstimate {
  int n_layer = 0;
  int elem_bytes = 4;
  // Bytes moved at one layer index (every layer is identical), summed over the steps covered.
  uint64_t q_per_layer = 0;
  uint64_t kv_per_layer = 0;
  uint64_t partial_per_layer = 0;
  // Messages at one layer index: (CompNode, AttnNode) pairs with up traffic + pairs with
  // down traffic, summed over the steps covered.
  uint64_t messages_up_per_layer = 0;
  uint64_t messages_down_per_layer = 0;
  // Totals over all layers and the client.
  uint64_t schedule = 0, tokens = 0, control = 0, q = 0, kv = 0, partial = 0, hidden = 0,
           logits = 0;
  uint64_t header = 0;           // message headers, all messages (outside the protocol figure)
  uint64_t client_messages = 0;  // messages of kind schedule, tokens, control, hidden, logits

  uint64_t up_per_layer() const { return q_per_layer + kv_per_layer; }
  uint64_t down_per_layer() const { return partial_per_layer; }
  uint64_t messages_per_layer() const { return messages_up_per_layer + messages_down_per_layer; }
  uint64_t layers_total() const { return q + kv + partial; }
  uint64_t client_total() const { return schedule + tokens + control + hidden + logits; }
  uint64_t protocol_total() const { return layers_total() + client_total(); }  // PROTOCOL's figure
  uint64_t total() const { return protocol_total() + header; }                 // on the wire
  uint64_t messages() const { return messages_per_layer() * n_layer + client_messages; }
  uint64_t by_kind(CommKind kind) const;
  CommEstimate& operator+=(const CommEstimate& o);
};

// Bytes at one layer between CompNode k and AttnNode (a, b) for positions first..end-1:
//   q       = rows of k in shard a · d_q·b        (k → (a, b))
//   kv      = rows of k in shard b · 2·d_kv·b     (k → (a, b))
//   partial = rows of k in shard a · n_h·(d_h+2)·b   ((a, b) → k)
struct PairBytes {
  int k = 0, a = 0, b = 0;
  uint64_t rows_q = 0, rows_kv = 0;  // rows of k in shard a, in shard b
  uint64_t q = 0, kv = 0, partial = 0;
  uint64_t up() const { return q + kv; }
  uint64_t down() const { return partial; }
};
// Every (k, a, b), at index (k·β + a)·β + b. Throws std::invalid_argument when the schedule has
// no model shape, elem_bytes < 1 or the range is outside the schedule.
std::vector<PairBytes> layer_pair_bytes(const Schedule& s, int first, int end, int elem_bytes);

// The messages of a prefill of positions 0..n_prompt-1 (including the schedule broadcast, the
// prompt's token ids and the first final row), of one decode step at position p
// (n_prompt ≤ p < n_positions), of the final stop, and of a whole run sampling n_generate ≥ 1
// tokens (needs n_prompt + n_generate − 1 ≤ n_positions).
std::vector<PlannedMessage> messages_prefill(const Schedule& s, int elem_bytes);
std::vector<PlannedMessage> messages_decode_step(const Schedule& s, int position, int elem_bytes);
std::vector<PlannedMessage> messages_stop(const Schedule& s);
std::vector<PlannedMessage> messages_run(const Schedule& s, int n_generate, int elem_bytes);

// Their totals.
CommEstimate estimate(const Schedule& s, const std::vector<PlannedMessage>& messages, int elem_bytes);
CommEstimate predict_prefill(const Schedule& s, int elem_bytes);
CommEstimate predict_decode_step(const Schedule& s, int position, int elem_bytes);
CommEstimate predict_run(const Schedule& s, int n_generate, int elem_bytes);

// The same, as flows per (src, dst, layer, kind), headers included (kind header), merged and
// sorted by that key; zero-byte flows are left out.
std::vector<CommFlow> to_flows(const std::vector<PlannedMessage>& messages);
std::vector<CommFlow> flows_run(const Schedule& s, int n_generate, int elem_bytes);
// Merges flows with the same (src, dst, layer, kind) and sorts them by that key.
std::vector<CommFlow> merge_flows(std::vector<CommFlow> flows);
// Flows without the kinds outside the model (report, trace).
std::vector<CommFlow> protocol_flows(const std::vector<CommFlow>& flows);
// Where two sets of flows (merged and sorted, as above) differ, one line per (src, dst, layer,
// kind), e.g. "rank 1 → rank 5, layer 3, kv: sent 1536 B, received 0 B", at most `max_lines`
// (then "… and N more"). Empty when they are equal.
std::vector<std::string> flow_differences(const std::vector<CommFlow>& a, const std::vector<CommFlow>& b,
                                          const std::string& a_name, const std::string& b_name,
                                          size_t max_lines = 5);

// "1.23 MiB" (binary units; "123 B" below 1 KiB).
std::string format_bytes(uint64_t bytes);

}  // namespace cascade
