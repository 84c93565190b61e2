// cascade attack: the security evaluation (PROTOCOL "Attacks"), run against the model's own
// states of a prompt (the unsharded baseline) or against what one party of a traced run
// received (attack_view.h).
//   vocab  — vocabulary matching on full rows at one layer, plain or permuted
//   (gap, holes, view: see their --help)
#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <sstream>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cascade/attack_view.h"
#include "cascade/backend.h"
#include "cascade/gap_attack.h"
#include "cascade/rouge.h"
#include "cascade/trace_io.h"
#include "cascade/vocab_match.h"
#include "cli_common.h"
#include "commands.h"
#include "progress.h"

namespace cascade::cli {
namespace {

// The prompts an attack runs on: one (--prompt, --prompt-file, --tokens) or many (--prompts).
struct PromptOptions {
  GenerateOptions gen;
  std::string jsonl;  // --prompts FILE: one JSON string per line
  int limit = 0;      // at most this many prompts of the file (0: all)
  int first = 0;      // skip the file's first N prompts
  int max_tokens = 0; // cut each prompt to its first N tokens (0: whole)
};

void add_prompt_options(CLI::App* sub, PromptOptions& o) {
  add_model_options(sub, o.gen.model, /*weights=*/true);
  auto text = [&o](const std::string&) { o.gen.text_given = true; };
  sub->add_option("-p,--prompt", o.gen.prompt, "Prompt text (used as is: no chat template)")
      ->capture_default_str()->each(text);
  sub->add_option("-f,--prompt-file", o.gen.prompt_file, "Read the prompt from a file")
      ->check(CLI::ExistingFile)->each(text);
  sub->add_option("--tokens", o.gen.tokens, "A prompt of N random token ids (synthetic models)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--prompt-seed", o.gen.prompt_seed, "Seed of the --tokens prompt")->capture_default_str();
  sub->add_option("--prompts", o.jsonl, "Many prompts: a .jsonl file, one JSON string (text) or array of token ids per line (e.g. data/corpus/eval.jsonl)")
      ->check(CLI::ExistingFile);
  sub->add_option("--limit", o.limit, "With --prompts: N prompts only")->check(CLI::PositiveNumber);
  sub->add_option("--first", o.first, "With --prompts: skip the first N (prompt numbers stay the file's)")->check(CLI::NonNegativeNumber);
  sub->add_option("--max-tokens", o.max_tokens, "Cut every prompt to its first N tokens")->check(CLI::PositiveNumber);
  sub->add_option("-t,--threads", o.gen.threads, "CPU threads (default: OpenMP/OpenBLAS defaults)")
      ->check(CLI::NonNegativeNumber);
}

struct Prompt {
  int index = 0;  // in the file (0 for a single prompt)
  std::vector<int32_t> ids;
};

std::vector<Prompt> load_prompts(const LoadedModel& lm, const PromptOptions& o) {
  std::vector<Prompt> out;
  if (!o.jsonl.empty()) {
    if (o.gen.text_given || o.gen.tokens > 0)
      throw std::invalid_argument("give either --prompts FILE or one prompt (--prompt, --prompt-file, --tokens), not both");
    std::ifstream in(o.jsonl);
    if (!in) throw std::runtime_error("cannot read '" + o.jsonl + "'");
    std::string line;
    for (size_t n = 1; std::getline(in, line) && (o.limit == 0 || (int)out.size() < o.first + o.limit); ++n)
      out.push_back({(int)n - 1, jsonl_prompt_ids(lm, line, o.jsonl + ":" + std::to_string(n))});
    out.erase(out.begin(), out.begin() + std::min<size_t>(o.first, out.size()));
    if (out.empty()) throw std::invalid_argument("'" + o.jsonl + "' holds no prompt (after --first " + std::to_string(o.first) + ")");
  } else {
    GenerateOptions g = o.gen;
    g.raw = true;
    g.n_predict = 0;
    out.push_back({0, encode_prompt(lm, g)});
  }
  for (auto& [index, ids] : out) {
    if (o.max_tokens > 0 && (int)ids.size() > o.max_tokens) ids.resize(o.max_tokens);
    if (ids.empty()) throw std::invalid_argument("a prompt encodes to no tokens");
  }
  return out;
}

std::string show_tokens(const LoadedModel& lm, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (lm.tokenizer && id >= 0) s += lm.tokenizer->token_to_piece(id);
    else s += (s.empty() ? "" : " ") + (id < 0 ? std::string("_") : std::to_string(id));
  }
  return s;
}

// ---- vocab ----------------------------------------------------------------------------------

struct VocabOptions {
  PromptOptions prompts;
  std::vector<std::string> rows = {"hidden@1"};
  std::vector<std::string> perms = {"none"};
  VocabMatchOptions match;
  bool no_proposal = false;
  uint64_t perm_seed = 1;
  bool per_row_dims = false;
  bool json = false;
  bool quiet = false;
};

void run_vocab(const VocabOptions& o) {
  set_cpu_threads(o.prompts.gen.threads);
  const LoadedModel lm = load_model(resolve_model(o.prompts.gen.model));
  require_llama(lm.cfg, "cascade attack vocab");
  const std::vector<Prompt> prompts = load_prompts(lm, o.prompts);
  std::vector<Permutation> perms;
  for (const std::string& p : o.perms) {
    if (p == "all") perms = {Permutation::none, Permutation::rows, Permutation::dims, Permutation::both};
    else perms.push_back(parse_permutation(p));
  }
  nlohmann::json runs = nlohmann::json::array();
  if (!o.json)
    std::printf("%-10s %-5s %6s %7s %8s %12s %9s %10s %6s %11s\n", "row", "perm", "prompt", "tokens",
                "correct", "candidates", "seconds", "cand/s", "scans", "max-d-acc");
  for (const std::string& row_name : o.rows) {
    VocabMatchOptions mo = o.match;
    mo.row = parse_row_spec(row_name, lm.cfg);
    mo.proposal = !o.no_proposal;
    for (Permutation perm : perms) {
      mo.perm = perm;
      long total_tokens = 0, total_correct = 0;
      for (size_t pi = 0; pi < prompts.size(); ++pi) {
        const std::vector<int32_t>& ids = prompts[pi].ids;
        const int n = (int)ids.size(), w = row_width(lm.cfg, mo.row);
        const std::vector<float> rows = permute_rows(victim_rows(lm.model, ids, mo.row), n, w, perm,
                                                     o.perm_seed + pi, o.per_row_dims);
        ProgressBar bar(row_name + " " + permutation_name(perm) + " prompt " + std::to_string(pi + 1));
        const VocabMatchResult r =
            vocab_match(lm.model, rows, n, mo, [&](int d, int t) { if (!o.quiet) bar.update(d, t); });
        bar.finish();
        int correct = 0;
        double max_acc = 0.0;
        for (int i = 0; i < n; ++i) {
          correct += r.tokens[i] == ids[i];
          max_acc = std::max(max_acc, r.positions[i].distance);
        }
        total_tokens += n;
        total_correct += correct;
        const double rate = r.seconds > 0 ? r.candidates / r.seconds : 0.0;
        if (o.json) {
          runs.push_back({{"row", row_name}, {"perm", permutation_name(perm)}, {"prompt", prompts[pi].index},
                          {"tokens", n}, {"correct", correct}, {"accuracy", (double)correct / n},
                          {"candidates", r.candidates}, {"seconds", r.seconds},
                          {"candidates_per_s", rate}, {"full_scans", r.full_scans},
                          {"row_blocks", r.row_blocks}, {"recovered", r.tokens}, {"truth", ids}});
        } else {
          std::printf("%-10s %-5s %6zu %7d %8d %12lld %9.2f %10.0f %6d %11.2e\n", row_name.c_str(),
                      permutation_name(perm), (size_t)prompts[pi].index, n, correct, (long long)r.candidates, r.seconds,
                      rate, r.full_scans, max_acc);
          if (correct < n && prompts.size() == 1)
            std::printf("  recovered: %s\n", nlohmann::json(show_tokens(lm, r.tokens)).dump().c_str());
        }
      }
      if (!o.json && prompts.size() > 1)
        std::printf("%-10s %-5s %6s %7ld %8ld  token accuracy %.2f%%\n", row_name.c_str(),
                    permutation_name(perm), "all", total_tokens, total_correct,
                    100.0 * total_correct / total_tokens);
    }
  }
  if (o.json) std::printf("%s\n", runs.dump(1).c_str());
}

// ---- view ---------------------------------------------------------------------------------

struct ViewOptions {
  ModelOptions model;
  std::string trace;
  std::vector<std::string> parties = {"all"};
  ViewAttackOptions attack;
  std::vector<int64_t> budgets;  // empty: --budget alone
  std::string verify = "rows";
  std::string csv;
  bool json = false;
  bool quiet = false;
  int threads = 0;
};

void run_view(const ViewOptions& o) {
  set_cpu_threads(o.threads);
  ViewAttackOptions attack = o.attack;
  attack.verify = parse_verify(o.verify);
  if (attack.span && attack.verify != Verify::partials) throw std::invalid_argument("--span needs --verify partials");
  const std::string method = std::string(verify_name(attack.verify)) + (attack.span ? "+span" : "");
  const Trace t = read_trace(o.trace);
  require_all_ranks(t, o.trace);
  if (!t.meta.views) throw std::invalid_argument(o.trace + " has no views: record the run with cascade run --trace FILE --trace-views");
  ModelOptions mo = o.model;
  if (mo.spec.path.empty()) {  // the run's model: a path, or "synthetic:NAME --layers L --weight-seed S"
    std::istringstream src(t.meta.model_source);
    src >> mo.spec.path;
    std::string flag;
    while (src >> flag) {
      if (flag == "--layers") src >> mo.spec.layers;
      else if (flag == "--weight-seed") src >> mo.spec.weight_seed, mo.weight_seed_given = true;
    }
  }
  const LoadedModel lm = load_model(resolve_model(mo));
  require_llama(lm.cfg, "cascade attack view");
  const Schedule& s = t.schedule;
  const std::vector<int32_t> truth = trace_prompt(t);
  std::vector<int> ranks;
  for (const std::string& p : o.parties) {
    if (p == "all" && attack.verify == Verify::partials) {  // only CompNodes receive partials
      for (int k = 0; k < s.alpha; ++k) ranks.push_back(s.comp_rank(k));
    } else if (p == "all") {
      for (int r = 1; r < s.n_ranks(); ++r) ranks.push_back(r);
    } else if (p == "comp") {
      for (int k = 0; k < s.alpha; ++k) ranks.push_back(s.comp_rank(k));
    } else if (p == "attn") {
      for (int a = 0; a < s.beta; ++a)
        for (int b = 0; b < s.beta; ++b) ranks.push_back(s.attn_rank(a, b));
    } else {
      ranks.push_back(party_rank(s, p));
    }
  }
  std::vector<int64_t> budgets = o.budgets;
  if (budgets.empty()) budgets.push_back(attack.gap.budget);
  if (attack.verify == Verify::partials)
    for (int r : ranks)
      if (s.role_of_rank(r).kind != RankRole::comp)
        throw std::invalid_argument("--verify partials attacks CompNodes only (" + s.role_of_rank(r).name() + " receives no partials): use --party comp or comp:K");
  std::sort(budgets.begin(), budgets.end());
  std::ofstream csv;
  if (!o.csv.empty()) {
    const std::string header =
        "trace,alpha,beta,c,delta,attn_sharding,n_prompt,party,rank,layer,budget,beam,observed,unseen,"
        "unseen_correct,unseen_confident,unseen_accuracy,rouge_tokens,rouge_confident,rouge_all,rouge_words,floor,gain,holes,"
        "holes_matched,holes_skipped,max_hole,verified,seconds,verify";
    std::ifstream old(o.csv);
    std::string first;
    const bool fresh = !old.good() || !std::getline(old, first);
    if (!first.empty() && first.back() == '\r') first.pop_back();  // written with CRLF line ends
    if (!fresh && first != header)
      throw std::invalid_argument("'" + o.csv + "' has other columns than this version writes (" + header +
                                  "): append to a new file");
    csv.open(o.csv, std::ios::app);
    if (!csv) throw std::runtime_error("cannot write '" + o.csv + "'");
    if (fresh) csv << header << '\n';
  }
  nlohmann::json out = nlohmann::json::array();
  if (!o.json)
    std::printf("%-16s %7s %8s %6s %7s %8s %9s %7s %7s %7s %9s %8s\n", "party", "budget", "observed",
                "unseen", "correct", "matched", "accuracy", "rouge", "floor", "gain", "verified", "seconds");
  std::unique_ptr<Layer0Inverter> inverter;  // the layer-0 table, built once for every AttnNode
  for (int rank : ranks) {
    if (!inverter && (s.role_of_rank(rank).kind == RankRole::attn || attack.verify == Verify::partials)) inverter = std::make_unique<Layer0Inverter>(lm.model);
    const PartyView view = party_view(t, rank, lm.model, inverter.get());
    for (int64_t budget : budgets) {
      ViewAttackOptions ao = attack;
      ao.gap.budget = budget;
      ProgressBar bar(view.role.name() + " budget " + std::to_string(budget));
      const ViewAttackResult r = attack_view(lm.model, view, ao, [&](int d, int n) { if (!o.quiet) bar.update(d, n); }, inverter.get());
      bar.finish();
      const AttackScore sc = score_attack(truth, r.recovered, r.confident, view.tokens);
      // ROUGE-L over words as well: the text of the better output (score_attack) against the prompt's.
      const bool all_guesses = sc.rouge_all >= sc.rouge_confident;
      double rouge_words = 0.0;
      if (lm.tokenizer) {
        std::string ref, cand;
        for (int p = 0; p < (int)truth.size(); ++p) {
          ref += lm.tokenizer->token_to_piece(truth[p]);
          if (r.recovered[p] >= 0 && (all_guesses || r.confident[p])) cand += lm.tokenizer->token_to_piece(r.recovered[p]);
          else cand += " ";
        }
        rouge_words = rouge_l_text(ref, cand).f1;
      }
      int matched = 0;
      for (const HoleResult& h : r.holes) matched += h.matched;
      if (o.json) {
        out.push_back({{"party", view.role.name()}, {"rank", rank}, {"budget", budget}, {"beam", ao.gap.beam},
                       {"layer", ao.layer}, {"observed", sc.observed}, {"unseen", sc.unseen},
                       {"unseen_correct", sc.unseen_correct}, {"unseen_confident", sc.unseen_confident},
                       {"unseen_accuracy", sc.unseen_accuracy}, {"rouge_tokens", sc.rouge_tokens},
                       {"rouge_confident", sc.rouge_confident}, {"rouge_all", sc.rouge_all},
                       {"rouge_words", rouge_words}, {"floor", sc.floor}, {"gain", sc.gain},
                       {"holes", r.holes.size()}, {"holes_matched", matched}, {"holes_skipped", r.skipped_holes}, {"max_hole", ao.max_hole}, {"verified", r.verified}, {"verify", method}, {"span_solved", r.span_solved},
                       {"seconds", r.seconds}, {"recovered", r.recovered}, {"truth", truth}});
      } else {
        std::printf("%-16s %7lld %8d %6d %7d %8d %8.1f%% %7.3f %7.3f %+7.3f %9lld %8.1f\n", view.role.name().c_str(),
                    (long long)budget, sc.observed, sc.unseen, sc.unseen_correct, sc.unseen_confident,
                    100.0 * sc.unseen_accuracy, sc.rouge_tokens, sc.floor, sc.gain, (long long)r.verified, r.seconds);
      }
      if (csv.is_open()) {
        csv << o.trace << ',' << s.alpha << ',' << s.beta << ',' << s.c << ',' << s.delta << ','
            << attn_sharding_name(s.attn_sharding) << ',' << s.n_prompt << ",\"" << view.role.name() << "\"," << rank
            << ',' << ao.layer << ',' << budget << ',' << ao.gap.beam << ',' << sc.observed << ',' << sc.unseen << ','
            << sc.unseen_correct << ',' << sc.unseen_confident << ',' << sc.unseen_accuracy << ',' << sc.rouge_tokens
            << ',' << sc.rouge_confident << ',' << sc.rouge_all << ',' << rouge_words << ',' << sc.floor << ',' << sc.gain << ',' << r.holes.size() << ',' << matched
            << ',' << r.skipped_holes << ',' << ao.max_hole << ',' << r.verified << ',' << r.seconds << ','
            << method << '\n';
        csv.flush();
      }
    }
  }
  if (o.json) std::printf("%s\n", out.dump(1).c_str());
}

// ---- holes --------------------------------------------------------------------------------

struct HolesOptions {
  PromptOptions prompts;
  std::string lengths = "1-16";
  std::vector<int64_t> budgets = {1000, 10000, 100000};
  int beam = 256;
  double eps = 1e-3;
  std::string row = "hidden@1";
  int context = 16;  // positions known before the hole (at least)
  uint64_t seed = 1;
  std::string csv;
  bool quiet = false;
};

std::vector<int> parse_lengths(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int a = 0, b = 0;
    char dash = 0, tail = 0;
    const int got = std::sscanf(item.c_str(), "%d%c%d%c", &a, &dash, &b, &tail);
    if (got == 1) b = a;
    else if (got != 3 || dash != '-') throw std::invalid_argument("--lengths '" + text + "': expected e.g. 1-16 or 1,2,4");
    if (a < 1 || b < a) throw std::invalid_argument("--lengths '" + text + "': lengths are ≥ 1, ranges ascending");
    for (int h = a; h <= b; ++h) out.push_back(h);
  }
  return out;
}

