#pragma once
#include <mpi.h>

#include "cascade/transport.h"

namespace cascade {

// MPI transport over `comm` (a sub-communicator lets one mpirun host several runs).
std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm);

}  // namespace cascade
