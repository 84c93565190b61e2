// libFuzzer target: every decoder of bytes that come from another rank. The first input byte picks
// one: a message (header and payload; what decodes must encode back to the same bytes, and is
// then audited against a party's view), the schedule, a rank's trace recording, the end-of-run
// report. Exceptions are refusals (fine); a crash, a sanitizer report or a hang is a finding.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include "../src/protocol/report.h"
#include "cascade/message.h"
#include "cascade/schedule.h"
#include "cascade/model.h"
#include "cascade/trace.h"
#include "cascade/view.h"
#include "fuzz_util.h"

namespace {

// The seeds' schedule, for the view audit.
const cascade::Schedule& schedule() {
  static const cascade::Schedule s = cascade_fuzz::seed_schedule();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0] % 4;
  ++data;
  --size;
  try {
    switch (which) {
      case 0: {
        cascade::Message m;
        const uint64_t offset = cascade::decode_message(data, size, m);
        const std::vector<uint8_t> again = cascade::encode_message(m, data + offset);
        if (again.size() != size || std::memcmp(again.data(), data, size) != 0) std::abort();
        // Audited as it would arrive at every rank, from every rank.
        const cascade::Schedule& s = schedule();
        for (int dst = 0; dst < s.n_ranks(); ++dst) {
          cascade::ViewAudit audit(s, dst);
          m.dst = dst;
          for (int src = 0; src < s.n_ranks(); ++src) {
            if (src == dst) continue;
            m.src = src;
            try {
              audit.check_received(m);
            } catch (const std::exception&) {
            }
          }
        }
        break;
      }
      case 1:
        (void)cascade::deserialize(data, size);
        break;
      case 2:
        (void)cascade::decode_rank_trace(data, size);
        break;
      case 3: {
        cascade::ByteCounts sent, received;
        (void)cascade::decode_report(1, std::vector<uint8_t>(data, data + size), sent, received);
        break;
      }
    }
  } catch (const std::exception&) {
  }
  return 0;
}
