// A party's view: what it is allowed to receive (PROTOCOL.md "Invariants"):
//   client          only logits rows (and each party's end-of-run report: counts, no rows)
//   CompNode k      the schedule, control, token ids and partials of its own positions only
//   AttnNode (a,b)  the schedule, control, q rows of shard a and k/v rows of shard b — never a
//                   token id, a hidden state, a partial or logits
// Checked at the transport layer through the audit hook, on the sending and the receiving
// side, from the positions each message carries and its size.
#pragma once

#include <string>

#include "cascade/model_config.h"
#include "cascade/schedule.h"
#include "cascade/transport.h"

namespace cascade {

// "" when `msg` (from msg.src to msg.dst) respects the view rules, else what is wrong.
std::string view_violation(const Schedule& s, const ModelConfig& cfg, const Message& msg);

}  // namespace cascade
