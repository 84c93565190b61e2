// cascade run: one Cascade inference under mpirun/srun, every rank one party.
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cascade/backend.h"
#include "cascade/compute_timer.h"
#include "cascade/exactness.h"
#include "cascade/mpi_transport.h"
#include "cascade/nccl_link.h"
#include "cascade/protocol.h"
#include "cascade/reference.h"
#include "cascade/sha256.h"
#include "cascade/synthetic.h"
#include "cascade/trace_io.h"
#include "kernels/softmax.h"
#include "cli_common.h"
#include "commands.h"
#include "git_commit.h"
#include "plan_common.h"

namespace cascade::cli {
namespace {

struct RunOptions {
  GenerateOptions gen;
  ScheduleParams sched;
  int rho = kDefaultRho;
  bool insecure = false;
  double timeout = 300.0;
  bool json = false;
  bool compare_reference = false;
  std::string fault;  // test-only (fault.h)
  std::string trace;  // --trace FILE
  bool trace_views = false;
  bool force = false;
  std::string transport = "mpi";  // --transport: mpi, or nccl (payloads GPU to GPU)
  std::string prompts;            // --prompts FILE: serve mode, one prompt per JSON line
};

// The single-process reference on the same prompt and tokens, single-threaded, for the
// overhead and exactness lines of the report.
struct ReferenceCheck {
  double compute_s = 0.0;        // prefill + the same decode steps
  double max_rel_err = 0.0;      // over every logits row, max|Δ| / max|ref|
  bool same_tokens = true;       // the reference's greedy choice at each step, if greedy
};

ReferenceCheck check_against_reference(const Model& model, const std::vector<int32_t>& prompt,
                                       const ClientResult& cr, bool greedy, Precision precision) {
  ReferenceCheck rc;
  Reference ref(model, nullptr, precision);  // the same GEMMs as the parties: exact comparison
  if (model.cfg.encoder()) {  // every position's last hidden row
    const int d = model.cfg.d_model;
    const double t0 = ComputeTimer::now();
    const std::vector<float> hidden = ref.encode(prompt);
    rc.compute_s = ComputeTimer::now() - t0;
    for (size_t r = 0; r < prompt.size(); ++r)
      rc.max_rel_err = std::max(rc.max_rel_err, max_rel_error(cr.hidden.data() + r * d, hidden.data() + r * d, d));
    return rc;
  }
  const int V = model.cfg.n_vocab;
  for (size_t i = 0; i < cr.logits.size(); ++i) {
    const double t0 = ComputeTimer::now();  // CPU time, as the parties' compute is measured
    const std::vector<float> logits = i == 0 ? ref.forward(prompt) : ref.forward({cr.tokens[i - 1]});
    rc.compute_s += ComputeTimer::now() - t0;
    rc.max_rel_err = std::max(rc.max_rel_err, max_rel_error(cr.logits[i].data(), logits.data(), V));
    if (greedy && kernels::argmax_row(logits.data(), V) != cr.tokens[i]) rc.same_tokens = false;
  }
  return rc;
}

struct MpiSession {
  MpiSession() { MPI_Init(nullptr, nullptr); }
  ~MpiSession() { MPI_Finalize(); }
};

// Rank 0's set-up: tokenise, plan, check security. Throws on any bad input.
void plan_on_client(const RunOptions& o, CascadeSetup& setup, const LoadedModel& lm, std::vector<int32_t> prompt,
                    ExposureReport& exposure, bool warn = true) {
  setup.prompt = std::move(prompt);
  ScheduleParams p = o.sched;
  p.n_prompt = (int)setup.prompt.size();
  const int n_generate = lm.cfg.encoder() ? 1 : o.gen.n_predict;  // an encoder: one pass
  p.n_positions = p.n_prompt + n_generate - 1;
  p.shape = lm.cfg.shape();
  setup.schedule = make_schedule(p);
  exposure = check_security(setup.schedule, o.rho, o.insecure);
  if (warn && !exposure.warnings.empty())
    std::fprintf(stderr,
                 "cascade: warning: %zu CompNode%s can read other CompNodes' tokens off %s layer-0 partials (the span "
                 "attack, README \"Attacks\"); cascade plan lists how many\n",
                 exposure.warnings.size(), exposure.warnings.size() == 1 ? "" : "s",
                 exposure.warnings.size() == 1 ? "its" : "their");
  setup.client.n_generate = n_generate;
  setup.client.sampler = o.gen.sampler;
  setup.client.keep_logits = o.compare_reference || !o.gen.logits_out.empty();
  setup.client.stop_token = o.gen.ignore_eos ? -1 : lm.eos_id();
  setup.client.model = &lm.model;  // the final norm and output matrix (--lm-head client)
}

// The byte accounting, counted at both ends and predicted (PROTOCOL.md "Communication model").
struct ByteCheck {
  uint64_t protocol = 0, headers = 0, reports = 0;
  std::vector<std::string> problems;  // empty: sent = received = predicted
};

ByteCheck check_bytes(const CascadeReport& rep) {
  ByteCheck b;
  for (const CommFlow& f : protocol_flows(to_flows(rep.sent)))
    (f.kind == CommKind::header ? b.headers : b.protocol) += f.bytes;
  for (const CommFlow& f : to_flows(rep.received))
    if (f.kind == CommKind::report) b.reports += f.bytes;
  b.problems = byte_count_differences(rep);
  return b;
}

std::string mib(uint64_t kb) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", kb / 1024.0);
  return buf;
}

void print_report(const RunOptions& o, const CascadeReport& rep, const LoadedModel& lm, double wall,
                  const ExposureReport& exposure, const ByteCheck& bytes,
                  const std::optional<ReferenceCheck>& rc) {
  const Schedule& s = rep.schedule;
  const int n_gen = (int)rep.client.tokens.size();
  double compute = 0.0;  // summed over all parties
  for (const PartyStats& st : rep.stats) compute += st.compute_s;
  if (o.json) {
    nlohmann::json parties = nlohmann::json::array();
    for (size_t r = 0; r < rep.stats.size(); ++r) {
      const PartyStats& st = rep.stats[r];
      const MemoryStats& m = st.memory;
      parties.push_back({{"rank", r}, {"party", s.role_of_rank((int)r).name()},
                         {"wall_s", st.wall_s}, {"compute_s", st.compute_s}, {"wait_s", st.wait_s},
                         {"bytes_sent", st.bytes_sent}, {"messages_sent", st.messages_sent},
                         {"memory_kb", {{"rss", m.rss_kb}, {"rss_anon", m.rss_anon_kb},
                                        {"rss_file", m.rss_file_kb}, {"rss_shmem", m.rss_shmem_kb},
                                        {"pss", m.pss_kb}, {"peak_rss", m.hwm_kb}}}});
    }
    const CommEstimate est = predict_run(s, std::max(n_gen, 1), 4);
    nlohmann::json j = {{"schedule", schedule_json(s)}, {"alpha", s.alpha}, {"beta", s.beta},
                        {"c", s.c}, {"delta", s.delta}, {"strategy", s.strategy},
                        {"attn_sharding", attn_sharding_name(s.attn_sharding)},
                        {"lm_head", lm_head_name(s.lm_head)}, {"ranks", s.n_ranks()},
                        {"prompt_tokens", s.n_prompt}, {"tokens", rep.client.tokens},
                        {"model", lm.spec.path}, {"n_layer", lm.cfg.n_layer},
                        {"text", lm.tokenizer ? nlohmann::json(lm.tokenizer->decode(rep.client.tokens))
                                              : nlohmann::json(nullptr)},
                        {"wall_s", wall},
                        {"exposure", exposure_json(exposure)},
                        {"bytes", {{"protocol", bytes.protocol}, {"headers", bytes.headers},
                                   {"reports", bytes.reports},
                                   {"sent_received_predicted_equal", bytes.problems.empty()},
                                   {"differences", bytes.problems}}},
                        {"messages_per_layer", est.messages_per_layer()},
                        {"compute_s_sum", compute}, {"parties", parties}};
    j["family"] = family_name(lm.cfg.family);
    if (lm.cfg.encoder())
      j["hidden"] = {{"rows", rep.client.hidden.size() / lm.cfg.d_model}, {"d", lm.cfg.d_model},
                     {"summary", hidden_summary(rep.client.hidden, lm.cfg.d_model)}};
    if (rc)
      j["reference"] = {{"compute_s", rc->compute_s}, {"max_rel_err", rc->max_rel_err},
                        {"same_tokens", rc->same_tokens}, {"overhead", compute / rc->compute_s}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  if (lm.cfg.encoder())
    std::printf("%s\n\nwall time: %.3f s for %d input tokens (one pass)\n",
                hidden_summary(rep.client.hidden, lm.cfg.d_model).c_str(), wall, s.n_prompt);
  else
    std::printf("\n\nwall time: %.3f s for %d prompt tokens + %d generated\n", wall, s.n_prompt, n_gen);
  std::printf("bytes moved: %llu (protocol) + %llu (message headers), counted by every sender and every receiver:\n"
              "  %s\n",
              (unsigned long long)bytes.protocol, (unsigned long long)bytes.headers,
              bytes.problems.empty()
                  ? "sent = received = predicted by the communication model, for every (src, dst, layer, kind)"
                  : "MISMATCH:");
  for (const std::string& p : bytes.problems) std::printf("    %s\n", p.c_str());
  std::printf("  end-of-run reports to rank 0: %llu bytes (outside the protocol)\n",
              (unsigned long long)bytes.reports);
  std::printf("views: every message was checked against its receiver's view on arrival: no violation\n");
  if (rc) {
    if (lm.cfg.encoder())
      std::printf("single-process reference: max relative hidden-state difference %.2e (worst row);\n",
                  rc->max_rel_err);
    else
      std::printf("single-process reference: max relative logit difference %.2e, %s tokens;\n", rc->max_rel_err,
                  rc->same_tokens ? "same" : "DIFFERENT");
    std::printf("  compute summed over all parties %.3f s / reference %.3f s = %.2fx\n", compute, rc->compute_s,
                compute / rc->compute_s);
  }
  std::printf("\n%-5s %-16s %10s %10s %10s %14s %9s %9s %9s %9s\n", "rank", "party", "compute s", "wait s",
              "wall s", "bytes sent", "messages", "RSS MiB", "anon MiB", "PSS MiB");
  for (size_t r = 0; r < rep.stats.size(); ++r) {
    const PartyStats& st = rep.stats[r];
    std::printf("%-5zu %-16s %10.3f %10.3f %10.3f %14llu %9llu %9s %9s %9s\n", r,
                s.role_of_rank((int)r).name().c_str(), st.compute_s, st.wait_s, st.wall_s,
                (unsigned long long)st.bytes_sent, (unsigned long long)st.messages_sent,
                mib(st.memory.rss_kb).c_str(), mib(st.memory.rss_anon_kb).c_str(),
                mib(st.memory.pss_kb).c_str());
  }
}

// What a trace of this run says of it, whether it finished or not.
TraceMeta run_meta(const RunOptions& o, const LoadedModel& lm, const std::string& start_time) {
  TraceMeta m;
  m.views = o.trace_views;
  m.cascade_version = "0.1";
  m.git_commit = CASCADE_GIT_COMMIT;
  m.start_time = start_time;
  m.command_line = command_line();
  m.model_name = lm.cfg.name;
  const ModelSpec& spec = lm.spec;
  if (spec.synthetic()) {  // its identity is the generator's key (name, layers, seed, version)
    m.model_source = spec.path + " --layers " + std::to_string(lm.cfg.n_layer) + " --weight-seed " +
                     std::to_string(spec.weight_seed);
    m.model_sha256 = to_hex(synthetic_key(lm.cfg, spec.weight_seed));
  } else {
    m.model_source = spec.path;
    m.model_sha256 = to_hex(sha256_file(spec.path));
  }
  m.d_ff = lm.cfg.d_ff;
  m.rho = o.rho;
  m.backend = o.gen.backend;
  m.transport = o.transport;
  return m;
}

// Rank 0, after the run: the whole trace, written to --trace.
void write_run_trace(const RunOptions& o, CascadeReport& rep, const LoadedModel& lm,
                     const std::string& start_time) {
  Trace tr;
  TraceMeta& m = tr.meta;
  m = run_meta(o, lm, start_time);
  m.complete = true;
  m.n_generated = (int)rep.client.tokens.size();
  m.world_size = (int)rep.traces.size();
  for (const RankTrace& r : rep.traces) m.hosts.push_back(r.host);
  for (const CommFlow& f : protocol_flows(to_flows(rep.sent))) m.bytes_sent += f.bytes;
  for (const CommFlow& f : protocol_flows(to_flows(rep.received))) m.bytes_received += f.bytes;
  for (const CommFlow& f : flows_run(rep.schedule, std::max(1, m.n_generated), 4)) m.bytes_predicted += f.bytes;
  tr.schedule = rep.schedule;
  tr.ranks = std::move(rep.traces);
  write_trace(o.trace, tr);
  uint64_t bytes = 0;
  if (FILE* f = std::fopen(o.trace.c_str(), "rb")) {
    std::fseek(f, 0, SEEK_END);
    bytes = (uint64_t)std::ftell(f);
    std::fclose(f);
  }
  if (!o.json)
    std::printf("\ntrace: %s (%s%s). Look at it with\n"
                "  cascade trace summary %s\n"
                "  cascade trace export %s --chrome -o %s.json   (open in https://ui.perfetto.dev or chrome://tracing)\n"
                "  cascade simulate %s --net lan-10g\n",
                o.trace.c_str(), format_bytes(bytes).c_str(), o.trace_views ? ", with views" : "",
                o.trace.c_str(), o.trace.c_str(), o.trace.c_str(), o.trace.c_str());
}

// Rank 0, when the run failed: its own recording up to the error, in a trace marked
// incomplete with the reason (the other ranks' recordings never reached it).
void write_partial_trace(const RunOptions& o, const Schedule& s, RankTrace mine, const LoadedModel& lm,
                         const std::string& start_time, const std::string& error, int world_size) {
  Trace tr;
  tr.meta = run_meta(o, lm, start_time);
  tr.meta.complete = false;
  tr.meta.error = error;
  tr.meta.world_size = world_size;
  tr.meta.hosts.assign(world_size, "?");
  tr.meta.hosts[0] = mine.host;
  tr.schedule = s;
  tr.ranks.push_back(std::move(mine));
  write_trace(o.trace, tr);
  std::fprintf(stderr, "cascade run: the trace so far (rank 0's recording) is in %s, marked incomplete\n",
               o.trace.c_str());
}

// "0 client, 1-4 CompNode 0-3, 5-20 AttnNode (0,0)-(3,3)"
std::string parties_by_rank(const Schedule& s) {
  auto range = [&](int first, int last) {
    const std::string a = s.role_of_rank(first).name(), b = s.role_of_rank(last).name();
    if (first == last) return std::to_string(first) + " " + a;
    return std::to_string(first) + "-" + std::to_string(last) + " " + a + "-" + b.substr(b.find(' ') + 1);
  };
  return "0 client, " + range(1, s.alpha) + ", " + range(s.alpha + 1, s.n_ranks() - 1);
}

// A rank's run failed: it says so and tells the other ranks (their waits end at once, repeating
// this failure instead of each naming whoever it waited for), `save` keeps what it can (rank
// 0's trace), and the job ends. A rank the run was ended for says why it stopped. Under a
// launcher that is ending the job (SIGTERM) it exits without MPI_Abort, which could wait on
// the dead.
[[noreturn]] void end_failed_run(Transport& t, const Schedule& s, const std::exception& e, const std::string& context,
                                 const std::function<void(const std::string&)>& save) {
  const std::string me = t.peer_name(t.rank());
  const bool ended_elsewhere = dynamic_cast<const RunEnded*>(&e) != nullptr;
  std::fprintf(stderr, "\ncascade run: %s: %s: %s%s\n", me.c_str(), ended_elsewhere ? "stopped" : "error",
               context.c_str(), e.what());
  // The launcher names a dead rank by number ("task 5: Killed"); this says which party it was.
  if (t.rank() == 0 && termination_signal() && s.n_ranks() == t.size())
    std::fprintf(stderr, "cascade run: the parties by rank: %s\n", parties_by_rank(s).c_str());
  std::fflush(stderr);
  if (!ended_elsewhere) t.notify_abort(me + " failed: " + context + e.what());
  if (save) {
    try {
      save(me + (ended_elsewhere ? " stopped: " : ": ") + context + e.what());
    } catch (const std::exception& err) {
      std::fprintf(stderr, "cascade run: error: %s\n", err.what());
    }
  }
  std::fflush(nullptr);
  if (termination_signal()) {
    // A moment more, in which ranks that got the signal later still find this one alive.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::_Exit(128 + termination_signal());
  }
  // Rank 0 ends the job once it has saved what it has. The others, which MPI_Abort would end
  // with it, leave it the time to (it has the notice) and end the job themselves if it cannot
  // (dead or stuck).
  if (t.rank() != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

// This rank among the ranks of its node: MPI's own view (no launcher's environment needed).
// Collective over MPI_COMM_WORLD.
struct NodePlace {
  int ranks = 1;    // ranks on this node
  int rank = 0;     // this one's index among them
  int parties = 0;  // ranks on this node other than world rank 0 (the client, on the CPU)
  int party = -1;   // this one's index among those (−1: the client)
};
NodePlace node_place() {
  MPI_Comm node, parties;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  NodePlace p;
  MPI_Comm_size(node, &p.ranks);
  MPI_Comm_rank(node, &p.rank);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_split(node, world_rank == 0 ? MPI_UNDEFINED : 0, p.rank, &parties);
  if (parties != MPI_COMM_NULL) {
    MPI_Comm_size(parties, &p.parties);
    MPI_Comm_rank(parties, &p.party);
    MPI_Comm_free(&parties);
  }
  MPI_Comm_free(&node);
  return p;
}

// A party's CUDA backend: the GPUs of its node dealt out by its index among the node's parties.
// With NCCL every party needs a GPU of its own (NCCL refuses two ranks on one device).
std::unique_ptr<Backend> party_cuda_backend(const NodePlace& place, bool nccl) {
  const int n = cuda_device_count();
  if (nccl && n > 0 && place.parties > n)
    throw std::runtime_error(std::to_string(place.parties) + " parties on this node share its " + std::to_string(n) +
                             " GPU" + (n == 1 ? "" : "s") +
                             ": --transport nccl needs one GPU per rank (use --transport mpi, or fewer ranks per node)");
  return make_cuda_backend(n > 0 ? place.party % n : 0);  // no device: its error says so
}

// Threads of this rank's math (OpenMP: the kernels, oneDNN and OpenBLAS): --threads when given;
// else the CPUs this rank may run on, shared among the ranks of its node, at least one. Ranks
// that outnumber the cores thus run one thread each: no pools of spinning threads fighting over
// cores.
int party_threads(int requested, const NodePlace& place) {
  const int local = place.ranks, node_rank = place.rank;
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  if (requested <= 0) return std::max(1, cpus / local);
  if (node_rank == 0 && requested * local > cpus)
    std::fprintf(stderr, "cascade run: warning: --threads %d × %d ranks on this node > %d CPUs: the threads will contend\n",
                 requested, local, cpus);
  return requested;
}

// Rank 0's checks of the options that need no model (one run and --prompts alike); throws
// std::invalid_argument.
void check_client_options(const RunOptions& o, CascadeSetup& setup) {
  if (!o.fault.empty()) setup.fault = parse_fault(o.fault);
  if (o.transport == "nccl" && o.gen.backend != "cuda")
    throw std::invalid_argument("--transport nccl moves payloads GPU to GPU: it needs --backend cuda");
  if (o.transport == "nccl" && !nccl_built())
    throw std::invalid_argument("--transport nccl: this build has no NCCL (it was not found when configuring)");
  if (setup.precision == Precision::bf16 && !cpu_has_bf16())
    throw std::invalid_argument("--precision bf16 needs a CPU with AVX512_BF16 or AMX; oneDNN finds " +
                                packed_gemm_isa() + " here");
}

// --prompts FILE (serve mode): one set of ranks runs many prompts back to back. Rank 0 reads
// and plans every prompt first (a bad line refuses the whole file before any compute), then
// runs them one after another, printing one JSON line per prompt; the other ranks serve run
// after run (each a whole run_cascade: schedule, views, byte checks, reports) until rank 0 ends
// the series with an empty schedule.
int serve(const RunOptions& o, Transport& t, CascadeSetup& setup) {
  const int rank = t.rank();
  if (rank != 0) {
    for (;;) {
      CascadeReport rep;
      try {
        rep = run_cascade(t, setup);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "\ncascade run: %s: error: %s\n", t.peer_name(rank).c_str(), e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
      if (!rep.ran) return 0;  // the client ended the series (or refused to start it)
    }
  }
  std::optional<LoadedModel> lm;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Schedule> schedules;
  ExposureReport exposure;
  try {
    for (const auto& [flag, given] : {std::pair{"--trace", !o.trace.empty()}, std::pair{"--logits-out", !o.gen.logits_out.empty()},
                                      std::pair{"--hidden-out", !o.gen.hidden_out.empty()},
                                      std::pair{"--compare-reference", o.compare_reference}})
      if (given) throw std::invalid_argument(std::string(flag) + " is for one run, not for --prompts");
    check_client_options(o, setup);
    lm.emplace(load_model(resolve_model(o.gen.model)));
    if (lm->cfg.encoder()) throw std::invalid_argument("--prompts serves decoders; " + lm->cfg.arch + " is an encoder");
    std::ifstream in(o.prompts);
    if (!in) throw std::invalid_argument("cannot read --prompts file '" + o.prompts + "'");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = o.prompts + ":" + std::to_string(n);
      std::vector<int32_t> ids = jsonl_prompt_ids(*lm, line, where);
      if ((int)ids.size() + o.gen.n_predict > lm->cfg.n_ctx)
        throw std::invalid_argument(where + ": prompt (" + std::to_string(ids.size()) + " tokens) plus " +
                                    std::to_string(o.gen.n_predict) + " generated tokens exceeds the model context of " +
                                    std::to_string(lm->cfg.n_ctx));
      try {
        plan_on_client(o, setup, *lm, ids, exposure, /*warn=*/prompts.empty());  // once, not per prompt
        check_world_size(setup.schedule, t.size());
      } catch (const std::exception& e) {
        throw std::invalid_argument(where + ": " + e.what());
      }
      prompts.push_back(std::move(ids));
      schedules.push_back(setup.schedule);
    }
    if (prompts.empty()) throw std::invalid_argument("--prompts file '" + o.prompts + "' holds no prompt");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cascade run: error: %s\n", e.what());
    abort_run(t);
    return 2;
  }
  std::fprintf(stderr, "cascade run: serving %zu prompts from %s on %d ranks\n", prompts.size(), o.prompts.c_str(), t.size());
  const auto t_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Planned above; the client options are the same for every prompt (plan_on_client set them).
    setup.schedule = schedules[i];
    setup.prompt = prompts[i];
    setup.client.keep_logits = true;  // their digest: compare with one-shot runs
    const auto t0 = std::chrono::steady_clock::now();
    CascadeReport rep;
    try {
      rep = run_cascade(t, setup);
    } catch (const std::exception& e) {
      end_failed_run(t, setup.schedule, e, "prompt " + std::to_string(i) + ": ", nullptr);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<std::string> bytes = byte_count_differences(rep);
    if (!bytes.empty()) {
      std::fprintf(stderr, "cascade run: error: prompt %zu: the byte counts disagree: %s\n", i, bytes.front().c_str());
      abort_run(t);
      return 4;
    }
    std::string logits;
    for (const std::vector<float>& row : rep.client.logits)
      logits.append(reinterpret_cast<const char*>(row.data()), row.size() * sizeof(float));
    nlohmann::json rss = nlohmann::json::array(), anon = nlohmann::json::array();
    for (const PartyStats& st : rep.stats) {
      rss.push_back(st.memory.rss_kb);
      anon.push_back(st.memory.rss_anon_kb);
    }
    nlohmann::json j = {{"prompt", i}, {"prompt_tokens", prompts[i].size()}, {"tokens", rep.client.tokens},
                        {"logits_sha256", to_hex(sha256_string(logits))}, {"wall_s", wall}, {"rss_kb", rss}, {"rss_anon_kb", anon}};
    if (lm->tokenizer) j["text"] = lm->tokenizer->decode(rep.client.tokens);
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    if ((i + 1) % 25 == 0 || i + 1 == prompts.size())
      std::fprintf(stderr, "cascade run: %zu of %zu prompts done (%.1f s)\n", i + 1, prompts.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  }
  abort_run(t);  // the end of the series: an empty schedule releases every party
  return 0;
}

int run(const RunOptions& o) {
  MpiSession mpi;
  end_waits_on_termination();  // a rank the launcher ends says where it was (and rank 0 saves its trace)
  const NodePlace place = node_place();
  set_cpu_threads(party_threads(o.gen.threads, place));
  std::unique_ptr<Transport> t = make_mpi_transport(MPI_COMM_WORLD);
  const int rank = t->rank();
  // The parties wait one layer's message at a time and so notice a dead or stuck peer first,
  // naming it and the layer; the client, waiting for a whole step's final row, is the backstop.
  t->set_timeout(rank == 0 ? 2 * o.timeout : o.timeout);
  CascadeSetup setup;
  setup.precision = parse_precision(o.gen.precision);
  const bool nccl = o.transport == "nccl";
  if (o.gen.backend == "cuda") setup.backend = [&place, nccl] { return party_cuda_backend(place, nccl); };
  // NCCL: its own communicator for the unique id (collective, so every rank makes it).
  struct LinkComm {
    MPI_Comm comm = MPI_COMM_NULL;
    ~LinkComm() {
      if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
    }
  } link_comm;
  if (nccl) {
    MPI_Comm_dup(MPI_COMM_WORLD, &link_comm.comm);
    setup.link = [&](Backend& be) { return make_nccl_link(be, link_comm.comm, 1, t->size() - 1, o.timeout); };
  }
  setup.trace = !o.trace.empty();
  setup.trace_views = o.trace_views;
  const std::string start_time = utc_now();
  std::optional<LoadedModel> lm;  // rank 0: tokenizer, config, and the weights of the LM head
  std::optional<Model> model;     // CompNodes; AttnNodes never open the model
  setup.model = [&]() -> const Model& {  // once per process, however many runs it serves
    if (!model) model.emplace(Model::load(resolve_model(o.gen.model)));
    return *model;
  };
  if (rank != 0 && !o.fault.empty()) {
    try {
      setup.fault = parse_fault(o.fault);
    } catch (const std::exception&) {
      // rank 0 reports it and aborts the run
    }
  }
  if (!o.prompts.empty()) return serve(o, *t, setup);

  ExposureReport exposure;
  if (rank == 0) {
    try {
      check_client_options(o, setup);
      if (o.trace_views && o.trace.empty()) throw std::invalid_argument("--trace-views needs --trace FILE");
      // An unwritable trace path fails now, before any compute.
      if (!o.trace.empty()) check_trace_path(o.trace, o.force);
      for (const auto& [flag, path] : {std::pair{"--hidden-out", o.gen.hidden_out}, std::pair{"--logits-out", o.gen.logits_out}})
        if (!path.empty() && !std::ofstream(path, std::ios::app))
          throw std::invalid_argument(std::string("cannot write ") + flag + " file '" + path + "'");
      lm.emplace(load_model(resolve_model(o.gen.model)));
      plan_on_client(o, setup, *lm, encode_prompt(*lm, o.gen), exposure);
      check_world_size(setup.schedule, t->size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cascade run: error: %s\n", e.what());
      abort_run(*t);
      return 2;
    }
    if (!o.json) {
      const Schedule& s = setup.schedule;
      const std::string cd = s.strategy == kStrategyCDelta
                                 ? ", c = " + std::to_string(s.c) + ", δ = " + std::to_string(s.delta)
                                 : "";
      const std::string synth =
          lm->tokenizer ? "" : "model " + lm->cfg.name + " (" + std::to_string(lm->cfg.n_layer) + " layers), ";
      if (lm->cfg.encoder())
        std::printf("Cascade run: %s, α = %d, β = %d%s, %s attention sharding: %d ranks;\n"
                    "%s%s encoder (bidirectional attention), input %d tokens, one pass: the client gets the last "
                    "hidden states; ρ = %d%s\n",
                    s.strategy.c_str(), s.alpha, s.beta, cd.c_str(), attn_sharding_name(s.attn_sharding),
                    s.n_ranks(), synth.c_str(), lm->cfg.arch.c_str(), s.n_prompt, o.rho,
                    o.insecure ? " (--insecure)" : "");
      else
        std::printf("Cascade run: %s, α = %d, β = %d%s, %s attention sharding, LM head at the %s: %d ranks;\n"
                    "%sprompt %d tokens, %d to generate, ρ = %d%s\n",
                    s.strategy.c_str(), s.alpha, s.beta, cd.c_str(), attn_sharding_name(s.attn_sharding),
                    lm_head_name(s.lm_head), s.n_ranks(), synth.c_str(), s.n_prompt, o.gen.n_predict, o.rho,
                    o.insecure ? " (--insecure)" : "");
      print_exposure(exposure);
      std::printf("\n");
      setup.client.on_token = [&, first = true](int32_t tok) mutable {
        std::fputs(lm->token_output(tok, first).c_str(), stdout);
        std::fflush(stdout);
        first = false;
      };
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  CascadeReport rep;
  RankTrace partial;  // rank 0's recording, should the run fail
  if (rank == 0) setup.partial_trace = &partial;
  try {
    rep = run_cascade(*t, setup);
  } catch (const std::exception& e) {
    std::function<void(const std::string&)> save;
    if (rank == 0 && !o.trace.empty() && !partial.party.empty())
      save = [&](const std::string& why) {
        write_partial_trace(o, setup.schedule, std::move(partial), *lm, start_time, why, t->size());
      };
    end_failed_run(*t, setup.schedule, e, "", save);
  }
  if (!rep.ran) return 2;  // the client refused to start; it said why
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rank != 0) return 0;
  std::optional<ReferenceCheck> rc;
  if (o.compare_reference)
    rc = check_against_reference(lm->model, setup.prompt, rep.client, o.gen.sampler.temperature <= 0.0f,
                                 setup.precision);
  const ByteCheck bytes = check_bytes(rep);
  print_report(o, rep, *lm, wall, exposure, bytes, rc);
  if (!o.gen.hidden_out.empty() || !o.gen.logits_out.empty()) {
    try {
      if (!o.gen.hidden_out.empty()) write_hidden(o.gen.hidden_out, rep.client.hidden);
      if (!o.gen.logits_out.empty()) write_logits(o.gen.logits_out, rep.client.logits);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cascade run: error: %s\n", e.what());
      return 5;
    }
  }
  if (!o.trace.empty()) {
    try {
      write_run_trace(o, rep, *lm, start_time);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cascade run: error: %s\n", e.what());
      return 5;
    }
  }
  if (!bytes.problems.empty()) {
    std::fprintf(stderr, "cascade run: error: the byte counts disagree (sent, received, predicted): %s\n",
                 bytes.problems.front().c_str());
    return 4;
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  o->sched.alpha = 4;
  o->sched.beta = 4;
  o->sched.c = 8;
  CLI::App* sub = app.add_subcommand(
      "run", "Cascade inference under mpirun/srun: rank 0 client, ranks 1..α CompNodes, then β² AttnNodes");
  add_schedule_options(sub, o->sched);
  add_generate_options(sub, o->gen);
  sub->add_option("--rho", o->rho, "Refuse schedules in which a party's gap is below ρ")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--insecure", o->insecure, "Run even if the schedule fails the security check");
  sub->add_option("--timeout", o->timeout, "Seconds to wait for a peer; then it is probed, and if it does not answer within half as long again it is named dead or stuck and the run ends (a peer that answers is waiting on another: the wait goes on)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_flag("--json", o->json, "Print the result as JSON (rank 0)");
  sub->add_flag("--compare-reference", o->compare_reference,
                "Afterwards, rank 0 reruns the prompt in the single-process reference (one thread) and reports the logit difference and the compute overhead");
  sub->add_option("--trace", o->trace,
                  "Write a per-layer trace of the run to this HDF5 file: every party's spans (compute, send, "
                  "wait) and messages (layout: include/cascade/trace.h)");
  sub->add_flag("--trace-views", o->trace_views,
                "With --trace: also record the bytes of every message each party received (its view; large)");
  sub->add_flag("--force", o->force, "Overwrite an existing --trace file");
  sub->add_option("--prompts", o->prompts,
                  "Serve mode: run every prompt of this JSONL file (a JSON string, or an array of token ids, per line) "
                  "back to back on the same ranks, one JSON line of results per prompt (tokens, logits digest, time, "
                  "every rank's RSS)")
      ->check(CLI::ExistingFile);
  sub->add_option("--transport", o->transport,
                  "How payloads between CompNodes and AttnNodes travel: mpi (host buffers; a GPU's are staged "
                  "through the host), or nccl (GPU to GPU; needs --backend cuda and one GPU per rank). Message "
                  "headers and the client's traffic always use MPI")
      ->capture_default_str()
      ->check(CLI::IsMember({"mpi", "nccl"}));
  sub->add_option("--fault", o->fault,
                  "Testing only: KIND:RANK[:LAYER] makes one party misbehave (stall, stall-start, stall-end, "
                  "misroute, leak, kill; see include/cascade/fault.h)")
      ->group("Fault injection");
  sub->callback([o] {
    const int rc = run(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace cascade::cli
