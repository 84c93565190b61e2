// Per-row math of kernels/*.h (shared by the CPU backend and the CUDA launchers), each checked
// against a naive double-precision formula: rmsnorm_row, rope_row, silu_mul, argmax_row,
// softmax_row, exp_fast. Attention and the merge of partials are in test_attention_merge.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/activation.h"
#include "kernels/exp.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"

namespace {

namespace k = cascade::kernels;

std::vector<float> random_vec(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// ---- exp_fast -----------------------------------------------------------------------------

// Relative error of exp_fast(x) against e^x in double.
double exp_rel_err(float x) {
  const double ref = std::exp((double)x);
  return std::fabs((double)k::exp_fast(x) - ref) / ref;
}

TEST(KernelExp, AccurateOverItsRange) {
  // 2 ulp of fp32 is 2.4e-7 relative.
  double worst = 0.0;
  for (float x = -87.3f; x <= 88.7f; x += 0.0137f) worst = std::max(worst, exp_rel_err(x));
  EXPECT_LT(worst, 2.5e-7);
  for (float x : {0.0f, 1.0f, -1.0f, 1e-8f, -1e-8f, 0.5f, 20.0f, -20.0f})
    EXPECT_LT(exp_rel_err(x), 2.5e-7) << x;
}

TEST(KernelExp, TopOfTheRange) {
  // x in (88.38, 88.7]: x / ln2 rounds to k = 128, the exponent field that means +inf.
  for (float x : {88.0f, 88.37f, 88.38f, 88.3763f, 88.39f, 88.5f, 88.6f, 88.7f}) {
    const float y = k::exp_fast(x);
    EXPECT_TRUE(std::isfinite(y)) << x;
    EXPECT_LT(exp_rel_err(x), 2.5e-7) << x;
  }
  // Above the range: clamped to e^88.7, finite.
  const float top = k::exp_fast(88.7f);
  for (float x : {88.71f, 88.73f, 89.0f, 100.0f, 1e30f, std::numeric_limits<float>::infinity()})
    EXPECT_EQ(k::exp_fast(x), top) << x;
  EXPECT_TRUE(std::isfinite(top));
}

TEST(KernelExp, BottomOfTheRange) {
  for (float x : {-87.0f, -87.2f, -87.3f}) {
    EXPECT_GT(k::exp_fast(x), 0.0f) << x;
    EXPECT_LT(exp_rel_err(x), 2.5e-7) << x;
  }
  const float bottom = k::exp_fast(-87.3f);
  EXPECT_GE(bottom, std::numeric_limits<float>::min());  // normal, not subnormal
  for (float x : {-87.31f, -88.0f, -100.0f, -1e30f, -std::numeric_limits<float>::infinity()})
    EXPECT_EQ(k::exp_fast(x), bottom) << x;
}

// ---- rmsnorm_row --------------------------------------------------------------------------

// y(d) = x / sqrt(mean(x²) + eps) · w, in double.
std::vector<double> rmsnorm_ref(const std::vector<float>& x, const std::vector<float>& w,
                                double eps) {
  double ss = 0.0;
  for (float v : x) ss += (double)v * v;
  const double scale = 1.0 / std::sqrt(ss / (double)x.size() + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
  return y;
}

TEST(KernelRmsnorm, MatchesDoubleFormula) {
  std::mt19937 rng(1);
  for (int d : {1, 2, 7, 64, 576, 2048}) {
    for (float amp : {1e-3f, 1.0f, 100.0f}) {
      const auto x = random_vec(rng, d, -amp, amp);
      const auto w = random_vec(rng, d, -2.0f, 2.0f);
      const auto ref = rmsnorm_ref(x, w, 1e-5);
      std::vector<float> y(d);
      k::rmsnorm_row(x.data(), w.data(), y.data(), d, 1e-5f);
      for (int i = 0; i < d; ++i)
        ASSERT_NEAR(y[i], ref[i], 1e-5 * (std::fabs(ref[i]) + 1e-3))
            << "d=" << d << " amp=" << amp << " i=" << i;
    }
  }
}

TEST(KernelRmsnorm, InPlaceEqualsOutOfPlace) {
  std::mt19937 rng(2);
  const int d = 576;
  const auto x = random_vec(rng, d);
  const auto w = random_vec(rng, d);
  std::vector<float> y(d), z = x;
  k::rmsnorm_row(x.data(), w.data(), y.data(), d, 1e-6f);
  k::rmsnorm_row(z.data(), w.data(), z.data(), d, 1e-6f);  // y aliases x
  for (int i = 0; i < d; ++i) EXPECT_EQ(y[i], z[i]) << i;
}

TEST(KernelRmsnorm, ZeroRowIsZeroAndFinite) {
  const int d = 64;
  std::vector<float> x(d, 0.0f), w(d, 1.0f), y(d, 42.0f);
  k::rmsnorm_row(x.data(), w.data(), y.data(), d, 1e-5f);
  for (int i = 0; i < d; ++i) EXPECT_EQ(y[i], 0.0f);
}

TEST(KernelRmsnorm, UnitWeightGivesUnitRms) {
  std::mt19937 rng(3);
  const int d = 256;
  const auto x = random_vec(rng, d, -5.0f, 5.0f);
  std::vector<float> w(d, 1.0f), y(d);
  k::rmsnorm_row(x.data(), w.data(), y.data(), d, 0.0f);
  double ss = 0.0;
  for (float v : y) ss += (double)v * v;
  EXPECT_NEAR(std::sqrt(ss / d), 1.0, 1e-5);
}

// ---- rope_row -----------------------------------------------------------------------------

// Interleaved pairs: dims (2i, 2i+1) of every head rotate by pos·θ^(−2i/d_head), in double.
std::vector<double> rope_ref(const std::vector<float>& x, int n_heads, int d_head, int pos,
                             double theta) {
  std::vector<double> y(x.begin(), x.end());
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < d_head / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / d_head);
      const double x0 = x[h * d_head + 2 * i], x1 = x[h * d_head + 2 * i + 1];
      y[h * d_head + 2 * i] = x0 * std::cos(angle) - x1 * std::sin(angle);
      y[h * d_head + 2 * i + 1] = x0 * std::sin(angle) + x1 * std::cos(angle);
    }
  return y;
}

// fp32 evaluates the angle pos·freq with a relative error of a few ulp, so the absolute error of
// a rotated pair grows with the angle: tolerance = |pair| · (1e-6 + 4·2⁻²⁴·pos).
double rope_tol(int pos, double pair_norm) { return pair_norm * (1e-6 + 4.0 * 5.96e-8 * pos); }

TEST(KernelRope, MatchesDoubleFormula) {
  std::mt19937 rng(4);
  struct Shape { int n_heads, d_head; float theta; };
  for (Shape s : {Shape{1, 2, 10000.0f}, Shape{9, 64, 10000.0f}, Shape{3, 64, 100000.0f},
                  Shape{4, 128, 500000.0f}, Shape{2, 8, 10000.0f}}) {
    for (int pos : {0, 1, 2, 7, 31, 100, 1000, 4095, 8191}) {
      const auto x = random_vec(rng, (size_t)s.n_heads * s.d_head);
      const auto ref = rope_ref(x, s.n_heads, s.d_head, pos, s.theta);
      auto y = x;
      k::rope_row(y.data(), s.n_heads, s.d_head, pos, s.theta);
      for (int j = 0; j < s.n_heads * s.d_head; j += 2) {
        const double norm = std::hypot((double)x[j], (double)x[j + 1]);
        ASSERT_NEAR(y[j], ref[j], rope_tol(pos, norm))
            << "heads=" << s.n_heads << " d_head=" << s.d_head << " pos=" << pos << " j=" << j;
        ASSERT_NEAR(y[j + 1], ref[j + 1], rope_tol(pos, norm))
            << "heads=" << s.n_heads << " d_head=" << s.d_head << " pos=" << pos << " j=" << j + 1;
      }
    }
  }
}

TEST(KernelRope, PositionZeroIsIdentity) {
  std::mt19937 rng(5);
  const auto x = random_vec(rng, 9 * 64);
  auto y = x;
  k::rope_row(y.data(), 9, 64, 0, 10000.0f);
  for (size_t j = 0; j < x.size(); ++j) EXPECT_EQ(y[j], x[j]) << j;
}

TEST(KernelRope, PreservesPairNorms) {
  std::mt19937 rng(6);
  for (int pos : {1, 17, 500, 4000}) {
    const auto x = random_vec(rng, 3 * 64, -3.0f, 3.0f);
    auto y = x;
    k::rope_row(y.data(), 3, 64, pos, 10000.0f);
    for (size_t j = 0; j < x.size(); j += 2) {
      const double before = std::hypot((double)x[j], (double)x[j + 1]);
      const double after = std::hypot((double)y[j], (double)y[j + 1]);
      EXPECT_NEAR(after, before, 1e-6 * before + 1e-7) << "pos=" << pos << " pair=" << j / 2;
    }
  }
}

// The pairs are interleaved (2i, 2i+1), not split halves (i, i + d/2): pair 0 rotates by
// exactly `pos` radians (θ⁰ = 1) and every head gets the same rotation.
TEST(KernelRope, InterleavedPairsAndSameAngleForEveryHead) {
  const int n_heads = 3, d_head = 8, pos = 1;
  std::vector<float> x(n_heads * d_head, 0.0f);
  for (int h = 0; h < n_heads; ++h) x[h * d_head + 0] = 1.0f;  // unit vector on dim 0 of each head
  k::rope_row(x.data(), n_heads, d_head, pos, 10000.0f);
  for (int h = 0; h < n_heads; ++h) {
    EXPECT_NEAR(x[h * d_head + 0], std::cos(1.0), 1e-6) << h;
    EXPECT_NEAR(x[h * d_head + 1], std::sin(1.0), 1e-6) << h;  // rotated into its pair partner
    for (int j = 2; j < d_head; ++j) EXPECT_EQ(x[h * d_head + j], 0.0f) << h << " " << j;
  }
}

// Rotations compose: rope at p then at q equals rope at p + q (small positions, fp32 rounding).
TEST(KernelRope, RotationsCompose) {
  std::mt19937 rng(7);
  const auto x = random_vec(rng, 2 * 64);
  for (auto [p, q] : {std::pair{3, 5}, std::pair{10, 0}, std::pair{40, 60}}) {
    auto a = x, b = x;
    k::rope_row(a.data(), 2, 64, p, 10000.0f);
    k::rope_row(a.data(), 2, 64, q, 10000.0f);
    k::rope_row(b.data(), 2, 64, p + q, 10000.0f);
    for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(a[j], b[j], 1e-4) << p << "+" << q << " " << j;
  }
}

// ---- silu_mul -----------------------------------------------------------------------------

TEST(KernelSiluMul, MatchesFormula) {
  std::mt19937 rng(8);
  std::vector<float> gates = random_vec(rng, 1000, -10.0f, 10.0f);
  for (float g : {0.0f, -0.0f, 1e-3f, -1e-3f, 1.0f, -1.0f, 20.0f, -20.0f, 50.0f, -50.0f, 87.0f,
                  -87.0f, 88.0f, -88.0f, 89.0f, -89.0f, 100.0f, -100.0f, 1e4f, -1e4f, 1e30f,
                  -1e30f, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()})
    gates.push_back(g);
  for (float up : {1.0f, -2.5f, 0.0f, 1e-3f}) {
    for (float g : gates) {
      const double ref = (double)g / (1.0 + std::exp(-(double)g)) * up;
      const float y = k::silu_mul(g, up);
      if (std::fabs(ref) > std::numeric_limits<float>::max()) continue;  // overflows fp32 anyway
      ASSERT_TRUE(std::isfinite(y)) << "gate=" << g << " up=" << up;
      EXPECT_NEAR(y, ref, 1e-6 * std::fabs(ref) + 1e-30) << "gate=" << g << " up=" << up;
    }
  }
}

TEST(KernelSiluMul, Limits) {
  EXPECT_EQ(k::silu_mul(0.0f, 3.0f), 0.0f);
  EXPECT_FLOAT_EQ(k::silu_mul(1000.0f, 2.0f), 2000.0f);   // silu(g) → g for large g
  EXPECT_EQ(k::silu_mul(-1000.0f, 2.0f), 0.0f);          // silu(g) → 0 for very negative g
  EXPECT_NEAR(k::silu_mul(1.0f, 1.0f), 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
}

// ---- argmax_row ---------------------------------------------------------------------------

TEST(KernelArgmax, FirstOnTies) {
  const float ninf = -std::numeric_limits<float>::infinity();
  struct Case { std::vector<float> x; int want; };
  for (const Case& c : {Case{{5.0f}, 0}, Case{{1, 3, 3, 2}, 1}, Case{{2, 2, 2, 2}, 0},
                        Case{{-5, -1, -3, -1}, 1}, Case{{ninf, ninf, -1e30f}, 2},
                        Case{{ninf, ninf}, 0}, Case{{0, 1e-30f, 1e-30f, 0}, 1},
                        Case{{-0.0f, 0.0f}, 0}, Case{{1, 2, 3, 4, 4}, 3}})
    EXPECT_EQ(k::argmax_row(c.x.data(), (int)c.x.size()), c.want);
}

TEST(KernelArgmax, RandomMatchesNaive) {
  std::mt19937 rng(9);
  for (int t = 0; t < 50; ++t) {
    auto x = random_vec(rng, 49152, -20.0f, 20.0f);
    for (float& v : x) v = std::round(v);  // many ties
    int want = 0;
    for (int i = 1; i < (int)x.size(); ++i)
      if (x[i] > x[want]) want = i;
    EXPECT_EQ(k::argmax_row(x.data(), (int)x.size()), want);
  }
}

// ---- softmax_row --------------------------------------------------------------------------

std::vector<double> softmax_ref(const std::vector<float>& x, double temperature) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float v : x) mx = std::max(mx, (double)v);
  std::vector<double> y(x.size());
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) sum += y[i] = std::exp((x[i] - mx) / temperature);
  for (double& v : y) v /= sum;
  return y;
}

