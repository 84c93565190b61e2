#include "cascade/layer.h"

#include <cstring>
#include <stdexcept>
#include <vector>

namespace cascade {

void embed_tokens(const Model& model, const int32_t* ids, int n, float* h) {
  const int d = model.cfg.d_model;
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= model.cfg.n_vocab)
      throw std::out_of_range("token id " + std::to_string(ids[i]) + " outside the vocabulary");
    std::memcpy(h + (long)i * d, model.tok_embd.data() + (long)ids[i] * d, sizeof(float) * d);
  }
}

void layer_prepass(Backend& be, const Model& model, int layer, const float* h,
                   const int32_t* pos, int n, float* q, float* k, float* v) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  std::vector<float> x((size_t)n * c.d_model);
  be.rmsnorm(h, w.attn_norm.data(), x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(x.data(), w.wq.data(), q, n, c.d_model, c.d_q(), false);
  be.matmul_wt(x.data(), w.wk.data(), k, n, c.d_model, c.d_kv(), false);
  be.matmul_wt(x.data(), w.wv.data(), v, n, c.d_model, c.d_kv(), false);
  be.rope(q, pos, n, c.n_head, c.d_head, c.rope_theta);
  be.rope(k, pos, n, c.n_head_kv, c.d_head, c.rope_theta);
}

void layer_postpass(Backend& be, const Model& model, int layer, float* h, const float* o, int n) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  be.matmul_wt(o, w.wo.data(), h, n, c.d_q(), c.d_model, true);  // residual
  std::vector<float> x((size_t)n * c.d_model), gate((size_t)n * c.d_ff), up((size_t)n * c.d_ff);
  be.rmsnorm(h, w.ffn_norm.data(), x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(x.data(), w.w_gate.data(), gate.data(), n, c.d_model, c.d_ff, false);
  be.matmul_wt(x.data(), w.w_up.data(), up.data(), n, c.d_model, c.d_ff, false);
  be.silu_mul(gate.data(), up.data(), gate.size());
  be.matmul_wt(gate.data(), w.w_down.data(), h, n, c.d_ff, c.d_model, true);  // residual
}

void final_logits(Backend& be, const Model& model, const float* h, int n, float* logits) {
  const ModelConfig& c = model.cfg;
  std::vector<float> x((size_t)n * c.d_model);
  be.rmsnorm(h, model.out_norm.data(), x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(x.data(), model.lm_head(), logits, n, c.d_model, c.n_vocab, false);
}

}  // namespace cascade
