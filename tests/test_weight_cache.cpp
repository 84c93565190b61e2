// Tests of the weight cache (src/model/weight_cache.cpp), of Model's weights through it, and of
// the memory statistics (src/util/memory_stats.cpp):
//   * the first load builds the file, the next one maps it without building;
//   * every weight equals GgufFile::to_f32 of the GGUF tensor it comes from, stacked parts
//     included (and the values of the `gguf` Python package in data/golden/dequant.json);
//   * damaged caches (truncated, bad header fields, another model's digest, other dims, a bad
//     table) are rebuilt, saying why; stale temporaries are removed;
//   * the mapping is read-only, shared and file-backed: touching every weight grows RssFile by
//     the weights' size and RssAnon by almost nothing (a private load grows RssAnon instead);
//   * loaders started at once in several processes build the file exactly once and all see the
//     same bytes; a lock held past the deadline is an error naming the lock file;
//   * no usable location → private memory; WeightSource::memory writes nothing.
// Every test works in its own temporary directory and removes it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cascade/gguf.h"
#include "cascade/memory_stats.h"
#include "cascade/model.h"
#include "cascade/sha256.h"
#include "cascade/weight_cache.h"
#include "gguf_builder.h"
#include "test_util.h"

namespace cascade {
namespace {

namespace fs = std::filesystem;
using namespace gguf_test;

const std::string kModel =
    std::string(CASCADE_SOURCE_DIR) + "/data/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kGolden = std::string(CASCADE_SOURCE_DIR) + "/data/golden/dequant.json";

using cascade_test::TempDir;

WeightLoadOptions in_dir(const std::string& dir, double lock_timeout_s = 0) {
  WeightLoadOptions o;
  o.cache_dir = dir;
  o.lock_timeout_s = lock_timeout_s;
  return o;
}

// ---- a tiny llama model, written here ----------------------------------------------------

struct TinyDims {
  int n_layer = 2, d = 64, n_head = 4, n_head_kv = 2, d_ff = 96, n_vocab = 40, n_ctx = 64;
  int d_head() const { return d / n_head; }
  int d_q() const { return d; }
  int d_kv() const { return n_head_kv * d_head(); }
};

// Distinct, reproducible values: element i of the tensor numbered `t`.
float tiny_value(int t, uint64_t i) {
  return static_cast<float>(std::sin(0.37 * t + 0.011 * static_cast<double>(i)) * (1.0 + t));
}

// A llama GGUF with fp32 tensors (and an untied output unless `tied`); returns its path.
std::string write_tiny_model(const std::string& dir, bool tied = false) {
  const TinyDims m;
  GgufBuilder b;
  b.kv_str("general.architecture", "llama");
  b.kv_u32("llama.block_count", m.n_layer);
  b.kv_u32("llama.embedding_length", m.d);
  b.kv_u32("llama.attention.head_count", m.n_head);
  b.kv_u32("llama.attention.head_count_kv", m.n_head_kv);
  b.kv_u32("llama.feed_forward_length", m.d_ff);
  b.kv_u32("llama.context_length", m.n_ctx);
  b.kv_u32("llama.vocab_size", m.n_vocab);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  int t = 0;
  auto tensor = [&](const std::string& name, uint64_t ne0, uint64_t ne1) {
    Bytes data;
    for (uint64_t i = 0; i < ne0 * ne1; ++i) put_f32(data, tiny_value(t, i));
    ++t;
    if (ne1 == 1)
      b.tensor(name, {ne0}, 0, data);
    else
      b.tensor(name, {ne0, ne1}, 0, data);
  };
  tensor("token_embd.weight", m.d, m.n_vocab);
  tensor("output_norm.weight", m.d, 1);
  if (!tied) tensor("output.weight", m.d, m.n_vocab);
  for (int l = 0; l < m.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    tensor(p + "attn_norm.weight", m.d, 1);
    tensor(p + "attn_q.weight", m.d, m.d_q());
    tensor(p + "attn_k.weight", m.d, m.d_kv());
    tensor(p + "attn_v.weight", m.d, m.d_kv());
    tensor(p + "attn_output.weight", m.d_q(), m.d);
    tensor(p + "ffn_norm.weight", m.d, 1);
    tensor(p + "ffn_gate.weight", m.d, m.d_ff);
    tensor(p + "ffn_up.weight", m.d, m.d_ff);
    tensor(p + "ffn_down.weight", m.d_ff, m.d);
  }
  const Bytes bytes = b.build();
  const std::string path = dir + "/tiny-llama.gguf";
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
  return path;
}

// ---- checking weights against the GGUF, independently of the cache's specs ----------------

// Expects `got` to hold, one after the other, exactly the dequantised values of `parts`;
// returns the number of mismatching elements (and reports the first few).
size_t expect_parts(const GgufFile& g, const float* got, const std::vector<std::string>& parts,
                    const std::string& what) {
  size_t bad = 0, at = 0;
  for (const std::string& name : parts) {
    const std::vector<float> want = g.to_f32(g.tensor(name));
    for (size_t i = 0; i < want.size(); ++i, ++at)
      if (std::memcmp(&got[at], &want[i], sizeof(float)) != 0 && ++bad <= 3)
        ADD_FAILURE() << what << " element " << at << " (" << name << "[" << i << "]) = " << got[at]
                      << ", to_f32 gives " << want[i];
  }
  return bad;
}

// Every weight of `m` against the GGUF, for the given layers (all when empty).
void expect_model_equals_gguf(const Model& m, const GgufFile& g, std::vector<int> layers = {}) {
  if (layers.empty())
    for (int l = 0; l < m.cfg.n_layer; ++l) layers.push_back(l);
  EXPECT_EQ(expect_parts(g, m.tok_embd, {"token_embd.weight"}, "tok_embd"), 0u);
  EXPECT_EQ(expect_parts(g, m.out_norm, {"output_norm.weight"}, "out_norm"), 0u);
  if (m.cfg.tied_output) {
    EXPECT_EQ(m.output, nullptr);
    EXPECT_EQ(m.lm_head(), m.tok_embd);
  } else {
    EXPECT_EQ(expect_parts(g, m.output, {"output.weight"}, "output"), 0u);
  }
  for (int l : layers) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const LayerWeights& w = m.layers[l];
    EXPECT_EQ(expect_parts(g, w.attn_norm, {p + "attn_norm.weight"}, p + "attn_norm"), 0u);
    EXPECT_EQ(
        expect_parts(g, w.wqkv, {p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"},
                     p + "wqkv"),
        0u);
    EXPECT_EQ(expect_parts(g, w.wo, {p + "attn_output.weight"}, p + "wo"), 0u);
    EXPECT_EQ(expect_parts(g, w.ffn_norm, {p + "ffn_norm.weight"}, p + "ffn_norm"), 0u);
    EXPECT_EQ(
        expect_parts(g, w.w_gate_up, {p + "ffn_gate.weight", p + "ffn_up.weight"}, p + "w_gate_up"),
        0u);
    EXPECT_EQ(expect_parts(g, w.w_down, {p + "ffn_down.weight"}, p + "w_down"), 0u);
  }
}

// Inode and modification time: a rebuilt file is a new inode (renamed into place).
struct FileId {
  ino_t ino = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileId& o) const { return ino == o.ino && mtime_ns == o.mtime_ns; }
};
FileId file_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {st.st_ino, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

// The line of /proc/self/maps whose range holds `p` ("" if none).
std::string maps_line_of(const void* p) {
  std::ifstream in("/proc/self/maps");
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(in, line);) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) return line;
  }
  return "";
}
bool maps_mention(const std::string& path) {
  std::ifstream in("/proc/self/maps");
  for (std::string line; std::getline(in, line);)
    if (line.find(path) != std::string::npos) return true;
  return false;
}

