// Who holds what during one step (a prefill or one decode step), derived from the schedule
// alone: every party computes the same picture, and the transport checks the positions each
// message carries (message.h) against it on arrival.
#pragma once

#include <functional>
#include <vector>

#include "cascade/compute_timer.h"
#include "cascade/protocol.h"
#include "cascade/schedule.h"

namespace cascade {

struct Step {
  int first = 0, end = 0;  // positions first..end-1: 0..N-1 for the prefill, {p} for a decode step

  static Step prefill(const Schedule& s) { return {0, s.n_prompt}; }
  static Step decode(int p) { return {p, p + 1}; }

  // Positions of the step owned by CompNode k, and among those the ones in shard a.
  std::vector<int> of_comp(const Schedule& s, int k) const { return s.positions(first, end, k); }
  std::vector<int> of_comp_shard(const Schedule& s, int k, int a) const {
    return s.positions(first, end, k, a);
  }
  int last() const { return end - 1; }
};

// A CompNode's or AttnNode's life: the prefill, then one decode step per control message from
// the client, until it says stop. Returns when stopped; throws on a malformed control message.
void serve_steps(Transport& t, const Schedule& s, const std::function<void(const Step&)>& run_step);

}  // namespace cascade
