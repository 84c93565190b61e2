// TEMPORARY (deleted when main's src/trace/trace.cpp is merged): the two trace.h helpers the
// simulator needs, so that the branch builds and tests before the recorder lands.
#include "cascade/trace.h"

namespace cascade {

const char* span_kind_name(SpanKind kind) {
  static const char* names[] = {"embed", "prepass", "pack", "send", "wait",
                                "attention", "merge", "postpass", "lm_head", "other"};
  const int k = (int)kind;
  return k >= 0 && k < kNumSpanKinds ? names[k] : "?";
}

bool is_compute(SpanKind kind) {
  return kind != SpanKind::send && kind != SpanKind::wait && kind != SpanKind::other;
}

}  // namespace cascade

#include <stdexcept>
#include "cascade/trace_io.h"
namespace cascade {
Trace read_trace(const std::string& path) {
  throw TraceFileError("read_trace(" + path + "): not on this branch yet (main has it)");
}
}  // namespace cascade
