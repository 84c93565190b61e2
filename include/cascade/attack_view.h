// A party's view (PROTOCOL "What a party observes"), read back from a trace recorded with
// --trace-views: exactly the message parts the party received in the prefill, turned into the
// rows an attacker holding that party's seat has.
//   CompNode k: its tokens (the client's message), and its hidden rows at every layer, rebuilt
//     from those tokens and the partials (m, e, u) it received — with the open weights, the
//     very computation the CompNode did (same code, same inputs, same merge order); and the
//     layer-0 partials themselves, unmerged (partial_match.h).
//   AttnNode (a, b): the q rows of shard a and the k and v rows of shard b at every layer; its
//     tokens are recovered from its layer-0 rows (a layer-0 row depends only on its token and
//     position: the nearest row of the model's layer-0 table names the token).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cascade/continuations.h"
#include "cascade/gap_attack.h"
#include "cascade/model.h"
#include "cascade/partial_match.h"
#include "cascade/partial_solve.h"
#include "cascade/schedule.h"
#include "cascade/trace.h"
#include "cascade/vocab_match.h"

namespace cascade {

struct ViewRows {
  RowSpec spec;
  std::vector<int32_t> positions;  // ascending
  std::vector<float> data;         // (positions, row_width(spec))
};

struct PartyView {
  int rank = 0;
  RankRole role;
  int n_prompt = 0;
  std::vector<int32_t> tokens;  // (n_prompt) token the party holds at each position; −1: unseen
  std::vector<ViewRows> rows;   // what it holds, per row kind and layer
  std::vector<int32_t> shard;   // (n_prompt) attention shard of each position (the schedule is public)
  ViewPartials partials;        // CompNode: the layer-0 partials it received, as they came
  // The row of `pos` (nullptr when the party holds none of that kind and layer).
  const float* row(const RowSpec& spec, int pos) const;
  int observed() const;  // positions with a known token
};

// "comp:K" or "attn:A,B" → the party's rank under `s` (throws, naming the valid range).
int party_rank(const Schedule& s, const std::string& party);

class Layer0Inverter;

// The view of the party at `rank` (a CompNode or an AttnNode) from a trace with views. The
// model must be the run's (its shape is checked against the trace's). An AttnNode's tokens come
// from `inverter` (the model's; built here when null: callers attacking many parties pass one).
PartyView party_view(const Trace& trace, int rank, const Model& model,
                     const Layer0Inverter* inverter = nullptr);

// The prompt of a traced run, for scoring only: the union of the CompNodes' token messages.
std::vector<int32_t> trace_prompt(const Trace& trace);

// The token of a layer-0 row at `pos`: the nearest (L1) row of the model's layer-0 table.
class Layer0Inverter {
 public:
  explicit Layer0Inverter(const Model& model);
  int32_t token(const RowSpec& spec, int pos, const float* row) const;
  // The layer-0 q, k or v row of `token` at position 0 (RoPE not applied: rotate for others).
  const float* row_at_0(RowKind kind, int32_t token) const;

 private:
  const Model& model_;
  std::vector<float> q_, k_, v_;  // (n_vocab, width) at position 0 (RoPE: the identity)
};

// What verifies a hole's fills.
//   rows      the row after the hole at `layer` (hidden for a CompNode, else k, else q)
//   partials  CompNodes: the layer-0 partials of the own positions after the hole, one
//             segment of the hole at a time (partial_match.h); max_hole then bounds the
//             segments enumerated (the span solver, cheap, is tried on every one)
enum class Verify { rows, partials };
const char* verify_name(Verify v);       // "rows", "partials"
Verify parse_verify(const std::string& name);  // throws std::invalid_argument

struct ViewAttackOptions {
  GapOptions gap;
  Verify verify = Verify::rows;
  // Verify::partials: first solve each segment from the span of the partials (partial_solve.h)
  // and verify those fills; the LM enumeration gets what is left of the budget if none matches.
  bool span = false;
  int layer = 1;  // rows of this layer verify fills (hidden@layer, else k@layer, else q@layer)
  // Holes longer than this are not searched (0: no limit): the attacker goes on with the
  // model's greedy guess for them, unverified. The gap experiment (cascade attack holes)
  // measures how recovery falls with the hole's length; beyond it, search is wasted compute.
  int max_hole = 0;
};

struct ViewAttackResult {
  std::vector<int32_t> recovered;  // (n_prompt) the party's tokens, filled holes; −1: unknown
  std::vector<char> confident;     // (n_prompt) a known token, or a fill that matched its row
  std::vector<HoleResult> holes;  // the holes searched
  int skipped_holes = 0;           // holes longer than max_hole
  int span_solved = 0;             // segments matched by a fill of the span solver
  int64_t verified = 0;
  double seconds = 0.0;
};

// Generalised vocabulary matching over a whole view: left to right, every hole before a
// position the party holds is filled (gap_attack.h) on the attacker's own guesses so far.
// Verify::partials needs the layer-0 table (`table`; built here when null).
ViewAttackResult attack_view(const Model& model, const PartyView& view, const ViewAttackOptions& o,
                             const Progress& progress = {}, const Layer0Inverter* table = nullptr);

// How much an attack recovered beyond the party's own tokens. The attacker outputs its text in
// one of two ways: its confident tokens only (known ones, and fills that matched their row), or
// every guess (unmatched fills too). With the known tokens alone (a fraction x) ROUGE-L F1 is
// 2x/(1+x), the floor (PROTOCOL "Exposure"); the gain is the better output's ROUGE-L minus the
// floor — the better of two fixed policies, chosen knowing the truth, so it errs toward the
// attacker.
struct AttackScore {
  int n = 0, observed = 0, unseen = 0;
  int unseen_correct = 0;    // unseen positions whose guess (matched or not) is right
  int unseen_confident = 0;  // unseen positions filled by a match
  double unseen_accuracy = 0.0;  // unseen_correct / unseen
  double rouge_confident = 0.0;  // ROUGE-L F1 over tokens: the confident text vs the prompt
  double rouge_all = 0.0;        // the same with every guess
  double rouge_tokens = 0.0;     // the better of the two
  double floor = 0.0;            // 2x/(1+x), x = observed / n
  double gain = 0.0;             // rouge_tokens − floor
};
AttackScore score_attack(const std::vector<int32_t>& truth, const std::vector<int32_t>& recovered,
                         const std::vector<char>& confident, const std::vector<int32_t>& known);

}  // namespace cascade
