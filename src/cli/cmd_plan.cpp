// cascade plan: build a schedule, show it, each party's exposure, the security check, the
// ranks it needs and the predicted bytes of a prefill. Also the schedule options and helpers
// shared with cmd_comm_model.cpp and cmd_run.cpp (declared in plan_common.h).
#include <algorithm>
#include <map>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/comm_model.h"
#include "cascade/exposure.h"
#include "cascade/gap_evidence.h"
#include "cascade/model_config.h"
#include "cascade/schedule.h"
#include "cli_common.h"
#include "commands.h"
#include "plan_common.h"

namespace cascade::cli {

// ---- shared with cmd_comm_model.cpp and cmd_run.cpp (plan_common.h) ------------------------

// --alpha, --beta, --cluster, --delta, --strategy, --schedule-seed (--seed is the sampler's in
// cascade run), --attn-sharding, --lm-head.
void add_schedule_options(CLI::App* sub, ScheduleParams& p) {
  sub->add_option("-a,--alpha", p.alpha, "CompNodes α")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("-b,--beta", p.beta, "Attention shards β (β² AttnNodes)")->capture_default_str()->check(CLI::Range(1, 1 << 14));
  sub->add_option("-c,--cluster", p.c, "Cluster size c (cdelta)")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("--delta", p.delta, "Period δ, (α−1)·c < δ ≤ α·c (cdelta; default α·c)")->check(CLI::NonNegativeNumber);
  sub->add_option("--strategy", p.strategy, "cdelta, or a baseline: contiguous, round-robin, random")
      ->capture_default_str()
      ->check(CLI::IsMember({kStrategyCDelta, kStrategyContiguous, kStrategyRoundRobin, kStrategyRandom}));
  sub->add_option("--schedule-seed", p.seed, "Seed of the random strategy")->capture_default_str();
  const std::map<std::string, AttnSharding> shardings{{"cluster", AttnSharding::cluster},
                                                      {"offset", AttnSharding::offset}};
  sub->add_option("--attn-sharding", p.attn_sharding,
                  "Attention shards: cluster (att(p) = comp(p) mod β, β ≤ α; AttnNode (a,b) sees "
                  "CompNodes a and b) or offset (a cluster split by offset, β ≤ c)")
      ->transform(CLI::CheckedTransformer(shardings))
      ->default_str("cluster");
  const std::map<std::string, LmHead> heads{{"client", LmHead::client}, {"comp", LmHead::comp}};
  sub->add_option("--lm-head", p.lm_head,
                  "Who applies the final norm and output matrix: client (gets the last hidden row; "
                  "no CompNode learns the generated tokens) or comp (the owning CompNode sends logits "
                  "and learns each next token)")
      ->transform(CLI::CheckedTransformer(heads))
      ->default_str("client");
}

ModelConfig plan_model_config(const ModelSpec& spec, std::string* source) {
  if (spec.path.empty()) {
    if (spec.layers != 0)
      throw std::invalid_argument("--layers is for synthetic models: give --model synthetic:NAME");
    *source = "built-in SmolLM2-135M dims (no --model given)";
    return smollm2_135m_config();
  }
  const ModelConfig cfg = model_config(spec);
  *source = spec.path;  // the layer count is printed beside it
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
                     {"q", e.q}, {"kv", e.kv}, {"partial", e.partial}, {"hidden", e.hidden},
                     {"logits", e.logits}, {"layers", e.layers_total()},
                     {"client", e.client_total()}, {"protocol", e.protocol_total()},
                     {"header", e.header}, {"total", e.total()}}},
          {"messages", {{"client", e.client_messages}, {"total", e.messages()}}}};
}

nlohmann::json schedule_json(const Schedule& s) {
  return {{"strategy", s.strategy}, {"attn_sharding", attn_sharding_name(s.attn_sharding)},
          {"lm_head", lm_head_name(s.lm_head)}, {"alpha", s.alpha}, {"beta", s.beta}, {"c", s.c},
          {"delta", s.delta}, {"seed", s.seed}, {"n_prompt", s.n_prompt},
          {"n_positions", s.n_positions}, {"n_ranks", s.n_ranks()},
          {"serialized_bytes", serialize(s).size()}, {"comp", s.comp}, {"att", s.att}};
}

nlohmann::json model_json(const ModelConfig& cfg, const std::string& source) {
  return {{"source", source},  {"name", cfg.name},     {"n_layer", cfg.n_layer},
          {"d_q", cfg.d_q()},  {"d_kv", cfg.d_kv()},   {"n_head", cfg.n_head},
          {"n_head_kv", cfg.n_head_kv}, {"d_head", cfg.d_head}, {"n_vocab", cfg.n_vocab}};
}

namespace {
nlohmann::json gap_json(int gap) { return gap == kNoGap ? nlohmann::json(nullptr) : nlohmann::json(gap); }

std::string verdict(const PartyExposure& e, int rho) {
  if (e.whole_prompt) return "whole prompt";
  if (e.gap != kNoGap && e.gap < rho) return "gap < ρ";
  if (e.segment_gap != kNoGap && e.segment_gap < rho) return "segment gap < ρ";
  return "ok";
}
}  // namespace

