#include "cascade/model_config.h"

#include <stdexcept>

#include "cascade/gguf.h"

namespace cascade {

ModelConfig ModelConfig::from_gguf(const GgufFile& g) {
  ModelConfig c;
  c.arch = g.get_string("general.architecture");
  if (c.arch != "llama")
    throw std::runtime_error(g.path() + ": unsupported architecture '" + c.arch +
                             "' (supported: llama)");
  const std::string a = c.arch + ".";
  c.name = g.has("general.name") ? g.get_string("general.name") : std::string();
  c.n_layer = (int)g.get_uint(a + "block_count");
  c.d_model = (int)g.get_uint(a + "embedding_length");
  c.n_head = (int)g.get_uint(a + "attention.head_count");
  c.n_head_kv = (int)g.get_uint_or(a + "attention.head_count_kv", (uint64_t)c.n_head);
  c.d_ff = (int)g.get_uint(a + "feed_forward_length");
  c.n_ctx = (int)g.get_uint(a + "context_length");
  c.rope_theta = (float)g.get_float_or(a + "rope.freq_base", 10000.0);
  c.rms_eps = (float)g.get_float(a + "attention.layer_norm_rms_epsilon");
  c.n_vocab = g.has(a + "vocab_size") ? (int)g.get_uint(a + "vocab_size")
                                      : (int)g.get_string_array("tokenizer.ggml.tokens").size();
  if (c.n_layer <= 0 || c.d_model <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.d_ff <= 0 ||
      c.n_vocab <= 0 || c.d_model % c.n_head != 0 || c.n_head % c.n_head_kv != 0)
    throw std::runtime_error(g.path() + ": inconsistent model hyper-parameters");
  c.d_head = c.d_model / c.n_head;
  const uint64_t rot = g.get_uint_or(a + "rope.dimension_count", (uint64_t)c.d_head);
  if ((int)rot != c.d_head)
    throw std::runtime_error(g.path() + ": partial RoPE (rope.dimension_count " +
                             std::to_string(rot) + " != head dim) is not supported");
  c.tied_output = g.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace cascade