// A 64-bit hash of a block of memory (word-wise FNV-style), to compare weights across processes.
uint64_t hash_bytes(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Overwrites `n` bytes at `offset` of `path`.
void patch(const std::string& path, long offset, const void* bytes, size_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good()) << path;
}
template <class T>
T read_at(const std::string& path, long offset) {
  T v{};
  std::ifstream f(path, std::ios::binary);
  f.seekg(offset);
  f.read(reinterpret_cast<char*>(&v), sizeof v);
  return v;
}

// ---- first load, reuse, layout -----------------------------------------------------------

TEST(WeightCache, FirstLoadBuildsSecondReuses) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  WeightLoadReport r1, r2;
  const Model m1 = Model::load(path, in_dir(cache.path), &r1);
  const std::string name = weight_cache_file_name(path, to_hex(sha256_file(path)));
  EXPECT_EQ(r1.cache_path, cache / name);
  EXPECT_TRUE(r1.built);
  EXPECT_TRUE(r1.rebuilt_because.empty()) << r1.rebuilt_because;
  EXPECT_FALSE(r1.fell_back);
  EXPECT_TRUE(fs::exists(r1.cache_path));
  EXPECT_EQ(fs::file_size(r1.cache_path), r1.bytes);
  const FileId id = file_id(r1.cache_path);

  const Model m2 = Model::load(path, in_dir(cache.path), &r2);
  EXPECT_FALSE(r2.built) << "the second load rebuilt the cache";
  EXPECT_EQ(r2.cache_path, r1.cache_path);
  EXPECT_EQ(r2.build_s, 0.0);
  EXPECT_TRUE(file_id(r2.cache_path) == id) << "the cache file was replaced";
  EXPECT_NE(m1.weights.get(), m2.weights.get());
  EXPECT_EQ(std::memcmp(m1.weights->data(), m2.weights->data(), m1.weights->size()), 0);
  // Only the cache and its lock file; no temporaries.
  EXPECT_EQ(cache.files(), (std::vector<std::string>{name, name + ".lock"}));
}

