// GGUF v3 reader (format: ggml-org/ggml docs/gguf.md). All values are little-endian:
//
//   header       "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//   metadata     kv_count x { string key | u32 value_type | value }
//                string = u64 length | bytes;  array = u32 elem_type | u64 count | elems
//   tensor info  tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset }
//   padding      to general.alignment (default 32)
//   data         tensor t lives at data_start + t.offset
//
// The file is mmap'd read-only and everything is checked before it is believed: each read
// against the end of the file, each count against the bytes that could possibly hold it,
// each tensor's extent against the file size. Errors name the file, the byte offset and the
// tensor.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>

#include "cascade/gguf.h"

namespace cascade {
namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;        // arrays of arrays of ...; real files use 1
constexpr uint64_t kDefaultAlignment = 32;

const char* value_type_name(uint32_t t) {
  static const char* const names[] = {"uint8",  "int8",   "uint16",  "int16", "uint32",
                                      "int32",  "float32", "bool",   "string", "array",
                                      "uint64", "int64",  "float64"};
  return t < 13 ? names[t] : "unknown";
}

std::string describe_type(const GgufValue& v) {
  if (v.type == GgufValueType::ARRAY)
    return std::string("array of ") + value_type_name(static_cast<uint32_t>(v.elem_type));
  return value_type_name(static_cast<uint32_t>(v.type));
}

// Smallest number of bytes one value of type t can occupy (for sanity-checking counts).
uint64_t min_value_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING: return 8;   // the length
    case GgufValueType::ARRAY: return 12;   // elem type + count
  }
  return 1;
}

// Bounds-checked little-endian cursor over the mapping.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* base, size_t size)
      : path_(path), base_(base), size_(size) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t left() const { return size_ - pos_; }

  [[noreturn]] void fail(size_t off, const std::string& msg) const {
    throw GgufError(path_ + ": offset " + std::to_string(off) + ": " + msg);
  }
  [[noreturn]] void fail_tensor(const std::string& name, size_t off,
                                const std::string& msg) const {
    throw GgufError(path_ + ": tensor '" + name + "' (offset " + std::to_string(off) +
                    "): " + msg);
  }

  void need(size_t n, const std::string& what) const {
    if (n > left())
      fail(pos_, "truncated file: unexpected end of file reading " + what + " (needs " +
                     std::to_string(n) + " bytes, only " + std::to_string(left()) +
                     " left; file has " + std::to_string(size_) + " bytes)");
  }
  uint8_t u8(const std::string& what) {
    need(1, what);
    return base_[pos_++];
  }
  uint16_t u16(const std::string& what) {
    need(2, what);
    const uint8_t* p = base_ + pos_;
    pos_ += 2;
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
  }
  uint32_t u32(const std::string& what) {
    need(4, what);
    const uint8_t* p = base_ + pos_;
    pos_ += 4;
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  }
  uint64_t u64(const std::string& what) {
    need(8, what);
    const uint64_t lo = u32(what);
    const uint64_t hi = u32(what);
    return lo | (hi << 32);
  }
  std::string str(const std::string& what) {
    const size_t at = pos_;
    const uint64_t len = u64("length of " + what);
    if (len > left())
      fail(at, "string length " + std::to_string(len) + " of " + what + " exceeds the " +
                   std::to_string(left()) + " bytes left in the file (truncated or corrupt)");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
};

uint32_t read_value_type(Reader& r, const std::string& what) {
  const size_t at = r.pos();
  const uint32_t t = r.u32("value type of " + what);
  if (t > static_cast<uint32_t>(GgufValueType::FLOAT64))
    r.fail(at, "unknown metadata value type " + std::to_string(t) + " for " + what);
  return t;
}

