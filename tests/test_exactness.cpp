// The exactness measure (exactness.h): a NaN or inf must never pass a tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cascade/exactness.h"

using cascade::max_rel_error;

namespace {
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();
}  // namespace

TEST(Exactness, RelativeToTheLargestReferenceValue) {
  const std::vector<float> ref{1.0f, -4.0f, 2.0f};
  const std::vector<float> got{1.0f, -4.0f, 2.5f};
  EXPECT_DOUBLE_EQ(max_rel_error(got.data(), ref.data(), 3), 0.5 / 4.0);
  EXPECT_DOUBLE_EQ(max_rel_error(ref.data(), ref.data(), 3), 0.0);
  const std::vector<float> zeros(3, 0.0f);
  EXPECT_DOUBLE_EQ(max_rel_error(zeros.data(), zeros.data(), 3), 0.0);
  EXPECT_TRUE(std::isinf(max_rel_error(ref.data(), zeros.data(), 3)));
  EXPECT_DOUBLE_EQ(max_rel_error(nullptr, nullptr, 0), 0.0);
}

TEST(Exactness, NaNAndInfFail) {
  const std::vector<float> ref{1.0f, 2.0f, 3.0f, 4.0f};
  for (size_t i = 0; i < ref.size(); ++i)
    for (float bad : {kNaN, kInf, -kInf}) {
      std::vector<float> got = ref;
      got[i] = bad;
      const double e = max_rel_error(got.data(), ref.data(), got.size());
      EXPECT_TRUE(std::isinf(e) && e > 0) << "position " << i << " value " << bad;
      EXPECT_FALSE(e <= 1e-4);
      // Also when the reference is the broken one.
      EXPECT_TRUE(std::isinf(max_rel_error(ref.data(), got.data(), got.size())));
    }
  // Rows combined with std::max keep the failure, whatever the order.
  std::vector<float> nan_row = ref;
  nan_row[0] = kNaN;
  double worst = 0.0;
  worst = std::max(worst, max_rel_error(nan_row.data(), ref.data(), 4));
  worst = std::max(worst, max_rel_error(ref.data(), ref.data(), 4));
  EXPECT_FALSE(worst <= 1e-4);
}
