// Traces on disk: HDF5 (C API), the layout documented in include/cascade/trace.h. Only rank 0
// writes, so the parallel HDF5 library is used serially: no collective call anywhere.
#include "cascade/trace_io.h"

#include <hdf5.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <chrono>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "../util/hdf5_handle.h"

namespace cascade {
namespace {

using Handle = H5Handle;

class File {
 public:
  File(const std::string& path, hid_t id) : path_(path), h_(id, H5Fclose) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw TraceFileError("trace file '" + path_ + "': " + what);
  }
  void check(herr_t rc, const std::string& what) const {
    if (rc < 0) fail(what);
  }
  hid_t id() const { return h_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  Handle h_;
};

// ---- compound types (HDF5 field names are the C++ member names) ----------------------------

Handle span_type() {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(Span));
  H5Tinsert(t, "step", HOFFSET(Span, step), H5T_NATIVE_INT32);
  H5Tinsert(t, "layer", HOFFSET(Span, layer), H5T_NATIVE_INT32);
  H5Tinsert(t, "kind", HOFFSET(Span, kind), H5T_NATIVE_INT32);
  H5Tinsert(t, "t_start", HOFFSET(Span, t_start), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "t_end", HOFFSET(Span, t_end), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "cpu_s", HOFFSET(Span, cpu_s), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "flops", HOFFSET(Span, flops), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "mem_bytes", HOFFSET(Span, mem_bytes), H5T_NATIVE_DOUBLE);
  return Handle(t, H5Tclose);
}

Handle message_type() {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(MessageEvent));
  H5Tinsert(t, "direction", HOFFSET(MessageEvent, direction), H5T_NATIVE_INT32);
  H5Tinsert(t, "peer", HOFFSET(MessageEvent, peer), H5T_NATIVE_INT32);
  H5Tinsert(t, "step", HOFFSET(MessageEvent, step), H5T_NATIVE_INT32);
  H5Tinsert(t, "layer", HOFFSET(MessageEvent, layer), H5T_NATIVE_INT32);
  H5Tinsert(t, "channel", HOFFSET(MessageEvent, channel), H5T_NATIVE_INT32);
  H5Tinsert(t, "kinds", HOFFSET(MessageEvent, kinds), H5T_NATIVE_INT32);
  H5Tinsert(t, "seq", HOFFSET(MessageEvent, seq), H5T_NATIVE_UINT64);
  H5Tinsert(t, "wire_bytes", HOFFSET(MessageEvent, wire_bytes), H5T_NATIVE_UINT64);
  H5Tinsert(t, "payload_bytes", HOFFSET(MessageEvent, payload_bytes), H5T_NATIVE_UINT64);
  H5Tinsert(t, "t_post", HOFFSET(MessageEvent, t_post), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "t_complete", HOFFSET(MessageEvent, t_complete), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "post_span", HOFFSET(MessageEvent, post_span), H5T_NATIVE_INT64);
  H5Tinsert(t, "complete_span", HOFFSET(MessageEvent, complete_span), H5T_NATIVE_INT64);
  return Handle(t, H5Tclose);
}

Handle view_part_type() {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(ViewPart));
  H5Tinsert(t, "message", HOFFSET(ViewPart, message), H5T_NATIVE_INT64);
  H5Tinsert(t, "kind", HOFFSET(ViewPart, kind), H5T_NATIVE_INT32);
  H5Tinsert(t, "positions_offset", HOFFSET(ViewPart, positions_offset), H5T_NATIVE_UINT64);
  H5Tinsert(t, "n_positions", HOFFSET(ViewPart, n_positions), H5T_NATIVE_UINT64);
  H5Tinsert(t, "data_offset", HOFFSET(ViewPart, data_offset), H5T_NATIVE_UINT64);
  H5Tinsert(t, "bytes", HOFFSET(ViewPart, bytes), H5T_NATIVE_UINT64);
  return Handle(t, H5Tclose);
}

// One row of /schedule/parties.
struct PartyRow {
  int32_t rank, kind, k, a, b, observed;
  double fraction;
  int32_t gap, shortest_hole, longest_run, generated;
};

