// The weight cache (format, search order and locking: include/cascade/weight_cache.h).
#include "cascade/weight_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <utility>

#include "cascade/gguf.h"
#include "cascade/sha256.h"

namespace cascade {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the weight cache is written in host order, which must be little-endian");

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr char kMagic[8] = {'C', 'A', 'S', 'C', 'W', 'G', 'T', '\0'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kAlignment = 64;  // a cache line; AVX-512 loads of a row start aligned
constexpr double kDefaultLockTimeoutS = 300;
constexpr int kNumDims = 9;

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t alignment;
  char layout[32];
  uint8_t key_sha256[32];
  uint64_t dims[kNumDims];
  uint64_t file_size;
  uint64_t n_tensors;
};
struct FileEntry {
  char name[48];
  uint64_t offset;
  uint64_t n_elements;
};
static_assert(sizeof(FileHeader) == 168 && offsetof(FileHeader, layout) == 16 &&
                  offsetof(FileHeader, key_sha256) == 48 && offsetof(FileHeader, dims) == 80 &&
                  offsetof(FileHeader, file_size) == 152,
              "header layout as documented");
static_assert(sizeof(FileEntry) == 64, "table entry layout as documented");

const char* const kDimNames[kNumDims] = {"n_layer", "d_model", "n_head", "n_head_kv", "d_head",
                                         "d_ff",    "n_vocab", "n_ctx",  "tied_output"};

uint64_t align_up(uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; }

std::string mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, bytes < 10000000 ? "%.2f MB" : "%.0f MB", bytes / 1e6);
  return buf;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// A mapping, unmapped on destruction unless released.
struct Region {
  uint8_t* base = nullptr;
  size_t size = 0;
  Region() = default;
  Region(uint8_t* b, size_t s) : base(b), size(s) {}
  Region(Region&& o) noexcept : base(o.base), size(o.size) { o.base = nullptr; }
  Region& operator=(Region&& o) noexcept {
    std::swap(base, o.base);
    std::swap(size, o.size);
    return *this;
  }
  ~Region() {
    if (base) ::munmap(base, size);
  }
};

// Everything the file must contain for this model: the header and the tensor table.
struct Expected {
  FileHeader header{};
  std::vector<WeightEntry> entries;
};

Expected expected_cache(const WeightLayout& layout, const Sha256& key, const ModelConfig& c,
                        const std::vector<WeightSpec>& specs) {
  Expected x;
  FileHeader& h = x.header;
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.alignment = kAlignment;
  std::strncpy(h.layout, layout.descriptor.c_str(), sizeof h.layout - 1);
  std::memcpy(h.key_sha256, key.data(), key.size());
  const int64_t dims[kNumDims] = {c.n_layer, c.d_model, c.n_head, c.n_head_kv, c.d_head,
                                  c.d_ff,    c.n_vocab, c.n_ctx,  c.tied_output ? 1 : 0};
  for (int i = 0; i < kNumDims; ++i) h.dims[i] = static_cast<uint64_t>(dims[i]);
  h.n_tensors = specs.size();
  uint64_t off = align_up(sizeof(FileHeader) + specs.size() * sizeof(FileEntry));
  for (const WeightSpec& s : specs) {
    if (s.name.empty() || s.name.size() >= sizeof(FileEntry::name))
      throw WeightCacheError("weight tensor name '" + s.name + "' must have 1 to " +
                             std::to_string(sizeof(FileEntry::name) - 1) + " bytes");
    x.entries.push_back({s.name, off, s.n_elements()});
    off = align_up(off + s.n_elements() * sizeof(float));
  }
  h.file_size = off;
  return x;
}

// Writes the header, the table and every tensor into `base` (x.header.file_size bytes, zeroed).
void fill_store(const WeightOrigin& origin, const std::vector<WeightSpec>& specs, const Expected& x,
                uint8_t* base) {
  std::memcpy(base, &x.header, sizeof x.header);
  for (size_t i = 0; i < x.entries.size(); ++i) {
    FileEntry e{};
    std::memcpy(e.name, x.entries[i].name.data(), x.entries[i].name.size());
    e.offset = x.entries[i].offset;
    e.n_elements = x.entries[i].n_elements;
    std::memcpy(base + sizeof(FileHeader) + i * sizeof(FileEntry), &e, sizeof e);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    float* out = reinterpret_cast<float*>(base + x.entries[i].offset);
    for (const WeightPart& p : specs[i].parts) {
      origin.fill(p, out);
      out += p.ne0 * p.ne1;
    }
  }
}

