// jobring — the one clock: CLOCK_MONOTONIC in whole milliseconds.
//
// All processes on a host share CLOCK_MONOTONIC (within one time namespace),
// so a deadline written by one process means the same instant to every other.
// std::chrono::steady_clock is CLOCK_MONOTONIC on Linux with libstdc++, so
// deadlines can be handed to users as steady_clock time points.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>

namespace jobring::detail {

[[nodiscard]] inline std::uint64_t now_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000u;
}

[[nodiscard]] inline std::chrono::steady_clock::time_point to_time_point(std::uint64_t ms) noexcept {
  return std::chrono::steady_clock::time_point(std::chrono::milliseconds(static_cast<std::int64_t>(ms)));
}

}  // namespace jobring::detail
