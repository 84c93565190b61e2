// Each subcommand of the `cascade` executable lives in its own cmd_*.cpp and registers itself
// on the top-level CLI11 app. main.cpp calls these in order.
#pragma once

#include <CLI/CLI.hpp>

namespace cascade::cli {

void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_comm_model_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_simulate_command(CLI::App& app);
void add_trace_command(CLI::App& app);
void add_attack_command(CLI::App& app);
void add_export_command(CLI::App& app);

// `cascade attack features` (cmd_attack_features.cpp), added to the `attack` group that
// add_attack_command (cmd_attack.cpp) creates.
void add_attack_features(CLI::App& attack);

}  // namespace cascade::cli
