// Cascade over MPI against the single-process reference, on the real model.
// One mpirun hosts many runs: for each scenario the first 1 + α + β² ranks form a
// sub-communicator and play the parties; rank 0 checks, per scenario,
//   exactness  every logits row within max|Δ| / max|ref| ≤ 1e-4 and identical greedy tokens
//   bytes      measured bytes per (src, dst, layer, kind) == the communication model (for now
//              without the kinds the transport adds, header and report), and the bytes every
//              rank sent == the bytes its peers received, per (src, dst, layer, kind)
//   views      no message breaks a party's view (audit hook, sender and receiver side)
// and prints "OK"/"NOT OK" per scenario and a closing "N passed, N failed" line.
//
//   mpirun -np 21 cascade_mpi_tests [--suite quick|full] [--filter SUBSTRING]
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/exactness.h"
#include "cascade/gguf.h"
#include "cascade/model.h"
#include "cascade/mpi_transport.h"
#include "cascade/protocol.h"
#include "cascade/reference.h"
#include "cascade/tokenizer.h"
#include "cascade/view.h"
#include "kernels/softmax.h"

using namespace cascade;

namespace {

struct Scenario {
  std::string strategy;
  int alpha, beta, c, delta;  // delta 0: α·c
  uint64_t seed;
  int prompt;                 // index into kPrompts
  int n_generate;
  std::string name() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s α=%d β=%d c=%d δ=%d%s prompt=%d gen=%d", strategy.c_str(),
                  alpha, beta, c, delta, strategy == "random" ? (" seed=" + std::to_string(seed)).c_str() : "",
                  prompt, n_generate);
    return buf;
  }
};

// Prompts of 1, 6, 37 and ~70 tokens (raw text; the 37-token one is no multiple of any δ used).
const char* kPrompts[] = {
    "Hello",
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea, and then explain what a haiku is in one "
    "sentence.<|im_end|>\n<|im_start|>assistant\n",
    "In 1859, Charles Darwin published On the Origin of Species, which introduced the theory "
    "that populations evolve over the course of generations through a process of natural "
    "selection. The book presented a body of evidence that the diversity of life arose by "
    "common descent through a branching pattern of evolution. Darwin",
};

struct RefRun {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

std::string flow_str(const CommFlow& f) {
  return "(" + std::to_string(f.src) + " → " + std::to_string(f.dst) + ", layer " +
         std::to_string(f.layer) + ", " + comm_kind_name(f.kind) + ") " + std::to_string(f.bytes) + " B";
}

// "" when the flows are equal, else the first flow of `sent` and `received` that differ.
std::string first_difference(const std::vector<CommFlow>& sent, const std::vector<CommFlow>& received) {
  for (size_t i = 0; i < sent.size() || i < received.size(); ++i) {
    if (i < sent.size() && i < received.size() && sent[i] == received[i]) continue;
    return "sent " + (i < sent.size() ? flow_str(sent[i]) : "nothing") + ", received " +
           (i < received.size() ? flow_str(received[i]) : "nothing");
  }
  return "";
}

class Harness {
 public:
  explicit Harness(int world_rank) : rank_(world_rank) {
    path_ = default_model_path();
    gguf_ = std::make_unique<GgufFile>(path_);
    cfg_ = ModelConfig::from_gguf(*gguf_);
    Tokenizer tok(*gguf_);
    for (const char* p : kPrompts) prompts_.push_back(tok.encode(p));
  }

  const Model& model() {
    if (!model_) model_ = std::make_unique<Model>(Model::load(*gguf_));
    return *model_;
  }

  // The reference's greedy run of n tokens on prompt i (rank 0 only), cached.
  const RefRun& reference(int i, int n) {
    auto key = std::make_pair(i, n);
    auto it = refs_.find(key);
    if (it != refs_.end()) return it->second;
    RefRun r;
    Reference ref(model());
    std::vector<float> logits = ref.forward(prompts_[i]);
    for (int g = 0; g < n; ++g) {
      r.logits.push_back(logits);
      r.tokens.push_back(kernels::argmax_row(logits.data(), cfg_.n_vocab));
      if (g + 1 < n) logits = ref.forward({r.tokens.back()});
    }
    return refs_.emplace(key, std::move(r)).first->second;
  }

  // Returns true on rank 0 when the scenario passed (other ranks: true).
  bool run(const Scenario& sc) {
    ScheduleParams p;
    p.strategy = sc.strategy;
    p.alpha = sc.alpha;
    p.beta = sc.beta;
    p.c = sc.c;
    p.delta = sc.delta;
    p.seed = sc.seed;
    p.n_prompt = (int)prompts_[sc.prompt].size();
    p.n_positions = p.n_prompt + sc.n_generate - 1;
    p.shape = cfg_.shape();
    const Schedule sched = make_schedule(p);
    const int n = sched.n_ranks();

    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank_ < n ? 0 : MPI_UNDEFINED, rank_, &sub);
    bool ok = true;
    if (rank_ < n) {
      auto t = make_mpi_transport(sub);
      t->set_timeout(300);
      std::vector<std::string> violations;
      t->set_audit_hook([&](const Message& m, bool) {
        std::string v = view_violation(sched, cfg_, m);
        if (!v.empty()) violations.push_back(v);
      });
      CascadeSetup setup;
      if (rank_ == 0) {
        setup.schedule = sched;
        setup.prompt = prompts_[sc.prompt];
        setup.client.n_generate = sc.n_generate;
        setup.client.keep_logits = true;
      }
      setup.model = [this]() -> const Model& { return model(); };
      setup.config = [this] { return cfg_; };
      const CascadeReport rep = run_cascade(*t, setup);
      for (const std::string& v : violations) std::fprintf(stderr, "rank %d: view: %s\n", rank_, v.c_str());
      long nv = (long)violations.size(), total_v = 0;
      MPI_Reduce(&nv, &total_v, 1, MPI_LONG, MPI_SUM, 0, sub);
      if (rank_ == 0) ok = check(sc, sched, rep, total_v);
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return ok;
  }

