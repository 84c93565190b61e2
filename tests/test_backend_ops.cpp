// Every op of every backend on random inputs, after llama.cpp's test-backend-ops: the CPU backend
// is checked against naive double-precision loops, every other backend against the CPU backend,
// by normalised mean squared error  NMSE = Σ(a − ref)² / Σ ref²  with a tolerance per op.
// The device tests run on the CUDA backend, skipped (GTEST_SKIP, reported as skipped) when no CUDA
// device is present, and on the CUDA emulator (tests/emu), which runs the same kernel source on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/device_buffer.h"
#include "cascade/model.h"
#include "emulated_backend.h"

namespace {

using cascade::Backend;
using cascade::DeviceBuffer;

// NMSE tolerances. Elementwise ops are the same fp32 formula on both sides (only the ulp of
// expf/sqrtf may differ); RoPE evaluates sin/cos of angles up to ~2000 rad, whose fp32 rounding
// is a few 1e-5 absolute; GEMM and attention reorder long fp32 sums.
constexpr double kTolElementwise = 1e-10;
constexpr double kTolRope = 1e-8;
constexpr double kTolGemm = 1e-8;
constexpr double kTolAttention = 1e-8;

std::vector<float> random_vec(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Σ(a − ref)² / Σ ref²; equal infinities (−inf of empty partials) count as exact and are left
// out of both sums; any other non-finite value gives +inf. An all-zero ref gives Σ(a − ref)².
template <class R>
double nmse(const std::vector<float>& a, const std::vector<R>& ref) {
  if (a.size() != ref.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], r = (double)ref[i];
    if (std::isinf(x) && std::isinf(r) && x == r) continue;
    if (!std::isfinite(x) || !std::isfinite(r)) return INFINITY;
    num += (x - r) * (x - r);
    den += r * r;
  }
  return den > 0.0 ? num / den : num;
}

// ---- buffers in a backend's memory ----------------------------------------------------------

// A host vector copied into a backend's memory.
template <class T>
DeviceBuffer<T> upload(Backend& be, const std::vector<T>& v) {
  DeviceBuffer<T> b;
  b.upload(be, v);
  return b;
}

// ---- the ops, run on any backend (host vectors in, host vectors out) --------------------------

std::vector<float> run_matmul_wt(Backend& be, const std::vector<float>& x,
                                 const std::vector<float>& w, const std::vector<float>& y0, int n,
                                 int in, int out, bool accumulate) {
  auto dx = upload(be, x), dw = upload(be, w), dy = upload(be, y0);
  be.matmul_wt(dx.data(), dw.data(), dy.data(), n, in, out, accumulate);
  return dy.download();
}

std::vector<float> run_rmsnorm(Backend& be, const std::vector<float>& x,
                               const std::vector<float>& w, int n, int d, float eps) {
  auto dx = upload(be, x), dw = upload(be, w);
  DeviceBuffer<float> dy(be, x.size());
  be.rmsnorm(dx.data(), dw.data(), dy.data(), n, d, eps);
  return dy.download();
}

std::vector<float> run_rope(Backend& be, const std::vector<float>& x,
                            const std::vector<int32_t>& pos, int n_heads, int d_head,
                            float theta) {
  auto dx = upload(be, x);
  auto dp = upload(be, pos);
  be.rope(dx.data(), dp.data(), (int)pos.size(), n_heads, d_head, theta);
  return dx.download();
}

// swiglu on gate/up laid out as the fused gate|up GEMM leaves them: rows of [gate, up].
// The result is in gate's order, (rows, d_ff) row-major.
std::vector<float> run_silu_mul(Backend& be, const std::vector<float>& gate,
                                const std::vector<float>& up) {
  const int rows = gate.size() % 4 == 0 && !gate.empty() ? 4 : 1;
  const int d_ff = (int)(gate.size() / rows);
  std::vector<float> gu(2 * gate.size());
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < d_ff; ++j) {
      gu[(size_t)r * 2 * d_ff + j] = gate[(size_t)r * d_ff + j];
      gu[(size_t)r * 2 * d_ff + d_ff + j] = up[(size_t)r * d_ff + j];
    }
  auto dgu = upload(be, gu);
  DeviceBuffer<float> dout(be, gate.size());
  be.swiglu(dgu.data(), dout.data(), rows, d_ff);
  return dout.download();
}

struct AttnInputs {
  int n_head, n_head_kv, d_head;
  bool causal;
  std::vector<float> q, k, v;
  std::vector<int32_t> q_pos, k_pos;
  int nq() const { return (int)q_pos.size(); }
  int nk() const { return (int)k_pos.size(); }
};

struct AttnOut {
  std::vector<float> m, e, u;
};