GgufValue read_value(Reader& r, GgufValueType type, const std::string& what, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::UINT8: v.v = uint64_t{r.u8(what)}; break;
    case GgufValueType::INT8: v.v = int64_t{static_cast<int8_t>(r.u8(what))}; break;
    case GgufValueType::UINT16: v.v = uint64_t{r.u16(what)}; break;
    case GgufValueType::INT16: v.v = int64_t{static_cast<int16_t>(r.u16(what))}; break;
    case GgufValueType::UINT32: v.v = uint64_t{r.u32(what)}; break;
    case GgufValueType::INT32: v.v = int64_t{static_cast<int32_t>(r.u32(what))}; break;
    case GgufValueType::UINT64: v.v = uint64_t{r.u64(what)}; break;
    case GgufValueType::INT64: v.v = static_cast<int64_t>(r.u64(what)); break;
    case GgufValueType::FLOAT32: {
      const uint32_t bits = r.u32(what);
      float f;
      std::memcpy(&f, &bits, 4);
      v.v = static_cast<double>(f);
      break;
    }
    case GgufValueType::FLOAT64: {
      const uint64_t bits = r.u64(what);
      double d;
      std::memcpy(&d, &bits, 8);
      v.v = d;
      break;
    }
    case GgufValueType::BOOL: v.v = r.u8(what) != 0; break;
    case GgufValueType::STRING: v.v = r.str(what); break;
    case GgufValueType::ARRAY: {
      const size_t at = r.pos();
      if (depth >= kMaxArrayDepth)
        r.fail(at, "arrays nested more than " + std::to_string(kMaxArrayDepth) +
                       " deep in " + what);
      v.elem_type = static_cast<GgufValueType>(read_value_type(r, "array element of " + what));
      const size_t count_at = r.pos();
      const uint64_t count = r.u64("array length of " + what);
      if (count > r.left() / min_value_size(v.elem_type))
        r.fail(count_at, "array length " + std::to_string(count) + " of " + what +
                             " cannot fit in the " + std::to_string(r.left()) +
                             " bytes left in the file (truncated or corrupt)");
      std::vector<GgufValue> elems;
      elems.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i)
        elems.push_back(read_value(r, v.elem_type, what, depth + 1));
      v.v = std::move(elems);
      break;
    }
  }
  return v;
}

[[noreturn]] void bad_type(const std::string& path, const std::string& key, const GgufValue& v,
                           const char* expected) {
  throw GgufError(path + ": metadata key '" + key + "' has type " + describe_type(v) +
                  ", expected " + expected);
}

