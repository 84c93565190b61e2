#include "cascade/model.h"

#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "cascade/gguf.h"

namespace cascade {
namespace {

std::string blk(int l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

// Cutting layers changes what a GGUF model computes, and its weight cache is keyed by the file
// alone: only synthetic models take a layer count.
void check_gguf_spec(const ModelSpec& spec) {
  if (spec.layers != 0)
    throw std::invalid_argument("--layers " + std::to_string(spec.layers) +
                                " is for synthetic models (synthetic:NAME); '" + spec.path +
                                "' is a GGUF file, whose layers are all used");
}

}  // namespace

std::vector<WeightSpec> Model::weight_specs(const ModelConfig& c) {
  // GGUF shapes are ne = [in, out] (ne[0] fastest); vectors are [d, 1].
  const uint64_t d = c.d_model, dq = c.d_q(), dkv = c.d_kv(), ff = c.d_ff, nv = c.n_vocab;
  std::vector<WeightSpec> s;
  s.push_back({"token_embd", {{"token_embd.weight", d, nv}}});
  s.push_back({"output_norm", {{"output_norm.weight", d, 1}}});
  if (!c.tied_output) s.push_back({"output", {{"output.weight", d, nv}}});
  for (int l = 0; l < c.n_layer; ++l) {
    s.push_back({blk(l, "attn_norm"), {{blk(l, "attn_norm.weight"), d, 1}}});
    s.push_back({blk(l, "attn_qkv"),
                 {{blk(l, "attn_q.weight"), d, dq},
                  {blk(l, "attn_k.weight"), d, dkv},
                  {blk(l, "attn_v.weight"), d, dkv}}});
    s.push_back({blk(l, "attn_output"), {{blk(l, "attn_output.weight"), dq, d}}});
    s.push_back({blk(l, "ffn_norm"), {{blk(l, "ffn_norm.weight"), d, 1}}});
    s.push_back({blk(l, "ffn_gate_up"),
                 {{blk(l, "ffn_gate.weight"), d, ff}, {blk(l, "ffn_up.weight"), d, ff}}});
    s.push_back({blk(l, "ffn_down"), {{blk(l, "ffn_down.weight"), ff, d}}});
  }
  return s;
}

Model Model::load(const GgufFile& g, const WeightLoadOptions& opt, WeightLoadReport* report) {
  const ModelConfig cfg = ModelConfig::from_gguf(g);
  return from_store(cfg, load_weights(g, cfg, weight_specs(cfg), opt, report));
}

Model Model::from_store(const ModelConfig& cfg, std::shared_ptr<const WeightStore> store) {
  Model m;
  m.cfg = cfg;
  const ModelConfig& c = m.cfg;
  m.weights = std::move(store);
  // Element counts from the shapes the kernels assume (independently of the specs).
  const WeightStore& w = *m.weights;
  const uint64_t d = c.d_model, dq = c.d_q(), dkv = c.d_kv(), ff = c.d_ff, nv = c.n_vocab;
  m.tok_embd = w.tensor("token_embd", nv * d);
  m.out_norm = w.tensor("output_norm", d);
  if (!c.tied_output) m.output = w.tensor("output", nv * d);
  m.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = m.layers[l];
    lw.attn_norm = w.tensor(blk(l, "attn_norm"), d);
    lw.wqkv = w.tensor(blk(l, "attn_qkv"), (dq + 2 * dkv) * d);
    lw.wo = w.tensor(blk(l, "attn_output"), d * dq);
    lw.ffn_norm = w.tensor(blk(l, "ffn_norm"), d);
    lw.w_gate_up = w.tensor(blk(l, "ffn_gate_up"), 2 * ff * d);
    lw.w_down = w.tensor(blk(l, "ffn_down"), d * ff);
  }
  return m;
}

Model Model::load(const std::string& path, const WeightLoadOptions& opt, WeightLoadReport* report) {
  return load(ModelSpec{path}, opt, report);
}

Model Model::load(const ModelSpec& spec, const WeightLoadOptions& opt, WeightLoadReport* report) {
  if (!spec.synthetic()) {
    check_gguf_spec(spec);
    GgufFile g(spec.path);
    return load(g, opt, report);
  }
  const ModelConfig cfg = synthetic_config(spec.path, spec.layers);
  return from_store(cfg, load_weights(synthetic_weight_origin(cfg, spec.weight_seed), cfg,
                                      weight_specs(cfg), opt, report));
}

ModelConfig model_config(const ModelSpec& spec) {
  if (spec.synthetic()) return synthetic_config(spec.path, spec.layers);
  check_gguf_spec(spec);
  GgufFile g(spec.path);
  return ModelConfig::from_gguf(g);
}

std::string default_model_path() {
  if (const char* env = std::getenv("CASCADE_MODEL"); env && *env) return env;
  return std::string(CASCADE_SOURCE_DIR) + "/data/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace cascade