AttnOut run_partial_attention(Backend& be, const AttnInputs& in) {
  const size_t rows = (size_t)in.nq() * in.n_head;
  auto dq = upload(be, in.q), dk = upload(be, in.k), dv = upload(be, in.v);
  auto dqp = upload(be, in.q_pos), dkp = upload(be, in.k_pos);
  DeviceBuffer<float> dm(be, rows), de(be, rows);
  DeviceBuffer<float> du(be, rows * in.d_head);
  cascade::PartialAttnArgs a;
  a.q = dq.data();
  a.q_pos = dqp.data();
  a.nq = in.nq();
  a.k = dk.data();
  a.v = dv.data();
  a.k_pos = dkp.data();
  a.nk = in.nk();
  a.n_head = in.n_head;
  a.n_head_kv = in.n_head_kv;
  a.d_head = in.d_head;
  a.causal = in.causal;
  a.m = dm.data();
  a.e = de.data();
  a.u = du.data();
  be.partial_attention(a);
  return {dm.download(), de.download(), du.download()};
}

std::vector<float> run_merge_partials(Backend& be, const std::vector<float>& m,
                                      const std::vector<float>& e, const std::vector<float>& u,
                                      int nb, int nq, int n_head, int d_head) {
  auto dm = upload(be, m), de = upload(be, e), du = upload(be, u);
  const size_t n = (size_t)nq * n_head * d_head;
  DeviceBuffer<float> dout(be, n);
  be.merge_partials(dm.data(), de.data(), du.data(), nb, nq, n_head, d_head, dout.data());
  return dout.download();
}

// ---- naive double references ----------------------------------------------------------------

std::vector<double> naive_matmul_wt(const std::vector<float>& x, const std::vector<float>& w,
                                    const std::vector<float>& y0, int n, int in, int out,
                                    bool accumulate) {
  std::vector<double> y((size_t)n * out);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double s = accumulate ? y0[(size_t)i * out + o] : 0.0;
      for (int t = 0; t < in; ++t) s += (double)x[(size_t)i * in + t] * w[(size_t)o * in + t];
      y[(size_t)i * out + o] = s;
    }
  return y;
}

std::vector<double> naive_rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int n,
                                  int d, double eps) {
  std::vector<double> y(x.size());
  for (int i = 0; i < n; ++i) {
    double ss = 0.0;
    for (int t = 0; t < d; ++t) ss += (double)x[(size_t)i * d + t] * x[(size_t)i * d + t];
    const double scale = 1.0 / std::sqrt(ss / d + eps);
    for (int t = 0; t < d; ++t) y[(size_t)i * d + t] = x[(size_t)i * d + t] * scale * w[t];
  }
  return y;
}

std::vector<double> naive_rope(const std::vector<float>& x, const std::vector<int32_t>& pos,
                               int n_heads, int d_head, double theta) {
  std::vector<double> y(x.begin(), x.end());
  for (size_t r = 0; r < pos.size(); ++r)
    for (int h = 0; h < n_heads; ++h)
      for (int i = 0; i < d_head / 2; ++i) {
        const double a = pos[r] * std::pow(theta, -2.0 * i / d_head);
        const size_t j = (r * n_heads + h) * d_head + 2 * i;
        y[j] = x[j] * std::cos(a) - x[j + 1] * std::sin(a);
        y[j + 1] = x[j] * std::sin(a) + x[j + 1] * std::cos(a);
      }
  return y;
}

std::vector<double> naive_silu_mul(const std::vector<float>& g, const std::vector<float>& up) {
  std::vector<double> y(g.size());
  for (size_t i = 0; i < g.size(); ++i) y[i] = (double)g[i] / (1.0 + std::exp(-(double)g[i])) * up[i];
  return y;
}

// Partial (m, e, u) per (query, head) in double; kv head g = h / (n_head / n_head_kv).
struct NaiveAttn {
  std::vector<double> m, e, u;
};

NaiveAttn naive_partial_attention(const AttnInputs& in) {
  const int nq = in.nq(), nk = in.nk(), d = in.d_head, group = in.n_head / in.n_head_kv;
  NaiveAttn r;
  r.m.assign((size_t)nq * in.n_head, -INFINITY);
  r.e.assign((size_t)nq * in.n_head, 0.0);
  r.u.assign((size_t)nq * in.n_head * d, 0.0);
  for (int i = 0; i < nq; ++i)
    for (int h = 0; h < in.n_head; ++h) {
      const size_t qh = (size_t)i * in.n_head + h;
      const int g = h / group;
      std::vector<double> s(nk, -INFINITY);
      for (int j = 0; j < nk; ++j) {
        if (in.causal && in.k_pos[j] > in.q_pos[i]) continue;
        double dot = 0.0;
        for (int t = 0; t < d; ++t)
          dot += (double)in.q[qh * d + t] * in.k[((size_t)j * in.n_head_kv + g) * d + t];
        s[j] = dot / std::sqrt((double)d);
        r.m[qh] = std::max(r.m[qh], s[j]);
      }
      for (int j = 0; j < nk; ++j) {
        if (s[j] == -INFINITY) continue;
        const double w = std::exp(s[j] - r.m[qh]);
        r.e[qh] += w;
        for (int t = 0; t < d; ++t) r.u[qh * d + t] += w * in.v[((size_t)j * in.n_head_kv + g) * d + t];
      }
    }
  return r;
}