bool is_int_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::UINT16:
    case GgufValueType::INT16: case GgufValueType::UINT32: case GgufValueType::INT32:
    case GgufValueType::UINT64: case GgufValueType::INT64: return true;
    default: return false;
  }
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GgufError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw GgufError(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw GgufError(path + ": not a regular file");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ > 0) {
    void* p = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw GgufError(path + ": cannot mmap " + std::to_string(map_size_) +
                      " bytes: " + std::strerror(e));
    }
    map_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive

  try {
    Reader r(path_, map_, map_size_);

    // ---- header ----
    r.need(4, "magic");
    if (std::memcmp(map_, "GGUF", 4) != 0) {
      char hex[64];
      std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", map_[0], map_[1], map_[2], map_[3]);
      r.fail(0, std::string("bad magic (bytes ") + hex + "), expected \"GGUF\": not a GGUF file");
    }
    r.u32("magic");
    version_ = r.u32("version");
    if (version_ != kGgufVersion) {
      std::string msg = "unsupported GGUF version " + std::to_string(version_) +
                        " (only version 3 is supported";
      if (version_ == 1 || version_ == 2)
        msg += "; GGUF v1/v2 files are not supported, re-convert the model with a current llama.cpp";
      else if (version_ == 0x03000000u)
        msg += "; this looks like a big-endian GGUF file, which is not supported";
      r.fail(4, msg + ")");
    }
    const size_t tc_at = r.pos();
    const uint64_t tensor_count = r.u64("tensor_count");
    const size_t kc_at = r.pos();
    const uint64_t kv_count = r.u64("metadata_kv_count");
    // Counts that could not fit even at one byte per item are corrupt, not truncated. Other
    // too-large counts end in a truncation error at the first item that is missing (a tensor
    // info takes at least 24 bytes, a kv pair 13, so the loops below end quickly).
    if (tensor_count > r.left())
      r.fail(tc_at, "tensor_count " + std::to_string(tensor_count) +
                        " is impossible for a file of " + std::to_string(map_size_) +
                        " bytes (corrupt header)");
    if (kv_count > r.left())
      r.fail(kc_at, "metadata_kv_count " + std::to_string(kv_count) +
                        " is impossible for a file of " + std::to_string(map_size_) +
                        " bytes (corrupt header)");

    // ---- metadata ----
    for (uint64_t i = 0; i < kv_count; ++i) {
      const size_t key_at = r.pos();
      std::string key = r.str("key of metadata pair " + std::to_string(i));
      const std::string what = "metadata key '" + key + "'";
      if (kv_.count(key)) r.fail(key_at, "duplicate " + what);
      const auto type = static_cast<GgufValueType>(read_value_type(r, what));
      kv_.emplace(std::move(key), read_value(r, type, what, 0));
    }
    alignment_ = kDefaultAlignment;
    if (has("general.alignment")) {
      alignment_ = get_uint("general.alignment");
      if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > (1u << 30))
        throw GgufError(path_ + ": general.alignment = " + std::to_string(alignment_) +
                        " is not a power of two (up to 2^30)");
    }

    // ---- tensor infos ----
    tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(tensor_count, r.left() / 24)));
    for (uint64_t i = 0; i < tensor_count; ++i) {
      const size_t info_at = r.pos();
      GgufTensorInfo t;
      t.name = r.str("name of tensor info " + std::to_string(i));
      const std::string what = "tensor info of '" + t.name + "'";
      if (tensor_index_.count(t.name)) r.fail_tensor(t.name, info_at, "duplicate tensor name");
      const size_t dims_at = r.pos();
      const uint32_t n_dims = r.u32("n_dims of " + what);
      if (n_dims > kMaxDims)
        r.fail_tensor(t.name, dims_at, "n_dims = " + std::to_string(n_dims) + " (at most " +
                                           std::to_string(kMaxDims) + " supported)");
      t.ne.resize(n_dims);
      t.n_elements = 1;
      for (uint32_t j = 0; j < n_dims; ++j) {
        const size_t ne_at = r.pos();
        t.ne[j] = r.u64("ne[" + std::to_string(j) + "] of " + what);
        if (t.ne[j] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
            __builtin_mul_overflow(t.n_elements, t.ne[j], &t.n_elements) ||
            t.n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          r.fail_tensor(t.name, ne_at, "element count overflows (ne[" + std::to_string(j) +
                                           "] = " + std::to_string(t.ne[j]) + ")");
      }
      const size_t type_at = r.pos();
      t.type = r.u32("type of " + what);
      const size_t bs = ggml_block_size(t.type), ts = ggml_type_size(t.type);
      if (bs == 0 || ts == 0)
        r.fail(type_at, "unsupported tensor type " + std::to_string(t.type) + " for tensor '" +
                            t.name + "'");
      const uint64_t row = n_dims > 0 ? t.ne[0] : 1;
      if (row % bs != 0)
        r.fail_tensor(t.name, type_at, std::string("row length ") + std::to_string(row) +
                                           " is not a multiple of the " +
                                           ggml_type_name(t.type) + " block size " +
                                           std::to_string(bs));
      if (__builtin_mul_overflow(t.n_elements / bs, static_cast<uint64_t>(ts), &t.n_bytes))
        r.fail_tensor(t.name, type_at, "byte size overflows");
      t.offset = r.u64("data offset of " + what);
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }

    // ---- data section ----
    const uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (GgufTensorInfo& t : tensors_) {
      if (t.offset % alignment_ != 0)
        r.fail_tensor(t.name, data_start + std::min<uint64_t>(t.offset, map_size_),
                      "data offset " + std::to_string(t.offset) + " is not a multiple of the " +
                          "alignment " + std::to_string(alignment_));
      const uint64_t room = data_start <= map_size_ ? map_size_ - data_start : 0;
      if (t.offset > room || t.n_bytes > room - t.offset) {
        // Report the absolute offset, saturating where a corrupt offset overflows.
        uint64_t at, end;
        if (__builtin_add_overflow(data_start, t.offset, &at)) at = UINT64_MAX;
        if (__builtin_add_overflow(at, t.n_bytes, &end)) end = UINT64_MAX;
        r.fail_tensor(t.name, at, "data extends past end of file (needs " +
                                      std::to_string(end) + " bytes, file has " +
                                      std::to_string(map_size_) + ")");
      }
      t.data = map_ + data_start + t.offset;
    }
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

// ---- metadata getters ------------------------------------------------------------------

namespace {
const GgufValue& lookup(const std::string& path, const std::map<std::string, GgufValue>& kv,
                        const std::string& key) {
  auto it = kv.find(key);
  if (it == kv.end()) throw GgufError(path + ": metadata key '" + key + "' not found");
  return it->second;
}
}  // namespace

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  if (const auto* u = std::get_if<uint64_t>(&v.v); u && is_int_type(v.type)) return *u;
  if (const auto* s = std::get_if<int64_t>(&v.v); s && is_int_type(v.type)) {
    if (*s < 0)
      throw GgufError(path_ + ": metadata key '" + key + "' is negative (" +
                      std::to_string(*s) + " of type " + describe_type(v) +
                      "), expected an unsigned integer");
    return static_cast<uint64_t>(*s);
  }
  bad_type(path_, key, v, "an integer");
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  if (const auto* d = std::get_if<double>(&v.v)) return *d;
  if (is_int_type(v.type)) {
    if (const auto* u = std::get_if<uint64_t>(&v.v)) return static_cast<double>(*u);
    if (const auto* s = std::get_if<int64_t>(&v.v)) return static_cast<double>(*s);
  }
  bad_type(path_, key, v, "a float");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  if (const auto* b = std::get_if<bool>(&v.v)) return *b;
  bad_type(path_, key, v, "bool");
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  if (const auto* s = std::get_if<std::string>(&v.v)) return *s;
  bad_type(path_, key, v, "string");
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  const auto* a = std::get_if<std::vector<GgufValue>>(&v.v);
  if (!a || v.elem_type != GgufValueType::STRING) bad_type(path_, key, v, "array of string");
  std::vector<std::string> out;
  out.reserve(a->size());
  for (const GgufValue& e : *a) out.push_back(std::get<std::string>(e.v));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = lookup(path_, kv_, key);
  const auto* a = std::get_if<std::vector<GgufValue>>(&v.v);
  if (!a || !is_int_type(v.elem_type)) bad_type(path_, key, v, "array of integers");
  std::vector<int64_t> out;
  out.reserve(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    const GgufValue& e = (*a)[i];
    if (const auto* s = std::get_if<int64_t>(&e.v)) {
      out.push_back(*s);
    } else {
      const uint64_t u = std::get<uint64_t>(e.v);
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw GgufError(path_ + ": metadata key '" + key + "': element " + std::to_string(i) +
                        " = " + std::to_string(u) + " does not fit in int64");
      out.push_back(static_cast<int64_t>(u));
    }
  }
  return out;
}

