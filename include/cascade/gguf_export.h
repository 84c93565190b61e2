// Writes a synthetic model (synthetic.h) as an f32 GGUF v3 file in llama.cpp's conventions for
// its family (tensor names, metadata keys), so that other programs — llama.cpp, the gguf Python
// package, the SMPC peers of bench/smpc/ — run the very same weights as Cascade.
//   cascade export-gguf --model synthetic:bert-base -o bert-base.gguf
// Tensors: every GGUF tensor that Model::weight_specs stacks (attn_q, attn_k, attn_v apart),
// in spec order, 32-byte aligned. Metadata: general.architecture, general.name,
// <arch>.{block_count, context_length, embedding_length, feed_forward_length,
// attention.head_count, attention.head_count_kv, vocab_size}, the norm epsilon
// (<arch>.attention.layer_norm_rms_epsilon for llama, .layer_norm_epsilon otherwise),
// llama.rope.freq_base, bert.attention.causal = false and tokenizer.ggml.token_type_count.
// No tokenizer: prompts are token ids.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cascade/model_config.h"

namespace cascade {

// Writes `path` (replacing it atomically: a temporary file, then a rename) for synthetic
// `cfg` with weights from `seed`. `progress`, if given, is called with (bytes written, total).
// Throws std::runtime_error on an I/O error.
void export_synthetic_gguf(const ModelConfig& cfg, uint64_t seed, const std::string& path,
                           const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace cascade
