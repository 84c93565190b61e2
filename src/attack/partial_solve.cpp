#include "cascade/partial_solve.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <queue>
#include <set>
#include <stdexcept>
#include <string>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "kernels/rope.h"

namespace cascade {
namespace {

// A token is taken for a member of the segment when its value row is this close (relative L2,
// worst kv head) to the residuals' span: the truth sits at float noise (~1e-6), other rows of a
// 64-dimensional head are ~1 away from a span of a few dimensions.
constexpr double kMemberTol = 0.02;
// Residual directions below this (relative to the row's own scale) are float noise.
constexpr double kRankTol = 1e-4;
// Leaving a member out of a placement costs this per residual: a right placement costs ~1e-3,
// a wrong one ~1 or more.
constexpr double kSkip = 0.5;
// Search nodes per shard when placing members.
constexpr int64_t kMaxNodes = 200000;

// Orthonormal basis of the span of `rows` (each scaled so that its float noise is ~1e-6), by
// Gram–Schmidt with pivoting on the largest remaining norm, stopping at noise level.
std::vector<std::vector<double>> span_basis(std::vector<std::vector<double>> rows) {
  std::vector<std::vector<double>> basis;
  auto norm = [](const std::vector<double>& x) { return std::sqrt(std::inner_product(x.begin(), x.end(), x.begin(), 0.0)); };
  while (!rows.empty()) {
    size_t best = 0;
    double bn = -1.0;
    for (size_t i = 0; i < rows.size(); ++i)
      if (double n = norm(rows[i]); n > bn) bn = n, best = i;
    if (bn < kRankTol) break;
    std::vector<double> b = rows[best];
    for (double& x : b) x /= bn;
    for (int pass = 0; pass < 2; ++pass)  // re-orthogonalise against the basis once more
      for (const auto& e : basis) {
        const double dot = std::inner_product(b.begin(), b.end(), e.begin(), 0.0);
        for (size_t t = 0; t < b.size(); ++t) b[t] -= dot * e[t];
      }
    const double n2 = norm(b);
    for (double& x : b) x /= n2;
    rows.erase(rows.begin() + best);
    for (auto& r : rows) {
      const double dot = std::inner_product(r.begin(), r.end(), b.begin(), 0.0);
      for (size_t t = 0; t < r.size(); ++t) r[t] -= dot * b[t];
    }
    basis.push_back(std::move(b));
  }
  return basis;
}

// Least squares x (n) of A^T x ≈ y, A (n, d) row-major: the normal equations, solved by
// Gaussian elimination with partial pivoting (n is a handful).
std::vector<double> least_squares(const std::vector<std::vector<double>>& A, const std::vector<double>& y) {
  const size_t n = A.size();
  std::vector<std::vector<double>> G(n, std::vector<double>(n + 1));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) G[i][j] = std::inner_product(A[i].begin(), A[i].end(), A[j].begin(), 0.0);
    G[i][i] *= 1.0 + 1e-12;
    G[i][n] = std::inner_product(A[i].begin(), A[i].end(), y.begin(), 0.0);
  }
  for (size_t c = 0; c < n; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::fabs(G[r][c]) > std::fabs(G[p][c])) p = r;
    std::swap(G[c], G[p]);
    if (G[c][c] == 0.0) continue;
    for (size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = G[r][c] / G[c][c];
      for (size_t k = c; k <= n; ++k) G[r][k] -= f * G[c][k];
    }
  }
  std::vector<double> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = G[i][i] != 0.0 ? G[i][n] / G[i][i] : 0.0;
  return x;
}

// The `max` cheapest ways to pick one entry per list (lists sorted by cost), cheapest first.
std::vector<std::vector<int>> k_best(const std::vector<std::vector<double>>& cost, int64_t max) {
  std::vector<std::vector<int>> out;
  if (cost.empty() || max <= 0) return out;
  for (const auto& c : cost)
    if (c.empty()) return out;
  using Item = std::pair<double, std::vector<int>>;
  auto worse = [](const Item& a, const Item& b) { return a.first > b.first || (a.first == b.first && a.second > b.second); };
  std::priority_queue<Item, std::vector<Item>, decltype(worse)> heap(worse);
  std::set<std::vector<int>> seen;
  std::vector<int> first(cost.size(), 0);
  double c0 = 0.0;
  for (const auto& c : cost) c0 += c[0];
  heap.push({c0, first});
  seen.insert(first);
  while (!heap.empty() && (int64_t)out.size() < max) {
    Item it = heap.top();
    heap.pop();
    out.push_back(it.second);
    for (size_t i = 0; i < cost.size(); ++i) {
      std::vector<int> nx = it.second;
      if (++nx[i] >= (int)cost[i].size() || !seen.insert(nx).second) continue;
      heap.push({it.first - cost[i][nx[i] - 1] + cost[i][nx[i]], nx});
    }
  }
  return out;
}

}  // namespace

