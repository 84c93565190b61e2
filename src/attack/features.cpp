// Features of the learning-based attack: the rows each party receives, computed by the
// single-process model (layer.h, as Reference does), and their HDF5 file
// (include/cascade/attack_features.h documents the layout). The file is written by one
// process with the HDF5 C API, serially, as the traces are (src/trace/trace_io.cpp).
#include "cascade/attack_features.h"

#include <hdf5.h>
#include <sys/stat.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "cascade/layer.h"
#include "../util/hdf5_handle.h"

namespace cascade {

void check_feature_layers(const std::vector<int>& layers, int n_layer) {
  if (layers.empty()) throw std::invalid_argument("no layers given");
  std::set<int> seen;
  for (int l : layers) {
    if (l < 0 || l > n_layer)
      throw std::invalid_argument("layer " + std::to_string(l) + " is outside 0.." + std::to_string(n_layer) +
                                  " (0: the embedding, " + std::to_string(n_layer) + ": the last block's output)");
    if (!seen.insert(l).second) throw std::invalid_argument("layer " + std::to_string(l) + " given twice");
  }
}

PromptFeatures compute_features(Backend& be, const Model& model, const std::vector<int32_t>& ids,
                                const std::vector<int>& layers, bool with_q) {
  const ModelConfig& c = model.cfg;
  check_feature_layers(layers, c.n_layer);
  if (!be.host_memory()) throw std::invalid_argument("compute_features needs a host-memory backend, got " + be.name());
  const int n = (int)ids.size();
  if (n == 0) throw std::invalid_argument("empty prompt");
  if (n > c.n_ctx)
    throw std::invalid_argument("prompt of " + std::to_string(n) + " tokens > model context " + std::to_string(c.n_ctx));
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= c.n_vocab)
      throw std::invalid_argument("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary 0.." + std::to_string(c.n_vocab - 1));

  PromptFeatures f;
  f.ids = ids;
  f.layers = layers;
  f.hidden.resize(layers.size());
  f.k.resize(layers.size());
  f.v.resize(layers.size());
  f.q.resize(layers.size());
  const int last = *std::max_element(layers.begin(), layers.end());

  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> h((size_t)n * c.d_model);               // (n, d)
  std::vector<float> q((size_t)n * c.d_q());                  // (n, n_head, d_head)
  std::vector<float> k((size_t)n * c.d_kv()), v(k.size());    // (n, n_kv, d_head)
  std::vector<float> m((size_t)n * c.n_head), e(m.size());    // (n, n_head)
  std::vector<float> u(q.size()), o(q.size());                // (n, n_head, d_head)
  LayerScratch ws;
  embed_tokens(model, ids.data(), n, h.data());

  auto slot = [&](int l) {
    return (int)(std::find(layers.begin(), layers.end(), l) - layers.begin());
  };
  for (int l = 0; l <= last; ++l) {
    const int s = slot(l);
    const bool keep = s < (int)layers.size();
    if (keep) f.hidden[s] = h;
    if (l == c.n_layer) break;  // hidden only: no layer l to run
    layer_prepass(be, model, l, h.data(), pos.data(), n, q.data(), k.data(), v.data(), ws);
    if (keep) {
      f.k[s] = k;
      f.v[s] = v;
      if (with_q) f.q[s] = q;
    }
    if (l == last) break;  // the rows of the deepest requested layer are in
    // Plain causal attention over the whole prompt: one partial, merged alone.
    PartialAttnArgs a;
    a.q = q.data(); a.q_pos = pos.data(); a.nq = n;
    a.k = k.data(); a.v = v.data(); a.k_pos = pos.data(); a.nk = n;
    a.n_head = c.n_head; a.n_head_kv = c.n_head_kv; a.d_head = c.d_head; a.causal = true;
    a.m = m.data(); a.e = e.data(); a.u = u.data();
    be.partial_attention(a);
    be.merge_partials(m.data(), e.data(), u.data(), 1, n, c.n_head, c.d_head, o.data());
    layer_postpass(be, model, l, h.data(), o.data(), n, ws);
  }
  return f;
}

