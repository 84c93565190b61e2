// Exposure of each party and the security check (PROTOCOL.md "Exposure", "(c, δ)-sharding").
// See include/cascade/schedule.h for the definitions and the AttnNode decision.
#include <algorithm>
#include <iterator>
#include <sstream>

#include "cascade/schedule.h"

namespace cascade {

std::vector<std::pair<int, int>> runs_of(const std::vector<int>& pos) {
  std::vector<std::pair<int, int>> runs;
  for (int p : pos) {
    if (!runs.empty() && p == runs.back().second + 1)
      runs.back().second = p;
    else
      runs.emplace_back(p, p);
  }
  return runs;
}

int gap_of(const std::vector<int>& pos, int n) {
  if (pos.empty()) return kNoGap;
  // Every position of a prompt of n >= 2 tokens: nothing is hidden (δ − c + 1 = 1).
  if (n >= 2 && static_cast<int>(pos.size()) == n && pos.front() == 0 && pos.back() == n - 1)
    return 1;
  const auto runs = runs_of(pos);
  int gap = kNoGap;
  for (size_t i = 1; i < runs.size(); ++i) {
    const int g = runs[i].first - runs[i - 1].second;
    if (gap == kNoGap || g < gap) gap = g;
  }
  return gap;
}

std::string gap_str(int gap) { return gap == kNoGap ? "none" : std::to_string(gap); }

namespace {

// Smallest of two gaps, ignoring "none".
int min_gap(int x, int y) {
  if (x == kNoGap) return y;
  if (y == kNoGap) return x;
  return std::min(x, y);
}

bool below(int gap, int rho) { return gap != kNoGap && gap < rho; }

}  // namespace

ExposureReport compute_exposure(const Schedule& s, int n, int rho) {
  if (n < 1 || n > s.n_positions)
    throw std::invalid_argument("exposure: prompt length must be in 1.." +
                                std::to_string(s.n_positions) + " (the positions planned), got " +
                                std::to_string(n));
  if (rho < 1) throw std::invalid_argument("rho must be >= 1, got " + std::to_string(rho));
  if (s.comp.size() < static_cast<size_t>(n) || s.att.size() < static_cast<size_t>(n))
    throw std::invalid_argument("exposure: schedule arrays are shorter than n_positions");

  ExposureReport rep;
  rep.n = n;
  rep.rho = rho;
  const std::string whole = " observes every position: whole prompt exposed";

  auto fill = [&](PartyExposure& e, const std::vector<int>& pos) {
    e.runs = runs_of(pos);
    e.observed = static_cast<int>(pos.size());
    e.fraction = static_cast<double>(e.observed) / n;
    e.whole_prompt = e.observed == n;
  };

  for (int k = 0; k < s.alpha; ++k) {
    PartyExposure e;
    e.role.kind = RankRole::comp;
    e.role.k = k;
    e.rank = s.comp_rank(k);
    const auto pos = s.positions_of_comp(k, n);
    fill(e, pos);
    e.gap = gap_of(pos, n);
    e.union_gap = e.gap;
    if (e.whole_prompt) rep.warnings.push_back(e.role.name() + whole);
    if (below(e.gap, rho))
      rep.violations.push_back(e.role.name() + " (rank " + std::to_string(e.rank) +
                               ") has gap " + std::to_string(e.gap) + " < rho = " +
                               std::to_string(rho));
    rep.parties.push_back(std::move(e));
  }

  std::vector<std::vector<int>> shard(s.beta);
  std::vector<int> shard_gap(s.beta);
  for (int b = 0; b < s.beta; ++b) {
    shard[b] = s.positions_of_shard(b, n);
    shard_gap[b] = gap_of(shard[b], n);
  }
  for (int a = 0; a < s.beta; ++a) {
    for (int b = 0; b < s.beta; ++b) {
      PartyExposure e;
      e.role.kind = RankRole::attn;
      e.role.a = a;
      e.role.b = b;
      e.rank = s.attn_rank(a, b);
      std::vector<int> uni;
      if (a == b) {
        uni = shard[a];
      } else {
        std::set_union(shard[a].begin(), shard[a].end(), shard[b].begin(), shard[b].end(),
                       std::back_inserter(uni));
      }
      fill(e, uni);
      e.gap_q = shard_gap[a];
      e.gap_kv = shard_gap[b];
      e.gap = min_gap(e.gap_q, e.gap_kv);
      e.union_gap = gap_of(uni, n);
      const std::string name = e.role.name();
      if (e.whole_prompt) {
        rep.warnings.push_back(name + whole);
      } else if (a != b && below(e.union_gap, rho)) {
        rep.warnings.push_back(name + ": query shard " + std::to_string(a) + " + key shard " +
                               std::to_string(b) + " together have gap " +
                               std::to_string(e.union_gap) + " < rho = " + std::to_string(rho) +
                               " (warning only: the security gap is min(q, kv) = " +
                               gap_str(e.gap) + ")");
      }
      if (below(e.gap, rho))
        rep.violations.push_back(name + " (rank " + std::to_string(e.rank) + ") has gap " +
                                 std::to_string(e.gap) + " < rho = " + std::to_string(rho) +
                                 " (query shard " + std::to_string(a) + " gap " +
                                 gap_str(e.gap_q) + ", key shard " + std::to_string(b) +
                                 " gap " + gap_str(e.gap_kv) + ")");
      rep.parties.push_back(std::move(e));
    }
  }
  return rep;
}

void enforce_security(const ExposureReport& rep, bool insecure) {
  if (insecure || rep.secure()) return;
  std::ostringstream os;
  os << "schedule refused: the security condition gap >= rho = " << rep.rho
     << " fails for " << rep.violations.size() << " part"
     << (rep.violations.size() == 1 ? "y" : "ies") << " (prompt of " << rep.n << " tokens): ";
  const size_t shown = std::min<size_t>(rep.violations.size(), 6);
  for (size_t i = 0; i < shown; ++i) os << (i ? "; " : "") << rep.violations[i];
  if (shown < rep.violations.size()) os << "; and " << rep.violations.size() - shown << " more";
  os << ". Choose delta - c + 1 >= rho and beta >= rho, or pass --insecure to run it anyway";
  throw SecurityError(os.str());
}

ExposureReport check_security(const Schedule& s, int n, int rho, bool insecure) {
  ExposureReport rep = compute_exposure(s, n, rho);
  enforce_security(rep, insecure);
  return rep;
}

}  // namespace cascade
