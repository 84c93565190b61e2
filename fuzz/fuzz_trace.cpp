// libFuzzer target: the HDF5 trace reader (what `cascade trace`, `simulate` and `attack` read from
// files made elsewhere). Exceptions are refusals (fine); a crash, a sanitizer report or a hang
// is a finding.
#include <cstdint>
#include <cstdlib>
#include <exception>

#include "cascade/trace_io.h"
#include "fuzz_util.h"

// read_trace reads in a child process first; one that hangs is a refusal after 5 s here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CASCADE_TRACE_READ_TIMEOUT", "5", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cascade_fuzz::MemFile file(data, size);
  try {
    (void)cascade::read_trace(file.path());
  } catch (const std::exception&) {
  }
  return 0;
}