Handle party_type() {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(PartyRow));
  H5Tinsert(t, "rank", HOFFSET(PartyRow, rank), H5T_NATIVE_INT32);
  H5Tinsert(t, "kind", HOFFSET(PartyRow, kind), H5T_NATIVE_INT32);
  H5Tinsert(t, "k", HOFFSET(PartyRow, k), H5T_NATIVE_INT32);
  H5Tinsert(t, "a", HOFFSET(PartyRow, a), H5T_NATIVE_INT32);
  H5Tinsert(t, "b", HOFFSET(PartyRow, b), H5T_NATIVE_INT32);
  H5Tinsert(t, "observed", HOFFSET(PartyRow, observed), H5T_NATIVE_INT32);
  H5Tinsert(t, "fraction", HOFFSET(PartyRow, fraction), H5T_NATIVE_DOUBLE);
  H5Tinsert(t, "gap", HOFFSET(PartyRow, gap), H5T_NATIVE_INT32);
  H5Tinsert(t, "shortest_hole", HOFFSET(PartyRow, shortest_hole), H5T_NATIVE_INT32);
  H5Tinsert(t, "longest_run", HOFFSET(PartyRow, longest_run), H5T_NATIVE_INT32);
  H5Tinsert(t, "generated", HOFFSET(PartyRow, generated), H5T_NATIVE_INT32);
  return Handle(t, H5Tclose);
}

// ---- writing -----------------------------------------------------------------------------

Handle group(const File& f, hid_t parent, const std::string& name) {
  Handle g(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.ok()) f.fail("cannot create group " + name);
  return g;
}

// A 1-D dataset of `n` elements of `type` (n may be 0).
void dataset(const File& f, hid_t parent, const std::string& name, hid_t type, const void* data, uint64_t n) {
  const hsize_t dims[1] = {n};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Handle d(H5Dcreate2(parent, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!d.ok()) f.fail("cannot create dataset " + name);
  static const char empty = 0;
  f.check(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, n ? data : &empty), "cannot write dataset " + name);
}

void attr_raw(const File& f, hid_t obj, const std::string& name, hid_t type, const void* data, hsize_t n) {
  Handle space(n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle a(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok()) f.fail("cannot create attribute " + name);
  f.check(H5Awrite(a, type, data), "cannot write attribute " + name);
}
void attr(const File& f, hid_t obj, const std::string& name, int64_t v) {
  attr_raw(f, obj, name, H5T_NATIVE_INT64, &v, 0);
}
void attr(const File& f, hid_t obj, const std::string& name, double v) {
  attr_raw(f, obj, name, H5T_NATIVE_DOUBLE, &v, 0);
}
void attr(const File& f, hid_t obj, const std::string& name, const std::string& v) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  const char* p = v.c_str();
  attr_raw(f, obj, name, t, &p, 0);
}
void attr(const File& f, hid_t obj, const std::string& name, const std::vector<std::string>& v) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  std::vector<const char*> p;
  for (const std::string& s : v) p.push_back(s.c_str());
  const hsize_t n = p.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle a(H5Acreate2(obj, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok()) f.fail("cannot create attribute " + name);
  static const char* none = "";
  f.check(H5Awrite(a, t, n ? p.data() : &none), "cannot write attribute " + name);
}
void attr(const File& f, hid_t obj, const std::string& name, const std::vector<int32_t>& v) {
  attr_raw(f, obj, name, H5T_NATIVE_INT32, v.data(), v.size());
}

