// oneDNN against libxsmm for the packed GEMM, at the scale of the real model: the four weight
// GEMMs of 30 SmolLM2-shaped layers (420 MB of fp32 weights, so they come from memory as in a
// forward pass, not from the L3 as in `cascade bench gemm`), packed once by each library,
// y(rows, out) = x(rows, in)·Wᵀ per row count, one thread, best of 5 passes over all layers.
// Why oneDNN was chosen (BENCHMARKS.md, "Packed GEMMs and bf16").
//
// Not part of the build (libxsmm is not a dependency of Cascade); on Debian 12:
//   apt-get install -y libdnnl-dev libxsmm-dev
//   g++ -O3 -march=native -fopenmp -std=c++17 bench/gemm_libraries.cpp -o /tmp/gemm_libraries \
//       -ldnnl -lxsmm -lxsmmnoblas -lpthread -lrt -ldl -lm
//   OMP_NUM_THREADS=1 /tmp/gemm_libraries
//
// libxsmm packs W(out, in) as panels of 64 outputs, each (in × 64) with the outputs fastest,
// and runs one JIT kernel per panel: panelᵀ (64 × in, column-major) · xᵀ (in × rows) = the
// panel's 64 columns of y.
#include <libxsmm.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <dnnl.hpp>
#include <random>
#include <vector>

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  int in, out;
};

// W(out, in) row-major → panels [out/64][in][64].
std::vector<float> xsmm_pack(const std::vector<float>& w, int in, int out) {
  std::vector<float> p((size_t)in * out);
  for (int b = 0; b < out / 64; ++b)
    for (int k = 0; k < in; ++k)
      for (int o = 0; o < 64; ++o) p[((size_t)b * in + k) * 64 + o] = w[(size_t)(b * 64 + o) * in + k];
  return p;
}

void xsmm_matmul(const float* packed, const float* x, float* y, int rows, int in, int out) {
  const libxsmm_blasint m = 64, n = rows, k = in, lda = 64, ldb = in, ldc = out;
  const float alpha = 1.0f, beta = 0.0f;
  const libxsmm_smmfunction f =
      libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, nullptr, nullptr);
  if (!f) {
    std::fprintf(stderr, "libxsmm: no kernel for %d x %d x %d\n", (int)m, (int)n, (int)k);
    std::exit(1);
  }
#pragma omp parallel for
  for (int b = 0; b < out / 64; ++b) f(packed + (size_t)b * in * 64, x, y + b * 64);
}

}  // namespace

int main() {
  libxsmm_init();
  const Shape shapes[] = {{576, 960}, {576, 576}, {576, 3072}, {1536, 576}};
  const int layers = 30;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uni(-0.05f, 0.05f);

  struct Mat {
    Shape sh;
    std::vector<float> w, xsmm;
    dnnl::memory dnnl_packed;
    dnnl::memory::desc dnnl_md;
  };
  std::vector<Mat> mats;
  for (int l = 0; l < layers; ++l)
    for (const Shape& sh : shapes) {
      Mat m;
      m.sh = sh;
      m.w.resize((size_t)sh.in * sh.out);
      for (float& v : m.w) v = uni(rng);
      m.xsmm = xsmm_pack(m.w, sh.in, sh.out);
      const dnnl::memory::desc src({128, sh.in}, dt::f32, tag::ab), any({sh.in, sh.out}, dt::f32, tag::any),
          dst({128, sh.out}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), eng);
      m.dnnl_md = pd.weights_desc();
      dnnl::memory plain({{sh.in, sh.out}, dt::f32, tag::ba}, eng, m.w.data());
      m.dnnl_packed = dnnl::memory(m.dnnl_md, eng);
      dnnl::reorder(plain, m.dnnl_packed).execute(s, plain, m.dnnl_packed);
      s.wait();
      m.w.clear();
      m.w.shrink_to_fit();
      mats.push_back(std::move(m));
    }
  std::printf("# %d layers x 4 GEMMs (%.0f MB fp32), %d threads; µs per layer per row, best of 5\n",
              layers, layers * 4.0 * (960 * 576 + 576 * 576 + 3072 * 576 + 1536 * 576) / 1e6,
              omp_get_max_threads());
  std::printf("%6s %12s %12s %10s %10s\n", "rows", "onednn", "libxsmm", "xsmm/dnnl", "max-rdiff");
  for (int rows : {128, 64, 32, 16, 8, 1}) {
    std::vector<float> x((size_t)rows * 1536), y1((size_t)rows * 3072), y2(y1.size());
    for (float& v : x) v = uni(rng) * 20;
    // oneDNN primitives for this row count
    std::vector<dnnl::matmul> prims;
    for (const Mat& m : mats) {
      const dnnl::memory::desc src({rows, m.sh.in}, dt::f32, tag::ab), dst({rows, m.sh.out}, dt::f32, tag::ab);
      prims.emplace_back(dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, m.dnnl_md, dst), eng));
    }
    double t_dnnl = 1e9, t_xsmm = 1e9, rdiff = 0;
    for (int rep = 0; rep < 5; ++rep) {
      double t0 = now();
      for (size_t i = 0; i < mats.size(); ++i) {
        const Shape& sh = mats[i].sh;
        dnnl::memory xs({{rows, sh.in}, dt::f32, tag::ab}, eng, x.data());
        dnnl::memory ys({{rows, sh.out}, dt::f32, tag::ab}, eng, y1.data());
        prims[i].execute(s, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, mats[i].dnnl_packed}, {DNNL_ARG_DST, ys}});
        s.wait();
      }
      t_dnnl = std::min(t_dnnl, now() - t0);
      t0 = now();
      for (size_t i = 0; i < mats.size(); ++i)
        xsmm_matmul(mats[i].xsmm.data(), x.data(), y2.data(), rows, mats[i].sh.in, mats[i].sh.out);
      t_xsmm = std::min(t_xsmm, now() - t0);
    }
    // the last matrix (down, 1536 → 576): both libraries' outputs
    double maxref = 0, maxd = 0;
    for (size_t j = 0; j < (size_t)rows * 576; ++j) {
      maxref = std::max(maxref, (double)std::fabs(y1[j]));
      maxd = std::max(maxd, (double)std::fabs(y1[j] - y2[j]));
    }
    rdiff = maxd / maxref;
    const double per = 1e6 / layers / rows;
    std::printf("%6d %12.2f %12.2f %10.2f %10.1e\n", rows, t_dnnl * per, t_xsmm * per, t_xsmm / t_dnnl, rdiff);
  }
  libxsmm_finalize();
}
