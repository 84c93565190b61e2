// The weight cache: a model's weights converted once into the layout the kernels read, kept in
// a file that every process on a node mmaps read-only, so that the ranks of a node share one
// copy through the page cache instead of holding one private copy each (DESIGN.md).
//
// Origin and key. The weights come from a GGUF file (dequantised; keyed by the file's sha256)
// or from a synthetic model's generator (synthetic.h; keyed by the sha256 of its spec: name,
// layers, seed, layout, generator version). Only the WeightOrigin differs; the file, its checks
// and its locking are the same.
//
// Name and place. `<stem>.<first 16 hex of the key>.<layout tag>.cache`, where the stem is the
// GGUF's basename or `synthetic-<name>-L<layers>`, e.g.
// SmolLM2-135M-Instruct.Q4_1.gguf.b179c9523d0e6a0f.f32.cache, in the first of
//   $CASCADE_CACHE_DIR (when set, the only place tried), the origin's home directory (the
//   GGUF's own directory; data/models/ under the source tree for a synthetic model),
//   $XDG_CACHE_HOME/cascade or else ~/.cache/cascade
// that holds a valid cache or where one can be built. With none, the weights are loaded into
// private memory (one warning line on stderr).
//
// File format, little-endian, version 1:
//   0    char magic[8]         "CASCWGT" NUL
//   8    u32  version          1
//   12   u32  alignment        64: every tensor's offset is a multiple of it
//   16   char layout[32]       how tensors are stored, NUL-padded: "f32 row-major v1"
//   48   u8   key_sha256[32]   the key: the GGUF file's sha256, or the synthetic spec's
//   80   u64  dims[9]          n_layer, d_model, n_head, n_head_kv, d_head, d_ff, n_vocab,
//                              n_ctx, tied_output
//   152  u64  file_size
//   160  u64  n_tensors
//   168  n_tensors × { char name[48], NUL-padded; u64 offset (from the file start);
//                      u64 n_elements }
//   ...  tensor data at the offsets, zero padding between
// Everything is checked on open (magic, version, layout, key, dims, file size, every table
// entry against the file and the expected tensors); a file that fails is rebuilt.
//
// Concurrency: the α ranks of a node start together. One builds the file: it holds an
// exclusive flock on `<cache>.lock` (the others poll it until a deadline, then fail with an
// error naming the lock), checks again for a valid cache, writes `<cache>.tmp.<pid>`, fsyncs
// and renames it into place. A crashed builder leaves a temporary file, which the next builder
// removes; its lock dies with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cascade/model_config.h"
#include "cascade/sha256.h"

namespace cascade {

class GgufFile;

class WeightCacheError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// How tensors are stored. `descriptor` goes in the header and must match on open; `tag` goes
// in the file name, so that caches of different layouts for one model live side by side.
// A packed layout (gemm_weights.h) names the library, its version, the ISA and the blocking.
struct WeightLayout {
  std::string tag;         // [A-Za-z0-9-]+
  std::string descriptor;  // at most 31 bytes
};
// fp32, row-major as GGUF stores it (ne[0] fastest); stacked tensors are their parts' rows one
// after the other. Change the descriptor whenever what a cached tensor holds changes.
inline const WeightLayout kLayoutF32{"f32", "f32 row-major v1"};

// One tensor of a store and how it is made: the rows of GGUF tensors, one after the other
// (a single part for a plain tensor). Each part is checked to have shape ne = [ne0, ne1].
// A synthetic model has no GGUF: it generates each part's values from the part's name.
struct WeightPart {
  std::string gguf_name;
  uint64_t ne0 = 0, ne1 = 1;
};
struct WeightSpec {
  std::string name;  // at most 47 bytes
  std::vector<WeightPart> parts;
  uint64_t n_elements() const;
};

// A tensor's place in a store: byte offset from the start of the store, element count.
struct WeightEntry {
  std::string name;
  uint64_t offset = 0;
  uint64_t n_elements = 0;
};

// The weights of one model in one block of memory: a read-only shared mapping of a cache file,
// or a private anonymous mapping. Unmapped when the last owner lets go.
class WeightStore {
 public:
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // The tensor `name`, which must hold n_elements floats; throws WeightCacheError otherwise.
  const float* tensor(const std::string& name, uint64_t n_elements) const;
  const std::vector<WeightEntry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }  // the cache file; "" for private memory
  bool file_backed() const { return !path_.empty(); }
  // The key in the header (all zero for private memory): what the cache file is named after.
  Sha256 key() const;
  const uint8_t* data() const { return base_; }  // the whole mapping, header included
  size_t size() const { return size_; }

