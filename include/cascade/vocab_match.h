// Vocabulary matching (PROTOCOL "Attacks"; ../shared/notes/vocab-matching-attack.md): with the
// open weights, recover a prompt from its rows at one layer, position by position. At position
// i the attacker runs its decoded prefix + candidate token t, for batches of candidates, and
// keeps the candidate whose row is nearest (L1) to an observed row; it stops at the first
// batch whose best distance is below ε·‖observed row‖₁ (ε only buys speed: with no match the
// whole vocabulary is scanned and the nearest candidate wins). Candidates come in the order of
// the model's own next-token logits after the decoded prefix (the proposal).
// Permutations the victim may apply (the attacker never inverts them):
//   rows  — the rows are shuffled: each candidate is compared with every unused row;
//   dims  — the hidden dimension is shuffled (one permutation, or one per row): rows are
//           compared as sorted vectors, which no column permutation changes;
//   both  — both.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cascade/continuations.h"
#include "cascade/model.h"

namespace cascade {

enum class Permutation { none = 0, rows, dims, both };
const char* permutation_name(Permutation p);  // "none", "rows", "dims", "both"
Permutation parse_permutation(const std::string& name);  // throws, says why

struct VocabMatchOptions {
  RowSpec row;             // what the observed rows are (hidden@l, q/k/v@l)
  Permutation perm = Permutation::none;
  int batch = 256;         // candidates per batch
  double eps = 1e-3;       // accept below eps·‖observed row‖₁ (relative L1)
  bool proposal = true;    // candidates in the order of the model's next-token logits
  int32_t start_token = 0; // proposal at position 0: the logits after this token (−1: id order)
};

struct MatchedPosition {
  int32_t token = -1;
  int row = -1;              // the observed row it explained
  int64_t candidates = 0;    // candidates evaluated at this position
  double distance = 0.0;     // relative L1 distance of the accepted candidate
  double runner_up = 0.0;    // the smallest relative distance of any other candidate seen
  bool full_scan = false;    // no candidate under eps: the nearest of the whole vocabulary
};

struct VocabMatchResult {
  std::vector<int32_t> tokens;  // the recovered prompt, in sequence order
  std::vector<MatchedPosition> positions;
  int64_t candidates = 0;       // candidate forward passes (one token through `layer` blocks)
  double seconds = 0.0;
  double row_blocks = 0.0;      // token forwards × blocks, for throughput
  int full_scans = 0;
};

using Progress = std::function<void(int done, int total)>;

// `observed`: n rows of row_width(model.cfg, o.row) floats, as the victim released them.
VocabMatchResult vocab_match(const Model& model, const std::vector<float>& observed, int n,
                             const VocabMatchOptions& o, const Progress& progress = {});

// The victim's rows of a prompt at `row` (single-process prefill, attack_features.h), n × width.
std::vector<float> victim_rows(const Model& model, const std::vector<int32_t>& ids,
                               const RowSpec& row);

// The victim's permutation of its rows (seeded): rows shuffled and/or the columns shuffled,
// with one column permutation for all rows (the reference's) or one per row.
std::vector<float> permute_rows(const std::vector<float>& rows, int n, int width, Permutation p,
                                uint64_t seed, bool per_row_dims = false);

// Relative L1 distance: Σ|a − b| / Σ|b|.
double relative_l1(const float* a, const float* b, int width);

}  // namespace cascade
