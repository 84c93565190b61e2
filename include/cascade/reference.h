// Single-process reference inference: prefill with batched GEMMs, then decode with a KV cache.
// Every distributed result is compared with this.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cascade/layer.h"
#include "cascade/model.h"

namespace cascade {

class Backend;

// Taps into a forward pass (attacks and their features read the rows a party would hold):
// `prepass` after layer l's prepass with its q (n, d_q), k, v (n, d_kv) of the new positions,
// RoPE applied; `hidden` with the residual stream h (n, d) after block l, as layer l + 1
// (layer 0: the embedding).
struct ReferenceTap {
  std::function<void(int layer, const float* q, const float* k, const float* v, int n)> prepass;
  std::function<void(int layer, const float* h, int n)> hidden;
};

class Reference {
 public:
  // `backend` must be a host-memory backend (the CPU one); nullptr means the CPU backend.
  explicit Reference(const Model& model, Backend* backend = nullptr);
  ~Reference();

  // Runs `ids` at positions n_past() .. n_past()+ids.size()-1, appending to the KV cache.
  // Returns the logits of the last position (n_vocab), or of every position
  // (ids.size() × n_vocab, row-major) when all_logits is true.
  std::vector<float> forward(const std::vector<int32_t>& ids, bool all_logits = false);

  int n_past() const { return n_past_; }
  void reset() { n_past_ = 0; }
  void set_tap(ReferenceTap tap) { tap_ = std::move(tap); }
  const Model& model() const { return model_; }

 private:
  const Model& model_;
  Backend* backend_;
  Backend* owned_ = nullptr;
  int n_past_ = 0;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // per layer: (n_ctx_used, d_kv)
  LayerScratch ws_;
  ReferenceTap tap_;
};

}  // namespace cascade
