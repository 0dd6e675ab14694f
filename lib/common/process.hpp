// jobring — process identity and proof of death.
//
// A lease owner is a PID plus the process's start time (field 22 of
// /proc/PID/stat, clock ticks after boot): a PID that was reused by a new
// process has another start time, so it never counts as the old owner alive.
// Start times are on the host's CLOCK_BOOTTIME: /proc shows them shifted by
// the reader's time namespace offset, which start_ticks_of() takes away.
#pragma once

#include <atomic>
#include <cstdint>

namespace jobring::detail {

inline constexpr std::uint32_t kPidLimit = 1u << 22;  // PID_MAX_LIMIT on 64-bit Linux

struct ProcessIdentity {
  std::uint32_t pid;
  std::uint64_t start_ticks;  // 0 if /proc could not tell
};

// This process; cached, and re-read in a child after fork().
[[nodiscard]] ProcessIdentity self() noexcept;

// self()'s cached PID: 0 until self() first runs, and again in a child
// after fork() until it runs there.
extern std::atomic<std::uint32_t> g_self_pid;
// This process's PID, as self().pid: the cached value inline (every claim
// records it), self() only the first time in a process.
[[nodiscard]] inline std::uint32_t self_pid() noexcept {
  // Relaxed: the PID alone is read here, not the start time that self()'s
  // acquire pairs with.
  if (const std::uint32_t pid = g_self_pid.load(std::memory_order_relaxed); pid != 0) [[likely]]
    return pid;
  return self().pid;
}

// Start time of `pid` from /proc/PID/stat; 0 if it cannot be read.
[[nodiscard]] std::uint64_t start_ticks_of(std::uint32_t pid) noexcept;

// True only when `pid` is certainly not the process that wrote it: no such
// process; a process whose whole thread group has exited (a zombie not yet
// reaped — judged with a pidfd, so a process whose main thread exited while
// other threads run is alive); or, when start_bits != 0, a process whose
// start time masked with start_mask differs (the PID was reused). A stopped
// (SIGSTOP) process is alive. PID 0 and PIDs at or above 2^22 are not
// processes: dead.
[[nodiscard]] bool proven_dead(std::uint32_t pid, std::uint64_t start_bits = 0,
                               std::uint64_t start_mask = ~std::uint64_t{0}) noexcept;

}  // namespace jobring::detail