// "" when the `size` bytes at `p` are a valid cache for `x`; otherwise what is wrong.
std::string check_cache(const uint8_t* p, size_t size, const Expected& x) {
  const FileHeader& want = x.header;
  if (size < sizeof(FileHeader))
    return "truncated: " + std::to_string(size) + " bytes, smaller than the " +
           std::to_string(sizeof(FileHeader)) + "-byte header";
  FileHeader h;
  std::memcpy(&h, p, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    return "bad magic: not a Cascade weight cache";
  if (h.version != kVersion)
    return "format version " + std::to_string(h.version) + ", expected " + std::to_string(kVersion);
  if (h.alignment != want.alignment)
    return "alignment " + std::to_string(h.alignment) + ", expected " +
           std::to_string(want.alignment);
  if (std::memchr(h.layout, 0, sizeof h.layout) == nullptr)
    return "layout field is not NUL-terminated";
  if (std::strcmp(h.layout, want.layout) != 0)
    return std::string("layout '") + h.layout + "', expected '" + want.layout + "'";
  if (std::memcmp(h.key_sha256, want.key_sha256, sizeof h.key_sha256) != 0)
    return "made from another model (key " + to_hex(h.key_sha256, 32) + ", this model's is " +
           to_hex(want.key_sha256, 32) + ")";
  for (int i = 0; i < kNumDims; ++i)
    if (h.dims[i] != want.dims[i])
      return std::string(kDimNames[i]) + " = " + std::to_string(h.dims[i]) + ", the model's is " +
             std::to_string(want.dims[i]);
  if (h.file_size != size)
    return (size < h.file_size ? "truncated: " : "wrong size: ") + std::to_string(size) +
           " bytes, the header says " + std::to_string(h.file_size);
  if (h.file_size != want.file_size)
    return "file size " + std::to_string(h.file_size) + ", expected " +
           std::to_string(want.file_size);
  if (h.n_tensors != want.n_tensors)
    return std::to_string(h.n_tensors) + " tensors, expected " + std::to_string(want.n_tensors);
  if (sizeof(FileHeader) + h.n_tensors * sizeof(FileEntry) > size)
    return "the tensor table runs past the end of the file";
  for (uint64_t i = 0; i < h.n_tensors; ++i) {
    FileEntry e;
    std::memcpy(&e, p + sizeof(FileHeader) + i * sizeof(FileEntry), sizeof e);
    const WeightEntry& w = x.entries[i];
    const std::string at = "tensor " + std::to_string(i) + " ('" + w.name + "')";
    if (std::memchr(e.name, 0, sizeof e.name) == nullptr)
      return at + ": name is not NUL-terminated";
    if (e.name != w.name) return at + ": named '" + std::string(e.name) + "'";
    if (e.n_elements != w.n_elements)
      return at + ": " + std::to_string(e.n_elements) + " elements, expected " +
             std::to_string(w.n_elements);
    if (e.offset % kAlignment != 0 || e.offset > size ||
        e.n_elements > (size - e.offset) / sizeof(float))
      return at + ": offset " + std::to_string(e.offset) + " with " + std::to_string(e.n_elements) +
             " floats is not an aligned range inside the file";
    if (e.offset != w.offset)
      return at + ": at offset " + std::to_string(e.offset) + ", expected " +
             std::to_string(w.offset);
  }
  return "";
}

// The valid cache at `path` (mapped read-only, shared), or why there is none.
struct Probe {
  Region region;
  bool missing = false;  // no file at all
  std::string why;       // why the file there cannot be used
};

Probe probe_cache(const std::string& path, const Expected& x) {
  Probe r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.missing = errno == ENOENT || errno == ENOTDIR;
    r.why = std::string("cannot open: ") + std::strerror(errno);
    return r;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    r.why = "not a regular file";
    return r;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    r.why = "truncated: empty file";
    return r;
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) {
    r.why = std::string("cannot mmap: ") + std::strerror(e);
    return r;
  }
  Region region(static_cast<uint8_t*>(p), size);
  r.why = check_cache(region.base, region.size, x);
  if (r.why.empty()) r.region = std::move(region);
  return r;
}

