// The NCCL device link (device_link.h) of a run's parties.
#pragma once
#include <mpi.h>

#include <memory>

#include "cascade/backend.h"
#include "cascade/device_link.h"

namespace cascade {

// Joins the NCCL communicator of world ranks first .. first + n − 1 (the parties), each on its
// backend's GPU (`be` must be a CUDA backend and outlive the link). Collective over those
// ranks: the lowest makes NCCL's unique id and sends it to the others over `comm` (a
// communicator of its own), which wait for it at most `timeout_s`. Throws std::runtime_error
// with the reason: no NCCL in this build, a CPU backend, NCCL failing (two ranks on one GPU).
std::unique_ptr<DeviceLink> make_nccl_link(Backend& be, MPI_Comm comm, int first, int n, double timeout_s);

bool nccl_built();  // this build has the NCCL link (CUDA plugin built with NCCL)

}  // namespace cascade
