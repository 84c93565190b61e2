// Communication model. See include/cascade/comm_model.h for what is counted.
#include "cascade/comm_model.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <tuple>

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
  }
  return "?";
}

ModelConfig smollm2_135m_config() {
  ModelConfig c;
  c.arch = "llama";
  c.name = "SmolLM2-135M-Instruct (built-in dims)";
  c.n_layer = 30;
  c.d_model = 576;
  c.n_head = 9;
  c.n_head_kv = 3;
  c.d_head = 64;
  c.d_ff = 1536;
  c.n_vocab = 49152;
  c.n_ctx = 8192;
  c.rope_theta = 100000.0f;
  c.rms_eps = 1e-5f;
  c.tied_output = true;
  return c;
}

uint64_t CommEstimate::by_kind(CommKind kind) const {
  switch (kind) {
    case CommKind::schedule: return schedule;
    case CommKind::tokens: return tokens;
    case CommKind::control: return control;
    case CommKind::q: return q;
    case CommKind::kv: return kv;
    case CommKind::partial: return partial;
    case CommKind::logits: return logits;
    default: return 0;
  }
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
  logits += o.logits;
  client_messages += o.client_messages;
  return *this;
}

namespace {

void check_inputs(const ModelConfig& cfg, const Schedule& s, int elem_bytes) {
  if (cfg.n_layer < 1 || cfg.n_head < 1 || cfg.n_head_kv < 1 || cfg.d_head < 1 ||
      cfg.n_vocab < 1)
    throw std::invalid_argument("comm model: the model config has a zero dimension");
  if (elem_bytes < 1)
    throw std::invalid_argument("comm model: bytes per element must be >= 1, got " +
                                std::to_string(elem_bytes));
  if (s.comp.size() != static_cast<size_t>(s.n_positions) ||
      s.att.size() != static_cast<size_t>(s.n_positions))
    throw std::invalid_argument("comm model: schedule arrays do not match n_positions");
}

void check_prompt(const Schedule& s, int n_prompt) {
  if (n_prompt < 1 || n_prompt > s.n_positions)
    throw std::invalid_argument("comm model: prompt length must be in 1.." +
                                std::to_string(s.n_positions) + " (the positions planned), got " +
                                std::to_string(n_prompt));
}

void check_position(const Schedule& s, int p) {
  if (p < 0 || p >= s.n_positions)
    throw std::invalid_argument("comm model: decode position " + std::to_string(p) +
                                " is outside the schedule's 0.." +
                                std::to_string(s.n_positions - 1));
}

uint64_t others(const Schedule& s) { return static_cast<uint64_t>(s.n_ranks() - 1); }

// Adds every layer's traffic for positions first..end-1.
void add_layers(CommEstimate& e, const ModelConfig& cfg, const Schedule& s, int first, int end,
                int elem_bytes) {
  uint64_t q = 0, kv = 0, partial = 0, up_msgs = 0, down_msgs = 0;
  for (const PairBytes& pb : layer_pair_bytes(cfg, s, first, end, elem_bytes)) {
    q += pb.q;
    kv += pb.kv;
    partial += pb.partial;
    up_msgs += pb.up() > 0;
    down_msgs += pb.down() > 0;
  }
  const uint64_t L = static_cast<uint64_t>(cfg.n_layer);
  e.q_per_layer += q;
  e.kv_per_layer += kv;
  e.partial_per_layer += partial;
  e.messages_up_per_layer += up_msgs;
  e.messages_down_per_layer += down_msgs;
  e.q += L * q;
  e.kv += L * kv;
  e.partial += L * partial;
}

CommEstimate empty_estimate(const ModelConfig& cfg, int elem_bytes) {
  CommEstimate e;
  e.n_layer = cfg.n_layer;
  e.elem_bytes = elem_bytes;
  return e;
}

void add_layer_flows(std::vector<CommFlow>& out, const ModelConfig& cfg, const Schedule& s,
                     int first, int end, int elem_bytes) {
  const auto pairs = layer_pair_bytes(cfg, s, first, end, elem_bytes);
  for (int l = 0; l < cfg.n_layer; ++l) {
    for (const PairBytes& pb : pairs) {
      const int comp = s.comp_rank(pb.k), attn = s.attn_rank(pb.a, pb.b);
      if (pb.q) out.push_back({comp, attn, l, CommKind::q, pb.q});
      if (pb.kv) out.push_back({comp, attn, l, CommKind::kv, pb.kv});
      if (pb.partial) out.push_back({attn, comp, l, CommKind::partial, pb.partial});
    }
  }
}

void add_to_all(std::vector<CommFlow>& out, const Schedule& s, CommKind kind, uint64_t bytes) {
  for (int r = 1; r < s.n_ranks(); ++r) out.push_back({0, r, -1, kind, bytes});
}

}  // namespace

