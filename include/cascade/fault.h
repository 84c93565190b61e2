// Test-only fault injection (`cascade run --fault KIND:RANK[:LAYER]`): one party misbehaves on
// purpose, so that tests can show that the run's checks catch it and nothing hangs.
//   stall        the party stops answering (sleeps) at LAYER
//   stall-start  the party never reaches the start barrier (as if stuck loading the model)
//   stall-end    the party never sends its end-of-run report
//   misroute     a CompNode, at LAYER, swaps the destinations of its up messages to AttnNodes
//                (a, b) and (a, b') (the first shard a it has rows in, b' = b + 1 mod β)
//   leak         a CompNode, at LAYER, appends its hidden rows to its first up message
//   kill         the party dies at once (SIGKILL to itself: no message, no clean-up, as in a
//                crash or the OOM killer) at LAYER; the client (rank 0) right after sending the
//                prefill's token ids
// A misrouting or leaking party skips its own send-side view check, as a buggy or malicious
// party would: the receivers' audit must catch it.
#pragma once

#include <string>

namespace cascade {

struct Fault {
  enum class Kind { none, stall, stall_start, stall_end, misroute, leak, kill };
  Kind kind = Kind::none;
  int rank = -1;
  int layer = 0;

  // This fault, at this rank (and layer, where the kind has one).
  bool is(Kind k, int at_rank) const { return kind == k && rank == at_rank; }
  bool is(Kind k, int at_rank, int at_layer) const { return is(k, at_rank) && layer == at_layer; }
  // The party at `at_rank` sends what its own view check would refuse.
  bool skips_own_check(int at_rank) const {
    return rank == at_rank && (kind == Kind::misroute || kind == Kind::leak);
  }
};

// "stall:2:3", "misroute:1:0", "stall-start:5", "kill:0"; throws std::invalid_argument with the syntax.
Fault parse_fault(const std::string& spec);

// Sleeps forever (a stuck party: Open MPI does not notice it, only the peers' timeouts do).
[[noreturn]] void hang_forever();
// Sends SIGKILL to this process (a dead party).
[[noreturn]] void die_now();

}  // namespace cascade