std::vector<double> naive_merge(const std::vector<float>& m, const std::vector<float>& e,
                                const std::vector<float>& u, int nb, int nq, int n_head,
                                int d_head) {
  const size_t rows = (size_t)nq * n_head;
  std::vector<double> o(rows * d_head, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    double n = -INFINITY;
    for (int b = 0; b < nb; ++b) n = std::max(n, (double)m[b * rows + r]);
    if (n == -INFINITY) continue;
    double den = 0.0;
    for (int b = 0; b < nb; ++b) {
      if (m[b * rows + r] == -INFINITY) continue;
      const double w = std::exp(m[b * rows + r] - n);
      den += w * e[b * rows + r];
      for (int t = 0; t < d_head; ++t) o[r * d_head + t] += w * u[(b * rows + r) * d_head + t];
    }
    for (int t = 0; t < d_head; ++t) o[r * d_head + t] /= den;
  }
  return o;
}

// ---- random problems ------------------------------------------------------------------------

struct MatmulShape { int n, in, out; };
const MatmulShape kMatmulShapes[] = {{1, 576, 576}, {7, 576, 192},  {33, 576, 1536},
                                     {5, 1536, 576}, {64, 64, 64}, {3, 1, 5},
                                     {2, 5, 1},      {130, 96, 200}};

struct RowShape { int n, d; };
const RowShape kRmsnormShapes[] = {{1, 576}, {17, 576}, {300, 64}, {3, 1}, {129, 2048}};

struct RopeShape { int n, n_heads, d_head; float theta; };
const RopeShape kRopeShapes[] = {{1, 9, 64, 10000.0f},
                                 {40, 3, 64, 10000.0f},
                                 {200, 9, 64, 100000.0f},
                                 {5, 32, 128, 500000.0f},
                                 {3, 1, 2, 10000.0f}};

const size_t kSiluSizes[] = {1, 1000, 100003};

struct AttnShape { int n_head, n_head_kv, d_head, nq, nk; bool causal; };
const AttnShape kAttnShapes[] = {{9, 3, 64, 7, 23, true},  // SmolLM2-135M
                                 {9, 3, 64, 40, 100, true},
                                 {9, 3, 64, 16, 50, false},
                                 {32, 8, 128, 5, 30, true},
                                 {4, 4, 16, 1, 1, true},
                                 {8, 1, 32, 3, 9, true}};

struct MergeShape { int nb, nq, n_head, d_head; };
const MergeShape kMergeShapes[] = {{1, 5, 9, 64}, {2, 7, 9, 64}, {3, 20, 9, 64},
                                   {8, 16, 32, 128}, {5, 1, 1, 4}};

std::vector<int32_t> random_positions(std::mt19937& rng, int n, int max_pos) {
  std::vector<int32_t> p(n);
  for (int32_t& x : p) x = (int32_t)(rng() % max_pos);
  if (n > 0) p[0] = 0;
  if (n > 1) p[n - 1] = max_pos - 1;
  return p;
}

std::vector<float> random_gates(std::mt19937& rng, size_t n) {
  auto g = random_vec(rng, n, -20.0f, 20.0f);
  const float extremes[] = {0.0f, -88.0f, 88.0f, -100.0f, 100.0f, -1e4f, 1e4f};
  for (size_t i = 0; i < std::min<size_t>(n, 7); ++i) g[i * (n / 7 + 1) % n] = extremes[i];
  return g;
}

AttnInputs random_attention(std::mt19937& rng, const AttnShape& s) {
  AttnInputs in{s.n_head, s.n_head_kv, s.d_head, s.causal, {}, {}, {}, {}, {}};
  in.q = random_vec(rng, (size_t)s.nq * s.n_head * s.d_head, -2.0f, 2.0f);
  in.k = random_vec(rng, (size_t)s.nk * s.n_head_kv * s.d_head, -2.0f, 2.0f);
  in.v = random_vec(rng, (size_t)s.nk * s.n_head_kv * s.d_head);
  in.k_pos.resize(s.nk);
  std::iota(in.k_pos.begin(), in.k_pos.end(), 0);
  std::shuffle(in.k_pos.begin(), in.k_pos.end(), rng);
  in.q_pos.resize(s.nq);
  for (int32_t& p : in.q_pos) p = (int32_t)(rng() % (s.nk + 2)) - 1;  // −1: no visible key
  return in;
}

