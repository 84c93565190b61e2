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
    std::memcpy(h + (long)i * d, model.tok_embd + (long)ids[i] * d, sizeof(float) * d);
  }
}

void layer_prepass(Backend& be, const Model& model, int layer, const float* h,
                   const int32_t* pos, int n, float* q, float* k, float* v, LayerScratch& ws) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  const int d_qkv = c.d_q() + 2 * c.d_kv();
  ws.x.resize((size_t)n * c.d_model);
  ws.big.resize((size_t)n * d_qkv);
  be.rmsnorm(h, w.attn_norm, ws.x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(ws.x.data(), w.wqkv, ws.big.data(), n, c.d_model, d_qkv, false);
  for (int i = 0; i < n; ++i) {  // split each row [q | k | v]
    const float* r = ws.big.data() + (size_t)i * d_qkv;
    std::memcpy(q + (size_t)i * c.d_q(), r, sizeof(float) * c.d_q());
    std::memcpy(k + (size_t)i * c.d_kv(), r + c.d_q(), sizeof(float) * c.d_kv());
    std::memcpy(v + (size_t)i * c.d_kv(), r + c.d_q() + c.d_kv(), sizeof(float) * c.d_kv());
  }
  be.rope(q, pos, n, c.n_head, c.d_head, c.rope_theta);
  be.rope(k, pos, n, c.n_head_kv, c.d_head, c.rope_theta);
}

void layer_postpass(Backend& be, const Model& model, int layer, float* h, const float* o, int n,
                    LayerScratch& ws) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  be.matmul_wt(o, w.wo, h, n, c.d_q(), c.d_model, true);  // residual
  ws.x.resize((size_t)n * c.d_model);
  ws.big.resize((size_t)n * 2 * c.d_ff);
  ws.act.resize((size_t)n * c.d_ff);
  be.rmsnorm(h, w.ffn_norm, ws.x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(ws.x.data(), w.w_gate_up, ws.big.data(), n, c.d_model, 2 * c.d_ff, false);
  be.swiglu(ws.big.data(), ws.act.data(), n, c.d_ff);
  be.matmul_wt(ws.act.data(), w.w_down, h, n, c.d_ff, c.d_model, true);  // residual
}

void final_logits(Backend& be, const Model& model, const float* h, int n, float* logits) {
  const ModelConfig& c = model.cfg;
  std::vector<float> x((size_t)n * c.d_model);
  be.rmsnorm(h, model.out_norm, x.data(), n, c.d_model, c.rms_eps);
  be.matmul_wt(x.data(), model.lm_head(), logits, n, c.d_model, c.n_vocab, false);
}

}  // namespace cascade