TEST(WeightCache, FileNameAndHeader) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  const std::string hex = to_hex(sha256_file(path));
  EXPECT_EQ(weight_cache_file_name("/a/b/m.gguf", hex),
            "m.gguf." + hex.substr(0, 16) + ".f32.cache");
  WeightLoadReport r;
  const Model m = Model::load(path, in_dir(cache.path), &r);
  // The header as documented in weight_cache.h.
  char magic[8];
  std::ifstream f(r.cache_path, std::ios::binary);
  f.read(magic, 8);
  EXPECT_EQ(std::memcmp(magic, "CASCWGT\0", 8), 0);
  EXPECT_EQ(read_at<uint32_t>(r.cache_path, 8), 1u);
  EXPECT_EQ(read_at<uint32_t>(r.cache_path, 12), 64u);
  EXPECT_STREQ(std::string(read_at<std::array<char, 32>>(r.cache_path, 16).data()).c_str(),
               "f32 row-major v1");
  const auto digest = read_at<std::array<uint8_t, 32>>(r.cache_path, 48);
  EXPECT_EQ(to_hex(digest.data(), 32), hex);
  EXPECT_EQ(read_at<uint64_t>(r.cache_path, 80 + 8 * 1), 64u);  // d_model
  EXPECT_EQ(read_at<uint64_t>(r.cache_path, 80 + 8 * 6), 40u);  // n_vocab
  EXPECT_EQ(read_at<uint64_t>(r.cache_path, 152), fs::file_size(r.cache_path));
  // 3 + 6 per layer tensors, each 64-byte aligned in the mapping.
  EXPECT_EQ(read_at<uint64_t>(r.cache_path, 160), 3u + 6u * 2u);
  EXPECT_EQ(m.weights->entries().size(), 3u + 6u * 2u);
  for (const WeightEntry& e : m.weights->entries()) EXPECT_EQ(e.offset % 64, 0u) << e.name;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.layers[1].w_gate_up) % 64, 0u);
}

// ---- the weights are the GGUF's -------------------------------------------------------------

TEST(WeightCache, TinyModelWeightsEqualGguf) {
  TempDir models, cache;
  for (bool tied : {false, true}) {
    const std::string path = write_tiny_model(models.path, tied);
    GgufFile g(path);
    const Model cached = Model::load(g, in_dir(cache.path));
    EXPECT_TRUE(cached.weights->file_backed());
    EXPECT_EQ(cached.cfg.tied_output, tied);
    expect_model_equals_gguf(cached, g);
    const Model priv = Model::load(g, WeightSource::memory);
    EXPECT_FALSE(priv.weights->file_backed());
    expect_model_equals_gguf(priv, g);
    fs::remove_all(cache.path);
    fs::create_directory(cache.path);
  }
}

class RealModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kModel))
      GTEST_SKIP() << "model not found: " << kModel << " (scripts/fetch-model)";
  }
};