// Partials (nb, nq, n_head): m in [−20, 20], e in [1, 10]; ~20% empty (−inf, 0, 0), and the
// first (query, head) row empty in every partial.
struct Partials {
  std::vector<float> m, e, u;
};

Partials random_partials(std::mt19937& rng, const MergeShape& s) {
  const size_t rows = (size_t)s.nq * s.n_head;
  Partials p;
  p.m = random_vec(rng, s.nb * rows, -20.0f, 20.0f);
  p.e = random_vec(rng, s.nb * rows, 1.0f, 10.0f);
  p.u = random_vec(rng, s.nb * rows * s.d_head, -5.0f, 5.0f);
  std::uniform_real_distribution<float> coin(0.0f, 1.0f);
  for (int b = 0; b < s.nb; ++b)
    for (size_t r = 0; r < rows; ++r)
      if (r == 0 || coin(rng) < 0.2f) {
        p.m[b * rows + r] = -INFINITY;
        p.e[b * rows + r] = 0.0f;
        std::fill_n(p.u.begin() + (b * rows + r) * s.d_head, s.d_head, 0.0f);
      }
  return p;
}

std::string shape_str(std::initializer_list<long> dims) {
  std::string s;
  for (long d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

// ---- factory ----------------------------------------------------------------------------------

TEST(BackendFactory, CpuByName) {
  auto be = cascade::make_backend("cpu");
  ASSERT_NE(be, nullptr);
  EXPECT_EQ(be->name(), "cpu");
  EXPECT_TRUE(be->host_memory());
}

TEST(BackendFactory, UnknownNameThrowsInvalidArgument) {
  EXPECT_THROW(cascade::make_backend("nope"), std::invalid_argument);
  EXPECT_THROW(cascade::make_backend(""), std::invalid_argument);
  EXPECT_THROW(cascade::make_backend("CPU"), std::invalid_argument);
}

TEST(BackendFactory, CudaWithoutDeviceThrowsRuntimeError) {
  if (cascade::cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  for (int attempt = 0; attempt < 2; ++attempt) {  // make_cuda_backend and make_backend("cuda")
    try {
      auto be = attempt == 0 ? cascade::make_cuda_backend() : cascade::make_backend("cuda");
      FAIL() << "no exception without a CUDA device";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("CUDA"), std::string::npos) << what;  // says what is missing
#ifdef CASCADE_HAVE_CUDA
      // Built with CUDA: the plugin (libcascade_cuda.so) loaded; only the device is missing.
      EXPECT_NE(what.find("no CUDA device"), std::string::npos) << what;
#endif
    }
  }
}

// The capability query says what prepare_weights accepts: fp32 everywhere; bf16 on a CPU with
// AVX512_BF16 or AMX; not on the emulated CUDA backend (its GEMM is the CPU's fp32 one), which
// refuses it by name.
TEST(BackendFactory, SupportsSaysWhichPrecisionsPrepare) {
  auto cpu = cascade::make_cpu_backend();
  EXPECT_TRUE(cpu->supports(cascade::Precision::f32));
  EXPECT_EQ(cpu->supports(cascade::Precision::bf16), cascade::cpu_has_bf16());
  auto emu = cascade_test::make_emulated_cuda_backend();
  EXPECT_TRUE(emu->supports(cascade::Precision::f32));
  EXPECT_FALSE(emu->supports(cascade::Precision::bf16));
  const cascade::Model none;
  try {
    emu->prepare_weights(none, cascade::Precision::bf16, {});
    FAIL() << "bf16 accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda-emu backend has no bf16 GEMMs"), std::string::npos) << e.what();
  }
}

TEST(BackendFactory, CudaDeviceOutOfRangeThrows) {
  EXPECT_THROW(cascade::make_cuda_backend(1000), std::runtime_error);
}

// ---- the CPU backend against naive loops ------------------------------------------------------

TEST(BackendOpsCpu, BufferRoundTrip) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(1);
  const auto x = random_vec(rng, 1001);
  auto b = upload(*be, x);
  EXPECT_EQ(b.download(), x);
}

TEST(BackendOpsCpu, MatmulWtVsNaiveTripleLoop) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(2);
  for (const MatmulShape& s : kMatmulShapes)
    for (bool acc : {false, true}) {
      const auto x = random_vec(rng, (size_t)s.n * s.in);
      const auto w = random_vec(rng, (size_t)s.out * s.in);
      const auto y0 = random_vec(rng, (size_t)s.n * s.out, -3.0f, 3.0f);
      const double err = nmse(run_matmul_wt(*be, x, w, y0, s.n, s.in, s.out, acc),
                              naive_matmul_wt(x, w, y0, s.n, s.in, s.out, acc));
      EXPECT_LE(err, kTolGemm) << shape_str({s.n, s.in, s.out}) << (acc ? " accumulate" : "");
    }
  // n = 0 leaves y alone
  const std::vector<float> x, w(8, 1.0f), y0 = {1.0f, 2.0f};
  EXPECT_EQ(run_matmul_wt(*be, x, w, y0, 0, 4, 2, false), y0);
}

