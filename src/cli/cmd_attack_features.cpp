// cascade attack features: the rows a party of Cascade receives (hidden states, k and v rows)
// at chosen layers, computed by the single-process model on a corpus of prompts, written to
// HDF5 for the learning-based attack (scripts/learned_attack.py, docs/attacks-learned.md).
// Layout and layer convention: include/cascade/attack_features.h.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/attack_features.h"
#include "cascade/backend.h"
#include "cli_common.h"
#include "commands.h"

namespace cascade::cli {
namespace {

struct FeaturesOptions {
  std::string model;  // "" → default_model_path()
  std::string prompts;
  std::string out;
  std::string layers = "1,8,16";
  int max_prompts = 0;  // 0: all
  int max_tokens = 0;   // 0: whole prompts
  int threads = 0;
  bool with_q = false;
  bool force = false;
  bool quiet = false;
};

// "1,8,16" → {1, 8, 16}; the range is checked against the model later.
std::vector<int> parse_layers(const std::string& s) {
  std::vector<int> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    const std::string item = s.substr(i, j - i);
    size_t used = 0;
    int l = -1;
    try {
      l = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size())
      throw std::invalid_argument("--layers '" + s + "': '" + item + "' is not a layer number (e.g. --layers 1,8,16)");
    out.push_back(l);
    i = j + 1;
  }
  return out;
}

void run_features(const FeaturesOptions& o) {
  struct stat st;
  if (!o.force && stat(o.out.c_str(), &st) == 0)
    throw std::runtime_error("'" + o.out + "' exists; pass --force to overwrite it");
  ModelSpec spec;
  spec.path = o.model.empty() ? default_model_path() : o.model;
  const LoadedModel lm = load_model(spec, /*weights=*/true);
  require_llama(lm.cfg, "cascade attack features");
  const std::vector<int> layers = parse_layers(o.layers);
  check_feature_layers(layers, lm.cfg.n_layer);
  set_cpu_threads(o.threads);

  // Read and tokenise every prompt first: a bad line fails before minutes of compute.
  std::ifstream in(o.prompts);
  if (!in) throw std::runtime_error("cannot read '" + o.prompts + "'");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  size_t truncated = 0;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    if (o.max_prompts > 0 && (int)prompts.size() >= o.max_prompts) break;
    std::vector<int32_t> ids = jsonl_prompt_ids(lm, line, o.prompts + ":" + std::to_string(n));
    if (o.max_tokens > 0 && (int)ids.size() > o.max_tokens) {
      ids.resize(o.max_tokens);
      ++truncated;
    }
    if ((int)ids.size() > lm.cfg.n_ctx)
      throw std::runtime_error(o.prompts + ":" + std::to_string(n) + ": " + std::to_string(ids.size()) +
                               " tokens > model context " + std::to_string(lm.cfg.n_ctx) + " (try --max-tokens)");
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty()) throw std::runtime_error("'" + o.prompts + "' has no prompt");
  size_t total = 0;
  for (const auto& p : prompts) total += p.size();
  int deepest = 0;
  for (int l : layers) deepest = std::max(deepest, std::min(l + 1, lm.cfg.n_layer));

  if (!o.quiet)
    std::fprintf(stderr, "attack features: %zu prompts, %zu tokens%s, layers", prompts.size(), total,
                 o.max_tokens > 0 ? (" (" + std::to_string(truncated) + " cut to " + std::to_string(o.max_tokens) + ")").c_str() : "");
  if (!o.quiet) {
    for (size_t i = 0; i < layers.size(); ++i) std::fprintf(stderr, "%s%d", i ? "," : " ", layers[i]);
    std::fprintf(stderr, " of %s → %s\n", spec.path.c_str(), o.out.c_str());
  }

  std::unique_ptr<Backend> be = make_cpu_backend();
  // Written to a temporary name, renamed when complete: a killed run leaves no half file
  // under the final name.
  const std::string tmp = o.out + ".tmp";
  try {  // the writer is closed (unwinding) before the catch removes its file
    FeaturesWriter w(tmp, lm.cfg, layers, spec.path, command_line(), o.with_q);
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto last = t0;
    size_t done_tokens = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      w.append(compute_features(*be, lm.model, prompts[i], layers, o.with_q));
      done_tokens += prompts[i].size();
      const auto now = clock::now();
      const bool end = i + 1 == prompts.size();
      if (!o.quiet && (end || std::chrono::duration<double>(now - last).count() >= 5.0)) {
        last = now;
        const double s = std::chrono::duration<double>(now - t0).count();
        const double eta = s / (double)done_tokens * (double)(total - done_tokens);
        std::fprintf(stderr, "  %zu/%zu prompts, %zu tokens, %.1f s, %.2f ms per token-layer (%d layers run)%s",
                     i + 1, prompts.size(), done_tokens, s, 1e3 * s / (double)done_tokens / deepest, deepest,
                     end ? "\n" : "");
        if (!end) std::fprintf(stderr, ", about %.0f s left\n", eta);
      }
    }
    w.finish();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), o.out.c_str()) != 0)
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + o.out + "'");
  if (!o.quiet) std::fprintf(stderr, "wrote %s\n", o.out.c_str());
}

}  // namespace

void add_attack_features(CLI::App& attack) {
  auto o = std::make_shared<FeaturesOptions>();
  CLI::App* sub = attack.add_subcommand(
      "features",
      "Rows a party receives (hidden states, k and v rows) at chosen layers, per prompt of a corpus, into HDF5 "
      "(the training data of the learning-based attack, scripts/learned_attack.py)");
  sub->footer(
      "Layer l's hidden row is the residual stream entering layer l (0: the embedding, n_layer: the last "
      "block's output); its k and v rows are what layer l computes from it (k after RoPE), what an AttnNode "
      "receives. Layout: include/cascade/attack_features.h.");
  sub->add_option("-i,--prompts", o->prompts,
                  "JSONL file, one prompt a line: a JSON string (tokenised raw: no chat template, as `cascade "
                  "tokenize --raw`) or a JSON array of token ids")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--out", o->out, "HDF5 file to write")->required();
  sub->add_option("-m,--model", o->model,
                  "GGUF model file, or synthetic:NAME (token-id prompts only; default: data/models/"
                  "SmolLM2-135M-Instruct.Q4_1.gguf, or $CASCADE_MODEL)");
  sub->add_option("-l,--layers", o->layers, "Layers to keep, comma-separated, each in 0..n_layer")
      ->capture_default_str();
  sub->add_option("--max-prompts", o->max_prompts, "Use the first N prompts (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--max-tokens", o->max_tokens, "Cut every prompt to its first N tokens (0: whole prompts)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("-t,--threads", o->threads, "CPU threads (default: OpenMP/OpenBLAS defaults)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--q", o->with_q, "Also the q rows of each layer (what an AttnNode receives of its query shard)");
  sub->add_flag("--force", o->force, "Overwrite --out if it exists");
  sub->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  sub->callback([o] { run_features(*o); });
}

}  // namespace cascade::cli