TEST_F(RealModel, WeightsEqualToF32AndGgufPackage) {
  TempDir cache;
  GgufFile g(kModel);
  WeightLoadReport r;
  const Model m = Model::load(g, in_dir(cache.path), &r);
  ASSERT_TRUE(r.built);
  ASSERT_EQ(m.cfg.n_layer, 30);
  expect_model_equals_gguf(m, g, {0, 1, 14, 29});

  // Independent of to_f32: sample values of the `gguf` Python package, read through the
  // Model's pointers (attn_q is the first rows of wqkv).
  const nlohmann::json golden = nlohmann::json::parse(std::ifstream(kGolden));
  const std::map<std::string, const float*> where = {
      {"token_embd.weight", m.tok_embd},
      {"blk.0.attn_q.weight", m.layers[0].wqkv},
      {"blk.29.ffn_down.weight", m.layers[29].w_down},
      {"output_norm.weight", m.out_norm}};
  int checked = 0;
  for (const auto& gt : golden.at("tensors")) {
    const float* p = where.at(gt.at("name").get<std::string>());
    const auto idx = gt.at("indices").get<std::vector<uint64_t>>();
    const auto val = gt.at("values").get<std::vector<double>>();
    for (size_t i = 0; i < idx.size(); ++i, ++checked)
      EXPECT_NEAR(p[idx[i]], val[i], 1e-6 * std::fabs(val[i]) + 1e-30)
          << gt.at("name") << "[" << idx[i] << "]";
  }
  EXPECT_GT(checked, 900);

  // The private-memory load holds the same bytes.
  const Model priv = Model::load(g, WeightSource::memory);
  ASSERT_EQ(priv.weights->size(), m.weights->size());
  EXPECT_EQ(
      std::memcmp(priv.weights->data() + 4096, m.weights->data() + 4096, m.weights->size() - 4096),
      0);
}

// ---- damaged caches are rebuilt ------------------------------------------------------------

struct Damage {
  const char* what;
  void (*apply)(const std::string& path);
  const char* because;  // expected in the reason
};

const Damage kDamages[] = {
    {"empty file", [](const std::string& p) { fs::resize_file(p, 0); }, "truncated"},
    {"cut in the header", [](const std::string& p) { fs::resize_file(p, 100); }, "truncated"},
    {"cut in the table", [](const std::string& p) { fs::resize_file(p, 200); }, "truncated"},
    {"cut in the data", [](const std::string& p) { fs::resize_file(p, fs::file_size(p) - 1000); },
     "truncated"},
    {"trailing bytes", [](const std::string& p) { fs::resize_file(p, fs::file_size(p) + 64); },
     "wrong size"},
    {"bad magic", [](const std::string& p) { patch(p, 0, "GGUF", 4); }, "bad magic"},
    {"version 2",
     [](const std::string& p) {
       const uint32_t v = 2;
       patch(p, 8, &v, 4);
     },
     "version 2"},
    {"alignment",
     [](const std::string& p) {
       const uint32_t v = 32;
       patch(p, 12, &v, 4);
     },
     "alignment"},
    {"other layout", [](const std::string& p) { patch(p, 16, "f16 row-major v1", 17); },
     "layout 'f16 row-major v1'"},
    {"other model's digest",
     [](const std::string& p) {
       uint8_t b = read_at<uint8_t>(p, 60) ^ 0x5a;
       patch(p, 60, &b, 1);
     },
     "made from another model"},
    {"other dims",
     [](const std::string& p) {
       const uint64_t d = 65;
       patch(p, 80 + 8, &d, 8);
     },
     "d_model = 65"},
    {"file size field",
     [](const std::string& p) {
       const uint64_t s = read_at<uint64_t>(p, 152) + 64;
       patch(p, 152, &s, 8);
     },
     "truncated"},
    {"tensor count",
     [](const std::string& p) {
       const uint64_t n = 99;
       patch(p, 160, &n, 8);
     },
     "99 tensors"},
    {"table name", [](const std::string& p) { patch(p, 168, "tok_embd", 9); }, "named 'tok_embd'"},
    {"table offset past the end",
     [](const std::string& p) {
       const uint64_t o = 1ull << 40;
       patch(p, 168 + 48, &o, 8);
     },
     "inside the file"},
    {"table offset moved",
     [](const std::string& p) {
       const uint64_t o = read_at<uint64_t>(p, 168 + 48) + 64;
       patch(p, 168 + 48, &o, 8);
     },
     "expected"},
    {"table count of elements",
     [](const std::string& p) {
       const uint64_t n = 7;
       patch(p, 168 + 56, &n, 8);
     },
     "7 elements"},
    {"garbage",
     [](const std::string& p) {
       std::ofstream f(p, std::ios::binary | std::ios::trunc);
       for (int i = 0; i < 5000; ++i) f.put(static_cast<char>(i * 131 + 7));
     },
     "bad magic"},
};