TEST(BackendOpsCpu, RmsnormVsNaive) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(3);
  for (const RowShape& s : kRmsnormShapes) {
    const auto x = random_vec(rng, (size_t)s.n * s.d, -4.0f, 4.0f);
    const auto w = random_vec(rng, s.d, -2.0f, 2.0f);
    EXPECT_LE(nmse(run_rmsnorm(*be, x, w, s.n, s.d, 1e-5f), naive_rmsnorm(x, w, s.n, s.d, 1e-5)),
              kTolElementwise)
        << shape_str({s.n, s.d});
  }
}

TEST(BackendOpsCpu, RopeVsNaive) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(4);
  for (const RopeShape& s : kRopeShapes) {
    const auto x = random_vec(rng, (size_t)s.n * s.n_heads * s.d_head);
    const auto pos = random_positions(rng, s.n, 2048);
    EXPECT_LE(nmse(run_rope(*be, x, pos, s.n_heads, s.d_head, s.theta),
                   naive_rope(x, pos, s.n_heads, s.d_head, s.theta)),
              kTolRope)
        << shape_str({s.n, s.n_heads, s.d_head});
  }
}

TEST(BackendOpsCpu, SiluMulVsNaive) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(5);
  for (size_t n : kSiluSizes) {
    const auto g = random_gates(rng, n);
    const auto up = random_vec(rng, n, -3.0f, 3.0f);
    EXPECT_LE(nmse(run_silu_mul(*be, g, up), naive_silu_mul(g, up)), kTolElementwise) << n;
  }
}

TEST(BackendOpsCpu, PartialAttentionVsNaive) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(6);
  for (const AttnShape& s : kAttnShapes) {
    const AttnInputs in = random_attention(rng, s);
    const AttnOut out = run_partial_attention(*be, in);
    const NaiveAttn ref = naive_partial_attention(in);
    const std::string tag = shape_str({s.n_head, s.n_head_kv, s.d_head, s.nq, s.nk});
    EXPECT_LE(nmse(out.m, ref.m), kTolAttention) << tag;
    EXPECT_LE(nmse(out.e, ref.e), kTolAttention) << tag;
    EXPECT_LE(nmse(out.u, ref.u), kTolAttention) << tag;
  }
}

TEST(BackendOpsCpu, MergePartialsVsNaive) {
  auto be = cascade::make_cpu_backend();
  std::mt19937 rng(7);
  for (const MergeShape& s : kMergeShapes) {
    const Partials p = random_partials(rng, s);
    const auto o = run_merge_partials(*be, p.m, p.e, p.u, s.nb, s.nq, s.n_head, s.d_head);
    EXPECT_LE(nmse(o, naive_merge(p.m, p.e, p.u, s.nb, s.nq, s.n_head, s.d_head)),
              kTolAttention)
        << shape_str({s.nb, s.nq, s.n_head, s.d_head});
    for (int t = 0; t < s.d_head; ++t) EXPECT_EQ(o[t], 0.0f);  // row 0: all partials empty
  }
}

// ---- the device backends against the CPU backend ---------------------------------------------
// Every test below runs on the CUDA backend (skipped, with the reason, without a device) and on
// "cuda-emu": the very kernels/cuda/*.cu source on the CUDA emulator (tests/emu). On the
// emulator each device run happens twice, the threads of a block run in ascending and then in
// descending order between barriers, and the two results must agree bit for bit: a race (a
// missing __syncthreads, say) shows as a difference or as the emulator's NaN poison.

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_bits(const AttnOut& a, const AttnOut& b) {
  return same_bits(a.m, b.m) && same_bits(a.e, b.e) && same_bits(a.u, b.u);
}

class BackendOpsDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda") {
      if (!cascade::cuda_available()) GTEST_SKIP() << "no CUDA device (the cuda_emu variant runs the same kernels)";
      be_ = cascade::make_cuda_backend();
    } else {
      be_ = cascade_test::make_emulated_cuda_backend();
    }
    cpu_ = cascade::make_cpu_backend();
  }
  void TearDown() override { cascade_test::set_emulator_descending(false); }
  bool emulated() const { return GetParam() == "cuda-emu"; }

  // f(device backend); on the emulator in both thread orders, which must agree bit for bit, and
  // at least one kernel must have run.
  template <class F>
  auto dev(F f) {
    if (!emulated()) return f(*be_);
    const long launches = cascade_test::emulator_launches();
    cascade_test::set_emulator_descending(false);
    auto a = f(*be_);
    EXPECT_GT(cascade_test::emulator_launches(), launches) << "no kernel ran on the emulator";
    cascade_test::set_emulator_descending(true);
    auto b = f(*be_);
    cascade_test::set_emulator_descending(false);
    EXPECT_TRUE(same_bits(a, b)) << "ascending and descending thread orders disagree: a race";
    return a;
  }

  std::unique_ptr<Backend> be_, cpu_;
};

