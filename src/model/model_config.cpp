#include "cascade/model_config.h"

#include <stdexcept>

#include "cascade/gguf.h"

namespace cascade {

const char* family_name(Family f) {
  switch (f) {
    case Family::llama: return "llama";
    case Family::gpt2: return "gpt2";
    case Family::bert: return "bert";
  }
  return "?";
}

Family parse_family(const std::string& arch) {
  for (Family f : {Family::llama, Family::gpt2, Family::bert})
    if (arch == family_name(f)) return f;
  throw std::runtime_error("unsupported architecture '" + arch + "' (supported: llama, gpt2, bert)");
}

ModelConfig ModelConfig::from_gguf(const GgufFile& g) {
  ModelConfig c;
  c.arch = g.get_string("general.architecture");
  try {
    c.family = parse_family(c.arch);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(g.path() + ": " + e.what());
  }
  const std::string a = c.arch + ".";
  c.name = g.has("general.name") ? g.get_string("general.name") : std::string();
  c.n_layer = (int)g.get_uint(a + "block_count");
  c.d_model = (int)g.get_uint(a + "embedding_length");
  c.n_head = (int)g.get_uint(a + "attention.head_count");
  c.n_head_kv = (int)g.get_uint_or(a + "attention.head_count_kv", (uint64_t)c.n_head);
  c.d_ff = (int)g.get_uint(a + "feed_forward_length");
  c.n_ctx = (int)g.get_uint(a + "context_length");
  c.n_vocab = g.has(a + "vocab_size") ? (int)g.get_uint(a + "vocab_size")
                                      : (int)g.get_string_array("tokenizer.ggml.tokens").size();
  if (c.n_layer <= 0 || c.d_model <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.d_ff <= 0 ||
      c.n_vocab <= 0 || c.n_ctx <= 0 || c.d_model % c.n_head != 0 || c.n_head % c.n_head_kv != 0)
    throw std::runtime_error(g.path() + ": inconsistent model hyper-parameters");
  c.d_head = c.d_model / c.n_head;
  if (c.family == Family::llama) {
    c.rope_theta = (float)g.get_float_or(a + "rope.freq_base", 10000.0);
    c.norm_eps = (float)g.get_float(a + "attention.layer_norm_rms_epsilon");
    const uint64_t rot = g.get_uint_or(a + "rope.dimension_count", (uint64_t)c.d_head);
    if ((int)rot != c.d_head)
      throw std::runtime_error(g.path() + ": partial RoPE (rope.dimension_count " +
                               std::to_string(rot) + " != head dim) is not supported");
  } else {
    c.norm_eps = (float)g.get_float(a + "attention.layer_norm_epsilon");
    if (c.n_head_kv != c.n_head)
      throw std::runtime_error(g.path() + ": " + c.arch + " with grouped-query attention is not supported");
  }
  if (c.family == Family::bert) {
    // llama.cpp writes the count as tokenizer.ggml.token_type_count; the tensor says it too.
    const GgufTensorInfo* tt = g.find_tensor("token_types.weight");
    if (!tt) throw std::runtime_error(g.path() + ": bert model without token_types.weight");
    c.n_token_types = tt->ne.size() == 2 ? (int)tt->ne[1] : 0;
    if (c.n_token_types < 1) throw std::runtime_error(g.path() + ": token_types.weight is not a matrix");
    if (g.has(a + "attention.causal") && g.get_bool(a + "attention.causal"))
      throw std::runtime_error(g.path() + ": a causal bert is not supported");
  }
  // llama.cpp writes GPT-2's tied output matrix out as output.weight; either way works.
  c.tied_output = g.find_tensor("output.weight") == nullptr;
  if (c.family == Family::bert) c.tied_output = true;  // no LM head at all
  return c;
}

}  // namespace cascade
