// Tests of the GGUF v3 reader (src/model/gguf.cpp) and the block dequantisers
// (src/model/dequantize.cpp):
//   * the real SmolLM2 model opens, with the expected metadata and tensor shapes;
//   * dequantisation agrees with the `gguf` Python package (data/golden/dequant.json, made by
//     scripts/golden/make_dequant_golden.py) on real tensors and on random blocks of every type;
//   * synthetic files built here round-trip known values, and every kind of damage (truncation
//     anywhere, bad magic, wrong version, bad counts, data past EOF, unknown types, ...) is a
//     GgufError naming the file, the offset and the tensor, never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cascade/gguf.h"
#include "gguf_builder.h"

namespace cascade {
namespace {

const std::string kModel =
    std::string(CASCADE_SOURCE_DIR) + "/data/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kGolden = std::string(CASCADE_SOURCE_DIR) + "/data/golden/dequant.json";

bool file_exists(const std::string& p) { return std::ifstream(p).good(); }

using namespace gguf_test;  // the GGUF writer (gguf_builder.h)

// Writes `bytes` to a file in the test temp dir and returns its path.
std::string write_temp(const std::string& name, const Bytes& bytes) {
  const std::string path = ::testing::TempDir() + "cascade_gguf_" + name + ".gguf";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(f.good()) << path;
  return path;
}

// Opens `bytes` as a GGUF file and expects a GgufError whose message contains the file's
// path, "offset" (unless with_offset is false) and every one of `parts`.
std::string expect_open_error(const std::string& name, const Bytes& bytes,
                              std::initializer_list<std::string> parts, bool with_offset = true) {
  const std::string path = write_temp(name, bytes);
  try {
    GgufFile g(path);
    ADD_FAILURE() << name << ": opened without error";
    return "";
  } catch (const GgufError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": no path in: " << msg;
    if (with_offset) {
      EXPECT_NE(msg.find("offset"), std::string::npos) << name << ": " << msg;
    }
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << name << ": '" << p << "' not in: " << msg;
    std::remove(path.c_str());
    return msg;
  }
}

// A good small file with one tensor of each supported kind, and a few metadata values.
// Known values: see the RoundTrip test.
GgufBuilder good_builder() {
  GgufBuilder b;
  b.kv_str("general.architecture", "test");
  b.kv_u32("test.block_count", 7);
  b.kv_str_array("tokens", {"a", "bc", ""});

  Bytes f32;  // [3, 2]: 0.5, -1, 2, 3.25, -0, 1e-3
  for (float x : {0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}) put_f32(f32, x);
  b.tensor("t.f32", {3, 2}, 0, f32);

  Bytes f16;  // 1, -2, 65504, 2^-24 (smallest subnormal), 1023*2^-24, 2^-14, -0, inf, -inf, nan
  for (uint16_t h : {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x8000, 0x7C00, 0xFC00,
                     0x7E00})
    put_u16(f16, h);
  b.tensor("t.f16", {10}, 1, f16);

  Bytes bf16;  // 1, -2.5, 3.140625 (0x4049), 1e-40-ish subnormal (0x0001)
  for (uint16_t h : {0x3F80, 0xC020, 0x4049, 0x0001}) put_u16(bf16, h);
  b.tensor("t.bf16", {4}, 30, bf16);

  Bytes q80;  // 2 blocks: d = 0.5 (0x3800), qs[j] = j - 16; d = -2 (0xC000), qs[j] = 127 - 8j
  put_u16(q80, 0x3800);
  for (int j = 0; j < 32; ++j) put_u8(q80, static_cast<uint8_t>(static_cast<int8_t>(j - 16)));
  put_u16(q80, 0xC000);
  for (int j = 0; j < 32; ++j) put_u8(q80, static_cast<uint8_t>(static_cast<int8_t>(127 - 8 * j)));
  b.tensor("t.q8_0", {32, 2}, 8, q80);

  Bytes q41;  // d = 0.25 (0x3400), m = -1 (0xBC00), qs[j] = j | (15-j) << 4
  put_u16(q41, 0x3400);
  put_u16(q41, 0xBC00);
  for (int j = 0; j < 16; ++j) put_u8(q41, static_cast<uint8_t>(j | ((15 - j) << 4)));
  b.tensor("t.q4_1", {32}, 3, q41);
  return b;
}

// ---- the real model ----------------------------------------------------------------------

class GgufRealModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!file_exists(kModel)) GTEST_SKIP() << "model not found: " << kModel << " (scripts/fetch-model)";
  }
};

