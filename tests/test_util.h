// Small helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <stdlib.h>

#include <exception>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>

namespace cascade_test {

// A path in the test temp folder, unique to this process.
inline std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/cascade_test_" + std::to_string(getpid()) + "_" + name;
}

// The message of what f throws ("" when it does not throw).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A fresh directory in the test temp folder, removed with everything in it at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "cascade_test_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace cascade_test
