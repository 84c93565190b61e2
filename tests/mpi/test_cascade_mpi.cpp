// Cascade over MPI against the single-process reference, on the real model and on synthetic
// models (synthetic.h: real llama shapes, generated weights).
// One mpirun hosts many runs: for each scenario the first 1 + α + β² ranks form a
// sub-communicator and play the parties; rank 0 checks, per scenario,
//   exactness  every logits row within max|Δ| / max|ref| ≤ 1e-4 and identical greedy tokens
//   bytes      measured bytes per (src, dst, layer, kind) == the communication model (for now
//              without the kinds the transport adds, header and report), and the bytes every
//              rank sent == the bytes its peers received, per (src, dst, layer, kind)
//   views      no message breaks a party's view (run_cascade audits every message on arrival
//              and before sending; a violation throws, which aborts the test)
// and prints "OK"/"NOT OK" per scenario and a closing "N passed, N failed" line.
//
//   mpirun -np 21 cascade_mpi_tests [--suite quick|full|device] [--filter SUBSTRING]
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cascade/backend.h"
#include "cascade/exactness.h"
#include "cascade/gguf.h"
#include "cascade/model.h"
#include "cascade/mpi_transport.h"
#include "cascade/protocol.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "cascade/tokenizer.h"
#include "emulated_backend.h"
#include "host_link.h"
#include "kernels/softmax.h"

using namespace cascade;