TEST(WeightCache, DamagedCachesAreRebuilt) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  GgufFile g(path);
  WeightLoadReport r0;
  Model::load(g, in_dir(cache.path), &r0);
  ASSERT_TRUE(r0.built);
  for (const Damage& d : kDamages) {
    SCOPED_TRACE(d.what);
    d.apply(r0.cache_path);
    WeightLoadReport r;
    const Model m = Model::load(g, in_dir(cache.path), &r);
    EXPECT_TRUE(r.built) << "a cache with " << d.what << " was used";
    EXPECT_NE(r.rebuilt_because.find(d.because), std::string::npos)
        << "reason '" << r.rebuilt_because << "' lacks '" << d.because << "'";
    expect_model_equals_gguf(m, g);
    WeightLoadReport again;
    Model::load(g, in_dir(cache.path), &again);
    EXPECT_FALSE(again.built) << "the rebuilt cache was not reused";
  }
}

TEST(WeightCache, StaleTemporariesAreRemoved) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  const std::string name = weight_cache_file_name(path, to_hex(sha256_file(path)));
  // What a builder that crashed mid-write leaves; and an unrelated file, which must stay.
  std::ofstream(cache / (name + ".tmp.12345")) << "half a cache";
  std::ofstream(cache / "unrelated.tmp.12345") << "keep";
  WeightLoadReport r;
  Model::load(path, in_dir(cache.path), &r);
  EXPECT_TRUE(r.built);
  EXPECT_EQ(cache.files(), (std::vector<std::string>{name, name + ".lock", "unrelated.tmp.12345"}));
}

// ---- where the cache goes ------------------------------------------------------------------

// Sets (or, with nullptr, unsets) an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had;
  ScopedEnv(const char* n, const char* v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    if (v)
      ::setenv(n, v, 1);
    else
      ::unsetenv(n);
  }
  ~ScopedEnv() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

TEST(WeightCache, SearchOrder) {
  {
    ScopedEnv a("CASCADE_CACHE_DIR", "/x/cache"), b("XDG_CACHE_HOME", "/x/xdg");
    EXPECT_EQ(weight_cache_dirs("/m/model.gguf"), (std::vector<std::string>{"/x/cache"}));
  }
  {
    ScopedEnv a("CASCADE_CACHE_DIR", nullptr), b("XDG_CACHE_HOME", "/x/xdg");
    EXPECT_EQ(weight_cache_dirs("/m/model.gguf"),
              (std::vector<std::string>{"/m", "/x/xdg/cascade"}));
    EXPECT_EQ(weight_cache_dirs("model.gguf"), (std::vector<std::string>{".", "/x/xdg/cascade"}));
  }
  {
    ScopedEnv a("CASCADE_CACHE_DIR", ""), b("XDG_CACHE_HOME", nullptr), c("HOME", "/home/u");
    EXPECT_EQ(weight_cache_dirs("/m/model.gguf"),
              (std::vector<std::string>{"/m", "/home/u/.cache/cascade"}));
  }
}

TEST(WeightCache, EnvironmentDirectoryIsUsed) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  const std::string dir = cache / "made/by/load";  // created on demand
  ScopedEnv env("CASCADE_CACHE_DIR", dir.c_str());
  WeightLoadReport r;
  Model::load(path, {}, &r);
  EXPECT_TRUE(r.built);
  EXPECT_EQ(fs::path(r.cache_path).parent_path(), fs::path(dir));
  EXPECT_EQ(models.files(), (std::vector<std::string>{"tiny-llama.gguf"}))
      << "wrote next to the model";
}

TEST(WeightCache, NextToTheModelByDefault) {
  TempDir models, xdg;
  const std::string path = write_tiny_model(models.path);
  // Should the model's directory be skipped, the cache lands here, not in ~/.cache.
  ScopedEnv env("CASCADE_CACHE_DIR", nullptr), home("XDG_CACHE_HOME", xdg.path.c_str());
  WeightLoadReport r;
  Model::load(path, {}, &r);
  EXPECT_TRUE(r.built);
  EXPECT_EQ(fs::path(r.cache_path).parent_path(), fs::path(models.path));
}

