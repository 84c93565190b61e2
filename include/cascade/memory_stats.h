// This process's memory, as the kernel accounts it: for benchmarks and the end-of-run report.
// Ranks that share the weight cache (weight_cache.h) show it as file-backed pages (RssFile),
// and Pss divides each shared page among the processes that map it, so the sum of Pss over
// the ranks of a node is what the node really holds.
#pragma once

#include <cstdint>
#include <string>

namespace cascade {

struct MemoryStats {
  uint64_t rss_kb = 0;        // VmRSS: resident set
  uint64_t rss_anon_kb = 0;   // RssAnon: private (heap, stacks, anonymous mappings)
  uint64_t rss_file_kb = 0;   // RssFile: file-backed mappings (the weight cache, libraries)
  uint64_t rss_shmem_kb = 0;  // RssShmem: shared memory (e.g. MPI's shared-memory transport)
  uint64_t pss_kb = 0;        // Pss (smaps_rollup): RSS with shared pages split among sharers
  uint64_t hwm_kb = 0;        // VmHWM: peak RSS
};

// Reads /proc/self/status and /proc/self/smaps_rollup. A field (or file) that the kernel does
// not provide reads as 0, not as an error.
MemoryStats read_memory_stats();

// The same from the texts of a status and an smaps_rollup file (either may be empty).
MemoryStats parse_memory_stats(const std::string& status, const std::string& smaps_rollup);

}  // namespace cascade
