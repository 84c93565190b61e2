// Options and helpers shared by the subcommands that run a model (generate, bench, run).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cascade/model.h"
#include "cascade/sampler.h"
#include "cascade/tokenizer.h"

namespace cascade::cli {

inline constexpr const char* kDefaultPrompt =
    "Explain in two sentences why the sky is blue.";

struct GenerateOptions {
  std::string model;   // empty: default_model_path()
  std::string prompt = kDefaultPrompt;
  std::string prompt_file;
  bool raw = false;    // no chat template
  int n_predict = 32;
  bool ignore_eos = false;
  int threads = 0;
  SamplerOptions sampler;
};

void add_generate_options(CLI::App* sub, GenerateOptions& o);

// The command line this process was started with (main.cpp records it), for traces.
void set_command_line(int argc, char** argv);
const std::string& command_line();
// The current time as ISO 8601 UTC, e.g. "2026-11-30T08:15:02Z".
std::string utc_now();

struct LoadedModel {
  ModelConfig cfg;
  Model model;  // empty unless loaded with weights
  std::unique_ptr<Tokenizer> tokenizer;
  bool chatml = false;  // the GGUF's chat template is ChatML (<|im_start|>role ... <|im_end|>)
};
// "" → default_model_path(). Without weights: config and tokenizer only (the client's needs).
LoadedModel load_model(const std::string& path, bool weights = true);

// Reads --prompt-file if given, applies the chat template unless --raw, tokenises; throws on
// an empty prompt or one longer than the model's context.
std::vector<int32_t> encode_prompt(const LoadedModel& lm, const GenerateOptions& o);

}  // namespace cascade::cli
