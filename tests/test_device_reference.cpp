// Device residency: the reference (embedding, every layer, KV cache, LM head) runs unchanged on
// a device backend. On "cuda-emu" (tests/emu) the CUDA kernels run on the emulator and the
// device memory is unreadable from the host outside the backend's own calls, so a layer that
// touched a device pointer from the host would crash here; the results must agree with the CPU
// backend's reference for all three families (prefill, then decode steps on the KV cache).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cascade/backend.h"
#include "cascade/device_model.h"
#include "cascade/model.h"
#include "cascade/reference.h"
#include "cascade/synthetic.h"
#include "emulated_backend.h"

namespace {

using namespace cascade;

// max over rows of |a − b|∞ / |b|∞
double max_row_rel(const std::vector<float>& a, const std::vector<float>& b, size_t row) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t r0 = 0; r0 + row <= b.size(); r0 += row) {
    double diff = 0.0, ref = 0.0;
    for (size_t i = r0; i < r0 + row; ++i) {
      diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
      ref = std::max(ref, (double)std::fabs(b[i]));
    }
    worst = std::max(worst, diff / ref);
  }
  return worst;
}

TEST(DeviceReference, EmulatedCudaMatchesCpuForEveryFamily) {
  for (const char* name : {"synthetic:tiny", "synthetic:gpt2-tiny", "synthetic:bert-tiny"}) {
    SCOPED_TRACE(name);
    const Model m = Model::load(ModelSpec{name}, WeightSource::memory);
    auto dev = cascade_test::make_emulated_cuda_backend();
    Reference on_dev(m, dev.get()), on_cpu(m);
    const std::vector<int32_t> ids = synthetic_prompt(21, m.cfg.n_vocab);
    if (m.cfg.encoder()) {
      EXPECT_LE(max_row_rel(on_dev.encode(ids), on_cpu.encode(ids), m.cfg.d_model), 1e-5);
      continue;
    }
    EXPECT_LE(max_row_rel(on_dev.forward(ids, true), on_cpu.forward(ids, true), m.cfg.n_vocab), 1e-5);
    for (int32_t next : {3, 7, 1}) {  // decode on the device's KV cache
      EXPECT_LE(max_row_rel(on_dev.forward({next}), on_cpu.forward({next}), m.cfg.n_vocab), 1e-5)
          << "decode at " << on_cpu.n_past();
    }
  }
}

TEST(DeviceReference, WeightsAreUploadedOnceOnlyForDeviceBackends) {
  const Model m = Model::load(ModelSpec{"synthetic:tiny"}, WeightSource::memory);
  auto cpu = make_cpu_backend();
  const DeviceModel on_host(*cpu, m);
  EXPECT_EQ(on_host.bytes(), 0u);
  EXPECT_EQ(on_host.model().layers[0].wqkv, m.layers[0].wqkv);  // the model itself
  auto dev = cascade_test::make_emulated_cuda_backend();
  const DeviceModel on_dev(*dev, m);
  const ModelConfig& c = m.cfg;
  const size_t per_layer = 2 * c.d_model + (size_t)(c.d_q() + 2 * c.d_kv()) * c.d_model +
                           (size_t)c.d_model * c.d_q() + 3 * (size_t)c.d_ff * c.d_model;
  const size_t floats = 2 * (size_t)c.n_vocab * c.d_model * (m.output ? 1 : 0) +
                        (size_t)c.n_vocab * c.d_model * (m.output ? 0 : 1) + c.n_layer * per_layer +
                        c.d_model;
  EXPECT_EQ(on_dev.bytes(), floats * sizeof(float));
  EXPECT_NE(on_dev.model().layers[0].wqkv, m.layers[0].wqkv);
}

}  // namespace
