// Small helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <exception>
#include <functional>
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

}  // namespace cascade_test
