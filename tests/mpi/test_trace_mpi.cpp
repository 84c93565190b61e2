// Traces of real runs, under mpirun (7 ranks):
//   views      with --trace-views, every party's recorded view equals, byte for byte, what the
//              transport delivered to the party (a delivery hook records that independently)
//   timeline   every rank's spans cover its run without gaps or overlaps; every received
//              message pairs with a send; the bytes of the messages equal the transport's counts
//   no tokens  a run in which CompNodes own no position is traced, written and read back
//   party view the attack suite's view of every party (attack_view.h), read from its trace,
//              holds exactly the rows the transport delivered to it in the prefill; a
//              CompNode's rebuilt hidden rows equal the single-process reference's; an
//              AttnNode's tokens, recovered from its layer-0 rows, are the prompt's
// Prints "OK"/"NOT OK" per check and exits non-zero on any failure.
//
//   mpirun -np 7 cascade_trace_tests
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "cascade/exposure.h"
#include "cascade/vocab_match.h"
#include "cascade/model.h"
#include "cascade/mpi_transport.h"
#include "cascade/protocol.h"
#include "cascade/tokenizer.h"
#include "cascade/gguf.h"
#include "cascade/trace_io.h"

using namespace cascade;

namespace {

struct Delivered {
  int src, layer;
  std::map<int, std::pair<std::vector<int32_t>, std::vector<uint8_t>>> parts;  // kind → positions, bytes
};

int rank_ = 0;
int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) ++failures;
  std::printf("rank %d: %s %s\n", rank_, ok ? "OK    " : "NOT OK", what.c_str());
  std::fflush(stdout);
}

CascadeReport run(const ScheduleParams& params, const std::vector<int32_t>& prompt, const Model& model,
                  bool views, std::vector<Delivered>* delivered) {
  ScheduleParams p = params;
  p.n_prompt = (int)prompt.size();
  p.n_positions = p.n_prompt + 3;
  p.shape = model.cfg.shape();
  const Schedule sched = make_schedule(p);
  auto t = make_mpi_transport(MPI_COMM_WORLD);
  t->set_timeout(120);
  Transport* tp = t.get();
  if (delivered)
    t->set_delivery_hook([tp, delivered](const Message& m, const uint8_t* payload) {
      if (!tp->trace()) return;  // only what the trace covers
      Delivered d{m.src, m.layer, {}};
      for (const MessagePart& part : m.parts) {
        d.parts[(int)part.kind] = {part.positions, std::vector<uint8_t>(payload, payload + part.bytes)};
        payload += part.bytes;
      }
      delivered->push_back(std::move(d));
    });
  CascadeSetup setup;
  setup.trace = true;
  setup.trace_views = views;
  if (rank_ == 0) {
    setup.schedule = sched;
    setup.prompt = prompt;
    setup.client.n_generate = 4;
    setup.client.model = &model;
  }
  setup.model = [&model]() -> const Model& { return model; };
  return run_cascade(*t, setup);
}

// The trace's views equal what the transport delivered.
void check_views(const RankTrace& r, const std::vector<Delivered>& delivered) {
  std::vector<size_t> received;  // indices of received messages
  for (size_t i = 0; i < r.messages.size(); ++i)
    if (r.messages[i].direction == 1) received.push_back(i);
  bool ok = received.size() == delivered.size();
  std::string why = ok ? "" : std::to_string(received.size()) + " received in the trace, " +
                                  std::to_string(delivered.size()) + " delivered";
  std::map<int64_t, std::vector<const ViewPart*>> parts_of;
  for (const ViewPart& v : r.view_parts) parts_of[v.message].push_back(&v);
  uint64_t bytes = 0;
  for (size_t i = 0; ok && i < received.size(); ++i) {
    const MessageEvent& m = r.messages[received[i]];
    const Delivered& d = delivered[i];
    const auto& vparts = parts_of[(int64_t)received[i]];
    if (m.peer != d.src || m.layer != d.layer || vparts.size() != d.parts.size()) {
      ok = false;
      why = "message " + std::to_string(i) + ": other peer, layer or part count";
      break;
    }
    for (const ViewPart* v : vparts) {
      auto it = d.parts.find(v->kind);
      const std::vector<int32_t> pos(r.view_positions.begin() + v->positions_offset,
                                     r.view_positions.begin() + v->positions_offset + v->n_positions);
      const std::vector<uint8_t> data(r.view_data.begin() + v->data_offset,
                                      r.view_data.begin() + v->data_offset + v->bytes);
      if (it == d.parts.end() || it->second.first != pos || it->second.second != data) {
        ok = false;
        why = "message " + std::to_string(i) + ", part " + comm_kind_name((CommKind)v->kind) + " differs";
        break;
      }
      bytes += v->bytes;
    }
  }
  check(ok && !received.empty(), r.party + ": views = delivered, " + std::to_string(received.size()) +
                                     " messages, " + std::to_string(bytes) + " bytes " + why);
}

