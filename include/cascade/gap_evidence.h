// The gap experiment's evidence (cascade attack holes; docs/security/holes.csv) turned into the
// planner's ρ: at a budget B (fills an attacker verifies per hole), the safe hole length h0 is
// the smallest length from which the measured verified recovery stays below 5% for every
// longer measured length; a party is safe when all its holes are ≥ h0, i.e. its gap ≥ h0 + 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cascade {

// One (hole length, budget) cell of the experiment, summed over its holes.
struct HoleCell {
  int len = 0;
  int64_t budget = 0;
  int holes = 0;
  int tokens = 0;           // holes × len
  int verified_tokens = 0;  // tokens of holes whose fill matched the row after the hole
  int guessed_tokens = 0;   // tokens the attacker's guess had right, matched or not
  double seconds = 0.0;     // summed wall time
  double verified_fraction() const { return tokens ? (double)verified_tokens / tokens : 0.0; }
};

// Reads a `cascade attack holes` CSV (duplicate (prompt, len, budget) rows of a rerun: the
// first counts). Throws naming the file on a missing column or an unreadable file.
std::vector<HoleCell> read_hole_cells(const std::string& path);

struct RhoAdvice {
  int64_t budget = 0;           // the measured budget used: the smallest ≥ the asked one
  int safe_len = 0;             // h0 (0: no measured length is safe)
  int rho = 0;                  // h0 + 1 (0: none)
  int max_len = 0;              // longest hole length measured
  int holes = 0;                // holes behind the figures at that budget
};

// Throws std::invalid_argument when nothing was measured at a budget ≥ `budget`.
RhoAdvice recommend_rho(const std::vector<HoleCell>& cells, int64_t budget, double threshold = 0.05);

// docs/security/holes.csv of the source tree.
std::string default_holes_path();

}  // namespace cascade
