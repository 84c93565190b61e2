// The packed GEMM path (packed_gemm.h, gemm_weights.h):
//   * bf16 rounding (kernels/bf16.h) on hand-worked values and against oneDNN's own f32→bf16
//     reorder (an independent implementation);
//   * PackedGemm fp32 against a naive double-precision loop, at every row count from 1 up,
//     odd shapes, with and without accumulation; bf16 against the same loop on bf16-rounded
//     inputs (what the hardware multiplies), and measurably apart from the unrounded product
//     (so a path that silently stayed fp32 fails);
//   * a model's packed weights: built once into a cache file beside the fp32 one, mapped the
//     second time, byte-identical to PackedGemm::pack; a damaged file is rebuilt; private
//     memory when the model's weights are;
//   * the reference forward pass on packed fp32 weights against the OpenBLAS path.
// The bf16 tests are skipped on a CPU without AVX512_BF16 or AMX.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <dnnl.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/exactness.h"
#include "cascade/gemm_weights.h"
#include "cascade/model.h"
#include "cascade/packed_gemm.h"
#include "cascade/reference.h"
#include "kernels/bf16.h"
#include "test_util.h"

namespace cascade {
namespace {

namespace fs = std::filesystem;
using kernels::bf16_to_f32;
using kernels::f32_to_bf16;
using cascade_test::TempDir;

#define REQUIRE_BF16() \
  if (!cpu_has_bf16()) GTEST_SKIP() << "no AVX512_BF16/AMX on this CPU (oneDNN: " << packed_gemm_isa() << ")"

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// y(n, out) = x(n, in) · w(out, in)ᵀ (+ y0) in double, rounding x and w to bf16 first if asked.
std::vector<float> naive(const std::vector<float>& x, const std::vector<float>& w,
                         const std::vector<float>& y0, int n, int in, int out, bool acc,
                         bool bf16_inputs) {
  auto r = [&](float v) { return bf16_inputs ? bf16_to_f32(f32_to_bf16(v)) : v; };
  std::vector<float> y(y0.size());
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double s = acc ? y0[(size_t)i * out + o] : 0.0;
      for (int k = 0; k < in; ++k) s += (double)r(x[(size_t)i * in + k]) * r(w[(size_t)o * in + k]);
      y[(size_t)i * out + o] = (float)s;
    }
  return y;
}

std::vector<float> packed_matmul(PackedGemm& g, const std::vector<float>& x,
                                 const std::vector<float>& w, std::vector<float> y, int n, int in,
                                 int out, bool acc) {
  std::vector<uint8_t> packed(g.packed_bytes(in, out));
  g.pack(w.data(), in, out, packed.data());
  g.matmul(packed.data(), x.data(), y.data(), n, in, out, acc);
  return y;
}

TEST(Bf16, RoundsToNearestEvenOnWorkedValues) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // halfway, even below: down
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // halfway, odd below: up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // above halfway: up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);  // below halfway: down
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));  // not inf
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
}

