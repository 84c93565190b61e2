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
  // A tensor of one part, and its bias ("x.bias" stored as "x_b").
  auto plain = [&s](const std::string& name, uint64_t ne0, uint64_t ne1) {
    s.push_back({name, {{name + ".weight", ne0, ne1}}});
  };
  auto bias = [&s](const std::string& name, uint64_t n) {
    s.push_back({name + "_b", {{name + ".bias", n, 1}}});
  };
  auto norm = [&](const std::string& name) {
    plain(name, d, 1);
    if (c.layer_norm()) bias(name, d);
  };
  plain("token_embd", d, nv);
  if (c.family != Family::llama) plain("position_embd", d, (uint64_t)c.n_ctx);
  if (c.family == Family::bert) {
    plain("token_types", d, (uint64_t)c.n_token_types);
    norm("token_embd_norm");
  }
  if (!c.encoder()) norm("output_norm");
  if (!c.tied_output) plain("output", d, nv);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (c.family != Family::bert) norm(b + "attn_norm");
    if (c.family == Family::gpt2) {
      plain(b + "attn_qkv", d, dq + 2 * dkv);  // fused in GPT-2's GGUF
      bias(b + "attn_qkv", dq + 2 * dkv);
    } else {
      s.push_back({b + "attn_qkv",
                   {{b + "attn_q.weight", d, dq}, {b + "attn_k.weight", d, dkv}, {b + "attn_v.weight", d, dkv}}});
      if (c.family == Family::bert)
        s.push_back({b + "attn_qkv_b",
                     {{b + "attn_q.bias", dq, 1}, {b + "attn_k.bias", dkv, 1}, {b + "attn_v.bias", dkv, 1}}});
    }
    plain(b + "attn_output", dq, d);
    if (c.family != Family::llama) bias(b + "attn_output", d);
    if (c.family == Family::bert) norm(b + "attn_output_norm");
    if (c.family == Family::gpt2) norm(b + "ffn_norm");
    if (c.family == Family::llama) {
      norm(b + "ffn_norm");
      s.push_back({b + "ffn_gate_up", {{b + "ffn_gate.weight", d, ff}, {b + "ffn_up.weight", d, ff}}});
    } else {
      plain(b + "ffn_up", d, ff);
      bias(b + "ffn_up", ff);
    }
    plain(b + "ffn_down", ff, d);
    if (c.family != Family::llama) bias(b + "ffn_down", d);
    if (c.family == Family::bert) norm(b + "layer_output_norm");
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
  const bool ln = c.layer_norm(), llama = c.family == Family::llama, bert = c.family == Family::bert;
  auto opt = [&w](bool present, const std::string& name, uint64_t n) {
    return present ? w.tensor(name, n) : nullptr;
  };
  m.tok_embd = w.tensor("token_embd", nv * d);
  m.pos_embd = opt(!llama, "position_embd", (uint64_t)c.n_ctx * d);
  m.type_embd = opt(bert, "token_types", (uint64_t)c.n_token_types * d);
  m.embd_norm = opt(bert, "token_embd_norm", d);
  m.embd_norm_b = opt(bert, "token_embd_norm_b", d);
  m.out_norm = opt(!c.encoder(), "output_norm", d);
  m.out_norm_b = opt(!c.encoder() && ln, "output_norm_b", d);
  if (!c.tied_output) m.output = w.tensor("output", nv * d);
  m.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = m.layers[l];
    const std::string an = bert ? "attn_output_norm" : "attn_norm";
    const std::string fn = bert ? "layer_output_norm" : "ffn_norm";
    lw.attn_norm = w.tensor(blk(l, an.c_str()), d);
    lw.attn_norm_b = opt(ln, blk(l, (an + "_b").c_str()), d);
    lw.wqkv = w.tensor(blk(l, "attn_qkv"), (dq + 2 * dkv) * d);
    lw.bqkv = opt(!llama, blk(l, "attn_qkv_b"), dq + 2 * dkv);
    lw.wo = w.tensor(blk(l, "attn_output"), d * dq);
    lw.bo = opt(!llama, blk(l, "attn_output_b"), d);
    lw.ffn_norm = w.tensor(blk(l, fn.c_str()), d);
    lw.ffn_norm_b = opt(ln, blk(l, (fn + "_b").c_str()), d);
    lw.w_gate_up = opt(llama, blk(l, "ffn_gate_up"), 2 * ff * d);
    lw.w_up = opt(!llama, blk(l, "ffn_up"), ff * d);
    lw.b_up = opt(!llama, blk(l, "ffn_up_b"), ff);
    lw.w_down = w.tensor(blk(l, "ffn_down"), d * ff);
    lw.b_down = opt(!llama, blk(l, "ffn_down_b"), d);
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
