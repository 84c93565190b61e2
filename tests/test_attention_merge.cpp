// Partial attention and the merge of partials (PROTOCOL.md, "One layer", steps 2-3): the
// invariants Cascade's exactness rests on, after FlashInfer's tests of its (m, d, o) states.
//   - one partial over all keys, merged alone, is softmax attention;
//   - any split of the keys into β subsets, merged, is the same attention;
//   - the empty partial (−inf, 0, 0) is the identity; all-empty merges to exactly 0, no NaN;
//   - merge is order-independent, combine_partials associative and commutative;
//   - extreme scores and −inf partials never give NaN/inf;
//   - the CPU backend (GQA, SmolLM2's 9/3/64 heads) matches the naive reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "kernels/attention.h"

namespace {

namespace k = cascade::kernels;

const float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> random_vec(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A partial attention state (m, e, u(d_h)).
struct Partial {
  float m = kNegInf;
  float e = 0.0f;
  std::vector<float> u;
};

Partial empty_partial(int d) { return Partial{kNegInf, 0.0f, std::vector<float>(d, 0.0f)}; }

// Keys of one head, K and V rows contiguous (stride = d).
struct Keys {
  std::vector<float> K, V;
  std::vector<int> pos;
  int n() const { return (int)pos.size(); }
};

Keys random_keys(std::mt19937& rng, int nk, int d, float amp = 1.0f) {
  Keys ks;
  ks.K = random_vec(rng, (size_t)nk * d, -amp, amp);
  ks.V = random_vec(rng, (size_t)nk * d);
  ks.pos.resize(nk);
  std::iota(ks.pos.begin(), ks.pos.end(), 0);
  return ks;
}

Keys subset(const Keys& ks, const std::vector<int>& idx, int d) {
  Keys s;
  for (int j : idx) {
    s.K.insert(s.K.end(), ks.K.begin() + (long)j * d, ks.K.begin() + (long)(j + 1) * d);
    s.V.insert(s.V.end(), ks.V.begin() + (long)j * d, ks.V.begin() + (long)(j + 1) * d);
    s.pos.push_back(ks.pos[j]);
  }
  return s;
}

Partial partial_of(const std::vector<float>& q, const Keys& ks, int d, int q_pos, bool causal) {
  Partial p;
  p.u.assign(d, std::numeric_limits<float>::quiet_NaN());  // must be overwritten
  k::partial_attention_row(q.data(), ks.K.data(), ks.V.data(), ks.pos.data(), ks.n(), d, d, q_pos,
                           causal, 1.0f / std::sqrt((float)d), &p.m, &p.e, p.u.data());
  return p;
}

// merge_partials_row over partials packed as m(nb), e(nb), u(nb, d).
std::vector<float> merge(const std::vector<Partial>& ps, int d) {
  std::vector<float> m, e, u;
  for (const Partial& p : ps) {
    m.push_back(p.m);
    e.push_back(p.e);
    u.insert(u.end(), p.u.begin(), p.u.end());
  }
  std::vector<float> o(d, std::numeric_limits<float>::quiet_NaN());  // must be overwritten
  k::merge_partials_row(m.data(), e.data(), u.data(), (int)ps.size(), 1, d, d, o.data());
  return o;
}

// Naive softmax attention in double over the visible keys; also its m and e.
struct Ref {
  std::vector<double> o;
  double m = -INFINITY, e = 0.0;
};

// `scores` (optional): the fp32 scores to use instead of double dot products.
Ref attention_ref(const std::vector<float>& q, const Keys& ks, int d, int q_pos, bool causal,
                  const std::vector<float>* scores = nullptr) {
  Ref r;
  r.o.assign(d, 0.0);
  std::vector<double> s(ks.n(), -INFINITY);
  for (int j = 0; j < ks.n(); ++j) {
    if (causal && ks.pos[j] > q_pos) continue;
    if (scores) {
      s[j] = (*scores)[j];
    } else {
      double dot = 0.0;
      for (int t = 0; t < d; ++t) dot += (double)q[t] * ks.K[(long)j * d + t];
      s[j] = dot / std::sqrt((double)d);
    }
    r.m = std::max(r.m, s[j]);
  }
  if (r.m == -INFINITY) return r;
  for (int j = 0; j < ks.n(); ++j) {
    if (s[j] == -INFINITY) continue;
    const double w = std::exp(s[j] - r.m);
    r.e += w;
    for (int t = 0; t < d; ++t) r.o[t] += w * ks.V[(long)j * d + t];
  }
  for (double& v : r.o) v /= r.e;
  return r;
}

// The fp32 scores exactly as partial_attention_row computes them (same order of operations).
std::vector<float> fp32_scores(const std::vector<float>& q, const Keys& ks, int d) {
  std::vector<float> s(ks.n());
  const float scale = 1.0f / std::sqrt((float)d);
  for (int j = 0; j < ks.n(); ++j) {
    float dot = 0.0f;
    for (int t = 0; t < d; ++t) dot += q[t] * ks.K[(long)j * d + t];
    s[j] = dot * scale;
  }
  return s;
}

// max |a − b| / max(max |b|, floor)
template <class A, class B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b, double floor = 1e-30) {
  double num = 0.0, den = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite((double)a[i])) return INFINITY;
    num = std::max(num, std::fabs((double)a[i] - (double)b[i]));
    den = std::max(den, std::fabs((double)b[i]));
  }
  return num / den;
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Random split of keys 0..nk-1 into beta subsets (some may be empty).
std::vector<std::vector<int>> random_split(std::mt19937& rng, int nk, int beta) {
  std::vector<std::vector<int>> parts(beta);
  std::uniform_int_distribution<int> pick(0, beta - 1);
  for (int j = 0; j < nk; ++j) parts[pick(rng)].push_back(j);
  return parts;
}

