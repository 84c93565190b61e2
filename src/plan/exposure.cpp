// Exposure of each party and the security check. See include/cascade/exposure.h.
#include "cascade/exposure.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>

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

std::vector<std::pair<int, int>> holes_of(const std::vector<int>& pos) {
  std::vector<std::pair<int, int>> holes;
  int next = 0;  // first position after the previous observed run
  for (const auto& [first, last] : runs_of(pos)) {
    if (first > next) holes.emplace_back(next, first - 1);
    next = last + 1;
  }
  return holes;
}

int gap_of(const std::vector<int>& pos) {
  int gap = kNoGap;
  for (const auto& [first, last] : holes_of(pos)) {
    const int g = last - first + 2;  // 1 + hole length
    if (gap == kNoGap || g < gap) gap = g;
  }
  return gap;
}

std::vector<std::pair<int, int>> hole_segments(const std::vector<int32_t>& att, int first, int end) {
  if (first < 0 || end > (int)att.size() || first > end) throw std::out_of_range("hole_segments: hole outside the schedule");
  std::map<int32_t, int> last;  // shard → its last position in the hole
  for (int p = first; p < end; ++p) last[att[p]] = p;
  std::vector<std::pair<int, int>> out;
  int s = first, reach = first;  // the segment [s, ·) must run past reach
  for (int p = first; p < end; ++p) {
    reach = std::max(reach, last[att[p]]);
    if (p == reach) {
      out.push_back({s, p + 1});
      s = p + 1;
    }
  }
  return out;
}

std::string gap_str(int gap) { return gap == kNoGap ? "none" : std::to_string(gap); }

std::vector<int> observed_positions(const Schedule& s, int rank) {
  const RankRole role = s.role_of_rank(rank);
  const int n = s.n_positions;
  std::vector<int> out;
  if (role.kind == RankRole::comp) {
    out = s.positions(0, n, role.k);
    if (s.lm_head == LmHead::comp) {
      // The owner of each step's last position (N − 1, then every decode position) samples
      // the next token from its logits.
      std::vector<int> next;
      for (int p : s.positions(s.n_prompt - 1, n - 1, role.k)) next.push_back(p + 1);
      std::vector<int> both;
      std::set_union(out.begin(), out.end(), next.begin(), next.end(), std::back_inserter(both));
      out.swap(both);
    }
  } else if (role.kind == RankRole::attn) {
    const std::vector<int> qa = s.positions(0, n, -1, role.a);
    if (role.a == role.b) return qa;
    const std::vector<int> kvb = s.positions(0, n, -1, role.b);
    std::set_union(qa.begin(), qa.end(), kvb.begin(), kvb.end(), std::back_inserter(out));
  }
  return out;
}

int span_exposed(const Schedule& s, int k) {
  if (s.shape.empty() || s.shape.n_head_kv <= 0) return -1;
  const int mixes_per_query = s.shape.n_head / s.shape.n_head_kv;
  const std::vector<std::pair<int, int>> runs = runs_of(s.positions(0, s.n_positions, k));
  std::vector<int> unknown(s.beta, 0);  // per key shard: positions not recovered so far
  int exposed = 0, next = 0;            // positions < next are counted in unknown or own
  for (const auto& [r0, r1] : runs) {
    for (int j = next; j < r0; ++j) ++unknown[s.att[j]];
    next = r1 + 1;
    const int mixes = mixes_per_query * (r1 - r0 + 1);
    for (int b = 0; b < s.beta; ++b) {
      if (unknown[b] == 0 || unknown[b] > mixes || unknown[b] >= s.shape.d_head) continue;
      exposed += unknown[b];
      unknown[b] = 0;
    }
  }
  return exposed;
}

