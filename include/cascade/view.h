// A party's view: what it may receive (PROTOCOL.md "Invariants", "What a party observes"),
// checked on every message in every run (`cascade run` included), from the message as it
// arrived: its header names the sender's parts, their kinds, positions and sizes.
//   client          the final row of each step (the hidden row under --lm-head client, logits
//                   under comp) from the CompNode owning the step's last position, and the
//                   end-of-run reports; an encoder's (bert's) client instead gets the last
//                   hidden rows of every input position, from the CompNodes owning them
//   CompNode k      from the client: the schedule, control, token ids of its own positions;
//                   from AttnNode (a, b): partials of its own positions in shard a
//   AttnNode (a,b)  from the client: the schedule and control; from CompNode k: q rows of k's
//                   positions in shard a and k/v rows of k's positions in shard b — never a
//                   token id, a hidden state, a partial or logits
// Every part's size must be its rows times the row size of its kind, layers must exist, a
// client message is outside the layers (layer −1), decode positions in control messages must
// be generated positions in strictly increasing order, and no token id arrives twice.
#pragma once

#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "cascade/message.h"
#include "cascade/schedule.h"

namespace cascade {

class ViewViolation : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "" when `msg` (from msg.src to msg.dst) respects the receiver's view, else what is wrong,
// naming sender, receiver, layer and kind. Stateless: the rules of one message. The schedule
// must carry the model shape.
std::string view_violation(const Schedule& s, const Message& msg);

// The stateful audit of one party: view_violation on each message, plus the order of control
// messages and tokens that arrive once. Throws ViewViolation.
class ViewAudit {
 public:
  ViewAudit(Schedule s, int rank) : s_(std::move(s)), rank_(rank) {}
  // A message this party is about to send (its own check before the bytes leave).
  void check_outgoing(const Message& msg) const;
  // A message that arrived at this party.
  void check_received(const Message& msg);

 private:
  Schedule s_;
  int rank_;
  int last_decode_ = -1;       // last decode position announced by the client
  std::set<int> tokens_seen_;  // positions whose token id arrived
};

}  // namespace cascade