// A location that cannot hold the cache (not writable, full, no locking): try the next one.
struct Unusable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An open lock file; the flock (if taken) is released when the descriptor closes.
struct LockFile {
  int fd = -1;
  ~LockFile() {
    if (fd >= 0) ::close(fd);
  }
};

// Exclusive flock on `lock_path`, polled until `timeout_s` has passed.
void take_lock(LockFile& lock, const std::string& lock_path, double timeout_s) {
  lock.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock.fd < 0)
    throw Unusable("cannot create the lock file: " + std::string(std::strerror(errno)));
  const auto t0 = clock_type::now();
  auto pause = std::chrono::milliseconds(10);
  while (::flock(lock.fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK)
      throw Unusable("cannot lock " + lock_path + ": " + std::strerror(errno));
    if (seconds_since(t0) >= timeout_s) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", timeout_s);
      throw WeightCacheError("weights: timed out after " + std::string(secs) +
                             " s waiting for the lock " + lock_path +
                             ": another process holds it (building the weight cache, or stuck); "
                             "set $CASCADE_CACHE_LOCK_TIMEOUT to wait longer, or "
                             "$CASCADE_CACHE_DIR to use another place");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

// Removes temporaries of earlier builders of `path` (only the lock holder writes one, so with
// the lock held every one left is stale).
void remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  for (const fs::directory_entry& d : fs::directory_iterator(p.parent_path(), ec)) {
    const std::string name = d.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0) fs::remove(d.path(), ec);
  }
}

// Writes the cache at `path` through a temporary file in the same directory and an atomic rename.
void write_cache(const WeightOrigin& origin, const std::vector<WeightSpec>& specs,
                 const Expected& x, const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const size_t size = x.header.file_size;
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Unusable("cannot create " + tmp + ": " + std::strerror(errno));
  try {
    // Reserve the blocks up front: a full disk must be an error here, not a SIGBUS on a store
    // through the mapping.
    if (const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); rc != 0)
      throw Unusable("cannot reserve " + mb(size) + " for " + tmp + ": " + std::strerror(rc));
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw Unusable("cannot mmap " + tmp + ": " + std::strerror(errno));
    {
      Region region(static_cast<uint8_t*>(p), size);
      fill_store(origin, specs, x, region.base);
      if (::msync(region.base, size, MS_SYNC) != 0)
        throw Unusable("cannot write " + tmp + ": " + std::strerror(errno));
    }
    if (::fsync(fd) != 0) throw Unusable("cannot fsync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Unusable("cannot rename " + tmp + " to " + path + ": " + std::strerror(e));
  }
  // The rename itself must reach the disk too (best effort: some file systems refuse).
  const int dfd = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

double lock_timeout(const WeightLoadOptions& opt) {
  if (opt.lock_timeout_s > 0) return opt.lock_timeout_s;
  const char* env = std::getenv("CASCADE_CACHE_LOCK_TIMEOUT");
  if (!env || !*env) return kDefaultLockTimeoutS;
  char* end = nullptr;
  const double t = std::strtod(env, &end);
  if (end == env || *end != '\0' || !(t > 0) || !std::isfinite(t))
    throw WeightCacheError(std::string("$CASCADE_CACHE_LOCK_TIMEOUT = '") + env +
                           "' is not a positive number of seconds");
  return t;
}

// Throws GgufError naming the tensor when a part is missing or has another shape.
void check_parts(const GgufFile& g, const std::vector<WeightSpec>& specs) {
  for (const WeightSpec& s : specs)
    for (const WeightPart& p : s.parts) {
      const GgufTensorInfo& t = g.tensor(p.gguf_name);
      const uint64_t got1 = t.ne.size() > 1 ? t.ne[1] : 1;
      if (t.ne.empty() || t.ne[0] != p.ne0 || got1 != p.ne1 || t.n_elements != p.ne0 * p.ne1)
        throw GgufError(g.path() + ": tensor '" + p.gguf_name + "' has shape [" +
                        std::to_string(t.ne.empty() ? 0 : t.ne[0]) + ", " + std::to_string(got1) +
                        "], expected [" + std::to_string(p.ne0) + ", " + std::to_string(p.ne1) +
                        "]");
    }
}

}  // namespace

