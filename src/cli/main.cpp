// `cascade`: one executable, one subcommand per task (see commands.h). Errors go to stderr
// with a non-zero exit code.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "cli_common.h"
#include "commands.h"

namespace {

// Under mpirun/srun every rank parses the same command line: let only rank 0 report a
// mistake in it, instead of every party printing the same message.
bool quiet_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(var)) return std::atoi(v) != 0;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  cascade::cli::set_command_line(argc, argv);
  CLI::App app{"Cascade: token-sharded private LLM inference (ICML 2025) on CPUs, GPUs and MPI"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cascade 0.1");
  // A later option wins (scripts pass defaults that users may override on the command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cascade::cli::add_generate_command(app);
  cascade::cli::add_run_command(app);
  cascade::cli::add_plan_command(app);
  cascade::cli::add_comm_model_command(app);
  cascade::cli::add_simulate_command(app);
  cascade::cli::add_bench_command(app);
  cascade::cli::add_tokenize_command(app);
  cascade::cli::add_trace_command(app);
  cascade::cli::add_attack_command(app);
  cascade::cli::add_export_command(app);
  cascade::cli::add_attack_features(*app.get_subcommand("attack"));  // cmd_attack_features.cpp
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (quiet_rank() && e.get_exit_code() != 0) {
      // mpirun tears the job down at the first non-zero exit, and rank 0's message may not be
      // out yet: give it a moment (a test once saw the message lost).
      std::this_thread::sleep_for(std::chrono::seconds(1));
      return e.get_exit_code();
    }
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cascade: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
