#include "report.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace cascade {
namespace {

// Report wire format: PartyStats as 3 doubles + 2 u64 + MemoryStats (6 u64); then u64 n_sent
// and n_sent records (src, dst, layer, kind, bytes) of i32, i32, i32, i32, u64; then the same
// for the received counts.
constexpr size_t kStatsBytes = 3 * 8 + 2 * 8 + 6 * 8;
constexpr size_t kRecordBytes = 24;

}  // namespace

std::vector<uint8_t> encode_report(const PartyStats& st, const ByteCounts& sent,
                                   const ByteCounts& received) {
  std::vector<uint8_t> out(kStatsBytes + 16 + (sent.size() + received.size()) * kRecordBytes);
  uint8_t* w = out.data();
  auto put = [&w](const void* p, size_t n) { std::memcpy(w, p, n); w += n; };
  put(&st.wall_s, 8); put(&st.compute_s, 8); put(&st.wait_s, 8);
  put(&st.bytes_sent, 8); put(&st.messages_sent, 8);
  const MemoryStats& m = st.memory;
  for (const uint64_t* v : {&m.rss_kb, &m.rss_anon_kb, &m.rss_file_kb, &m.rss_shmem_kb, &m.pss_kb, &m.hwm_kb})
    put(v, 8);
  for (const ByteCounts* counts : {&sent, &received}) {
    const uint64_t n = counts->size();
    put(&n, 8);
    for (const auto& [key, bytes] : *counts) {
      const int32_t f[4] = {key.src, key.dst, key.layer, (int32_t)key.kind};
      put(f, 16);
      put(&bytes, 8);
    }
  }
  return out;
}

// Merges rank `r`'s report into the counts; returns its stats.
PartyStats decode_report(int r, const std::vector<uint8_t>& in, ByteCounts& sent, ByteCounts& received) {
  auto bad = [r](const std::string& what) {
    return std::runtime_error("malformed end-of-run report from rank " + std::to_string(r) + ": " + what);
  };
  PartyStats st;
  if (in.size() < kStatsBytes) throw bad("too short");
  const uint8_t* p = in.data();
  const uint8_t* end = in.data() + in.size();
  auto get = [&p](void* dst, size_t n) { std::memcpy(dst, p, n); p += n; };
  get(&st.wall_s, 8); get(&st.compute_s, 8); get(&st.wait_s, 8);
  get(&st.bytes_sent, 8); get(&st.messages_sent, 8);
  MemoryStats& m = st.memory;
  for (uint64_t* v : {&m.rss_kb, &m.rss_anon_kb, &m.rss_file_kb, &m.rss_shmem_kb, &m.pss_kb, &m.hwm_kb})
    get(v, 8);
  for (ByteCounts* counts : {&sent, &received}) {
    uint64_t n = 0;
    if (end - p < 8) throw bad("truncated record count");
    get(&n, 8);
    if (n > (uint64_t)(end - p) / kRecordBytes) throw bad("truncated records");
    for (uint64_t i = 0; i < n; ++i) {
      int32_t f[4];
      uint64_t bytes;
      get(f, 16);
      get(&bytes, 8);
      if (f[3] < 0 || f[3] >= kNumCommKinds) throw bad("kind " + std::to_string(f[3]));
      (*counts)[{f[0], f[1], f[2], (CommKind)f[3]}] += bytes;
    }
  }
  if (p != end) throw bad("trailing bytes");
  return st;
}

}  // namespace cascade