uint64_t WeightSpec::n_elements() const {
  uint64_t n = 0;
  for (const WeightPart& p : parts) n += p.ne0 * p.ne1;
  return n;
}

// ---- WeightStore -----------------------------------------------------------------------

WeightStore::WeightStore(uint8_t* base, size_t size, std::string path,
                         std::vector<WeightEntry> entries)
    : base_(base), size_(size), path_(std::move(path)), entries_(std::move(entries)) {}

WeightStore::~WeightStore() {
  if (base_) ::munmap(base_, size_);
}

Sha256 WeightStore::key() const {
  Sha256 k;
  std::memcpy(k.data(), base_ + offsetof(FileHeader, key_sha256), k.size());
  return k;
}

const float* WeightStore::tensor(const std::string& name, uint64_t n_elements) const {
  for (const WeightEntry& e : entries_)
    if (e.name == name) {
      if (e.n_elements != n_elements)
        throw WeightCacheError((path_.empty() ? std::string("weights") : path_) + ": tensor '" +
                               name + "' has " + std::to_string(e.n_elements) +
                               " elements, expected " + std::to_string(n_elements));
      return reinterpret_cast<const float*>(base_ + e.offset);
    }
  throw WeightCacheError((path_.empty() ? std::string("weights") : path_) + ": no tensor '" + name +
                         "'");
}

// The only maker of stores: takes over a mapping.
class WeightStoreMaker {
 public:
  static std::shared_ptr<const WeightStore> make(Region&& r, std::string path,
                                                 std::vector<WeightEntry> entries) {
    std::shared_ptr<const WeightStore> s(
        new WeightStore(r.base, r.size, std::move(path), std::move(entries)));
    r.base = nullptr;
    return s;
  }
};

// ---- locations ---------------------------------------------------------------------------

std::string weight_cache_file_name(const std::string& stem_or_path, const std::string& sha256_hex,
                                   const WeightLayout& layout) {
  return fs::path(stem_or_path).filename().string() + "." + sha256_hex.substr(0, 16) + "." +
         layout.tag + ".cache";
}

namespace {
// The directory of a file's path ("." for a bare name).
std::string directory_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}
}  // namespace

std::vector<std::string> weight_cache_dirs(const std::string& model_path) {
  return weight_cache_dirs_from(directory_of(model_path));
}

std::vector<std::string> weight_cache_dirs_from(const std::string& home_dir) {
  if (const char* env = std::getenv("CASCADE_CACHE_DIR"); env && *env) return {env};
  std::vector<std::string> dirs{home_dir};
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    dirs.push_back((fs::path(xdg) / "cascade").string());
  else if (const char* home = std::getenv("HOME"); home && *home)
    dirs.push_back((fs::path(home) / ".cache" / "cascade").string());
  return dirs;
}

// ---- loading -----------------------------------------------------------------------------

WeightOrigin gguf_weight_origin(const GgufFile& g) {
  WeightOrigin o;
  o.label = g.path();
  o.file_stem = fs::path(g.path()).filename().string();
  o.home_dir = directory_of(g.path());
  o.verb = "dequantised";
  o.key = [&g] { return sha256_file(g.path()); };
  o.fill = [&g](const WeightPart& p, float* out) { g.to_f32(g.tensor(p.gguf_name), out); };
  return o;
}

std::shared_ptr<const WeightStore> load_weights(const GgufFile& g, const ModelConfig& cfg,
                                                const std::vector<WeightSpec>& specs,
                                                const WeightLoadOptions& opt,
                                                WeightLoadReport* report) {
  check_parts(g, specs);
  return load_weights(gguf_weight_origin(g), cfg, specs, opt, report);
}

