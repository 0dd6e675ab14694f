// jobring — small wrappers over the C library that every part of lib/ uses.
#pragma once

#include <string>

namespace jobring::detail {

// The text of errno value `err` (strerror_r: thread-safe, unlike strerror,
// which may return a buffer that another thread's call overwrites).
[[nodiscard]] std::string errno_text(int err);

}  // namespace jobring::detail
