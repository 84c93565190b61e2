// The in-memory trace of one rank. See include/cascade/trace.h.
#include "cascade/trace.h"

#include "cascade/compute_timer.h"

#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace cascade {

const char* span_kind_name(SpanKind kind) {
  switch (kind) {
    case SpanKind::embed: return "embed";
    case SpanKind::prepass: return "prepass";
    case SpanKind::pack: return "pack";
    case SpanKind::send: return "send";
    case SpanKind::wait: return "wait";
    case SpanKind::attention: return "attention";
    case SpanKind::merge: return "merge";
    case SpanKind::postpass: return "postpass";
    case SpanKind::lm_head: return "lm_head";
    case SpanKind::other: return "other";
  }
  return "?";
}

bool is_compute(SpanKind kind) {
  return kind != SpanKind::send && kind != SpanKind::wait && kind != SpanKind::other;
}

// ---- costs from the shapes (fp32: 4 bytes per weight and per activation) -------------------

namespace {
constexpr double kF = 4.0;  // bytes per float
}

SpanCost cost_prepass(const ModelShape& m, int /*d_ff*/, int rows) {
  const double n = rows, d = m.d_model, out = m.d_q() + 2.0 * m.d_kv();
  // RMSNorm (≈ 4 flops per element), the fused Q|K|V GEMM, RoPE (≈ 3 per rotated element).
  const double flops = 4 * n * d + 2 * n * d * out + 3 * n * (m.d_q() + m.d_kv());
  // Weights once, the rows read, normalised, and the q|k|v rows written.
  const double bytes = kF * (d * out + d + 2 * n * d + n * out);
  return {flops, bytes};
}

SpanCost cost_postpass(const ModelShape& m, int d_ff, int rows) {
  const double n = rows, d = m.d_model, dq = m.d_q(), f = d_ff;
  // O-projection, RMSNorm, gate|up, SwiGLU (≈ 6 per element), down.
  const double flops = 2 * n * dq * d + 4 * n * d + 2 * n * d * 2 * f + 6 * n * f + 2 * n * f * d;
  const double weights = dq * d + d + 2 * f * d + f * d;
  const double acts = n * (dq + 3 * d + 2 * f + f + d);
  return {flops, kF * (weights + acts)};
}

SpanCost cost_attention(const ModelShape& m, uint64_t queries, uint64_t keys, uint64_t pairs) {
  // Per scored (query, key) pair and head: q·k and the weighted v (2·d_h each), exp and sums.
  const double flops = (double)pairs * m.n_head * (4.0 * m.d_head + 3.0);
  const double bytes = kF * ((double)queries * m.d_q() + (double)keys * 2.0 * m.d_kv() +
                             (double)queries * m.n_head * (m.d_head + 2.0));
  return {flops, bytes};
}

SpanCost cost_merge(const ModelShape& m, int rows, int n_partials) {
  const double per = (double)rows * m.n_head * n_partials;
  return {per * (2.0 * m.d_head + 4.0), kF * (per * (m.d_head + 2.0) + (double)rows * m.d_q())};
}

SpanCost cost_lm_head(const ModelShape& m, int rows) {
  const double n = rows, d = m.d_model, v = m.n_vocab;
  return {4 * n * d + 2 * n * d * v, kF * (v * d + d + n * (2 * d + v))};
}

SpanCost cost_copy(uint64_t bytes) { return {0.0, 2.0 * (double)bytes}; }

// ---- the recorder ------------------------------------------------------------------------

TraceRecorder::TraceRecorder(int rank, bool views) : views_(views) {
  data_.rank = rank;
  t0_ = std::chrono::steady_clock::now();
}

void TraceRecorder::start() {
  t0_ = std::chrono::steady_clock::now();  // CLOCK_MONOTONIC on Linux
  data_.t0_monotonic_s = std::chrono::duration<double>(t0_.time_since_epoch()).count();
  data_.host_cores = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
  last_end_ = 0.0;
  cpu_last_ = ComputeTimer::now();
  data_.spans.clear();
}

double TraceRecorder::since_start(std::chrono::steady_clock::time_point t) const {
  return std::chrono::duration<double>(t - t0_).count();
}

