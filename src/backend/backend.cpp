#include "cascade/backend.h"

#include <stdexcept>

namespace cascade {

#ifdef CASCADE_HAVE_CUDA
// Defined in src/backend/cuda/cuda_backend.cu.
std::unique_ptr<Backend> cuda_backend_create(int device);
int cuda_device_count();
#endif

std::unique_ptr<Backend> make_cuda_backend([[maybe_unused]] int device) {
#ifdef CASCADE_HAVE_CUDA
  if (cuda_device_count() <= device)
    throw std::runtime_error("CUDA backend: no CUDA device " + std::to_string(device) +
                             " (this machine has " + std::to_string(cuda_device_count()) + ")");
  return cuda_backend_create(device);
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