void write_meta(const File& f, const Trace& t) {
  const TraceMeta& m = t.meta;
  const Schedule& s = t.schedule;
  Handle g = group(f, f.id(), "meta");
  attr(f, g, "trace_version", (int64_t)kTraceVersion);
  attr(f, g, "complete", (int64_t)m.complete);
  if (!m.complete) attr(f, g, "error", m.error);
  attr(f, g, "views", (int64_t)m.views);
  attr(f, g, "cascade_version", m.cascade_version);
  attr(f, g, "git_commit", m.git_commit);
  attr(f, g, "start_time", m.start_time);
  attr(f, g, "command_line", m.command_line);
  attr(f, g, "model_name", m.model_name);
  attr(f, g, "model_source", m.model_source);
  attr(f, g, "model_sha256", m.model_sha256);
  const ModelShape& sh = s.shape;
  attr(f, g, "model_shape", std::vector<int32_t>{sh.n_layer, sh.d_model, sh.n_head, sh.n_head_kv, sh.d_head, sh.n_vocab});
  attr(f, g, "model_family", std::string(family_name(sh.family)));
  attr(f, g, "d_ff", (int64_t)m.d_ff);
  attr(f, g, "n_prompt", (int64_t)s.n_prompt);
  attr(f, g, "n_positions", (int64_t)s.n_positions);
  attr(f, g, "n_generated", (int64_t)m.n_generated);
  attr(f, g, "alpha", (int64_t)s.alpha);
  attr(f, g, "beta", (int64_t)s.beta);
  attr(f, g, "c", (int64_t)s.c);
  attr(f, g, "delta", (int64_t)s.delta);
  attr(f, g, "seed", (int64_t)s.seed);
  attr(f, g, "strategy", s.strategy);
  attr(f, g, "attn_sharding", std::string(attn_sharding_name(s.attn_sharding)));
  attr(f, g, "lm_head", std::string(lm_head_name(s.lm_head)));
  attr(f, g, "rho", (int64_t)m.rho);
  attr(f, g, "backend", m.backend);
  attr(f, g, "transport", m.transport);
  attr(f, g, "wire_precision", m.wire_precision);
  attr(f, g, "world_size", (int64_t)m.world_size);
  attr(f, g, "hosts", m.hosts);
  attr(f, g, "bytes_sent", (int64_t)m.bytes_sent);
  attr(f, g, "bytes_received", (int64_t)m.bytes_received);
  attr(f, g, "bytes_predicted", (int64_t)m.bytes_predicted);
}

void write_schedule(const File& f, const Trace& t) {
  const Schedule& s = t.schedule;
  Handle g = group(f, f.id(), "schedule");
  dataset(f, g, "comp", H5T_NATIVE_INT32, s.comp.data(), s.comp.size());
  dataset(f, g, "att", H5T_NATIVE_INT32, s.att.data(), s.att.size());
  const ExposureReport rep = compute_exposure(s, std::max(1, t.meta.rho));
  std::vector<PartyRow> rows;
  for (const PartyExposure& e : rep.parties)
    rows.push_back({e.rank, e.role.kind == RankRole::comp ? 1 : 2, e.role.k, e.role.a, e.role.b, e.observed,
                    e.fraction, e.gap, e.shortest_hole, e.longest_run, e.generated});
  Handle type = party_type();
  dataset(f, g, "parties", type, rows.data(), rows.size());
}

void write_rank(const File& f, hid_t ranks, const RankTrace& r, bool views) {
  Handle g = group(f, ranks, std::to_string(r.rank));
  attr(f, g, "party", r.party);
  attr(f, g, "host", r.host);
  attr(f, g, "wall_s", r.wall_s);
  attr(f, g, "compute_s", r.compute_s);
  attr(f, g, "wait_s", r.wait_s);
  attr(f, g, "bytes_sent", (int64_t)r.bytes_sent);
  attr(f, g, "messages_sent", (int64_t)r.messages_sent);
  attr(f, g, "rss_kb", (int64_t)r.rss_kb);
  attr(f, g, "rss_anon_kb", (int64_t)r.rss_anon_kb);
  attr(f, g, "pss_kb", (int64_t)r.pss_kb);
  attr(f, g, "t0_monotonic_s", r.t0_monotonic_s);
  attr(f, g, "host_cores", (int64_t)r.host_cores);
  Handle st = span_type(), mt = message_type();
  dataset(f, g, "spans", st, r.spans.data(), r.spans.size());
  dataset(f, g, "messages", mt, r.messages.data(), r.messages.size());
  if (!views) return;
  Handle v = group(f, g, "views");
  Handle vt = view_part_type();
  dataset(f, v, "parts", vt, r.view_parts.data(), r.view_parts.size());
  dataset(f, v, "positions", H5T_NATIVE_INT32, r.view_positions.data(), r.view_positions.size());
  dataset(f, v, "data", H5T_NATIVE_UINT8, r.view_data.data(), r.view_data.size());
}