TEST(Bf16, AgreesWithOneDnnReorder) {
  std::mt19937 rng(11);
  std::vector<float> x = random_vec(rng, 100000, 1e3f);
  for (int e = -30; e <= 30; ++e) x.push_back(std::ldexp(1.0f + 1.0f / 256, e));  // ties
  const dnnl::memory::dim n = (dnnl::memory::dim)x.size();
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  std::vector<uint16_t> theirs(x.size());
  dnnl::memory src({{n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a}, eng, x.data());
  dnnl::memory dst({{n}, dnnl::memory::data_type::bf16, dnnl::memory::format_tag::a}, eng, theirs.data());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  size_t differ = 0;
  for (size_t i = 0; i < x.size(); ++i) differ += f32_to_bf16(x[i]) != theirs[i];
  EXPECT_EQ(differ, 0u);
}

struct Shape {
  int in, out;
};

// One product to check: y(n, out) = x(n, in) · w(out, in)ᵀ (+ y0 when acc), on random data.
struct Case {
  int n, in, out;
  bool acc;
  std::vector<float> x, w, y0;
  std::string name() const {
    return std::to_string(n) + "x" + std::to_string(in) + " · (" + std::to_string(out) + "x" +
           std::to_string(in) + ")ᵀ" + (acc ? " +=" : "");
  }
};

// Every shape at every row count, with and without accumulation; the layer shapes (slow in
// the double-precision loop) at 1, 7 and 128 rows only.
void for_each_case(uint32_t seed, const std::function<void(const Case&)>& check) {
  const Shape shapes[] = {{37, 53}, {64, 16}, {576, 960}, {1536, 576}};
  std::mt19937 rng(seed);
  for (const Shape& s : shapes)
    for (int n : {1, 2, 7, 16, 33, 128, 300}) {
      if (s.in * s.out > 100000 && n != 1 && n != 7 && n != 128) continue;
      for (bool acc : {false, true}) {
        Case c{n, s.in, s.out, acc, random_vec(rng, (size_t)n * s.in),
               random_vec(rng, (size_t)s.out * s.in), random_vec(rng, (size_t)n * s.out, 3.0f)};
        check(c);
      }
    }
}

TEST(PackedGemm, Fp32MatchesNaiveAtEveryRowCount) {
  PackedGemm g(Precision::f32);
  for_each_case(3, [&](const Case& c) {
    const auto got = packed_matmul(g, c.x, c.w, c.y0, c.n, c.in, c.out, c.acc);
    const auto want = naive(c.x, c.w, c.y0, c.n, c.in, c.out, c.acc, false);
    EXPECT_LE(max_rel_error(got.data(), want.data(), got.size()), 1e-5) << c.name();
  });
}

TEST(PackedGemm, Bf16IsTheProductOfBf16RoundedInputs) {
  REQUIRE_BF16();
  PackedGemm g(Precision::bf16);
  for_each_case(4, [&](const Case& c) {
    const auto got = packed_matmul(g, c.x, c.w, c.y0, c.n, c.in, c.out, c.acc);
    // fp32 accumulation of bf16 products: only the summation order differs
    const auto exact = naive(c.x, c.w, c.y0, c.n, c.in, c.out, c.acc, true);
    EXPECT_LE(max_rel_error(got.data(), exact.data(), got.size()), 1e-5) << c.name();
    // and bf16's 8-bit mantissa shows against the unrounded product
    const auto f32 = naive(c.x, c.w, c.y0, c.n, c.in, c.out, c.acc, false);
    const double err = max_rel_error(got.data(), f32.data(), got.size());
    EXPECT_GT(err, 1e-4) << c.name() << ": no bf16 rounding seen";
    EXPECT_LT(err, 3e-2) << c.name();
  });
}

TEST(PackedGemm, LayoutDescriptorNamesLibraryIsaAndBlocking) {
  PackedGemm g(Precision::f32);
  const std::string d = g.layout_descriptor(576, 960);
  EXPECT_NE(d.find("onednn "), std::string::npos) << d;
  EXPECT_NE(d.find("isa " + packed_gemm_isa()), std::string::npos) << d;
  EXPECT_NE(d.find("dims 576x960"), std::string::npos) << d;
  EXPECT_NE(d, g.layout_descriptor(960, 576));
  EXPECT_GE(g.packed_bytes(37, 53), 37u * 53u * 4u);
  EXPECT_THROW(parse_precision("fp16"), std::invalid_argument);
  EXPECT_EQ(parse_precision("bf16"), Precision::bf16);
}

TEST(GemmWeights, PackedOnceIntoTheCacheThenMapped) {
  TempDir dir;
  WeightLoadOptions opt;
  opt.cache_dir = dir.path;
  const Model m = Model::load(ModelSpec{"synthetic:tiny"}, opt);
  ASSERT_TRUE(m.weights->file_backed());
  PackedGemm g(Precision::f32);
  const auto first = pack_gemm_weights(m, g);
  EXPECT_TRUE(first->report.built);
  ASSERT_TRUE(first->store->file_backed());
  const std::string path = first->store->path();
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(m.weights->path()).parent_path());
  EXPECT_NE(path.find(".dnnl-f32-"), std::string::npos) << path;
  // the same key as the fp32 cache: the name's 16 hex agree
  const std::string f32_name = fs::path(m.weights->path()).filename().string();
  const std::string key16 = f32_name.substr(f32_name.size() - 26, 16);
  EXPECT_NE(fs::path(path).filename().string().find("." + key16 + ".dnnl-f32-"), std::string::npos);

  const auto second = pack_gemm_weights(m, g);
  EXPECT_FALSE(second->report.built);
  EXPECT_EQ(second->store->path(), path);
  // every matrix: bytes as PackedGemm::pack makes them, found by its fp32 address
  const ModelConfig& c = m.cfg;
  const LayerWeights& l1 = m.layers[1];
  struct Mat { const float* w; int in, out; };
  for (const Mat& mat : {Mat{l1.wqkv, c.d_model, c.d_q() + 2 * c.d_kv()}, Mat{l1.wo, c.d_q(), c.d_model},
                         Mat{l1.w_gate_up, c.d_model, 2 * c.d_ff}, Mat{l1.w_down, c.d_ff, c.d_model},
                         Mat{m.lm_head(), c.d_model, c.n_vocab}}) {
    std::vector<uint8_t> want(g.packed_bytes(mat.in, mat.out));
    g.pack(mat.w, mat.in, mat.out, want.data());
    const void* got = second->find(mat.w);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(std::memcmp(got, want.data(), want.size()), 0) << mat.in << "x" << mat.out;
  }
  EXPECT_EQ(second->find(m.layers[0].attn_norm), nullptr);  // norms are not packed
  EXPECT_EQ(second->packed.size(), (size_t)(4 * c.n_layer + 1));

  // A damaged file (its layout field) is rebuilt.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16);
    f.write("garbage", 7);
  }
  const auto third = pack_gemm_weights(m, g);
  EXPECT_TRUE(third->report.built);
  EXPECT_NE(third->report.rebuilt_because.find("layout"), std::string::npos) << third->report.rebuilt_because;

  // bf16 packs into a file of its own beside it
  if (cpu_has_bf16()) {
    PackedGemm gb(Precision::bf16);
    const auto b = pack_gemm_weights(m, gb);
    EXPECT_NE(b->store->path(), path);
    EXPECT_NE(b->store->path().find(".dnnl-bf16-"), std::string::npos);
    EXPECT_LT(b->store->size(), third->store->size());  // half the bytes, roughly
  }
}