// ---- HDF5 ------------------------------------------------------------------------------------

namespace {

std::string layer_group(int l) { return "layer_" + std::to_string(l); }

// A dataset of `cols` columns (0: 1-D) that grows along its first dimension.
struct Growing {
  H5Handle d;
  hid_t type = -1;
  hsize_t cols = 0;
  hsize_t rows = 0;
};

}  // namespace

struct FeaturesWriter::Impl {
  std::string path;
  ModelConfig cfg;
  std::vector<int> layers;
  H5Handle file;
  Growing tokens, positions;
  bool with_q = false;
  std::vector<Growing> hidden, k, v, q;  // per layer (k, v, q unused at l = n_layer; q without with_q)
  std::vector<int64_t> offsets{0};
  bool finished = false;

  [[noreturn]] void fail(const std::string& what) const {
    throw FeaturesError("features file '" + path + "': " + what);
  }
  void check(herr_t rc, const std::string& what) const {
    if (rc < 0) fail(what);
  }

  H5Handle group(hid_t parent, const std::string& name) {
    H5Handle g(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.ok()) fail("cannot create group " + name);
    return g;
  }

  Growing growing(hid_t parent, const std::string& name, hid_t type, hsize_t cols) {
    const int rank = cols ? 2 : 1;
    const hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols};
    // Chunks of ~256 KiB: whole rows, so a reader of one layer reads whole chunks.
    const hsize_t chunk_rows = std::max<hsize_t>(1, (256 * 1024 / 4) / std::max<hsize_t>(cols, 1));
    const hsize_t chunk[2] = {chunk_rows, cols};
    H5Handle space(H5Screate_simple(rank, dims, maxdims), H5Sclose);
    H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    check(H5Pset_chunk(dcpl, rank, chunk), "cannot set the chunks of " + name);
    Growing g;
    g.d = H5Handle(H5Dcreate2(parent, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
    if (!g.d.ok()) fail("cannot create dataset " + name);
    g.type = type;
    g.cols = cols;
    return g;
  }

  void grow(Growing& g, const void* data, hsize_t rows, const std::string& name) {
    const int rank = g.cols ? 2 : 1;
    const hsize_t new_dims[2] = {g.rows + rows, g.cols};
    check(H5Dset_extent(g.d, new_dims), "cannot extend " + name);
    H5Handle fspace(H5Dget_space(g.d), H5Sclose);
    const hsize_t start[2] = {g.rows, 0}, count[2] = {rows, g.cols};
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), "cannot select rows of " + name);
    H5Handle mspace(H5Screate_simple(rank, count, nullptr), H5Sclose);
    check(H5Dwrite(g.d, g.type, mspace, fspace, H5P_DEFAULT, data), "cannot write " + name + " (disk full?)");
    g.rows += rows;
  }

  void attr_raw(hid_t obj, const std::string& name, hid_t type, const void* data, hsize_t n, bool scalar) {
    if (H5Aexists(obj, name.c_str()) > 0) check(H5Adelete(obj, name.c_str()), "cannot replace attribute " + name);
    H5Handle space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose);
    H5Handle a(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) fail("cannot create attribute " + name);
    check(H5Awrite(a, type, data), "cannot write attribute " + name);
  }
  void attr(hid_t obj, const std::string& name, int64_t v) { attr_raw(obj, name, H5T_NATIVE_INT64, &v, 1, true); }
  void attr(hid_t obj, const std::string& name, const std::string& v) {
    H5Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    const char* p = v.c_str();
    attr_raw(obj, name, t, &p, 1, true);
  }
  void attr(hid_t obj, const std::string& name, const std::vector<int32_t>& v) {
    attr_raw(obj, name, H5T_NATIVE_INT32, v.data(), v.size(), false);
  }
};