TEST_F(GgufRealModel, HeaderMetadataAndShapes) {
  GgufFile g(kModel);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.tensors().size(), 272u);
  EXPECT_EQ(g.metadata().size(), 33u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_uint("llama.block_count"), 30u);
  EXPECT_EQ(g.get_uint("llama.embedding_length"), 576u);
  EXPECT_FLOAT_EQ(static_cast<float>(g.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_DOUBLE_EQ(g.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_FALSE(g.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_TRUE(g.get_bool_or("no.such.key", true));
  EXPECT_EQ(g.get_uint_or("no.such.key", 17), 17u);
  const auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 49152u);
  EXPECT_EQ(tokens[0], "<|endoftext|>");
  EXPECT_EQ(tokens[1], "<|im_start|>");
  EXPECT_EQ(g.get_int_array("tokenizer.ggml.token_type").size(), 49152u);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.merges").size(), 48900u);

  struct Want { const char* name; std::vector<uint64_t> ne; GgmlType type; };
  for (const Want& w : {Want{"token_embd.weight", {576, 49152}, GgmlType::Q8_0},
                        Want{"blk.0.attn_q.weight", {576, 576}, GgmlType::Q4_1},
                        Want{"blk.0.attn_k.weight", {576, 192}, GgmlType::Q4_1},
                        Want{"blk.29.ffn_down.weight", {1536, 576}, GgmlType::Q4_1},
                        Want{"blk.7.ffn_gate.weight", {576, 1536}, GgmlType::Q4_1},
                        Want{"output_norm.weight", {576}, GgmlType::F32}}) {
    const GgufTensorInfo& t = g.tensor(w.name);
    EXPECT_EQ(t.ne, w.ne) << w.name;
    EXPECT_EQ(t.type, static_cast<uint32_t>(w.type)) << w.name;
    EXPECT_EQ(t.offset % g.alignment(), 0u) << w.name;
  }
  EXPECT_EQ(g.tensor("token_embd.weight").n_bytes, 576u * 49152u / 32u * 34u);
  EXPECT_EQ(g.find_tensor("output.weight"), nullptr);  // tied to token_embd
}

TEST_F(GgufRealModel, GetterErrorsNameKeyAndType) {
  GgufFile g(kModel);
  auto msg_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const GgufError& e) {
      return e.what();
    }
    return "(no error)";
  };
  std::string m = msg_of([&] { g.get_string("llama.block_count"); });
  EXPECT_NE(m.find("'llama.block_count'"), std::string::npos) << m;
  EXPECT_NE(m.find("uint32"), std::string::npos) << m;
  m = msg_of([&] { g.get_uint("general.architecture"); });
  EXPECT_NE(m.find("string"), std::string::npos) << m;
  m = msg_of([&] { g.get_uint("no.such.key"); });
  EXPECT_NE(m.find("'no.such.key' not found"), std::string::npos) << m;
  m = msg_of([&] { g.get_uint_or("general.architecture", 3); });  // present, wrong type
  EXPECT_NE(m.find("expected"), std::string::npos) << m;
  m = msg_of([&] { g.get_string_array("tokenizer.ggml.token_type"); });
  EXPECT_NE(m.find("array of int32"), std::string::npos) << m;
  m = msg_of([&] { g.tensor("no.such.tensor"); });
  EXPECT_NE(m.find("'no.such.tensor'"), std::string::npos) << m;
}

// Relative-tolerance comparison: |a - ref| <= 1e-6 |ref| (+ a tiny absolute floor).
bool close(double a, double ref) { return std::fabs(a - ref) <= 1e-6 * std::fabs(ref) + 1e-30; }