// ---- one partial --------------------------------------------------------------------------

TEST(AttentionPartial, SingleBlockEqualsNaiveSoftmax) {
  std::mt19937 rng(100);
  for (int d : {1, 2, 8, 64, 128}) {
    for (int nk : {1, 2, 5, 17, 300}) {
      const auto q = random_vec(rng, d, -2.0f, 2.0f);
      const Keys ks = random_keys(rng, nk, d, 2.0f);
      const Partial p = partial_of(q, ks, d, 0, /*causal=*/false);
      const Ref ref = attention_ref(q, ks, d, 0, false);
      EXPECT_NEAR(p.m, ref.m, 1e-5 * (std::fabs(ref.m) + 1.0)) << "d=" << d << " nk=" << nk;
      EXPECT_NEAR(p.e, ref.e, 1e-5 * ref.e) << "d=" << d << " nk=" << nk;
      EXPECT_LE(rel_err(merge({p}, d), ref.o), 1e-5) << "d=" << d << " nk=" << nk;
    }
  }
}

TEST(AttentionPartial, CausalMaskIgnoresLaterKeys) {
  std::mt19937 rng(101);
  const int d = 64, nk = 50;
  Keys ks = random_keys(rng, nk, d);
  std::shuffle(ks.pos.begin(), ks.pos.end(), rng);  // positions in any order
  const auto q = random_vec(rng, d);
  for (int q_pos : {0, 1, 20, 48, 49, 100}) {
    const Ref ref = attention_ref(q, ks, d, q_pos, /*causal=*/true);
    const Partial p = partial_of(q, ks, d, q_pos, true);
    EXPECT_LE(rel_err(merge({p}, d), ref.o), 1e-5) << "q_pos=" << q_pos;
    // Masked keys are never read: poison them with NaN, the result is bit-identical.
    Keys poisoned = ks;
    for (int j = 0; j < nk; ++j)
      if (ks.pos[j] > q_pos)
        for (int t = 0; t < d; ++t)
          poisoned.K[(long)j * d + t] = poisoned.V[(long)j * d + t] =
              std::numeric_limits<float>::quiet_NaN();
    const Partial pp = partial_of(q, poisoned, d, q_pos, true);
    EXPECT_EQ(pp.m, p.m) << "q_pos=" << q_pos;
    EXPECT_EQ(pp.e, p.e) << "q_pos=" << q_pos;
    EXPECT_EQ(pp.u, p.u) << "q_pos=" << q_pos;
  }
  // Not causal: every key counts, whatever its position.
  const Ref all = attention_ref(q, ks, d, 0, false);
  EXPECT_LE(rel_err(merge({partial_of(q, ks, d, 0, false)}, d), all.o), 1e-5);
}

