#include "cascade/layer.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace cascade {
namespace {

// y(n, d) = norm(x) with the family's norm: RMSNorm (llama) or LayerNorm with bias.
void norm(Backend& be, const ModelConfig& c, const float* x, const float* w, const float* b,
          float* y, int n) {
  if (c.layer_norm())
    be.layernorm(x, w, b, y, n, c.d_model, c.norm_eps);
  else
    be.rmsnorm(x, w, y, n, c.d_model, c.norm_eps);
}

}  // namespace

void embed_tokens(const Model& model, const int32_t* ids, int n, float* h, const int32_t* pos,
                  Backend* be) {
  const ModelConfig& c = model.cfg;
  const int d = c.d_model;
  if (!c.rope() && pos == nullptr)
    throw std::invalid_argument(c.arch + " embeds positions: embed_tokens needs them");
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= c.n_vocab)
      throw std::out_of_range("token id " + std::to_string(ids[i]) + " outside the vocabulary");
  if (!c.rope())
    for (int i = 0; i < n; ++i)
      if (pos[i] < 0 || pos[i] >= c.n_ctx)
        throw std::out_of_range("position " + std::to_string(pos[i]) + " outside the model's context of " +
                                std::to_string(c.n_ctx));
  std::unique_ptr<Backend> own;
  if (!be) own = make_cpu_backend();
  Backend& b = be ? *be : *own;
  // ids and pos are host arrays: a device backend gets copies.
  DeviceBuffer<int32_t> dev_ids, dev_pos;
  auto on_backend = [&](const int32_t* host, DeviceBuffer<int32_t>& buf) -> const int32_t* {
    if (b.host_memory()) return host;
    buf.upload(b, std::vector<int32_t>(host, host + n));
    return buf.data();
  };
  b.gather_rows(model.tok_embd, on_backend(ids, dev_ids), n, d, h);
  if (c.rope()) return;
  DeviceBuffer<float> rows(b, (size_t)n * d);  // learned absolute positions
  b.gather_rows(model.pos_embd, on_backend(pos, dev_pos), n, d, rows.data());
  b.add(h, rows.data(), (size_t)n * d);
  if (model.type_embd) b.add_bias(h, model.type_embd, n, d);  // bert: every token is of type 0
  if (model.embd_norm) norm(b, c, h, model.embd_norm, model.embd_norm_b, h, n);  // bert: LayerNorm of the sum
}

void layer_prepass(Backend& be, const Model& model, int layer, const float* h,
                   const int32_t* pos, int n, float* q, float* k, float* v, LayerScratch& ws) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  const int d_qkv = c.d_q() + 2 * c.d_kv();
  ws.x.resize(be, (size_t)n * c.d_model);
  ws.big.resize(be, (size_t)n * d_qkv);
  const float* x = h;  // bert normalises after attention, not before
  if (c.family != Family::bert) {
    norm(be, c, h, w.attn_norm, w.attn_norm_b, ws.x.data(), n);
    x = ws.x.data();
  }
  be.matmul_wt(x, w.wqkv, ws.big.data(), n, c.d_model, d_qkv, false);
  if (w.bqkv) be.add_bias(ws.big.data(), w.bqkv, n, d_qkv);
  const float* r = ws.big.data();  // split each row [q | k | v]
  be.copy_rows(q, c.d_q(), r, d_qkv, n, c.d_q());
  be.copy_rows(k, c.d_kv(), r + c.d_q(), d_qkv, n, c.d_kv());
  be.copy_rows(v, c.d_kv(), r + c.d_q() + c.d_kv(), d_qkv, n, c.d_kv());
  if (c.rope()) {
    be.rope(q, pos, n, c.n_head, c.d_head, c.rope_theta);
    be.rope(k, pos, n, c.n_head_kv, c.d_head, c.rope_theta);
  }
}

void layer_postpass(Backend& be, const Model& model, int layer, float* h, const float* o, int n,
                    LayerScratch& ws) {
  const ModelConfig& c = model.cfg;
  const LayerWeights& w = model.layers[layer];
  const int d = c.d_model;
  be.matmul_wt(o, w.wo, h, n, c.d_q(), d, true);  // residual
  if (w.bo) be.add_bias(h, w.bo, n, d);
  ws.x.resize(be, (size_t)n * d);
  if (c.family == Family::llama) {
    // h += W_down·(silu(x·W_gateᵀ) ⊙ x·W_upᵀ), x = RMSNorm(h)
    ws.big.resize(be, (size_t)n * 2 * c.d_ff);
    ws.act.resize(be, (size_t)n * c.d_ff);
    be.rmsnorm(h, w.ffn_norm, ws.x.data(), n, d, c.norm_eps);
    be.matmul_wt(ws.x.data(), w.w_gate_up, ws.big.data(), n, d, 2 * c.d_ff, false);
    be.swiglu(ws.big.data(), ws.act.data(), n, c.d_ff);
    be.matmul_wt(ws.act.data(), w.w_down, h, n, c.d_ff, d, true);  // residual
    return;
  }
  // gpt2: x = LN(h), h += W_down·gelu(x·W_upᵀ + b_up) + b_down (pre-norm).
  // bert: h = LN(h) (post-attention norm), then h = LN(h + W_down·gelu(h·W_upᵀ + b_up) + b_down).
  const bool bert = c.family == Family::bert;
  if (bert) norm(be, c, h, w.attn_norm, w.attn_norm_b, h, n);
  ws.act.resize(be, (size_t)n * c.d_ff);
  const float* x = h;
  if (!bert) {
    norm(be, c, h, w.ffn_norm, w.ffn_norm_b, ws.x.data(), n);
    x = ws.x.data();
  }
  be.matmul_wt(x, w.w_up, ws.act.data(), n, d, c.d_ff, false);
  be.add_bias(ws.act.data(), w.b_up, n, c.d_ff);
  be.gelu(ws.act.data(), (size_t)n * c.d_ff, /*tanh_approx=*/!bert);
  be.matmul_wt(ws.act.data(), w.w_down, h, n, c.d_ff, d, true);  // residual
  be.add_bias(h, w.b_down, n, d);
  if (bert) norm(be, c, h, w.ffn_norm, w.ffn_norm_b, h, n);
}

void final_logits(Backend& be, const Model& model, const float* h, int n, float* logits) {
  const ModelConfig& c = model.cfg;
  if (c.encoder()) throw std::logic_error(c.arch + " has no LM head: its output is the hidden states");
  DeviceBuffer<float> x(be, (size_t)n * c.d_model);
  norm(be, c, h, model.out_norm, model.out_norm_b, x.data(), n);
  be.matmul_wt(x.data(), model.lm_head(), logits, n, c.d_model, c.n_vocab, false);
}

}  // namespace cascade
