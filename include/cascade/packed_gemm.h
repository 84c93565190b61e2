// Packed GEMM: y(n, out) = x(n, in) · Wᵀ with W reordered once into the blocked layout that
// oneDNN's matmul reads fastest, instead of a BLAS that re-packs all of W on every call. A
// CompNode multiplies only N/α rows by each matrix, so the per-call packing BLAS does costs it
// more per row the more the prompt is sharded (BENCHMARKS.md); packed once, the cost per row
// stays flat down to one row (decode).
//
// fp32 is the default and the exactness reference. bf16 (CPUs with AVX512_BF16 or AMX): W and
// x rounded to bf16 going into the GEMM, accumulation and y in fp32; everything else (norms,
// attention, merging) stays fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace cascade {

enum class Precision { f32, bf16 };
// "f32" or "bf16"; throws std::invalid_argument naming the choices otherwise.
Precision parse_precision(const std::string& s);
// Inline: the CUDA backend plugin (backend.cpp) uses it without linking the CPU code.
inline const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }
// Can this CPU run bf16 GEMMs natively (AVX512_BF16 or AMX, as oneDNN detects them)?
bool cpu_has_bf16();
// The ISA oneDNN dispatches to here, e.g. "avx512_core_amx".
std::string packed_gemm_isa();

class PackedGemm {
 public:
  // Throws std::runtime_error for bf16 on a CPU without AVX512_BF16 or AMX.
  explicit PackedGemm(Precision p);
  ~PackedGemm();
  PackedGemm(const PackedGemm&) = delete;
  PackedGemm& operator=(const PackedGemm&) = delete;

  Precision precision() const { return precision_; }
  // Bytes of W(out, in) packed (blocking may pad).
  size_t packed_bytes(int in, int out) const;
  // What the packed layout of W(out, in) depends on: library version, implementation (with
  // its ISA), data type, dims, blocking. Equal descriptors mean interchangeable packed bytes.
  std::string layout_descriptor(int in, int out) const;
  // dst (packed_bytes(in, out)) = W(out, in) row-major fp32, packed.
  void pack(const float* w, int in, int out, void* dst) const;
  // y(n, out) = x(n, in) · Wᵀ, plus y when accumulate; `packed` from pack(). Any n ≥ 1.
  void matmul(const void* packed, const float* x, float* y, int n, int in, int out,
              bool accumulate);

 private:
  struct Impl;
  Precision precision_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cascade
