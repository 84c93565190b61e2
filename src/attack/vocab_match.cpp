#include "cascade/vocab_match.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

#include "cascade/attack_features.h"
#include "cascade/backend.h"

namespace cascade {

const char* permutation_name(Permutation p) {
  static const char* names[] = {"none", "rows", "dims", "both"};
  return names[(int)p];
}

Permutation parse_permutation(const std::string& name) {
  for (Permutation p : {Permutation::none, Permutation::rows, Permutation::dims, Permutation::both})
    if (name == permutation_name(p)) return p;
  throw std::invalid_argument("permutation '" + name + "': expected none, rows, dims or both");
}

double relative_l1(const float* a, const float* b, int width) {
  double diff = 0.0, norm = 0.0;
  for (int i = 0; i < width; ++i) {
    diff += std::fabs((double)a[i] - b[i]);
    norm += std::fabs((double)b[i]);
  }
  return norm > 0.0 ? diff / norm : (diff > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
}

std::vector<float> victim_rows(const Model& model, const std::vector<int32_t>& ids,
                               const RowSpec& row) {
  // The features' prefill (attack_features.h) runs only the layers the row needs; its layer l
  // is ours: hidden after l blocks, or layer l's q, k, v.
  auto be = make_cpu_backend();
  PromptFeatures f = compute_features(*be, model, ids, {row.layer}, /*with_q=*/row.kind == RowKind::q);
  switch (row.kind) {
    case RowKind::hidden: return std::move(f.hidden[0]);
    case RowKind::q: return std::move(f.q[0]);
    case RowKind::k: return std::move(f.k[0]);
    case RowKind::v: return std::move(f.v[0]);
  }
  return {};
}

std::vector<float> permute_rows(const std::vector<float>& rows, int n, int width, Permutation p,
                                uint64_t seed, bool per_row_dims) {
  std::mt19937_64 rng(seed);
  std::vector<float> out = rows;
  if (p == Permutation::dims || p == Permutation::both) {
    std::vector<int> cols(width);
    std::iota(cols.begin(), cols.end(), 0);
    std::shuffle(cols.begin(), cols.end(), rng);
    for (int i = 0; i < n; ++i) {
      if (per_row_dims && i > 0) std::shuffle(cols.begin(), cols.end(), rng);
      for (int j = 0; j < width; ++j) out[(size_t)i * width + j] = rows[(size_t)i * width + cols[j]];
    }
  }
  if (p == Permutation::rows || p == Permutation::both) {
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const std::vector<float> in = out;
    for (int i = 0; i < n; ++i)
      std::copy(in.begin() + (size_t)order[i] * width, in.begin() + (size_t)(order[i] + 1) * width,
                out.begin() + (size_t)i * width);
  }
  return out;
}

namespace {

// Candidate ids by descending logit (ties: lower id first).
std::vector<int32_t> by_logit(const std::vector<float>& logits) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return order;
}

}  // namespace

VocabMatchResult vocab_match(const Model& model, const std::vector<float>& observed, int n,
                             const VocabMatchOptions& o, const Progress& progress) {
  const ModelConfig& c = model.cfg;
  const int w = row_width(c, o.row);
  if (n <= 0) throw std::invalid_argument("vocab_match: no rows");
  if (observed.size() != (size_t)n * w)
    throw std::invalid_argument("vocab_match: " + std::to_string(observed.size()) +
                                " floats are not " + std::to_string(n) + " rows of " +
                                std::to_string(w) + " (" + row_spec_name(o.row) + ")");
  if (o.batch <= 0) throw std::invalid_argument("vocab_match: batch must be positive");
  const bool any_row = o.perm == Permutation::rows || o.perm == Permutation::both;
  const bool sorted = o.perm == Permutation::dims || o.perm == Permutation::both;
  const auto t0 = std::chrono::steady_clock::now();

  // The observed rows as compared: sorted once when the hidden dimension is permuted.
  std::vector<float> obs = observed;
  if (sorted)
    for (int j = 0; j < n; ++j) std::sort(obs.begin() + (size_t)j * w, obs.begin() + (size_t)(j + 1) * w);
  std::vector<double> norm(n, 0.0);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < w; ++i) norm[j] += std::fabs((double)obs[(size_t)j * w + i]);
  std::vector<char> used(n, 0);

  Continuations cx(model);
  VocabMatchResult res;
  std::vector<int32_t> order;
  if (o.proposal && o.start_token >= 0) {  // position 0: the logits after the start token
    if (o.start_token >= c.n_vocab) throw std::invalid_argument("vocab_match: start token out of range");
    std::vector<float> logits(c.n_vocab);
    Continuations::Batch b;
    b.ids = &o.start_token;
    b.logits = logits.data();
    b.batch = 1;
    cx.run(b);
    order = by_logit(logits);
  }
  std::vector<float> rows((size_t)o.batch * w);
  for (int i = 0; i < n; ++i) {
    if (i > 0 || order.empty()) {
      if (o.proposal && i > 0) order = by_logit(cx.next_logits());
      else {
        order.resize(c.n_vocab);
        std::iota(order.begin(), order.end(), 0);
      }
    }
    MatchedPosition best;
    best.distance = std::numeric_limits<double>::infinity();
    best.runner_up = std::numeric_limits<double>::infinity();
    bool accepted = false;
    for (int s = 0; s < c.n_vocab && !accepted; s += o.batch) {
      const int nb = std::min(o.batch, c.n_vocab - s);
      Continuations::Batch b;
      b.ids = order.data() + s;
      b.batch = nb;
      b.spec = &o.row;
      b.rows = rows.data();
      cx.run(b);
      best.candidates += nb;
      double batch_best = std::numeric_limits<double>::infinity();
      for (int k = 0; k < nb; ++k) {
        float* r = rows.data() + (size_t)k * w;
        if (sorted) std::sort(r, r + w);
        for (int j = any_row ? 0 : i; j < (any_row ? n : i + 1); ++j) {
          if (used[j]) continue;
          double diff = 0.0;
          const float* ob = obs.data() + (size_t)j * w;
          for (int x = 0; x < w; ++x) diff += std::fabs(r[x] - ob[x]);
          const double rel = norm[j] > 0 ? diff / norm[j] : diff;
          batch_best = std::min(batch_best, rel);
          if (rel < best.distance) {
            if (best.token != order[s + k]) best.runner_up = std::min(best.runner_up, best.distance);
            best.distance = rel;
            best.token = order[s + k];
            best.row = j;
          } else if (order[s + k] != best.token) {
            best.runner_up = std::min(best.runner_up, rel);
          }
        }
      }
      accepted = batch_best < o.eps;
    }
    best.full_scan = !accepted;
    res.full_scans += best.full_scan;
    used[best.row] = 1;
    res.tokens.push_back(best.token);
    res.candidates += best.candidates;
    res.positions.push_back(best);
    cx.append({best.token});
    if (progress) progress(i + 1, n);
  }
  res.row_blocks = cx.row_blocks();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace cascade
