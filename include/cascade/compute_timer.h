#pragma once
#include <time.h>

namespace cascade {

// Accumulates the CPU time of this thread inside compute sections. CPU time, not wall time:
// when parties outnumber cores (21 ranks on a laptop) a section's wall time also counts the
// time slices other ranks got; its CPU time is the work this party really did. Meaningful for
// single-threaded ranks (the default of `cascade run`).
class ComputeTimer {
 public:
  void start() { t0_ = now(); }
  void stop() { total_ += now() - t0_; }
  // The same with a reading of now() the caller took (and shares with a trace span).
  void start_at(double t) { t0_ = t; }
  void stop_at(double t) { total_ += t - t0_; }
  double seconds() const { return total_; }

  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  }

 private:
  double t0_ = 0.0;
  double total_ = 0.0;
};

}  // namespace cascade
