// Generalised vocabulary matching (PROTOCOL "Attacks"): a party that misses the h positions
// of a hole, but knows the token of the position p right after it and holds a row of p at some
// layer, fills the hole by enumerating fills in order of the model's own probability and
// verifying each one against that row: run prefix + fill + token(p) and compare the row of p.
//
// Enumeration: beam search over the hole. At each of its first h − 1 positions every kept
// partial fill is expanded by its most probable next tokens and the `beam` most probable
// partial fills (by summed log-probability) are kept; the complete fills are then the kept
// partial fills × every last token, verified in order of probability, at most `budget` of them.
// The first fill whose row is within eps (relative L1) is the answer; when none is, the
// attacker goes on with the nearest fill it verified (its own best guess, never the truth).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cascade/continuations.h"

namespace cascade {

struct GapOptions {
  int64_t budget = 1000;  // complete fills verified per hole
  int beam = 256;         // partial fills kept per position of the hole
  double eps = 1e-3;      // a fill matches below eps·‖observed row‖₁
  int32_t start_token = 0;  // a hole at position 0 is proposed from the logits after this token
  // Budgets to report besides `budget` (each ≤ budget): what the attacker would have guessed
  // had it stopped after verifying that many fills. The enumeration is the same for all.
  std::vector<int64_t> milestones;
};

struct Milestone {
  int64_t budget = 0;
  std::vector<int32_t> guess;
  bool matched = false;
  double seconds = 0.0;  // the attack's time up to that point (enumeration + verification)
};

struct HoleResult {
  int start = 0, len = 0;
  std::vector<int32_t> guess;  // the attacker's fill: the match, else the nearest fill verified
  bool matched = false;
  int64_t match_rank = -1;     // position of the match in the enumeration order
  int64_t verified = 0;        // fills verified
  double distance = 0.0;       // relative L1 distance of the guess
  double seconds = 0.0;
  double enumerate_seconds = 0.0;
  std::vector<Milestone> milestones;  // one per GapOptions::milestones, then `budget`
};

// A batch of complete fills to verify: fill i is the first len − 1 tokens of beam entry
// parent[i] (whose keys and values are in `cache` when len > 1) and then last[i].
struct FillBatch {
  const std::vector<std::vector<int32_t>>* entries = nullptr;  // the beam: (entries, len − 1)
  const SuffixCache* cache = nullptr;
  const int32_t* parent = nullptr;  // (n)
  const int32_t* last = nullptr;    // (n)
  int n = 0, len = 0;
};
// Sets d[i] (n) to the distance between what fill i predicts and what the party observed,
// relative (a fill matches below GapOptions::eps).
using FillVerifier = std::function<void(Continuations& cx, const FillBatch& b, double* d)>;

// Fills positions [cx.n_past(), cx.n_past() + len), verifying each enumerated fill with
// `verify`. The prefix is left as it was.
HoleResult fill_hole(Continuations& cx, int len, const FillVerifier& verify, const GapOptions& o);

// The verifier of a row: the party knows the token of the position after the hole and holds
// its row `row` (spec); a fill is run with that token and its row compared (relative L1).
FillVerifier row_verifier(int32_t next_token, const RowSpec& spec, const float* row);

// fill_hole with row_verifier.
HoleResult fill_hole(Continuations& cx, int len, int32_t next_token, const RowSpec& spec,
                     const float* row, const GapOptions& o);

// Next-token log-probabilities after cx's prefix (or, for an empty prefix, after start_token).
std::vector<float> proposal_logprobs(Continuations& cx, int32_t start_token);

}  // namespace cascade
