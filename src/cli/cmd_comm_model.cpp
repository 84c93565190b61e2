// cascade comm-model: the bytes the communication model predicts (PROTOCOL.md
// "Communication model"; include/cascade/comm_model.h) for a prefill, one decode step and a
// whole run, per kind, in aligned columns.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cascade/comm_model.h"
#include "cascade/model_config.h"
#include "cascade/schedule.h"
#include "cli_common.h"
#include "commands.h"
#include "plan_common.h"

namespace cascade::cli {

namespace {

struct CommModelOptions {
  ScheduleParams sched;
  int tokens = 128;
  int generate = 32;
  int elem_bytes = 4;
  bool json = false;
  ModelOptions model;
};

void run_comm_model(const CommModelOptions& o) {
  std::string source;
  const ModelConfig cfg = plan_model_config(o.model.spec, &source);
  ScheduleParams sp = o.sched;
  // Like cascade run -n G: the prompt, then one position per decode step (G − 1); one more is
  // planned so that a decode step can be shown even when G = 1. An encoder runs one pass.
  const bool encoder = cfg.encoder();
  const int generate = encoder ? 1 : o.generate;
  sp.n_positions = o.tokens + (encoder ? 0 : std::max(o.generate - 1, 1));
  sp.n_prompt = o.tokens;
  sp.shape = cfg.shape();
  const Schedule s = make_schedule(sp);
  const CommEstimate pre = predict_prefill(s, o.elem_bytes);
  const CommEstimate dec = encoder ? CommEstimate{} : predict_decode_step(s, o.tokens, o.elem_bytes);
  const CommEstimate run = predict_run(s, generate, o.elem_bytes);

  if (o.json) {
    nlohmann::json j = {
        {"schedule", schedule_json(s)},
        {"model", model_json(cfg, source)},
        {"tokens", o.tokens},
        {"generate", generate},
        {"prefill", comm_estimate_json(pre)},
        {"decode_step", comm_estimate_json(dec)},
        {"decode_position", o.tokens},
        {"run", comm_estimate_json(run)}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  std::printf("# comm model: %s, α = %d, β = %d, c = %d, δ = %d, %s attention sharding, LM head at "
              "the %s; %d ranks\n", s.strategy.c_str(), s.alpha, s.beta, s.c, s.delta,
              attn_sharding_name(s.attn_sharding), lm_head_name(s.lm_head), s.n_ranks());
  std::printf("# model: %s: %d layers, d_q %d, d_kv %d, %d heads × %d, vocab %d\n", source.c_str(),
              cfg.n_layer, cfg.d_q(), cfg.d_kv(), cfg.n_head, cfg.d_head, cfg.n_vocab);
  if (encoder)
    std::printf("# %d input tokens, one pass (%s is an encoder: nothing generated, --generate does not apply; "
                "the client gets every last hidden row), %d bytes per element\n",
                o.tokens, cfg.arch.c_str(), o.elem_bytes);
  else
    std::printf("# %d prompt tokens, %d generated (prefill, %d decode steps, stop), %d bytes per element\n",
                o.tokens, o.generate, o.generate - 1, o.elem_bytes);
  std::printf("# per layer: up = Σ_p β·(d_q + 2·d_kv)·b, down = Σ_p β·n_h·(d_h + 2)·b\n");
  std::printf("# headers: every message lists its parts and positions, 12 + Σ_parts (16 + 4·rows) bytes,\n"
              "#   counted beside the protocol's figure\n");
  std::printf("# run column: per-layer rows are summed over the prefill and the decode steps\n\n");

  char pre_h[48], dec_h[48], run_h[48];
  std::snprintf(pre_h, sizeof pre_h, "prefill (N=%d)", o.tokens);
  std::snprintf(dec_h, sizeof dec_h, encoder ? "decode (none)" : "decode (p=%d)", o.tokens);
  std::snprintf(run_h, sizeof run_h, encoder ? "run (one pass)" : "run (%d tokens)", generate);
  std::printf("%-26s %18s %18s %18s\n", "bytes", pre_h, dec_h, run_h);
  auto row = [&](const char* what, uint64_t a, uint64_t b, uint64_t c) {
    std::printf("%-26s %18llu %18llu %18llu\n", what, (unsigned long long)a, (unsigned long long)b,
                (unsigned long long)c);
  };
  auto human = [&](const char* what, uint64_t a, uint64_t b, uint64_t c) {
    std::printf("%-26s %18s %18s %18s\n", what, format_bytes(a).c_str(), format_bytes(b).c_str(),
                format_bytes(c).c_str());
  };
  row("per layer up: q", pre.q_per_layer, dec.q_per_layer, run.q_per_layer);
  row("per layer up: k/v", pre.kv_per_layer, dec.kv_per_layer, run.kv_per_layer);
  row("per layer up", pre.up_per_layer(), dec.up_per_layer(), run.up_per_layer());
  row("per layer down: partial", pre.down_per_layer(), dec.down_per_layer(), run.down_per_layer());
  row("per layer messages", pre.messages_per_layer(), dec.messages_per_layer(),
      run.messages_per_layer());
  row("all layers: q", pre.q, dec.q, run.q);
  row("all layers: k/v", pre.kv, dec.kv, run.kv);
  row("all layers: partial", pre.partial, dec.partial, run.partial);
  row("client: schedule", pre.schedule, dec.schedule, run.schedule);
  row("client: token ids", pre.tokens, dec.tokens, run.tokens);
  row("client: control", pre.control, dec.control, run.control);
  row(encoder ? "client: last hidden rows" : "client: final hidden row", pre.hidden, dec.hidden, run.hidden);
  row("client: logits", pre.logits, dec.logits, run.logits);
  row("messages", pre.messages(), dec.messages(), run.messages());
  row("protocol total", pre.protocol_total(), dec.protocol_total(), run.protocol_total());
  row("message headers", pre.header, dec.header, run.header);
  row("on the wire", pre.total(), dec.total(), run.total());
  human("on the wire (binary units)", pre.total(), dec.total(), run.total());
}

}  // namespace

void add_comm_model_command(CLI::App& app) {
  auto o = std::make_shared<CommModelOptions>();
  o->sched.alpha = 8;
  o->sched.beta = 8;
  o->sched.c = 8;
  CLI::App* sub = app.add_subcommand(
      "comm-model", "Bytes the communication model predicts: per layer, prefill, per decode token, whole run");
  add_schedule_options(sub, o->sched);
  sub->add_option("-n,--tokens", o->tokens, "Prompt tokens N")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_option("-g,--generate", o->generate, "Tokens the run samples, as cascade run -n (≥ 1; the prefill gives the first)")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  sub->add_option("--bytes", o->elem_bytes, "Bytes per element in transit (4 fp32, 2 bf16)")->capture_default_str()->check(CLI::Range(1, 8));
  add_model_options(sub, o->model, /*weights=*/false, "for the dims; default: built-in SmolLM2-135M dims");
  sub->add_flag("--json", o->json, "Print JSON");
  sub->callback([o] { run_comm_model(*o); });
}

}  // namespace cascade::cli
