// A compute section of a party: its thread CPU time counts in PartyStats::compute_s and, when
// the run is traced, it is one span of the trace (trace.h) with the FLOPs and memory bytes its
// shapes imply. Close it with end(cost); it closes itself (without a cost) otherwise.
#pragma once

#include "cascade/compute_timer.h"
#include "cascade/trace.h"

namespace cascade {

class Section {
 public:
  Section(ComputeTimer& timer, TraceRecorder* trace, SpanKind kind, int layer)
      : timer_(timer), trace_(trace) {
    const double cpu = ComputeTimer::now();  // one reading for both
    timer_.start_at(cpu);
    if (trace_) trace_->begin(kind, layer, cpu);
  }
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;
  ~Section() { end(); }

  void end(SpanCost cost = {}) {
    if (done_) return;
    done_ = true;
    const double cpu = ComputeTimer::now();
    timer_.stop_at(cpu);
    if (trace_) trace_->end(cost, cpu);
  }

 private:
  ComputeTimer& timer_;
  TraceRecorder* trace_;
  bool done_ = false;
};

}  // namespace cascade
