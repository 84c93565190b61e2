// Packed GEMM on oneDNN's matmul (packed_gemm.h). W(out, in) row-major is, to oneDNN, the
// weights matrix B(in, out) in format `ba`; oneDNN picks the packed format (`any`) for a
// reference row count once, and every row count then uses that one packed copy.
#include "cascade/packed_gemm.h"


#include <cstring>
#include <dnnl.hpp>
#include <sstream>
#include <stdexcept>

#include "kernels/bf16.h"

namespace cascade {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The row count the packed layout is chosen for: a prefill shard's size. oneDNN's blocked
// weight formats do not depend on the row count, so smaller and larger n reuse it.
constexpr int kLayoutRows = 128;

dt weight_type(Precision p) { return p == Precision::bf16 ? dt::bf16 : dt::f32; }

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "other";
  }
}

}  // namespace

Precision parse_precision(const std::string& s) {
  if (s == "f32" || s == "fp32") return Precision::f32;
  if (s == "bf16") return Precision::bf16;
  throw std::invalid_argument("unknown precision '" + s + "' (expected f32 or bf16)");
}


bool cpu_has_bf16() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;  // ISAs are bit masks; AMX includes AVX512_BF16
}

std::string packed_gemm_isa() { return isa_name(dnnl::get_effective_cpu_isa()); }

struct PackedGemm::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  // One primitive per (n, in, out, accumulate): creating one costs far more than a small GEMM.
  struct Primitive {
    dnnl::matmul matmul;
    dnnl::memory::desc w_md;  // the packed layout
  };
  std::map<std::tuple<int, int, int, bool>, Primitive> primitives;
  std::vector<uint16_t> x_bf16;  // (n, in) scratch for bf16 inputs

  // The packed layout of W(out, in), as oneDNN chooses it for kLayoutRows rows.
  dnnl::matmul::primitive_desc layout_pd(Precision p, int in, int out) const {
    const dnnl::memory::desc src({kLayoutRows, in}, weight_type(p), tag::ab);
    const dnnl::memory::desc w({in, out}, weight_type(p), tag::any);
    const dnnl::memory::desc dst({kLayoutRows, out}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, dst), engine);
  }
};

PackedGemm::PackedGemm(Precision p) : precision_(p), impl_(std::make_unique<Impl>()) {
  if (p == Precision::bf16 && !cpu_has_bf16())
    throw std::runtime_error("--precision bf16 needs a CPU with AVX512_BF16 or AMX; oneDNN finds " +
                             packed_gemm_isa() + " here (use --precision f32)");
}

PackedGemm::~PackedGemm() = default;

size_t PackedGemm::packed_bytes(int in, int out) const {
  return impl_->layout_pd(precision_, in, out).weights_desc().get_size();
}

std::string PackedGemm::layout_descriptor(int in, int out) const {
  const auto pd = impl_->layout_pd(precision_, in, out);
  const dnnl_memory_desc_t& md = pd.weights_desc().data;
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream s;
  s << "onednn " << v->major << '.' << v->minor << '.' << v->patch << ' ' << pd.impl_info_str()
    << " isa " << packed_gemm_isa() << " dt " << md.data_type << " dims " << md.dims[0] << 'x'
    << md.dims[1] << " padded " << md.padded_dims[0] << 'x' << md.padded_dims[1] << " fmt "
    << md.format_kind;
  if (md.format_kind == dnnl_blocked) {
    const auto& b = md.format_desc.blocking;
    s << " strides " << b.strides[0] << ',' << b.strides[1] << " blocks";
    for (int i = 0; i < b.inner_nblks; ++i) s << ' ' << b.inner_blks[i] << '@' << b.inner_idxs[i];
  }
  s << " extra " << md.extra.flags;
  return s.str();
}

void PackedGemm::pack(const float* w, int in, int out, void* dst) const {
  const auto pd = impl_->layout_pd(precision_, in, out);
  dnnl::memory plain({{in, out}, dt::f32, tag::ba}, impl_->engine, const_cast<float*>(w));
  dnnl::memory packed(pd.weights_desc(), impl_->engine, dst);
  dnnl::reorder(plain, packed).execute(impl_->stream, plain, packed);
  impl_->stream.wait();
}

void PackedGemm::matmul(const void* packed, const float* x, float* y, int n, int in, int out,
                        bool accumulate) {
  if (n <= 0) return;
  Impl& m = *impl_;
  const dt wt = weight_type(precision_);
  const dnnl::memory::desc src_md({n, in}, wt, tag::ab);
  const dnnl::memory::desc dst_md({n, out}, dt::f32, tag::ab);
  const auto key = std::make_tuple(n, in, out, accumulate);
  auto it = m.primitives.find(key);
  if (it == m.primitives.end()) {
    dnnl::primitive_attr attr;
    if (accumulate) {  // y += x·Wᵀ: the residual add, fused
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    const auto w_md = m.layout_pd(precision_, in, out).weights_desc();
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_md, dst_md), attr, m.engine);
    it = m.primitives.emplace(key, Impl::Primitive{dnnl::matmul(pd), w_md}).first;
  }
  const void* src = x;
  if (precision_ == Precision::bf16) {  // x (n, in) rounded to bf16
    const int64_t count = (int64_t)n * in;
    m.x_bf16.resize((size_t)count);
    uint16_t* xb = m.x_bf16.data();
#pragma omp parallel for simd if (count > 65536)
    for (int64_t i = 0; i < count; ++i) xb[i] = kernels::f32_to_bf16(x[i]);
    src = xb;
  }
  // oneDNN only reads SRC and WEIGHTS; its memory objects take non-const handles.
  dnnl::memory src_mem(src_md, m.engine, const_cast<void*>(src));
  dnnl::memory w_mem(it->second.w_md, m.engine, const_cast<void*>(packed));
  dnnl::memory dst_mem(dst_md, m.engine, y);
  it->second.matmul.execute(m.stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                {DNNL_ARG_DST, dst_mem}});
  m.stream.wait();
}

}  // namespace cascade
