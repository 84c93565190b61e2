// GGUF v3 reader: the file is mmap'd read-only; metadata and tensor infos are parsed and
// bounds-checked up front, tensor data is read in place (zero copy) and dequantised on demand.
// Format: ggml-org/ggml docs/gguf.md. Every problem is reported as a GgufError naming the file,
// the byte offset and (where there is one) the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace cascade {

class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ggml tensor types (values as in ggml.h). Only the ones we can dequantise are named.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};
const char* ggml_type_name(uint32_t type);  // "q4_1", or "unknown(77)"

// GGUF metadata value types (gguf.md).
enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Scalars of every integer type are held widened; arrays hold their
// element type and the elements (arrays of arrays are allowed by the format).
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  GgufValueType elem_type = GgufValueType::UINT8;  // for ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;   // ne[0] is the fastest-varying (row length)
  uint32_t type = 0;          // GgmlType value
  uint64_t offset = 0;        // relative to the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // in the mapping
};

class GgufFile {
 public:
  // Opens and validates the whole file (header, metadata, tensor infos, every tensor's
  // extent). Throws GgufError.
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  // Typed getters: throw GgufError when the key is missing or has an incompatible type.
  uint64_t get_uint(const std::string& key) const;   // any unsigned/signed int >= 0
  double get_float(const std::string& key) const;    // float32/float64 (or an int)
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  // Getters with defaults, for optional keys.
  uint64_t get_uint_or(const std::string& key, uint64_t def) const;
  double get_float_or(const std::string& key, double def) const;
  bool get_bool_or(const std::string& key, bool def) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent
  const GgufTensorInfo& tensor(const std::string& name) const;       // throws if absent

  // Dequantise a whole tensor to fp32 (n_elements floats, row-major with ne[0] fastest).
  // Throws GgufError for a type we cannot dequantise.
  std::vector<float> to_f32(const GgufTensorInfo& t) const;
  void to_f32(const GgufTensorInfo& t, float* out) const;

 private:
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
};

// Row dequantisation, one block type each (exposed for tests). `n` must be a multiple of the
// type's block size. Throws GgufError for unsupported types.
size_t ggml_block_size(uint32_t type);   // elements per block; 0 if unknown
size_t ggml_type_size(uint32_t type);    // bytes per block; 0 if unknown
void dequantize_row(uint32_t type, const uint8_t* src, float* dst, size_t n);
// True for the types dequantize_row handles (every type with a known size except the
// dot-product scratch types q8_1 and q8_k).
bool ggml_can_dequantize(uint32_t type);

// Exact IEEE half -> float (subnormals, inf and nan included) and bfloat16 -> float.
float fp16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);

}  // namespace cascade
