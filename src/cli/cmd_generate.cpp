// cascade generate: single-process reference inference (prefill + KV-cache decode).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cascade/backend.h"
#include "cascade/gguf.h"
#include "cascade/model.h"
#include "cascade/reference.h"
#include "cascade/sampler.h"
#include "cascade/tokenizer.h"
#include "cli_common.h"
#include "commands.h"

namespace cascade::cli {

void add_generate_command(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand(
      "generate", "Single-process reference inference on one model (an encoder: one pass, printing its last hidden states)");
  add_generate_options(sub, *opt);
  sub->callback([opt] {
    set_cpu_threads(opt->threads);
    const LoadedModel lm = load_model(resolve_model(opt->model));
    const std::vector<int32_t> prompt = encode_prompt(lm, *opt);
    const Precision precision = parse_precision(opt->precision);
    // --backend cuda: the weights go to the GPU and every activation and the KV cache stay
    // there. The CPU backend is Reference's own (weights packed in `precision`).
    std::unique_ptr<Backend> gpu;
    if (opt->backend == "cuda") {
      gpu = make_cuda_backend(0);
      std::fprintf(stderr, "backend: %s\n", gpu->name().c_str());
    }
    Reference ref(lm.model, gpu.get(), precision);
    Sampler sampler(opt->sampler);
    if ((lm.tokenizer && opt->tokens == 0) || !opt->ids.empty())
      std::fprintf(stderr, "prompt: %zu tokens\n", prompt.size());
    else  // no text to show: the output is token ids
      std::fprintf(stderr, "prompt: %zu random token ids (--prompt-seed %llu)\n", prompt.size(),
                   (unsigned long long)opt->prompt_seed);

    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    if (lm.cfg.encoder()) {  // one bidirectional pass; the output is the last hidden states
      const std::vector<float> hidden = ref.encode(prompt);
      const double t = std::chrono::duration<double>(clock::now() - t0).count();
      std::printf("%s\n", hidden_summary(hidden, lm.cfg.d_model).c_str());
      if (!opt->hidden_out.empty()) write_hidden(opt->hidden_out, hidden);
      std::fprintf(stderr, "encode: %zu tokens in %.3f s (%.1f tok/s)%s\n", prompt.size(), t, prompt.size() / t,
                   opt->hidden_out.empty() ? "" : (", written to " + opt->hidden_out).c_str());
      return;
    }
    std::vector<float> logits = ref.forward(prompt);
    const double t_prefill = std::chrono::duration<double>(clock::now() - t0).count();
    std::vector<std::vector<float>> rows;  // --logits-out

    std::vector<int32_t> out;
    t0 = clock::now();
    for (int i = 0; i < opt->n_predict; ++i) {
      if (!opt->logits_out.empty()) rows.push_back(logits);
      const int32_t tok = sampler.sample(logits.data(), lm.model.cfg.n_vocab);
      if (tok == lm.eos_id() && !opt->ignore_eos) break;
      std::fputs(lm.token_output(tok, out.empty()).c_str(), stdout);
      out.push_back(tok);
      std::fflush(stdout);
      if (i + 1 == opt->n_predict || ref.n_past() >= lm.model.cfg.n_ctx) break;
      logits = ref.forward({tok});
    }
    const double t_decode = std::chrono::duration<double>(clock::now() - t0).count();
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!opt->logits_out.empty()) write_logits(opt->logits_out, rows);
    const int n_decoded = out.empty() ? 0 : (int)out.size() - 1;  // first token came from prefill
    std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tok/s)\n", prompt.size(), t_prefill,
                 prompt.size() / t_prefill);
    std::fprintf(stderr, "decode:  %d tokens in %.3f s (%.1f tok/s)\n", n_decoded, t_decode,
                 n_decoded > 0 ? n_decoded / t_decode : 0.0);
  });
}

}  // namespace cascade::cli
