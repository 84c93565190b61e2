// A device link (device_link.h) for the CPU tests, "nccl-emu": payloads move between two ranks'
// backend buffers through host copies over MPI point-to-point, on a communicator of its own,
// matched per pair in posting order as NCCL's sends and receives are. It is ready only once the
// bytes have landed (the emulated backend computes synchronously), so the transport's link path
// (headers on MPI, payloads on the link, groups, part-order checks, timeouts) runs on the CPU.
#pragma once
#include <mpi.h>

#include <memory>

#include "cascade/backend.h"
#include "cascade/device_link.h"

namespace cascade_test {

// Over `comm`, a communicator of its own (MPI_Comm_dup'ed by the caller, which frees it after the
// link); covers every rank but 0 (the client). `be` must outlive the link.
std::unique_ptr<cascade::DeviceLink> make_host_link(cascade::Backend& be, MPI_Comm comm);
// Bytes this process's host links have sent, over their lifetimes (tests count them).
unsigned long long host_link_bytes_sent();

}  // namespace cascade_test
