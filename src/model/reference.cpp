#include "cascade/reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/device_model.h"
#include "cascade/layer.h"

namespace cascade {

Reference::Reference(const Model& model, Backend* backend, Precision precision)
    : model_(model), backend_(backend) {
  if (!backend_) {
    owned_ = make_cpu_backend();
    backend_ = owned_.get();
    if (model.weights) owned_->prepare_weights(model, precision, {});
  }
  dev_ = std::make_unique<DeviceModel>(*backend_, model);
  // A device backend's weights exist only in dev_: only here can they be prepared.
  if (!backend_->host_memory()) backend_->prepare_weights(dev_->model(), precision, {});
  k_cache_.resize(model.cfg.n_layer);
  v_cache_.resize(model.cfg.n_layer);
}

Reference::~Reference() = default;

std::vector<float> Reference::forward(const std::vector<int32_t>& ids, bool all_logits) {
  const ModelConfig& c = model_.cfg;
  if (c.encoder())
    throw std::invalid_argument(c.arch + " is an encoder without LM head: use Reference::encode");
  const int n = (int)ids.size();
  run_layers(ids);
  const int rows = all_logits ? n : 1;
  DeviceBuffer<float> logits(*backend_, (size_t)rows * c.n_vocab);
  final_logits(*backend_, dev_->model(), h_.data() + (size_t)(n - rows) * c.d_model, rows,
               logits.data());
  return logits.download();
}

std::vector<float> Reference::encode(const std::vector<int32_t>& ids) {
  if (!model_.cfg.encoder())
    throw std::invalid_argument(model_.cfg.arch + " is a decoder: use Reference::forward");
  if (n_past_ != 0) throw std::invalid_argument("Reference::encode: an encoder sees the whole input at once");
  run_layers(ids);
  return h_.download();
}

void Reference::run_layers(const std::vector<int32_t>& ids) {
  const ModelConfig& c = model_.cfg;
  const Model& dm = dev_->model();  // weights in the backend's memory
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

  // Everything below lives in the backend's memory.
  DeviceBuffer<int32_t> d_pos, d_k_pos;
  d_pos.upload(be, pos);
  d_k_pos.upload(be, k_pos);
  h_.resize(be, (size_t)n * c.d_model);                                  // (n, d)
  DeviceBuffer<float> q(be, (size_t)n * c.d_q());                        // (n, n_head, d_head)
  DeviceBuffer<float> k(be, (size_t)n * c.d_kv()), v(be, k.size());      // (n, n_kv, d_head)
  DeviceBuffer<float> m(be, (size_t)n * c.n_head), e(be, m.size());      // (n, n_head)
  DeviceBuffer<float> u(be, q.size()), o(be, q.size());                  // (n, n_head, d_head)
  embed_tokens(dm, ids.data(), n, h_.data(), pos.data(), &be);

  for (int l = 0; l < c.n_layer; ++l) {
    layer_prepass(be, dm, l, h_.data(), d_pos.data(), n, q.data(), k.data(), v.data(), ws_);
    DeviceBuffer<float>& kc = k_cache_[l];
    DeviceBuffer<float>& vc = v_cache_[l];
    const size_t kept = (size_t)n_past_ * c.d_kv();  // rows beyond n_past are dropped (after a reset)
    kc.resize_keep(be, kept + k.size());
    vc.resize_keep(be, kept + v.size());
    be.copy(kc.data() + kept, k.data(), k.size() * sizeof(float));
    be.copy(vc.data() + kept, v.data(), v.size() * sizeof(float));
    // One partial over every visible key, "merged" alone: plain softmax attention.
    PartialAttnArgs a;
    a.q = q.data(); a.q_pos = d_pos.data(); a.nq = n;
    a.k = kc.data(); a.v = vc.data(); a.k_pos = d_k_pos.data(); a.nk = n_total;
    a.n_head = c.n_head; a.n_head_kv = c.n_head_kv; a.d_head = c.d_head; a.causal = c.causal();
    a.m = m.data(); a.e = e.data(); a.u = u.data();
    be.partial_attention(a);
    be.merge_partials(m.data(), e.data(), u.data(), 1, n, c.n_head, c.d_head, o.data());
    layer_postpass(be, dm, l, h_.data(), o.data(), n, ws_);
  }
  n_past_ = n_total;
}

}  // namespace cascade
