// cascade run: one Cascade inference under mpirun/srun, every rank one party.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cascade/backend.h"
#include "cascade/gguf.h"
#include "cascade/mpi_transport.h"
#include "cascade/protocol.h"
#include "cli_common.h"
#include "commands.h"
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
  FaultOptions fault;
};

struct MpiSession {
  MpiSession() { MPI_Init(nullptr, nullptr); }
  ~MpiSession() { MPI_Finalize(); }
};

// Rank 0's set-up: tokenise, plan, check security. Throws on any bad input.
void plan_on_client(const RunOptions& o, CascadeSetup& setup, const LoadedModel& lm,
                    ExposureReport& exposure) {
  setup.prompt = encode_prompt(lm, o.gen);
  ScheduleParams p = o.sched;
  p.n_prompt = (int)setup.prompt.size();
  p.n_positions = p.n_prompt + o.gen.n_predict - 1;
  setup.schedule = make_schedule(p);
  exposure = check_security(setup.schedule, p.n_prompt, o.rho, o.insecure);
  setup.client.n_generate = o.gen.n_predict;
  setup.client.sampler = o.gen.sampler;
  setup.client.stop_token = o.gen.ignore_eos ? -1 : lm.tokenizer->eos_id();
}

void print_report(const RunOptions& o, const CascadeReport& rep, const ModelConfig& cfg,
                  const Tokenizer& tok, double wall) {
  const Schedule& s = rep.schedule;
  const int n_gen = (int)rep.client.tokens.size();
  const std::vector<CommFlow> measured = to_flows(rep.sent);
  const std::vector<CommFlow> predicted = flows_run(cfg, s, s.n_prompt, n_gen, 4);
  uint64_t m_total = 0, p_total = 0;
  for (const CommFlow& f : measured) m_total += f.bytes;
  for (const CommFlow& f : predicted) p_total += f.bytes;
  bool same = measured.size() == predicted.size();
  for (size_t i = 0; same && i < measured.size(); ++i)
    same = measured[i].src == predicted[i].src && measured[i].dst == predicted[i].dst &&
           measured[i].layer == predicted[i].layer && measured[i].kind == predicted[i].kind &&
           measured[i].bytes == predicted[i].bytes;
  if (o.json) {
    nlohmann::json parties = nlohmann::json::array();
    for (size_t r = 0; r < rep.stats.size(); ++r) {
      const PartyStats& st = rep.stats[r];
      parties.push_back({{"rank", r}, {"party", s.role_of_rank((int)r).name()},
                         {"wall_s", st.wall_s}, {"compute_s", st.compute_s}, {"wait_s", st.wait_s},
                         {"bytes_sent", st.bytes_sent}, {"messages_sent", st.messages_sent}});
    }
    nlohmann::json j = {{"alpha", s.alpha}, {"beta", s.beta}, {"c", s.c}, {"delta", s.delta},
                        {"strategy", s.strategy}, {"ranks", s.n_ranks()},
                        {"prompt_tokens", s.n_prompt}, {"tokens", rep.client.tokens},
                        {"text", tok.decode(rep.client.tokens)}, {"wall_s", wall},
                        {"bytes_measured", m_total}, {"bytes_predicted", p_total},
                        {"bytes_match", same}, {"parties", parties}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("\n\nwall time: %.3f s for %d prompt tokens + %d generated\n", wall, s.n_prompt, n_gen);
  std::printf("bytes moved: %llu measured, %llu predicted by the communication model: %s\n",
              (unsigned long long)m_total, (unsigned long long)p_total,
              same ? "equal for every (src, dst, layer, kind)" : "MISMATCH");
  std::printf("\n%-5s %-16s %10s %10s %10s %14s %9s\n", "rank", "party", "compute s", "wait s",
              "wall s", "bytes sent", "messages");
  for (size_t r = 0; r < rep.stats.size(); ++r) {
    const PartyStats& st = rep.stats[r];
    std::printf("%-5zu %-16s %10.3f %10.3f %10.3f %14llu %9llu\n", r,
                s.role_of_rank((int)r).name().c_str(), st.compute_s, st.wait_s, st.wall_s,
                (unsigned long long)st.bytes_sent, (unsigned long long)st.messages_sent);
  }
}

int run(const RunOptions& o) {
  MpiSession mpi;
  set_cpu_threads(o.gen.threads > 0 ? o.gen.threads : 1);  // one core per party by default
  std::unique_ptr<Transport> t = make_mpi_transport(MPI_COMM_WORLD);
  t->set_timeout(o.timeout);
  const int rank = t->rank();
  const std::string model_path = o.gen.model.empty() ? default_model_path() : o.gen.model;

  CascadeSetup setup;
  setup.fault = o.fault;
  std::optional<LoadedModel> lm;       // rank 0 (tokenizer) and CompNodes (weights)
  std::optional<GgufFile> gguf;
  setup.model = [&]() -> const Model& {
    lm.emplace(load_model(model_path));
    return lm->model;
  };
  setup.config = [&] {
    gguf.emplace(model_path);
    return ModelConfig::from_gguf(*gguf);
  };

  ExposureReport exposure;
  if (rank == 0) {
    try {
      lm.emplace(load_model(model_path));
      plan_on_client(o, setup, *lm, exposure);
      check_world_size(setup.schedule, t->size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cascade run: error: %s\n", e.what());
      abort_run(*t);
      return 2;
    }
    if (!o.json) {
      std::printf("Cascade run: %s, α = %d, β = %d, c = %d, δ = %d: %d ranks; prompt %d tokens, ρ = %d%s\n",
                  setup.schedule.strategy.c_str(), setup.schedule.alpha, setup.schedule.beta,
                  setup.schedule.c, setup.schedule.delta, setup.schedule.n_ranks(),
                  setup.schedule.n_prompt, o.rho, o.insecure ? " (--insecure)" : "");
      print_exposure(exposure);
      std::printf("\n");
      setup.client.on_token = [&](int32_t tok) {
        std::fputs(lm->tokenizer->token_to_piece(tok).c_str(), stdout);
        std::fflush(stdout);
      };
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  CascadeReport rep;
  try {
    rep = run_cascade(*t, setup);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ncascade run: %s: error: %s\n", t->peer_name(rank).c_str(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  if (!rep.ran) return 2;  // the client refused to start; it said why
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rank == 0) print_report(o, rep, lm->model.cfg, *lm->tokenizer, wall);
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  o->sched.alpha = 4;
  o->sched.beta = 4;
  o->sched.c = 4;
  CLI::App* sub = app.add_subcommand(
      "run", "Cascade inference under mpirun/srun: rank 0 client, ranks 1..α CompNodes, then β² AttnNodes");
  add_schedule_options(sub, o->sched);
  add_generate_options(sub, o->gen);
  sub->add_option("--rho", o->rho, "Refuse schedules in which a party's gap is below ρ")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--insecure", o->insecure, "Run even if the schedule fails the ρ check");
  sub->add_option("--timeout", o->timeout, "Seconds to wait for a peer before aborting the run")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_flag("--json", o->json, "Print the result as JSON (rank 0)");
  sub->add_option("--stall-rank", o->fault.stall_rank, "Testing: this rank stops answering")->group("Fault injection");
  sub->add_option("--stall-layer", o->fault.stall_layer, "Testing: ... at this layer")->group("Fault injection");
  sub->callback([o] {
    const int rc = run(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace cascade::cli
