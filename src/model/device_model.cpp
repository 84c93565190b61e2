#include "cascade/device_model.h"

namespace cascade {

DeviceModel::DeviceModel(Backend& be, const Model& host) : view_(host) {
  if (be.host_memory()) return;
  const ModelConfig& c = host.cfg;
  const size_t d = c.d_model, d_qkv = c.d_q() + 2 * c.d_kv();
  // Replaces p (n floats on the host) by a device copy; nullptr stays nullptr.
  auto upload = [&](const float*& p, size_t n) {
    if (!p) return;
    DeviceBuffer<float> buf(be, n);
    be.to_device(buf.data(), p, n * sizeof(float));
    p = buf.data();
    bytes_ += n * sizeof(float);
    tensors_.push_back(std::move(buf));
  };
  const float* head = host.output;  // nullptr when tied to tok_embd (lm_head() follows)
  upload(view_.tok_embd, (size_t)c.n_vocab * d);
  upload(view_.pos_embd, (size_t)c.n_ctx * d);
  upload(view_.type_embd, d);  // row 0 only: every token is of type 0
  upload(view_.embd_norm, d);
  upload(view_.embd_norm_b, d);
  for (LayerWeights& w : view_.layers) {
    upload(w.attn_norm, d);
    upload(w.attn_norm_b, d);
    upload(w.wqkv, d_qkv * d);
    upload(w.bqkv, d_qkv);
    upload(w.wo, d * c.d_q());
    upload(w.bo, d);
    upload(w.ffn_norm, d);
    upload(w.ffn_norm_b, d);
    upload(w.w_gate_up, 2 * (size_t)c.d_ff * d);
    upload(w.w_up, (size_t)c.d_ff * d);
    upload(w.b_up, c.d_ff);
    upload(w.w_down, d * c.d_ff);
    upload(w.b_down, d);
  }
  upload(view_.out_norm, d);
  upload(view_.out_norm_b, d);
  if (head) upload(view_.output, (size_t)c.n_vocab * d);
  be.synchronize();
}

}  // namespace cascade