ExposureReport compute_exposure(const Schedule& s, int rho) {
  if (rho < 1) throw std::invalid_argument("rho must be >= 1, got " + std::to_string(rho));
  if (s.comp.size() != static_cast<size_t>(s.n_positions) ||
      s.att.size() != static_cast<size_t>(s.n_positions) || s.n_prompt < 1 ||
      s.n_prompt > s.n_positions)
    throw std::invalid_argument("exposure: the schedule's arrays or prompt length are inconsistent");

  ExposureReport rep;
  rep.n_prompt = s.n_prompt;
  rep.n_positions = s.n_positions;
  rep.rho = rho;
  for (int rank = 1; rank < s.n_ranks(); ++rank) {
    PartyExposure e;
    e.role = s.role_of_rank(rank);
    e.rank = rank;
    const std::vector<int> pos = observed_positions(s, rank);
    e.runs = runs_of(pos);
    e.observed = static_cast<int>(pos.size());
    e.fraction = static_cast<double>(e.observed) / s.n_positions;
    for (const auto& [first, last] : e.runs) e.longest_run = std::max(e.longest_run, last - first + 1);
    for (const auto& [first, last] : holes_of(pos)) {
      const int h = last - first + 1;
      if (e.shortest_hole == 0 || h < e.shortest_hole) {
        e.shortest_hole = h;
        e.shortest_hole_at = first;
      }
    }
    e.gap = e.shortest_hole == 0 ? kNoGap : e.shortest_hole + 1;
    e.segment_gap = e.gap, e.shortest_segment = e.shortest_hole, e.shortest_segment_at = e.shortest_hole_at;
    if (e.role.kind == RankRole::comp) {
      for (const auto& [first, last] : holes_of(pos))
        for (const auto& [s0, s1] : hole_segments(s.att, first, last + 1))
          if (s1 - s0 < e.shortest_segment) e.shortest_segment = s1 - s0, e.shortest_segment_at = s0;
      e.segment_gap = e.shortest_segment == 0 ? kNoGap : e.shortest_segment + 1;
    }
    e.unseen = s.n_positions - e.observed;
    if (e.role.kind == RankRole::comp) {
      e.span_exposed = span_exposed(s, e.role.k);
      if (e.span_exposed > 0)
        rep.warnings.push_back(e.role.name() + " (rank " + std::to_string(rank) + ") recovers " +
                               std::to_string(e.span_exposed) + " of its " + std::to_string(e.unseen) +
                               " unseen positions from its layer-0 partials (the span attack)");
    }
    e.generated = static_cast<int>(
        std::count_if(pos.begin(), pos.end(), [&](int p) { return p >= s.n_prompt; }));
    e.learns_final_token = e.role.kind == RankRole::comp && s.lm_head == LmHead::comp &&
                           s.comp[s.n_positions - 1] == e.role.k;
    // Every prompt position observed: pos is sorted, so its first n_prompt entries are 0..N−1.
    e.whole_prompt = static_cast<int>(pos.size()) >= s.n_prompt && pos[s.n_prompt - 1] == s.n_prompt - 1;

    const std::string who = e.role.name() + " (rank " + std::to_string(rank) + ")";
    if (e.whole_prompt)
      rep.violations.push_back(who + " observes every prompt position (" +
                               std::to_string(s.n_prompt) + " of " + std::to_string(s.n_prompt) + ")");
    else if (e.gap != kNoGap && e.gap < rho)
      rep.violations.push_back(who + " has gap " + std::to_string(e.gap) + " < rho = " +
                               std::to_string(rho) + ": a hole of " + std::to_string(e.shortest_hole) +
                               " position" + (e.shortest_hole == 1 ? "" : "s") + " at " +
                               std::to_string(e.shortest_hole_at));
    else if (e.segment_gap != kNoGap && e.segment_gap < rho)
      rep.violations.push_back(who + " has segment gap " + std::to_string(e.segment_gap) + " < rho = " +
                               std::to_string(rho) + ": its layer-0 partials verify a segment of " +
                               std::to_string(e.shortest_segment) + " position" + (e.shortest_segment == 1 ? "" : "s") +
                               " at " + std::to_string(e.shortest_segment_at) + " on its own");
    rep.parties.push_back(std::move(e));
  }
  return rep;
}

void enforce_security(const ExposureReport& rep, bool insecure) {
  if (insecure || rep.secure()) return;
  std::ostringstream os;
  os << "schedule refused: " << rep.violations.size() << " part"
     << (rep.violations.size() == 1 ? "y fails" : "ies fail") << " the check (gap >= rho = "
     << rep.rho << ", no party sees the whole prompt; " << rep.n_prompt << " prompt + "
     << rep.n_positions - rep.n_prompt << " generated positions): ";
  const size_t shown = std::min<size_t>(rep.violations.size(), 6);
  for (size_t i = 0; i < shown; ++i) os << (i ? "; " : "") << rep.violations[i];
  if (shown < rep.violations.size()) os << "; and " << rep.violations.size() - shown << " more";
  os << ". Widen the holes (delta - c + 1 >= rho, and c + 1 >= rho under --attn-sharding cluster with "
        "beta = alpha, for CompNodes; --attn-sharding cluster with beta >= 3 and c + 1 >= rho for AttnNodes), "
        "or pass --insecure to run it anyway";
  throw SecurityError(os.str());
}

ExposureReport check_security(const Schedule& s, int rho, bool insecure) {
  ExposureReport rep = compute_exposure(s, rho);
  enforce_security(rep, insecure);
  return rep;
}

}  // namespace cascade
