// Weights of a model (llama, gpt2 or bert family: model_config.h), as fp32 tensors in a
// shared read-only store: by default the node's weight cache file (weight_cache.h), which all ranks of a node mmap, so they hold one
// copy between them. Layout follows GGUF: a weight matrix W with ne = [in, out] is stored
// row-major as (out, in), so a projection is y(n, out) = x(n, in) · Wᵀ.
// Q/K rows are in the order llama.cpp's converter writes them, which pairs RoPE dimensions
// (2i, 2i+1) — so RoPE here is the "normal" (interleaved-pair) variant, not NeoX.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cascade/model_config.h"
#include "cascade/synthetic.h"
#include "cascade/weight_cache.h"

namespace cascade {

class GgufFile;

// What `--model` names: a GGUF file, or a synthetic model (synthetic.h) cut to its first
// `layers` layers, with weights from `weight_seed`.
struct ModelSpec {
  std::string path;  // a GGUF file, or "synthetic:NAME"
  int layers = 0;    // synthetic only: keep the first L layers (0: all of them)
  uint64_t weight_seed = kDefaultWeightSeed;  // synthetic only
  bool synthetic() const { return is_synthetic(path); }
};

// The dims of `spec` (a GGUF's header, or the synthetic table) without loading weights.
// Throws for an unknown synthetic name, a layer count out of range, or `layers` given with a
// GGUF file.
ModelConfig model_config(const ModelSpec& spec);

// Pointers into Model::weights; a family's unused ones stay nullptr (model_config.h).
struct LayerWeights {
  // llama, gpt2: normalises the layer's input before attention (pre-norm). bert: normalises
  // h + attention output (post-norm; GGUF attn_output_norm).
  const float* attn_norm = nullptr;    // (d)
  const float* attn_norm_b = nullptr;  // (d) LayerNorm bias (gpt2, bert)
  const float* wqkv = nullptr;         // (d_q + 2·d_kv, d): Wq, Wk, Wv stacked (one GEMM)
  const float* bqkv = nullptr;         // (d_q + 2·d_kv) (gpt2, bert)
  const float* wo = nullptr;           // (d, d_q)
  const float* bo = nullptr;           // (d) (gpt2, bert)
  // llama, gpt2: before the MLP. bert: after it (GGUF layer_output_norm).
  const float* ffn_norm = nullptr;     // (d)
  const float* ffn_norm_b = nullptr;   // (d) (gpt2, bert)
  const float* w_gate_up = nullptr;    // llama: (2·d_ff, d): W_gate, W_up stacked (one GEMM)
  const float* w_up = nullptr;         // gpt2, bert: (d_ff, d)
  const float* b_up = nullptr;         // gpt2, bert: (d_ff)
  const float* w_down = nullptr;       // (d, d_ff)
  const float* b_down = nullptr;       // (d) (gpt2, bert)
};

struct Model {
  ModelConfig cfg;
  const float* tok_embd = nullptr;     // (n_vocab, d)
  const float* pos_embd = nullptr;     // (n_ctx, d) learned positions (gpt2, bert)
  const float* type_embd = nullptr;    // (n_token_types, d) (bert; row 0 is added)
  const float* embd_norm = nullptr;    // (d) LayerNorm of the embedding (bert)
  const float* embd_norm_b = nullptr;  // (d)
  std::vector<LayerWeights> layers;
  const float* out_norm = nullptr;     // (d) final norm (llama, gpt2)
  const float* out_norm_b = nullptr;   // (d) (gpt2)
  const float* output = nullptr;       // (n_vocab, d); nullptr when tied to tok_embd
  // Owns the memory every pointer above points into; copies of a Model share it.
  std::shared_ptr<const WeightStore> weights;

  const float* lm_head() const { return output ? output : tok_embd; }

  // Loads the weights (through the weight cache unless opt says WeightSource::memory) after
  // checking every tensor's shape against the config. `report`, if given, says what was done.
  static Model load(const GgufFile& gguf, const WeightLoadOptions& opt = {},
                    WeightLoadReport* report = nullptr);
  // A GGUF file or "synthetic:NAME" (all layers, the default weight seed).
  static Model load(const std::string& path, const WeightLoadOptions& opt = {},
                    WeightLoadReport* report = nullptr);
  // A GGUF file or a synthetic model: generated once into the weight cache, then mapped.
  static Model load(const ModelSpec& spec, const WeightLoadOptions& opt = {},
                    WeightLoadReport* report = nullptr);
  // The Model over `store`, whose tensors are weight_specs(cfg): checks every tensor's size.
  static Model from_store(const ModelConfig& cfg, std::shared_ptr<const WeightStore> store);

  // The tensors of a store for `cfg`, named after their GGUF tensors (".bias" becomes "_b").
  // llama: token_embd, output_norm, output (unless tied), and per layer blk.<l>.{attn_norm,
  // attn_qkv, attn_output, ffn_norm, ffn_gate_up, ffn_down}, where attn_qkv stacks attn_q,
  // attn_k, attn_v and ffn_gate_up stacks ffn_gate, ffn_up. gpt2: token_embd, position_embd,
  // output_norm(_b), output (unless tied), per layer attn_norm(_b), attn_qkv(_b) (fused in
  // the GGUF), attn_output(_b), ffn_norm(_b), ffn_up(_b), ffn_down(_b). bert: token_embd,
  // position_embd, token_types, token_embd_norm(_b), per layer attn_qkv(_b) (stacked from
  // attn_q, attn_k, attn_v), attn_output(_b), attn_output_norm(_b), ffn_up(_b), ffn_down(_b),
  // layer_output_norm(_b).
  static std::vector<WeightSpec> weight_specs(const ModelConfig& cfg);
};

// Default model location: data/models/ under the source tree (overridable with $CASCADE_MODEL).
std::string default_model_path();

}  // namespace cascade