std::vector<PairBytes> layer_pair_bytes(const ModelConfig& cfg, const Schedule& s, int first,
                                        int end, int elem_bytes) {
  check_inputs(cfg, s, elem_bytes);
  if (first < 0 || end > s.n_positions || first > end)
    throw std::invalid_argument("comm model: position range " + std::to_string(first) + ".." +
                                std::to_string(end) + " is outside the schedule");
  const int A = s.alpha, B = s.beta;
  // rows[k·β + sh]: positions of CompNode k in attention shard sh.
  std::vector<uint64_t> rows(static_cast<size_t>(A) * B, 0);
  for (int p = first; p < end; ++p) ++rows[static_cast<size_t>(s.comp[p]) * B + s.att[p]];
  const uint64_t b = static_cast<uint64_t>(elem_bytes);
  const uint64_t q_row = static_cast<uint64_t>(cfg.d_q()) * b;
  const uint64_t kv_row = 2ull * static_cast<uint64_t>(cfg.d_kv()) * b;
  const uint64_t partial_row =
      static_cast<uint64_t>(cfg.n_head) * static_cast<uint64_t>(cfg.d_head + 2) * b;
  std::vector<PairBytes> out;
  out.reserve(static_cast<size_t>(A) * B * B);
  for (int k = 0; k < A; ++k)
    for (int a = 0; a < B; ++a)
      for (int bb = 0; bb < B; ++bb) {
        PairBytes pb;
        pb.k = k;
        pb.a = a;
        pb.b = bb;
        const uint64_t rows_a = rows[static_cast<size_t>(k) * B + a];
        const uint64_t rows_b = rows[static_cast<size_t>(k) * B + bb];
        pb.q = rows_a * q_row;
        pb.kv = rows_b * kv_row;
        pb.partial = rows_a * partial_row;
        out.push_back(pb);
      }
  return out;
}

CommEstimate predict_prefill(const ModelConfig& cfg, const Schedule& s, int n_prompt,
                             int elem_bytes) {
  check_inputs(cfg, s, elem_bytes);
  check_prompt(s, n_prompt);
  CommEstimate e = empty_estimate(cfg, elem_bytes);
  e.schedule = serialize(s).size() * others(s);
  e.client_messages += others(s);
  e.tokens = kTokenBytes * static_cast<uint64_t>(n_prompt);
  std::vector<bool> owns(s.alpha, false);
  for (int p = 0; p < n_prompt; ++p) owns[s.comp[p]] = true;
  e.client_messages += std::count(owns.begin(), owns.end(), true);
  add_layers(e, cfg, s, 0, n_prompt, elem_bytes);
  e.logits = kLogitBytes * static_cast<uint64_t>(cfg.n_vocab);
  e.client_messages += 1;
  return e;
}

CommEstimate predict_decode_step(const ModelConfig& cfg, const Schedule& s, int position,
                                 int elem_bytes) {
  check_inputs(cfg, s, elem_bytes);
  check_position(s, position);
  CommEstimate e = empty_estimate(cfg, elem_bytes);
  e.control = kControlBytes * others(s);
  e.client_messages += others(s);
  e.tokens = kTokenBytes;
  e.client_messages += 1;
  add_layers(e, cfg, s, position, position + 1, elem_bytes);
  e.logits = kLogitBytes * static_cast<uint64_t>(cfg.n_vocab);
  e.client_messages += 1;
  return e;
}

