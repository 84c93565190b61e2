// cascade tokenize: the model's tokenizer on a prompt (what `generate` and `run` feed the
// model), or on many strings at once for checks against other tokenizers
// (scripts/golden/check_tokenizer_random.py).
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "cascade/tokenizer.h"
#include "cli_common.h"
#include "commands.h"

namespace cascade::cli {
namespace {

struct TokenizeOptions {
  GenerateOptions gen;  // --model, --prompt, --prompt-file, --raw
  std::string jsonl;    // one JSON string per line in, one JSON array of ids per line out
  bool json = false;
};

// `--jsonl FILE`: every line a JSON string, encoded as is (no template, no BOS), ids to stdout.
void tokenize_lines(const Tokenizer& tok, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    nlohmann::json text;
    try {
      text = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not a JSON string: " + e.what());
    }
    if (!text.is_string()) throw std::runtime_error(path + ":" + std::to_string(n) + ": not a JSON string");
    std::printf("%s\n", nlohmann::json(tok.encode(text.get<std::string>())).dump().c_str());
  }
}

void run_tokenize(const TokenizeOptions& o) {
  const LoadedModel lm = load_model(resolve_model(o.gen.model), /*weights=*/false);
  if (!lm.tokenizer)
    throw std::invalid_argument(lm.spec.path + " has no tokenizer: synthetic models take token ids (generate, run: --tokens N)");
  const Tokenizer& tok = *lm.tokenizer;
  if (!o.jsonl.empty()) return tokenize_lines(tok, o.jsonl);
  GenerateOptions g = o.gen;
  g.n_predict = 0;
  const std::vector<int32_t> ids = encode_prompt(lm, g);
  if (o.json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tok.token_to_piece(id));
    std::printf("%s\n", nlohmann::json{{"ids", ids}, {"pieces", pieces}}.dump(1).c_str());
    return;
  }
  std::printf("%zu tokens%s\n", ids.size(), o.gen.raw ? "" : " (chat template applied; --raw for the text alone)");
  for (int32_t id : ids)
    std::printf("%7d  %s\n", id, nlohmann::json(tok.token_to_piece(id)).dump().c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* sub = app.add_subcommand("tokenize", "Token ids of a prompt, as generate and run see it");
  sub->add_option("-m,--model", o->gen.model.spec.path, "GGUF model file (default: the project's model, or $CASCADE_MODEL)");
  sub->add_option("-p,--prompt", o->gen.prompt, "Prompt text")->capture_default_str();
  sub->add_option("-f,--prompt-file", o->gen.prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  sub->add_flag("--raw", o->gen.raw, "No chat template");
  sub->add_flag("--json", o->json, "Print {\"ids\": [...], \"pieces\": [...]}");
  sub->add_option("--jsonl", o->jsonl, "Encode every line of FILE (a JSON string each, as is) and print one JSON array of ids per line")
      ->check(CLI::ExistingFile);
  sub->callback([o] { run_tokenize(*o); });
}

}  // namespace cascade::cli