TEST(AttentionPartial, NoVisibleKeyIsTheEmptyPartial) {
  std::mt19937 rng(102);
  const int d = 64;
  const auto q = random_vec(rng, d);
  Keys ks = random_keys(rng, 10, d);
  for (int& p : ks.pos) p += 5;  // keys at 5..14
  for (int q_pos : {-1, 0, 4}) {
    const Partial p = partial_of(q, ks, d, q_pos, /*causal=*/true);
    EXPECT_EQ(p.m, kNegInf) << q_pos;
    EXPECT_EQ(p.e, 0.0f) << q_pos;
    for (float v : p.u) EXPECT_EQ(v, 0.0f) << q_pos;
  }
  const Partial none = partial_of(q, Keys{}, d, 7, false);  // nk = 0
  EXPECT_EQ(none.m, kNegInf);
  EXPECT_EQ(none.e, 0.0f);
  for (float v : none.u) EXPECT_EQ(v, 0.0f);
}

// ---- merge --------------------------------------------------------------------------------

TEST(AttentionMerge, SplitIntoBetaSubsetsEqualsFullAttention) {
  std::mt19937 rng(200);
  for (int beta = 1; beta <= 8; ++beta) {
    for (int trial = 0; trial < 20; ++trial) {
      const int d = (trial % 2) ? 64 : 16;
      const int nk = 1 + (int)(rng() % 120);
      const bool causal = trial % 3 != 0;
      Keys ks = random_keys(rng, nk, d, 1.5f);
      std::shuffle(ks.pos.begin(), ks.pos.end(), rng);
      const auto q = random_vec(rng, d, -1.5f, 1.5f);
      const int q_pos = causal ? (int)(rng() % nk) : 0;
      const Ref ref = attention_ref(q, ks, d, q_pos, causal);
      std::vector<Partial> parts;
      for (const auto& idx : random_split(rng, nk, beta))
        parts.push_back(partial_of(q, subset(ks, idx, d), d, q_pos, causal));
      const auto o = merge(parts, d);
      ASSERT_LE(rel_err(o, ref.o), 1e-5) << "beta=" << beta << " trial=" << trial << " nk=" << nk;
      // and the split agrees with the unsplit fp32 computation
      EXPECT_LE(rel_err(o, merge({partial_of(q, ks, d, q_pos, causal)}, d)), 1e-5);
    }
  }
}

TEST(AttentionMerge, EmptyPartialIsTheIdentity) {
  std::mt19937 rng(201);
  const int d = 64;
  const auto q = random_vec(rng, d);
  const Partial p = partial_of(q, random_keys(rng, 33, d), d, 0, false);
  const Partial z = empty_partial(d);
  const auto o = merge({p}, d);
  EXPECT_EQ(merge({p, z}, d), o);
  EXPECT_EQ(merge({z, p}, d), o);
  EXPECT_EQ(merge({z, p, z, z}, d), o);

  Partial a = p;  // P ⊕ empty = P
  k::combine_partials(&a.m, &a.e, a.u.data(), z.m, z.e, z.u.data(), d);
  EXPECT_EQ(a.m, p.m);
  EXPECT_EQ(a.e, p.e);
  EXPECT_EQ(a.u, p.u);
  Partial b = z;  // empty ⊕ P = P
  k::combine_partials(&b.m, &b.e, b.u.data(), p.m, p.e, p.u.data(), d);
  EXPECT_EQ(b.m, p.m);
  EXPECT_EQ(b.e, p.e);
  EXPECT_EQ(b.u, p.u);
  Partial c = z;  // empty ⊕ empty = empty
  k::combine_partials(&c.m, &c.e, c.u.data(), z.m, z.e, z.u.data(), d);
  EXPECT_EQ(c.m, kNegInf);
  EXPECT_EQ(c.e, 0.0f);
  for (float v : c.u) EXPECT_EQ(v, 0.0f);
}

