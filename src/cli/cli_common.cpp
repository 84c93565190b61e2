#include "cli_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cascade/gguf.h"
#include "cascade/synthetic.h"

namespace cascade::cli {

void add_model_options(CLI::App* sub, ModelOptions& o, bool weights, const std::string& model_help) {
  sub->add_option("-m,--model", o.spec.path,
                  "GGUF model file (llama, gpt2 or bert architecture), or synthetic:NAME, a real shape with generated weights (" +
                      synthetic_names() + "); " + model_help);
  sub->add_option("--layers", o.spec.layers,
                  "Synthetic models: keep the first L layers (1 ≤ L ≤ the model's; default all)")
      ->check(CLI::PositiveNumber);
  if (weights)
    sub->add_option("--weight-seed", o.spec.weight_seed, "Synthetic models: seed of the generated weights")
        ->capture_default_str()
        ->each([&o](const std::string&) { o.weight_seed_given = true; });
}

ModelSpec resolve_model(const ModelOptions& o) {
  ModelSpec s = o.spec;
  if (s.path.empty()) s.path = default_model_path();
  if (o.weight_seed_given && !s.synthetic())
    throw std::invalid_argument("--weight-seed is for synthetic models (synthetic:NAME); '" + s.path +
                                "' is a GGUF file, whose weights are its own");
  return s;
}

void add_generate_options(CLI::App* sub, GenerateOptions& o) {
  add_model_options(sub, o.model, /*weights=*/true);
  auto text = [&o](const std::string&) { o.text_given = true; };
  sub->add_option("-p,--prompt", o.prompt, "Prompt text")->capture_default_str()->each(text);
  sub->add_option("-f,--prompt-file", o.prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile)->each(text);
  sub->add_flag("--raw", o.raw, "Use the prompt as is (default: wrap it in the model's chat template)")->each(text);
  sub->add_option("--tokens", o.tokens,
                  "A prompt of N token ids drawn uniformly from the vocabulary instead of text (the prompt of "
                  "synthetic models, default " + std::to_string(kDefaultSyntheticTokens) + " for them)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--prompt-seed", o.prompt_seed, "Seed of the --tokens prompt")->capture_default_str();
  sub->add_option("--ids", o.ids,
                  "The prompt as token ids, comma-separated (e.g. for models whose tokenizer Cascade lacks, "
                  "such as BERT's WordPiece)")
      ->delimiter(',');
  sub->add_option("--hidden-out", o.hidden_out,
                  "Encoders (bert): write the last hidden states (prompt tokens × d_model float32, "
                  "little-endian, row-major) to this file");
  sub->add_option("--logits-out", o.logits_out,
                  "Decoders: write the logits row of every generated token (tokens × n_vocab float32, "
                  "little-endian, row-major) to this file, e.g. to compare runs bit for bit");
  sub->add_option("-n,--n-predict", o.n_predict, "Tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--ignore-eos", o.ignore_eos, "Keep generating after the end-of-sequence token");
  sub->add_option("--temperature", o.sampler.temperature, "Sampling temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  sub->add_option("--top-k", o.sampler.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", o.sampler.seed, "Sampling seed")->capture_default_str();
  sub->add_option("-t,--threads", o.threads, "CPU threads (generate: OpenMP defaults; run: per rank, the CPUs it may use over the ranks on its node)")->check(CLI::NonNegativeNumber);
  sub->add_option("--precision", o.precision,
                  "Weight GEMMs: f32 (or fp32: exact; the default) or bf16 (bf16 weights and inputs, fp32 "
                  "accumulation and everything else fp32; on the CPU it needs AVX512_BF16 or AMX, on CUDA sm_80 or newer)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "fp32", "bf16"}));
  sub->add_option("--backend", o.backend,
                  "Where the math runs: cpu, or cuda (an NVIDIA GPU; under `run` the CompNodes and AttnNodes, each "
                  "on its node-local rank's GPU, while the client stays on the CPU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

namespace {
// Rows of float32, one after the other, little-endian (this machine's order), to `path`.
void write_rows(const std::string& path, const std::string& flag,
                const std::vector<const std::vector<float>*>& rows) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (const std::vector<float>* r : rows)
    out.write(reinterpret_cast<const char*>(r->data()), (std::streamsize)(4 * r->size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + flag + " file '" + path + "'");
}
}  // namespace

void write_hidden(const std::string& path, const std::vector<float>& hidden) {
  write_rows(path, "--hidden-out", {&hidden});
}

void write_logits(const std::string& path, const std::vector<std::vector<float>>& rows) {
  std::vector<const std::vector<float>*> p;
  for (const std::vector<float>& r : rows) p.push_back(&r);
  write_rows(path, "--logits-out", p);
}

std::string hidden_summary(const std::vector<float>& hidden, int d) {
  const size_t rows = d > 0 ? hidden.size() / d : 0;
  double sum = 0, max_abs = 0;
  for (float v : hidden) {
    sum += v;
    max_abs = std::max(max_abs, (double)std::fabs(v));
  }
  char buf[200];
  std::snprintf(buf, sizeof buf, "last hidden states: %zu × %d, mean %.6g, max |h| %.6g; row 0 starts %.6g %.6g %.6g",
                rows, d, hidden.empty() ? 0.0 : sum / hidden.size(), max_abs, hidden.size() > 0 ? hidden[0] : 0.0,
                hidden.size() > 1 ? hidden[1] : 0.0, hidden.size() > 2 ? hidden[2] : 0.0);
  return buf;
}

namespace {
std::string g_command_line;
}

void set_command_line(int argc, char** argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) g_command_line += (i ? " " : "") + std::string(argv[i]);
}

const std::string& command_line() { return g_command_line; }

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string LoadedModel::token_output(int32_t tok, bool first) const {
  if (tokenizer) return tokenizer->token_to_piece(tok);
  return (first ? "" : " ") + std::to_string(tok);
}

void require_llama(const ModelConfig& cfg, const std::string& what) {
  if (cfg.family != Family::llama)
    throw std::invalid_argument(what + " supports the llama family only; " + cfg.name + " is " + cfg.arch);
}

LoadedModel load_model(const ModelSpec& spec, bool weights) {
  LoadedModel lm;
  lm.spec = spec;
  if (spec.synthetic()) {  // no file, no tokenizer
    lm.cfg = model_config(spec);
    if (weights) lm.model = Model::load(spec);
    return lm;
  }
  std::ifstream probe(spec.path);
  if (!probe)
    throw std::runtime_error("model file '" + spec.path + "' not found (run scripts/fetch-model, or pass --model)");
  model_config(spec);  // refuses --layers with a GGUF file before anything is loaded
  GgufFile g(spec.path);
  lm.cfg = ModelConfig::from_gguf(g);
  if (weights) lm.model = Model::load(g);
  // Only byte-level BPE is built in; other models (bert's WordPiece) take token ids.
  if (g.has("tokenizer.ggml.model") && g.get_string("tokenizer.ggml.model") == "gpt2")
    lm.tokenizer = std::make_unique<Tokenizer>(g);
  lm.chatml = g.has("tokenizer.chat_template") &&
              g.get_string("tokenizer.chat_template").find("<|im_start|>") != std::string::npos;
  return lm;
}

namespace {

std::vector<int32_t> encode_text(const LoadedModel& lm, const GenerateOptions& o) {
  const Tokenizer& tok = *lm.tokenizer;
  std::string text = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  if (text.empty()) throw std::invalid_argument("the prompt is empty");
  // One user turn in the model's chat template, generation prompt appended. Only ChatML
  // (SmolLM2-Instruct's) is built in; other templates need --raw.
  if (!o.raw && !lm.chatml)
    throw std::invalid_argument("this model's chat template is not ChatML; pass --raw and format the prompt yourself");
  if (!o.raw) text = "<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n";
  std::vector<int32_t> ids = tok.encode(text);
  if (tok.add_bos()) ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

}  // namespace

std::vector<int32_t> encode_prompt(const LoadedModel& lm, const GenerateOptions& o) {
  const ModelConfig& cfg = lm.cfg;
  if (o.tokens > 0 && o.text_given)
    throw std::invalid_argument("give the prompt either as text (--prompt, --prompt-file, --raw) or as --tokens N, not both");
  if (!lm.tokenizer && o.text_given)
    throw std::invalid_argument(lm.spec.path + " has no tokenizer, so --prompt, --prompt-file and --raw do not "
                                "apply: give the prompt as --ids I,J,... or --tokens N (random token ids, --prompt-seed S)");
  if (!o.ids.empty() && (o.tokens > 0 || o.text_given))
    throw std::invalid_argument("give the prompt one way: --ids, --tokens N, or text (--prompt, --prompt-file, --raw)");
  std::vector<int32_t> ids;
  if (!o.ids.empty()) {
    ids = o.ids;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= cfg.n_vocab)
        throw std::invalid_argument("--ids: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                    " is outside the vocabulary 0.." + std::to_string(cfg.n_vocab - 1));
  } else if (o.tokens > 0 || !lm.tokenizer) {
    ids = synthetic_prompt(o.tokens > 0 ? o.tokens : kDefaultSyntheticTokens, cfg.n_vocab, o.prompt_seed);
  } else {
    ids = encode_text(lm, o);
  }
  if (ids.empty()) throw std::invalid_argument("the prompt encodes to no tokens");
  if (cfg.encoder()) {  // one pass over the input, nothing generated
    if ((int)ids.size() > cfg.n_ctx)
      throw std::invalid_argument("input (" + std::to_string(ids.size()) + " tokens) exceeds the model context of " +
                                  std::to_string(cfg.n_ctx));
    if (!o.logits_out.empty())
      throw std::invalid_argument("--logits-out is for decoders; " + cfg.arch + " is an encoder (use --hidden-out)");
    return ids;
  }
  if (!o.hidden_out.empty())
    throw std::invalid_argument("--hidden-out is for encoders (bert); " + cfg.arch + " outputs tokens");
  if ((int)ids.size() + o.n_predict > cfg.n_ctx)
    throw std::invalid_argument("prompt (" + std::to_string(ids.size()) + " tokens) plus " +
                                std::to_string(o.n_predict) + " generated tokens exceeds the model context of " +
                                std::to_string(cfg.n_ctx));
  return ids;
}

// One line of the prompts file: a JSON string (text, tokenised raw: no chat template, BOS
// only if the tokenizer asks for one, as `cascade tokenize --raw`) or a JSON array of token
// ids (for models without a tokenizer, e.g. synthetic ones).
std::vector<int32_t> jsonl_prompt_ids(const LoadedModel& lm, const std::string& line, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where + ": not JSON: " + e.what());
  }
  if (j.is_string()) {
    if (!lm.tokenizer)
      throw std::runtime_error(where + ": a text prompt, but " + lm.spec.path +
                               " has no tokenizer: give token ids as a JSON array of integers");
    GenerateOptions g;
    g.prompt = j.get<std::string>();
    g.raw = true;
    g.text_given = true;
    g.n_predict = 0;
    try {
      return encode_prompt(lm, g);
    } catch (const std::exception& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
  }
  if (j.is_array()) {
    std::vector<int32_t> ids;
    for (const auto& x : j) {
      if (!x.is_number_integer()) throw std::runtime_error(where + ": an array with a non-integer entry");
      ids.push_back(x.get<int32_t>());
    }
    if (ids.empty()) throw std::runtime_error(where + ": an empty array");
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= lm.cfg.n_vocab)
        throw std::runtime_error(where + ": token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                 " is outside the vocabulary 0.." + std::to_string(lm.cfg.n_vocab - 1));
    return ids;
  }
  throw std::runtime_error(where + ": neither a JSON string nor an array of token ids");
}

}  // namespace cascade::cli