TEST_F(GgufRealModel, DequantMatchesGgufPythonPackage) {
  if (!file_exists(kGolden)) GTEST_SKIP() << "no golden file " << kGolden;
  const nlohmann::json golden = nlohmann::json::parse(std::ifstream(kGolden));
  ASSERT_EQ(golden.at("format"), "cascade-dequant-golden");
  GgufFile g(kModel);
  ASSERT_GE(golden.at("tensors").size(), 4u);
  for (const auto& gt : golden.at("tensors")) {
    const std::string name = gt.at("name");
    const GgufTensorInfo& t = g.tensor(name);
    EXPECT_EQ(ggml_type_name(t.type), gt.at("type").get<std::string>()) << name;
    EXPECT_EQ(t.ne, gt.at("ne").get<std::vector<uint64_t>>()) << name;
    ASSERT_EQ(t.n_elements, gt.at("n_elements").get<uint64_t>()) << name;
    const std::vector<float> x = g.to_f32(t);
    const auto idx = gt.at("indices").get<std::vector<uint64_t>>();
    const auto val = gt.at("values").get<std::vector<double>>();
    ASSERT_EQ(idx.size(), val.size());
    int wrong = 0;
    double max_diff = 0;
    for (size_t i = 0; i < idx.size(); ++i) {
      ASSERT_LT(idx[i], x.size());
      const double ours = x[idx[i]];
      max_diff = std::max(max_diff, std::fabs(ours - val[i]));
      if (!close(ours, val[i])) {
        if (++wrong <= 5)
          ADD_FAILURE() << name << "[" << idx[i] << "] = " << ours << ", gguf-py says " << val[i];
      }
    }
    double sum = 0, sum_abs = 0;
    for (float v : x) {
      sum += v;
      sum_abs += std::fabs(v);
    }
    const double ref_sum = gt.at("sum"), ref_abs = gt.at("sum_abs");
    // Summation order differs from numpy's: compare relative to the sum of magnitudes.
    EXPECT_NEAR(sum, ref_sum, 1e-9 * ref_abs) << name;
    EXPECT_NEAR(sum_abs, ref_abs, 1e-9 * ref_abs) << name;
    std::printf("  %-26s %-5s %zu values %s (max |diff| %.3g), sum %.6f vs %.6f\n", name.c_str(),
                ggml_type_name(t.type), idx.size(), wrong ? "NOT OK" : "OK", max_diff, sum,
                ref_sum);
  }
}

TEST_F(GgufRealModel, DequantAllTensorsIsFast) {
  GgufFile g(kModel);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t n = 0;
  double checksum = 0;
  for (const GgufTensorInfo& t : g.tensors()) {
    const std::vector<float> x = g.to_f32(t);
    n += x.size();
    checksum += x[x.size() / 2];
    for (float v : {x.front(), x.back()}) ASSERT_TRUE(std::isfinite(v)) << t.name;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  dequantised %llu parameters in %.3f s (checksum %g)\n",
              static_cast<unsigned long long>(n), s, checksum);
  EXPECT_EQ(n, 134515008u);
  EXPECT_LT(s, 10.0);  // ~0.1-0.3 s; loose because the test machine is shared
}

// ---- block dequantisation vs the gguf package on random blocks ----------------------------

TEST(GgufDequantize, RandomBlocksMatchGgufPythonPackage) {
  if (!file_exists(kGolden)) GTEST_SKIP() << "no golden file " << kGolden;
  const nlohmann::json golden = nlohmann::json::parse(std::ifstream(kGolden));
  std::vector<std::string> seen;
  for (const auto& gb : golden.at("blocks")) {
    const std::string type_name = gb.at("type");
    const uint32_t type = gb.at("type_id");
    seen.push_back(type_name);
    EXPECT_EQ(ggml_type_name(type), type_name);
    ASSERT_TRUE(ggml_can_dequantize(type)) << type_name;
    const std::string hex = gb.at("bytes");
    Bytes bytes(hex.size() / 2);
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
    const auto& vals = gb.at("values");
    ASSERT_EQ(bytes.size() / ggml_type_size(type) * ggml_block_size(type), vals.size()) << type_name;
    std::vector<float> out(vals.size());
    dequantize_row(type, bytes.data(), out.data(), out.size());
    int wrong = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      bool ok;
      if (vals[i].is_string()) {
        const std::string s = vals[i];
        ok = s == "nan" ? std::isnan(out[i]) : std::isinf(out[i]) && (s == "inf") == (out[i] > 0);
      } else {
        ok = out[i] == vals[i].get<float>();  // bit-exact: same operation order as ggml
      }
      if (!ok && ++wrong <= 5)
        ADD_FAILURE() << type_name << "[" << i << "] = " << out[i] << ", gguf-py says " << vals[i];
    }
    std::printf("  %-5s %4zu values %s\n", type_name.c_str(), out.size(), wrong ? "NOT OK" : "OK");
  }
  for (const char* t : {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q6_k"})
    EXPECT_NE(std::find(seen.begin(), seen.end(), t), seen.end()) << "golden lacks " << t;
}

TEST(GgufDequantize, HalfToFloat) {
  EXPECT_EQ(fp16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(fp16_to_f32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::signbit(fp16_to_f32(0x8000)) && fp16_to_f32(0x8000) == 0.0f);
  EXPECT_EQ(fp16_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(fp16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(fp16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(fp16_to_f32(0x7C01)));  // signalling nan stays nan, not inf
  // Every finite half: value = (-1)^s * 2^(e-15) * (1 + m/1024), or m * 2^-24 for e = 0.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) continue;
    const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -24)
                             : std::ldexp(1.0f + static_cast<float>(m) / 1024.0f,
                                          static_cast<int>(e) - 15);
    ASSERT_EQ(fp16_to_f32(static_cast<uint16_t>(h)), (h & 0x8000) ? -mag : mag) << std::hex << h;
  }
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC020), -2.5f);
}

