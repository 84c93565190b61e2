// Schedule options and printing shared by cascade plan, comm-model and run (cmd_plan.cpp).
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cascade/comm_model.h"
#include "cascade/exposure.h"
#include "cascade/model.h"
#include "cascade/model_config.h"
#include "cascade/schedule.h"

namespace cascade::cli {

// --alpha, --beta, --cluster, --delta, --strategy, --schedule-seed, --attn-sharding, --lm-head.
void add_schedule_options(CLI::App* sub, ScheduleParams& p);
// The model's dims: from --model (a GGUF or synthetic:NAME, with --layers) when given, else
// SmolLM2-135M's built-in dims.
ModelConfig plan_model_config(const ModelSpec& spec, std::string* source);
nlohmann::json comm_estimate_json(const CommEstimate& e);
nlohmann::json schedule_json(const Schedule& s);
nlohmann::json model_json(const ModelConfig& cfg, const std::string& source);
nlohmann::json exposure_json(const ExposureReport& r);
void print_exposure(const ExposureReport& r);

}  // namespace cascade::cli