nlohmann::json exposure_json(const ExposureReport& rep) {
  nlohmann::json parties = nlohmann::json::array();
  for (const PartyExposure& e : rep.parties) {
    nlohmann::json p = {{"party", e.role.name()}, {"rank", e.rank}, {"observed", e.observed},
                        {"fraction", e.fraction}, {"gap", gap_json(e.gap)},
                        {"shortest_hole", e.shortest_hole},
                        {"shortest_hole_at", e.shortest_hole_at < 0 ? nlohmann::json(nullptr)
                                                                    : nlohmann::json(e.shortest_hole_at)},
                        {"segment_gap", gap_json(e.segment_gap)},
                        {"shortest_segment", e.shortest_segment},
                        {"span_exposed", e.span_exposed < 0 ? nlohmann::json(nullptr) : nlohmann::json(e.span_exposed)},
                        {"unseen", e.unseen},
                        {"longest_run", e.longest_run}, {"generated", e.generated},
                        {"learns_final_token", e.learns_final_token},
                        {"sees_generated", e.sees_generated()}, {"whole_prompt", e.whole_prompt},
                        {"ok", verdict(e, rep.rho) == "ok"}, {"runs", e.runs}};
    if (e.role.kind == RankRole::comp) {
      p["kind"] = "comp";
      p["k"] = e.role.k;
    } else {
      p["kind"] = "attn";
      p["a"] = e.role.a;
      p["b"] = e.role.b;
    }
    parties.push_back(std::move(p));
  }
  return {{"n_prompt", rep.n_prompt}, {"n_positions", rep.n_positions}, {"rho", rep.rho},
          {"secure", rep.secure()}, {"parties", parties}, {"violations", rep.violations},
          {"warnings", rep.warnings}};
}

void print_exposure(const ExposureReport& r) {
  std::printf("\nexposure over %d planned positions (%d prompt + %d generated), ρ = %d.\n"
              "A party observes the positions whose rows it receives (AttnNode (a,b): shards a and b);\n"
              "a hole is a run of unobserved positions before an observed one; gap = 1 + the shortest\n"
              "hole (\"none\": no hole). A CompNode's layer-0 partials check each key shard's segment\n"
              "of a hole alone: seg = 1 + the shortest segment. Refused: gap or seg < ρ, or every\n"
              "prompt position observed. span: the unseen positions a CompNode reads off the value\n"
              "rows its layer-0 partials mix (the span attack; no schedule avoids it: warned, not refused).\n",
              r.n_positions, r.n_prompt, r.n_positions - r.n_prompt, r.rho);
  std::printf("  %-16s %5s %8s %8s %5s %13s %5s %11s %11s %9s  %s\n", "party", "rank", "observed",
              "fraction", "gap", "shortest hole", "seg", "span", "longest run", "generated", "verdict");
  for (const PartyExposure& e : r.parties) {
    const std::string hole = e.shortest_hole == 0 ? "none"
                             : std::to_string(e.shortest_hole) + " at " + std::to_string(e.shortest_hole_at);
    const std::string gen = std::to_string(e.generated) + (e.learns_final_token ? "+final" : "");
    const std::string span = e.role.kind != RankRole::comp ? "-"
                             : e.span_exposed < 0  ? "?"
                                                   : std::to_string(e.span_exposed) + "/" + std::to_string(e.unseen);
    std::printf("  %-16s %5d %8d %8.3f %5s %13s %5s %11s %11d %9s  %s\n", e.role.name().c_str(), e.rank,
                e.observed, e.fraction, gap_str(e.gap).c_str(), hole.c_str(), gap_str(e.segment_gap).c_str(), span.c_str(), e.longest_run,
                gen.c_str(), verdict(e, r.rho).c_str());
  }
  for (const std::string& w : r.warnings) std::printf("  warning: %s\n", w.c_str());
}

// ---------------------------------------------------------------------------------------------

namespace {

struct PlanOptions {
  ScheduleParams sched;
  int tokens = 128;
  int generate = 1;
  int rho = kDefaultRho;
  bool rho_given = false;
  int64_t budget = 0;       // --budget: recommend ρ from the gap experiment
  std::string holes;        // its results (default docs/security/holes.csv)
  bool insecure = false;
  bool json = false;
  int elem_bytes = 4;
  ModelOptions model;
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
  return std::string(buf) + ", attention sharding " + attn_sharding_name(s.attn_sharding) +
         ", LM head at the " + lm_head_name(s.lm_head);
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
    const auto pos = s.positions(0, s.n_positions, k);
    std::printf("  CompNode %-3d (rank %3d): %4zu  %s\n", k, s.comp_rank(k), pos.size(),
                ranges_str(runs_of(pos)).c_str());
  }
}