TEST(GgufDequantize, RejectsUnsupported) {
  float out[32];
  uint8_t in[64] = {};
  EXPECT_THROW(dequantize_row(77, in, out, 32), GgufError);
  EXPECT_THROW(dequantize_row(static_cast<uint32_t>(GgmlType::Q8_1), in, out, 32), GgufError);
  EXPECT_THROW(dequantize_row(static_cast<uint32_t>(GgmlType::Q8_0), in, out, 31), GgufError);
  EXPECT_EQ(ggml_block_size(77), 0u);
  EXPECT_EQ(ggml_type_size(77), 0u);
  EXPECT_STREQ(ggml_type_name(77), "unknown(77)");
  EXPECT_STREQ(ggml_type_name(3), "q4_1");
}

// ---- synthetic files ---------------------------------------------------------------------

TEST(GgufSynthetic, RoundTrip) {
  GgufBuilder b = good_builder();
  const std::string path = write_temp("good", b.build());
  GgufFile g(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.get_string("general.architecture"), "test");
  EXPECT_EQ(g.get_uint("test.block_count"), 7u);
  EXPECT_EQ(g.get_string_array("tokens"), (std::vector<std::string>{"a", "bc", ""}));
  ASSERT_EQ(g.tensors().size(), 5u);

  EXPECT_EQ(g.to_f32(g.tensor("t.f32")),
            (std::vector<float>{0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}));
  EXPECT_EQ(g.tensor("t.f32").ne, (std::vector<uint64_t>{3, 2}));

  const std::vector<float> h = g.to_f32(g.tensor("t.f16"));
  const std::vector<float> want_h = {1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24),
                                     std::ldexp(1023.0f, -24), std::ldexp(1.0f, -14), -0.0f,
                                     INFINITY, -INFINITY};
  for (size_t i = 0; i < want_h.size(); ++i) EXPECT_EQ(h[i], want_h[i]) << i;
  EXPECT_TRUE(std::signbit(h[6]));
  EXPECT_TRUE(std::isnan(h[9]));

  EXPECT_EQ(g.to_f32(g.tensor("t.bf16")),
            (std::vector<float>{1.0f, -2.5f, 3.140625f, std::ldexp(1.0f, -133)}));

  const std::vector<float> q8 = g.to_f32(g.tensor("t.q8_0"));
  ASSERT_EQ(q8.size(), 64u);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(q8[j], 0.5f * static_cast<float>(j - 16)) << j;
    EXPECT_EQ(q8[32 + j], -2.0f * static_cast<float>(127 - 8 * j)) << j;
  }

  const std::vector<float> q4 = g.to_f32(g.tensor("t.q4_1"));
  ASSERT_EQ(q4.size(), 32u);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(q4[j], 0.25f * static_cast<float>(j) - 1.0f) << j;
    EXPECT_EQ(q4[j + 16], 0.25f * static_cast<float>(15 - j) - 1.0f) << j;
  }
  std::remove(path.c_str());
}