SpanSolution span_solve(const Model& model, const Layer0Inverter& table, const ViewPartials& vp,
                        const std::vector<int32_t>& att, const std::vector<int32_t>& known, int first, int len,
                        const std::vector<int>& queries, int64_t max_fills) {
  const ModelConfig& c = model.cfg;
  const int dh = c.d_head, group = c.n_head / c.n_head_kv, nq = (int)queries.size();
  if (queries.empty()) throw std::invalid_argument("span_solve: no query");
  const int q_end = *std::max_element(queries.begin(), queries.end());
  SpanSolution sol;
  sol.candidates.assign(len, {});
  sol.costs.assign(len, {});
  auto be = make_cpu_backend();
  const float scale = 1.0f / std::sqrt((float)dh);

  // The queries' layer-0 q rows (RoPE at their positions).
  std::vector<float> Q;
  std::vector<int32_t> qpos(queries.begin(), queries.end());
  for (int p : queries) {
    const float* q0 = table.row_at_0(RowKind::q, known.at(p));
    Q.insert(Q.end(), q0, q0 + c.d_q());
    kernels::rope_row(Q.data() + Q.size() - c.d_q(), c.n_head, dh, p, c.rope_theta);
  }
  std::set<int32_t> shards;
  for (int p = first; p < first + len; ++p) shards.insert(att.at(p));
  // Per shard: its segment positions and its candidate placements (cost, tokens), best first.
  std::vector<std::pair<std::vector<int>, std::vector<std::pair<double, std::vector<int32_t>>>>> shard_fills;
  for (int32_t b : shards) {
    std::vector<int> seg;  // segment positions of shard b
    for (int p = first; p < first + len; ++p)
      if (att[p] == b) seg.push_back(p);
    // The known keys' partial (m_k, e_k, u_k) per (query, head).
    std::vector<int32_t> kpos;
    std::vector<float> K, V;
    for (int j = 0; j <= q_end; ++j) {
      if (att.at(j) != b || (j >= first && j < first + len)) continue;
      if (known.at(j) < 0) throw std::invalid_argument("span_solve: the token of key position " + std::to_string(j) + " is unknown");
      kpos.push_back(j);
      const float* k0 = table.row_at_0(RowKind::k, known[j]);
      const float* v0 = table.row_at_0(RowKind::v, known[j]);
      K.insert(K.end(), k0, k0 + c.d_kv());
      V.insert(V.end(), v0, v0 + c.d_kv());
      kernels::rope_row(K.data() + K.size() - c.d_kv(), c.n_head_kv, dh, j, c.rope_theta);
    }
    std::vector<float> mk((size_t)nq * c.n_head, -std::numeric_limits<float>::infinity()), ek(mk.size(), 0.0f),
        uk(mk.size() * dh, 0.0f);
    if (!kpos.empty()) {
      PartialAttnArgs a;
      a.q = Q.data(), a.q_pos = qpos.data(), a.nq = nq;
      a.k = K.data(), a.v = V.data(), a.k_pos = kpos.data(), a.nk = (int)kpos.size();
      a.n_head = c.n_head, a.n_head_kv = c.n_head_kv, a.d_head = dh;
      a.m = mk.data(), a.e = ek.data(), a.u = uk.data();
      be->partial_attention(a);
    }
    // Residuals r = u − exp(m_k − m)·u_k, scaled to their float noise, per kv head; and the
    // received m of each, for placing tokens.
    std::vector<std::vector<std::vector<double>>> res(c.n_head_kv);
    std::vector<std::vector<std::pair<int, int>>> res_of(c.n_head_kv);  // (query index, head)
    std::vector<std::vector<double>> res_scale(c.n_head_kv);
    for (int i = 0; i < nq; ++i) {
      const int r = vp.index(queries[i]);
      if (r < 0) throw std::invalid_argument("span_solve: no partial of position " + std::to_string(queries[i]));
      for (int h = 0; h < c.n_head; ++h) {
        const size_t at = ((size_t)b * vp.positions.size() + r) * c.n_head + h, ak = (size_t)i * c.n_head + h;
        const double m = vp.m[at];
        const double w = std::isinf(mk[ak]) ? 0.0 : std::exp((double)mk[ak] - m);
        std::vector<double> x(dh);
        double s = 0.0;
        for (int t = 0; t < dh; ++t) {
          x[t] = vp.u[at * dh + t] - w * uk[ak * dh + t];
          s += std::fabs(vp.u[at * dh + t]) + w * std::fabs(uk[ak * dh + t]);
        }
        s /= std::sqrt((double)dh);  // ~ the L2 norm of the terms x came from: x's float noise is ~1e-6·s
        if (s == 0.0) continue;
        res[h / group].push_back(x);
        res_of[h / group].push_back({i, h});
        res_scale[h / group].push_back(s);
      }
    }
    std::vector<std::vector<std::vector<double>>> basis(c.n_head_kv);
    for (int g = 0; g < c.n_head_kv; ++g) {
      std::vector<std::vector<double>> rows = res[g];
      for (size_t i = 0; i < rows.size(); ++i)
        for (double& x : rows[i]) x /= res_scale[g][i];
      basis[g] = span_basis(rows);
    }
    // Members: tokens whose value row (every kv head) lies in the span.
    std::vector<std::pair<double, int32_t>> members;
    for (int32_t t = 0; t < c.n_vocab; ++t) {
      const float* v0 = table.row_at_0(RowKind::v, t);
      double worst = 0.0;
      for (int g = 0; g < c.n_head_kv && worst < kMemberTol; ++g) {
        const float* v = v0 + g * dh;
        double vv = 0.0;
        for (int d = 0; d < dh; ++d) vv += (double)v[d] * v[d];
        double in = 0.0;
        for (const auto& e : basis[g]) {
          double dot = 0.0;
          for (int d = 0; d < dh; ++d) dot += e[d] * v[d];
          in += dot * dot;
        }
        worst = std::max(worst, vv > 0 ? std::sqrt(std::max(0.0, vv - in) / vv) : 1.0);
      }
      if (worst < kMemberTol) members.push_back({worst, t});
    }
    std::sort(members.begin(), members.end());
    // Unsolvable from these queries (more unknowns than mixes, or a saturated span): its
    // positions stay unknown (−1) in every fill.
    const auto unsolved = [&] { shard_fills.push_back({seg, {{0.0, std::vector<int32_t>(seg.size(), -1)}}}); };
    if (members.empty() || members.size() > seg.size() + 8) {
      unsolved();
      continue;
    }
    // Coefficients of each residual on the members' value rows: exp(s − m) per member.
    const size_t nm = members.size();
    std::vector<std::vector<std::vector<double>>> a(c.n_head_kv);  // [g][residual][member]
    for (int g = 0; g < c.n_head_kv; ++g) {
      std::vector<std::vector<double>> A(nm, std::vector<double>(dh));
      for (size_t k = 0; k < nm; ++k)
        for (int d = 0; d < dh; ++d) A[k][d] = table.row_at_0(RowKind::v, members[k].second)[g * dh + d];
      for (const auto& y : res[g]) a[g].push_back(least_squares(A, y));
    }
    // Predicted weights: member k at segment position seg[jj] adds exp(s − m) of its value row
    // to residual ri (every kv head's residuals in one list), s = q · RoPE(k_k, seg[jj]) / √d_h.
    std::vector<std::pair<int, int>> all;  // (kv head, residual index)
    for (int g = 0; g < c.n_head_kv; ++g)
      for (size_t ri = 0; ri < res_of[g].size(); ++ri) all.push_back({g, (int)ri});
    const int ns = (int)seg.size(), nr = (int)all.size();
    std::vector<double> w((size_t)nm * ns * nr), fitted((size_t)nm * nr);
    for (size_t k = 0; k < nm; ++k) {
      for (int x = 0; x < nr; ++x) fitted[k * nr + x] = a[all[x].first][all[x].second][k];
      for (int jj = 0; jj < ns; ++jj) {
        std::vector<float> kr(table.row_at_0(RowKind::k, members[k].second), table.row_at_0(RowKind::k, members[k].second) + c.d_kv());
        kernels::rope_row(kr.data(), c.n_head_kv, dh, seg[jj], c.rope_theta);
        for (int x = 0; x < nr; ++x) {
          const auto [g, ri] = all[x];
          const auto [i, h] = res_of[g][ri];
          const double m = vp.m[((size_t)b * vp.positions.size() + vp.index(queries[i])) * c.n_head + h];
          double sc = 0.0;
          for (int d = 0; d < dh; ++d) sc += (double)Q[((size_t)i * c.n_head + h) * dh + d] * kr[g * dh + d];
          w[((size_t)k * ns + jj) * nr + x] = std::exp(sc * scale - m);
        }
      }
    }
    // A member placed at the positions of `mask` explains its fitted coefficients by the sum of
    // its weights there: cost Σ |ln fitted − ln Σ w|. A token may repeat in a segment, so sets of
    // up to kMaxRepeat positions; a member may be left out (an extra, e.g. a wrong guess among the
    // known keys), at kSkip per residual.
    auto set_cost = [&](size_t k, uint32_t mask) {
      double cost = 0.0;
      for (int x = 0; x < nr; ++x) {
        double sum = 0.0;
        for (int jj = 0; jj < ns; ++jj)
          if (mask >> jj & 1) sum += w[((size_t)k * ns + jj) * nr + x];
        const double f = fitted[k * nr + x];
        cost += std::fabs((f > 1e-30 ? std::log(f) : -69.0) - std::log(std::max(sum, 1e-300)));
      }
      return cost;
    };
    for (int jj = 0; jj < ns; ++jj) {  // per position: members by the cost of being there alone
      std::vector<std::pair<double, int32_t>> cand;
      for (size_t k = 0; k < nm; ++k) cand.push_back({set_cost(k, 1u << jj), members[k].second});
      std::sort(cand.begin(), cand.end());
      for (const auto& [cost, t] : cand) {
        sol.candidates[seg[jj] - first].push_back(t);
        sol.costs[seg[jj] - first].push_back(cost);
      }
    }
    if (ns > 30) {  // position sets are 32-bit masks
      unsolved();
      continue;
    }
    constexpr int kMaxRepeat = 3;
    const double skip = kSkip * nr;
    struct Option { double cost; uint32_t mask; };
    std::vector<std::vector<Option>> opts(nm);
    std::vector<size_t> order(nm);
    std::iota(order.begin(), order.end(), 0);
    for (size_t k = 0; k < nm; ++k) {
      std::vector<uint32_t> masks;  // every set of 1 to kMaxRepeat = 3 positions
      for (int x = 0; x < ns; ++x) {
        masks.push_back(1u << x);
        for (int y = x + 1; y < ns; ++y) {
          masks.push_back(1u << x | 1u << y);
          for (int z = y + 1; z < ns; ++z) masks.push_back(1u << x | 1u << y | 1u << z);
        }
      }
      for (uint32_t mask : masks) opts[k].push_back({set_cost(k, mask), mask});
      std::sort(opts[k].begin(), opts[k].end(), [](const Option& x, const Option& y) { return x.cost < y.cost; });
      if (opts[k].size() > 64) opts[k].resize(64);
    }
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return opts[x][0].cost < opts[y][0].cost; });
    // Exact covers of the shard's positions, depth first in cost order, at most max_fills kept.
    using Cover = std::pair<double, std::vector<int32_t>>;
    auto cheaper = [](const Cover& x, const Cover& y) { return x.first < y.first; };
    std::priority_queue<Cover, std::vector<Cover>, decltype(cheaper)> covers(cheaper);  // the dearest on top
    std::vector<int32_t> assign(ns, -1);
    int64_t nodes = 0;
    const uint32_t full = ns == 32 ? ~0u : (1u << ns) - 1;
    std::function<void(size_t, uint32_t, double)> dfs = [&](size_t idx, uint32_t used, double cost) {
      if (++nodes > kMaxNodes) return;
      if ((int64_t)covers.size() >= max_fills && cost >= covers.top().first) return;
      if (used == full) {
        covers.push({cost, assign});
        if ((int64_t)covers.size() > max_fills) covers.pop();
        return;
      }
      if (idx == nm || __builtin_popcount(full & ~used) > (int)(nm - idx) * kMaxRepeat) return;
      const size_t k = order[idx];
      for (const Option& o : opts[k]) {
        if (o.mask & used) continue;
        for (int jj = 0; jj < ns; ++jj)
          if (o.mask >> jj & 1) assign[jj] = members[k].second;
        dfs(idx + 1, used | o.mask, cost + o.cost);
      }
      dfs(idx + 1, used, cost + skip);
    };
    dfs(0, 0, 0.0);
    std::vector<Cover> placed;
    for (; !covers.empty(); covers.pop()) placed.push_back(covers.top());
    std::reverse(placed.begin(), placed.end());  // cheapest first
    if (placed.empty()) {
      unsolved();
      continue;
    }
    shard_fills.push_back({seg, std::move(placed)});
  }
  // Across shards: the cheapest combinations of each shard's covers.
  std::vector<std::vector<double>> costs;
  for (const auto& [seg, placed] : shard_fills) {
    costs.emplace_back();
    for (const auto& pc : placed) costs.back().push_back(pc.first);
  }
  {
    for (const std::vector<int>& pick : k_best(costs, max_fills)) {
      std::vector<int32_t> fill(len, -1);
      for (size_t si = 0; si < shard_fills.size(); ++si) {
        const auto& [seg, placed] = shard_fills[si];
        for (size_t jj = 0; jj < seg.size(); ++jj) fill[seg[jj] - first] = placed[pick[si]].second[jj];
      }
      sol.fills.push_back(std::move(fill));
    }
  }
  return sol;
}

}  // namespace cascade
