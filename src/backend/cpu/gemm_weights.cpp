// A model's matrices packed into a weight store of their own (gemm_weights.h).
#include "cascade/gemm_weights.h"

#include <filesystem>
#include <map>
#include <stdexcept>

#include "cascade/model.h"
#include "cascade/sha256.h"

namespace cascade {
namespace {

namespace fs = std::filesystem;

struct Matrix {
  const float* w;  // (out, in) row-major fp32, in the model's store
  int in, out;
};

// The packed matrices of `m`, by the name their entry has in the packed store.
std::map<std::string, Matrix> matrices(const Model& m) {
  const ModelConfig& c = m.cfg;
  std::map<std::string, Matrix> out;
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& w = m.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    out[p + "qkv"] = {w.wqkv, c.d_model, c.d_q() + 2 * c.d_kv()};
    out[p + "o"] = {w.wo, c.d_q(), c.d_model};
    if (w.w_gate_up) out[p + "gate_up"] = {w.w_gate_up, c.d_model, 2 * c.d_ff};
    if (w.w_up) out[p + "up"] = {w.w_up, c.d_model, c.d_ff};
    out[p + "down"] = {w.w_down, c.d_ff, c.d_model};
  }
  if (!c.encoder()) out["lm_head"] = {m.lm_head(), c.d_model, c.n_vocab};
  return out;
}

}  // namespace

std::shared_ptr<const GemmWeights> pack_gemm_weights(const Model& model, const PackedGemm& gemm,
                                                     const WeightLoadOptions& opt_in) {
  if (!model.weights) throw std::invalid_argument("pack_gemm_weights: the model has no weights");
  const std::map<std::string, Matrix> mats = matrices(model);

  // The layout: every distinct shape's descriptor, hashed.
  std::map<std::pair<int, int>, size_t> bytes;  // (in, out) → packed bytes
  std::string descriptors;
  for (const auto& [name, m] : mats) {
    if (!m.w) throw std::invalid_argument("pack_gemm_weights: matrix " + name + " is missing");
    if (bytes.count({m.in, m.out})) continue;
    bytes[{m.in, m.out}] = gemm.packed_bytes(m.in, m.out);
    descriptors += gemm.layout_descriptor(m.in, m.out) + "\n";
  }
  const std::string hash = to_hex(sha256_string(descriptors)).substr(0, 16);
  const std::string prec = precision_name(gemm.precision());
  // A store holds floats: a packed matrix takes its bytes rounded up to whole floats.
  auto floats = [&bytes](const Matrix& m) -> uint64_t { return (bytes.at({m.in, m.out}) + 3) / 4; };

  std::vector<WeightSpec> specs;
  for (const auto& [name, m] : mats) specs.push_back({name, {{name, floats(m), 1}}});

  WeightOrigin o;
  o.layout = {"dnnl-" + prec + "-" + hash.substr(0, 8), "onednn " + prec + " " + hash};
  o.verb = std::string("packed (oneDNN, ") + prec + ")";
  o.fill = [&mats, &gemm](const WeightPart& p, float* out) {
    const Matrix& m = mats.at(p.gguf_name);
    gemm.pack(m.w, m.in, m.out, out);
  };
  WeightLoadOptions opt = opt_in;
  const WeightStore& fp32 = *model.weights;
  if (fp32.file_backed()) {  // beside the fp32 cache, under the same key
    const fs::path path(fp32.path());
    const Sha256 key = fp32.key();
    const std::string suffix = "." + to_hex(key).substr(0, 16) + "." + kLayoutF32.tag + ".cache";
    const std::string file = path.filename().string();
    if (file.size() <= suffix.size() || file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
      throw std::logic_error("pack_gemm_weights: unexpected cache file name " + file);
    o.file_stem = file.substr(0, file.size() - suffix.size());
    o.label = o.file_stem + " (packed)";
    o.home_dir = path.parent_path().string();
    o.key = [key] { return key; };
    opt.cache_dir = o.home_dir;
  } else {
    o.label = model.cfg.name + " (packed)";
    o.key = [] { return Sha256{}; };
    opt.source = WeightSource::memory;
  }

  auto gw = std::make_shared<GemmWeights>();
  gw->precision = gemm.precision();
  gw->model_weights = model.weights;
  gw->store = load_weights(o, model.cfg, specs, opt, &gw->report);
  for (const auto& [name, m] : mats) gw->packed[m.w] = gw->store->tensor(name, floats(m));
  return gw;
}

}  // namespace cascade