TEST(AttentionMerge, AllEmptyGivesExactZero) {
  const int d = 64;
  for (int nb = 0; nb <= 8; ++nb) {
    const auto o = merge(std::vector<Partial>(nb, empty_partial(d)), d);
    for (float v : o) {
      ASSERT_FALSE(std::isnan(v)) << "nb=" << nb;
      ASSERT_EQ(v, 0.0f) << "nb=" << nb;
    }
  }
}

TEST(AttentionMerge, OrderIndependent) {
  std::mt19937 rng(202);
  const int d = 32;
  for (int trial = 0; trial < 5; ++trial) {
    const auto q = random_vec(rng, d, -3.0f, 3.0f);
    const Keys ks = random_keys(rng, 40, d, 3.0f);
    std::vector<Partial> parts;
    for (const auto& idx : random_split(rng, 40, 5))
      parts.push_back(partial_of(q, subset(ks, idx, d), d, 0, false));
    parts[trial % 5] = empty_partial(d);  // one empty partial among them
    const auto base = merge(parts, d);
    std::vector<int> perm(5);
    std::iota(perm.begin(), perm.end(), 0);
    int n_perm = 0;
    do {
      std::vector<Partial> shuffled;
      for (int i : perm) shuffled.push_back(parts[i]);
      ASSERT_LE(rel_err(merge(shuffled, d), base), 1e-6) << "trial=" << trial;
      ++n_perm;
    } while (std::next_permutation(perm.begin(), perm.end()));
    EXPECT_EQ(n_perm, 120);
  }
  // β = 8, random shuffles
  const auto q = random_vec(rng, d);
  const Keys ks = random_keys(rng, 100, d);
  std::vector<Partial> parts;
  for (const auto& idx : random_split(rng, 100, 8))
    parts.push_back(partial_of(q, subset(ks, idx, d), d, 0, false));
  const auto base = merge(parts, d);
  for (int t = 0; t < 200; ++t) {
    std::shuffle(parts.begin(), parts.end(), rng);
    ASSERT_LE(rel_err(merge(parts, d), base), 1e-6);
  }
}

Partial combine(Partial a, const Partial& b, int d) {
  k::combine_partials(&a.m, &a.e, a.u.data(), b.m, b.e, b.u.data(), d);
  return a;
}

void expect_same_partial(const Partial& a, const Partial& b, double tol, const char* what) {
  EXPECT_EQ(a.m, b.m) << what;  // a max: exact
  EXPECT_NEAR(a.e, b.e, tol * std::fabs(b.e)) << what;
  EXPECT_LE(rel_err(a.u, b.u), tol) << what;
}

TEST(AttentionMerge, CombineAssociativeAndCommutative) {
  std::mt19937 rng(203);
  const int d = 48;
  for (int trial = 0; trial < 50; ++trial) {
    const auto q = random_vec(rng, d, -4.0f, 4.0f);
    const Keys ks = random_keys(rng, 30, d, 4.0f);
    std::vector<Partial> p;
    for (const auto& idx : random_split(rng, 30, 3))
      p.push_back(partial_of(q, subset(ks, idx, d), d, 0, false));
    if (trial % 7 == 0) p[trial % 3] = empty_partial(d);
    const Partial &A = p[0], &B = p[1], &C = p[2];
    expect_same_partial(combine(combine(A, B, d), C, d), combine(A, combine(B, C, d), d), 1e-6,
                        "(A+B)+C vs A+(B+C)");
    expect_same_partial(combine(A, B, d), combine(B, A, d), 1e-6, "A+B vs B+A");
    expect_same_partial(combine(combine(A, C, d), B, d), combine(combine(B, A, d), C, d), 1e-6,
                        "(A+C)+B vs (B+A)+C");
  }
}

