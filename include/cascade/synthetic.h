// Synthetic models (llama, gpt2 and bert families): the real shapes of models that do not fit here or are not
// available offline, with seeded deterministic weights, for scaling experiments. `--model
// synthetic:NAME` (NAME from synthetic_shapes()) with `--layers L` to keep the first L layers.
//
// Weights. Element i of the tensor named t (GGUF names: "token_embd.weight",
// "blk.3.attn_q.weight", ...) is a function of (seed, t, i) alone: a counter-based hash
// (SplitMix64's mixer over a per-tensor key plus i), whose four 16-bit pieces are summed
// (Irwin–Hall: bell-shaped, bounded at ±3.46σ) and scaled to mean 0, std 0.02, the usual
// initialiser of llama models. Integer arithmetic and one float multiply: the same bits on
// every machine and compiler, any element computable alone and every tensor filled in
// parallel. Norm weights are 1 (LayerNorm biases and every other bias are hash values like
// the matrices). Layer l's tensors do not depend on L, so a model cut to L
// layers is the first L layers of the whole one.
//
// Storage. Generated once into the weight cache (weight_cache.h), keyed by the sha256 of the
// spec (name, layers, seed, layout, generator version), file
// `synthetic-<name>-L<layers>.<16 hex>.f32.cache`, and mmap'd: ranks of a node share one copy.
//
// No tokenizer: prompts are token ids (synthetic_prompt).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cascade/model_config.h"
#include "cascade/weight_cache.h"

namespace cascade {

inline constexpr const char* kSyntheticPrefix = "synthetic:";
inline constexpr uint64_t kDefaultWeightSeed = 1;
inline constexpr uint64_t kDefaultPromptSeed = 1;
inline constexpr double kSyntheticStd = 0.02;  // of every non-norm weight
// Bump whenever a generated value changes (the hash, the scale, the norms): it is part of the
// cache key, so old cache files are not mistaken for new ones.
inline constexpr int kSyntheticGeneratorVersion = 1;

// One shape (head dim = d_model / n_head).
struct SyntheticShape {
  const char* name;
  int n_layer, d_model, n_head, n_head_kv, d_ff, n_vocab, n_ctx;
  float rope_theta, norm_eps;  // rope_theta: llama only
  bool tied_output;
  const char* source;  // where the numbers come from
  Family family = Family::llama;
  int n_token_types = 0;  // bert
};

// Every known shape, in the order they are listed in messages.
const std::vector<SyntheticShape>& synthetic_shapes();
// "llama2-7b, llama2-13b, ..."
std::string synthetic_names();

// Whether `model` (a --model argument) names a synthetic model: it starts with "synthetic:".
bool is_synthetic(const std::string& model);

// The config of `model` ("synthetic:NAME") with its first `layers` layers (0: all). Throws
// std::invalid_argument for an unknown NAME (listing the known ones) or a layer count outside
// 1..n_layer.
ModelConfig synthetic_config(const std::string& model, int layers = 0);

// The value of element `index` of tensor `tensor` (a GGUF tensor name): 1 for a norm weight
// (a name ending in "_norm.weight"), else the hash value above.
float synthetic_weight(uint64_t seed, const std::string& tensor, uint64_t index);
// The same, split for speed: the per-tensor key, then any element of it.
uint64_t synthetic_tensor_key(uint64_t seed, const std::string& tensor);
float synthetic_value(uint64_t key, uint64_t index);
// out[0 .. n) = synthetic_weight(seed, tensor, 0 .. n), in OpenMP threads.
void synthetic_fill(uint64_t seed, const std::string& tensor, uint64_t n, float* out);

// The key of the weight cache of `cfg` = synthetic_config(model, layers) with `seed`.
Sha256 synthetic_key(const ModelConfig& cfg, uint64_t seed);
// Where the weights of synthetic `cfg` come from, for load_weights (weight_cache.h). Its home
// directory is data/models/ under the source tree.
WeightOrigin synthetic_weight_origin(const ModelConfig& cfg, uint64_t seed);

// A prompt of n token ids drawn uniformly from [0, n_vocab) (the same on every machine).
std::vector<int32_t> synthetic_prompt(int n, int n_vocab, uint64_t seed = kDefaultPromptSeed);

}  // namespace cascade
