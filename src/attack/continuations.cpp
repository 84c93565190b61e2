#include "cascade/continuations.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/attention.h"

namespace cascade {

int row_width(const ModelConfig& c, const RowSpec& s) {
  switch (s.kind) {
    case RowKind::hidden: return c.d_model;
    case RowKind::q: return c.d_q();
    case RowKind::k:
    case RowKind::v: return c.d_kv();
  }
  return 0;
}

std::string row_spec_name(const RowSpec& s) {
  static const char* names[] = {"hidden", "q", "k", "v"};
  return std::string(names[(int)s.kind]) + "@" + std::to_string(s.layer);
}

RowSpec parse_row_spec(const std::string& text, const ModelConfig& c) {
  const size_t at = text.find('@');
  const std::string kind = text.substr(0, at);
  RowSpec s;
  if (kind == "hidden") s.kind = RowKind::hidden;
  else if (kind == "q") s.kind = RowKind::q;
  else if (kind == "k") s.kind = RowKind::k;
  else if (kind == "v") s.kind = RowKind::v;
  else throw std::invalid_argument("row '" + text + "': expected hidden@L, q@L, k@L or v@L");
  if (at == std::string::npos) throw std::invalid_argument("row '" + text + "' names no layer (e.g. " + kind + "@1)");
  try {
    size_t used = 0;
    s.layer = std::stoi(text.substr(at + 1), &used);
    if (used != text.size() - at - 1) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw std::invalid_argument("row '" + text + "': the layer is not a number");
  }
  const int hi = s.kind == RowKind::hidden ? c.n_layer : c.n_layer - 1;
  if (s.layer < 0 || s.layer > hi)
    throw std::invalid_argument("row '" + text + "': layer out of range 0.." + std::to_string(hi));
  return s;
}

Continuations::Continuations(const Model& model) : model_(model), be_(make_cpu_backend()) {
  if (model.cfg.d_head > 256)
    throw std::invalid_argument("Continuations: heads wider than 256 are not supported");
  reset();
}
Continuations::~Continuations() = default;

void Continuations::reset() {
  n_past_ = 0;
  prefix_.clear();
  pk_.assign(model_.cfg.n_layer, {});
  pv_.assign(model_.cfg.n_layer, {});
  next_logits_.clear();
}

void Continuations::append(const std::vector<int32_t>& ids) {
  if (ids.empty()) return;
  const ModelConfig& c = model_.cfg;
  std::vector<float> logits(c.n_vocab);
  SuffixCache kept;
  Batch b;
  b.ids = ids.data();
  b.batch = 1;
  b.t = (int)ids.size();
  b.logits = logits.data();
  b.keep = &kept;
  run(b);
  for (int l = 0; l < c.n_layer; ++l) {
    pk_[l].insert(pk_[l].end(), kept.k[l].begin(), kept.k[l].end());
    pv_[l].insert(pv_[l].end(), kept.v[l].begin(), kept.v[l].end());
  }
  n_past_ += b.t;
  prefix_.insert(prefix_.end(), ids.begin(), ids.end());
  next_logits_ = std::move(logits);
}

void Continuations::run(const Batch& b) {
  const ModelConfig& c = model_.cfg;
  if (b.batch <= 0 || b.t <= 0) return;
  if (!b.ids) throw std::invalid_argument("Continuations::run: no token ids");
  if (b.spec && !b.rows) throw std::invalid_argument("Continuations::run: a row spec without an output");
  if (b.parent && b.parent->len > 0 && !b.parent_row && b.parent->batch != b.batch)
    throw std::invalid_argument("Continuations::run: parent rows not given and batch sizes differ");
  const int plen = b.parent ? b.parent->len : 0;
  if (n_past_ + plen + b.t > c.n_ctx)
    throw std::invalid_argument("Continuations::run: context overflow");
  const bool prepass_row = b.spec && b.spec->kind != RowKind::hidden;
  int blocks = b.spec ? blocks_before(*b.spec) : 0;
  if (b.logits) blocks = c.n_layer;
  if (b.parent && b.parent->len > 0 && b.parent->depth < blocks + (prepass_row ? 1 : 0))
    throw std::invalid_argument("Continuations::run: the parent cache is shallower than the batch");
  if (b.keep) {
    b.keep->batch = b.batch;
    b.keep->len = plen + b.t;
    b.keep->depth = blocks;
    b.keep->k.assign(blocks, std::vector<float>((size_t)b.batch * (plen + b.t) * c.d_kv()));
    b.keep->v.assign(blocks, std::vector<float>((size_t)b.batch * (plen + b.t) * c.d_kv()));
  }
  // Chunks of about 512 new rows: big enough for the GEMMs, small enough for the cache.
  const int chunk = std::max(1, 512 / b.t);
  for (int b0 = 0; b0 < b.batch; b0 += chunk)
    run_chunk(b, b0, std::min(chunk, b.batch - b0), blocks, prepass_row, b.keep);
}

void Continuations::run_chunk(const Batch& b, int b0, int nb, int blocks, bool prepass_row,
                              SuffixCache* keep) {
  const ModelConfig& c = model_.cfg;
  const int t = b.t, rows = nb * t, d = c.d_model, dq = c.d_q(), dkv = c.d_kv();
  const int plen = b.parent ? b.parent->len : 0, slen = plen + t;
  const int width = b.spec ? row_width(c, *b.spec) : 0;
  std::vector<float> h((size_t)rows * d), q((size_t)rows * dq), k((size_t)rows * dkv),
      v((size_t)rows * dkv), o((size_t)rows * dq);
  std::vector<float> sk((size_t)nb * slen * dkv), sv(sk.size());  // (nb, slen, d_kv)
  std::vector<int32_t> pos(rows), spos(slen), ppos(n_past_);
  for (int r = 0; r < rows; ++r) pos[r] = n_past_ + plen + r % t;
  for (int j = 0; j < slen; ++j) spos[j] = n_past_ + j;
  for (int j = 0; j < n_past_; ++j) ppos[j] = j;
  embed_tokens(model_, b.ids + (size_t)b0 * t, rows, h.data());

  // The last new row of each sequence into the output (src rows of `w` floats).
  auto take = [&](const float* src, int w) {
    for (int s = 0; s < nb; ++s)
      std::memcpy(b.rows + (size_t)(b0 + s) * width, src + ((size_t)s * t + t - 1) * w, 4 * (size_t)w);
  };
  if (b.spec && b.spec->kind == RowKind::hidden && b.spec->layer == 0) take(h.data(), d);

  const float scale = 1.0f / std::sqrt((float)c.d_head);
  for (int l = 0; l <= blocks && l < c.n_layer; ++l) {
    if (l == blocks && !prepass_row) break;
    layer_prepass(*be_, model_, l, h.data(), pos.data(), rows, q.data(), k.data(), v.data(), ws_);
    if (prepass_row && l == b.spec->layer) {
      take(b.spec->kind == RowKind::q ? q.data() : b.spec->kind == RowKind::k ? k.data() : v.data(),
           width);
      if (l == blocks) break;
    }
    // Each sequence's own keys: its parent's, then its new rows.
    for (int s = 0; s < nb; ++s) {
      float* dk = sk.data() + (size_t)s * slen * dkv;
      float* dv = sv.data() + (size_t)s * slen * dkv;
      if (plen > 0) {
        const size_t pr = b.parent_row ? b.parent_row[b0 + s] : (size_t)(b0 + s);
        if (pr >= (size_t)b.parent->batch) throw std::out_of_range("Continuations: parent row out of range");
        std::memcpy(dk, b.parent->k[l].data() + pr * plen * dkv, 4 * (size_t)plen * dkv);
        std::memcpy(dv, b.parent->v[l].data() + pr * plen * dkv, 4 * (size_t)plen * dkv);
      }
      std::memcpy(dk + (size_t)plen * dkv, k.data() + (size_t)s * t * dkv, 4 * (size_t)t * dkv);
      std::memcpy(dv + (size_t)plen * dkv, v.data() + (size_t)s * t * dkv, 4 * (size_t)t * dkv);
    }
    if (keep && l < keep->depth) {
      std::memcpy(keep->k[l].data() + (size_t)b0 * slen * dkv, sk.data(), 4 * sk.size());
      std::memcpy(keep->v[l].data() + (size_t)b0 * slen * dkv, sv.data(), 4 * sv.size());
    }
    // Attention of every new row: a partial over the shared prefix, one over the sequence's
    // own keys (causal), merged — the same partial/merge math as Cascade itself.
    const int group = c.n_head / c.n_head_kv, dh = c.d_head;
    const float* pk = pk_[l].data();
    const float* pv = pv_[l].data();
#pragma omp parallel for collapse(2) schedule(static) if (rows * c.n_head >= 256)
    for (int r = 0; r < rows; ++r) {
      for (int hd = 0; hd < c.n_head; ++hd) {
        const int s = r / t, g = hd / group;
        const float* qr = q.data() + (size_t)r * dq + (size_t)hd * dh;
        float m[2], e[2], u[2 * 256];
        // No prefix yet: no prefix pointers either (arithmetic on a null pointer is undefined).
        kernels::partial_attention_row(qr, n_past_ ? pk + g * dh : nullptr, n_past_ ? pv + g * dh : nullptr,
                                       ppos.data(), n_past_, dkv,
                                       dh, pos[r], false, scale, &m[0], &e[0], u);
        const float* ks = sk.data() + (size_t)s * slen * dkv + g * dh;
        const float* vs = sv.data() + (size_t)s * slen * dkv + g * dh;
        kernels::partial_attention_row(qr, ks, vs, spos.data(), slen, dkv, dh, pos[r], true,
                                       scale, &m[1], &e[1], u + dh);
        kernels::merge_partials_row(m, e, u, 2, 1, dh, dh, o.data() + (size_t)r * dq + hd * dh);
      }
    }
    layer_postpass(*be_, model_, l, h.data(), o.data(), rows, ws_);
    if (b.spec && b.spec->kind == RowKind::hidden && b.spec->layer == l + 1) take(h.data(), d);
  }
  row_blocks_ += (double)rows * blocks;
  if (b.logits) {
    std::vector<float> last((size_t)nb * d);
    for (int s = 0; s < nb; ++s)
      std::memcpy(last.data() + (size_t)s * d, h.data() + ((size_t)s * t + t - 1) * d, 4 * (size_t)d);
    final_logits(*be_, model_, last.data(), nb, b.logits + (size_t)b0 * c.n_vocab);
  }
}

}  // namespace cascade