INSTANTIATE_TEST_SUITE_P(Backends, BackendOpsDevice, ::testing::Values("cuda", "cuda-emu"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param == "cuda" ? std::string("cuda") : std::string("cuda_emu");
                         });

TEST_P(BackendOpsDevice, NameMemoryAndRoundTrip) {
  EXPECT_EQ(be_->name().rfind("cuda", 0), 0u) << be_->name();
  EXPECT_FALSE(be_->host_memory());
  if (!emulated()) {
    EXPECT_EQ(cascade::make_backend("cuda")->name().rfind("cuda", 0), 0u);
  }
  std::mt19937 rng(11);
  const auto x = random_vec(rng, 100003);
  auto b = upload(*be_, x);
  EXPECT_EQ(b.download(), x);
}

TEST_P(BackendOpsDevice, MatmulWt) {
  if (emulated()) GTEST_SKIP() << "cuBLAS's job: the emulated backend borrows the CPU GEMM, nothing to compare";
  std::mt19937 rng(12);
  for (const MatmulShape& s : kMatmulShapes)
    for (bool acc : {false, true}) {
      const auto x = random_vec(rng, (size_t)s.n * s.in);
      const auto w = random_vec(rng, (size_t)s.out * s.in);
      const auto y0 = random_vec(rng, (size_t)s.n * s.out, -3.0f, 3.0f);
      const double err = nmse(run_matmul_wt(*be_, x, w, y0, s.n, s.in, s.out, acc),
                              run_matmul_wt(*cpu_, x, w, y0, s.n, s.in, s.out, acc));
      EXPECT_LE(err, kTolGemm) << shape_str({s.n, s.in, s.out}) << (acc ? " accumulate" : "");
    }
  const std::vector<float> x, w(8, 1.0f), y0 = {1.0f, 2.0f};
  EXPECT_EQ(run_matmul_wt(*be_, x, w, y0, 0, 4, 2, false), y0);
}

TEST_P(BackendOpsDevice, Rmsnorm) {
  std::mt19937 rng(13);
  for (const RowShape& s : kRmsnormShapes) {
    const auto x = random_vec(rng, (size_t)s.n * s.d, -4.0f, 4.0f);
    const auto w = random_vec(rng, s.d, -2.0f, 2.0f);
    const auto got = dev([&](Backend& be) { return run_rmsnorm(be, x, w, s.n, s.d, 1e-5f); });
    EXPECT_LE(nmse(got, run_rmsnorm(*cpu_, x, w, s.n, s.d, 1e-5f)), kTolElementwise)
        << shape_str({s.n, s.d});
  }
}

std::vector<float> run_layernorm(Backend& be, const std::vector<float>& x,
                                 const std::vector<float>& w, const std::vector<float>& b, int n,
                                 int d, float eps) {
  auto dx = upload(be, x), dw = upload(be, w), db = upload(be, b);
  be.layernorm(dx.data(), dw.data(), db.data(), dx.data(), n, d, eps);  // in place
  return dx.download();
}

TEST_P(BackendOpsDevice, Layernorm) {
  std::mt19937 rng(19);
  for (const RowShape& s : kRmsnormShapes) {
    auto x = random_vec(rng, (size_t)s.n * s.d, -4.0f, 4.0f);
    for (float& v : x) v += 30.0f;  // a large mean: the two-pass variance must not cancel
    const auto w = random_vec(rng, s.d, -2.0f, 2.0f), b = random_vec(rng, s.d);
    const auto got = dev([&](Backend& be) { return run_layernorm(be, x, w, b, s.n, s.d, 1e-5f); });
    EXPECT_LE(nmse(got, run_layernorm(*cpu_, x, w, b, s.n, s.d, 1e-5f)), kTolElementwise)
        << shape_str({s.n, s.d});
  }
}

TEST_P(BackendOpsDevice, AddBiasAndGelu) {
  std::mt19937 rng(20);
  for (const RowShape& s : kRmsnormShapes)
    for (bool tanh_approx : {false, true}) {
      const auto y = random_vec(rng, (size_t)s.n * s.d, -6.0f, 6.0f), b = random_vec(rng, s.d);
      auto run = [&](Backend& be) {
        auto dy = upload(be, y), db = upload(be, b);
        be.add_bias(dy.data(), db.data(), s.n, s.d);
        be.gelu(dy.data(), y.size(), tanh_approx);
        return dy.download();
      };
      EXPECT_LE(nmse(dev(run), run(*cpu_)), kTolElementwise)
          << shape_str({s.n, s.d}) << (tanh_approx ? " tanh" : " erf");
    }
}

