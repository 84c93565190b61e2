#include "cascade/sampler.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "kernels/softmax.h"

namespace cascade {

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (opt_.temperature <= 0.0f) return kernels::argmax_row(logits, n_vocab);
  // top-k candidates, sorted by logit (ties by id, for determinism)
  const int k = (opt_.top_k > 0 && opt_.top_k < n_vocab) ? opt_.top_k : n_vocab;
  std::vector<int32_t> ids(n_vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  std::vector<float> x(k), p(k);
  for (int i = 0; i < k; ++i) x[i] = logits[ids[i]];
  kernels::softmax_row(x.data(), p.data(), k, opt_.temperature);
  // uniform in [0, 1) from the top 53 bits
  const double r = (double)(rng_() >> 11) * (1.0 / 9007199254740992.0);
  double acc = 0.0;
  for (int i = 0; i < k; ++i) {
    acc += p[i];
    if (r < acc) return ids[i];
  }
  return ids[k - 1];
}

}  // namespace cascade
