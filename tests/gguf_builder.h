// A tiny GGUF writer for tests: builds files byte by byte, so that tests can make valid
// models of any shape and damage them anywhere (test_gguf.cpp, test_weight_cache.cpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace cascade::gguf_test {

using Bytes = std::vector<uint8_t>;

inline void put_u8(Bytes& b, uint8_t v) { b.push_back(v); }
inline void put_u16(Bytes& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_f32(Bytes& b, float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  put_u32(b, u);
}
inline void put_str(Bytes& b, const std::string& s) {
  put_u64(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

constexpr uint32_t T_U8 = 0, T_I8 = 1, T_U16 = 2, T_I16 = 3, T_U32 = 4, T_I32 = 5, T_F32 = 6,
                   T_BOOL = 7, T_STR = 8, T_ARR = 9, T_U64 = 10, T_I64 = 11, T_F64 = 12;

// Builds a GGUF file; remembers where each section starts so tests can cut or corrupt it.
struct GgufBuilder {
  std::string magic = "GGUF";
  uint32_t version = 3;
  uint64_t alignment = 32;
  Bytes kv;         // encoded kv pairs
  uint64_t n_kv = 0;
  Bytes infos;      // encoded tensor infos
  uint64_t n_tensors = 0;
  Bytes data;       // the data section
  // Filled by build():
  size_t off_kv = 0, off_infos = 0, off_data = 0;

  // A kv pair whose value bytes (after the type) are given raw.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const Bytes& value) {
    put_str(kv, key);
    put_u32(kv, type);
    kv.insert(kv.end(), value.begin(), value.end());
    ++n_kv;
    return *this;
  }
  GgufBuilder& kv_u32(const std::string& key, uint32_t v) {
    Bytes b;
    put_u32(b, v);
    return kv_raw(key, T_U32, b);
  }
  GgufBuilder& kv_f32(const std::string& key, float v) {
    Bytes b;
    put_f32(b, v);
    return kv_raw(key, T_F32, b);
  }
  GgufBuilder& kv_str(const std::string& key, const std::string& s) {
    Bytes b;
    put_str(b, s);
    return kv_raw(key, T_STR, b);
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    put_u32(b, T_STR);
    put_u64(b, v.size());
    for (const auto& s : v) put_str(b, s);
    return kv_raw(key, T_ARR, b);
  }
  GgufBuilder& kv_alignment(uint32_t a) {
    alignment = a;
    return kv_u32("general.alignment", a);
  }

  // A tensor info only (offset given).
  GgufBuilder& info(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type,
                    uint64_t offset) {
    put_str(infos, name);
    put_u32(infos, static_cast<uint32_t>(ne.size()));
    for (uint64_t x : ne) put_u64(infos, x);
    put_u32(infos, type);
    put_u64(infos, offset);
    ++n_tensors;
    return *this;
  }
  // A tensor with its data, placed at the next aligned offset of the data section.
  GgufBuilder& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type,
                      const Bytes& bytes) {
    while (data.size() % alignment) data.push_back(0);
    info(name, ne, type, data.size());
    data.insert(data.end(), bytes.begin(), bytes.end());
    return *this;
  }

  Bytes build() {
    Bytes f;
    f.insert(f.end(), magic.begin(), magic.end());
    put_u32(f, version);
    put_u64(f, n_tensors);
    put_u64(f, n_kv);
    off_kv = f.size();
    f.insert(f.end(), kv.begin(), kv.end());
    off_infos = f.size();
    f.insert(f.end(), infos.begin(), infos.end());
    while (f.size() % alignment) f.push_back(0);
    off_data = f.size();
    f.insert(f.end(), data.begin(), data.end());
    return f;
  }
};

}  // namespace cascade::gguf_test