std::shared_ptr<const WeightStore> load_weights(const WeightOrigin& origin, const ModelConfig& cfg,
                                                const std::vector<WeightSpec>& specs,
                                                const WeightLoadOptions& opt,
                                                WeightLoadReport* report) {
  if (!origin.key || !origin.fill)
    throw std::invalid_argument("load_weights: the origin of " + origin.label + " lacks its key or fill");
  if (origin.layout.descriptor.size() >= sizeof(FileHeader::layout))
    throw std::invalid_argument("load_weights: layout descriptor '" + origin.layout.descriptor + "' is too long");
  const auto t0 = clock_type::now();
  WeightLoadReport rep;

  auto in_memory = [&]() {
    const Expected x = expected_cache(origin.layout, Sha256{}, cfg, specs);
    const size_t size = x.header.file_size;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw WeightCacheError(origin.label + ": cannot allocate " + mb(size) +
                             " for the weights: " + std::strerror(errno));
    Region region(static_cast<uint8_t*>(p), size);
    const auto tb = clock_type::now();
    fill_store(origin, specs, x, region.base);
    ::mprotect(region.base, size, PROT_READ);  // as read-only as the shared mapping
    rep.build_s = seconds_since(tb);
    rep.bytes = size;
    return WeightStoreMaker::make(std::move(region), "", x.entries);
  };
  auto finish = [&](std::shared_ptr<const WeightStore> s) {
    rep.total_s = seconds_since(t0);
    if (report) *report = rep;
    return s;
  };

  if (opt.source == WeightSource::memory) return finish(in_memory());

  const double timeout_s = lock_timeout(opt);
  const auto th = clock_type::now();
  const Sha256 key = origin.key();
  rep.hash_s = seconds_since(th);
  const Expected x = expected_cache(origin.layout, key, cfg, specs);
  const std::string name = weight_cache_file_name(origin.file_stem, to_hex(key), origin.layout);
  const std::vector<std::string> dirs = opt.cache_dir.empty()
                                            ? weight_cache_dirs_from(origin.home_dir)
                                            : std::vector<std::string>{opt.cache_dir};

  std::string tried;  // "dir: why; ..." for the fallback warning
  for (const std::string& dir : dirs) {
    const std::string path = (fs::path(dir) / name).string();
    try {
      Probe pr = probe_cache(path, x);
      if (pr.region.base) {  // the common case: another process (or run) built it
        rep.cache_path = path;
        rep.bytes = pr.region.size;
        return finish(WeightStoreMaker::make(std::move(pr.region), path, x.entries));
      }
      const std::string found = pr.missing ? "" : "found an unusable cache (" + pr.why + "), ";
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) throw Unusable(found + "cannot create the directory: " + ec.message());
      LockFile lock;
      try {
        take_lock(lock, path + ".lock", timeout_s);
      } catch (const Unusable& e) {
        throw Unusable(found + e.what());
      }
      pr = probe_cache(path, x);  // built while we waited?
      if (pr.region.base) {
        rep.cache_path = path;
        rep.bytes = pr.region.size;
        return finish(WeightStoreMaker::make(std::move(pr.region), path, x.entries));
      }
      if (!pr.missing) {
        rep.rebuilt_because = pr.why;
        std::fprintf(stderr, "weights: cache %s is unusable (%s); rebuilding it\n", path.c_str(),
                     pr.why.c_str());
      }
      remove_stale_temporaries(path);
      const auto tb = clock_type::now();
      write_cache(origin, specs, x, path);
      rep.build_s = seconds_since(tb);
      pr = probe_cache(path, x);
      if (!pr.region.base)
        throw WeightCacheError(path + ": the cache just written does not validate: " + pr.why);
      rep.built = true;
      rep.cache_path = path;
      rep.bytes = pr.region.size;
      std::fprintf(stderr, "weights: %s to %s (%s) in %.1f s\n", origin.verb.c_str(), path.c_str(),
                   mb(rep.bytes).c_str(), rep.build_s);
      return finish(WeightStoreMaker::make(std::move(pr.region), path, x.entries));
    } catch (const Unusable& e) {
      tried += (tried.empty() ? "" : "; ") + dir + ": " + e.what();
    }
  }
  rep.fell_back = true;
  std::shared_ptr<const WeightStore> s = in_memory();
  std::fprintf(stderr,
               "weights: warning: no usable weight cache location (%s); %s into private "
               "memory instead (%s in this process)\n",
               tried.c_str(), origin.verb.c_str(), mb(s->size()).c_str());
  return finish(std::move(s));
}

}  // namespace cascade