// ---- reading -----------------------------------------------------------------------------

bool exists(hid_t parent, const std::string& name) {
  return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0;
}

Handle open_group(const File& f, hid_t parent, const std::string& name) {
  if (!exists(parent, name)) f.fail("no group " + name);
  Handle g(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) f.fail("cannot open group " + name);
  return g;
}

template <class T>
std::vector<T> read_dataset(const File& f, hid_t parent, const std::string& name, hid_t type) {
  if (!exists(parent, name)) f.fail("no dataset " + name);
  Handle d(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) f.fail("cannot open dataset " + name);
  Handle space(H5Dget_space(d), H5Sclose);
  if (H5Sget_simple_extent_ndims(space) != 1) f.fail("dataset " + name + " is not 1-D");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  Handle ftype(H5Dget_type(d), H5Tclose);
  if (H5Tget_class(ftype) != H5Tget_class(type)) f.fail("dataset " + name + " has the wrong type");
  std::vector<T> out(n);
  static char dummy;
  f.check(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, n ? (void*)out.data() : &dummy),
          "cannot read dataset " + name + " (wrong fields?)");
  return out;
}

Handle open_attr(const File& f, hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) f.fail("no attribute " + name);
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!a.ok()) f.fail("cannot open attribute " + name);
  return a;
}

int64_t attr_int(const File& f, hid_t obj, const std::string& name) {
  Handle a = open_attr(f, obj, name);
  Handle t(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(t) != H5T_INTEGER) f.fail("attribute " + name + " is not an integer");
  int64_t v = 0;
  f.check(H5Aread(a, H5T_NATIVE_INT64, &v), "cannot read attribute " + name);
  return v;
}

double attr_double(const File& f, hid_t obj, const std::string& name) {
  Handle a = open_attr(f, obj, name);
  Handle t(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(t) != H5T_FLOAT) f.fail("attribute " + name + " is not a float");
  double v = 0;
  f.check(H5Aread(a, H5T_NATIVE_DOUBLE, &v), "cannot read attribute " + name);
  return v;
}

// No attribute of a trace has more elements than a world has ranks; a damaged file may claim
// any number (fuzz_trace).
constexpr hssize_t kMaxAttrElements = 1 << 20;

std::vector<std::string> attr_strings(const File& f, hid_t obj, const std::string& name) {
  Handle a = open_attr(f, obj, name);
  Handle t(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(t) != H5T_STRING || !H5Tis_variable_str(t)) f.fail("attribute " + name + " is not a string");
  Handle space(H5Aget_space(a), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n > kMaxAttrElements) f.fail("attribute " + name + " claims " + std::to_string(n) + " strings");
  std::vector<char*> p(n > 0 ? n : 1, nullptr);
  Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5T_CSET_UTF8);
  const herr_t read = H5Aread(a, mt, p.data());
  std::vector<std::string> out;
  for (hssize_t i = 0; read >= 0 && i < n; ++i) out.emplace_back(p[i] ? p[i] : "");
  H5Dvlen_reclaim(mt, space, H5P_DEFAULT, p.data());  // also what a failed read left (a leak, fuzz_trace)
  f.check(read, "cannot read attribute " + name);
  return out;
}

std::string attr_string(const File& f, hid_t obj, const std::string& name) {
  const auto v = attr_strings(f, obj, name);
  if (v.size() != 1) f.fail("attribute " + name + " is not one string");
  return v[0];
}

std::vector<int32_t> attr_ints(const File& f, hid_t obj, const std::string& name) {
  Handle a = open_attr(f, obj, name);
  Handle space(H5Aget_space(a), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n > kMaxAttrElements) f.fail("attribute " + name + " claims " + std::to_string(n) + " values");
  std::vector<int32_t> v(n > 0 ? n : 0);
  f.check(H5Aread(a, H5T_NATIVE_INT32, v.data()), "cannot read attribute " + name);
  return v;
}

}  // namespace

