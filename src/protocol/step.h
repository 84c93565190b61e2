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

// Where a party waits on the client, it waits longer than the others wait on each other: the
// start barrier and the end-of-run reports (rank 0 alone knows who is missing and names them),
// and the next step's control message (the step is stuck on whoever a party inside it waits
// for, at the plain timeout, or the client at twice it). So the party that names the dead or
// stuck one speaks first, instead of every idle party blaming the healthy client.
class LongerTimeout {
 public:
  explicit LongerTimeout(Transport& t) : t_(t), saved_(t.timeout()) {
    if (t.rank() != 0) t.set_timeout(2 * saved_ + 5);
  }
  ~LongerTimeout() { t_.set_timeout(saved_); }
  LongerTimeout(const LongerTimeout&) = delete;
  LongerTimeout& operator=(const LongerTimeout&) = delete;

 private:
  Transport& t_;
  double saved_;
};

// A CompNode's or AttnNode's life: the prefill, then one decode step per control message from
// the client, until it says stop. Returns when stopped; throws on a malformed control message.
void serve_steps(Transport& t, const Schedule& s, const std::function<void(const Step&)>& run_step);

}  // namespace cascade