TEST(GgufSynthetic, MetadataTypes) {
  GgufBuilder b;
  auto raw = [](std::initializer_list<uint8_t> v) { return Bytes(v); };
  b.kv_raw("u8", T_U8, raw({200}));
  b.kv_raw("i8", T_I8, raw({0xFE}));                  // -2
  b.kv_raw("i8pos", T_I8, raw({5}));
  b.kv_raw("u16", T_U16, raw({0x34, 0x12}));
  b.kv_raw("i16", T_I16, raw({0x00, 0x80}));          // -32768
  b.kv_raw("i32", T_I32, raw({0xFF, 0xFF, 0xFF, 0xFF}));  // -1
  Bytes u64;
  put_u64(u64, 0x123456789ABCDEF0ull);
  b.kv_raw("u64", T_U64, u64);
  Bytes i64;
  put_u64(i64, 42);
  b.kv_raw("i64", T_I64, i64);
  Bytes f32;
  put_f32(f32, 0.25f);
  b.kv_raw("f32", T_F32, f32);
  Bytes f64;
  double d = -1.5;
  uint64_t du;
  std::memcpy(&du, &d, 8);
  put_u64(f64, du);
  b.kv_raw("f64", T_F64, f64);
  b.kv_raw("bool", T_BOOL, raw({1}));
  Bytes ints;  // array of int16: -1, 7
  put_u32(ints, T_I16);
  put_u64(ints, 2);
  put_u16(ints, 0xFFFF);
  put_u16(ints, 7);
  b.kv_raw("ints", T_ARR, ints);
  Bytes nested;  // array of 2 arrays of uint8: [1, 2], []
  put_u32(nested, T_ARR);
  put_u64(nested, 2);
  put_u32(nested, T_U8);
  put_u64(nested, 2);
  put_u8(nested, 1);
  put_u8(nested, 2);
  put_u32(nested, T_U8);
  put_u64(nested, 0);
  b.kv_raw("nested", T_ARR, nested);
  const std::string path = write_temp("meta", b.build());
  GgufFile g(path);
  EXPECT_EQ(g.get_uint("u8"), 200u);
  EXPECT_EQ(g.get_uint("i8pos"), 5u);
  EXPECT_EQ(g.get_uint("u16"), 0x1234u);
  EXPECT_EQ(g.get_uint("u64"), 0x123456789ABCDEF0ull);
  EXPECT_EQ(g.get_uint("i64"), 42u);
  EXPECT_EQ(g.get_float("i8"), -2.0);
  EXPECT_EQ(g.get_float("i16"), -32768.0);
  EXPECT_EQ(g.get_float("f32"), 0.25);
  EXPECT_EQ(g.get_float("f64"), -1.5);
  EXPECT_EQ(g.get_float("u8"), 200.0);
  EXPECT_TRUE(g.get_bool("bool"));
  EXPECT_EQ(g.get_int_array("ints"), (std::vector<int64_t>{-1, 7}));
  const GgufValue& n = g.metadata().at("nested");
  EXPECT_EQ(n.type, GgufValueType::ARRAY);
  EXPECT_EQ(n.elem_type, GgufValueType::ARRAY);
  const auto& outer = std::get<std::vector<GgufValue>>(n.v);
  ASSERT_EQ(outer.size(), 2u);
  EXPECT_EQ(std::get<std::vector<GgufValue>>(outer[0].v).size(), 2u);
  EXPECT_EQ(std::get<uint64_t>(std::get<std::vector<GgufValue>>(outer[0].v)[1].v), 2u);
  EXPECT_TRUE(std::get<std::vector<GgufValue>>(outer[1].v).empty());
  // Negative values are not unsigned; floats are not ints; the messages say what they are.
  try {
    g.get_uint("i32");
    ADD_FAILURE() << "get_uint accepted -1";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("negative"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("int32"), std::string::npos) << e.what();
  }
  try {
    g.get_uint("f32");
    ADD_FAILURE() << "get_uint accepted a float";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'f32' has type float32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(g.get_bool("u8"), GgufError);
  EXPECT_THROW(g.get_int_array("nested"), GgufError);
  std::remove(path.c_str());
}

TEST(GgufSynthetic, CustomAlignment) {
  GgufBuilder b;
  b.kv_alignment(64);
  Bytes x;
  for (float v : {1.0f, 2.0f}) put_f32(x, v);
  b.tensor("a", {2}, 0, x);
  b.tensor("b", {2}, 0, x);
  const Bytes f = b.build();
  EXPECT_EQ(b.off_data % 64, 0u);
  const std::string path = write_temp("align", f);
  GgufFile g(path);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.tensor("b").offset, 64u);
  EXPECT_EQ(g.to_f32(g.tensor("b")), (std::vector<float>{1.0f, 2.0f}));
  std::remove(path.c_str());

  GgufBuilder bad;
  bad.kv_alignment(48);
  expect_open_error("align48", bad.build(), {"general.alignment", "48", "power of two"}, false);
}

