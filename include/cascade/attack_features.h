// Features for the learning-based attack (PROTOCOL.md "Attacks", issue 8): the rows a party
// of Cascade receives, computed by the single-process model on a public corpus, to train an
// inversion model (scripts/learned_attack.py) that predicts unseen tokens from them.
//
// Layer convention. hidden[l] is the residual stream *entering* layer l (0-based), i.e. after
// l blocks: hidden[0] is the token embedding and hidden[n_layer] the last block's output
// (what the final norm and the LM head take). k[l] and v[l] are what layer l's pre-pass
// computes from hidden[l] (k after RoPE): the rows an AttnNode receives at layer l, while a
// CompNode holds hidden[l] of its own positions. So l ranges over 0..n_layer; k and v exist
// for l < n_layer only. With q (optional), also layer l's q rows (after RoPE): what an AttnNode
// receives of the positions of its query shard.
//
// File layout (HDF5, every prompt appended as it is computed; T = total tokens, P = prompts):
//   /meta                  attributes: format ("cascade-attack-features"), version, model,
//                          n_layer, d_model, d_kv, d_q, with_q, n_prompts, n_tokens, layers
//                          (int32 list), command, complete (0 until the file is finished)
//   /prompt_offsets        (P + 1) int64: prompt i is rows offsets[i] .. offsets[i+1]-1
//   /tokens                (T) int32 token ids
//   /positions             (T) int32 position of each row inside its prompt (0-based)
//   /layer_<l>/hidden      (T, d_model) float32
//   /layer_<l>/k, /v       (T, d_kv) float32 (absent for l = n_layer)
//   /layer_<l>/q           (T, d_q) float32 (with_q only; absent for l = n_layer)
// Concatenated rows rather than one group per prompt: numpy reads a layer in one call.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/model.h"

namespace cascade {

inline constexpr const char* kFeaturesFormat = "cascade-attack-features";
inline constexpr int kFeaturesVersion = 1;

class FeaturesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The rows of one prompt at the requested layers (same order as `layers`).
struct PromptFeatures {
  std::vector<int32_t> ids;                // (N)
  std::vector<int> layers;                 // each in 0..n_layer
  std::vector<std::vector<float>> hidden;  // per layer (N, d_model)
  std::vector<std::vector<float>> k, v;    // per layer (N, d_kv); empty when layer == n_layer
  std::vector<std::vector<float>> q;       // per layer (N, d_q) with_q; else (or at n_layer) empty
};

// Checks a layer list against a model of n_layer layers: non-empty, each in 0..n_layer, no
// duplicates. Throws std::invalid_argument naming the bad entry.
void check_feature_layers(const std::vector<int>& layers, int n_layer);

// Runs the model on `ids` (positions 0..N-1, causal, no KV cache) through layer max(layers)
// and keeps the rows of the requested layers (q rows too when with_q). Throws
// std::invalid_argument for an empty prompt, a token id out of range, a prompt longer than the
// context, or bad layers.
PromptFeatures compute_features(Backend& be, const Model& model, const std::vector<int32_t>& ids,
                                const std::vector<int>& layers, bool with_q = false);

// Appends prompts to a features file; the file says complete = 1 only after finish().
class FeaturesWriter {
 public:
  // Creates (truncates) `path`. `model_name` and `command` are recorded in /meta.
  FeaturesWriter(const std::string& path, const ModelConfig& cfg, const std::vector<int>& layers,
                 const std::string& model_name, const std::string& command, bool with_q = false);
  ~FeaturesWriter();
  FeaturesWriter(const FeaturesWriter&) = delete;
  FeaturesWriter& operator=(const FeaturesWriter&) = delete;

  void append(const PromptFeatures& f);  // f.layers (and with_q) must match the writer's
  void finish();                         // writes the offsets and complete = 1, closes
  int64_t n_prompts() const;
  int64_t n_tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A whole features file in memory (for tests and small files).
struct FeaturesFile {
  std::string model;
  int n_layer = 0, d_model = 0, d_kv = 0, d_q = 0;
  bool with_q = false;
  std::vector<int> layers;
  std::vector<int64_t> prompt_offsets;  // (P + 1)
  std::vector<int32_t> tokens, positions;  // (T)
  std::vector<std::vector<float>> hidden, k, v, q;  // per layer, (T, d) / (T, d_kv) / (T, d_q)
  bool complete = false;
};

// Throws FeaturesError naming the file and what is wrong (missing, not HDF5, other format or
// version, unfinished, a dataset of the wrong shape).
FeaturesFile read_features(const std::string& path);

}  // namespace cascade
