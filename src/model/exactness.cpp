#include "cascade/exactness.h"

#include <cmath>
#include <limits>

namespace cascade {

double max_rel_error(const float* got, const float* ref, size_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < n; ++i) {
    // Tested explicitly: comparisons with NaN are false, so max() would silently skip it.
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) return inf;
    const double diff = std::fabs((double)got[i] - (double)ref[i]);
    if (diff > max_diff) max_diff = diff;
    if (std::fabs((double)ref[i]) > max_ref) max_ref = std::fabs((double)ref[i]);
  }
  if (max_diff == 0.0) return 0.0;
  return max_ref > 0.0 ? max_diff / max_ref : inf;
}

}  // namespace cascade