namespace {

struct Scenario {
  std::string strategy;
  int alpha, beta, c, delta;  // delta 0: α·c
  uint64_t seed;
  int prompt;                 // index into kPrompts (a synthetic model's prompts have their lengths)
  int n_generate;
  AttnSharding sharding;
  LmHead head;
  std::string model;  // "": the real model; else synthetic:NAME
  int layers;         // synthetic: the first L layers (0: all)
  bool device = false;  // the CompNodes and AttnNodes on the emulated CUDA backend (device suite)
  bool link = false;    // device: payloads between them on the emulated device link (NCCL's place)
  Scenario(std::string strategy_, int alpha_, int beta_, int c_, int delta_, uint64_t seed_, int prompt_,
           int n_generate_, AttnSharding sharding_ = AttnSharding::cluster, LmHead head_ = LmHead::client,
           std::string model_ = "", int layers_ = 0)
      : strategy(std::move(strategy_)), alpha(alpha_), beta(beta_), c(c_), delta(delta_), seed(seed_),
        prompt(prompt_), n_generate(n_generate_), sharding(sharding_), head(head_), model(std::move(model_)),
        layers(layers_) {}
  std::string name() const {
    char buf[300];
    const std::string m = model.empty() ? ""
                          : " " + model + (layers ? " L" + std::to_string(layers) : std::string());
    std::snprintf(buf, sizeof buf, "%s %s α=%d β=%d c=%d δ=%d%s prompt=%d gen=%d lm-head=%s%s", strategy.c_str(),
                  attn_sharding_name(sharding), alpha, beta, c, delta,
                  strategy == "random" ? (" seed=" + std::to_string(seed)).c_str() : "", prompt, n_generate,
                  lm_head_name(head), m.c_str());
    return buf + std::string(device ? " backend=cuda-emu" : "") + (link ? " transport=nccl-emu" : "");
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

// One model under test: the real one (its prompts are kPrompts, tokenised) or a synthetic one
// (random token ids of the same lengths), its weights loaded on first use, its reference runs.
struct Subject {
  ModelSpec spec;
  ModelConfig cfg;
  std::vector<std::vector<int32_t>> prompts;
  std::unique_ptr<Model> model;
  std::map<std::pair<int, int>, RefRun> refs;
};

class Harness {
 public:
  explicit Harness(int world_rank) : rank_(world_rank) {}

  Subject& subject(const Scenario& sc) {
    const std::string key = sc.model + "/" + std::to_string(sc.layers);
    auto it = subjects_.find(key);
    if (it != subjects_.end()) return it->second;
    Subject s;
    if (sc.model.empty()) {
      s.spec.path = default_model_path();
      GgufFile g(s.spec.path);
      s.cfg = ModelConfig::from_gguf(g);
      Tokenizer tok(g);
      for (const char* p : kPrompts) s.prompts.push_back(tok.encode(p));
    } else {
      s.spec = ModelSpec{sc.model, sc.layers};
      s.cfg = model_config(s.spec);
      int seed = 1;
      for (int n : {1, 6, 37, 70}) s.prompts.push_back(synthetic_prompt(n, s.cfg.n_vocab, seed++));
    }
    return subjects_.emplace(key, std::move(s)).first->second;
  }

  const Model& model(Subject& s) {
    if (!s.model) s.model = std::make_unique<Model>(Model::load(s.spec));
    return *s.model;
  }

  // The reference's greedy run of n tokens on prompt i (rank 0 only), cached. An encoder's
  // "run" is its last hidden states, as one row of (n_prompt · d).
  const RefRun& reference(Subject& s, int i, int n) {
    auto key = std::make_pair(i, n);
    auto it = s.refs.find(key);
    if (it != s.refs.end()) return it->second;
    RefRun r;
    Reference ref(model(s));
    if (s.cfg.encoder()) {
      r.logits.push_back(ref.encode(s.prompts[i]));
      return s.refs.emplace(key, std::move(r)).first->second;
    }
    std::vector<float> logits = ref.forward(s.prompts[i]);
    for (int g = 0; g < n; ++g) {
      r.logits.push_back(logits);
      r.tokens.push_back(kernels::argmax_row(logits.data(), s.cfg.n_vocab));
      if (g + 1 < n) logits = ref.forward({r.tokens.back()});
    }
    return s.refs.emplace(key, std::move(r)).first->second;
  }

  // Returns true on rank 0 when the scenario passed (other ranks: true).
  bool run(const Scenario& sc) {
    Subject& subj = subject(sc);
    ScheduleParams p;
    p.strategy = sc.strategy;
    p.alpha = sc.alpha;
    p.beta = sc.beta;
    p.c = sc.c;
    p.delta = sc.delta;
    p.seed = sc.seed;
    p.attn_sharding = sc.sharding;
    p.lm_head = sc.head;
    p.n_prompt = (int)subj.prompts[sc.prompt].size();
    p.n_positions = p.n_prompt + sc.n_generate - 1;
    p.shape = subj.cfg.shape();
    const Schedule sched = make_schedule(p);
    const int n = sched.n_ranks();

    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank_ < n ? 0 : MPI_UNDEFINED, rank_, &sub);
    bool ok = true;
    if (rank_ < n) {
      auto t = make_mpi_transport(sub);
      t->set_timeout(300);
      CascadeSetup setup;
      if (rank_ == 0) {
        setup.schedule = sched;
        setup.prompt = subj.prompts[sc.prompt];
        setup.client.n_generate = sc.n_generate;
        setup.client.keep_logits = true;
        setup.client.model = &model(subj);
      }
      setup.model = [this, &subj]() -> const Model& { return model(subj); };
      if (sc.device) setup.backend = cascade_test::make_emulated_cuda_backend;
      MPI_Comm link_comm = MPI_COMM_NULL;
      if (sc.link) {
        MPI_Comm_dup(sub, &link_comm);
        setup.link = [link_comm](Backend& be) { return cascade_test::make_host_link(be, link_comm); };
      }
      const long launches_before = cascade_test::emulator_launches();
      const unsigned long long link_before = cascade_test::host_link_bytes_sent();
      const CascadeReport rep = run_cascade(*t, setup);
      // The kernels the parties ran on the emulator, and the bytes they sent on the link, summed.
      long launches = cascade_test::emulator_launches() - launches_before, total = 0;
      MPI_Reduce(&launches, &total, 1, MPI_LONG, MPI_SUM, 0, sub);
      unsigned long long link = cascade_test::host_link_bytes_sent() - link_before, link_total = 0;
      MPI_Reduce(&link, &link_total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, sub);
      if (rank_ == 0) ok = check(subj, sc, rep, total, link_total);
      if (link_comm != MPI_COMM_NULL) MPI_Comm_free(&link_comm);
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return ok;
  }

 private:
  bool check(Subject& subj, const Scenario& sc, const CascadeReport& rep, long device_launches,
             unsigned long long link_bytes) {
    const RefRun& ref = reference(subj, sc.prompt, sc.n_generate);
    const int n_vocab = subj.cfg.n_vocab;
    std::string why;
    double worst = 0.0;
    if (subj.cfg.encoder()) {  // every position's last hidden row
      const int d = subj.cfg.d_model;
      const std::vector<float>& want = ref.logits[0];
      if (rep.client.hidden.size() != want.size()) why += " hidden size " + std::to_string(rep.client.hidden.size());
      for (size_t r = 0; why.empty() && r < want.size() / d; ++r)
        worst = std::max(worst, max_rel_error(rep.client.hidden.data() + r * d, want.data() + r * d, d));
      if (worst > 1e-4) why += " hidden rel err " + std::to_string(worst);
    } else {
      const auto& got = rep.client.logits;
      for (size_t i = 0; i < got.size() && i < ref.logits.size(); ++i)
        worst = std::max(worst, max_rel_error(got[i].data(), ref.logits[i].data(), n_vocab));
      if (got.size() != ref.logits.size()) why += " logits rows " + std::to_string(got.size());
      if (worst > 1e-4) why += " logits rel err " + std::to_string(worst);
      if (rep.client.tokens != ref.tokens) why += " greedy tokens differ";
    }
    if (sc.device && device_launches == 0) why += " no kernel ran on the emulated device";
    if (!sc.device && device_launches != 0) why += " kernels ran on the emulated device";
    // On the link: exactly the payloads between parties (q, kv, partials), as the transport
    // counted them at the senders; none without it.
    unsigned long long between_parties = 0;
    for (const CommFlow& f : protocol_flows(to_flows(rep.sent)))
      if (f.src != 0 && f.dst != 0 && f.kind != CommKind::header) between_parties += f.bytes;
    if (link_bytes != (sc.link ? between_parties : 0))
      why += " link carried " + std::to_string(link_bytes) + " bytes, parties' payloads " +
             std::to_string(between_parties);
    // Bytes counted by every sender and every receiver, and predicted: all three equal.
    for (const std::string& d : byte_count_differences(rep)) why += " bytes: " + d + ";";
    uint64_t mb = 0;
    for (const CommFlow& f : protocol_flows(to_flows(rep.sent))) mb += f.bytes;
    std::printf("%s %-82s rel %.1e  bytes %llu%s\n", why.empty() ? "OK    " : "NOT OK",
                sc.name().c_str(), worst, (unsigned long long)mb, why.c_str());
    std::fflush(stdout);
    return why.empty();
  }

  int rank_;
  std::map<std::string, Subject> subjects_;
};

constexpr AttnSharding kCluster = AttnSharding::cluster, kOffset = AttnSharding::offset;
constexpr LmHead kClient = LmHead::client, kComp = LmHead::comp;

std::vector<Scenario> quick_suite() {
  std::vector<Scenario> v = {
      {"cdelta", 1, 1, 1, 0, 0, 1, 16, kCluster, kClient},  // one CompNode, one AttnNode
      {"cdelta", 2, 1, 2, 0, 0, 2, 16, kCluster, kComp},
      {"cdelta", 2, 2, 2, 0, 0, 2, 16, kCluster, kClient},  // 37 tokens: N not a multiple of δ = 4
      {"cdelta", 2, 2, 2, 0, 0, 2, 16, kOffset, kClient},
      {"cdelta", 3, 2, 4, 10, 0, 2, 16, kCluster, kClient},  // δ < α·c: a shorter last cluster
      {"cdelta", 3, 2, 4, 10, 0, 2, 16, kOffset, kComp},
      {"cdelta", 4, 4, 4, 0, 0, 2, 16, kCluster, kClient},  // the default: 21 ranks
      {"cdelta", 4, 4, 4, 0, 0, 2, 16, kOffset, kClient},
      {"cdelta", 4, 2, 8, 0, 0, 1, 16, kCluster, kClient},  // N = 6 < δ = 32: CompNodes without tokens
      {"cdelta", 3, 3, 4, 0, 0, 0, 16, kCluster, kClient},  // N = 1
      {"cdelta", 3, 4, 4, 0, 0, 0, 16, kOffset, kComp},     // N = 1, β > α
      {"contiguous", 3, 1, 1, 0, 0, 3, 8, kCluster, kClient},
      {"round-robin", 4, 2, 1, 0, 0, 2, 8, kCluster, kComp},
      {"round-robin", 4, 2, 1, 0, 0, 2, 8, kOffset, kClient},
      {"random", 3, 2, 1, 0, 7, 2, 8, kCluster, kClient},
      // Synthetic models (random prompts of 1, 6, 37, 70 ids): both attention shardings, GQA.
      {"cdelta", 4, 4, 2, 0, 0, 3, 16, kCluster, kClient, "synthetic:tiny"},
      {"cdelta", 3, 2, 4, 10, 0, 2, 16, kOffset, kClient, "synthetic:tiny"},
      {"cdelta", 4, 4, 4, 0, 0, 2, 8, kCluster, kComp, "synthetic:smollm2-135m", 2},
      // The other families: GPT-2 (learned positions, LayerNorm, GELU, biases) decoding, and
      // BERT (bidirectional: every query sees every key, in every AttnNode pair) in one pass.
      {"cdelta", 4, 4, 4, 0, 0, 2, 16, kCluster, kClient, "synthetic:gpt2-tiny"},
      {"cdelta", 3, 2, 4, 10, 0, 3, 8, kOffset, kComp, "synthetic:gpt2-tiny"},
      {"cdelta", 4, 4, 4, 0, 0, 2, 1, kCluster, kClient, "synthetic:bert-tiny"},
      {"cdelta", 3, 2, 4, 10, 0, 3, 1, kOffset, kClient, "synthetic:bert-tiny"},
      {"round-robin", 4, 2, 1, 0, 0, 3, 1, kCluster, kClient, "synthetic:bert-tiny"},
      {"cdelta", 2, 1, 2, 0, 0, 0, 1, kCluster, kClient, "synthetic:bert-tiny"},  // N = 1
  };
  return v;
}

// The parties on the emulated CUDA backend (tests/emu): the kernels' own source, device-resident
// buffers the host cannot read, payloads staged through the host for MPI. Every family, both
// attention shardings, both LM-head placements, a CompNode without tokens; 8 ranks.
std::vector<Scenario> device_suite() {
  std::vector<Scenario> v = {
      {"cdelta", 2, 2, 2, 0, 0, 2, 8, kCluster, kClient, "synthetic:tiny"},
      {"cdelta", 3, 2, 4, 10, 0, 2, 8, kOffset, kComp, "synthetic:tiny"},
      {"cdelta", 3, 2, 8, 0, 0, 1, 4, kCluster, kClient, "synthetic:tiny"},  // N = 6 < δ: idle CompNodes
      {"random", 3, 2, 1, 0, 7, 2, 4, kCluster, kComp, "synthetic:gpt2-tiny"},
      {"cdelta", 3, 2, 4, 10, 0, 3, 1, kOffset, kClient, "synthetic:bert-tiny"},
  };
  for (Scenario& s : v) s.device = true;
  // The same on the emulated device link: headers over MPI, payloads device to device.
  const size_t staged = v.size();
  for (size_t i = 0; i < staged; ++i) {
    v.push_back(v[i]);
    v.back().link = true;
  }
  return v;
}

// α ∈ {1,2,3,4} × c ∈ {1,2,4,8} × β ∈ {1,2,4}, under both attention shardings where the rule
// allows (cluster: β ≤ α; offset: β ≤ c), on three prompts; the baselines under both; and
// every (α, β) of the grid once more with the LM head at the CompNode.
std::vector<Scenario> full_suite() {
  std::vector<Scenario> v;
  for (int alpha : {1, 2, 3, 4})
    for (int c : {1, 2, 4, 8})
      for (int beta : {1, 2, 4})
        for (AttnSharding sh : {kCluster, kOffset})
          if (beta <= (sh == kCluster ? alpha : c))
            for (int prompt : {0, 1, 2}) v.push_back({"cdelta", alpha, beta, c, 0, 0, prompt, 16, sh, kClient});
  for (int alpha : {2, 4})
    for (int beta : {1, 2})
      for (const char* strategy : {"contiguous", "round-robin", "random"})
        for (AttnSharding sh : {kCluster, kOffset}) v.push_back({strategy, alpha, beta, 1, 0, 11, 3, 16, sh, kClient});
  for (int alpha : {1, 2, 3, 4})
    for (int beta : {1, 2, 4})
      if (beta <= alpha) v.push_back({"cdelta", alpha, beta, 4, 0, 0, 2, 16, kCluster, kComp});
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
    if (suite != "quick" && suite != "full" && suite != "device") throw std::invalid_argument("unknown suite " + suite);
    const std::vector<Scenario> all = suite == "full" ? full_suite() : suite == "device" ? device_suite() : quick_suite();
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
