// cascade bench generate: prefill and decode throughput of the single-process reference.
// cascade bench prefill: prefill TFLOP/s on a backend against its GEMM roofline (the GPU check).
// cascade bench gemm: GEMM throughput of one layer's weights by row count.
// cascade bench load: one load of the weights (through the weight cache, or private).
// cascade bench net: MPI ping-pong between two ranks; latency and bandwidth for the simulator.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/backend.h"
#include "cascade/exactness.h"
#include "cascade/packed_gemm.h"
#include "cascade/memory_stats.h"
#include "cascade/reference.h"
#include "cascade/sim.h"
#include "cascade/synthetic.h"
#include "cascade/continuations.h"
#include "cascade/device_buffer.h"
#include "cascade/device_model.h"
#include "cascade/synthetic.h"
#include "cli_common.h"
#include "commands.h"
#include "kernels/softmax.h"

namespace cascade::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  int tokens = 128;
  int decode = 32;
  int runs = 5;
  int threads = 0;
  std::string precision = "f32";
  bool openblas = false;  // --openblas: the weight GEMMs on OpenBLAS, unpacked (the old path)
  bool json = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A prompt of exactly n tokens: a fixed English paragraph, repeated as needed (random ids
// for a model without tokenizer).
std::vector<int32_t> bench_prompt(const LoadedModel& lm, int n) {
  if (!lm.tokenizer) return synthetic_prompt(n, lm.cfg.n_vocab);
  const std::vector<int32_t> para = lm.tokenizer->encode(
      "The history of the printing press begins in the fifteenth century, when movable type "
      "made books cheap enough for ordinary readers. Within fifty years presses had spread to "
      "more than two hundred cities, and the number of books in Europe grew from thousands to "
      "millions. Scholars argue about its effects on science, religion and politics, but few "
      "doubt that it changed how ideas travel. ");
  std::vector<int32_t> ids;
  while ((int)ids.size() < n) ids.insert(ids.end(), para.begin(), para.end());
  ids.resize(n);
  return ids;
}

void run_bench_generate(const BenchOptions& o) {
  set_cpu_threads(o.threads);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const LoadedModel lm = load_model(resolve_model(o.model));
  const double t_load = std::chrono::duration<double>(clock::now() - t0).count();
  if (lm.cfg.encoder())
    throw std::invalid_argument("bench generate measures prefill and decoding; " + lm.cfg.arch +
                                " is an encoder (time its one pass with cascade generate, or bench/smpc/run)");
  if (o.tokens + o.decode > lm.cfg.n_ctx)
    throw std::invalid_argument("--tokens " + std::to_string(o.tokens) + " + --decode " + std::to_string(o.decode) +
                                " exceeds the model context of " + std::to_string(lm.cfg.n_ctx));
  const std::vector<int32_t> prompt = bench_prompt(lm, o.tokens);
  const int n_vocab = lm.model.cfg.n_vocab;
  std::vector<double> prefill_tps, decode_tps;
  if (!o.json)
    std::printf("# bench generate: %d prompt tokens, %d decoded, %d runs, weight GEMMs %s, model load %.2f s\n",
                o.tokens, o.decode, o.runs, o.openblas ? "OpenBLAS f32" : ("packed " + o.precision).c_str(), t_load);
  auto be = make_cpu_backend();
  if (!o.openblas) be->prepare_weights(lm.model, parse_precision(o.precision), {});
  for (int r = 0; r < o.runs + 1; ++r) {  // run 0 is a warm-up, not counted
    Reference ref(lm.model, be.get());
    t0 = clock::now();
    std::vector<float> logits = ref.forward(prompt);
    const double tp = std::chrono::duration<double>(clock::now() - t0).count();
    t0 = clock::now();
    for (int i = 0; i < o.decode; ++i)
      logits = ref.forward({kernels::argmax_row(logits.data(), n_vocab)});
    const double td = std::chrono::duration<double>(clock::now() - t0).count();
    if (r == 0) continue;
    prefill_tps.push_back(o.tokens / tp);
    decode_tps.push_back(o.decode / td);
    if (!o.json)
      std::printf("run %d: prefill %8.1f tok/s   decode %7.1f tok/s\n", r, o.tokens / tp,
                  o.decode / td);
  }
  if (o.json) {
    nlohmann::json j = {{"prompt_tokens", o.tokens}, {"decode_tokens", o.decode},
                        {"runs", o.runs}, {"threads", o.threads},
                        {"gemm", o.openblas ? "openblas-f32" : "packed-" + o.precision},
                        {"prefill_tok_s_median", median(prefill_tps)},
                        {"decode_tok_s_median", median(decode_tps)},
                        {"prefill_tok_s", prefill_tps}, {"decode_tok_s", decode_tps}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("median: prefill %.1f tok/s, decode %.1f tok/s\n", median(prefill_tps),
                median(decode_tps));
  }
}

// Prefill on a backend (the GPU's figure): the reference's forward pass over T tokens, in
// TFLOP/s, against the roofline of the same backend's GEMMs: the four weight GEMMs of a layer
// at T rows, timed alone. Their ratio says how much of what the GEMM library reaches the whole
// layer (norms, RoPE, attention, copies) keeps.
struct PrefillOptions {
  ModelOptions model;
  int tokens = 1024;
  int runs = 3;
  std::string backend = "cpu";
  std::string precision = "f32";
  int threads = 0;
  bool json = false;
};

void run_bench_prefill(PrefillOptions o) {
  set_cpu_threads(o.threads);
  if (o.model.spec.path.empty()) o.model.spec.path = "synthetic:llama2-7b";
  const LoadedModel lm = load_model(resolve_model(o.model));
  const ModelConfig& c = lm.cfg;
  if (c.encoder()) throw std::invalid_argument("bench prefill measures a decoder's prefill; " + c.arch + " is an encoder");
  if (o.tokens > c.n_ctx)
    throw std::invalid_argument("--tokens " + std::to_string(o.tokens) + " exceeds the model context of " +
                                std::to_string(c.n_ctx));
  const Precision precision = parse_precision(o.precision);
  std::unique_ptr<Backend> be = o.backend == "cuda" ? make_cuda_backend(0) : make_cpu_backend();
  const int T = o.tokens;
  struct Shape { int out, in; const float* w; };
  const LayerWeights& l0 = lm.model.layers.at(0);
  const bool gated = c.family == Family::llama;
  // The GEMMs' FLOPs per layer, and the attention's (causal: T(T+1)/2 query-key pairs per head,
  // 2 FLOPs each for q·k and for the weighted sum of v).
  const double d = c.d_model, gemm_flops = 2.0 * T * d * (c.d_q() + 2.0 * c.d_kv() + c.d_q() + (gated ? 3.0 : 2.0) * c.d_ff);
  const double attn_flops = 4.0 * c.n_head * c.d_head * (double)T * (T + 1) / 2.0;
  const double layer_flops = gemm_flops + attn_flops;
  auto sync = [&] { be->synchronize(); };

  // Roofline: the layer's weight GEMMs alone, in the backend's memory, prepared in `precision`.
  double gemm_s = 0;
  {
    DeviceModel dm(*be, lm.model);
    be->prepare_weights(dm.model(), precision, {});
    const LayerWeights& w = dm.model().layers.at(0);
    const std::vector<Shape> shapes = {{c.d_q() + 2 * c.d_kv(), c.d_model, w.wqkv},
                                       {c.d_model, c.d_q(), w.wo},
                                       {gated ? 2 * c.d_ff : c.d_ff, c.d_model, gated ? w.w_gate_up : w.w_up},
                                       {c.d_model, c.d_ff, w.w_down}};
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::vector<float> x((size_t)T * std::max(c.d_ff, std::max(c.d_model, c.d_q())));
    for (float& v : x) v = uni(rng);
    DeviceBuffer<float> dx, dy;
    dx.upload(*be, x);
    dy.resize(*be, (size_t)T * std::max(2 * c.d_ff, c.d_q() + 2 * c.d_kv()));
    std::vector<double> times;
    for (int r = 0; r < o.runs + 1; ++r) {  // run 0 warms up
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      for (const Shape& sh : shapes) be->matmul_wt(dx.data(), sh.w, dy.data(), T, sh.in, sh.out, false);
      sync();
      if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    gemm_s = median(times);
  }
  (void)l0;
  if (be->host_memory()) be->prepare_weights(lm.model, precision, {});  // a device backend: Reference does it
  const std::vector<int32_t> prompt = bench_prompt(lm, T);
  std::vector<double> times;
  for (int r = 0; r < o.runs + 1; ++r) {
    Reference ref(lm.model, be.get(), precision);
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    (void)ref.forward(prompt);  // returns the logits on the host: the device has finished
    if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double prefill_s = median(times);
  const double total_flops = c.n_layer * layer_flops + 2.0 * d * c.n_vocab;  // + the last row's LM head
  const double tflops = total_flops / prefill_s * 1e-12, roof = gemm_flops / gemm_s * 1e-12;
  if (o.json) {
    nlohmann::json j = {{"model", lm.spec.path}, {"n_layer", c.n_layer}, {"tokens", T}, {"backend", be->name()},
                        {"precision", o.precision}, {"runs", o.runs}, {"prefill_s", prefill_s},
                        {"prefill_tflops", tflops}, {"gemm_roofline_tflops", roof}, {"fraction_of_roofline", tflops / roof},
                        {"prefill_tok_s", T / prefill_s}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("# bench prefill: %s, %d layers, %d tokens, backend %s, %s GEMMs, median of %d runs\n",
              lm.spec.path.c_str(), c.n_layer, T, be->name().c_str(), o.precision.c_str(), o.runs);
  std::printf("prefill: %.3f s (%.0f tok/s), %.2f TFLOP/s\n", prefill_s, T / prefill_s, tflops);
  std::printf("GEMM roofline (a layer's four weight GEMMs at %d rows, alone): %.2f TFLOP/s\n", T, roof);
  std::printf("prefill / roofline: %.0f%%\n", 100.0 * tflops / roof);
}

// The weight GEMMs of one layer at several row counts, per GEMM path: OpenBLAS (packs all of W
// on every call), oneDNN on W packed once in fp32, and in bf16 where the CPU has it. A CompNode
// multiplies N/α rows by every weight matrix, so the cost per row at few rows is what sharding
// costs; decode is one row. Also the largest relative difference of each packed path's output
// from OpenBLAS's, as a check that both compute the same product.
void run_bench_gemm(const std::vector<int>& rows_list, int runs, int threads, const ModelOptions& model) {
  set_cpu_threads(threads);
  const ModelConfig c = model_config(resolve_model(model));
  struct Shape { int out, in; };
  const std::vector<Shape> shapes = {{c.d_q() + 2 * c.d_kv(), c.d_model},  // Q|K|V
                                     {c.d_model, c.d_q()},                  // O
                                     {c.family == Family::llama ? 2 * c.d_ff : c.d_ff, c.d_model},  // (gate|)up
                                     {c.d_model, c.d_ff}};                  // down
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-0.05f, 0.05f);
  std::vector<std::vector<float>> w;
  for (const Shape& sh : shapes) {
    w.emplace_back((size_t)sh.out * sh.in);
    for (float& v : w.back()) v = uni(rng);
  }
  // The packed paths: one PackedGemm and packed copies per precision.
  struct Path {
    std::string name;
    std::unique_ptr<PackedGemm> gemm;  // nullptr: OpenBLAS
    std::vector<std::vector<uint8_t>> packed;
  };
  std::vector<Path> paths;
  paths.push_back({"openblas-f32", nullptr, {}});
  for (Precision p : {Precision::f32, Precision::bf16}) {
    if (p == Precision::bf16 && !cpu_has_bf16()) continue;
    Path path{std::string("packed-") + precision_name(p), std::make_unique<PackedGemm>(p), {}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      path.packed.emplace_back(path.gemm->packed_bytes(shapes[i].in, shapes[i].out));
      path.gemm->pack(w[i].data(), shapes[i].in, shapes[i].out, path.packed.back().data());
    }
    paths.push_back(std::move(path));
  }
  auto be = make_cpu_backend();  // unprepared: OpenBLAS
  std::printf("# bench gemm: y(rows, out) = x(rows, in)·Wᵀ, the four weight GEMMs of one layer of %s\n",
              c.name.c_str());
  std::printf("# %d threads, median of %d runs; oneDNN ISA %s%s; µs per layer per row\n", threads, runs,
              packed_gemm_isa().c_str(), cpu_has_bf16() ? "" : " (no bf16 here)");
  std::printf("# %6s", "rows");
  for (const Path& p : paths) std::printf(" %14s", p.name.c_str());
  for (size_t i = 1; i < paths.size(); ++i) std::printf(" %9s %9s", ("x" + paths[i].name.substr(7)).c_str(), "max-rdiff");
  std::printf("\n");
  for (int rows : rows_list) {
    std::vector<std::vector<float>> x, y0;
    for (const Shape& sh : shapes) {
      x.emplace_back((size_t)rows * sh.in);
      for (float& v : x.back()) v = uni(rng) * 20;
      y0.emplace_back((size_t)rows * sh.out);
    }
    std::vector<double> per_row;
    std::vector<double> rdiff;
    for (Path& p : paths) {
      std::vector<std::vector<float>> y = y0;
      std::vector<double> times;
      for (int r = 0; r < runs + 1; ++r) {  // run 0 warms up (and creates oneDNN's primitives)
        const auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < shapes.size(); ++i) {
          if (p.gemm)
            p.gemm->matmul(p.packed[i].data(), x[i].data(), y[i].data(), rows, shapes[i].in, shapes[i].out, false);
          else
            be->matmul_wt(x[i].data(), w[i].data(), y[i].data(), rows, shapes[i].in, shapes[i].out, false);
        }
        if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      per_row.push_back(1e6 * median(times) / rows);
      if (!p.gemm) {
        y0 = y;  // OpenBLAS's result: what the packed paths are compared with
        continue;
      }
      double worst = 0;
      for (size_t i = 0; i < shapes.size(); ++i)
        worst = std::max(worst, max_rel_error(y[i].data(), y0[i].data(), y[i].size()));
      rdiff.push_back(worst);
    }
    std::printf("  %6d", rows);
    for (double t : per_row) std::printf(" %14.2f", t);
    for (size_t i = 1; i < paths.size(); ++i) std::printf(" %8.2fx %9.1e", per_row[0] / per_row[i], rdiff[i - 1]);
    std::printf("\n");
  }
}

// One Model::load, timed: building the cache (first load) or mapping it (later loads), or a
// private dequantisation (--memory, what every process did before the cache). A mapped cache is
// paged in lazily, so touching every page is timed too.
struct LoadOptions {
  ModelOptions model;
  std::string cache_dir;
  bool memory = false;
  int threads = 1;
  bool json = false;
};

void run_bench_load(const LoadOptions& o) {
  set_cpu_threads(o.threads);
  const ModelSpec spec = resolve_model(o.model);
  const std::string& path = spec.path;
  WeightLoadOptions wo(o.memory ? WeightSource::memory : WeightSource::cache);
  wo.cache_dir = o.cache_dir;
  WeightLoadReport r;
  const auto t0 = std::chrono::steady_clock::now();
  const Model m = Model::load(spec, wo, &r);
  const auto t1 = std::chrono::steady_clock::now();
  double sink = 0;
  const uint8_t* p = m.weights->data();
  for (size_t off = 0; off < m.weights->size(); off += 4096) sink += p[off];
  const auto t2 = std::chrono::steady_clock::now();
  const MemoryStats ms = read_memory_stats();
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double touch_s = std::chrono::duration<double>(t2 - t1).count();
  const std::string what = o.memory ? "private memory" : r.fell_back ? "private memory (fallback)"
                           : r.built ? "built " + r.cache_path : "mapped " + r.cache_path;
  if (o.json) {
    nlohmann::json j = {{"model", path}, {"n_layer", m.cfg.n_layer}, {"source", o.memory ? "memory" : "cache"},
                        {"cache_path", r.cache_path}, {"built", r.built}, {"fell_back", r.fell_back},
                        {"bytes", r.bytes}, {"load_s", load_s}, {"hash_s", r.hash_s},
                        {"build_s", r.build_s}, {"touch_s", touch_s},
                        {"rss_anon_kb", ms.rss_anon_kb}, {"rss_file_kb", ms.rss_file_kb},
                        {"checksum", sink}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("# bench load: %s (%d layers), %d threads\n", path.c_str(), m.cfg.n_layer, o.threads);
  if (spec.synthetic())
    std::printf("load %.3f s (key %.3f s, generate + write %.3f s): %s, %.0f MB\n", load_s, r.hash_s,
                r.build_s, what.c_str(), r.bytes / 1e6);
  else
    std::printf("load %.3f s (sha256 %.3f s, dequantise + write %.3f s): %s, %.0f MB\n", load_s,
                r.hash_s, r.build_s, what.c_str(), r.bytes / 1e6);
  std::printf("touching every page: %.3f s; then RssAnon %.0f MB, RssFile %.0f MB\n", touch_s,
              ms.rss_anon_kb / 1024.0, ms.rss_file_kb / 1024.0);
  if (sink < 0) std::printf("\n");  // keeps the reads
}


// ---- bench net ----------------------------------------------------------------------------
// MPI ping-pong between ranks 0 and 1 (nccl-tests style: warm-up, then a host timer around many
// round trips on rank 0, no barrier inside the timed loop, the content checked afterwards).
// Raw MPI_Send/MPI_Recv: this measures the MPI layer the transport runs on, not the transport.
struct NetOptions {
  uint64_t min_bytes = 8;
  uint64_t max_bytes = 64ull << 20;
  int factor = 2;
  double seconds = 0.1;  // per timed loop
  int repeats = 3;       // timed loops per size; the median is reported
  bool json = false;
};

struct MpiInit {
  MpiInit() { MPI_Init(nullptr, nullptr); }
  ~MpiInit() { MPI_Finalize(); }
};

// What rank 0 tells rank 1 before each loop: bytes (0: stop), round trips, pattern seed.
struct NetOrder {
  int64_t bytes, iters, seed;
};

uint8_t pattern_byte(uint64_t i, int64_t seed) {
  return (uint8_t)((i * 131u + (uint64_t)seed * 7u + (i >> 8) * 29u + 1u) & 0xff);
}

void fill_pattern(std::vector<uint8_t>& buf, uint64_t n, int64_t seed) {
  for (uint64_t i = 0; i < n; ++i) buf[i] = pattern_byte(i, seed);
}

int64_t count_wrong(const std::vector<uint8_t>& buf, uint64_t n, int64_t seed) {
  int64_t wrong = 0;
  for (uint64_t i = 0; i < n; ++i) wrong += buf[i] != pattern_byte(i, seed);
  return wrong;
}

// Rank 1: echoes every message back, checks the last one of each loop, reports the count.
void net_echo(std::vector<uint8_t>& buf) {
  for (;;) {
    NetOrder o;
    MPI_Recv(&o, 3, MPI_INT64_T, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (o.bytes == 0) return;
    std::memset(buf.data(), 0, (size_t)o.bytes);
    for (int64_t i = 0; i < o.iters; ++i) {
      MPI_Recv(buf.data(), (int)o.bytes, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf.data(), (int)o.bytes, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
    }
    const int64_t wrong = count_wrong(buf, (uint64_t)o.bytes, o.seed);
    MPI_Send(&wrong, 1, MPI_INT64_T, 0, 2, MPI_COMM_WORLD);
  }
}

// Rank 0: `iters` round trips of `bytes`; seconds of the loop, and the corrupted bytes seen by
// either side (the echo, and rank 1's copy).
double net_loop(std::vector<uint8_t>& out, std::vector<uint8_t>& in, int64_t bytes, int64_t iters,
                int64_t seed, int64_t& wrong) {
  const NetOrder o{bytes, iters, seed};
  MPI_Send(&o, 3, MPI_INT64_T, 1, 0, MPI_COMM_WORLD);
  fill_pattern(out, (uint64_t)bytes, seed);
  std::memset(in.data(), 0, (size_t)bytes);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) {
    MPI_Send(out.data(), (int)bytes, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
    MPI_Recv(in.data(), (int)bytes, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t remote = 0;
  MPI_Recv(&remote, 1, MPI_INT64_T, 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  wrong += remote + count_wrong(in, (uint64_t)bytes, seed);
  return t;
}

// Least squares fit of time = a + size / bw, weighted by 1/time² (relative errors: the small
// sizes, which fix the latency, count as much as the large ones, which fix the bandwidth).
void fit_latency_bandwidth(const std::vector<double>& size, const std::vector<double>& time,
                           double& latency, double& bandwidth) {
  double S = 0, Sx = 0, Sy = 0, Sxx = 0, Sxy = 0;
  for (size_t i = 0; i < size.size(); ++i) {
    const double w = 1.0 / (time[i] * time[i]);
    S += w;
    Sx += w * size[i];
    Sy += w * time[i];
    Sxx += w * size[i] * size[i];
    Sxy += w * size[i] * time[i];
  }
  const double slope = (S * Sxy - Sx * Sy) / (S * Sxx - Sx * Sx);
  latency = (Sy - slope * Sx) / S;
  bandwidth = 1.0 / slope;
}

void run_bench_net(const NetOptions& o) {
  if (o.factor != 2 && o.factor != 4) throw std::invalid_argument("bench net: --factor must be 2 or 4");
  if (o.min_bytes < 1 || o.min_bytes > o.max_bytes || o.max_bytes > (uint64_t)std::numeric_limits<int>::max())
    throw std::invalid_argument("bench net: need 1 ≤ --min-bytes ≤ --max-bytes < 2 GiB");
  MpiInit mpi;
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != 2) {
    if (rank != 0) {  // rank 0 says why, once
      MPI_Finalize();
      std::exit(1);
    }
    throw std::runtime_error("bench net needs exactly 2 MPI ranks (mpirun -np 2 cascade bench net), "
                             "this job has " + std::to_string(world));
  }
  std::vector<uint8_t> out(o.max_bytes), in(o.max_bytes);
  if (rank == 1) {
    net_echo(in);
    return;
  }
  char hosts[2][MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(hosts[0], &len);
  std::vector<double> sizes, times;
  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf("# bench net: MPI ping-pong between ranks 0 and 1 on %s; time = one way = round trip / 2,\n"
                "# the median of %d timed loops of about %.2g s each after a warm-up; #wrong: corrupted bytes\n",
                hosts[0], o.repeats, o.seconds);
    std::printf("%14s %10s %12s %12s %8s\n", "size(B)", "count", "time(us)", "algbw(GB/s)", "#wrong");
  }
  int64_t seed = 1;
  for (uint64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.factor) {
    int64_t wrong = 0;
    // Warm-up: first touches and connection set-up (not timed), then an estimate of one round
    // trip from a loop of at least 20 ms.
    net_loop(out, in, (int64_t)bytes, 2, seed++, wrong);
    int64_t n = 2;
    double t = 0.0;
    while ((t = net_loop(out, in, (int64_t)bytes, n, seed++, wrong)) < 0.02 && n < (1 << 20)) n *= 4;
    const int64_t iters = std::clamp<int64_t>((int64_t)(o.seconds / (t / n)), 4, 1000000);
    std::vector<double> one_way;
    for (int r = 0; r < o.repeats; ++r)
      one_way.push_back(net_loop(out, in, (int64_t)bytes, iters, seed++, wrong) / iters / 2.0);
    const double tw = median(one_way);
    sizes.push_back((double)bytes);
    times.push_back(tw);
    if (o.json)
      rows.push_back({{"bytes", bytes}, {"count", iters}, {"time_us", tw * 1e6},
                      {"algbw_GBps", bytes / tw / 1e9}, {"wrong", wrong}});
    else
      std::printf("%14llu %10lld %12.2f %12.3f %8lld\n", (unsigned long long)bytes, (long long)iters,
                  tw * 1e6, bytes / tw / 1e9, (long long)wrong);
    std::fflush(stdout);
    if (bytes > o.max_bytes / o.factor) break;
  }
  const NetOrder stop{0, 0, 0};
  MPI_Send(&stop, 3, MPI_INT64_T, 1, 0, MPI_COMM_WORLD);
  double latency = 0.0, bandwidth = 0.0;
  if (sizes.size() >= 2) fit_latency_bandwidth(sizes, times, latency, bandwidth);
  const std::string spec = custom_net_spec(std::max(latency, 0.0), bandwidth);
  if (o.json) {
    nlohmann::json j = {{"host", hosts[0]}, {"sizes", rows}, {"latency_us", latency * 1e6},
                        {"bandwidth_GBps", bandwidth / 1e9}, {"profile", spec}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("# fit time = latency + size / bandwidth (least squares weighted by 1/time²):\n");
  std::printf("latency %.3f µs, bandwidth %.3f GB/s; as a profile: --net %s\n", latency * 1e6,
              bandwidth / 1e9, spec.c_str());
}

// Attack throughput (cascade attack): candidate forward passes per second through the first
// `layer` blocks, a batch of candidates continuing a cached prefix, against the roofline of the
// GEMMs those passes run — the same four weight GEMMs at the batch's row count, timed alone in
// this run (OpenBLAS's best on this machine for that shape).
struct AttackBenchOptions {
  ModelOptions model;
  std::vector<int> layers = {1, 16};
  int batch = 256;
  int prefix = 32;
  int runs = 5;
  int threads = 1;
};

void run_bench_attack(const AttackBenchOptions& o) {
  set_cpu_threads(o.threads);
  const LoadedModel lm = load_model(resolve_model(o.model));
  require_llama(lm.cfg, "cascade bench attack");
  const ModelConfig& c = lm.cfg;
  const double gemm_flops = 2.0 * c.d_model * (c.d_q() + 2 * c.d_kv()) + 2.0 * c.d_q() * c.d_model +
                            2.0 * c.d_model * 2 * c.d_ff + 2.0 * c.d_ff * c.d_model;  // per row per block
  // The GEMM ceiling at this row count.
  struct Shape { int out, in; const float* w; };
  const LayerWeights& w0 = lm.model.layers[0];
  const Shape shapes[] = {{c.d_q() + 2 * c.d_kv(), c.d_model, w0.wqkv}, {c.d_model, c.d_q(), w0.wo},
                          {2 * c.d_ff, c.d_model, w0.w_gate_up}, {c.d_model, c.d_ff, w0.w_down}};
  auto be = make_cpu_backend();
  std::vector<float> x((size_t)o.batch * std::max(c.d_ff, c.d_q()), 0.02f), y((size_t)o.batch * 2 * c.d_ff);
  std::vector<double> gt;
  for (int r = 0; r < o.runs + 1; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const Shape& s : shapes) be->matmul_wt(x.data(), s.w, y.data(), o.batch, s.in, s.out, false);
    if (r) gt.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double gemm_gflops = gemm_flops * o.batch / median(gt) * 1e-9;
  std::printf("# bench attack: %s, batches of %d candidates after a cached prefix of %d tokens, %d thread(s)\n",
              c.name.c_str(), o.batch, o.prefix, o.threads);
  std::printf("# GEMM roofline: the 4 weight GEMMs of a block at %d rows run at %.1f GFLOP/s here\n", o.batch, gemm_gflops);
  std::printf("%6s %14s %14s %14s %16s %10s\n", "layer", "cand/s", "GFLOP/cand", "GFLOP/s", "roofline cand/s", "of roofline");
  Continuations cx(lm.model);
  std::vector<int32_t> prefix = synthetic_prompt(o.prefix, c.n_vocab, 5);
  cx.append(prefix);
  std::vector<int32_t> cand = synthetic_prompt(o.batch, c.n_vocab, 6);
  for (int layer : o.layers) {
    if (layer < 1 || layer > c.n_layer) throw std::invalid_argument("--attack-layers: " + std::to_string(layer) + " is outside 1.." + std::to_string(c.n_layer));
    const RowSpec spec{RowKind::hidden, layer};
    std::vector<float> rows((size_t)o.batch * c.d_model);
    std::vector<double> times;
    for (int r = 0; r < o.runs + 1; ++r) {
      Continuations::Batch b;
      b.ids = cand.data();
      b.batch = o.batch;
      b.spec = &spec;
      b.rows = rows.data();
      const auto t0 = std::chrono::steady_clock::now();
      cx.run(b);
      if (r) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double t = median(times), rate = o.batch / t;
    const double flops = layer * (gemm_flops + 4.0 * c.d_q() * (o.prefix + 1));  // + attention
    const double ceiling = gemm_gflops * 1e9 / (layer * gemm_flops);
    std::printf("%6d %14.0f %14.4f %14.1f %16.0f %9.0f%%\n", layer, rate, flops * 1e-9, rate * flops * 1e-9, ceiling,
                100.0 * rate / ceiling);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (results go in BENCHMARKS.md)");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchOptions>();
  CLI::App* gen = bench->add_subcommand("generate", "Prefill and decode tokens/s of the single-process reference");
  add_model_options(gen, o->model, /*weights=*/true);
  gen->add_option("--tokens", o->tokens, "Prompt tokens")->capture_default_str()->check(CLI::Range(1, 8192));
  gen->add_option("--decode", o->decode, "Tokens to decode")->capture_default_str()->check(CLI::Range(1, 4096));
  gen->add_option("--runs", o->runs, "Timed runs (after one warm-up); the median is reported")->capture_default_str()->check(CLI::Range(1, 1000));
  gen->add_option("-t,--threads", o->threads, "CPU threads")->check(CLI::NonNegativeNumber);
  gen->add_option("--precision", o->precision, "Weight GEMMs: f32 or bf16 (packed_gemm.h)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  gen->add_flag("--openblas", o->openblas, "Weight GEMMs on OpenBLAS with unpacked fp32 weights (the path before packing)")
      ->excludes("--precision");
  gen->add_flag("--json", o->json, "Print JSON");
  gen->callback([o] { run_bench_generate(*o); });

  auto po = std::make_shared<PrefillOptions>();
  CLI::App* pre = bench->add_subcommand(
      "prefill", "Prefill TFLOP/s of the reference on a backend (cuda: the GPU check), against the same backend's GEMM roofline");
  add_model_options(pre, po->model, /*weights=*/true, "default synthetic:llama2-7b");
  pre->add_option("--tokens", po->tokens, "Prompt tokens")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  pre->add_option("--runs", po->runs, "Timed runs (after one warm-up); the median is reported")->capture_default_str()->check(CLI::Range(1, 1000));
  pre->add_option("--backend", po->backend, "cpu or cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  pre->add_option("--precision", po->precision, "Weight GEMMs: f32 or bf16")->capture_default_str()->check(CLI::IsMember({"f32", "bf16"}));
  pre->add_option("-t,--threads", po->threads, "CPU threads")->check(CLI::NonNegativeNumber);
  pre->add_flag("--json", po->json, "Print JSON");
  pre->callback([po] { run_bench_prefill(*po); });

  auto rows = std::make_shared<std::vector<int>>(std::vector<int>{128, 64, 32, 16, 8, 1});
  auto gemm_runs = std::make_shared<int>(20);
  auto gemm_threads = std::make_shared<int>(1);
  auto gemm_model = std::make_shared<ModelOptions>();
  CLI::App* gemm = bench->add_subcommand("gemm", "GEMM throughput of one layer's weights at several row counts");
  gemm->add_option("--rows", *rows, "Row counts (space- or comma-separated)")->capture_default_str()->delimiter(',')->check(CLI::Range(1, 65536));
  gemm->add_option("--runs", *gemm_runs, "Timed runs per row count (median)")->capture_default_str()->check(CLI::Range(1, 100000));
  gemm->add_option("-t,--threads", *gemm_threads, "CPU threads")->capture_default_str()->check(CLI::PositiveNumber);
  add_model_options(gemm, *gemm_model, /*weights=*/false);
  gemm->callback([=] { run_bench_gemm(*rows, *gemm_runs, *gemm_threads, *gemm_model); });

  auto ab = std::make_shared<AttackBenchOptions>();
  CLI::App* atk = bench->add_subcommand("attack", "Candidate forward passes per second of the vocabulary-matching attack, against its GEMM roofline");
  add_model_options(atk, ab->model, /*weights=*/true);
  atk->add_option("--attack-layers", ab->layers, "Layers the candidates run through")->capture_default_str()->delimiter(',');
  atk->add_option("--batch", ab->batch, "Candidates per batch")->capture_default_str()->check(CLI::Range(1, 65536));
  atk->add_option("--prefix", ab->prefix, "Tokens of the cached prefix")->capture_default_str()->check(CLI::Range(1, 4096));
  atk->add_option("--runs", ab->runs, "Timed batches per layer (median)")->capture_default_str()->check(CLI::Range(1, 1000));
  atk->add_option("-t,--threads", ab->threads, "CPU threads")->capture_default_str()->check(CLI::PositiveNumber);
  atk->callback([ab] { run_bench_attack(*ab); });

  auto lo = std::make_shared<LoadOptions>();
  CLI::App* load = bench->add_subcommand("load", "Time one load of the weights (weight cache or private memory)");
  add_model_options(load, lo->model, /*weights=*/true);
  load->add_option("--cache-dir", lo->cache_dir, "Weight cache directory (default: $CASCADE_CACHE_DIR, next to the model, ~/.cache/cascade)");
  load->add_flag("--memory", lo->memory, "Dequantise into private memory (no cache file)");
  load->add_option("-t,--threads", lo->threads, "CPU threads")->capture_default_str()->check(CLI::PositiveNumber);
  load->add_flag("--json", lo->json, "Print JSON");
  load->callback([lo] { run_bench_load(*lo); });

  auto no = std::make_shared<NetOptions>();
  CLI::App* net = bench->add_subcommand(
      "net", "MPI ping-pong latency and bandwidth between 2 ranks (mpirun -np 2 cascade bench net); "
             "prints the fit as a --net profile for cascade simulate");
  net->add_option("--min-bytes", no->min_bytes, "Smallest message")->capture_default_str();
  net->add_option("--max-bytes", no->max_bytes, "Largest message")->capture_default_str();
  net->add_option("--factor", no->factor, "Size step: 2 or 4")->capture_default_str();
  net->add_option("--seconds", no->seconds, "Length of one timed loop")->capture_default_str()->check(CLI::Range(0.001, 60.0));
  net->add_option("--repeats", no->repeats, "Timed loops per size (median)")->capture_default_str()->check(CLI::Range(1, 100));
  net->add_flag("--json", no->json, "Print JSON");
  net->callback([no] { run_bench_net(*no); });
}

}  // namespace cascade::cli
