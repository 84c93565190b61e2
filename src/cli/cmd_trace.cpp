// cascade trace summary|export: a trace file (cascade run --trace) read back: the per-party
// table `cascade run` prints, and the timeline in the Trace Event Format that Perfetto and
// chrome://tracing open (one track per party, flow arrows for messages).
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cascade/trace_io.h"
#include "commands.h"

namespace cascade::cli {
namespace {

struct TraceOptions {
  std::string path;
  bool chrome = false;
  std::string out;
  bool json = false;
};

// Time of each span kind, summed over a rank's spans.
std::vector<double> time_by_kind(const RankTrace& r) {
  std::vector<double> t(kNumSpanKinds, 0.0);
  for (const Span& s : r.spans) t[(int)s.kind] += s.seconds();
  return t;
}

// Rank 0's time per step (0: prefill), from its first span of the step to its last.
std::map<int, double> step_times(const RankTrace& client) {
  std::map<int, std::pair<double, double>> range;
  for (const Span& s : client.spans) {
    auto it = range.find(s.step);
    if (it == range.end()) range[s.step] = {s.t_start, s.t_end};
    else it->second = {std::min(it->second.first, s.t_start), std::max(it->second.second, s.t_end)};
  }
  std::map<int, double> out;
  for (const auto& [step, r] : range) out[step] = r.second - r.first;
  return out;
}

void summary(const TraceOptions& o) {
  const Trace t = read_trace(o.path);
  const TraceMeta& m = t.meta;
  const Schedule& s = t.schedule;
  // Rank 0's recording times the steps (an incomplete trace may lack it).
  const std::map<int, double> steps =
      !t.ranks.empty() && t.ranks[0].rank == 0 ? step_times(t.ranks[0]) : std::map<int, double>{};
  double decode = 0.0;
  for (const auto& [step, sec] : steps)
    if (step > 0) decode += sec;
  const int n_decode = (int)steps.size() - (steps.count(0) ? 1 : 0);
  if (o.json) {
    nlohmann::json parties = nlohmann::json::array();
    for (const RankTrace& r : t.ranks) {
      nlohmann::json kinds;
      const auto by = time_by_kind(r);
      for (int k = 0; k < kNumSpanKinds; ++k) kinds[span_kind_name((SpanKind)k)] = by[k];
      parties.push_back({{"rank", r.rank}, {"party", r.party}, {"host", r.host}, {"wall_s", r.wall_s},
                         {"compute_s", r.compute_s}, {"wait_s", r.wait_s}, {"bytes_sent", r.bytes_sent},
                         {"messages_sent", r.messages_sent}, {"rss_kb", r.rss_kb}, {"rss_anon_kb", r.rss_anon_kb},
                         {"pss_kb", r.pss_kb}, {"spans", r.spans.size()}, {"messages", r.messages.size()},
                         {"seconds_by_kind", kinds}});
    }
    nlohmann::json j = {{"path", o.path}, {"complete", m.complete}, {"error", m.error}, {"views", m.views},
                        {"model", m.model_name}, {"model_source", m.model_source},
                        {"git_commit", m.git_commit}, {"start_time", m.start_time},
                        {"command_line", m.command_line}, {"alpha", s.alpha}, {"beta", s.beta},
                        {"c", s.c}, {"delta", s.delta}, {"strategy", s.strategy},
                        {"attn_sharding", attn_sharding_name(s.attn_sharding)},
                        {"lm_head", lm_head_name(s.lm_head)}, {"n_prompt", s.n_prompt},
                        {"n_generated", m.n_generated}, {"world_size", m.world_size},
                        {"backend", m.backend}, {"transport", m.transport},
                        {"prefill_s", steps.count(0) ? steps.at(0) : 0.0}, {"decode_steps", n_decode},
                        {"decode_s", decode}, {"parties", parties}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("trace %s%s%s\n", o.path.c_str(), m.complete ? "" : " (INCOMPLETE)", m.views ? " with views" : "");
  std::printf("  %s, %s\n  model %s (%s)\n  %s, α = %d, β = %d, c = %d, δ = %d, %s attention sharding, LM head "
              "at the %s: %d ranks\n  %d prompt tokens, %d generated\n",
              m.start_time.c_str(), m.git_commit.c_str(), m.model_name.c_str(), m.model_source.c_str(),
              s.strategy.c_str(), s.alpha, s.beta, s.c, s.delta, attn_sharding_name(s.attn_sharding),
              lm_head_name(s.lm_head), m.world_size, s.n_prompt, m.n_generated);
  std::printf("  backend %s, transport %s\n", m.backend.c_str(), m.transport.c_str());
  if (!m.complete) {
    std::printf("  the run ended early: %s\n", m.error.empty() ? "(no reason recorded)" : m.error.c_str());
    if ((int)t.ranks.size() < m.world_size)
      std::printf("  recordings of %zu of %d ranks (the ones the writer had), up to the end\n", t.ranks.size(),
                  m.world_size);
  }
  std::printf("  command: %s\n", m.command_line.c_str());
  if (steps.count(0))
    std::printf("  prefill %.3f s; %d decode steps %.3f s (mean %.4f s), at the client\n", steps.at(0), n_decode,
                decode, n_decode ? decode / n_decode : 0.0);
  std::printf("\n%-5s %-16s %10s %10s %10s %14s %9s %9s %9s %9s\n", "rank", "party", "compute s", "wait s",
              "wall s", "bytes sent", "messages", "RSS MiB", "anon MiB", "PSS MiB");
  for (const RankTrace& r : t.ranks)
    std::printf("%-5d %-16s %10.3f %10.3f %10.3f %14llu %9llu %9.1f %9.1f %9.1f\n", r.rank, r.party.c_str(),
                r.compute_s, r.wait_s, r.wall_s, (unsigned long long)r.bytes_sent,
                (unsigned long long)r.messages_sent, r.rss_kb / 1024.0, r.rss_anon_kb / 1024.0, r.pss_kb / 1024.0);
  std::printf("\nseconds by span kind (wall time inside the spans):\n%-5s", "rank");
  for (int k = 0; k < kNumSpanKinds; ++k) std::printf(" %9s", span_kind_name((SpanKind)k));
  std::printf("\n");
  for (const RankTrace& r : t.ranks) {
    std::printf("%-5d", r.rank);
    for (double v : time_by_kind(r)) std::printf(" %9.4f", v);
    std::printf("\n");
  }
}

// Trace Event Format (JSON): "X" slices per span, one thread per rank, "s"/"f" flow events
// from each sent message to its receipt.
void export_chrome(const TraceOptions& o) {
  if (!o.chrome) throw std::invalid_argument("cascade trace export: choose a format (--chrome)");
  const Trace t = read_trace(o.path);
  const std::string out = o.out.empty() ? o.path + ".json" : o.out;
  nlohmann::json ev = nlohmann::json::array();
  const Schedule& s = t.schedule;
  char title[160];
  std::snprintf(title, sizeof title, "Cascade %s α=%d β=%d c=%d, %d prompt + %d generated", s.strategy.c_str(),
                s.alpha, s.beta, s.c, s.n_prompt, t.meta.n_generated);
  ev.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 0}, {"args", {{"name", title}}}});
  auto us = [](double sec) { return sec * 1e6; };
  for (const RankTrace& r : t.ranks) {
    ev.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 0}, {"tid", r.rank},
                  {"args", {{"name", "rank " + std::to_string(r.rank) + ": " + r.party}}}});
    ev.push_back({{"name", "thread_sort_index"}, {"ph", "M"}, {"pid", 0}, {"tid", r.rank},
                  {"args", {{"sort_index", r.rank}}}});
    for (const Span& sp : r.spans) {
      if (sp.kind == SpanKind::other) continue;
      nlohmann::json args = {{"step", sp.step}, {"layer", sp.layer}, {"cpu_s", sp.cpu_s}};
      if (is_compute(sp.kind)) {
        args["flops"] = sp.flops;
        args["mem_bytes"] = sp.mem_bytes;
      }
      ev.push_back({{"name", span_kind_name(sp.kind)}, {"cat", is_compute(sp.kind) ? "compute" : "comm"},
                    {"ph", "X"}, {"pid", 0}, {"tid", r.rank}, {"ts", us(sp.t_start)},
                    {"dur", us(sp.seconds())}, {"args", args}});
    }
  }
  // Flows: the n-th send from src to dst on (layer, channel) is the n-th receive there.
  using Key = std::tuple<int, int, int, int, uint64_t>;
  std::map<Key, const MessageEvent*> received;
  for (const RankTrace& r : t.ranks)
    for (const MessageEvent& m : r.messages)
      if (m.direction == 1) received[{m.peer, r.rank, m.layer, m.channel, m.seq}] = &m;
  uint64_t id = 0;
  for (const RankTrace& r : t.ranks)
    for (const MessageEvent& m : r.messages) {
      if (m.direction != 0) continue;
      auto it = received.find({r.rank, m.peer, m.layer, m.channel, m.seq});
      if (it == received.end()) continue;
      std::string kinds;
      for (int k = 0; k < kNumCommKinds; ++k)
        if (m.kinds & (1 << k)) kinds += (kinds.empty() ? "" : "+") + std::string(comm_kind_name((CommKind)k));
      ++id;
      ev.push_back({{"name", kinds}, {"cat", "message"}, {"ph", "s"}, {"id", id}, {"pid", 0}, {"tid", r.rank},
                    {"ts", us(m.t_post)}, {"args", {{"bytes", m.wire_bytes}, {"layer", m.layer}}}});
      ev.push_back({{"name", kinds}, {"cat", "message"}, {"ph", "f"}, {"bp", "e"}, {"id", id}, {"pid", 0},
                    {"tid", m.peer}, {"ts", us(it->second->t_complete)}});
    }
  std::ofstream f(out);
  if (!f) throw std::runtime_error("cannot write '" + out + "'");
  f << nlohmann::json{{"traceEvents", ev}, {"displayTimeUnit", "ms"}}.dump();
  if (!f) throw std::runtime_error("cannot write '" + out + "'");
  std::printf("wrote %s: %zu events (%llu messages with flow arrows); open it in https://ui.perfetto.dev or "
              "chrome://tracing\n", out.c_str(), ev.size(), (unsigned long long)id);
}

}  // namespace

void add_trace_command(CLI::App& app) {
  auto o = std::make_shared<TraceOptions>();
  CLI::App* sub = app.add_subcommand("trace", "Read a trace written by cascade run --trace");
  sub->require_subcommand(1);
  CLI::App* sum = sub->add_subcommand("summary", "The run, per-party time, bytes, memory and time by span kind");
  sum->add_option("file", o->path, "Trace file (HDF5)")->required()->check(CLI::ExistingFile);
  sum->add_flag("--json", o->json, "Print JSON");
  sum->callback([o] { summary(*o); });
  CLI::App* exp = sub->add_subcommand("export", "Export the timeline (Trace Event Format for Perfetto / chrome://tracing)");
  exp->add_option("file", o->path, "Trace file (HDF5)")->required()->check(CLI::ExistingFile);
  exp->add_flag("--chrome", o->chrome, "Trace Event Format JSON: one track per party, flow arrows for messages");
  exp->add_option("-o,--output", o->out, "Output file (default: FILE.json)");
  exp->callback([o] { export_chrome(*o); });
}

}  // namespace cascade::cli
