// Synthetic models: the table of shapes and the weight generator (synthetic.h).
#include "cascade/synthetic.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace cascade {
namespace {

// Every shape, with its source. Head dim = d_model / n_head.
const std::vector<SyntheticShape> kShapes = {
    // name            layers  d_model heads kv  d_ff   vocab   ctx   rope θ     eps   tied
    {"llama2-7b",        32,   4096,   32,  32, 11008,  32000, 4096, 10000.0f,  1e-5f, false,
     "meta-llama/Llama-2-7b-hf config.json"},
    {"llama2-13b",       40,   5120,   40,  40, 13824,  32000, 4096, 10000.0f,  1e-5f, false,
     "meta-llama/Llama-2-13b-hf config.json"},
    {"llama3-8b",        32,   4096,   32,   8, 14336, 128256, 8192, 500000.0f, 1e-5f, false,
     "meta-llama/Meta-Llama-3-8B config.json"},
    {"smollm2-1.7b",     24,   2048,   32,  32,  8192,  49152, 8192, 130000.0f, 1e-5f, true,
     "HuggingFaceTB/SmolLM2-1.7B config.json"},
    {"smollm2-135m",     30,    576,    9,   3,  1536,  49152, 8192, 100000.0f, 1e-5f, true,
     "HuggingFaceTB/SmolLM2-135M config.json (the default model's shape)"},
    {"tiny",              2,     64,    4,   2,   128,    256,  512, 10000.0f,  1e-5f, false,
     "Cascade's own, for fast tests (GQA, untied)"},
    // GPT-2 (tied LM head; rope θ unused) and BERT (no LM head; 2 token types).
    {"gpt2",             12,    768,   12,  12,  3072,  50257, 1024,     0.0f,  1e-5f, true,
     "openai-community/gpt2 config.json", Family::gpt2},
    {"gpt2-medium",      24,   1024,   16,  16,  4096,  50257, 1024,     0.0f,  1e-5f, true,
     "openai-community/gpt2-medium config.json", Family::gpt2},
    {"gpt2-tiny",         2,     64,    4,   4,   256,    256,  512,     0.0f,  1e-5f, true,
     "Cascade's own, for fast tests", Family::gpt2},
    {"bert-base",        12,    768,   12,  12,  3072,  30522,  512,     0.0f, 1e-12f, true,
     "google-bert/bert-base-uncased config.json", Family::bert, 2},
    {"bert-large",       24,   1024,   16,  16,  4096,  30522,  512,     0.0f, 1e-12f, true,
     "google-bert/bert-large-uncased config.json", Family::bert, 2},
    {"bert-tiny",         2,     64,    4,   4,   256,    256,  512,     0.0f, 1e-12f, true,
     "Cascade's own, for fast tests", Family::bert, 2},
};

// SplitMix64's output function (Steele, Lea & Flood, OOPSLA 2014): a bijection of 64-bit
// words whose outputs, over a counter, pass BigCrush.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;  // SplitMix64's increment: 2^64 / φ

// The sum s of four uniform 16-bit pieces has variance 4·(65536² − 1)/12; 2s − 4·65535 is
// centred, with std 4·sqrt((65536² − 1)/12) ≈ 75674.4. IEEE sqrt is correctly rounded, so this
// constant is the same everywhere.
const float kScale =
    static_cast<float>(kSyntheticStd / (4.0 * std::sqrt((65536.0 * 65536.0 - 1.0) / 12.0)));

bool is_norm(const std::string& tensor) {
  static const std::string suffix = "_norm.weight";
  return tensor.size() >= suffix.size() &&
         tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const SyntheticShape& find_shape(const std::string& model) {
  if (!is_synthetic(model))
    throw std::invalid_argument("'" + model + "' is not a synthetic model (synthetic:NAME)");
  const std::string name = model.substr(std::string(kSyntheticPrefix).size());
  for (const SyntheticShape& s : kShapes)
    if (name == s.name) return s;
  throw std::invalid_argument("unknown synthetic model '" + name + "'; known: " +
                              synthetic_names());
}

}  // namespace

const std::vector<SyntheticShape>& synthetic_shapes() { return kShapes; }

std::string synthetic_names() {
  std::string out;
  for (const SyntheticShape& s : kShapes) out += (out.empty() ? "" : ", ") + std::string(s.name);
  return out;
}

bool is_synthetic(const std::string& model) {
  return model.compare(0, std::string(kSyntheticPrefix).size(), kSyntheticPrefix) == 0;
}

ModelConfig synthetic_config(const std::string& model, int layers) {
  const SyntheticShape& s = find_shape(model);
  if (layers < 0 || layers > s.n_layer)
    throw std::invalid_argument("--layers " + std::to_string(layers) + " is out of range for " +
                                model + ": it has " + std::to_string(s.n_layer) +
                                " layers (1 ≤ L ≤ " + std::to_string(s.n_layer) + ")");
  ModelConfig c;
  c.family = s.family;
  c.arch = family_name(s.family);
  c.n_token_types = s.n_token_types;
  c.name = std::string(kSyntheticPrefix) + s.name;
  c.n_layer = layers == 0 ? s.n_layer : layers;
  c.d_model = s.d_model;
  c.n_head = s.n_head;
  c.n_head_kv = s.n_head_kv;
  c.d_head = s.d_model / s.n_head;
  c.d_ff = s.d_ff;
  c.n_vocab = s.n_vocab;
  c.n_ctx = s.n_ctx;
  c.rope_theta = s.rope_theta;
  c.norm_eps = s.norm_eps;
  c.tied_output = s.tied_output;
  return c;
}

uint64_t synthetic_tensor_key(uint64_t seed, const std::string& tensor) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the name
  for (const unsigned char ch : tensor) h = (h ^ ch) * 0x100000001b3ULL;
  return mix64(seed ^ mix64(h));
}