FeaturesWriter::FeaturesWriter(const std::string& path, const ModelConfig& cfg, const std::vector<int>& layers,
                               const std::string& model_name, const std::string& command, bool with_q)
    : impl_(new Impl) {
  quiet_hdf5();
  check_feature_layers(layers, cfg.n_layer);
  Impl& w = *impl_;
  w.path = path;
  w.cfg = cfg;
  w.layers = layers;
  w.with_q = with_q;
  w.file = H5Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!w.file.ok()) throw FeaturesError("cannot create features file '" + path + "' (is its directory writable?)");
  H5Handle meta = w.group(w.file, "meta");
  w.attr(meta, "format", std::string(kFeaturesFormat));
  w.attr(meta, "version", (int64_t)kFeaturesVersion);
  w.attr(meta, "model", model_name);
  w.attr(meta, "n_layer", (int64_t)cfg.n_layer);
  w.attr(meta, "d_model", (int64_t)cfg.d_model);
  w.attr(meta, "d_kv", (int64_t)cfg.d_kv());
  w.attr(meta, "d_q", (int64_t)cfg.d_q());
  w.attr(meta, "with_q", (int64_t)with_q);
  w.attr(meta, "layers", std::vector<int32_t>(layers.begin(), layers.end()));
  w.attr(meta, "command", command);
  w.attr(meta, "complete", (int64_t)0);
  w.tokens = w.growing(w.file, "tokens", H5T_NATIVE_INT32, 0);
  w.positions = w.growing(w.file, "positions", H5T_NATIVE_INT32, 0);
  for (int l : layers) {
    H5Handle g = w.group(w.file, layer_group(l));
    w.hidden.push_back(w.growing(g, "hidden", H5T_NATIVE_FLOAT, cfg.d_model));
    if (l < cfg.n_layer) {
      w.k.push_back(w.growing(g, "k", H5T_NATIVE_FLOAT, cfg.d_kv()));
      w.v.push_back(w.growing(g, "v", H5T_NATIVE_FLOAT, cfg.d_kv()));
    } else {
      w.k.emplace_back();
      w.v.emplace_back();
    }
    if (with_q && l < cfg.n_layer)
      w.q.push_back(w.growing(g, "q", H5T_NATIVE_FLOAT, cfg.d_q()));
    else
      w.q.emplace_back();
  }
}

FeaturesWriter::~FeaturesWriter() = default;

void FeaturesWriter::append(const PromptFeatures& f) {
  Impl& w = *impl_;
  if (w.finished) w.fail("append after finish");
  if (f.layers != w.layers) w.fail("a prompt's features have other layers than the file's");
  const hsize_t n = f.ids.size();
  if (n == 0) w.fail("a prompt with no tokens");
  const std::string at = " (prompt " + std::to_string(w.offsets.size() - 1) + ")";
  // Every size checked before anything is written: a refused prompt leaves the file as it was.
  const size_t L = w.layers.size();
  if (f.hidden.size() != L || f.k.size() != L || f.v.size() != L) w.fail("a prompt's features lack layers" + at);
  for (size_t i = 0; i < L; ++i) {
    const std::string g = layer_group(w.layers[i]);
    if (f.hidden[i].size() != n * w.cfg.d_model) w.fail(g + "/hidden of the wrong size" + at);
    if (w.layers[i] == w.cfg.n_layer) continue;
    if (f.k[i].size() != n * w.cfg.d_kv() || f.v[i].size() != n * w.cfg.d_kv())
      w.fail(g + "/k or v of the wrong size" + at);
    if (w.with_q && (f.q.size() != L || f.q[i].size() != n * w.cfg.d_q()))
      w.fail(g + "/q of the wrong size (features computed without q?)" + at);
  }
  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0);
  w.grow(w.tokens, f.ids.data(), n, "tokens" + at);
  w.grow(w.positions, pos.data(), n, "positions" + at);
  for (size_t i = 0; i < L; ++i) {
    const std::string g = layer_group(w.layers[i]);
    w.grow(w.hidden[i], f.hidden[i].data(), n, g + "/hidden" + at);
    if (w.layers[i] == w.cfg.n_layer) continue;
    w.grow(w.k[i], f.k[i].data(), n, g + "/k" + at);
    w.grow(w.v[i], f.v[i].data(), n, g + "/v" + at);
    if (w.with_q) w.grow(w.q[i], f.q[i].data(), n, g + "/q" + at);
  }
  w.offsets.push_back(w.offsets.back() + (int64_t)n);
}

void FeaturesWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  const hsize_t n = w.offsets.size();
  H5Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Handle d(H5Dcreate2(w.file, "prompt_offsets", H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             H5Dclose);
  if (!d.ok()) w.fail("cannot create dataset prompt_offsets");
  w.check(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.offsets.data()), "cannot write prompt_offsets");
  H5Handle meta(H5Gopen2(w.file, "meta", H5P_DEFAULT), H5Gclose);
  w.attr(meta, "n_prompts", (int64_t)(n - 1));
  w.attr(meta, "n_tokens", w.offsets.back());
  w.attr(meta, "complete", (int64_t)1);
  w.check(H5Fflush(w.file, H5F_SCOPE_GLOBAL), "cannot flush");
  d.reset();
  meta.reset();
  space.reset();
  w.tokens.d.reset();
  w.positions.d.reset();
  for (auto* gs : {&w.hidden, &w.k, &w.v, &w.q})
    for (Growing& g : *gs) g.d.reset();
  w.file.reset();
  w.finished = true;
}

int64_t FeaturesWriter::n_prompts() const { return (int64_t)impl_->offsets.size() - 1; }
int64_t FeaturesWriter::n_tokens() const { return impl_->offsets.back(); }

// ---- reading ---------------------------------------------------------------------------------

namespace {

struct Reader {
  std::string path;
  H5Handle file;

  [[noreturn]] void fail(const std::string& what) const {
    throw FeaturesError("features file '" + path + "': " + what);
  }
  bool exists(hid_t parent, const std::string& name) const {
    return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0;
  }
  H5Handle attr(hid_t obj, const std::string& name) const {
    if (H5Aexists(obj, name.c_str()) <= 0) fail("no attribute " + name);
    H5Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
    if (!a.ok()) fail("cannot open attribute " + name);
    return a;
  }
  int64_t attr_int(hid_t obj, const std::string& name) const {
    H5Handle a = attr(obj, name);
    int64_t v = 0;
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) fail("cannot read attribute " + name);
    return v;
  }
  std::string attr_str(hid_t obj, const std::string& name) const {
    H5Handle a = attr(obj, name);
    H5Handle t(H5Aget_type(a), H5Tclose);
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0) fail("attribute " + name + " is not a string");
    char* p = nullptr;
    if (H5Aread(a, t, &p) < 0) fail("cannot read attribute " + name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  std::vector<int32_t> attr_ints(hid_t obj, const std::string& name) const {
    H5Handle a = attr(obj, name);
    H5Handle space(H5Aget_space(a), H5Sclose);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    std::vector<int32_t> v(std::max<hssize_t>(n, 0));
    if (n > 0 && H5Aread(a, H5T_NATIVE_INT32, v.data()) < 0) fail("cannot read attribute " + name);
    return v;
  }
  // A dataset of `rows` × `cols` (cols 0: 1-D) elements of `type`, into out.
  template <class T>
  std::vector<T> read(hid_t parent, const std::string& name, hid_t type, hsize_t cols) const {
    if (!exists(parent, name)) fail("no dataset " + name);
    H5Handle d(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d.ok()) fail("cannot open dataset " + name);
    H5Handle space(H5Dget_space(d), H5Sclose);
    hsize_t dims[2] = {0, 0};
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank != (cols ? 2 : 1)) fail("dataset " + name + " has " + std::to_string(rank) + " dimensions");
    H5Sget_simple_extent_dims(space, dims, nullptr);
    if (cols && dims[1] != cols)
      fail("dataset " + name + " has " + std::to_string(dims[1]) + " columns, expected " + std::to_string(cols));
    std::vector<T> out(dims[0] * (cols ? cols : 1));
    if (!out.empty() && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
      fail("cannot read dataset " + name);
    return out;
  }
};

}  // namespace