void print_comm(const CommEstimate& e, const ModelConfig& cfg, const std::string& source, int n) {
  std::printf("\npredicted bytes, prefill of %d tokens and its final row, %d bytes per element\n"
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
  if (e.hidden) row("client: final hidden row", e.hidden);
  if (e.logits) row("client: logits row", e.logits);
  row("protocol total", e.protocol_total());
  row("message headers (positions)", e.header);
  row("on the wire", e.total());
}

void run_plan(const PlanOptions& in) {
  PlanOptions o = in;
  std::string advice;
  if (o.budget > 0) {  // ρ from the measured recovery at this budget (gap_evidence.h)
    const std::string path = o.holes.empty() ? default_holes_path() : o.holes;
    const RhoAdvice a = recommend_rho(read_hole_cells(path), o.budget);
    if (a.rho == 0)
      throw std::invalid_argument("at " + std::to_string(a.budget) + " fills per hole, no measured hole length (up to " +
                                  std::to_string(a.max_len) + ") keeps verified recovery below 5% (" + path + ")");
    advice = "ρ from the gap experiment (" + path + ", " + std::to_string(a.holes) + " holes): at " +
             std::to_string(a.budget) + " fills per hole, holes of " + std::to_string(a.safe_len) + " to " +
             std::to_string(a.max_len) + " positions kept verified recovery below 5%, so ρ = " +
             std::to_string(a.rho) + (o.rho_given ? " (--rho " + std::to_string(o.rho) + " given: the check uses it)" : "");
    if (!o.rho_given) o.rho = a.rho;
  }
  std::string source;
  const ModelConfig cfg = plan_model_config(o.model.spec, &source);
  ScheduleParams sp = o.sched;
  sp.n_positions = o.tokens + o.generate - 1;
  sp.n_prompt = o.tokens;
  sp.shape = cfg.shape();
  const Schedule s = make_schedule(sp);
  const ExposureReport rep = compute_exposure(s, o.rho);
  const CommEstimate est = predict_prefill(s, o.elem_bytes);

  if (o.json) {
    nlohmann::json j = {
        {"schedule", schedule_json(s)},
        {"exposure", exposure_json(rep)},
        {"model", model_json(cfg, source)},
        {"prefill", comm_estimate_json(est)}};
    j["exposure"]["insecure_allowed"] = o.insecure;
    if (!advice.empty()) j["rho_advice"] = advice;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("# cascade plan: %s; %d prompt tokens, %d sampled (%d positions planned)\n",
                params_str(s).c_str(), o.tokens, o.generate, s.n_positions);
    std::printf("ranks needed: 1 + α + β² = %d (client 0, CompNodes 1..%d, AttnNodes %d..%d)\n",
                s.n_ranks(), s.alpha, s.alpha + 1, s.n_ranks() - 1);
    print_schedule(s);
    print_exposure(rep);
    if (!advice.empty()) std::printf("\n%s\n", advice.c_str());
    if (rep.secure()) {
      std::printf("\nsecurity: OK for ρ = %d (every gap and segment gap ≥ %d or none; none sees the whole prompt)\n",
                  rep.rho, rep.rho);
      if (!rep.warnings.empty())
        std::printf("but the check does not cover the span attack: %zu CompNode%s give%s away unseen tokens from "
                    "%s layer-0 partials (warnings above; README \"Attacks\")\n",
                    rep.warnings.size(), rep.warnings.size() == 1 ? "" : "s", rep.warnings.size() == 1 ? "s" : "",
                    rep.warnings.size() == 1 ? "its" : "their");
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
  sub->add_option("-n,--tokens", o->tokens, "Prompt tokens N (prefill bytes are over 0..N-1)")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_option("-g,--generate", o->generate, "Tokens the run samples, as cascade run -n (plans N + g − 1 positions; the check covers them all)")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_option("--rho", o->rho, "Security parameter ρ: refuse any party whose gap is < ρ")->capture_default_str()->check(CLI::Range(1, 1 << 24))
      ->each([o](const std::string&) { o->rho_given = true; });
  sub->add_option("--budget", o->budget, "Recommend ρ for an attacker who verifies B fills per hole, from the gap experiment "
                                          "(cascade attack holes), and check with it unless --rho is given")
      ->check(CLI::PositiveNumber);
  sub->add_option("--holes", o->holes, "The gap experiment's CSV for --budget (default: docs/security/holes.csv)")
      ->check(CLI::ExistingFile);
  sub->add_flag("--insecure", o->insecure, "Report, but do not refuse, a schedule that fails the security check");
  sub->add_option("--bytes", o->elem_bytes, "Bytes per element in transit (4 fp32, 2 bf16)")->capture_default_str()->check(CLI::Range(1, 8));
  add_model_options(sub, o->model, /*weights=*/false, "for the dims; default: built-in SmolLM2-135M dims");
  sub->add_flag("--json", o->json, "Print JSON");
  sub->callback([o] { run_plan(*o); });
}

}  // namespace cascade::cli
