// cascade export-gguf: a synthetic model's generated weights as an f32 GGUF file
// (gguf_export.h), for programs that should run the very same model (bench/smpc/).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "cascade/gguf_export.h"
#include "cascade/model.h"
#include "cascade/synthetic.h"
#include "cli_common.h"
#include "commands.h"

namespace cascade::cli {

namespace {
struct ExportOptions {
  ModelOptions model;
  std::string out;
  bool force = false;
};
}  // namespace

void add_export_command(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  CLI::App* sub = app.add_subcommand(
      "export-gguf", "Write a synthetic model's weights as an f32 GGUF file in llama.cpp's conventions");
  add_model_options(sub, o->model, /*weights=*/true, "required: synthetic:NAME");
  sub->add_option("-o,--output", o->out, "The GGUF file to write")->required();
  sub->add_flag("--force", o->force, "Overwrite an existing file");
  sub->callback([o] {
    const ModelSpec spec = resolve_model(o->model);
    if (!spec.synthetic())
      throw std::invalid_argument("export-gguf writes synthetic models (--model synthetic:NAME); '" + spec.path +
                                  "' is already a file");
    if (std::filesystem::exists(o->out) && !o->force)
      throw std::invalid_argument(o->out + " exists (pass --force to overwrite it)");
    const ModelConfig cfg = model_config(spec);
    const auto t0 = std::chrono::steady_clock::now();
    int last = -1;
    export_synthetic_gguf(cfg, spec.weight_seed, o->out, [&last](uint64_t done, uint64_t total) {
      const int pct = (int)(100 * done / std::max<uint64_t>(total, 1));
      if (pct / 10 != last / 10) std::fprintf(stderr, "\rexport-gguf: %3d%%", pct), std::fflush(stderr);
      last = pct;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\rexport-gguf: %s (%s, %d layers, weight seed %llu) → %s (%.1f MB) in %.1f s\n",
                 cfg.name.c_str(), cfg.arch.c_str(), cfg.n_layer, (unsigned long long)spec.weight_seed,
                 o->out.c_str(), std::filesystem::file_size(o->out) / 1e6, s);
  });
}

}  // namespace cascade::cli
