// code_thrown(): the error code a call throws, for tests of the throwing
// forms of the API (gtest: a foreign exception type fails the test).
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <system_error>

#include "jobring/error.hpp"

namespace jobring::test {

// Runs `f`; returns the error code of the jobring::error it throws (empty if
// it throws nothing), and its message through `what`. Any other exception
// type fails the test.
template <class F>
std::error_code code_thrown(F&& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const jobring::error& e) {
    if (what != nullptr) *what = e.what();
    return e.code();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected jobring::error, got another exception: " << e.what();
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

}  // namespace jobring::test
