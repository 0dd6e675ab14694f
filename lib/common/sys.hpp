// jobring — small wrappers over the C library that every part of lib/ uses.
#pragma once

#include <string>

namespace jobring::detail {

// The text of errno value `err` (strerror_r: thread-safe, unlike strerror,
// which may return a buffer that another thread's call overwrites).
[[nodiscard]] std::string errno_text(int err);

// Reads a small file (a /proc file: one read returns it whole) into buf,
// NUL-terminated; returns its length, or -1 if it cannot be read.
// Async-signal-safe (open, read, close), for a child of fork.
[[nodiscard]] long read_small_file(const char* path, char* buf, unsigned long size) noexcept;

}  // namespace jobring::detail