void check_trace_path(const std::string& path, bool overwrite) {
  quiet_hdf5();
  struct stat st;
  if (!overwrite && stat(path.c_str(), &st) == 0)
    throw TraceFileError("trace file '" + path + "' exists; pass --force to overwrite it");
  File f(path, H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (f.id() < 0) throw TraceFileError("cannot create trace file '" + path + "' (is its directory writable?)");
  // Until the run finishes, the file says so.
  Handle g = group(f, f.id(), "meta");
  attr(f, g, "trace_version", (int64_t)kTraceVersion);
  attr(f, g, "complete", (int64_t)0);
}

void write_trace(const std::string& path, const Trace& t) {
  quiet_hdf5();
  // A complete trace has every rank's recording; an incomplete one those its writer had.
  bool in_order = true;
  for (size_t i = 0; i < t.ranks.size(); ++i)
    in_order = in_order && t.ranks[i].rank >= (i ? t.ranks[i - 1].rank + 1 : 0) && t.ranks[i].rank < t.meta.world_size;
  if (t.meta.complete ? (int)t.ranks.size() != t.meta.world_size || !in_order : !in_order)
    throw TraceFileError("trace for '" + path + "': " + std::to_string(t.ranks.size()) +
                         " rank recordings for a world of " + std::to_string(t.meta.world_size));
  const std::string tmp = path + ".tmp";
  {
    File f(tmp, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    if (f.id() < 0) throw TraceFileError("cannot create trace file '" + tmp + "'");
    write_meta(f, t);
    write_schedule(f, t);
    Handle ranks = group(f, f.id(), "ranks");
    for (const RankTrace& r : t.ranks) write_rank(f, ranks, r, t.meta.views);
    f.check(H5Fflush(f.id(), H5F_SCOPE_GLOBAL), "cannot flush");
  }
  // Whole or not at all: the finished file replaces the placeholder in one step.
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw TraceFileError("cannot rename '" + tmp + "' to '" + path + "'");
}

void require_all_ranks(const Trace& t, const std::string& path) {
  if ((int)t.ranks.size() == t.meta.world_size) return;
  std::string have;
  for (const RankTrace& r : t.ranks) have += (have.empty() ? "" : ", ") + std::to_string(r.rank);
  throw TraceFileError("trace file '" + path + "' is incomplete: the run ended early (" +
                       (t.meta.error.empty() ? "no reason recorded" : t.meta.error) + "), and it holds the recordings of " +
                       (have.empty() ? "no rank" : "rank" + std::string(t.ranks.size() > 1 ? "s " : " ") + have) +
                       " of " + std::to_string(t.meta.world_size) + "; `cascade trace summary " + path + "` shows them");
}

namespace {
Trace read_trace_unguarded(const std::string& path);
}  // namespace

extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

// HDF5 itself can crash on a damaged file (fuzz_trace found a SEGV inside libhdf5 1.10, and
// allocations of terabytes), and traces come from elsewhere: the file is first read in a child
// process, and only if that child survives does this process read it. HDF5's parse is
// deterministic, so the second read takes the same path. It costs one more read of the file.
Trace read_trace(const std::string& path) {
  constexpr int kRefused = 17;  // the child's exit when the reader threw (a clean refusal)
  struct stat info;
  if (stat(path.c_str(), &info) != 0) throw TraceFileError("trace file '" + path + "' not found");
  std::fflush(nullptr);  // nothing buffered twice
  const pid_t child = fork();
  if (child == 0) {
    // A crash ends the child at once, with the signal in its exit status: no handler inherited
    // from the parent (a fuzzer's, a sanitizer's) gets to treat it as the parent's own crash.
    struct sigaction die {};
    die.sa_handler = [](int sig) { _exit(128 + sig); };
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &die, nullptr);
    // Under a sanitizer, its report ends the child instead (exit 1); a fuzzer's death callback
    // would save the input as the fuzzer's own crash. (Weak: absent outside sanitizer builds.)
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
    int rc = 0;
    try {
      (void)read_trace_unguarded(path);
    } catch (...) {
      rc = kRefused;  // the parent's own read reports what is wrong
    }
    _exit(rc);
  }
  if (child > 0) {
    // A child that never finishes (HDF5 looping on a damaged file) is killed at the deadline:
    // $CASCADE_TRACE_READ_TIMEOUT seconds, default 600.
    const char* env = std::getenv("CASCADE_TRACE_READ_TIMEOUT");
    const double limit = env && std::atof(env) > 0 ? std::atof(env) : 600.0;
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    for (;;) {
      const pid_t done = waitpid(child, &status, WNOHANG);
      if (done == child || (done < 0 && errno != EINTR)) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        throw TraceFileError("trace file '" + path + "': reading it took more than " + std::to_string((int)limit) +
                             " s in a child process (the HDF5 library hung on it?); stopped");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // Died of a signal (128 + its number), or any other exit (a sanitizer's report exits 1).
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && code != kRefused)
      throw TraceFileError("trace file '" + path + "' is damaged: the HDF5 library crashed reading it (" +
                           (code > 128 ? "signal " + std::to_string(code - 128) : "exit " + std::to_string(code)) +
                           " in a child process)");
  }  // fork failed: read it here, unguarded
  return read_trace_unguarded(path);
}

namespace {

Trace read_trace_unguarded(const std::string& path) {
  quiet_hdf5();
  struct stat info;
  if (stat(path.c_str(), &info) != 0) throw TraceFileError("trace file '" + path + "' not found");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw TraceFileError("trace file '" + path + "' is not an HDF5 file");
  File f(path, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (f.id() < 0) f.fail("cannot open (damaged?)");
  Trace t;
  {
    Handle g = open_group(f, f.id(), "meta");
    const int64_t version = attr_int(f, g, "trace_version");
    if (version != kTraceVersion)
      f.fail("trace version " + std::to_string(version) + ", this build reads version " + std::to_string(kTraceVersion));
    if (attr_int(f, g, "complete") == 0 && H5Aexists(g, "world_size") <= 0)
      f.fail("the run that was to write it did not finish (the file is only a placeholder)");
    TraceMeta& m = t.meta;
    m.complete = attr_int(f, g, "complete") != 0;
    if (!m.complete && H5Aexists(g, "error") > 0) m.error = attr_string(f, g, "error");
    m.views = attr_int(f, g, "views") != 0;
    m.cascade_version = attr_string(f, g, "cascade_version");
    m.git_commit = attr_string(f, g, "git_commit");
    m.start_time = attr_string(f, g, "start_time");
    m.command_line = attr_string(f, g, "command_line");
    m.model_name = attr_string(f, g, "model_name");
    m.model_source = attr_string(f, g, "model_source");
    m.model_sha256 = attr_string(f, g, "model_sha256");
    m.d_ff = (int)attr_int(f, g, "d_ff");
    m.n_generated = (int)attr_int(f, g, "n_generated");
    m.rho = (int)attr_int(f, g, "rho");
    m.backend = attr_string(f, g, "backend");
    m.transport = attr_string(f, g, "transport");
    m.wire_precision = attr_string(f, g, "wire_precision");
    m.world_size = (int)attr_int(f, g, "world_size");
    m.hosts = attr_strings(f, g, "hosts");
    m.bytes_sent = (uint64_t)attr_int(f, g, "bytes_sent");
    m.bytes_received = (uint64_t)attr_int(f, g, "bytes_received");
    m.bytes_predicted = (uint64_t)attr_int(f, g, "bytes_predicted");
    Schedule& s = t.schedule;
    const auto shape = attr_ints(f, g, "model_shape");
    if (shape.size() != 6) f.fail("model_shape has " + std::to_string(shape.size()) + " entries, expected 6");
    s.shape = {shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]};
    // Traces of the llama-only versions have no family.
    if (H5Aexists(g, "model_family") > 0) {
      try {
        s.shape.family = parse_family(attr_string(f, g, "model_family"));
      } catch (const std::exception& e) {
        f.fail(e.what());
      }
    }
    s.n_prompt = (int)attr_int(f, g, "n_prompt");
    s.n_positions = (int)attr_int(f, g, "n_positions");
    s.alpha = (int)attr_int(f, g, "alpha");
    s.beta = (int)attr_int(f, g, "beta");
    s.c = (int)attr_int(f, g, "c");
    s.delta = (int)attr_int(f, g, "delta");
    s.seed = (uint64_t)attr_int(f, g, "seed");
    s.strategy = attr_string(f, g, "strategy");
    try {
      s.attn_sharding = parse_attn_sharding(attr_string(f, g, "attn_sharding"));
      s.lm_head = parse_lm_head(attr_string(f, g, "lm_head"));
    } catch (const std::invalid_argument& e) {
      f.fail(e.what());
    }
  }
  {
    Handle g = open_group(f, f.id(), "schedule");
    t.schedule.comp = read_dataset<int32_t>(f, g, "comp", H5T_NATIVE_INT32);
    t.schedule.att = read_dataset<int32_t>(f, g, "att", H5T_NATIVE_INT32);
    try {
      validate(t.schedule);
    } catch (const std::exception& e) {
      f.fail(e.what());
    }
    if (t.meta.world_size != t.schedule.n_ranks())
      f.fail("world_size " + std::to_string(t.meta.world_size) + " is not the schedule's 1 + α + β² = " +
             std::to_string(t.schedule.n_ranks()));
  }
  Handle ranks = open_group(f, f.id(), "ranks");
  Handle st = span_type(), mt = message_type(), vt = view_part_type();
  for (int r = 0; r < t.meta.world_size; ++r) {
    // An incomplete trace holds the recordings its writer had; a complete one all of them.
    if (!t.meta.complete && H5Lexists(ranks, std::to_string(r).c_str(), H5P_DEFAULT) <= 0) continue;
    Handle g = open_group(f, ranks, std::to_string(r));
    RankTrace rt;
    rt.rank = r;
    rt.party = attr_string(f, g, "party");
    rt.host = attr_string(f, g, "host");
    rt.wall_s = attr_double(f, g, "wall_s");
    rt.compute_s = attr_double(f, g, "compute_s");
    rt.wait_s = attr_double(f, g, "wait_s");
    rt.bytes_sent = (uint64_t)attr_int(f, g, "bytes_sent");
    rt.messages_sent = (uint64_t)attr_int(f, g, "messages_sent");
    rt.rss_kb = (uint64_t)attr_int(f, g, "rss_kb");
    rt.rss_anon_kb = (uint64_t)attr_int(f, g, "rss_anon_kb");
    rt.pss_kb = (uint64_t)attr_int(f, g, "pss_kb");
    rt.t0_monotonic_s = attr_double(f, g, "t0_monotonic_s");
    rt.host_cores = (int32_t)attr_int(f, g, "host_cores");
    rt.spans = read_dataset<Span>(f, g, "spans", st);
    rt.messages = read_dataset<MessageEvent>(f, g, "messages", mt);
    const std::string where = "rank " + std::to_string(r) + ": ";
    for (const Span& s : rt.spans)
      if ((int)s.kind < 0 || (int)s.kind >= kNumSpanKinds) f.fail(where + "span of unknown kind " + std::to_string((int)s.kind));
    for (const MessageEvent& e : rt.messages) {
      if (e.peer < 0 || e.peer >= t.meta.world_size || e.peer == r) f.fail(where + "message with peer " + std::to_string(e.peer));
      if (e.post_span >= (int64_t)rt.spans.size() || e.complete_span >= (int64_t)rt.spans.size())
        f.fail(where + "message pointing past the spans");
    }
    if (t.meta.views) {
      Handle v = open_group(f, g, "views");
      rt.view_parts = read_dataset<ViewPart>(f, v, "parts", vt);
      rt.view_positions = read_dataset<int32_t>(f, v, "positions", H5T_NATIVE_INT32);
      rt.view_data = read_dataset<uint8_t>(f, v, "data", H5T_NATIVE_UINT8);
      for (const ViewPart& p : rt.view_parts)
        if (p.positions_offset + p.n_positions > rt.view_positions.size() ||
            p.data_offset + p.bytes > rt.view_data.size() || p.message < 0 ||
            p.message >= (int64_t)rt.messages.size())
          f.fail(where + "a view part points outside its arrays");
    }
    t.ranks.push_back(std::move(rt));
  }
  return t;
}

}  // namespace

}  // namespace cascade