// Folding combine_partials over the partials, then dividing, equals merge_partials_row.
TEST(AttentionMerge, CombineFoldEqualsMerge) {
  std::mt19937 rng(204);
  const int d = 64;
  for (int beta = 1; beta <= 8; ++beta) {
    const auto q = random_vec(rng, d, -2.0f, 2.0f);
    const Keys ks = random_keys(rng, 64, d, 2.0f);
    std::vector<Partial> parts;
    for (const auto& idx : random_split(rng, 64, beta))
      parts.push_back(partial_of(q, subset(ks, idx, d), d, 0, false));
    Partial acc = empty_partial(d);
    for (const Partial& p : parts) acc = combine(acc, p, d);
    std::vector<float> o(d);
    for (int t = 0; t < d; ++t) o[t] = acc.u[t] / acc.e;
    EXPECT_LE(rel_err(o, merge(parts, d)), 1e-6) << "beta=" << beta;
  }
}

TEST(AttentionMerge, ExtremeScoresStayFinite) {
  std::mt19937 rng(205);
  const int d = 64, nk = 64;
  const float big = 100.0f;  // q·k/√d spread of order 1e4
  for (int mode = 0; mode < 3; ++mode) {
    auto q = random_vec(rng, d, -big, big);
    Keys ks = random_keys(rng, nk, d, big);
    if (mode == 1) {  // every score very negative: k ≈ −q
      for (int j = 0; j < nk; ++j)
        for (int t = 0; t < d; ++t) ks.K[(long)j * d + t] = -q[t] * (1.0f + 0.01f * (j % 7));
    } else if (mode == 2) {  // every score very positive: k ≈ q
      for (int j = 0; j < nk; ++j)
        for (int t = 0; t < d; ++t) ks.K[(long)j * d + t] = q[t] * (1.0f + 0.001f * (j % 5));
    }
    const auto s = fp32_scores(q, ks, d);
    const float smin = *std::min_element(s.begin(), s.end());
    const float smax = *std::max_element(s.begin(), s.end());
    EXPECT_GT(std::max(std::fabs(smin), std::fabs(smax)), 1e3f) << "mode=" << mode;
    // Reference: softmax in double over exactly the fp32 scores the kernel computes.
    const Ref ref = attention_ref(q, ks, d, 0, false, &s);
    const Partial full = partial_of(q, ks, d, 0, false);
    ASSERT_TRUE(std::isfinite(full.m) && std::isfinite(full.e) && all_finite(full.u));
    // The kernel's dot products are SIMD reductions (another summation order): m agrees with
    // the sequential fp32 score to rounding, not bit for bit.
    EXPECT_NEAR(full.m, smax, 1e-6 * std::fabs(smax)) << "mode=" << mode;
    EXPECT_LE(rel_err(merge({full}, d), ref.o), 1e-5) << "mode=" << mode;
    for (int beta = 2; beta <= 8; ++beta) {
      std::vector<Partial> parts;
      for (const auto& idx : random_split(rng, nk, beta)) {
        parts.push_back(partial_of(q, subset(ks, idx, d), d, 0, false));
        parts.push_back(empty_partial(d));  // −inf partials mixed in
      }
      std::shuffle(parts.begin(), parts.end(), rng);
      const auto o = merge(parts, d);
      ASSERT_TRUE(all_finite(o)) << "mode=" << mode << " beta=" << beta;
      EXPECT_LE(rel_err(o, ref.o), 1e-5) << "mode=" << mode << " beta=" << beta;
      Partial acc = empty_partial(d);
      for (const Partial& p : parts) acc = combine(acc, p, d);
      ASSERT_TRUE(std::isfinite(acc.m) && std::isfinite(acc.e) && all_finite(acc.u));
      EXPECT_NEAR(acc.m, smax, 1e-6 * std::fabs(smax));
    }
  }
}

