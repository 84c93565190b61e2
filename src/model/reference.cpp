#include "cascade/reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/layer.h"

namespace cascade {

Reference::Reference(const Model& model, Backend* backend, Precision precision)
    : model_(model), backend_(backend) {
  if (!backend_) {
    owned_ = make_cpu_backend().release();
    backend_ = owned_;
    if (model.weights) owned_->prepare_weights(model, precision, {});
  }
  if (!backend_->host_memory())
    throw std::invalid_argument("Reference needs a host-memory backend, got " + backend_->name());
  k_cache_.resize(model.cfg.n_layer);
  v_cache_.resize(model.cfg.n_layer);
}

Reference::~Reference() { delete owned_; }

std::vector<float> Reference::forward(const std::vector<int32_t>& ids, bool all_logits) {
  const ModelConfig& c = model_.cfg;
  if (c.encoder())
    throw std::invalid_argument(c.arch + " is an encoder without LM head: use Reference::encode");
  const int n = (int)ids.size();
  std::vector<float> h = run_layers(ids);
  const int rows = all_logits ? n : 1;
  std::vector<float> logits((size_t)rows * c.n_vocab);
  final_logits(*backend_, model_, h.data() + (size_t)(n - rows) * c.d_model, rows, logits.data());
  return logits;
}

std::vector<float> Reference::encode(const std::vector<int32_t>& ids) {
  if (!model_.cfg.encoder())
    throw std::invalid_argument(model_.cfg.arch + " is a decoder: use Reference::forward");
  if (n_past_ != 0) throw std::invalid_argument("Reference::encode: an encoder sees the whole input at once");
  return run_layers(ids);
}

std::vector<float> Reference::run_layers(const std::vector<int32_t>& ids) {
  const ModelConfig& c = model_.cfg;
  const int n = (int)ids.size();
  if (n == 0) throw std::invalid_argument("Reference::forward: no tokens");
  if (n_past_ + n > c.n_ctx)
    throw std::invalid_argument("context overflow: " + std::to_string(n_past_ + n) +
                                " positions > model context " + std::to_string(c.n_ctx));
  Backend& be = *backend_;
  const int n_total = n_past_ + n;
  std::vector<int32_t> pos(n), k_pos(n_total);
  std::iota(pos.begin(), pos.end(), n_past_);
  std::iota(k_pos.begin(), k_pos.end(), 0);

  std::vector<float> h((size_t)n * c.d_model);           // (n, d)
  std::vector<float> q((size_t)n * c.d_q());              // (n, n_head, d_head)
  std::vector<float> k((size_t)n * c.d_kv()), v(k.size());  // (n, n_kv, d_head)
  std::vector<float> m((size_t)n * c.n_head), e(m.size());  // (n, n_head)
  std::vector<float> u(q.size()), o(q.size());             // (n, n_head, d_head)
  embed_tokens(model_, ids.data(), n, h.data(), pos.data(), &be);

  for (int l = 0; l < c.n_layer; ++l) {
    layer_prepass(be, model_, l, h.data(), pos.data(), n, q.data(), k.data(), v.data(), ws_);
    std::vector<float>& kc = k_cache_[l];
    std::vector<float>& vc = v_cache_[l];
    kc.resize((size_t)n_past_ * c.d_kv());  // drop rows beyond n_past (after a reset)
    vc.resize(kc.size());
    kc.insert(kc.end(), k.begin(), k.end());
    vc.insert(vc.end(), v.begin(), v.end());
    // One partial over every visible key, "merged" alone: plain softmax attention.
    PartialAttnArgs a;
    a.q = q.data(); a.q_pos = pos.data(); a.nq = n;
    a.k = kc.data(); a.v = vc.data(); a.k_pos = k_pos.data(); a.nk = n_total;
    a.n_head = c.n_head; a.n_head_kv = c.n_head_kv; a.d_head = c.d_head; a.causal = c.causal();
    a.m = m.data(); a.e = e.data(); a.u = u.data();
    be.partial_attention(a);
    be.merge_partials(m.data(), e.data(), u.data(), 1, n, c.n_head, c.d_head, o.data());
    layer_postpass(be, model_, l, h.data(), o.data(), n, ws_);
  }
  n_past_ = n_total;
  return h;
}

}  // namespace cascade