TEST_P(BackendOpsDevice, GatherRows) {
  std::mt19937 rng(21);
  const int vocab = 1000, d = 96;
  const auto table = random_vec(rng, (size_t)vocab * d);
  for (int n : {1, 7, 300}) {
    std::vector<int32_t> ids(n);
    for (int32_t& id : ids) id = (int32_t)(rng() % vocab);
    ids[0] = vocab - 1;
    auto run = [&](Backend& be) {
      auto dt = upload(be, table);
      auto di = upload(be, ids);
      DeviceBuffer<float> out(be, (size_t)n * d);
      be.gather_rows(dt.data(), di.data(), n, d, out.data());
      return out.download();
    };
    EXPECT_EQ(dev(run), run(*cpu_)) << n;  // a copy: exact
  }
}

TEST_P(BackendOpsDevice, Rope) {
  std::mt19937 rng(14);
  for (const RopeShape& s : kRopeShapes) {
    const auto x = random_vec(rng, (size_t)s.n * s.n_heads * s.d_head);
    const auto pos = random_positions(rng, s.n, 2048);
    const auto got = dev([&](Backend& be) { return run_rope(be, x, pos, s.n_heads, s.d_head, s.theta); });
    EXPECT_LE(nmse(got, run_rope(*cpu_, x, pos, s.n_heads, s.d_head, s.theta)), kTolRope)
        << shape_str({s.n, s.n_heads, s.d_head});
  }
}

TEST_P(BackendOpsDevice, SiluMul) {
  std::mt19937 rng(15);
  for (size_t n : kSiluSizes) {
    const auto g = random_gates(rng, n);
    const auto up = random_vec(rng, n, -3.0f, 3.0f);
    const auto got = dev([&](Backend& be) { return run_silu_mul(be, g, up); });
    EXPECT_LE(nmse(got, run_silu_mul(*cpu_, g, up)), kTolElementwise) << n;
  }
}

// The tiled kernel's edges: head dims 16 to 256 (256 needs more than 48 KiB of shared memory),
// dims that are not a multiple of 32, key counts below, at and across the 32-key tile, query
// counts across the 16-query tile, GQA and MQA, no keys at all.
const AttnShape kTiledAttnShapes[] = {{4, 2, 80, 19, 45, false}, {2, 1, 256, 17, 40, true},
                                      {4, 4, 128, 33, 31, true}, {4, 4, 128, 16, 32, true},
                                      {3, 3, 64, 2, 33, false},  {9, 3, 64, 33, 0, true},
                                      {2, 1, 64, 1, 97, true}};

TEST_P(BackendOpsDevice, PartialAttention) {
  std::mt19937 rng(16);
  std::vector<AttnShape> shapes(std::begin(kAttnShapes), std::end(kAttnShapes));
  shapes.insert(shapes.end(), std::begin(kTiledAttnShapes), std::end(kTiledAttnShapes));
  for (const AttnShape& s : shapes) {
    const AttnInputs in = random_attention(rng, s);
    const AttnOut got = dev([&](Backend& be) { return run_partial_attention(be, in); });
    const AttnOut want = run_partial_attention(*cpu_, in);
    const std::string tag = shape_str({s.n_head, s.n_head_kv, s.d_head, s.nq, s.nk});
    EXPECT_LE(nmse(got.m, want.m), kTolAttention) << tag;
    EXPECT_LE(nmse(got.e, want.e), kTolAttention) << tag;
    EXPECT_LE(nmse(got.u, want.u), kTolAttention) << tag;
  }
}

// A query that sees no key (causal, every key after it; or no keys) is the empty partial
// (−inf, 0, 0) exactly, never NaN; one that sees one key has m = its score, e = 1, u = its value.
TEST_P(BackendOpsDevice, PartialAttentionEmptyAndSingleKey) {
  std::mt19937 rng(22);
  AttnInputs in = random_attention(rng, {4, 2, 64, 20, 40, true});
  std::iota(in.k_pos.begin(), in.k_pos.end(), 10);  // keys at 10 … 49
  for (int i = 0; i < in.nq(); ++i) in.q_pos[i] = i % 2 ? 10 : 9;  // one key visible, or none
  const AttnOut got = dev([&](Backend& be) { return run_partial_attention(be, in); });
  for (int i = 0; i < in.nq(); ++i)
    for (int h = 0; h < in.n_head; ++h) {
      const size_t r = (size_t)i * in.n_head + h;
      const float* u = got.u.data() + r * in.d_head;
      const float* v0 = in.v.data() + (size_t)(h / 2) * in.d_head;  // key 0's value, kv head h/2
      if (i % 2 == 0) {
        EXPECT_EQ(got.m[r], -INFINITY) << i;
        EXPECT_EQ(got.e[r], 0.0f) << i;
        for (int t = 0; t < in.d_head; ++t) ASSERT_EQ(u[t], 0.0f) << i << "," << t;
      } else {
        EXPECT_TRUE(std::isfinite(got.m[r])) << i;
        EXPECT_EQ(got.e[r], 1.0f) << i;
        for (int t = 0; t < in.d_head; ++t) ASSERT_EQ(u[t], v0[t]) << i << "," << t;
      }
    }
}

