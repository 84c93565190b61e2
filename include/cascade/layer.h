// The per-token pieces of one layer, shared by the single-process reference and the
// CompNodes of Cascade (so both run the very same code around attention). llama:
//   pre-pass:  x = RMSNorm(h); q = x·Wqᵀ, k = x·Wkᵀ, v = x·Wvᵀ; RoPE(q, k) at absolute positions
//   (attention, as partials + merge: kernels/attention.h)
//   post-pass: h += o·Woᵀ; h += W_down·(silu(x·W_gateᵀ) ⊙ x·W_upᵀ), x = RMSNorm(h)
// gpt2 (pre-norm): x = LN(h); qkv = x·Wᵀ + b (no RoPE: positions were added at the embedding);
//   h += o·Woᵀ + bo; h += W_down·gelu_tanh(LN(h)·W_upᵀ + b_up) + b_down
// bert (post-norm): qkv = h·Wᵀ + b; h = LN(h + o·Woᵀ + bo); h = LN(h + W_down·gelu(h·W_upᵀ +
//   b_up) + b_down)
// Every tensor pointer is in the backend's memory (device memory for CUDA), and so are the
// model's weights (device_model.h uploads them); only embed_tokens takes host ids and positions.
#pragma once

#include <cstdint>
#include <vector>

#include "cascade/backend.h"
#include "cascade/device_buffer.h"
#include "cascade/model.h"

namespace cascade {

// Scratch buffers reused across calls (grown as needed), so the hot path does not allocate.
struct LayerScratch {
  DeviceBuffer<float> x;    // (n, d) normalised rows
  DeviceBuffer<float> big;  // (n, d_q + 2·d_kv) fused QKV, or (n, 2·d_ff) fused gate|up
  DeviceBuffer<float> act;  // (n, d_ff) SwiGLU output
};

// h(n, d) = rows of the token embedding of ids(n); gpt2 and bert add the learned position
// pos[i] (which they need; llama ignores pos), bert the token-type row 0 and then the embedding
// LayerNorm (on `be`, or a CPU backend when nullptr). ids and pos are HOST arrays (checked
// here); h is in the backend's memory.
void embed_tokens(const Model& model, const int32_t* ids, int n, float* h,
                  const int32_t* pos = nullptr, Backend* be = nullptr);

// q(n, d_q), k(n, d_kv), v(n, d_kv) from h(n, d) at positions pos(n) (in the backend's memory).
void layer_prepass(Backend& be, const Model& model, int layer, const float* h,
                   const int32_t* pos, int n, float* q, float* k, float* v, LayerScratch& ws);

// h(n, d) updated in place from the attention output o(n, d_q).
void layer_postpass(Backend& be, const Model& model, int layer, float* h, const float* o, int n,
                    LayerScratch& ws);

// logits(n, n_vocab) = norm(h(n, d))·W_outᵀ. Throws for an encoder (no LM head).
void final_logits(Backend& be, const Model& model, const float* h, int n, float* logits);

}  // namespace cascade
