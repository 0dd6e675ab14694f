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

// The same clock read from its last tick: CLOCK_MONOTONIC_COARSE (a few ns;
// CLOCK_MONOTONIC costs ~35 ns on a kvm-clock VM, a third of a claim). It is
// never ahead of now_ms() and lags it by at most one tick (clock_getres:
// 1..10 ms by HZ, plus any delay of the tick itself), so a time test with it
// can only err late: a lease judged with it is never taken over before its
// deadline, a delayed job never shown before its time.
[[nodiscard]] inline std::uint64_t now_coarse_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000u;
}

// How far now_coarse_ms() can lag now_ms(), in whole ms: the tick rounded up,
// plus 1 for the truncation of both to ms. Added to a lease deadline computed
// from the coarse clock, so that no lease is shorter than asked (it may be up
// to this much longer).
[[nodiscard]] inline std::uint64_t coarse_lag_ms() noexcept {
  static const std::uint64_t lag = [] {
    timespec res{};
    if (::clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0 || res.tv_sec != 0) return std::uint64_t{1001};
    return static_cast<std::uint64_t>(res.tv_nsec + 999'999) / 1'000'000u + 1;
  }();
  return lag;
}

[[nodiscard]] inline std::chrono::steady_clock::time_point to_time_point(std::uint64_t ms) noexcept {
  return std::chrono::steady_clock::time_point(std::chrono::milliseconds(static_cast<std::int64_t>(ms)));
}

}  // namespace jobring::detail