TEST(KernelSoftmax, MatchesDoubleAndSumsToOne) {
  std::mt19937 rng(10);
  for (int n : {1, 2, 10, 1000, 49152}) {
    for (float temp : {1.0f, 0.5f, 0.7f, 2.0f, 10.0f}) {
      const auto x = random_vec(rng, n, -15.0f, 15.0f);
      const auto ref = softmax_ref(x, temp);
      std::vector<float> y(n);
      k::softmax_row(x.data(), y.data(), n, temp);
      // The kernel sums n exponentials sequentially in fp32: the relative error of that sum
      // (hence of every probability) grows with n, ~2e-5 at a 49152-token vocabulary.
      const double tol = 1e-6 + 2e-9 * n;
      double sum = 0.0;
      for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(y[i]));
        ASSERT_NEAR(y[i], ref[i], tol * ref[i] + 1e-12) << "n=" << n << " T=" << temp << " i=" << i;
        sum += y[i];
      }
      EXPECT_NEAR(sum, 1.0, tol) << "n=" << n << " T=" << temp;
    }
  }
}

TEST(KernelSoftmax, StableForHugeLogits) {
  const float ninf = -std::numeric_limits<float>::infinity();
  {
    std::vector<float> x = {1e30f, -1e30f, 0.0f, 1e30f}, y(4);
    k::softmax_row(x.data(), y.data(), 4, 1.0f);
    EXPECT_FLOAT_EQ(y[0], 0.5f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 0.0f);
    EXPECT_FLOAT_EQ(y[3], 0.5f);
  }
  {
    std::vector<float> x = {-1e30f, -1e30f, -1e30f, -1e30f}, y(4);
    k::softmax_row(x.data(), y.data(), 4, 1.0f);
    for (float v : y) EXPECT_FLOAT_EQ(v, 0.25f);
  }
  {  // masked logits (−inf) get probability 0
    std::vector<float> x = {ninf, 3.0f, ninf, 3.0f, -1e30f}, y(5);
    k::softmax_row(x.data(), y.data(), 5, 0.8f);
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_FLOAT_EQ(y[1], 0.5f);
    EXPECT_EQ(y[2], 0.0f);
    EXPECT_FLOAT_EQ(y[3], 0.5f);
    EXPECT_EQ(y[4], 0.0f);
  }
  for (float temp : {0.01f, 1.0f, 100.0f}) {  // huge spread, any temperature: finite, sums to 1
    std::vector<float> x = {1e30f, 1e20f, -1e30f, 3e29f, 1e30f * 0.999f}, y(5);
    k::softmax_row(x.data(), y.data(), 5, temp);
    double sum = 0.0;
    for (float v : y) {
      ASSERT_TRUE(std::isfinite(v)) << temp;
      sum += v;
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << temp;
    EXPECT_EQ(k::argmax_row(y.data(), 5), 0) << temp;
  }
}

TEST(KernelSoftmax, TemperatureSharpensAndFlattens) {
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 0.5f};
  std::vector<float> cold(4), warm(4), hot(4);
  k::softmax_row(x.data(), cold.data(), 4, 0.1f);
  k::softmax_row(x.data(), warm.data(), 4, 1.0f);
  k::softmax_row(x.data(), hot.data(), 4, 100.0f);
  EXPECT_GT(cold[2], warm[2]);
  EXPECT_GT(warm[2], hot[2]);
  EXPECT_GT(cold[2], 0.9999f);                       // T → 0: one-hot on the argmax
  for (float v : hot) EXPECT_NEAR(v, 0.25f, 0.01f);  // T → ∞: uniform
  // softmax(x / T) computed by hand
  std::vector<float> scaled = {10.0f, 20.0f, 30.0f, 5.0f}, ref(4);
  k::softmax_row(scaled.data(), ref.data(), 4, 1.0f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(cold[i], ref[i], 1e-7);
}

TEST(KernelSoftmax, InPlace) {
  std::mt19937 rng(11);
  const auto x = random_vec(rng, 300, -5.0f, 5.0f);
  std::vector<float> y(300), z = x;
  k::softmax_row(x.data(), y.data(), 300, 0.7f);
  k::softmax_row(z.data(), z.data(), 300, 0.7f);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(y[i], z[i]) << i;
}

}  // namespace
