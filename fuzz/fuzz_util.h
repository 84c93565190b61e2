// Shared by the fuzz targets: the input as a file (the GGUF and trace readers open paths).
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cascade/model.h"
#include "cascade/schedule.h"

namespace cascade_fuzz {

// The small real schedule the wire seeds carry and fuzz_wire audits against: α = 2, β = 2 on
// synthetic:tiny, 12 prompt positions of 15.
inline cascade::Schedule seed_schedule() {
  cascade::ScheduleParams p;
  p.alpha = 2;
  p.beta = 2;
  p.c = 2;
  p.n_prompt = 12;
  p.n_positions = 15;
  p.shape = cascade::model_config(cascade::ModelSpec{"synthetic:tiny", 0}).shape();
  return cascade::make_schedule(p);
}

// A file holding data[0, size) in /dev/shm (memory; a regular file, which HDF5 needs: it does
// not open /proc/self/fd paths of a memfd), removed again at the end.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    char name[] = "/dev/shm/cascade-fuzz-XXXXXX";
    fd_ = mkstemp(name);
    if (fd_ < 0) std::abort();
    path_ = name;
    for (size_t off = 0; off < size;) {
      const ssize_t n = write(fd_, data + off, size - off);
      if (n <= 0) std::abort();
      off += (size_t)n;
    }
  }
  ~MemFile() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace cascade_fuzz
