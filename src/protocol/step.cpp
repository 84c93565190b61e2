#include "step.h"

#include "cascade/trace.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace cascade {

void serve_steps(Transport& t, const Schedule& s, const std::function<void(const Step&)>& run_step) {
  run_step(Step::prefill(s));
  for (;;) {
    // Its positions depend on the command: received as it comes, then checked.
    const Received r = [&] {
      LongerTimeout patience(t);  // a stuck step is named by a party inside it, or the client
      return t.recv_any(0, -1, CommKind::control);
    }();
    Control c;
    if (r.msg.parts.size() != 1 || r.msg.parts[0].kind != CommKind::control ||
        r.payload.size() != sizeof(Control))
      throw std::runtime_error("malformed control message from the client");
    std::memcpy(&c, r.payload.data(), sizeof c);
    const std::vector<int32_t> want =
        c.command == kControlDecode ? std::vector<int32_t>{c.position} : std::vector<int32_t>{};
    if (r.msg.parts[0].positions != want)
      throw std::runtime_error("control message from the client declares other positions than its command");
    if (c.command == kControlStop) return;
    if (c.command != kControlDecode || c.position < s.n_prompt || c.position >= s.n_positions)
      throw std::runtime_error("bad control message from the client (command " +
                               std::to_string(c.command) + ", position " + std::to_string(c.position) + ")");
    if (t.trace()) t.trace()->set_step(c.position - s.n_prompt + 1);
    run_step(Step::decode(c.position));
  }
}

}  // namespace cascade
