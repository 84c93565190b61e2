#include "cascade/backend.h"
#include "cuda_plugin.h"

#include <stdexcept>
#include <string>
#include <vector>

#ifdef CASCADE_HAVE_CUDA
#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#endif

namespace cascade {

#ifdef CASCADE_HAVE_CUDA
namespace {

// The CUDA backend plugin (src/backend/cuda/cuda_backend.cu, built as libcascade_cuda.so),
// loaded once, on first use, from the program's folder or else the build folder.
struct CudaPlugin {
  int (*device_count)() = nullptr;
  Backend* (*create)(int device) = nullptr;
  void* handle = nullptr;
  std::string error;  // why it could not be loaded
};

const CudaPlugin& cuda_plugin() {
  static const CudaPlugin plugin = [] {
    CudaPlugin p;
    std::vector<std::string> dirs;
    char exe[4096];
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) dirs.push_back(std::filesystem::path(std::string(exe, len)).parent_path());
    dirs.push_back(CASCADE_CUDA_PLUGIN_DIR);
    void* handle = nullptr;
    for (const std::string& d : dirs) {
      const std::string path = d + "/libcascade_cuda.so";
      if (!std::filesystem::exists(path)) continue;
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        p.error = "cannot load " + path + ": " + dlerror();
        return p;
      }
      break;
    }
    if (!handle) {
      p.error = "libcascade_cuda.so not found beside the program nor in " + std::string(CASCADE_CUDA_PLUGIN_DIR);
      return p;
    }
    p.handle = handle;
    p.device_count = reinterpret_cast<int (*)()>(dlsym(handle, "cascade_cuda_device_count"));
    p.create = reinterpret_cast<Backend* (*)(int)>(dlsym(handle, "cascade_cuda_backend_create"));
    if (!p.device_count || !p.create) p.error = "libcascade_cuda.so lacks its entry points";
    return p;
  }();
  return plugin;
}

}  // namespace
#endif

void* cuda_plugin_symbol([[maybe_unused]] const char* name) {
#ifdef CASCADE_HAVE_CUDA
  const CudaPlugin& p = cuda_plugin();
  if (!p.error.empty()) throw std::runtime_error("CUDA plugin: " + p.error);
  void* sym = dlsym(p.handle, name);
  if (!sym) throw std::runtime_error(std::string("CUDA plugin: libcascade_cuda.so lacks ") + name);
  return sym;
#else
  throw std::runtime_error("this build has no CUDA (configure with -DCASCADE_CUDA=ON)");
#endif
}

int cuda_device_count() {
#ifdef CASCADE_HAVE_CUDA
  const CudaPlugin& p = cuda_plugin();
  return p.error.empty() ? p.device_count() : 0;
#else
  return 0;
#endif
}

std::unique_ptr<Backend> make_cuda_backend([[maybe_unused]] int device) {
#ifdef CASCADE_HAVE_CUDA
  const CudaPlugin& p = cuda_plugin();
  if (!p.error.empty()) throw std::runtime_error("CUDA backend: " + p.error);
  if (cuda_device_count() <= device)
    throw std::runtime_error("CUDA backend: no CUDA device " + std::to_string(device) +
                             " (this machine has " + std::to_string(cuda_device_count()) + ")");
  return std::unique_ptr<Backend>(p.create(device));
#else
  throw std::runtime_error("CUDA backend: this build has no CUDA (configure with -DCASCADE_CUDA=ON)");
#endif
}

bool cuda_available() {
#ifdef CASCADE_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend(0);
  throw std::invalid_argument("unknown backend '" + name + "' (expected cpu or cuda)");
}

}  // namespace cascade