double TraceRecorder::now() const { return since_start(std::chrono::steady_clock::now()); }

void TraceRecorder::add_gap(double t, double cpu) {
  if (t <= last_end_) return;
  Span gap;  // the time since the last span: `other`
  gap.step = step_;
  gap.kind = SpanKind::other;
  gap.t_start = last_end_;
  gap.t_end = t;
  gap.cpu_s = cpu - cpu_last_;
  data_.spans.push_back(gap);
}

void TraceRecorder::begin(SpanKind kind, int layer) { begin(kind, layer, ComputeTimer::now()); }

void TraceRecorder::end(SpanCost cost) { end(cost, ComputeTimer::now()); }

void TraceRecorder::begin(SpanKind kind, int layer, double cpu) {
  if (is_open_)
    throw std::logic_error(std::string("trace: span ") + span_kind_name(kind) + " begins inside span " +
                           span_kind_name(open_.kind));
  const double t = now();
  add_gap(t, cpu);
  open_ = Span{};
  open_.step = step_;
  open_.layer = layer;
  open_.kind = kind;
  open_.t_start = t;
  open_.cpu_s = cpu;  // the CPU clock at the start, until end()
  open_index_ = (int64_t)data_.spans.size();
  is_open_ = true;
}

void TraceRecorder::end(SpanCost cost, double cpu) {
  if (!is_open_) throw std::logic_error("trace: end() without an open span");
  const double t = now();
  open_.t_end = t;
  open_.cpu_s = cpu - open_.cpu_s;
  open_.flops = cost.flops;
  open_.mem_bytes = cost.mem_bytes;
  data_.spans.push_back(open_);
  is_open_ = false;
  last_end_ = t;
  cpu_last_ = cpu;
}

void TraceRecorder::message(const Message& msg, bool outgoing, uint64_t wire_bytes, int channel,
                            std::chrono::steady_clock::time_point posted, int64_t post_span,
                            std::chrono::steady_clock::time_point completed,
                            const uint8_t* payload) {
  MessageEvent e;
  e.direction = outgoing ? 0 : 1;
  e.peer = outgoing ? msg.dst : msg.src;
  e.step = step_;
  e.layer = msg.layer;
  e.channel = channel;
  for (const MessagePart& p : msg.parts) e.kinds |= 1 << (int)p.kind;
  e.seq = seq_[std::make_tuple(e.direction, e.peer, e.layer, e.channel)]++;
  e.wire_bytes = wire_bytes;
  e.payload_bytes = msg.payload_bytes();
  e.t_post = since_start(posted);
  e.t_complete = since_start(completed);
  e.post_span = post_span;
  e.complete_span = current_span();
  data_.messages.push_back(e);
  if (!views_ || outgoing) return;
  // What arrived, part by part, as it arrived.
  uint64_t offset = 0;
  for (const MessagePart& p : msg.parts) {
    ViewPart v;
    v.message = (int64_t)data_.messages.size() - 1;
    v.kind = (int32_t)p.kind;
    v.positions_offset = data_.view_positions.size();
    v.n_positions = p.positions.size();
    v.data_offset = data_.view_data.size();
    v.bytes = p.bytes;
    data_.view_positions.insert(data_.view_positions.end(), p.positions.begin(), p.positions.end());
    if (p.bytes) data_.view_data.insert(data_.view_data.end(), payload + offset, payload + offset + p.bytes);
    offset += p.bytes;
    data_.view_parts.push_back(v);
  }
}

void TraceRecorder::finish(double wall_s, double compute_s, double wait_s, uint64_t bytes_sent,
                           uint64_t messages_sent, const MemoryStats& memory) {
  if (is_open_) end();
  const double t = now(), cpu = ComputeTimer::now();
  add_gap(t, cpu);
  last_end_ = t;
  cpu_last_ = cpu;
  data_.wall_s = wall_s;
  data_.compute_s = compute_s;
  data_.wait_s = wait_s;
  data_.bytes_sent = bytes_sent;
  data_.messages_sent = messages_sent;
  data_.rss_kb = memory.rss_kb;
  data_.rss_anon_kb = memory.rss_anon_kb;
  data_.pss_kb = memory.pss_kb;
}

