// A one-line progress bar on stderr for long attacks and sweeps — only when stderr is a
// terminal, so logs and CI output stay clean.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace cascade::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label) : label_(std::move(label)), tty_(isatty(2)) {}
  ~ProgressBar() { finish(); }
  void update(long done, long total) {
    if (!tty_ || total <= 0) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const int width = 30, fill = (int)(width * done / total);
    std::fprintf(stderr, "\r%s [%s%s] %ld/%ld %.1fs", label_.c_str(), std::string(fill, '#').c_str(),
                 std::string(width - fill, ' ').c_str(), done, total, s);
    std::fflush(stderr);
    shown_ = true;
  }
  void finish() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }

 private:
  std::string label_;
  bool tty_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace cascade::cli
