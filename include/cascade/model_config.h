// Hyper-parameters of a model, read from GGUF metadata (`<arch>.*` keys). Three families:
//   llama  RMSNorm, SwiGLU MLP, RoPE, no biases, causal; LM head
//   gpt2   pre-LayerNorm with bias, GELU MLP (tanh approximation), learned absolute positions,
//          biases on every projection, causal; LM head (tied to the token embedding)
//   bert   post-LayerNorm, GELU MLP (erf), learned positions + token-type embedding and an
//          embedding LayerNorm, biases, bidirectional attention; no LM head: the output is the
//          last hidden states of every position (an encoder)
#pragma once

#include <cstdint>
#include <string>

namespace cascade {

class GgufFile;

enum class Family : int32_t { llama = 0, gpt2 = 1, bert = 2 };
const char* family_name(Family f);  // "llama", "gpt2", "bert" (the GGUF architecture names)
// Throws std::runtime_error naming the supported architectures.
Family parse_family(const std::string& arch);

// The dims every party needs to size and check the messages it exchanges. They travel in the
// schedule message (schedule.h), so AttnNodes, which hold no weights, never open the model.
struct ModelShape {
  int n_layer = 0;
  int d_model = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int d_head = 0;
  int n_vocab = 0;
  Family family = Family::llama;

  int d_q() const { return n_head * d_head; }
  int d_kv() const { return n_head_kv * d_head; }
  bool empty() const { return n_layer == 0; }
  // Whether a query sees only keys at positions ≤ its own (decoders) or every key (bert).
  bool causal() const { return family != Family::bert; }
  // An encoder has no LM head and no decode steps: its output is every position's last
  // hidden row.
  bool encoder() const { return family == Family::bert; }
  bool operator==(const ModelShape& o) const {
    return n_layer == o.n_layer && d_model == o.d_model && n_head == o.n_head &&
           n_head_kv == o.n_head_kv && d_head == o.d_head && n_vocab == o.n_vocab &&
           family == o.family;
  }
};

struct ModelConfig {
  std::string arch = "llama";  // family_name(family)
  Family family = Family::llama;
  std::string name;
  int n_layer = 0;
  int d_model = 0;      // embedding length
  int n_head = 0;       // query heads
  int n_head_kv = 0;    // key/value heads (GQA)
  int d_head = 0;       // per-head dimension
  int d_ff = 0;         // feed-forward length
  int n_vocab = 0;
  int n_ctx = 0;        // training context length
  float rope_theta = 10000.0f;  // llama only
  float norm_eps = 1e-5f;       // of RMSNorm (llama) or LayerNorm (gpt2, bert)
  bool tied_output = false;     // LM head reuses token_embd
  int n_token_types = 0;        // bert: rows of token_types (every token uses type 0)

  int d_q() const { return n_head * d_head; }
  int d_kv() const { return n_head_kv * d_head; }
  ModelShape shape() const {
    return {n_layer, d_model, n_head, n_head_kv, d_head, n_vocab, family};
  }
  bool causal() const { return shape().causal(); }
  bool encoder() const { return shape().encoder(); }
  bool layer_norm() const { return family != Family::llama; }  // else RMSNorm
  bool rope() const { return family == Family::llama; }         // else learned positions

  // Reads <arch>.block_count, embedding_length, attention.head_count(_kv),
  // feed_forward_length, context_length, rope.freq_base (llama),
  // attention.layer_norm_rms_epsilon (llama) or attention.layer_norm_epsilon (gpt2, bert),
  // vocab size (from the token list when <arch>.vocab_size is absent). Throws on a missing
  // key or an unsupported architecture.
  static ModelConfig from_gguf(const GgufFile& gguf);
};

}  // namespace cascade