// The gap experiment: for every prompt and hole length h, the attacker knows the prompt up to
// a hole of h positions, the token right after it and that position's row; it fills the hole
// (gap_attack.h). One enumeration per (prompt, h) serves every budget (milestones).
void run_holes(const HolesOptions& o) {
  set_cpu_threads(o.prompts.gen.threads);
  const LoadedModel lm = load_model(resolve_model(o.prompts.gen.model));
  require_llama(lm.cfg, "cascade attack holes");
  const std::vector<Prompt> prompts = load_prompts(lm, o.prompts);
  const std::vector<int> lengths = parse_lengths(o.lengths);
  const RowSpec spec = parse_row_spec(o.row, lm.cfg);
  std::vector<int64_t> budgets = o.budgets;
  std::sort(budgets.begin(), budgets.end());
  if (o.csv.empty()) throw std::invalid_argument("--csv FILE is required (results are appended, and rows already there are not recomputed)");
  std::set<std::pair<int, int>> done;  // (prompt, h) already in the CSV
  {
    std::ifstream in(o.csv);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      int p = 0, h = 0;
      if (std::sscanf(line.c_str(), "%d,%*d,%*d,%d", &p, &h) == 2) done.insert({p, h});
    }
  }
  const bool fresh = !std::ifstream(o.csv).good();
  std::ofstream csv(o.csv, std::ios::app);
  if (!csv) throw std::runtime_error("cannot write '" + o.csv + "'");
  if (fresh)
    csv << "prompt,n_tokens,start,len,budget,beam,row,recovered,matched,match_rank,verified,seconds,"
           "enumerate_seconds,distance\n";
  const int w = row_width(lm.cfg, spec);
  Continuations cx(lm.model);
  GapOptions go;
  go.beam = o.beam;
  go.eps = o.eps;
  go.budget = budgets.back();
  go.milestones.assign(budgets.begin(), budgets.end() - 1);
  long todo = 0, step = 0;
  for (const Prompt& pr : prompts)
    for (int h : lengths) todo += !done.count({pr.index, h}) && (int)pr.ids.size() >= o.context + h + 1;
  std::fprintf(stderr, "attack holes: %ld holes to fill (%zu already in %s), budgets up to %lld, beam %d, %s\n", todo,
               done.size(), o.csv.c_str(), (long long)go.budget, o.beam, o.row.c_str());
  for (const Prompt& pr : prompts) {
    const int pi = pr.index;
    const std::vector<int32_t>& ids = pr.ids;
    const int n = (int)ids.size();
    for (int h : lengths) {
      if (done.count({pi, h}) || n < o.context + h + 1) continue;
      // The hole starts after at least `context` known tokens, at a seeded place.
      std::mt19937_64 rng(o.seed * 1000003ull + pi * 131ull + h);
      const int start = o.context + (int)(rng() % (uint64_t)(n - o.context - h));
      const int p = start + h;
      const std::vector<int32_t> upto(ids.begin(), ids.begin() + p + 1);
      const std::vector<float> rows = victim_rows(lm.model, upto, spec);
      cx.reset();
      cx.append(std::vector<int32_t>(ids.begin(), ids.begin() + start));
      const HoleResult r = fill_hole(cx, h, ids[p], spec, rows.data() + (size_t)p * w, go);
      for (const Milestone& m : r.milestones) {
        int correct = 0;
        for (int i = 0; i < h; ++i) correct += m.guess.size() == (size_t)h && m.guess[i] == ids[start + i];
        csv << pi << ',' << n << ',' << start << ',' << h << ',' << m.budget << ',' << o.beam << ',' << o.row << ','
            << correct << ',' << m.matched << ',' << (m.matched ? r.match_rank : -1) << ','
            << std::min<int64_t>(m.budget, r.verified) << ',' << m.seconds << ',' << r.enumerate_seconds << ','
            << r.distance << '\n';
      }
      csv.flush();
      ++step;
      if (!o.quiet)
        std::fprintf(stderr, "[%ld/%ld] prompt %d hole %d at %d: %s (rank %lld), %lld verified, %.1fs\n", step, todo, pi,
                     h, start, r.matched ? "matched" : "not matched", (long long)r.match_rank, (long long)r.verified,
                     r.seconds);
    }
  }
}

}  // namespace

