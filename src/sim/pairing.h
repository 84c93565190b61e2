// The messages of a trace, each send paired with its receive (src/sim internal): what the
// simulation replays and the wake-up estimate measures. Pairing also validates the trace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cascade/sim.h"

namespace cascade::sim_detail {

struct PairedMessage {
  int src = 0, dst = 0, layer = 0, channel = 0;
  uint64_t seq = 0;
  int64_t send_span = -1;  // on src: the span it was posted in (it departs at its end)
  int64_t wait_span = -1;  // on dst: the wait span it completed in
  uint64_t wire_bytes = 0;
  double t_complete = 0.0;  // receiver's clock: when the receiver had it
};

// "rank 2 (CompNode 1)"
std::string rank_name(const Trace& t, int r);
// "span 57 (wait, step 0, layer 3)"
std::string span_name(const Trace& t, int r, int64_t i);
// "the message rank 1 (CompNode 0) → rank 2 (AttnNode (0,0)) at layer 3 on channel q (seq 0)"
std::string message_name(const Trace& t, const PairedMessage& m);

// Checks every rank's spans (kinds, order, contiguity) and pairs every send with its receive by
// (src, dst, layer, channel, seq); the result is sorted by (src, dst, seq, layer, channel).
// Throws SimError on an inconsistent trace (see simulate()).
std::vector<PairedMessage> pair_messages(const Trace& t);

}  // namespace cascade::sim_detail