TEST(WeightCache, UnwritableModelDirectoryFallsToXdgCache) {
  TempDir models, xdg;
  const std::string real = write_tiny_model(models.path);
  // The model seen through /dev/fd/N: nothing can be created in /dev/fd (even by root).
  const int fd = ::open(real.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const std::string path = "/dev/fd/" + std::to_string(fd);
  ScopedEnv env("CASCADE_CACHE_DIR", nullptr), home("XDG_CACHE_HOME", xdg.path.c_str());
  WeightLoadReport r;
  const Model m = Model::load(path, {}, &r);
  ::close(fd);
  EXPECT_TRUE(r.built);
  EXPECT_FALSE(r.fell_back);
  EXPECT_EQ(fs::path(r.cache_path).parent_path(), fs::path(xdg / "cascade"));
  EXPECT_TRUE(m.weights->file_backed());
}

TEST(WeightCache, NoUsableLocationFallsBackToPrivateMemory) {
  TempDir models, scratch;
  const std::string path = write_tiny_model(models.path);
  std::ofstream(scratch / "a-file") << "x";  // a directory cannot be made below a file
  GgufFile g(path);
  WeightLoadReport r;
  const Model m = Model::load(g, in_dir(scratch / "a-file/cache"), &r);
  EXPECT_TRUE(r.fell_back);
  EXPECT_FALSE(r.built);
  EXPECT_EQ(r.cache_path, "");
  EXPECT_FALSE(m.weights->file_backed());
  expect_model_equals_gguf(m, g);
}

TEST(WeightCache, MemorySourceWritesNothing) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  WeightLoadOptions o = in_dir(cache.path);
  o.source = WeightSource::memory;
  WeightLoadReport r;
  const Model m = Model::load(path, o, &r);
  EXPECT_FALSE(m.weights->file_backed());
  EXPECT_FALSE(r.built);
  EXPECT_TRUE(cache.files().empty());
  EXPECT_EQ(models.files(), (std::vector<std::string>{"tiny-llama.gguf"}));
}

TEST(WeightCache, ShapeErrorsNameTheTensor) {
  TempDir models, cache;
  GgufBuilder b;  // a llama whose attn_k has the wrong width
  b.kv_str("general.architecture", "llama");
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.embedding_length", 8);
  b.kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.feed_forward_length", 8);
  b.kv_u32("llama.context_length", 8);
  b.kv_u32("llama.vocab_size", 4);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  auto f32 = [](uint64_t n) {
    Bytes d;
    for (uint64_t i = 0; i < n; ++i) put_f32(d, 1.0f);
    return d;
  };
  b.tensor("token_embd.weight", {8, 4}, 0, f32(32));
  b.tensor("output_norm.weight", {8}, 0, f32(8));
  b.tensor("blk.0.attn_norm.weight", {8}, 0, f32(8));
  b.tensor("blk.0.attn_q.weight", {8, 8}, 0, f32(64));
  b.tensor("blk.0.attn_k.weight", {8, 4}, 0, f32(32));
  const Bytes bytes = b.build();
  const std::string path = models / "bad.gguf";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  try {
    Model::load(path, in_dir(cache.path));
    ADD_FAILURE() << "loaded a model with a wrongly shaped tensor";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_k.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_TRUE(cache.files().empty());
}

// ---- ownership -----------------------------------------------------------------------------

TEST(WeightCache, CopiesShareTheStoreWhichUnmapsWithTheLast) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  WeightLoadReport r;
  auto m = std::make_unique<Model>(Model::load(path, in_dir(cache.path), &r));
  Model copy = *m;
  EXPECT_EQ(copy.weights.get(), m->weights.get());
  EXPECT_EQ(copy.layers[1].wqkv, m->layers[1].wqkv);
  EXPECT_EQ(m->weights.use_count(), 2);
  m.reset();
  EXPECT_TRUE(maps_mention(r.cache_path)) << "unmapped while a copy holds it";
  EXPECT_EQ(copy.tok_embd[1], tiny_value(0, 1));
  {
    const Model moved = std::move(copy);
    EXPECT_TRUE(maps_mention(r.cache_path));
  }
  EXPECT_FALSE(maps_mention(r.cache_path)) << "still mapped after the last Model went";
}

// ---- sharing: read-only, file-backed pages ---------------------------------------------------

// Reads one float per page of the store; returns their sum (so the reads are not optimised away).
double touch_every_page(const WeightStore& w) {
  double s = 0;
  for (size_t off = 0; off < w.size(); off += 4096) s += w.data()[off];
  return s;
}