 private:
  bool check(const Scenario& sc, const Schedule& s, const CascadeReport& rep, long violations) {
    const RefRun& ref = reference(sc.prompt, sc.n_generate);
    std::string why;
    double worst = 0.0;
    const auto& got = rep.client.logits;
    for (size_t i = 0; i < got.size() && i < ref.logits.size(); ++i)
      worst = std::max(worst, max_rel_error(got[i].data(), ref.logits[i].data(), cfg_.n_vocab));
    if (got.size() != ref.logits.size()) why += " logits rows " + std::to_string(got.size());
    if (worst > 1e-4) why += " logits rel err " + std::to_string(worst);
    if (rep.client.tokens != ref.tokens) why += " greedy tokens differ";
    const std::vector<CommFlow> measured = protocol_flows(to_flows(rep.sent));
    const std::vector<CommFlow> predicted = flows_run(s, sc.n_generate, 4);
    const bool bytes_ok = measured == predicted;
    uint64_t mb = 0, pb = 0;
    for (const CommFlow& f : measured) mb += f.bytes;
    for (const CommFlow& f : predicted) pb += f.bytes;
    if (!bytes_ok) why += " bytes measured " + std::to_string(mb) + " != predicted " + std::to_string(pb);
    const std::string diff = first_difference(to_flows(rep.sent), to_flows(rep.received));
    if (!diff.empty()) why += " sent != received: " + diff;
    if (violations) why += " " + std::to_string(violations) + " view violations";
    std::printf("%s %-62s rel %.1e  bytes %llu%s\n", why.empty() ? "OK    " : "NOT OK",
                sc.name().c_str(), worst, (unsigned long long)mb, why.c_str());
    std::fflush(stdout);
    return why.empty();
  }

  int rank_;
  std::string path_;
  std::unique_ptr<GgufFile> gguf_;
  ModelConfig cfg_;
  std::vector<std::vector<int32_t>> prompts_;
  std::unique_ptr<Model> model_;
  std::map<std::pair<int, int>, RefRun> refs_;
};

std::vector<Scenario> quick_suite() {
  std::vector<Scenario> v = {
      {"cdelta", 1, 1, 1, 0, 0, 1, 16},   // one CompNode, one AttnNode: the degenerate case
      {"cdelta", 2, 1, 2, 0, 0, 2, 16},
      {"cdelta", 2, 2, 2, 0, 0, 2, 16},   // 37 tokens: N not a multiple of δ = 4
      {"cdelta", 3, 2, 4, 10, 0, 2, 16},  // δ < α·c: a shorter last cluster
      {"cdelta", 4, 4, 4, 0, 0, 2, 16},   // the default: 21 ranks
      {"cdelta", 4, 2, 8, 0, 0, 1, 16},   // N = 6 < δ = 32: CompNodes without tokens
      {"cdelta", 3, 4, 4, 0, 0, 0, 16},   // N = 1
      {"contiguous", 3, 1, 1, 0, 0, 3, 8},
      {"round-robin", 4, 2, 1, 0, 0, 2, 8},
      {"random", 3, 2, 1, 0, 7, 2, 8},
  };
  return v;
}

// α ∈ {1,2,3,4}, β ∈ {1,2,4}, c ∈ {1,2,4,8} with β ≤ c, on three prompts, plus baselines.
std::vector<Scenario> full_suite() {
  std::vector<Scenario> v;
  for (int alpha : {1, 2, 3, 4})
    for (int c : {1, 2, 4, 8})
      for (int beta : {1, 2, 4})
        if (beta <= c)
          for (int prompt : {0, 1, 2}) v.push_back({"cdelta", alpha, beta, c, 0, 0, prompt, 16});
  for (int alpha : {2, 4})
    for (int beta : {1, 2})
      for (const char* strategy : {"contiguous", "round-robin", "random"})
        v.push_back({strategy, alpha, beta, 1, 0, 11, 3, 16});
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  set_cpu_threads(1);
  std::string suite = "quick", filter;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--suite")) suite = argv[i + 1];
    if (!std::strcmp(argv[i], "--filter")) filter = argv[i + 1];
  }
  int passed = 0, failed = 0, skipped = 0;
  try {
    Harness h(rank);
    const std::vector<Scenario> all = suite == "full" ? full_suite() : quick_suite();
    for (const Scenario& sc : all) {
      if (!filter.empty() && sc.name().find(filter) == std::string::npos) continue;
      if (1 + sc.alpha + sc.beta * sc.beta > world) {
        if (rank == 0) std::printf("SKIP   %s (needs %d ranks)\n", sc.name().c_str(), 1 + sc.alpha + sc.beta * sc.beta);
        ++skipped;
        continue;
      }
      (h.run(sc) ? passed : failed)++;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  if (rank == 0) std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  MPI_Finalize();
  return failed == 0 && (passed > 0) ? 0 : 1;
}