// Partials whose maxima differ by far more than the fp32 exp range: the dominant one wins.
TEST(AttentionMerge, WidelySeparatedMaxima) {
  const int d = 4;
  const Partial hi{1e4f, 2.0f, {2.0f, 4.0f, -6.0f, 8.0f}};
  const Partial lo{-1e4f, 3.0f, {100.0f, 100.0f, 100.0f, 100.0f}};
  const Partial huge{3e38f, 1.0f, {1.0f, 1.0f, 1.0f, 1.0f}};
  const Partial tiny{-3e38f, 1.0f, {5.0f, 5.0f, 5.0f, 5.0f}};
  const std::vector<float> want = {1.0f, 2.0f, -3.0f, 4.0f};
  EXPECT_EQ(merge({hi, lo}, d), want);
  EXPECT_EQ(merge({lo, empty_partial(d), hi}, d), want);
  EXPECT_EQ(merge({tiny, huge}, d), std::vector<float>(4, 1.0f));
  const Partial c = combine(lo, hi, d);
  EXPECT_EQ(c.m, 1e4f);
  EXPECT_EQ(c.e, 2.0f);
  EXPECT_EQ(c.u, hi.u);
  const Partial c2 = combine(huge, tiny, d);
  EXPECT_EQ(c2.m, 3e38f);
  EXPECT_EQ(c2.e, 1.0f);
}

// ---- the CPU backend (GQA) ----------------------------------------------------------------

// Naive attention over the backend layout: q (nq, n_head, d), k, v (nk, n_head_kv, d).
// kv_head(h) picks the kv head of query head h. Returns o (nq, n_head, d).
template <class KvHead>
std::vector<double> attention_ref_gqa(const std::vector<float>& q, const std::vector<int32_t>& q_pos,
                                      const std::vector<float>& kk, const std::vector<float>& vv,
                                      const std::vector<int32_t>& k_pos, int n_head, int n_head_kv,
                                      int d, bool causal, KvHead kv_head) {
  const int nq = (int)q_pos.size(), nk = (int)k_pos.size();
  std::vector<double> o((size_t)nq * n_head * d, 0.0);
  for (int i = 0; i < nq; ++i)
    for (int h = 0; h < n_head; ++h) {
      const int g = kv_head(h);
      const float* qh = &q[((size_t)i * n_head + h) * d];
      std::vector<double> s(nk, -INFINITY);
      double mx = -INFINITY;
      for (int j = 0; j < nk; ++j) {
        if (causal && k_pos[j] > q_pos[i]) continue;
        double dot = 0.0;
        for (int t = 0; t < d; ++t) dot += (double)qh[t] * kk[((size_t)j * n_head_kv + g) * d + t];
        s[j] = dot / std::sqrt((double)d);
        mx = std::max(mx, s[j]);
      }
      if (mx == -INFINITY) continue;  // no visible key: o = 0
      double den = 0.0;
      double* oh = &o[((size_t)i * n_head + h) * d];
      for (int j = 0; j < nk; ++j) {
        if (s[j] == -INFINITY) continue;
        const double w = std::exp(s[j] - mx);
        den += w;
        for (int t = 0; t < d; ++t) oh[t] += w * vv[((size_t)j * n_head_kv + g) * d + t];
      }
      for (int t = 0; t < d; ++t) oh[t] /= den;
    }
  return o;
}

struct GqaCase {
  int n_head, n_head_kv, d_head, nq, nk, beta;
  bool causal;
};

// Runs the CPU backend: partial_attention on β key shards, then merge_partials.
std::vector<float> cpu_backend_attention(cascade::Backend& be, const GqaCase& c,
                                         const std::vector<float>& q,
                                         const std::vector<int32_t>& q_pos,
                                         const std::vector<float>& kk, const std::vector<float>& vv,
                                         const std::vector<int32_t>& k_pos,
                                         const std::vector<std::vector<int>>& shards) {
  const size_t rows = (size_t)c.nq * c.n_head;
  const int nb = (int)shards.size();
  const int kv_row = c.n_head_kv * c.d_head;
  std::vector<float> m(nb * rows), e(nb * rows), u(nb * rows * c.d_head);
  for (int b = 0; b < nb; ++b) {
    std::vector<float> ks, vs;
    std::vector<int32_t> ps;
    for (int j : shards[b]) {
      ks.insert(ks.end(), kk.begin() + (long)j * kv_row, kk.begin() + (long)(j + 1) * kv_row);
      vs.insert(vs.end(), vv.begin() + (long)j * kv_row, vv.begin() + (long)(j + 1) * kv_row);
      ps.push_back(k_pos[j]);
    }
    cascade::PartialAttnArgs a;
    a.q = q.data();
    a.q_pos = q_pos.data();
    a.nq = c.nq;
    a.k = ks.data();
    a.v = vs.data();
    a.k_pos = ps.data();
    a.nk = (int)ps.size();
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.d_head = c.d_head;
    a.causal = c.causal;
    a.m = m.data() + b * rows;
    a.e = e.data() + b * rows;
    a.u = u.data() + b * rows * c.d_head;
    be.partial_attention(a);
  }
  std::vector<float> o(rows * c.d_head, std::numeric_limits<float>::quiet_NaN());
  be.merge_partials(m.data(), e.data(), u.data(), nb, c.nq, c.n_head, c.d_head, o.data());
  return o;
}

