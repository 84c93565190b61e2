// Communication model. See include/cascade/comm_model.h for what is counted.
#include "cascade/comm_model.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <tuple>

#include "cascade/synthetic.h"

namespace cascade {

const char* comm_kind_name(CommKind kind) {
  switch (kind) {
    case CommKind::schedule: return "schedule";
    case CommKind::tokens: return "tokens";
    case CommKind::control: return "control";
    case CommKind::q: return "q";
    case CommKind::kv: return "kv";
    case CommKind::partial: return "partial";
    case CommKind::hidden: return "hidden";
    case CommKind::logits: return "logits";
    case CommKind::header: return "header";
    case CommKind::report: return "report";
    case CommKind::trace: return "trace";
  }
  return "?";
}

ModelConfig smollm2_135m_config() {
  ModelConfig c = synthetic_config("synthetic:smollm2-135m");  // the one table of shapes
  c.name = "SmolLM2-135M-Instruct (built-in dims)";
  return c;
}

uint64_t PlannedMessage::header_bytes() const {
  // u32 magic, i32 layer, u32 part count; per part u32 kind, u32 rows, u64 bytes, i32 rows[].
  uint64_t n = 12;
  for (const Part& p : parts) n += 16 + 4 * p.rows;
  return n;
}

uint64_t CommEstimate::by_kind(CommKind kind) const {
  switch (kind) {
    case CommKind::schedule: return schedule;
    case CommKind::tokens: return tokens;
    case CommKind::control: return control;
    case CommKind::q: return q;
    case CommKind::kv: return kv;
    case CommKind::partial: return partial;
    case CommKind::hidden: return hidden;
    case CommKind::logits: return logits;
    case CommKind::header: return header;
    case CommKind::report:
    case CommKind::trace: return 0;
  }
  return 0;
}

CommEstimate& CommEstimate::operator+=(const CommEstimate& o) {
  if (n_layer == 0) {
    n_layer = o.n_layer;
    elem_bytes = o.elem_bytes;
  }
  q_per_layer += o.q_per_layer;
  kv_per_layer += o.kv_per_layer;
  partial_per_layer += o.partial_per_layer;
  messages_up_per_layer += o.messages_up_per_layer;
  messages_down_per_layer += o.messages_down_per_layer;
  schedule += o.schedule;
  tokens += o.tokens;
  control += o.control;
  q += o.q;
  kv += o.kv;
  partial += o.partial;
  hidden += o.hidden;
  logits += o.logits;
  header += o.header;
  client_messages += o.client_messages;
  return *this;
}

namespace {

void check_inputs(const Schedule& s, int elem_bytes) {
  if (s.shape.empty())
    throw std::invalid_argument("comm model: the schedule carries no model shape");
  if (elem_bytes < 1)
    throw std::invalid_argument("comm model: bytes per element must be >= 1, got " +
                                std::to_string(elem_bytes));
  if (s.comp.size() != static_cast<size_t>(s.n_positions) ||
      s.att.size() != static_cast<size_t>(s.n_positions))
    throw std::invalid_argument("comm model: schedule arrays do not match n_positions");
}

void check_position(const Schedule& s, int p) {
  if (p < s.n_prompt || p >= s.n_positions)
    throw std::invalid_argument("comm model: decode position " + std::to_string(p) +
                                " is outside the schedule's generated positions " +
                                std::to_string(s.n_prompt) + ".." +
                                std::to_string(s.n_positions - 1));
}

using Part = PlannedMessage::Part;

// A message of one non-empty part.
PlannedMessage one_part(int src, int dst, int layer, CommKind kind, uint64_t bytes, uint64_t rows) {
  return {src, dst, layer, {Part{kind, bytes, rows}}};
}

void to_every_party(std::vector<PlannedMessage>& out, const Schedule& s, CommKind kind,
                    uint64_t bytes, uint64_t rows) {
  for (int r = 1; r < s.n_ranks(); ++r) out.push_back(one_part(0, r, -1, kind, bytes, rows));
}

// Every layer's messages for positions first..end-1: per (CompNode, AttnNode) pair one up
// message (q part, kv part) and one down message (partials), where there are rows.
void add_layers(std::vector<PlannedMessage>& out, const Schedule& s, int first, int end,
                int elem_bytes) {
  const auto pairs = layer_pair_bytes(s, first, end, elem_bytes);
  for (int l = 0; l < s.shape.n_layer; ++l)
    for (const PairBytes& pb : pairs) {
      const int comp = s.comp_rank(pb.k), attn = s.attn_rank(pb.a, pb.b);
      PlannedMessage up{comp, attn, l, {}};
      if (pb.rows_q) up.parts.push_back({CommKind::q, pb.q, pb.rows_q});
      if (pb.rows_kv) up.parts.push_back({CommKind::kv, pb.kv, pb.rows_kv});
      if (!up.parts.empty()) out.push_back(std::move(up));
      if (pb.rows_q) out.push_back(one_part(attn, comp, l, CommKind::partial, pb.partial, pb.rows_q));
    }
}

// The final row of the step whose last position is p, to the client.
PlannedMessage final_row(const Schedule& s, int p) {
  const bool client = s.lm_head == LmHead::client;
  const uint64_t width = client ? s.shape.d_model : s.shape.n_vocab;
  return one_part(s.comp_rank(s.comp[p]), 0, -1, client ? CommKind::hidden : CommKind::logits,
                  kFloatBytes * width, 1);
}

void check_run(const Schedule& s, int n_generate) {
  if (s.shape.encoder() && n_generate != 1)
    throw std::invalid_argument("comm model: an encoder runs its input once and generates nothing; got n_generate = " +
                                std::to_string(n_generate));
  if (n_generate < 1)
    throw std::invalid_argument("comm model: a run samples at least 1 token, got n_generate = " +
                                std::to_string(n_generate));
  if (static_cast<long long>(s.n_prompt) + n_generate - 1 > s.n_positions)
    throw std::invalid_argument(
        "comm model: prompt " + std::to_string(s.n_prompt) + " + " + std::to_string(n_generate) +
        " generated tokens need positions up to " + std::to_string(s.n_prompt + n_generate - 2) +
        ", but the schedule plans 0.." + std::to_string(s.n_positions - 1));
}

}  // namespace

std::vector<PairBytes> layer_pair_bytes(const Schedule& s, int first, int end, int elem_bytes) {
  check_inputs(s, elem_bytes);
  if (first < 0 || end > s.n_positions || first > end)
    throw std::invalid_argument("comm model: position range " + std::to_string(first) + ".." +
                                std::to_string(end) + " is outside the schedule");
  const int A = s.alpha, B = s.beta;
  const ModelShape& m = s.shape;
  const uint64_t b = static_cast<uint64_t>(elem_bytes);
  const uint64_t q_row = static_cast<uint64_t>(m.d_q()) * b;
  const uint64_t kv_row = 2ull * static_cast<uint64_t>(m.d_kv()) * b;
  const uint64_t partial_row = static_cast<uint64_t>(m.n_head) * static_cast<uint64_t>(m.d_head + 2) * b;
  std::vector<PairBytes> out;
  out.reserve(static_cast<size_t>(A) * B * B);
  for (int k = 0; k < A; ++k) {
    std::vector<uint64_t> rows(B);  // rows of CompNode k per attention shard
    for (int sh = 0; sh < B; ++sh) rows[sh] = s.positions(first, end, k, sh).size();
    for (int a = 0; a < B; ++a)
      for (int bb = 0; bb < B; ++bb) {
        PairBytes pb;
        pb.k = k;
        pb.a = a;
        pb.b = bb;
        pb.rows_q = rows[a];
        pb.rows_kv = rows[bb];
        pb.q = rows[a] * q_row;
        pb.kv = rows[bb] * kv_row;
        pb.partial = rows[a] * partial_row;
        out.push_back(pb);
      }
  }
  return out;
}

std::vector<PlannedMessage> messages_prefill(const Schedule& s, int elem_bytes) {
  check_inputs(s, elem_bytes);
  std::vector<PlannedMessage> out;
  to_every_party(out, s, CommKind::schedule, serialize(s).size(), 0);
  for (int k = 0; k < s.alpha; ++k) {
    const uint64_t rows = s.positions(0, s.n_prompt, k).size();
    if (rows) out.push_back(one_part(0, s.comp_rank(k), -1, CommKind::tokens, kTokenBytes * rows, rows));
  }
  add_layers(out, s, 0, s.n_prompt, elem_bytes);
  if (s.shape.encoder()) {  // every CompNode returns the last hidden rows of its positions
    for (int k = 0; k < s.alpha; ++k) {
      const uint64_t rows = s.positions(0, s.n_prompt, k).size();
      if (rows)
        out.push_back(one_part(s.comp_rank(k), 0, -1, CommKind::hidden,
                               kFloatBytes * static_cast<uint64_t>(s.shape.d_model) * rows, rows));
    }
  } else {
    out.push_back(final_row(s, s.n_prompt - 1));
  }
  return out;
}

std::vector<PlannedMessage> messages_decode_step(const Schedule& s, int position, int elem_bytes) {
  check_inputs(s, elem_bytes);
  check_position(s, position);
  std::vector<PlannedMessage> out;
  to_every_party(out, s, CommKind::control, kControlBytes, 1);
  out.push_back(one_part(0, s.comp_rank(s.comp[position]), -1, CommKind::tokens, kTokenBytes, 1));
  add_layers(out, s, position, position + 1, elem_bytes);
  out.push_back(final_row(s, position));
  return out;
}

std::vector<PlannedMessage> messages_stop(const Schedule& s) {
  std::vector<PlannedMessage> out;
  to_every_party(out, s, CommKind::control, kControlBytes, 0);
  return out;
}

std::vector<PlannedMessage> messages_run(const Schedule& s, int n_generate, int elem_bytes) {
  check_inputs(s, elem_bytes);
  check_run(s, n_generate);
  std::vector<PlannedMessage> out = messages_prefill(s, elem_bytes);
  for (int p = s.n_prompt; p < s.n_prompt + n_generate - 1; ++p) {
    auto step = messages_decode_step(s, p, elem_bytes);
    out.insert(out.end(), step.begin(), step.end());
  }
  auto stop = messages_stop(s);
  out.insert(out.end(), stop.begin(), stop.end());
  return out;
}

CommEstimate estimate(const Schedule& s, const std::vector<PlannedMessage>& messages, int elem_bytes) {
  CommEstimate e;
  e.n_layer = s.shape.n_layer;
  e.elem_bytes = elem_bytes;
  for (const PlannedMessage& m : messages) {
    e.header += m.header_bytes();
    if (m.layer < 0) ++e.client_messages;
    bool up = false;
    for (const Part& p : m.parts) {
      switch (p.kind) {
        case CommKind::schedule: e.schedule += p.bytes; break;
        case CommKind::tokens: e.tokens += p.bytes; break;
        case CommKind::control: e.control += p.bytes; break;
        case CommKind::hidden: e.hidden += p.bytes; break;
        case CommKind::logits: e.logits += p.bytes; break;
        case CommKind::q: e.q += p.bytes; up = true; if (m.layer == 0) e.q_per_layer += p.bytes; break;
        case CommKind::kv: e.kv += p.bytes; up = true; if (m.layer == 0) e.kv_per_layer += p.bytes; break;
        case CommKind::partial:
          e.partial += p.bytes;
          if (m.layer == 0) {
            e.partial_per_layer += p.bytes;
            ++e.messages_down_per_layer;
          }
          break;
        default: break;
      }
    }
    if (up && m.layer == 0) ++e.messages_up_per_layer;
  }
  return e;
}

CommEstimate predict_prefill(const Schedule& s, int elem_bytes) {
  return estimate(s, messages_prefill(s, elem_bytes), elem_bytes);
}

CommEstimate predict_decode_step(const Schedule& s, int position, int elem_bytes) {
  return estimate(s, messages_decode_step(s, position, elem_bytes), elem_bytes);
}

CommEstimate predict_run(const Schedule& s, int n_generate, int elem_bytes) {
  return estimate(s, messages_run(s, n_generate, elem_bytes), elem_bytes);
}

std::vector<CommFlow> merge_flows(std::vector<CommFlow> flows) {
  auto key = [](const CommFlow& f) {
    return std::make_tuple(f.src, f.dst, f.layer, static_cast<int>(f.kind));
  };
  std::sort(flows.begin(), flows.end(),
            [&](const CommFlow& x, const CommFlow& y) { return key(x) < key(y); });
  std::vector<CommFlow> out;
  for (const CommFlow& f : flows) {
    if (f.bytes == 0) continue;
    if (!out.empty() && key(out.back()) == key(f))
      out.back().bytes += f.bytes;
    else
      out.push_back(f);
  }
  return out;
}

std::vector<CommFlow> to_flows(const std::vector<PlannedMessage>& messages) {
  std::vector<CommFlow> out;
  for (const PlannedMessage& m : messages) {
    for (const Part& p : m.parts) out.push_back({m.src, m.dst, m.layer, p.kind, p.bytes});
    out.push_back({m.src, m.dst, m.layer, CommKind::header, m.header_bytes()});
  }
  return merge_flows(std::move(out));
}

std::vector<CommFlow> flows_run(const Schedule& s, int n_generate, int elem_bytes) {
  return to_flows(messages_run(s, n_generate, elem_bytes));
}

std::vector<CommFlow> protocol_flows(const std::vector<CommFlow>& flows) {
  std::vector<CommFlow> out;
  for (const CommFlow& f : flows)
    if (f.kind != CommKind::report && f.kind != CommKind::trace) out.push_back(f);
  return out;
}

std::vector<std::string> flow_differences(const std::vector<CommFlow>& a, const std::vector<CommFlow>& b,
                                          const std::string& a_name, const std::string& b_name,
                                          size_t max_lines) {
  using Key = std::tuple<int, int, int, int>;
  std::map<Key, std::pair<uint64_t, uint64_t>> both;
  for (const CommFlow& f : a) both[{f.src, f.dst, f.layer, (int)f.kind}].first += f.bytes;
  for (const CommFlow& f : b) both[{f.src, f.dst, f.layer, (int)f.kind}].second += f.bytes;
  std::vector<std::string> out;
  size_t differing = 0;
  for (const auto& [key, v] : both) {
    if (v.first == v.second) continue;
    if (++differing > max_lines) continue;
    const auto [src, dst, layer, kind] = key;
    out.push_back("rank " + std::to_string(src) + " → rank " + std::to_string(dst) + ", " +
                  (layer < 0 ? std::string("client traffic") : "layer " + std::to_string(layer)) + ", " +
                  comm_kind_name((CommKind)kind) + ": " + a_name + " " + std::to_string(v.first) + " B, " +
                  b_name + " " + std::to_string(v.second) + " B");
  }
  if (differing > max_lines) out.push_back("… and " + std::to_string(differing - max_lines) + " more");
  return out;
}

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace cascade
