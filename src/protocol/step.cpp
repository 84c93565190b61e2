#include "step.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace cascade {

void serve_steps(Transport& t, const Schedule& s, const std::function<void(const Step&)>& run_step) {
  run_step(Step::prefill(s));
  for (;;) {
    Control c;
    t.recv({0, t.rank(), -1, {{CommKind::control, sizeof(Control)}}, {}}, &c);
    if (c.command == kControlStop) return;
    if (c.command != kControlDecode || c.position < s.n_prompt || c.position >= s.n_positions)
      throw std::runtime_error("bad control message from the client (command " +
                               std::to_string(c.command) + ", position " + std::to_string(c.position) + ")");
    run_step(Step::decode(c.position));
  }
}

void stall_if_asked(const FaultOptions& f, int rank, int layer) {
  if (f.stall_rank == rank && f.stall_layer == layer)
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace cascade