TEST_F(RealModel, MappingIsReadOnlyAndFileBacked) {
  TempDir cache;
  GgufFile g(kModel);
  WeightLoadReport r;
  Model::load(g, in_dir(cache.path), &r);  // build (its pages are released with the Model)
  ASSERT_TRUE(r.built);
  const double weight_kb = r.bytes / 1024.0;

  const MemoryStats before = read_memory_stats();
  const Model m = Model::load(g, in_dir(cache.path), &r);
  ASSERT_FALSE(r.built);
  volatile double sink = touch_every_page(*m.weights);
  (void)sink;
  const MemoryStats after = read_memory_stats();
  const double d_anon = double(after.rss_anon_kb) - before.rss_anon_kb;
  const double d_file = double(after.rss_file_kb) - before.rss_file_kb;
  std::printf(
      "  cache load, every page touched: RssAnon %+.0f kB, RssFile %+.0f kB, weights %.0f kB\n",
      d_anon, d_file, weight_kb);
  EXPECT_LT(d_anon, 0.05 * weight_kb) << "the weights landed in private memory";
  EXPECT_GT(d_file, 0.95 * weight_kb) << "the weights are not file-backed pages";

  // The mapping is the cache file, read-only and shared ("r--s").
  const std::string line = maps_line_of(m.layers[7].w_gate_up);
  EXPECT_NE(line.find(" r--s "), std::string::npos) << line;
  EXPECT_NE(line.find(r.cache_path), std::string::npos) << line;

  // The measure sees the difference: a private load grows RssAnon by the weights.
  const MemoryStats before_priv = read_memory_stats();
  const Model priv = Model::load(g, WeightSource::memory);
  const MemoryStats after_priv = read_memory_stats();
  const double d_anon_priv = double(after_priv.rss_anon_kb) - before_priv.rss_anon_kb;
  std::printf("  private load: RssAnon %+.0f kB\n", d_anon_priv);
  EXPECT_GT(d_anon_priv, 0.95 * weight_kb);
  EXPECT_NE(maps_line_of(priv.tok_embd).find(" r--p "), std::string::npos)
      << "private weights writable";
}

// ---- concurrency ----------------------------------------------------------------------------

struct ChildResult {
  int ok = 0;  // 1 when the load succeeded
  int built = 0;
  ino_t ino = 0;
  uint64_t hash = 0;
  char error[200] = {};
};

TEST_F(RealModel, ConcurrentLoadersBuildOnce) {
  TempDir cache;
  constexpr int kChildren = 4;
  int go[2], results[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(results), 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {            // child: wait for the start, load, report, exit
      omp_set_num_threads(1);  // no OpenMP pool inherited across fork
      ::close(go[1]);
      char c;
      while (::read(go[0], &c, 1) > 0) {
      }
      ChildResult res;
      try {
        WeightLoadReport r;
        const Model m = Model::load(kModel, in_dir(cache.path), &r);
        struct stat st {};
        ::stat(r.cache_path.c_str(), &st);
        res.ok = 1;
        res.built = r.built;
        res.ino = st.st_ino;
        res.hash = hash_bytes(m.weights->data(), m.weights->size());
      } catch (const std::exception& e) {
        std::snprintf(res.error, sizeof res.error, "%s", e.what());
      }
      const ssize_t n = ::write(results[1], &res, sizeof res);
      ::_exit(n == sizeof res ? 0 : 1);
    }
    pids.push_back(pid);
  }
  ::close(go[0]);
  ::close(results[1]);
  ::close(go[1]);  // start them all at once
  std::vector<ChildResult> got;
  ChildResult res;
  while (::read(results[0], &res, sizeof res) == sizeof res) got.push_back(res);
  ::close(results[0]);
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << pid;
  }
  ASSERT_EQ(got.size(), size_t(kChildren));
  int built = 0;
  for (const ChildResult& c : got) {
    EXPECT_EQ(c.ok, 1) << c.error;
    built += c.built;
  }
  EXPECT_EQ(built, 1) << "the cache was built " << built << " times";
  // Counted at the other end too: every process mapped the same file (a second build would
  // have renamed a new inode into place), and the file is the last one written.
  WeightLoadReport r;
  const Model m = Model::load(kModel, in_dir(cache.path), &r);
  EXPECT_FALSE(r.built);
  const uint64_t want = hash_bytes(m.weights->data(), m.weights->size());
  for (const ChildResult& c : got) {
    EXPECT_EQ(c.ino, file_id(r.cache_path).ino);
    EXPECT_EQ(c.hash, want);
  }
  const std::string name = fs::path(r.cache_path).filename().string();
  EXPECT_EQ(cache.files(), (std::vector<std::string>{name, name + ".lock"}));
}

