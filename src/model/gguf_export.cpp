#include "cascade/gguf_export.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "cascade/model.h"
#include "cascade/synthetic.h"

namespace cascade {
namespace {

constexpr uint64_t kAlign = 32;  // general.alignment's default
constexpr uint32_t kF32 = 0;     // ggml type F32

// GGUF's little-endian encoding, appended to a byte buffer.
struct Bytes {
  std::vector<uint8_t> b;
  uint64_t n_kv = 0;  // metadata pairs written
  void raw(const void* p, size_t n) {
    const uint8_t* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  // Metadata pairs: key, value type (gguf.md), value.
  void key(const std::string& k, uint32_t type) { str(k); u32(type); ++n_kv; }
  void kv_str(const std::string& k, const std::string& v) { key(k, 8); str(v); }
  void kv_u32(const std::string& k, uint32_t v) { key(k, 4); u32(v); }
  void kv_f32(const std::string& k, float v) { key(k, 6); raw(&v, 4); }
  void kv_bool(const std::string& k, bool v) { key(k, 7); const uint8_t x = v; raw(&x, 1); }
};

}  // namespace

void export_synthetic_gguf(const ModelConfig& c, uint64_t seed, const std::string& path,
                           const std::function<void(uint64_t, uint64_t)>& progress) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is little-endian");
  if (!is_synthetic(c.name)) throw std::invalid_argument("export_synthetic_gguf: '" + c.name + "' is not synthetic");
  std::vector<WeightPart> parts;
  for (const WeightSpec& s : Model::weight_specs(c))
    for (const WeightPart& p : s.parts) parts.push_back(p);

  Bytes h;
  const std::string a = c.arch + ".";
  Bytes kv;
  kv.kv_str("general.architecture", c.arch);
  kv.kv_str("general.name", c.name);
  kv.kv_u32(a + "block_count", c.n_layer);
  kv.kv_u32(a + "context_length", c.n_ctx);
  kv.kv_u32(a + "embedding_length", c.d_model);
  kv.kv_u32(a + "feed_forward_length", c.d_ff);
  kv.kv_u32(a + "attention.head_count", c.n_head);
  kv.kv_u32(a + "attention.head_count_kv", c.n_head_kv);
  kv.kv_u32(a + "vocab_size", c.n_vocab);
  if (c.family == Family::llama) {
    kv.kv_f32(a + "attention.layer_norm_rms_epsilon", c.norm_eps);
    kv.kv_f32(a + "rope.freq_base", c.rope_theta);
  } else {
    kv.kv_f32(a + "attention.layer_norm_epsilon", c.norm_eps);
  }
  if (c.family == Family::bert) {
    kv.kv_bool(a + "attention.causal", false);
    kv.kv_u32("tokenizer.ggml.token_type_count", c.n_token_types);
  }

  h.raw("GGUF", 4);
  h.u32(3);
  h.u64(parts.size());
  h.u64(kv.n_kv);
  h.raw(kv.b.data(), kv.b.size());
  uint64_t offset = 0, total = 0;
  for (const WeightPart& p : parts) {
    h.str(p.gguf_name);
    const bool vec = p.ne1 == 1;  // biases and norms are 1-D in llama.cpp's files
    h.u32(vec ? 1 : 2);
    h.u64(p.ne0);
    if (!vec) h.u64(p.ne1);
    h.u32(kF32);
    h.u64(offset);
    const uint64_t bytes = 4 * p.ne0 * p.ne1;
    offset += (bytes + kAlign - 1) / kAlign * kAlign;
    total += bytes;
  }
  h.b.resize((h.b.size() + kAlign - 1) / kAlign * kAlign, 0);

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  auto put = [&](const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f) != n) {
      std::fclose(f);
      std::remove(tmp.c_str());
      throw std::runtime_error("writing " + tmp + " failed: " + std::strerror(errno));
    }
  };
  put(h.b.data(), h.b.size());
  std::vector<float> buf;
  const std::vector<uint8_t> zeros(kAlign, 0);
  uint64_t done = 0;
  for (const WeightPart& p : parts) {
    const uint64_t n = p.ne0 * p.ne1;
    buf.resize(n);
    synthetic_fill(seed, p.gguf_name, n, buf.data());
    put(buf.data(), 4 * n);
    const uint64_t pad = (kAlign - (4 * n) % kAlign) % kAlign;
    put(zeros.data(), pad);
    done += 4 * n;
    if (progress) progress(done, total);
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("closing " + tmp + " failed: " + std::strerror(errno));
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace cascade
