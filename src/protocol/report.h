// The end-of-run report every party sends rank 0 (kind report, outside the protocol's figure):
// its PartyStats and the bytes it sent and received per (src, dst, layer, kind).
#pragma once

#include <cstdint>
#include <vector>

#include "cascade/protocol.h"
#include "cascade/transport.h"

namespace cascade {

std::vector<uint8_t> encode_report(const PartyStats& st, const ByteCounts& sent, const ByteCounts& received);
// Merges rank `r`'s report into the counts; returns its stats. Throws std::runtime_error
// ("malformed end-of-run report from rank r: ...") on anything but a well-formed report.
PartyStats decode_report(int r, const std::vector<uint8_t>& in, ByteCounts& sent, ByteCounts& received);

}  // namespace cascade
