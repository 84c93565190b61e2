// A Backend whose ops are the CUDA kernels (kernels/cuda/*.cu) running on the CUDA emulator, for
// the CPU tests: "cuda-emu". Its memory is host memory the host cannot touch (mapped PROT_NONE
// outside the backend's own calls, host_memory() is false), so code that dereferences a device
// pointer crashes; matmul_wt, cuBLAS's job on the device, is the CPU backend's.
#pragma once
#include <memory>

#include "cascade/backend.h"

namespace cascade_test {

std::unique_ptr<cascade::Backend> make_emulated_cuda_backend();
// The emulator's thread order (ascending by default) and its count of launches, for tests that
// do not include the emulator's device-code macros.
void set_emulator_descending(bool descending);
long emulator_launches();

}  // namespace cascade_test
