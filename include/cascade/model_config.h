// Hyper-parameters of a llama-family decoder, read from GGUF metadata (`<arch>.*` keys).
#pragma once

#include <cstdint>
#include <string>

namespace cascade {

class GgufFile;

// The dims every party needs to size and check the messages it exchanges. They travel in the
// schedule message (schedule.h), so AttnNodes, which hold no weights, never open the model.
struct ModelShape {
  int n_layer = 0;
  int d_model = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int d_head = 0;
  int n_vocab = 0;

  int d_q() const { return n_head * d_head; }
  int d_kv() const { return n_head_kv * d_head; }
  bool empty() const { return n_layer == 0; }
  bool operator==(const ModelShape& o) const {
    return n_layer == o.n_layer && d_model == o.d_model && n_head == o.n_head &&
           n_head_kv == o.n_head_kv && d_head == o.d_head && n_vocab == o.n_vocab;
  }
};

struct ModelConfig {
  std::string arch = "llama";
  std::string name;
  int n_layer = 0;
  int d_model = 0;      // embedding length
  int n_head = 0;       // query heads
  int n_head_kv = 0;    // key/value heads (GQA)
  int d_head = 0;       // per-head dimension
  int d_ff = 0;         // feed-forward length
  int n_vocab = 0;
  int n_ctx = 0;        // training context length
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_output = false;  // LM head reuses token_embd

  int d_q() const { return n_head * d_head; }
  int d_kv() const { return n_head_kv * d_head; }
  ModelShape shape() const { return {n_layer, d_model, n_head, n_head_kv, d_head, n_vocab}; }

  // Reads <arch>.block_count, embedding_length, attention.head_count(_kv),
  // feed_forward_length, context_length, rope.freq_base, attention.layer_norm_rms_epsilon,
  // vocab size (from the token list when <arch>.vocab_size is absent). Throws on a missing
  // key or an unsupported architecture.
  static ModelConfig from_gguf(const GgufFile& gguf);
};

}  // namespace cascade