FeaturesFile read_features(const std::string& path) {
  quiet_hdf5();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw FeaturesError("features file '" + path + "' not found");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw FeaturesError("features file '" + path + "' is not an HDF5 file");
  Reader r{path, H5Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose)};
  if (!r.file.ok()) r.fail("cannot open (damaged?)");
  if (!r.exists(r.file, "meta")) r.fail("no group meta: not a features file");
  H5Handle meta(H5Gopen2(r.file, "meta", H5P_DEFAULT), H5Gclose);
  if (H5Aexists(meta, "format") <= 0 || r.attr_str(meta, "format") != kFeaturesFormat)
    r.fail(std::string("not a features file (meta/format is not '") + kFeaturesFormat + "')");
  const int64_t version = r.attr_int(meta, "version");
  if (version != kFeaturesVersion)
    r.fail("version " + std::to_string(version) + ", this build reads version " + std::to_string(kFeaturesVersion));
  FeaturesFile f;
  f.complete = r.attr_int(meta, "complete") != 0;
  if (!f.complete) r.fail("unfinished (the command that wrote it did not finish)");
  f.model = r.attr_str(meta, "model");
  f.n_layer = (int)r.attr_int(meta, "n_layer");
  f.d_model = (int)r.attr_int(meta, "d_model");
  f.d_kv = (int)r.attr_int(meta, "d_kv");
  f.d_q = (int)r.attr_int(meta, "d_q");
  f.with_q = r.attr_int(meta, "with_q") != 0;
  for (int32_t l : r.attr_ints(meta, "layers")) f.layers.push_back(l);
  f.prompt_offsets = r.read<int64_t>(r.file, "prompt_offsets", H5T_NATIVE_INT64, 0);
  f.tokens = r.read<int32_t>(r.file, "tokens", H5T_NATIVE_INT32, 0);
  f.positions = r.read<int32_t>(r.file, "positions", H5T_NATIVE_INT32, 0);
  const size_t T = f.tokens.size();
  if (f.prompt_offsets.empty() || f.prompt_offsets.front() != 0 || (size_t)f.prompt_offsets.back() != T ||
      f.positions.size() != T)
    r.fail("prompt_offsets, tokens and positions disagree");
  for (int l : f.layers) {
    const std::string g = layer_group(l);
    if (!r.exists(r.file, g)) r.fail("no group " + g);
    H5Handle grp(H5Gopen2(r.file, g.c_str(), H5P_DEFAULT), H5Gclose);
    f.hidden.push_back(r.read<float>(grp, "hidden", H5T_NATIVE_FLOAT, f.d_model));
    if (f.hidden.back().size() != T * f.d_model) r.fail(g + "/hidden has the wrong number of rows");
    if (l < f.n_layer) {
      f.k.push_back(r.read<float>(grp, "k", H5T_NATIVE_FLOAT, f.d_kv));
      f.v.push_back(r.read<float>(grp, "v", H5T_NATIVE_FLOAT, f.d_kv));
      if (f.k.back().size() != T * f.d_kv || f.v.back().size() != T * f.d_kv)
        r.fail(g + "/k or v has the wrong number of rows");
    } else {
      f.k.emplace_back();
      f.v.emplace_back();
    }
    if (f.with_q && l < f.n_layer) {
      f.q.push_back(r.read<float>(grp, "q", H5T_NATIVE_FLOAT, f.d_q));
      if (f.q.back().size() != T * f.d_q) r.fail(g + "/q has the wrong number of rows");
    } else {
      f.q.emplace_back();
    }
  }
  return f;
}

}  // namespace cascade
