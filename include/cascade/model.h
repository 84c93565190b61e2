// Weights of a llama-family model, dequantised to fp32 once at load.
// Layout follows GGUF: a weight matrix W with ne = [in, out] is stored row-major as
// (out, in), so a projection is y(n, out) = x(n, in) · Wᵀ.
// Q/K rows are in the order llama.cpp's converter writes them, which pairs RoPE dimensions
// (2i, 2i+1) — so RoPE here is the "normal" (interleaved-pair) variant, not NeoX.
#pragma once

#include <string>
#include <vector>

#include "cascade/model_config.h"

namespace cascade {

class GgufFile;

struct LayerWeights {
  std::vector<float> attn_norm;  // (d)
  std::vector<float> wqkv;       // (d_q + 2·d_kv, d): Wq, Wk, Wv stacked (one GEMM)
  std::vector<float> wo;         // (d, d_q)
  std::vector<float> ffn_norm;   // (d)
  std::vector<float> w_gate_up;  // (2·d_ff, d): W_gate, W_up stacked (one GEMM)
  std::vector<float> w_down;     // (d, d_ff)
};

struct Model {
  ModelConfig cfg;
  std::vector<float> tok_embd;   // (n_vocab, d)
  std::vector<LayerWeights> layers;
  std::vector<float> out_norm;   // (d)
  std::vector<float> output;     // (n_vocab, d); empty when tied to tok_embd

  const float* lm_head() const { return output.empty() ? tok_embd.data() : output.data(); }

  // Loads and dequantises every tensor; checks every shape against the config.
  static Model load(const GgufFile& gguf);
  static Model load(const std::string& path);
};

// Default model location: data/models/ under the source tree (overridable with $CASCADE_MODEL).
std::string default_model_path();

}  // namespace cascade