// A NaN score (garbage in: a NaN key) must keep the warp's branches uniform: NaN out in every row
// that sees the key, no lane leaving a shuffle its neighbours wait in (on a GPU: a hang or
// garbage; on the emulator: an error). A max reduction by `w > v ? w : v` let the lanes of a warp
// disagree about a NaN: with the NaN key the only one a query sees, its lane kept NaN while the
// others kept −inf and skipped the tile.
TEST_P(BackendOpsDevice, PartialAttentionNaNKeyGivesNaNRowsWithoutDivergence) {
  std::mt19937 rng(24);
  AttnInputs in = random_attention(rng, {2, 1, 32, 5, 40, true});
  std::iota(in.k_pos.begin(), in.k_pos.end(), 0);
  in.q_pos = {0, 0, 3, 31, 39};  // queries at 0 see key 0 alone
  for (int t = 0; t < in.d_head; ++t) in.k[t] = NAN;  // key 0, the one kv head
  AttnOut got;
  ASSERT_NO_THROW(got = dev([&](Backend& be) { return run_partial_attention(be, in); }));
  for (size_t r = 0; r < got.e.size(); ++r) EXPECT_TRUE(std::isnan(got.e[r])) << r;
}

TEST_P(BackendOpsDevice, PartialAttentionRefusesHeadDimOver256) {
  std::mt19937 rng(23);
  const AttnInputs in = random_attention(rng, {1, 1, 288, 2, 3, true});
  EXPECT_THROW(run_partial_attention(*be_, in), std::invalid_argument);
}

TEST_P(BackendOpsDevice, MergePartials) {
  std::mt19937 rng(17);
  for (const MergeShape& s : kMergeShapes) {
    const Partials p = random_partials(rng, s);
    const auto o = dev([&](Backend& be) {
      return run_merge_partials(be, p.m, p.e, p.u, s.nb, s.nq, s.n_head, s.d_head);
    });
    EXPECT_LE(nmse(o, run_merge_partials(*cpu_, p.m, p.e, p.u, s.nb, s.nq, s.n_head, s.d_head)),
              kTolAttention)
        << shape_str({s.nb, s.nq, s.n_head, s.d_head});
    for (int t = 0; t < s.d_head; ++t) EXPECT_EQ(o[t], 0.0f);  // row 0: all partials empty
  }
}

// Partial attention on β key shards on the device, merged on the device, equals the CPU backend
// doing the same (the whole attention pass of one AttnNode row and the CompNode's merge).
TEST_P(BackendOpsDevice, ShardedAttentionThenMerge) {
  std::mt19937 rng(18);
  const AttnShape s{9, 3, 64, 24, 60, true};
  const AttnInputs in = random_attention(rng, s);
  const int beta = 4, kv_row = s.n_head_kv * s.d_head;
  std::vector<float> m[2], e[2], u[2];
  Backend* backends[2] = {be_.get(), cpu_.get()};
  for (int which = 0; which < 2; ++which)
    for (int b = 0; b < beta; ++b) {
      AttnInputs shard{s.n_head, s.n_head_kv, s.d_head, s.causal, in.q, {}, {}, in.q_pos, {}};
      for (int j = b; j < s.nk; j += beta) {
        shard.k.insert(shard.k.end(), in.k.begin() + j * kv_row, in.k.begin() + (j + 1) * kv_row);
        shard.v.insert(shard.v.end(), in.v.begin() + j * kv_row, in.v.begin() + (j + 1) * kv_row);
        shard.k_pos.push_back(in.k_pos[j]);
      }
      const AttnOut out = run_partial_attention(*backends[which], shard);
      m[which].insert(m[which].end(), out.m.begin(), out.m.end());
      e[which].insert(e[which].end(), out.e.begin(), out.e.end());
      u[which].insert(u[which].end(), out.u.begin(), out.u.end());
    }
  const auto o_dev = run_merge_partials(*be_, m[0], e[0], u[0], beta, s.nq, s.n_head, s.d_head);
  const auto o_cpu = run_merge_partials(*cpu_, m[1], e[1], u[1], beta, s.nq, s.n_head, s.d_head);
  EXPECT_LE(nmse(o_dev, o_cpu), kTolAttention);
}

}  // namespace
