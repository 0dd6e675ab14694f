// jobring — the one clock: the host's CLOCK_MONOTONIC in whole milliseconds.
//
// Every time written into a segment (a visible-at, a lease deadline, a key's
// forget-at) is on this clock, so a deadline written by one process means
// the same instant to every other. A process in a time namespace
// (unshare --time, containers) sees CLOCK_MONOTONIC shifted by its
// namespace's offset; now_ms() takes the offset (/proc/self/timens_offsets)
// away again, so that processes in different time namespaces agree.
// std::chrono::steady_clock is the process's own CLOCK_MONOTONIC on Linux with
// libstdc++: to_time_point() adds the offset back for deadlines handed to
// users.
#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace jobring::detail {

// The offsets of this process's time namespace from the initial one, read
// from /proc/self/timens_offsets (0 where there is none) when the library is
// loaded (a constructor that runs before the program's static initialisers),
// and again in a child after fork(): a child of a process that called
// unshare(CLONE_NEWTIME) is in the new namespace.
struct TimeOffsets {
  std::int64_t monotonic_ms = 0;
  std::int64_t boottime_ticks = 0;  // in clock ticks (sysconf(_SC_CLK_TCK)), as /proc/PID/stat counts
};
[[nodiscard]] TimeOffsets time_offsets() noexcept;

// The monotonic offset, for now_ms(): written only at load and in a forked
// child (one thread then), read relaxed everywhere.
extern std::atomic<std::int64_t> g_monotonic_offset_ms;

[[nodiscard]] inline std::int64_t monotonic_offset_ms() noexcept {
  return g_monotonic_offset_ms.load(std::memory_order_relaxed);
}

// The host's CLOCK_MONOTONIC in ms, truncated.
[[nodiscard]] inline std::uint64_t now_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto own =
      static_cast<std::int64_t>(ts.tv_sec) * 1000 + static_cast<std::int64_t>(ts.tv_nsec) / 1'000'000;
  return static_cast<std::uint64_t>(own - monotonic_offset_ms());
}

// The host's CLOCK_MONOTONIC_COARSE in ms, on now_ms()'s scale: the time at
// the kernel's last clock tick, never later than now_ms() and normally at
// most one tick (1-10 ms, CONFIG_HZ) behind it; it may fall further behind
// when the tick itself is late (a VM whose timekeeping vCPU the host did
// not run). A quarter of now_ms()'s cost (5 ns against 20 on tsc, bench
// BM_Clock). So it serves only times that are advice, never a deadline or a
// visible-at: a job's enqueue time (its age in stats and peek).
[[nodiscard]] inline std::uint64_t now_coarse_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  const auto own =
      static_cast<std::int64_t>(ts.tv_sec) * 1000 + static_cast<std::int64_t>(ts.tv_nsec) / 1'000'000;
  return static_cast<std::uint64_t>(own - monotonic_offset_ms());
}

// A time on the host's clock (now_ms) as this process's steady_clock sees it.
[[nodiscard]] inline std::chrono::steady_clock::time_point to_time_point(std::uint64_t ms) noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::milliseconds(static_cast<std::int64_t>(ms) + monotonic_offset_ms()));
}

}  // namespace jobring::detail
