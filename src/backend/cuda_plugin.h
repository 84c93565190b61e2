// The CUDA plugin (libcascade_cuda.so: the CUDA backend and the NCCL link), loaded on first use.
#pragma once

namespace cascade {

// The address of one of the plugin's entry points. Throws std::runtime_error when this build
// has no CUDA, the plugin cannot be loaded, or it lacks the symbol.
void* cuda_plugin_symbol(const char* name);

}  // namespace cascade
