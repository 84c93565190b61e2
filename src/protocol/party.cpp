// One rank's whole run: role dispatch, then the end-of-run report to rank 0.
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cascade/backend.h"
#include "cascade/protocol.h"

namespace cascade {
namespace {

// Report wire format: PartyStats as 3 doubles + 2 u64; then u64 n_sent and n_sent records
// (src, dst, layer, kind, bytes) of i32, i32, i32, i32, u64; then the same for the received
// counts.
constexpr size_t kStatsBytes = 3 * 8 + 2 * 8;
constexpr size_t kRecordBytes = 24;

std::vector<uint8_t> encode_report(const PartyStats& st, const ByteCounts& sent,
                                   const ByteCounts& received) {
  std::vector<uint8_t> out(kStatsBytes + 16 + (sent.size() + received.size()) * kRecordBytes);
  uint8_t* w = out.data();
  auto put = [&w](const void* p, size_t n) { std::memcpy(w, p, n); w += n; };
  put(&st.wall_s, 8); put(&st.compute_s, 8); put(&st.wait_s, 8);
  put(&st.bytes_sent, 8); put(&st.messages_sent, 8);
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

uint64_t total_bytes(const ByteCounts& c) {
  uint64_t n = 0;
  for (const auto& kv : c) n += kv.second;
  return n;
}

}  // namespace

CascadeReport run_cascade(Transport& t, const CascadeSetup& setup) {
  CascadeReport rep;
  auto be = make_cpu_backend();
  PartyStats mine;
  std::chrono::steady_clock::time_point t_start;
  double wait_at_start = 0.0;
  auto start = [&] {
    t_start = std::chrono::steady_clock::now();
    wait_at_start = t.wait_seconds();
  };
  // Once the schedule is known, errors name parties ("CompNode 1") rather than bare ranks.
  auto name_parties = [&t](const Schedule& s) {
    t.set_peer_namer([s](int r) { return r < s.n_ranks() ? s.role_of_rank(r).name() : "?"; });
  };
  if (t.rank() == 0) {
    rep.schedule = setup.schedule;
    try {
      check_world_size(rep.schedule, t.size());
    } catch (...) {
      abort_run(t);  // the other ranks would otherwise wait for a schedule that never comes
      throw;
    }
    name_parties(rep.schedule);
    send_schedule(t, rep.schedule);
    t.barrier();  // everyone has loaded what it needs
    start();
    rep.client = run_client(t, rep.schedule, setup.prompt, setup.client);
  } else {
    if (!receive_schedule(t, rep.schedule)) return rep;
    name_parties(rep.schedule);
    const RankRole role = rep.schedule.role_of_rank(t.rank());
    if (role.kind == RankRole::comp) {
      const Model& model = setup.model();
      t.barrier();
      start();
      mine = run_comp_node(t, rep.schedule, model, *be, setup.fault);
    } else {
      const ModelConfig cfg = setup.config();
      t.barrier();
      start();
      mine = run_attn_node(t, rep.schedule, cfg, *be, setup.fault);
    }
  }
  rep.ran = true;
  // Wall and wait time from the barrier on, the same span for every party.
  mine.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  mine.wait_s = t.wait_seconds() - wait_at_start;
  mine.bytes_sent = total_bytes(t.sent());
  mine.messages_sent = t.messages_sent();
  // Point-to-point, with the timeout: a rank that died at the end is named, not waited for.
  if (t.rank() == 0) {
    rep.stats.push_back(mine);
    for (const auto& [key, bytes] : t.sent()) rep.sent[key] += bytes;
    for (const auto& [key, bytes] : t.received()) rep.received[key] += bytes;
    for (int r = 1; r < t.size(); ++r) {
      const Received report = t.recv_any(r, -1, CommKind::report);
      rep.stats.push_back(decode_report(r, report.payload, rep.sent, rep.received));
    }
  } else {
    const std::vector<uint8_t> report = encode_report(mine, t.sent(), t.received());
    t.send({t.rank(), 0, -1, {{CommKind::report, {}, report.size()}}}, report.data());
    rep.stats.push_back(mine);
  }
  return rep;
}

}  // namespace cascade
