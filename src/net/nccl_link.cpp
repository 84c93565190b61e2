#include "cascade/nccl_link.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "../backend/cuda_plugin.h"

namespace cascade {

bool nccl_built() {
#ifdef CASCADE_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<DeviceLink> make_nccl_link(Backend& be, MPI_Comm comm, int first, int n, double timeout_s) {
  if (!nccl_built())
    throw std::runtime_error("this build has no NCCL (it was not found when configuring; use --transport mpi)");
  if (be.native_stream() == nullptr)
    throw std::runtime_error("the NCCL transport needs the cuda backend (--backend cuda), not " + be.name());
  using IdFn = void (*)(char*);
  using CreateFn = DeviceLink* (*)(const char*, int, int, int, void*);
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  char id[128] = {0};
  if (rank == first) {
    reinterpret_cast<IdFn>(cuda_plugin_symbol("cascade_nccl_unique_id"))(id);
    for (int r = first + 1; r < first + n; ++r) MPI_Send(id, sizeof id, MPI_BYTE, r, 0, comm);
  } else {  // polled, so a first party that never comes is a timeout, not a hang
    MPI_Request req;
    MPI_Irecv(id, sizeof id, MPI_BYTE, first, 0, comm, &req);
    const auto t0 = std::chrono::steady_clock::now();
    for (int done = 0;;) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
        MPI_Cancel(&req);
        MPI_Request_free(&req);
        throw std::runtime_error("timed out after " + std::to_string((int)timeout_s) + " s waiting for NCCL's id from rank " +
                                 std::to_string(first));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  DeviceLink* link = reinterpret_cast<CreateFn>(cuda_plugin_symbol("cascade_nccl_link_create"))(
      id, n, rank - first, first, be.native_stream());
  return std::unique_ptr<DeviceLink>(link);
}

}  // namespace cascade