uint64_t GgufFile::get_uint_or(const std::string& key, uint64_t def) const {
  return has(key) ? get_uint(key) : def;
}
double GgufFile::get_float_or(const std::string& key, double def) const {
  return has(key) ? get_float(key) : def;
}
bool GgufFile::get_bool_or(const std::string& key, bool def) const {
  return has(key) ? get_bool(key) : def;
}

// ---- tensors ---------------------------------------------------------------------------

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) throw GgufError(path_ + ": no tensor named '" + name + "'");
  return *t;
}

std::vector<float> GgufFile::to_f32(const GgufTensorInfo& t) const {
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  to_f32(t, out.data());
  return out;
}

void GgufFile::to_f32(const GgufTensorInfo& t, float* out) const {
  if (!ggml_can_dequantize(t.type))
    throw GgufError(path_ + ": tensor '" + t.name + "': cannot dequantise type " +
                    ggml_type_name(t.type));
  const size_t bs = ggml_block_size(t.type), ts = ggml_type_size(t.type);
  if (t.data == nullptr || t.data < map_ || t.n_bytes > map_size_ ||
      static_cast<size_t>(t.data - map_) > map_size_ - t.n_bytes ||
      t.n_elements % bs != 0 || t.n_elements / bs * ts != t.n_bytes)
    throw GgufError(path_ + ": tensor '" + t.name + "' does not describe data in this file");
  const size_t n_blocks = static_cast<size_t>(t.n_elements / bs);
  // Chunks of ~64K elements. Threads only for big tensors (>= 4M elements, e.g. the token
  // embedding): a whole layer matrix dequantises in well under a millisecond on one core, less
  // than an OpenMP fork/join costs on a busy machine.
  const size_t chunk = std::max<size_t>(1, 65536 / bs);
  const int64_t n_chunks = static_cast<int64_t>((n_blocks + chunk - 1) / chunk);
  const uint8_t* src = t.data;
  const uint32_t type = t.type;
#pragma omp parallel for schedule(static) if (n_chunks >= 64)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const size_t b0 = static_cast<size_t>(c) * chunk;
    const size_t b1 = std::min(n_blocks, b0 + chunk);
    dequantize_row(type, src + b0 * ts, out + b0 * bs, (b1 - b0) * bs);
  }
}

}  // namespace cascade