 private:
  WeightStore(uint8_t* base, size_t size, std::string path, std::vector<WeightEntry> entries);
  friend class WeightStoreMaker;

  uint8_t* base_;
  size_t size_;
  std::string path_;
  std::vector<WeightEntry> entries_;
};

enum class WeightSource {
  cache,   // mmap the node's cache file, building it first where needed (the default)
  memory,  // dequantise into this process's private memory; no file is read or written
};

struct WeightLoadOptions {
  WeightSource source = WeightSource::cache;
  std::string cache_dir;  // "" → the search order above; else only this directory
  // Longest wait for another process's build, in seconds; 0 → $CASCADE_CACHE_LOCK_TIMEOUT, or 300.
  double lock_timeout_s = 0;

  WeightLoadOptions() = default;
  // Implicit, so that a source alone reads naturally: Model::load(path, WeightSource::memory).
  WeightLoadOptions(WeightSource s) : source(s) {}
};

// Where a store's tensors come from, and the key of its cache file (see the top of this file).
struct WeightOrigin {
  std::string label;      // names the weights in messages: the GGUF path, or the synthetic spec
  std::string file_stem;  // the cache file: <file_stem>.<16 hex of the key>.<layout tag>.cache
  std::string home_dir;   // tried first after $CASCADE_CACHE_DIR
  std::string verb = "dequantised";  // what `fill` does, in the line printed after a build:
                                     // "weights: <verb> to <path> (<size>) in <time>"
  // The key. Called only when a cache file is used, since it may be slow (hashing a GGUF file):
  // its time is WeightLoadReport::hash_s.
  std::function<Sha256()> key;
  // Writes the ne0·ne1 floats of `part` at `out`.
  std::function<void(const WeightPart& part, float* out)> fill;
  WeightLayout layout = kLayoutF32;  // what `fill` writes
};

// A GGUF file's weights, dequantised; keyed by its sha256. Holds a reference to `gguf`.
WeightOrigin gguf_weight_origin(const GgufFile& gguf);

// What a load did (for tests, benchmarks and reports).
struct WeightLoadReport {
  std::string cache_path;       // the file mapped; "" when in private memory
  bool built = false;           // this call made the weights (dequantised or generated) and wrote cache_path
  std::string rebuilt_because;  // why an existing file at cache_path was replaced ("" if none was)
  bool fell_back = false;       // WeightSource::cache, but no usable location: private memory
  uint64_t bytes = 0;           // size of the store (the weights plus the header)
  double hash_s = 0;            // computing the key (hashing the GGUF file)
  double build_s = 0;           // dequantising or generating, and writing (0 when reused)
  double total_s = 0;
};

// The tensors of `specs` from `origin`, as `opt` says. Prints one line on stderr when it builds
// a cache file (and why, when it replaces one), and when it falls back to private memory.
std::shared_ptr<const WeightStore> load_weights(const WeightOrigin& origin, const ModelConfig& cfg,
                                                const std::vector<WeightSpec>& specs,
                                                const WeightLoadOptions& opt = {},
                                                WeightLoadReport* report = nullptr);
// The same from a GGUF file, after checking every part's shape (errors name the tensor).
std::shared_ptr<const WeightStore> load_weights(const GgufFile& gguf, const ModelConfig& cfg,
                                                const std::vector<WeightSpec>& specs,
                                                const WeightLoadOptions& opt = {},
                                                WeightLoadReport* report = nullptr);

// `<basename of stem_or_path>.<first 16 hex of the key>.<layout tag>.cache`
std::string weight_cache_file_name(const std::string& stem_or_path, const std::string& sha256_hex,
                                   const WeightLayout& layout = kLayoutF32);

// The directories tried, in order: $CASCADE_CACHE_DIR alone when set; else `home_dir`, then
// $XDG_CACHE_HOME/cascade or ~/.cache/cascade.
std::vector<std::string> weight_cache_dirs_from(const std::string& home_dir);
// The same for a GGUF file: its home is its own directory.
std::vector<std::string> weight_cache_dirs(const std::string& model_path);

}  // namespace cascade