// The party's view, as the attack suite reads it from the party's own trace, against what the
// transport delivered (prefill parts: every position in the prompt) and the reference.
void check_party_view(const CascadeReport& rep, const std::vector<Delivered>& delivered, const Model& model,
                      const std::vector<int32_t>& prompt) {
  if (rank_ == 0) return;
  const Schedule& s = rep.schedule;
  const ModelConfig& c = model.cfg;
  Trace t;
  t.meta.views = true;
  t.schedule = s;
  t.ranks.resize(s.n_ranks());
  t.ranks[rank_] = rep.traces.at(0);
  const PartyView v = party_view(t, rank_, model);
  bool ok = true;
  std::string why;
  uint64_t rows = 0;
  auto same = [&](const float* got, const float* want, int n, const std::string& what) {
    if (got && std::memcmp(got, want, 4 * (size_t)n) == 0) return ++rows, true;
    if (ok) why = what;
    return ok = false;
  };
  for (const Delivered& d : delivered) {
    for (const auto& [kind, part] : d.parts) {
      const std::vector<int32_t>& pos = part.first;
      if (pos.empty() || *std::max_element(pos.begin(), pos.end()) >= s.n_prompt) continue;
      const float* f = reinterpret_cast<const float*>(part.second.data());
      const size_t n = pos.size();
      const std::string at = " of layer " + std::to_string(d.layer);
      for (size_t i = 0; i < n; ++i) {
        if (kind == (int)CommKind::q) {
          same(v.row({RowKind::q, d.layer}, pos[i]), f + i * c.d_q(), c.d_q(), "a q row" + at);
        } else if (kind == (int)CommKind::kv) {
          same(v.row({RowKind::k, d.layer}, pos[i]), f + i * c.d_kv(), c.d_kv(), "a k row" + at);
          same(v.row({RowKind::v, d.layer}, pos[i]), f + (n + i) * c.d_kv(), c.d_kv(), "a v row" + at);
        } else if (kind == (int)CommKind::partial && d.layer == 0) {  // kept unmerged
          const ViewPartials& vp = v.partials;
          const int r = vp.index(pos[i]), b = s.role_of_rank(d.src).b;
          const size_t j = ((size_t)b * vp.positions.size() + std::max(r, 0)) * c.n_head;
          const float* pm = f + i * c.n_head;
          const float* pe = f + (n + i) * c.n_head;
          const float* pu = f + 2 * n * c.n_head + i * c.n_head * c.d_head;
          same(r < 0 ? nullptr : &vp.m[j], pm, c.n_head, "a partial's m" + at);
          same(r < 0 ? nullptr : &vp.e[j], pe, c.n_head, "a partial's e" + at);
          same(r < 0 ? nullptr : &vp.u[j * c.d_head], pu, c.n_head * c.d_head, "a partial's u" + at);
        } else if (kind == (int)CommKind::tokens) {
          const int32_t id = reinterpret_cast<const int32_t*>(part.second.data())[i];
          if (v.tokens.at(pos[i]) != id) ok = false, why = "a token";
        }
      }
    }
  }
  // What the party can say about the prompt beyond the raw rows.
  const std::vector<int> observed = observed_positions(s, rank_);
  int known = 0;
  for (int p : observed) {
    if (p >= s.n_prompt) continue;
    ++known;
    if (v.tokens[p] != prompt[p]) ok = false, why = "the token of position " + std::to_string(p);
  }
  if (known != v.observed()) ok = false, why = "observed count";
  double worst = 0.0;
  if (v.role.kind == RankRole::comp) {
    for (int layer : {1, c.n_layer}) {
      const std::vector<float> ref = victim_rows(model, prompt, {RowKind::hidden, layer});
      for (int p : observed) {
        if (p >= s.n_prompt) continue;
        const float* got = v.row({RowKind::hidden, layer}, p);
        if (!got) { ok = false, why = "no hidden row"; break; }
        worst = std::max(worst, relative_l1(got, ref.data() + (size_t)p * c.d_model, c.d_model));
      }
    }
    if (worst > 1e-5) ok = false, why = "hidden rows differ from the reference by " + std::to_string(worst);
  }
  check(ok && rows + known > 0, v.role.name() + ": party view = delivered rows (" + std::to_string(rows) + " rows), " +
                                    std::to_string(known) + " tokens right" +
                                    (v.role.kind == RankRole::comp ? ", hidden rows within " + std::to_string(worst) + " of the reference" : "") +
                                    (ok ? "" : ": " + why));
}

