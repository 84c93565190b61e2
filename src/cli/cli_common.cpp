#include "cli_common.h"

#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "cascade/gguf.h"

namespace cascade::cli {

void add_generate_options(CLI::App* sub, GenerateOptions& o) {
  sub->add_option("-m,--model", o.model, "GGUF model file (default: data/models/SmolLM2-135M-Instruct.Q4_1.gguf, or $CASCADE_MODEL)");
  sub->add_option("-p,--prompt", o.prompt, "Prompt text")->capture_default_str();
  sub->add_option("-f,--prompt-file", o.prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  sub->add_flag("--raw", o.raw, "Use the prompt as is (default: wrap it in the model's chat template)");
  sub->add_option("-n,--n-predict", o.n_predict, "Tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--ignore-eos", o.ignore_eos, "Keep generating after the end-of-sequence token");
  sub->add_option("--temperature", o.sampler.temperature, "Sampling temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  sub->add_option("--top-k", o.sampler.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", o.sampler.seed, "Sampling seed")->capture_default_str();
  sub->add_option("-t,--threads", o.threads, "CPU threads (default: OpenMP/OpenBLAS defaults)")->check(CLI::NonNegativeNumber);
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

LoadedModel load_model(const std::string& path_in, bool weights) {
  const std::string path = path_in.empty() ? default_model_path() : path_in;
  std::ifstream probe(path);
  if (!probe)
    throw std::runtime_error("model file '" + path + "' not found (run scripts/fetch-model, or pass --model)");
  GgufFile g(path);
  LoadedModel lm{ModelConfig::from_gguf(g), weights ? Model::load(g) : Model{},
                 std::make_unique<Tokenizer>(g), false};
  lm.chatml = g.has("tokenizer.chat_template") &&
              g.get_string("tokenizer.chat_template").find("<|im_start|>") != std::string::npos;
  return lm;
}

std::vector<int32_t> encode_prompt(const LoadedModel& lm, const GenerateOptions& o) {
  const Tokenizer& tok = *lm.tokenizer;
  const ModelConfig& cfg = lm.cfg;
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
  if (ids.empty()) throw std::invalid_argument("the prompt encodes to no tokens");
  if ((int)ids.size() + o.n_predict > cfg.n_ctx)
    throw std::invalid_argument("prompt (" + std::to_string(ids.size()) + " tokens) plus " +
                                std::to_string(o.n_predict) + " generated tokens exceeds the model context of " +
                                std::to_string(cfg.n_ctx));
  return ids;
}

}  // namespace cascade::cli