TEST(WeightCache, LockHeldPastTheDeadlineIsAClearError) {
  TempDir models, cache;
  const std::string path = write_tiny_model(models.path);
  const std::string lock =
      cache / (weight_cache_file_name(path, to_hex(sha256_file(path))) + ".lock");
  int held[2], release[2];
  ASSERT_EQ(::pipe(held), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // another process holds the lock until told to let go
    ::close(release[1]);
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
    const bool ok = fd >= 0 && ::flock(fd, LOCK_EX) == 0;
    const char c = ok ? 'y' : 'n';
    if (::write(held[1], &c, 1) != 1) ::_exit(1);
    char d;
    while (::read(release[0], &d, 1) > 0) {
    }
    ::_exit(0);
  }
  ::close(held[1]);
  ::close(release[0]);
  char c = 0;
  ASSERT_EQ(::read(held[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');

  auto expect_timeout = [&](const WeightLoadOptions& o, double want_s) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      Model::load(path, o);
      ADD_FAILURE() << "loaded while another process held the lock";
    } catch (const WeightCacheError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("timed out"), std::string::npos) << msg;
      EXPECT_NE(msg.find(lock), std::string::npos) << msg;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(s, want_s);
    EXPECT_LT(s, want_s + 5);
  };
  expect_timeout(in_dir(cache.path, 0.3), 0.3);  // the option
  {
    ScopedEnv env("CASCADE_CACHE_LOCK_TIMEOUT", "0.2");  // the environment
    expect_timeout(in_dir(cache.path), 0.2);
  }

  ::close(release[1]);  // let go: the next load builds
  int status = 0;
  ::waitpid(pid, &status, 0);
  WeightLoadReport r;
  Model::load(path, in_dir(cache.path, 5), &r);
  EXPECT_TRUE(r.built);
}

// ---- memory statistics -----------------------------------------------------------------------

TEST(MemoryStats, ParsesProcFiles) {
  const std::string status =
      "Name:\tcascade\nVmPeak:\t  900 kB\nVmHWM:\t    812 kB\nVmRSS:\t     700 kB\n"
      "RssAnon:\t     100 kB\nRssFile:\t     590 kB\nRssShmem:\t      10 kB\nThreads:\t1\n";
  const std::string rollup =
      "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  700 kB\nPss:  321 kB\nPss_Anon:  99 kB\n"
      "Pss_File:  200 kB\n";
  const MemoryStats m = parse_memory_stats(status, rollup);
  EXPECT_EQ(m.rss_kb, 700u);
  EXPECT_EQ(m.rss_anon_kb, 100u);
  EXPECT_EQ(m.rss_file_kb, 590u);
  EXPECT_EQ(m.rss_shmem_kb, 10u);
  EXPECT_EQ(m.hwm_kb, 812u);
  EXPECT_EQ(m.pss_kb, 321u);
  // Missing fields and files read as zeros.
  const MemoryStats z = parse_memory_stats("VmRSS:\t5 kB\n", "");
  EXPECT_EQ(z.rss_kb, 5u);
  EXPECT_EQ(z.rss_anon_kb + z.rss_file_kb + z.rss_shmem_kb + z.hwm_kb + z.pss_kb, 0u);
}

TEST(MemoryStats, ReadsThisProcess) {
  const MemoryStats before = read_memory_stats();
  EXPECT_GT(before.rss_kb, 0u);
  EXPECT_GT(before.pss_kb, 0u);
  EXPECT_GE(before.hwm_kb, before.rss_kb);
  EXPECT_LE(before.rss_anon_kb + before.rss_file_kb + before.rss_shmem_kb, before.rss_kb + 4);
  std::vector<char> big(64 << 20, 1);  // 64 MiB of touched heap
  const MemoryStats after = read_memory_stats();
  EXPECT_GT(after.rss_anon_kb, before.rss_anon_kb + 60000) << (int)big[12345];
}

}  // namespace
}  // namespace cascade