// Spans contiguous from 0; receives pair with sends; message bytes = transport counts.
void check_timeline(const Schedule& s, const std::vector<RankTrace>& ranks) {
  // The client sends the schedule before the trace starts: the rest of its bytes are traced.
  PlannedMessage schedule_msg{0, 1, -1, {{CommKind::schedule, serialize(s).size(), 0}}};
  const uint64_t untraced = (s.n_ranks() - 1) * (schedule_msg.parts[0].bytes + schedule_msg.header_bytes());
  using Key = std::tuple<int, int, int, int, uint64_t>;
  std::map<Key, uint64_t> sent, received;
  for (const RankTrace& r : ranks) {
    bool contiguous = !r.spans.empty() && r.spans.front().t_start == 0.0;
    for (size_t i = 1; contiguous && i < r.spans.size(); ++i)
      contiguous = r.spans[i].t_start == r.spans[i - 1].t_end && r.spans[i].t_end >= r.spans[i].t_start;
    const double covered = r.spans.empty() ? 0 : r.spans.back().t_end;
    check(contiguous && covered >= r.wall_s * 0.99, r.party + ": spans contiguous, cover " +
                                                        std::to_string(covered) + " s of " + std::to_string(r.wall_s));
    uint64_t wire_sent = 0;
    for (const MessageEvent& m : r.messages) {
      const Key k = m.direction == 0 ? Key{r.rank, m.peer, m.layer, m.channel, m.seq}
                                     : Key{m.peer, r.rank, m.layer, m.channel, m.seq};
      (m.direction == 0 ? sent : received)[k] = m.wire_bytes;
      if (m.direction == 0) wire_sent += m.wire_bytes;
      const bool spans_ok = m.complete_span >= 0 && r.spans.at(m.complete_span).kind == SpanKind::wait &&
                            (m.direction == 1 || r.spans.at(m.post_span).kind == SpanKind::send);
      if (!spans_ok) {
        check(false, r.party + ": a message's spans are not its send and wait spans");
        break;
      }
    }
    const uint64_t counted = r.bytes_sent - (r.rank == 0 ? untraced : 0);
    check(wire_sent == counted, r.party + ": bytes of its traced messages " + std::to_string(wire_sent) +
                                    " = bytes it counted " + std::to_string(counted));
  }
  check(sent == received, "every received message pairs with a send of the same size (" +
                              std::to_string(sent.size()) + " sent, " + std::to_string(received.size()) +
                              " received)");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  set_cpu_threads(1);
  try {
    if (world != 7) throw std::runtime_error("run with mpirun -np 7");
    GgufFile g(default_model_path());
    const Model model = Model::load(g);
    const Tokenizer tok(g);
    const std::vector<int32_t> prompt = tok.encode("The capital of France is a city on the Seine, and");

    // α = 2, β = 2, c = 2 (7 ranks), views on.
    ScheduleParams p;
    p.alpha = 2;
    p.beta = 2;
    p.c = 2;
    std::vector<Delivered> delivered;
    const CascadeReport rep = run(p, prompt, model, true, &delivered);
    check_views(rep.traces.at(0), delivered);  // rank 0 holds everyone's: its own is [0]
    check_party_view(rep, delivered, model, prompt);
    if (rank_ == 0) check_timeline(rep.schedule, rep.traces);

    // α = 2, β = 2, c = 16, 6-token prompt: CompNode 1 owns no position. Written and read back.
    MPI_Barrier(MPI_COMM_WORLD);
    p.c = 16;
    const std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + 6);
    CascadeReport rep2 = run(p, short_prompt, model, false, nullptr);
    if (rank_ == 0) {
      Trace t;
      t.meta.world_size = world;
      t.meta.d_ff = model.cfg.d_ff;
      t.meta.n_generated = (int)rep2.client.tokens.size();
      t.meta.hosts.assign(world, "here");
      t.schedule = rep2.schedule;
      t.ranks = rep2.traces;
      const std::string path = "trace_mpi_test.h5";
      check_trace_path(path, true);
      write_trace(path, t);
      const Trace back = read_trace(path);
      std::remove(path.c_str());
      const RankTrace& idle = back.ranks.at(rep2.schedule.comp_rank(1));
      uint64_t layer_msgs = 0;
      for (const MessageEvent& m : idle.messages) layer_msgs += m.layer >= 0;
      check(idle.party == "CompNode 1" && layer_msgs == 0 && !idle.spans.empty(),
            "a CompNode without tokens: " + std::to_string(idle.spans.size()) + " spans, " +
                std::to_string(layer_msgs) + " layer messages, read back from HDF5");
      check(back.ranks.size() == t.ranks.size() && back.ranks[1].spans.size() == t.ranks[1].spans.size() &&
                back.ranks[3].messages.size() == t.ranks[3].messages.size(),
            "the file reads back what was written");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", rank_, e.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  int total = 0;
  MPI_Reduce(&failures, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank_ == 0) std::printf("%s\n", total ? "NOT OK: some checks failed" : "all checks passed");
  MPI_Finalize();
  return total ? 1 : 0;
}