// ---- wire form of a rank's recording (to rank 0) -------------------------------------------

namespace {

class Writer {
 public:
  template <class T>
  void pod(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    pod<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    out.insert(out.end(), p, p + v.size() * sizeof(T));
  }
  std::vector<uint8_t> out;
};

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  template <class T>
  T pod() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t len = pod<uint64_t>();
    need(len);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len;
    return s;
  }
  template <class T>
  std::vector<T> vec() {
    const uint64_t count = pod<uint64_t>();
    if (count > (n_ - pos_) / sizeof(T)) fail("array of " + std::to_string(count) + " elements");
    std::vector<T> v(count);
    if (count) std::memcpy(v.data(), d_ + pos_, count * sizeof(T));
    pos_ += count * sizeof(T);
    return v;
  }
  bool done() const { return pos_ == n_; }

 private:
  void need(uint64_t k) {
    if (k > n_ - pos_) fail("truncated");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("corrupt trace recording at byte " + std::to_string(pos_) + ": " + what);
  }
  const uint8_t* d_;
  size_t n_, pos_ = 0;
};

constexpr uint32_t kRecordingMagic = 0x52545343;  // "CSTR"

}  // namespace

std::vector<uint8_t> encode_rank_trace(const RankTrace& r) {
  Writer w;
  w.pod(kRecordingMagic);
  w.pod<int32_t>(kTraceVersion);
  w.pod<int32_t>(r.rank);
  w.str(r.party);
  w.str(r.host);
  w.pod(r.wall_s);
  w.pod(r.compute_s);
  w.pod(r.wait_s);
  w.pod(r.bytes_sent);
  w.pod(r.messages_sent);
  w.pod(r.rss_kb);
  w.pod(r.rss_anon_kb);
  w.pod(r.pss_kb);
  w.pod(r.t0_monotonic_s);
  w.pod(r.host_cores);
  w.vec(r.spans);  // plain structs of fixed-size fields: the same build on every rank
  w.vec(r.messages);
  w.vec(r.view_parts);
  w.vec(r.view_positions);
  w.vec(r.view_data);
  return std::move(w.out);
}

RankTrace decode_rank_trace(const uint8_t* data, size_t size) {
  Reader rd(data, size);
  if (rd.pod<uint32_t>() != kRecordingMagic) throw std::runtime_error("corrupt trace recording: bad magic");
  const int32_t version = rd.pod<int32_t>();
  if (version != kTraceVersion)
    throw std::runtime_error("trace recording of version " + std::to_string(version) + ", expected " +
                             std::to_string(kTraceVersion));
  RankTrace r;
  r.rank = rd.pod<int32_t>();
  r.party = rd.str();
  r.host = rd.str();
  r.wall_s = rd.pod<double>();
  r.compute_s = rd.pod<double>();
  r.wait_s = rd.pod<double>();
  r.bytes_sent = rd.pod<uint64_t>();
  r.messages_sent = rd.pod<uint64_t>();
  r.rss_kb = rd.pod<uint64_t>();
  r.rss_anon_kb = rd.pod<uint64_t>();
  r.pss_kb = rd.pod<uint64_t>();
  r.t0_monotonic_s = rd.pod<double>();
  r.host_cores = rd.pod<int32_t>();
  r.spans = rd.vec<Span>();
  r.messages = rd.vec<MessageEvent>();
  r.view_parts = rd.vec<ViewPart>();
  r.view_positions = rd.vec<int32_t>();
  r.view_data = rd.vec<uint8_t>();
  if (!rd.done()) throw std::runtime_error("corrupt trace recording: trailing bytes");
  for (const ViewPart& v : r.view_parts)
    if (v.positions_offset + v.n_positions > r.view_positions.size() ||
        v.data_offset + v.bytes > r.view_data.size() || v.message < 0 ||
        v.message >= (int64_t)r.messages.size())
      throw std::runtime_error("corrupt trace recording: a view part points outside its arrays");
  return r;
}

}  // namespace cascade