TEST(GgufErrors, Truncated) {
  GgufBuilder b = good_builder();
  const Bytes full = b.build();
  auto cut = [&](size_t n) { return Bytes(full.begin(), full.begin() + static_cast<long>(n)); };
  expect_open_error("empty", cut(0), {"truncated", "magic", "offset 0"});
  expect_open_error("cut_magic", cut(3), {"truncated", "magic"});
  expect_open_error("cut_header", cut(10), {"truncated", "tensor_count", "offset 8"});
  expect_open_error("cut_kv_count", cut(b.off_kv - 3), {"truncated", "metadata_kv_count"});
  expect_open_error("cut_kv_key", cut(b.off_kv + 5), {"truncated", "key of metadata pair 0"});
  expect_open_error("cut_kv_value", cut(b.off_kv + 8 + 20 + 4 + 3),
                    {"'general.architecture'"});  // inside the string value
  expect_open_error("cut_infos", cut(b.off_infos + 3), {"truncated", "tensor info 0"});
  expect_open_error("cut_info_ne", cut(b.off_infos + 8 + 5 + 4 + 4), {"truncated", "ne[0]", "'t.f32'"});
  expect_open_error("cut_data", cut(full.size() - 1),
                    {"tensor 't.q4_1'", "data extends past end of file", "file has " +
                                                                             std::to_string(full.size() - 1)});
  expect_open_error("cut_padding", cut(b.off_infos + b.infos.size() + 1),
                    {"tensor 't.f32'", "data extends past end of file"});
}