void add_attack_command(CLI::App& app) {
  CLI::App* attack = app.add_subcommand("attack", "Attacks on what the parties see: vocabulary matching (plain, permuted, on sharded views)");
  attack->require_subcommand(1);

  auto v = std::make_shared<VocabOptions>();
  CLI::App* vs = attack->add_subcommand(
      "vocab",
      "Vocabulary matching on full, unsharded rows of a prompt at one layer (the baseline Cascade defends against): "
      "position by position, candidates in the order of the model's next-token logits, batched through the first "
      "layers with the prefix cached, nearest row in L1");
  add_prompt_options(vs, v->prompts);
  vs->add_option("--row", v->rows, "Rows the victim released: hidden@L (after block L), q@L, k@L, v@L; several allowed")
      ->capture_default_str();
  vs->add_option("--perm", v->perms, "none, rows (rows shuffled), dims (hidden dimension shuffled), both, or all")
      ->capture_default_str();
  vs->add_option("--batch", v->match.batch, "Candidates per batch")->capture_default_str()->check(CLI::PositiveNumber);
  vs->add_option("--eps", v->match.eps, "Accept a candidate below eps × the observed row's L1 norm (relative L1)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  vs->add_flag("--no-proposal", v->no_proposal, "Candidates in id order instead of the model's proposal");
  vs->add_option("--start-token", v->match.start_token, "Proposal at position 0: the logits after this token id (-1: id order)")
      ->capture_default_str();
  vs->add_option("--perm-seed", v->perm_seed, "Seed of the victim's permutations")->capture_default_str();
  vs->add_flag("--per-row-dims", v->per_row_dims, "dims: one column permutation per row (default: one for all rows)");
  vs->add_flag("--json", v->json, "Print the results as JSON");
  vs->add_flag("-q,--quiet", v->quiet, "No progress bar");
  vs->callback([v] { run_vocab(*v); });

  auto w = std::make_shared<ViewOptions>();
  CLI::App* ws = attack->add_subcommand(
      "view",
      "Generalised vocabulary matching on what one party of a traced run received (cascade run --trace FILE "
      "--trace-views): fills every hole before a position the party holds, scored against the prompt");
  add_model_options(ws, w->model, /*weights=*/true, "default: the trace's model");
  ws->add_option("--trace", w->trace, "Trace of the run, recorded with --trace-views")->required()->check(CLI::ExistingFile);
  ws->add_option("--party", w->parties, "comp:K, attn:A,B, comp (every CompNode), attn (every AttnNode) or all")
      ->capture_default_str();
  ws->add_option("--budget", w->attack.gap.budget, "Fills verified per hole")->capture_default_str()->check(CLI::PositiveNumber);
  ws->add_option("--budgets", w->budgets, "Several budgets, one attack each (overrides --budget)")->delimiter(',');
  ws->add_option("--beam", w->attack.gap.beam, "Partial fills kept per position of a hole")->capture_default_str()->check(CLI::PositiveNumber);
  ws->add_option("--verify", w->verify,
                 "What verifies fills: rows (the row after the hole at --layer) or partials (CompNodes: the layer-0 "
                 "partials (m, e, u) they received, one segment of the hole per key shard)")
      ->capture_default_str()->check(CLI::IsMember({"rows", "partials"}));
  ws->add_flag("--span", w->attack.span,
               "With --verify partials: first solve each segment from the span of the partials' value "
               "mixtures (no enumeration), verify those fills, then enumerate with what is left of the budget");
  ws->add_option("--layer", w->attack.layer, "Layer of the rows that verify fills (hidden@L for CompNodes, k@L or q@L for AttnNodes)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  ws->add_option("--max-hole", w->attack.max_hole, "Do not search holes longer than this (0: no limit); they get the model's greedy guess")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  ws->add_option("--eps", w->attack.gap.eps, "A fill matches below eps × the row's L1 norm")->capture_default_str()->check(CLI::PositiveNumber);
  ws->add_option("--csv", w->csv, "Append one line per (party, budget) to this CSV");
  ws->add_flag("--json", w->json, "Print the results as JSON");
  ws->add_flag("-q,--quiet", w->quiet, "No progress bar");
  ws->add_option("-t,--threads", w->threads, "CPU threads")->check(CLI::NonNegativeNumber);
  ws->callback([w] { run_view(*w); });

  auto h = std::make_shared<HolesOptions>();
  CLI::App* hs = attack->add_subcommand(
      "holes",
      "The gap experiment: for each prompt and hole length, fill one hole of that length (the prompt before it, the "
      "token after it and that position's row known) with LM-ordered fills; the fraction of hole tokens recovered per "
      "budget, appended to a CSV (resumable)");
  add_prompt_options(hs, h->prompts);
  hs->add_option("--lengths", h->lengths, "Hole lengths, e.g. 1-16 or 1,2,4")->capture_default_str();
  hs->add_option("--budgets", h->budgets, "Fills verified per hole: one enumeration, reported at each budget")
      ->delimiter(',')->capture_default_str();
  hs->add_option("--beam", h->beam, "Partial fills kept per position of a hole")->capture_default_str()->check(CLI::PositiveNumber);
  hs->add_option("--eps", h->eps, "A fill matches below eps × the row's L1 norm")->capture_default_str()->check(CLI::PositiveNumber);
  hs->add_option("--row", h->row, "The row of the position after the hole that verifies fills")->capture_default_str();
  hs->add_option("--context", h->context, "Known positions before the hole, at least")->capture_default_str()->check(CLI::NonNegativeNumber);
  hs->add_option("--seed", h->seed, "Seed of the holes' places")->capture_default_str();
  hs->add_option("--csv", h->csv, "Results file (appended; (prompt, length) pairs already there are skipped)")->required();
  hs->add_flag("-q,--quiet", h->quiet, "No per-hole lines");
  hs->callback([h] { run_holes(*h); });
}

}  // namespace cascade::cli
