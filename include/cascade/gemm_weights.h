// GEMM weights: a model's weight matrices packed once for the packed GEMM (packed_gemm.h), in
// a store of their own that the ranks of a node share as they share the fp32 weights.
//
// The store is a weight cache file (weight_cache.h) beside the model's fp32 cache, with the
// same key (the GGUF's or synthetic spec's sha256) and its own layout:
//   <stem>.<16 hex of the key>.dnnl-<f32|bf16>-<8 hex>.cache
// where the 8 hex are the sha256 of every matrix shape's layout descriptor (oneDNN version,
// implementation and ISA, blocking): a CPU or library that packs differently gets a file of
// its own, and a file that does not match is rebuilt, never misread. When the model's fp32
// weights are in private memory (WeightSource::memory, or no usable cache directory), the
// packed ones are too.
//
// Packed: per layer the Q|K|V, output, gate|up (or up) and down matrices; the LM head (the
// output matrix, or the token embedding when tied) for decoders. The embedding rows, norms
// and biases stay in the fp32 store.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "cascade/packed_gemm.h"
#include "cascade/weight_cache.h"

namespace cascade {

struct Model;

struct GemmWeights {
  Precision precision = Precision::f32;
  std::shared_ptr<const WeightStore> store;          // the packed matrices
  std::shared_ptr<const WeightStore> model_weights;  // keeps the fp32 originals (the keys) mapped
  std::unordered_map<const float*, const void*> packed;  // fp32 matrix → its packed copy
  WeightLoadReport report;                           // how `store` was made or found

  // The packed copy of the matrix at `w` (an address in the model's fp32 store), or nullptr.
  const void* find(const float* w) const {
    const auto it = packed.find(w);
    return it == packed.end() ? nullptr : it->second;
  }
};

// `model`'s matrices packed by `gemm` (its precision), from the node's cache when the model's
// fp32 weights come from one: built there by the first process, mapped by the others.
std::shared_ptr<const GemmWeights> pack_gemm_weights(const Model& model, const PackedGemm& gemm,
                                                     const WeightLoadOptions& opt = {});

}  // namespace cascade
