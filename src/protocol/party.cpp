// One rank's whole run: role dispatch, then the end-of-run report to rank 0.
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "cascade/backend.h"
#include "cascade/protocol.h"

namespace cascade {
namespace {

// Report wire format: PartyStats as 3 doubles + 2 u64, then (src, dst, layer, kind, bytes)
// records of i32, i32, i32, i32, u64.
std::vector<uint8_t> encode_report(const PartyStats& st, const ByteCounts& sent) {
  std::vector<uint8_t> out(3 * 8 + 2 * 8 + sent.size() * 24);
  uint8_t* w = out.data();
  auto put = [&w](const void* p, size_t n) { std::memcpy(w, p, n); w += n; };
  put(&st.wall_s, 8); put(&st.compute_s, 8); put(&st.wait_s, 8);
  put(&st.bytes_sent, 8); put(&st.messages_sent, 8);
  for (const auto& [key, bytes] : sent) {
    const int32_t f[4] = {key.src, key.dst, key.layer, (int32_t)key.kind};
    put(f, 16);
    put(&bytes, 8);
  }
  return out;
}

PartyStats decode_report(const std::vector<uint8_t>& in, ByteCounts& sent) {
  PartyStats st;
  if (in.size() < 40 || (in.size() - 40) % 24) throw std::runtime_error("malformed end-of-run report");
  const uint8_t* r = in.data();
  auto get = [&r](void* p, size_t n) { std::memcpy(p, r, n); r += n; };
  get(&st.wall_s, 8); get(&st.compute_s, 8); get(&st.wait_s, 8);
  get(&st.bytes_sent, 8); get(&st.messages_sent, 8);
  while (r < in.data() + in.size()) {
    int32_t f[4];
    uint64_t bytes;
    get(f, 16);
    get(&bytes, 8);
    sent[{f[0], f[1], f[2], (CommKind)f[3]}] += bytes;
  }
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
  const auto all = t.gather_to_root(encode_report(mine, t.sent()));
  if (t.rank() == 0) {
    for (const auto& r : all) rep.stats.push_back(decode_report(r, rep.sent));
  } else {
    rep.stats.push_back(mine);
  }
  return rep;
}

}  // namespace cascade
