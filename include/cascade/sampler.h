// Next-token sampling, shared by `cascade generate` and the Cascade client (rank 0), so that
// both produce the same tokens from the same logits and seed.
#pragma once

#include <cstdint>
#include <random>

namespace cascade {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 40;            // ≤ 0: whole vocabulary
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& opt) : opt_(opt), rng_(opt.seed) {}
  int32_t sample(const float* logits, int n_vocab);

 private:
  SamplerOptions opt_;
  std::mt19937_64 rng_;  // raw 64-bit output only: reproducible across standard libraries
};

}  // namespace cascade
