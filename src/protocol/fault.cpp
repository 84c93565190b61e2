// Test-only fault injection. See include/cascade/fault.h.
#include "cascade/fault.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

namespace cascade {

Fault parse_fault(const std::string& spec) {
  const std::string syntax =
      "--fault KIND:RANK[:LAYER] with KIND one of stall, stall-start, stall-end, misroute, leak, kill (got '" +
      spec + "')";
  std::vector<std::string> f;
  size_t start = 0;
  for (size_t i = 0; i <= spec.size(); ++i)
    if (i == spec.size() || spec[i] == ':') {
      f.push_back(spec.substr(start, i - start));
      start = i + 1;
    }
  if (f.size() < 2 || f.size() > 3) throw std::invalid_argument(syntax);
  Fault out;
  if (f[0] == "stall") out.kind = Fault::Kind::stall;
  else if (f[0] == "stall-start") out.kind = Fault::Kind::stall_start;
  else if (f[0] == "stall-end") out.kind = Fault::Kind::stall_end;
  else if (f[0] == "misroute") out.kind = Fault::Kind::misroute;
  else if (f[0] == "leak") out.kind = Fault::Kind::leak;
  else if (f[0] == "kill") out.kind = Fault::Kind::kill;
  else throw std::invalid_argument(syntax);
  try {
    size_t used = 0;
    out.rank = std::stoi(f[1], &used);
    if (used != f[1].size() || out.rank < 0) throw std::invalid_argument(syntax);
    if (f.size() == 3) {
      out.layer = std::stoi(f[2], &used);
      if (used != f[2].size() || out.layer < 0) throw std::invalid_argument(syntax);
    }
  } catch (const std::logic_error&) {
    throw std::invalid_argument(syntax);
  }
  return out;
}

void die_now() {
  std::fflush(nullptr);  // what it printed so far is not lost with it
  raise(SIGKILL);
  hang_forever();
}

void hang_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace cascade
