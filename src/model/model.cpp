#include "cascade/model.h"

#include <cstdlib>
#include <stdexcept>

#include "cascade/gguf.h"

namespace cascade {
namespace {

// Dequantises `name` after checking that its shape is ne = {ne0, ne1} (ne1 = 1 for vectors).
std::vector<float> load_tensor(const GgufFile& g, const std::string& name, uint64_t ne0,
                               uint64_t ne1) {
  const GgufTensorInfo& t = g.tensor(name);
  const uint64_t got1 = t.ne.size() > 1 ? t.ne[1] : 1;
  if (t.ne.empty() || t.ne[0] != ne0 || got1 != ne1 || t.n_elements != ne0 * ne1)
    throw std::runtime_error(g.path() + ": tensor '" + name + "' has shape [" +
                             std::to_string(t.ne.empty() ? 0 : t.ne[0]) + ", " +
                             std::to_string(got1) + "], expected [" + std::to_string(ne0) +
                             ", " + std::to_string(ne1) + "]");
  return g.to_f32(t);
}

// Rows of several matrices with the same row length, one after the other.
std::vector<float> stack(std::initializer_list<std::vector<float>> parts) {
  std::vector<float> out;
  for (const std::vector<float>& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

Model Model::load(const GgufFile& g) {
  Model m;
  m.cfg = ModelConfig::from_gguf(g);
  const ModelConfig& c = m.cfg;
  m.tok_embd = load_tensor(g, "token_embd.weight", c.d_model, c.n_vocab);
  m.out_norm = load_tensor(g, "output_norm.weight", c.d_model, 1);
  if (!c.tied_output) m.output = load_tensor(g, "output.weight", c.d_model, c.n_vocab);
  m.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& w = m.layers[l];
    w.attn_norm = load_tensor(g, p + "attn_norm.weight", c.d_model, 1);
    w.wqkv = stack({load_tensor(g, p + "attn_q.weight", c.d_model, c.d_q()),
                    load_tensor(g, p + "attn_k.weight", c.d_model, c.d_kv()),
                    load_tensor(g, p + "attn_v.weight", c.d_model, c.d_kv())});
    w.wo = load_tensor(g, p + "attn_output.weight", c.d_q(), c.d_model);
    w.ffn_norm = load_tensor(g, p + "ffn_norm.weight", c.d_model, 1);
    w.w_gate_up = stack({load_tensor(g, p + "ffn_gate.weight", c.d_model, c.d_ff),
                         load_tensor(g, p + "ffn_up.weight", c.d_model, c.d_ff)});
    w.w_down = load_tensor(g, p + "ffn_down.weight", c.d_ff, c.d_model);
  }
  return m;
}

Model Model::load(const std::string& path) {
  GgufFile g(path);
  return load(g);
}

std::string default_model_path() {
  if (const char* env = std::getenv("CASCADE_MODEL"); env && *env) return env;
  return std::string(CASCADE_SOURCE_DIR) + "/data/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace cascade