TEST(GgufErrors, EveryPrefixFailsCleanly) {
  GgufBuilder b = good_builder();
  const Bytes full = b.build();
  const std::string path = write_temp("prefix", full);
  for (size_t n = 0; n < full.size(); ++n) {
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(full.data()), static_cast<std::streamsize>(n));
    try {
      GgufFile g(path);
      ADD_FAILURE() << "prefix of " << n << " bytes opened";
    } catch (const GgufError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  std::remove(path.c_str());
}

TEST(GgufErrors, CorruptBytesNeverCrash) {
  // Flip random bytes of a good file: opening must either work (and then every tensor
  // dequantises) or throw GgufError.
  GgufBuilder b = good_builder();
  const Bytes full = b.build();
  const std::string path = write_temp("fuzz", full);
  std::mt19937 rng(42);
  int opened = 0, rejected = 0;
  // CASCADE_GGUF_FUZZ_ITERS=100000 for a longer run (under -fsanitize=address,undefined).
  const char* env = std::getenv("CASCADE_GGUF_FUZZ_ITERS");
  const int iters = env ? std::atoi(env) : 400;
  for (int iter = 0; iter < iters; ++iter) {
    Bytes f = full;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      // Mostly the header, kv and infos, where the structure is.
      const size_t at = rng() % (rng() % 4 ? b.off_data : f.size());
      f[at] = static_cast<uint8_t>(rng());
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
    try {
      GgufFile g(path);
      for (const GgufTensorInfo& t : g.tensors())
        if (ggml_can_dequantize(t.type)) g.to_f32(t);
      ++opened;
    } catch (const GgufError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  std::printf("  %d corrupt files opened, %d rejected\n", opened, rejected);
  std::remove(path.c_str());
}

TEST(GgufErrors, BadMagicAndVersion) {
  GgufBuilder b = good_builder();
  b.magic = "GGUX";
  expect_open_error("magic", b.build(), {"bad magic", "47 47 55 58", "offset 0"});
  for (uint32_t v : {2u, 1u}) {
    GgufBuilder bv = good_builder();
    bv.version = v;
    expect_open_error("v" + std::to_string(v), bv.build(),
                      {"unsupported GGUF version " + std::to_string(v), "v1/v2", "offset 4"});
  }
  GgufBuilder b4 = good_builder();
  b4.version = 4;
  const std::string m = expect_open_error("v4", b4.build(), {"unsupported GGUF version 4", "only version 3"});
  EXPECT_EQ(m.find("v1/v2"), std::string::npos) << m;
  GgufBuilder be = good_builder();
  be.version = 0x03000000;
  expect_open_error("big_endian", be.build(), {"big-endian"});
}

TEST(GgufErrors, BadTensorInfos) {
  Bytes four(4 * 4, 0);
  {
    GgufBuilder b;
    b.info("x", {4}, 0, 0);
    b.data = four;
    b.info("x", {4}, 0, 0);
    expect_open_error("dup", b.build(), {"tensor 'x'", "duplicate tensor name"});
  }
  {
    GgufBuilder b;
    b.tensor("x", {4}, 77, four);
    expect_open_error("type77", b.build(), {"unsupported tensor type 77 for tensor 'x'"});
  }
  {
    GgufBuilder b;
    b.tensor("x", {1, 1, 1, 1, 4}, 0, four);
    expect_open_error("ndims", b.build(), {"tensor 'x'", "n_dims = 5"});
  }
  {
    GgufBuilder b;
    b.tensor("blk.0.attn_q.weight", {4}, 0, four);
    b.info("blk.1.attn_q.weight", {64, 64}, 0, 32);  // 16 KiB at offset 32: past EOF
    const std::string m = expect_open_error(
        "past_eof", b.build(),
        {"tensor 'blk.1.attn_q.weight'", "data extends past end of file", "needs"});
    std::printf("  e.g. %s\n", m.c_str());
  }
  {
    GgufBuilder b;
    b.data = Bytes(64, 0);
    b.info("x", {4}, 0, 8);  // not a multiple of 32
    expect_open_error("misaligned", b.build(), {"tensor 'x'", "offset 8", "alignment 32"});
  }
  {
    GgufBuilder b;
    b.data = Bytes(64, 0);
    b.info("x", {4}, 0, 0xFFFFFFFFFFFFFFE0ull);  // aligned, but absurd
    expect_open_error("huge_offset", b.build(), {"tensor 'x'", "data extends past end of file"});
  }
  {
    GgufBuilder b;
    b.tensor("x", {31}, 8, Bytes(34, 0));  // q8_0 rows must be multiples of 32
    expect_open_error("row", b.build(), {"tensor 'x'", "not a multiple of the q8_0 block size 32"});
  }
  {
    GgufBuilder b;
    b.info("x", {1ull << 32, 1ull << 32, 1ull << 32}, 0, 0);
    expect_open_error("overflow", b.build(), {"tensor 'x'", "overflows"});
  }
}

TEST(GgufErrors, AbsurdCountsAndLengths) {
  {
    GgufBuilder b = good_builder();
    Bytes f = b.build();
    for (int i = 0; i < 8; ++i) f[8 + i] = 0xFF;  // tensor_count = 2^64 - 1
    expect_open_error("tensor_count", f, {"tensor_count 18446744073709551615", "offset 8"});
  }
  {
    GgufBuilder b = good_builder();
    Bytes f = b.build();
    f[16 + 5] = 0x10;  // metadata_kv_count ~ 2^44
    expect_open_error("kv_count", f, {"metadata_kv_count", "offset 16"});
  }
  {
    GgufBuilder b;
    Bytes v;
    put_u64(v, 1ull << 40);  // a string of 1 TiB
    b.kv_raw("s", T_STR, v);
    expect_open_error("strlen", b.build(), {"string length 1099511627776", "'s'"});
  }
  {
    GgufBuilder b;
    Bytes v;
    put_u32(v, T_U32);
    put_u64(v, 1ull << 60);
    b.kv_raw("arr", T_ARR, v);
    expect_open_error("arrlen", b.build(), {"array length 1152921504606846976", "'arr'"});
  }
  {
    GgufBuilder b;
    b.kv_raw("weird", 13, Bytes(8, 0));
    expect_open_error("valtype", b.build(), {"unknown metadata value type 13", "'weird'"});
  }
  {
    GgufBuilder b;
    b.kv_u32("k", 1);
    b.kv_u32("k", 2);
    expect_open_error("dupkey", b.build(), {"duplicate metadata key 'k'"});
  }
  {
    GgufBuilder b;  // arrays nested 100 deep
    Bytes v;
    for (int i = 0; i < 100; ++i) {
      put_u32(v, T_ARR);
      put_u64(v, 1);
    }
    put_u32(v, T_U8);
    put_u64(v, 0);
    b.kv_raw("deep", T_ARR, v);
    expect_open_error("deep", b.build(), {"nested"});
  }
}

TEST(GgufErrors, MissingFile) {
  const std::string path = ::testing::TempDir() + "cascade_gguf_does_not_exist.gguf";
  try {
    GgufFile g(path);
    ADD_FAILURE() << "opened a missing file";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos);
  }
  EXPECT_THROW(GgufFile{::testing::TempDir()}, GgufError);  // a directory
}

}  // namespace
}  // namespace cascade
