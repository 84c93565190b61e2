#include "cascade/gap_attack.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <stdexcept>

#include "cascade/vocab_match.h"

namespace cascade {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// In place: logits → log-probabilities.
void log_softmax(float* x, int n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp((double)x[i] - mx);
  const float lse = mx + (float)std::log(sum);
  for (int i = 0; i < n; ++i) x[i] -= lse;
}

// Ids of the k largest of x[0, n), largest first (ties: lower id first).
std::vector<int32_t> top_k(const float* x, int n, int k) {
  k = std::min(k, n);
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
  ids.resize(k);
  return ids;
}

}  // namespace

std::vector<float> proposal_logprobs(Continuations& cx, int32_t start_token) {
  const int V = cx.prefix().empty() ? 0 : (int)cx.next_logits().size();
  std::vector<float> lp;
  if (V > 0) {
    lp = cx.next_logits();
  } else {
    Continuations::Batch b;
    b.ids = &start_token;
    b.batch = 1;
    lp.resize(cx.model().cfg.n_vocab);
    b.logits = lp.data();
    cx.run(b);
  }
  log_softmax(lp.data(), (int)lp.size());
  return lp;
}

FillVerifier row_verifier(int32_t next_token, const RowSpec& spec, const float* row) {
  return [next_token, spec, row](Continuations& cx, const FillBatch& fb, double* d) {
    const int w = row_width(cx.model().cfg, spec);
    std::vector<float> rows((size_t)fb.n * w);
    std::vector<int32_t> ids;
    for (int i = 0; i < fb.n; ++i) {
      ids.push_back(fb.last[i]);
      ids.push_back(next_token);
    }
    Continuations::Batch b;
    b.parent = fb.len > 1 ? fb.cache : nullptr;
    b.parent_row = fb.parent;
    b.ids = ids.data();
    b.batch = fb.n;
    b.t = 2;
    b.spec = &spec;
    b.rows = rows.data();
    cx.run(b);
    for (int i = 0; i < fb.n; ++i) d[i] = relative_l1(rows.data() + (size_t)i * w, row, w);
  };
}

HoleResult fill_hole(Continuations& cx, int len, int32_t next_token, const RowSpec& spec,
                     const float* row, const GapOptions& o) {
  return fill_hole(cx, len, row_verifier(next_token, spec, row), o);
}

