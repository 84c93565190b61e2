// Traces on disk: one HDF5 file per run, in the layout documented in trace.h. Written by rank 0
// alone (the parties send it their recordings), so no rank can hang a parallel-HDF5 collective.
#pragma once

#include <stdexcept>
#include <string>

#include "cascade/trace.h"

namespace cascade {

class TraceFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Creates `path` (refusing an existing file unless `overwrite`) and closes it again: called
// before any compute starts, so that an unwritable path fails early. Throws TraceFileError.
void check_trace_path(const std::string& path, bool overwrite);
// Writes the whole trace (replacing what check_trace_path created). Throws TraceFileError.
void write_trace(const std::string& path, const Trace& trace);
// Reads and validates a trace file (version, every dataset's presence and shape, indices in
// range). Throws TraceFileError naming the file and what is wrong.
Trace read_trace(const std::string& path);
// What needs every rank's recording (simulate, the attacks on views) calls this: it throws
// TraceFileError, saying why the run ended, for an incomplete trace that misses some.
void require_all_ranks(const Trace& trace, const std::string& path);

}  // namespace cascade
