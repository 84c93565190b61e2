#include "cascade/memory_stats.h"

#include <fstream>
#include <sstream>

namespace cascade {
namespace {

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The number after "<key>:" at the start of a line (values are in kB), or 0.
uint64_t field_kb(const std::string& text, const std::string& key) {
  const std::string pat = key + ":";
  for (size_t pos = 0; pos < text.size();) {
    const size_t eol = text.find('\n', pos);
    const size_t end = eol == std::string::npos ? text.size() : eol;
    if (text.compare(pos, pat.size(), pat) == 0) {
      size_t i = pos + pat.size();
      while (i < end && (text[i] == ' ' || text[i] == '\t')) ++i;
      uint64_t v = 0;
      for (; i < end && text[i] >= '0' && text[i] <= '9'; ++i)
        v = v * 10 + static_cast<uint64_t>(text[i] - '0');
      return v;
    }
    pos = end + 1;
  }
  return 0;
}

}  // namespace

MemoryStats parse_memory_stats(const std::string& status, const std::string& smaps_rollup) {
  MemoryStats m;
  m.rss_kb = field_kb(status, "VmRSS");
  m.rss_anon_kb = field_kb(status, "RssAnon");
  m.rss_file_kb = field_kb(status, "RssFile");
  m.rss_shmem_kb = field_kb(status, "RssShmem");
  m.hwm_kb = field_kb(status, "VmHWM");
  m.pss_kb = field_kb(smaps_rollup, "Pss");
  return m;
}

MemoryStats read_memory_stats() {
  return parse_memory_stats(read_text("/proc/self/status"), read_text("/proc/self/smaps_rollup"));
}

}  // namespace cascade
