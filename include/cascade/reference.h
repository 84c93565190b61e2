// Single-process reference inference: prefill with batched GEMMs, then decode with a KV cache.
// Every distributed result is compared with this.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cascade/backend.h"
#include "cascade/device_model.h"
#include "cascade/layer.h"
#include "cascade/model.h"
#include "cascade/packed_gemm.h"

namespace cascade {

class Reference {
 public:
  // `backend`: any backend (a device backend gets the weights uploaded, and the KV cache and
  // every activation stay in its memory); nullptr means a CPU backend made here with the
  // model's matrices prepared (packed) in `precision`. A given host-memory backend is used as
  // it is: prepare it yourself (Backend::prepare_weights); a device backend is prepared here in
  // `precision` (its weights are the uploaded copies, which only the Reference holds).
  explicit Reference(const Model& model, Backend* backend = nullptr,
                     Precision precision = Precision::f32);
  ~Reference();

  // Runs `ids` at positions n_past() .. n_past()+ids.size()-1, appending to the KV cache.
  // Returns the logits of the last position (n_vocab), or of every position
  // (ids.size() × n_vocab, row-major) when all_logits is true.
  // Throws for an encoder.
  std::vector<float> forward(const std::vector<int32_t>& ids, bool all_logits = false);
  // An encoder (bert): the last hidden states (ids.size(), d) of the whole input, attended
  // bidirectionally. Throws for a decoder.
  std::vector<float> encode(const std::vector<int32_t>& ids);

  int n_past() const { return n_past_; }
  void reset() { n_past_ = 0; }
  const Model& model() const { return model_; }

 private:
  // Embedding and every layer; leaves the final hidden rows (n, d), before any final norm, in h_.
  void run_layers(const std::vector<int32_t>& ids);

  const Model& model_;
  Backend* backend_;
  std::unique_ptr<Backend> owned_;  // declared before the buffers: they go back to it first
  std::unique_ptr<DeviceModel> dev_;  // the weights in the backend's memory
  int n_past_ = 0;
  std::vector<DeviceBuffer<float>> k_cache_, v_cache_;  // per layer: (n_ctx_used, d_kv)
  DeviceBuffer<float> h_;                               // (n, d) of the last call
  LayerScratch ws_;
};

}  // namespace cascade