TEST(GemmWeights, PrivateMemoryWhenTheModelIs) {
  TempDir dir;
  ::setenv("CASCADE_CACHE_DIR", dir.path.c_str(), 1);
  const Model m = Model::load(ModelSpec{"synthetic:tiny"}, WeightSource::memory);
  PackedGemm g(Precision::f32);
  const auto gw = pack_gemm_weights(m, g);
  ::unsetenv("CASCADE_CACHE_DIR");
  EXPECT_FALSE(gw->store->file_backed());
  EXPECT_TRUE(dir.files().empty());  // not even a lock
}

// The reference forward pass on packed weights against the same pass on OpenBLAS.
TEST(GemmWeights, ReferenceOnPackedWeightsMatchesOpenBlas) {
  const Model m = Model::load(ModelSpec{"synthetic:tiny"}, WeightSource::memory);
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 5) % m.cfg.n_vocab);
  auto plain = make_cpu_backend();  // unprepared: OpenBLAS
  Reference a(m, plain.get());
  const std::vector<float> want = a.forward(ids, true);
  Reference b(m);  // prepared, fp32
  const std::vector<float> got = b.forward(ids, true);
  ASSERT_EQ(got.size(), want.size());
  const double err = max_rel_error(got.data(), want.data(), got.size());
  EXPECT_LE(err, 1e-5);
  // and decode steps (one row: the packed GEMV)
  const std::vector<float> want1 = a.forward({7}), got1 = b.forward({7});
  EXPECT_LE(max_rel_error(got1.data(), want1.data(), got1.size()), 1e-5);
  if (cpu_has_bf16()) {
    Reference c(m, nullptr, Precision::bf16);
    const std::vector<float> half = c.forward(ids, true);
    const double e16 = max_rel_error(half.data(), want.data(), half.size());
    EXPECT_GT(e16, 1e-4) << "bf16 prepared, yet fp32 results";
    EXPECT_LT(e16, 5e-2);
  }
}

}  // namespace
}  // namespace cascade