HoleResult fill_hole(Continuations& cx, int len, const FillVerifier& verify, const GapOptions& o) {
  const ModelConfig& c = cx.model().cfg;
  const int V = c.n_vocab;
  if (len <= 0) throw std::invalid_argument("fill_hole: a hole has at least one position");
  if (o.budget <= 0 || o.beam <= 0) throw std::invalid_argument("fill_hole: budget and beam must be positive");
  const auto t0 = Clock::now();
  HoleResult res;
  res.start = cx.n_past();
  res.len = len;

  // The beam: partial fills of len − 1 tokens, their summed log-probabilities, their caches,
  // and the log-probabilities of the token after each (lp: (entries, V)).
  std::vector<std::vector<int32_t>> fills(1);
  std::vector<double> score(1, 0.0);
  std::vector<float> lp = proposal_logprobs(cx, o.start_token);
  SuffixCache cache;
  for (int j = 0; j + 1 < len; ++j) {
    // Expand every entry by its `beam` best tokens and keep the `beam` best of all.
    struct Cand { double s; int e; int32_t tok; };
    std::vector<Cand> cands;
    for (size_t e = 0; e < fills.size(); ++e)
      for (int32_t tok : top_k(lp.data() + e * V, V, o.beam))
        cands.push_back({score[e] + lp[e * V + tok], (int)e, tok});
    const size_t keep = std::min<size_t>(o.beam, cands.size());
    std::partial_sort(cands.begin(), cands.begin() + keep, cands.end(), [](const Cand& a, const Cand& b) {
      return a.s > b.s || (a.s == b.s && (a.e < b.e || (a.e == b.e && a.tok < b.tok)));
    });
    cands.resize(keep);
    std::vector<std::vector<int32_t>> next_fills;
    std::vector<double> next_score;
    std::vector<int32_t> parent_row, ids;
    for (const Cand& cd : cands) {
      next_fills.push_back(fills[cd.e]);
      next_fills.back().push_back(cd.tok);
      next_score.push_back(cd.s);
      parent_row.push_back(cd.e);
      ids.push_back(cd.tok);
    }
    std::vector<float> logits((size_t)keep * V);
    SuffixCache next;
    Continuations::Batch b;
    b.parent = j > 0 ? &cache : nullptr;
    b.parent_row = parent_row.data();
    b.ids = ids.data();
    b.batch = (int)keep;
    b.logits = logits.data();
    b.keep = &next;
    cx.run(b);
    for (size_t e = 0; e < keep; ++e) log_softmax(logits.data() + e * V, V);
    fills = std::move(next_fills);
    score = std::move(next_score);
    lp = std::move(logits);
    cache = std::move(next);
  }

  // Complete fills in order of probability: a merge of the entries' sorted last tokens.
  const int per_entry = (int)std::min<int64_t>(V, o.budget);
  std::vector<std::vector<int32_t>> order(fills.size());
  for (size_t e = 0; e < fills.size(); ++e) order[e] = top_k(lp.data() + e * V, V, per_entry);
  struct Head { double s; int e; int idx; };
  auto worse = [](const Head& a, const Head& b) { return a.s < b.s || (a.s == b.s && a.e > b.e); };
  std::priority_queue<Head, std::vector<Head>, decltype(worse)> heap(worse);
  for (size_t e = 0; e < fills.size(); ++e)
    heap.push({score[e] + lp[e * V + order[e][0]], (int)e, 0});
  res.enumerate_seconds = since(t0);

  std::vector<int64_t> marks = o.milestones;
  marks.push_back(o.budget);
  std::sort(marks.begin(), marks.end());
  marks.erase(std::unique(marks.begin(), marks.end()), marks.end());
  size_t next_mark = 0;
  double best = std::numeric_limits<double>::infinity();
  std::vector<int32_t> best_fill;
  auto record = [&](int64_t budget) {
    Milestone m;
    m.budget = budget;
    m.guess = res.matched ? res.guess : best_fill;
    m.matched = res.matched;
    m.seconds = since(t0);
    res.milestones.push_back(m);
  };

  const int chunk = 512;
  std::vector<double> dist(chunk);
  while (!res.matched && res.verified < o.budget && !heap.empty()) {
    std::vector<Head> batch;
    while ((int)batch.size() < chunk && res.verified + (int64_t)batch.size() < o.budget && !heap.empty()) {
      Head h = heap.top();
      heap.pop();
      batch.push_back(h);
      if (h.idx + 1 < (int)order[h.e].size())
        heap.push({score[h.e] + lp[(size_t)h.e * V + order[h.e][h.idx + 1]], h.e, h.idx + 1});
    }
    std::vector<int32_t> last, parent_row;
    for (const Head& h : batch) {
      last.push_back(order[h.e][h.idx]);
      parent_row.push_back(h.e);
    }
    FillBatch fb;
    fb.entries = &fills;
    fb.cache = &cache;
    fb.parent = parent_row.data();
    fb.last = last.data();
    fb.n = (int)batch.size();
    fb.len = len;
    verify(cx, fb, dist.data());
    for (size_t i = 0; i < batch.size(); ++i) {
      const double d = dist[i];
      ++res.verified;
      if (d < best) {
        best = d;
        best_fill = fills[batch[i].e];
        best_fill.push_back(order[batch[i].e][batch[i].idx]);
      }
      if (d < o.eps) {
        res.matched = true;
        res.match_rank = res.verified - 1;
        res.guess = best_fill;
        break;
      }
      while (next_mark < marks.size() && marks[next_mark] == res.verified) record(marks[next_mark++]);
    }
  }
  if (!res.matched) res.guess = best_fill;
  res.distance = best;
  while (next_mark < marks.size()) record(marks[next_mark++]);  // matched early, or ran out
  res.seconds = since(t0);
  return res;
}

}  // namespace cascade