TEST(AttentionCpuBackend, GqaMatchesNaiveReference) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(300);
  for (const GqaCase& c : {GqaCase{9, 3, 64, 7, 23, 1, true},    // SmolLM2-135M heads
                           GqaCase{9, 3, 64, 7, 23, 3, true},
                           GqaCase{9, 3, 64, 5, 40, 8, true},
                           GqaCase{9, 3, 64, 6, 31, 4, false},
                           GqaCase{8, 8, 32, 4, 19, 2, true},     // MHA
                           GqaCase{8, 1, 32, 4, 19, 3, true},     // MQA
                           GqaCase{32, 8, 128, 3, 17, 2, true}}) {  // llama-3-8B heads
    const std::string tag = "heads " + std::to_string(c.n_head) + "/" +
                            std::to_string(c.n_head_kv) + " d " + std::to_string(c.d_head) +
                            " beta " + std::to_string(c.beta) + (c.causal ? " causal" : "");
    const auto q = random_vec(rng, (size_t)c.nq * c.n_head * c.d_head, -2.0f, 2.0f);
    const auto kk = random_vec(rng, (size_t)c.nk * c.n_head_kv * c.d_head, -2.0f, 2.0f);
    const auto vv = random_vec(rng, (size_t)c.nk * c.n_head_kv * c.d_head);
    std::vector<int32_t> k_pos(c.nk), q_pos(c.nq);
    std::iota(k_pos.begin(), k_pos.end(), 0);
    std::shuffle(k_pos.begin(), k_pos.end(), rng);
    for (int i = 0; i < c.nq; ++i) q_pos[i] = (int32_t)(rng() % (c.nk + 3)) - 1;  // −1: no key
    std::vector<std::vector<int>> shards(c.beta);
    for (int j = 0; j < c.nk; ++j) shards[j % c.beta].push_back(j);

    const int group = c.n_head / c.n_head_kv;
    const auto ref = attention_ref_gqa(q, q_pos, kk, vv, k_pos, c.n_head, c.n_head_kv, c.d_head,
                                       c.causal, [&](int h) { return h / group; });
    const auto o = cpu_backend_attention(*be, c, q, q_pos, kk, vv, k_pos, shards);
    ASSERT_TRUE(all_finite(o)) << tag;
    // Per (row, head) relative error.
    for (size_t r = 0; r < (size_t)c.nq * c.n_head; ++r) {
      const std::vector<float> orow(o.begin() + r * c.d_head, o.begin() + (r + 1) * c.d_head);
      const std::vector<double> rrow(ref.begin() + r * c.d_head, ref.begin() + (r + 1) * c.d_head);
      ASSERT_LE(rel_err(orow, rrow, 1e-3), 1e-5) << tag << " row " << r / c.n_head << " head "
                                                 << r % c.n_head;
    }
    // The test can tell kv head h / group from another mapping (h % n_head_kv).
    if (c.n_head_kv > 1 && group > 1) {
      const auto wrong = attention_ref_gqa(q, q_pos, kk, vv, k_pos, c.n_head, c.n_head_kv,
                                           c.d_head, c.causal,
                                           [&](int h) { return h % c.n_head_kv; });
      EXPECT_GT(rel_err(o, wrong), 1e-2) << tag;
    }
  }
}

}  // namespace
