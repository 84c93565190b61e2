// The attacker's forward pass (vocab matching, PROTOCOL "Attacks"): a prefix the attacker has
// settled on, held once as a KV cache, and batches of continuations of it — B sequences of a
// few new tokens each — run through the first layers with one GEMM per projection for all of
// them. Each sequence attends to the shared prefix cache (never copied per candidate) and to its
// own tokens; it may extend a sequence of an earlier batch (a beam entry), whose keys and
// values that batch kept (SuffixCache). The per-row math is the model's own (layer.h, kernels/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/layer.h"
#include "cascade/model.h"

namespace cascade {

// Which row of a position the attacker compares. hidden@l: the residual stream after block l
// (l = 0: the embedding; 1..n_layer), what a CompNode holds. q@l, k@l, v@l: what layer l's
// prepass makes (0..n_layer−1; RoPE applied to q and k), what an AttnNode receives.
enum class RowKind { hidden = 0, q, k, v };
struct RowSpec {
  RowKind kind = RowKind::hidden;
  int layer = 1;
};
int row_width(const ModelConfig& c, const RowSpec& s);
std::string row_spec_name(const RowSpec& s);  // "hidden@1", "k@3"
RowSpec parse_row_spec(const std::string& text, const ModelConfig& c);  // throws, says why
// Blocks run in full before the row exists (hidden@l: l; q/k/v@l: l, then layer l's prepass).
inline int blocks_before(const RowSpec& s) { return s.layer; }

// Keys and values a batch of continuations kept: `batch` sequences of `len` tokens, per layer
// l < depth: k[l], v[l] of shape (batch, len, d_kv), RoPE applied to k.
struct SuffixCache {
  int batch = 0, len = 0, depth = 0;
  std::vector<std::vector<float>> k, v;
};

class Continuations {
 public:
  explicit Continuations(const Model& model);
  ~Continuations();

  // Forgets the prefix.
  void reset();
  // Extends the prefix by `ids` through every layer (positions n_past() ..).
  void append(const std::vector<int32_t>& ids);
  int n_past() const { return n_past_; }
  const Model& model() const { return model_; }
  const std::vector<int32_t>& prefix() const { return prefix_; }
  // Logits (n_vocab) of the token after the prefix (the last append's last row); empty when
  // the prefix is empty.
  const std::vector<float>& next_logits() const { return next_logits_; }

  struct Batch {
    const SuffixCache* parent = nullptr;  // null: every sequence continues the prefix alone
    const int32_t* parent_row = nullptr;  // (batch) the parent sequence each one extends
    const int32_t* ids = nullptr;         // (batch, t) new tokens, row-major
    int batch = 0, t = 1;
    const RowSpec* spec = nullptr;  // the row of each sequence's last new token to return
    float* rows = nullptr;          // (batch, row_width(spec))
    float* logits = nullptr;        // (batch, n_vocab) after the last new token: all layers
    SuffixCache* keep = nullptr;    // the sequences' keys and values (parent's + new), for
                                    // every layer run
  };
  // Runs a batch; the blocks run are those the outputs need (every layer with logits).
  void run(const Batch& b);

  // Token forwards through one block done so far (rows × blocks), for throughput figures.
  double row_blocks() const { return row_blocks_; }

 private:
  void run_chunk(const Batch& b, int b0, int nb, int blocks, bool prepass_row,
                 SuffixCache* keep);

  const Model& model_;
  std::unique_ptr<Backend> be_;
  int n_past_ = 0;
  std::vector<int32_t> prefix_;
  std::vector<std::vector<float>> pk_, pv_;  // per layer (n_past, d_kv)
  std::vector<float> next_logits_;
  LayerScratch ws_;
  double row_blocks_ = 0.0;
};

}  // namespace cascade