float synthetic_value(uint64_t key, uint64_t index) {
  const uint64_t z = mix64(key + (index + 1) * kGolden);
  const int32_t s = static_cast<int32_t>(z & 0xffff) + static_cast<int32_t>((z >> 16) & 0xffff) +
                    static_cast<int32_t>((z >> 32) & 0xffff) + static_cast<int32_t>(z >> 48);
  return static_cast<float>(2 * s - 4 * 65535) * kScale;  // exact int → float, one rounding
}

float synthetic_weight(uint64_t seed, const std::string& tensor, uint64_t index) {
  return is_norm(tensor) ? 1.0f : synthetic_value(synthetic_tensor_key(seed, tensor), index);
}

void synthetic_fill(uint64_t seed, const std::string& tensor, uint64_t n, float* out) {
  const int64_t count = static_cast<int64_t>(n);
  if (is_norm(tensor)) {
    for (int64_t i = 0; i < count; ++i) out[i] = 1.0f;
    return;
  }
  const uint64_t key = synthetic_tensor_key(seed, tensor);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) out[i] = synthetic_value(key, static_cast<uint64_t>(i));
}

Sha256 synthetic_key(const ModelConfig& c, uint64_t seed) {
  // Everything a generated value depends on, and the dims (the cache checks them too).
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "cascade synthetic weights\ngenerator %d\nmodel %s\nlayers %d\nseed %llu\n"
                "std %.9g\nlayout %s\ndims %d %d %d %d %d %d %d %d %d\n",
                kSyntheticGeneratorVersion, c.name.c_str(), c.n_layer, (unsigned long long)seed,
                kSyntheticStd, kLayoutF32.descriptor.c_str(), c.d_model, c.n_head, c.n_head_kv,
                c.d_head, c.d_ff, c.n_vocab, c.n_ctx, c.tied_output ? 1 : 0, c.n_layer);
  return sha256_string(buf);
}

WeightOrigin synthetic_weight_origin(const ModelConfig& cfg, uint64_t seed) {
  if (!is_synthetic(cfg.name))
    throw std::invalid_argument("synthetic_weight_origin: '" + cfg.name + "' is not synthetic");
  const std::string name = cfg.name.substr(std::string(kSyntheticPrefix).size());
  WeightOrigin o;
  o.label = cfg.name + " (" + std::to_string(cfg.n_layer) + (cfg.n_layer == 1 ? " layer" : " layers") +
            ", weight seed " + std::to_string(seed) + ")";
  o.file_stem = "synthetic-" + name + "-L" + std::to_string(cfg.n_layer);
  o.home_dir = std::string(CASCADE_SOURCE_DIR) + "/data/models";
  o.verb = "generated " + o.label + ", written";
  o.key = [cfg, seed] { return synthetic_key(cfg, seed); };
  o.fill = [seed](const WeightPart& p, float* out) {
    synthetic_fill(seed, p.gguf_name, p.ne0 * p.ne1, out);
  };
  return o;
}

std::vector<int32_t> synthetic_prompt(int n, int n_vocab, uint64_t seed) {
  if (n < 0 || n_vocab <= 0) throw std::invalid_argument("synthetic_prompt: bad size");
  // Rejection sampling on the hash's 64-bit output: uniform without modulo bias.
  const uint64_t v = static_cast<uint64_t>(n_vocab);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % v;
  const uint64_t key = mix64(seed ^ 0x70726f6d7074ULL);  // "prompt": not a weight tensor's key
  std::vector<int32_t> ids;
  for (uint64_t ctr = 0; (int)ids.size() < n; ++ctr) {
    const uint64_t z = mix64(key + (ctr + 1) * kGolden);
    if (z < limit) ids.push_back(static_cast<int32_t>(z % v));
  }
  return ids;
}

}  // namespace cascade
