// cascade plan: build a schedule, show it, each party's exposure, the security check, the
// ranks it needs and the predicted bytes of a prefill. Also the schedule options and helpers
// shared with cmd_comm_model.cpp and cmd_run.cpp (declared in plan_common.h).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/comm_model.h"
#include "cascade/gguf.h"
#include "cascade/model_config.h"
#include "cascade/schedule.h"
#include "commands.h"
#include "plan_common.h"

namespace cascade::cli {

// ---- shared with cmd_comm_model.cpp and cmd_run.cpp (plan_common.h) ------------------------

// --alpha, --beta, --cluster, --delta, --strategy, --schedule-seed (--seed is the sampler's in cascade run).
void add_schedule_options(CLI::App* sub, ScheduleParams& p) {
  sub->add_option("-a,--alpha", p.alpha, "CompNodes α")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("-b,--beta", p.beta, "Attention shards β (β² AttnNodes)")->capture_default_str()->check(CLI::Range(1, 1 << 14));
  sub->add_option("-c,--cluster", p.c, "Cluster size c (cdelta)")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("--delta", p.delta, "Period δ, (α−1)·c < δ ≤ α·c (cdelta; default α·c)")->check(CLI::NonNegativeNumber);
  sub->add_option("--strategy", p.strategy, "cdelta, or a baseline: contiguous, round-robin, random")
      ->capture_default_str()
      ->check(CLI::IsMember({kStrategyCDelta, kStrategyContiguous, kStrategyRoundRobin, kStrategyRandom}));
  sub->add_option("--schedule-seed", p.seed, "Seed of the random strategy")->capture_default_str();
}

// The model's dims: from a GGUF when a path is given, else SmolLM2-135M's built-in dims.
ModelConfig plan_model_config(const std::string& gguf_path, std::string* source) {
  if (gguf_path.empty()) {
    *source = "built-in SmolLM2-135M dims (no --model given)";
    return smollm2_135m_config();
  }
  GgufFile g(gguf_path);
  ModelConfig cfg = ModelConfig::from_gguf(g);
  *source = gguf_path;
  return cfg;
}

nlohmann::json comm_estimate_json(const CommEstimate& e) {
  return {{"n_layer", e.n_layer},
          {"elem_bytes", e.elem_bytes},
          {"per_layer", {{"q", e.q_per_layer}, {"kv", e.kv_per_layer}, {"partial", e.partial_per_layer},
                         {"up", e.up_per_layer()}, {"down", e.down_per_layer()},
                         {"messages_up", e.messages_up_per_layer},
                         {"messages_down", e.messages_down_per_layer}}},
          {"bytes", {{"schedule", e.schedule}, {"tokens", e.tokens}, {"control", e.control},
                     {"q", e.q}, {"kv", e.kv}, {"partial", e.partial}, {"logits", e.logits},
                     {"layers", e.layers_total()}, {"client", e.client_total()},
                     {"total", e.total()}}},
          {"messages", {{"client", e.client_messages}, {"total", e.messages()}}}};
}

nlohmann::json model_json(const ModelConfig& cfg, const std::string& source) {
  return {{"source", source},  {"name", cfg.name},     {"n_layer", cfg.n_layer},
          {"d_q", cfg.d_q()},  {"d_kv", cfg.d_kv()},   {"n_head", cfg.n_head},
          {"n_head_kv", cfg.n_head_kv}, {"d_head", cfg.d_head}, {"n_vocab", cfg.n_vocab}};
}

namespace {
nlohmann::json gap_json(int gap) { return gap == kNoGap ? nlohmann::json(nullptr) : nlohmann::json(gap); }
}  // namespace

nlohmann::json exposure_json(const ExposureReport& rep) {
  nlohmann::json parties = nlohmann::json::array();
  for (const PartyExposure& e : rep.parties) {
    nlohmann::json p = {{"party", e.role.name()}, {"rank", e.rank}, {"observed", e.observed},
                        {"fraction", e.fraction}, {"gap", gap_json(e.gap)},
                        {"whole_prompt", e.whole_prompt}, {"runs", e.runs}};
    if (e.role.kind == RankRole::comp) {
      p["kind"] = "comp";
      p["k"] = e.role.k;
    } else {
      p["kind"] = "attn";
      p["a"] = e.role.a;
      p["b"] = e.role.b;
      p["gap_q"] = gap_json(e.gap_q);
      p["gap_kv"] = gap_json(e.gap_kv);
      p["union_gap"] = gap_json(e.union_gap);
    }
    parties.push_back(std::move(p));
  }
  return {{"n", rep.n}, {"rho", rep.rho}, {"secure", rep.secure()}, {"parties", parties},
          {"warnings", rep.warnings}, {"violations", rep.violations}};
}

void print_exposure(const ExposureReport& r) {
  std::printf("\nexposure over the %d-token prompt (ρ = %d). gap = smallest distance from the last\n"
              "position of one observed run to the first of the next (\"none\": a single run).\n"
              "AttnNode (a,b) gets q rows of shard a and k/v rows of shard b: its security gap is\n"
              "min(q gap, kv gap); the gap of the union of both is shown beside it.\n",
              r.n, r.rho);
  std::printf("  %-16s %5s %8s %8s %6s %6s %6s %9s  %s\n", "party", "rank", "observed", "fraction",
              "gap", "q gap", "kv gap", "union gap", "note");
  for (const PartyExposure& e : r.parties) {
    const bool attn = e.role.kind == RankRole::attn;
    std::string note;
    if (e.whole_prompt) note = "whole prompt exposed";
    if (e.gap != kNoGap && e.gap < r.rho) note += std::string(note.empty() ? "" : "; ") + "security gap < ρ";
    else if (attn && e.role.a != e.role.b && !e.whole_prompt && e.union_gap != kNoGap &&
             e.union_gap < r.rho)
      note += std::string(note.empty() ? "" : "; ") + "warning: union gap < ρ";
    char line[256];
    std::snprintf(line, sizeof line, "  %-16s %5d %8d %8.3f %6s %6s %6s %9s  %s", e.role.name().c_str(),
                  e.rank, e.observed, e.fraction, gap_str(e.gap).c_str(),
                  attn ? gap_str(e.gap_q).c_str() : "", attn ? gap_str(e.gap_kv).c_str() : "",
                  attn ? gap_str(e.union_gap).c_str() : "", note.c_str());
    std::string l = line;
    l.erase(l.find_last_not_of(' ') + 1);
    std::printf("%s\n", l.c_str());
  }
  if (!r.warnings.empty()) {
    std::printf("\nwarnings:\n");
    for (const auto& w : r.warnings) std::printf("  %s\n", w.c_str());
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

struct PlanOptions {
  ScheduleParams sched;
  int tokens = 128;
  int generate = 0;
  int rho = kDefaultRho;
  bool insecure = false;
  bool json = false;
  int elem_bytes = 4;
  std::string model;
};

std::string ranges_str(const std::vector<std::pair<int, int>>& runs, size_t max_runs = 12) {
  if (runs.empty()) return "(none)";
  std::string out;
  for (size_t i = 0; i < runs.size() && i < max_runs; ++i) {
    if (i) out += ", ";
    out += std::to_string(runs[i].first);
    if (runs[i].second != runs[i].first) out += "-" + std::to_string(runs[i].second);
  }
  if (runs.size() > max_runs) out += ", … (" + std::to_string(runs.size()) + " runs)";
  return out;
}


std::string params_str(const Schedule& s) {
  char buf[256];
  if (s.strategy == kStrategyRandom)
    std::snprintf(buf, sizeof buf, "random (seed %llu), α = %d, β = %d", (unsigned long long)s.seed,
                  s.alpha, s.beta);
  else
    std::snprintf(buf, sizeof buf, "%s, α = %d, β = %d, c = %d, δ = %d", s.strategy.c_str(),
                  s.alpha, s.beta, s.c, s.delta);
  return buf;
}

void print_schedule(const Schedule& s) {
  const bool periodic = s.strategy == kStrategyCDelta;  // baselines: att(p) = p mod β
  const int period = periodic ? s.delta : s.n_positions;
  const int shown = std::min({period, s.n_positions, 64});
  int width = 2;
  for (int v = std::max({shown - 1, s.alpha - 1, s.beta - 1}); v >= 10; v /= 10) ++width;
  const int per_line = std::max(8, 96 / (width + 1));
  std::printf("\nschedule, positions 0..%d", shown - 1);
  if (periodic && shown < s.delta) std::printf(" (first %d of the period δ = %d)", shown, s.delta);
  else if (periodic) std::printf(" (one period δ; the schedule repeats)");
  else if (shown < s.n_positions) std::printf(" (first %d of %d)", shown, s.n_positions);
  std::printf(":\n");
  for (int p0 = 0; p0 < shown; p0 += per_line) {
    const int p1 = std::min(shown, p0 + per_line);
    std::printf("  position ");
    for (int p = p0; p < p1; ++p) std::printf(" %*d", width, p);
    std::printf("\n  CompNode ");
    for (int p = p0; p < p1; ++p) std::printf(" %*d", width, s.comp[p]);
    std::printf("\n  shard    ");
    for (int p = p0; p < p1; ++p) std::printf(" %*d", width, s.att[p]);
    std::printf("\n");
  }
  std::printf("\npositions per CompNode (all %d planned):\n", s.n_positions);
  for (int k = 0; k < s.alpha; ++k) {
    const auto pos = s.positions_of_comp(k);
    std::printf("  CompNode %-3d (rank %3d): %4zu  %s\n", k, s.comp_rank(k), pos.size(),
                ranges_str(runs_of(pos)).c_str());
  }
}

void print_comm(const CommEstimate& e, const ModelConfig& cfg, const std::string& source, int n) {
  std::printf("\npredicted bytes, prefill of %d tokens, %d bytes per element\n"
              "(model: %s: %d layers, d_q %d, d_kv %d, %d heads × %d, vocab %d):\n",
              n, e.elem_bytes, source.c_str(), cfg.n_layer, cfg.d_q(), cfg.d_kv(), cfg.n_head,
              cfg.d_head, cfg.n_vocab);
  auto row = [](const char* what, uint64_t bytes) {
    std::printf("  %-34s %16llu  %12s\n", what, (unsigned long long)bytes, format_bytes(bytes).c_str());
  };
  row("per layer up (q + k/v)", e.up_per_layer());
  row("per layer down (partials m, e, u)", e.down_per_layer());
  row("per layer total", e.up_per_layer() + e.down_per_layer());
  std::printf("  %-34s %16llu\n", "messages per layer", (unsigned long long)e.messages_per_layer());
  char buf[64];
  std::snprintf(buf, sizeof buf, "all %d layers", e.n_layer);
  row(buf, e.layers_total());
  row("client: schedule broadcast", e.schedule);
  row("client: prompt token ids", e.tokens);
  row("client: logits row", e.logits);
  row("total", e.total());
}

void run_plan(const PlanOptions& o) {
  ScheduleParams sp = o.sched;
  sp.n_positions = o.tokens + o.generate;
  sp.n_prompt = o.tokens;
  const Schedule s = make_schedule(sp);
  const ExposureReport rep = compute_exposure(s, o.tokens, o.rho);
  std::string source;
  const ModelConfig cfg = plan_model_config(o.model, &source);
  const CommEstimate est = predict_prefill(cfg, s, o.tokens, o.elem_bytes);

  if (o.json) {
    nlohmann::json j = {
        {"schedule", {{"strategy", s.strategy}, {"alpha", s.alpha}, {"beta", s.beta}, {"c", s.c},
                      {"delta", s.delta}, {"seed", s.seed}, {"n_prompt", s.n_prompt},
                      {"n_positions", s.n_positions}, {"n_ranks", s.n_ranks()},
                      {"serialized_bytes", serialize(s).size()}, {"comp", s.comp}, {"att", s.att}}},
        {"exposure", exposure_json(rep)},
        {"model", model_json(cfg, source)},
        {"prefill", comm_estimate_json(est)}};
    j["exposure"]["insecure_allowed"] = o.insecure;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("# cascade plan: %s; %d prompt tokens", params_str(s).c_str(), o.tokens);
    if (o.generate) std::printf(" + %d to generate", o.generate);
    std::printf("\nranks needed: 1 + α + β² = %d (client 0, CompNodes 1..%d, AttnNodes %d..%d)\n",
                s.n_ranks(), s.alpha, s.alpha + 1, s.n_ranks() - 1);
    if (s.strategy != kStrategyCDelta)
      std::printf("baseline: attention shard att(p) = p mod β\n");
    print_schedule(s);
    print_exposure(rep);
    if (rep.secure()) {
      std::printf("\nsecurity: OK for ρ = %d (every CompNode gap and AttnNode q/kv gap ≥ %d, or none)\n",
                  rep.rho, rep.rho);
    } else {
      std::printf("\nsecurity: %s for ρ = %d:\n", o.insecure ? "INSECURE (allowed by --insecure)" : "REFUSED",
                  rep.rho);
      for (const auto& v : rep.violations) std::printf("  %s\n", v.c_str());
    }
    print_comm(est, cfg, source, o.tokens);
  }
  std::fflush(stdout);
  enforce_security(rep, o.insecure);
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  o->sched.alpha = 8;
  o->sched.beta = 8;
  o->sched.c = 8;
  CLI::App* sub = app.add_subcommand(
      "plan", "Plan a schedule: positions per CompNode and attention shard, exposure per party, "
              "security check, ranks needed and predicted bytes");
  add_schedule_options(sub, o->sched);
  sub->add_option("-n,--tokens", o->tokens, "Prompt tokens N (exposure and prefill bytes are over 0..N-1)")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_option("--generate", o->generate, "Tokens to generate (planned positions N..N+g-1)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  sub->add_option("--rho", o->rho, "Security parameter ρ: refuse any gap < ρ")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_flag("--insecure", o->insecure, "Report, but do not refuse, a schedule that fails the security check");
  sub->add_option("--bytes", o->elem_bytes, "Bytes per element in transit (4 fp32, 2 bf16)")->capture_default_str()->check(CLI::Range(1, 8));
  sub->add_option("-m,--model", o->model, "GGUF file for the model dims (default: built-in SmolLM2-135M dims)");
  sub->add_flag("--json", o->json, "Print JSON");
  sub->callback([o] { run_plan(*o); });
}

}  // namespace cascade::cli
