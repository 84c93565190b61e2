#include "cascade/gap_evidence.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace cascade {

std::vector<HoleCell> read_hole_cells(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the gap experiment's results '" + path + "' (cascade attack holes --csv FILE)");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> cols;
  {
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cols.push_back(c);
  }
  auto col = [&](const std::string& name) {
    auto it = std::find(cols.begin(), cols.end(), name);
    if (it == cols.end()) throw std::runtime_error(path + ": no column '" + name + "' (not a cascade attack holes CSV)");
    return (size_t)(it - cols.begin());
  };
  const size_t c_prompt = col("prompt"), c_len = col("len"), c_budget = col("budget"), c_rec = col("recovered"),
               c_matched = col("matched"), c_sec = col("seconds");
  std::set<std::tuple<std::string, int, int64_t>> seen;
  std::map<std::pair<int, int64_t>, HoleCell> cells;
  for (size_t n = 2; std::getline(in, line); ++n) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    if (f.size() < cols.size()) throw std::runtime_error(path + ":" + std::to_string(n) + ": too few fields");
    try {
      const int len = std::stoi(f[c_len]);
      const int64_t budget = std::stoll(f[c_budget]);
      if (!seen.insert({f[c_prompt], len, budget}).second) continue;
      HoleCell& c = cells[{len, budget}];
      c.len = len;
      c.budget = budget;
      c.holes += 1;
      c.tokens += len;
      c.verified_tokens += f[c_matched] == "1" ? len : 0;
      c.guessed_tokens += std::stoi(f[c_rec]);
      c.seconds += std::stod(f[c_sec]);
    } catch (const std::logic_error&) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not a number where one is expected");
    }
  }
  std::vector<HoleCell> out;
  for (const auto& [key, c] : cells) out.push_back(c);
  return out;
}

RhoAdvice recommend_rho(const std::vector<HoleCell>& cells, int64_t budget, double threshold) {
  RhoAdvice a;
  for (const HoleCell& c : cells)
    if (c.budget >= budget && (a.budget == 0 || c.budget < a.budget)) a.budget = c.budget;
  if (a.budget == 0) {
    int64_t most = 0;
    for (const HoleCell& c : cells) most = std::max(most, c.budget);
    throw std::invalid_argument("the gap experiment measured budgets up to " + std::to_string(most) +
                                " fills per hole; nothing is known at " + std::to_string(budget) +
                                " (run cascade attack holes with that budget)");
  }
  std::vector<HoleCell> at;
  for (const HoleCell& c : cells)
    if (c.budget == a.budget) at.push_back(c);
  std::sort(at.begin(), at.end(), [](const HoleCell& x, const HoleCell& y) { return x.len < y.len; });
  for (auto it = at.rbegin(); it != at.rend(); ++it) {
    if (it->verified_fraction() >= threshold) break;
    a.safe_len = it->len;
  }
  a.max_len = at.empty() ? 0 : at.back().len;
  for (const HoleCell& c : at) a.holes += c.holes;
  a.rho = a.safe_len ? a.safe_len + 1 : 0;
  return a;
}

std::string default_holes_path() { return std::string(CASCADE_SOURCE_DIR) + "/docs/security/holes.csv"; }

}  // namespace cascade