CommEstimate predict_stop(const ModelConfig& cfg, const Schedule& s) {
  CommEstimate e = empty_estimate(cfg, 4);
  e.control = kControlBytes * others(s);
  e.client_messages = others(s);
  return e;
}

namespace {
void check_run(const Schedule& s, int n_prompt, int n_generate) {
  check_prompt(s, n_prompt);
  if (n_generate < 1)
    throw std::invalid_argument("comm model: a run samples at least 1 token, got n_generate = " +
                                std::to_string(n_generate));
  if (static_cast<long long>(n_prompt) + n_generate - 1 > s.n_positions)
    throw std::invalid_argument(
        "comm model: prompt " + std::to_string(n_prompt) + " + " + std::to_string(n_generate) +
        " generated tokens need positions up to " + std::to_string(n_prompt + n_generate - 2) +
        ", but the schedule plans 0.." + std::to_string(s.n_positions - 1));
}
}  // namespace

CommEstimate predict_run(const ModelConfig& cfg, const Schedule& s, int n_prompt, int n_generate,
                         int elem_bytes) {
  check_run(s, n_prompt, n_generate);
  CommEstimate e = predict_prefill(cfg, s, n_prompt, elem_bytes);
  for (int p = n_prompt; p < n_prompt + n_generate - 1; ++p)
    e += predict_decode_step(cfg, s, p, elem_bytes);
  e += predict_stop(cfg, s);
  return e;
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

std::vector<CommFlow> flows_prefill(const ModelConfig& cfg, const Schedule& s, int n_prompt,
                                    int elem_bytes) {
  check_inputs(cfg, s, elem_bytes);
  check_prompt(s, n_prompt);
  std::vector<CommFlow> out;
  add_to_all(out, s, CommKind::schedule, serialize(s).size());
  for (int p = 0; p < n_prompt; ++p)
    out.push_back({0, s.comp_rank(s.comp[p]), -1, CommKind::tokens, kTokenBytes});
  add_layer_flows(out, cfg, s, 0, n_prompt, elem_bytes);
  out.push_back({s.comp_rank(s.comp[n_prompt - 1]), 0, -1, CommKind::logits,
                 kLogitBytes * static_cast<uint64_t>(cfg.n_vocab)});
  return merge_flows(std::move(out));
}

std::vector<CommFlow> flows_decode_step(const ModelConfig& cfg, const Schedule& s, int position,
                                        int elem_bytes) {
  check_inputs(cfg, s, elem_bytes);
  check_position(s, position);
  std::vector<CommFlow> out;
  add_to_all(out, s, CommKind::control, kControlBytes);
  const int owner = s.comp_rank(s.comp[position]);
  out.push_back({0, owner, -1, CommKind::tokens, kTokenBytes});
  add_layer_flows(out, cfg, s, position, position + 1, elem_bytes);
  out.push_back({owner, 0, -1, CommKind::logits, kLogitBytes * static_cast<uint64_t>(cfg.n_vocab)});
  return merge_flows(std::move(out));
}

std::vector<CommFlow> flows_stop(const Schedule& s) {
  std::vector<CommFlow> out;
  add_to_all(out, s, CommKind::control, kControlBytes);
  return out;
}

std::vector<CommFlow> flows_run(const ModelConfig& cfg, const Schedule& s, int n_prompt,
                                int n_generate, int elem_bytes) {
  check_run(s, n_prompt, n_generate);
  std::vector<CommFlow> out = flows_prefill(cfg, s, n_prompt, elem_bytes);
  for (int p = n_prompt; p < n_prompt + n_generate - 1; ++p) {
    auto step = flows_decode_step(cfg, s, p, elem_bytes);
    out.insert(out.end(), step.begin(), step.end());
  }
  auto stop = flows_stop(s);
  out.insert(out.end(), stop.begin(), stop.end());
  return merge_flows(std::move(out));
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
