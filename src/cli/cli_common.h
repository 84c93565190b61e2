// Options and helpers shared by the subcommands that take a model (generate, run, bench, plan,
// comm-model): --model names a GGUF file or synthetic:NAME, in every one of them alike.
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
// Prompt length of a synthetic model when --tokens is not given.
inline constexpr int kDefaultSyntheticTokens = 32;

// --model, --layers (and --weight-seed where weights are used).
struct ModelOptions {
  ModelSpec spec;  // spec.path "": the command's default
  bool weight_seed_given = false;
};
// `weights`: the command loads weights, so --weight-seed applies. `model_help` describes the
// default of --model.
void add_model_options(CLI::App* sub, ModelOptions& o, bool weights,
                       const std::string& model_help = "default: data/models/SmolLM2-135M-Instruct.Q4_1.gguf, or $CASCADE_MODEL");
// The spec to load: "" → default_model_path(). Throws for --weight-seed with a GGUF file
// (--layers is checked when the model is opened).
ModelSpec resolve_model(const ModelOptions& o);

struct GenerateOptions {
  ModelOptions model;
  std::string prompt = kDefaultPrompt;
  std::string prompt_file;
  bool raw = false;    // no chat template
  bool text_given = false;  // --prompt, --prompt-file or --raw was given
  int tokens = 0;      // --tokens N: N random token ids instead of a text prompt (0: not given)
  uint64_t prompt_seed = kDefaultPromptSeed;
  std::vector<int32_t> ids;  // --ids: the prompt as token ids
  std::string hidden_out;    // --hidden-out FILE (encoders)
  std::string logits_out;    // --logits-out FILE (decoders)
  int n_predict = 32;
  bool ignore_eos = false;
  int threads = 0;
  std::string precision = "f32";  // --precision: the weight GEMMs' (packed_gemm.h)
  std::string backend = "cpu";    // --backend: cpu or cuda (backend.h)
  SamplerOptions sampler;
};

void add_generate_options(CLI::App* sub, GenerateOptions& o);

// Throws std::invalid_argument("<what> supports the llama family only; …") for gpt2 and bert
// (the attacks' batched forward and the views are written for llama layers).
void require_llama(const ModelConfig& cfg, const std::string& what);

// --hidden-out: an encoder's last hidden states as raw float32. Throws on an I/O error.
void write_hidden(const std::string& path, const std::vector<float>& hidden);
// --logits-out: each generated token's logits row as raw float32 (steps × n_vocab). Throws on
// an I/O error.
void write_logits(const std::string& path, const std::vector<std::vector<float>>& rows);
// One line describing (rows, d) hidden states: shape, mean, max |h|, the first values.
std::string hidden_summary(const std::vector<float>& hidden, int d);

// The command line this process was started with (main.cpp records it), for traces.
void set_command_line(int argc, char** argv);
const std::string& command_line();
// The current time as ISO 8601 UTC, e.g. "2026-11-30T08:15:02Z".
std::string utc_now();

struct LoadedModel {
  ModelSpec spec;
  ModelConfig cfg;
  Model model;  // empty unless loaded with weights
  std::unique_ptr<Tokenizer> tokenizer;  // nullptr for a synthetic model (it has none)
  bool chatml = false;  // the GGUF's chat template is ChatML (<|im_start|>role ... <|im_end|>)

  int32_t eos_id() const { return tokenizer ? tokenizer->eos_id() : -1; }
  // How a generated token is printed: its text, or (no tokenizer) its id, space-separated.
  std::string token_output(int32_t tok, bool first) const;
};
// Without weights: config and tokenizer only. Throws naming the file when a GGUF is missing.
LoadedModel load_model(const ModelSpec& spec, bool weights = true);

// The prompt's token ids: --tokens N random ids (from --prompt-seed), or the text of --prompt /
// --prompt-file in the chat template unless --raw, tokenised. A synthetic model without
// --tokens gets kDefaultSyntheticTokens random ids. Throws on an empty prompt, one longer than
// the model's context, a text prompt for a model without tokenizer, or both kinds at once.
std::vector<int32_t> encode_prompt(const LoadedModel& lm, const GenerateOptions& o);

// One line of a prompts file (.jsonl, `where` = "FILE:LINE" for messages): a JSON string (text,
// tokenised raw: no chat template, as `cascade tokenize --raw`) or a JSON array of token ids
// (for models without a tokenizer). Throws naming `where`.
std::vector<int32_t> jsonl_prompt_ids(const LoadedModel& lm, const std::string& line, const std::string& where);

}  // namespace cascade::cli
