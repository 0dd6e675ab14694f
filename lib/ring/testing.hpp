// Knobs for the library's own tests. Not part of the API: nothing outside
// tests/ calls these, and they may change at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace jobring::detail {

// Sets the age bound of the empty-ring memo (claim.cpp, EmptyMemo;
// 2 ms by default) for every handle in this process; returns the old one.
// Tests set it to minutes so that what the memo's due time and the wait
// path's re-check do is not hidden by a memo that lapses in 2 ms.
std::uint64_t set_empty_memo_ms_for_testing(std::uint64_t ms) noexcept;

// Makes Queue::move_dead in this process raise `signal` (SIGKILL, or
// SIGSTOP for a mover that stalls) on itself at a point of its crash
// analysis (move.cpp), for tests that fork a mover: 1 = the target slot
// written (WRITING, key claimed), before its commit; 3 = committed in the
// target, before K3 (the key still CLAIMED); 2 = after K3, before the
// source's T11. 0 = never.
void set_move_kill_point_for_testing(int point, int signal) noexcept;

// Lengthens every waiter's safety sleep (wait.hpp, safety_sleep) by `extra`:
// a wake-up owed and missed then shows as a sleep that long, which a test can
// tell from a prompt wake with a generous bound.
void set_safety_sleep_extra_for_testing(std::chrono::milliseconds extra) noexcept;

// Makes sleep_on_any (wait.hpp) behave as on a kernel without futex_waitv
// (true), or look for it again (false): tests of the fallback.
void set_futex_waitv_missing_for_testing(bool missing) noexcept;

// A simulated reboot in one process (tests of file-backed queues): the
// boot id this process reports instead of the kernel's (empty: the
// kernel's again); now_ms() and CLOCK_REALTIME as this process reads them
// moved by the given amounts (a reboot: CLOCK_MONOTONIC back to near 0, the
// wall clock on by the downtime). Kept across fork.
void set_boot_id_for_testing(std::string_view id) noexcept;
void shift_clocks_for_testing(std::int64_t monotonic_ms, std::int64_t realtime_ms) noexcept;
void shift_monotonic_for_testing(std::int64_t ms) noexcept;  // now_ms() moves by ms

// Makes the recovery of a file-backed queue after a reboot (durable.cpp)
// raise `signal` on this process once it has looked at `after_slots` slots
// (-1: never): tests that kill a recoverer half-way.
void set_recovery_kill_point_for_testing(int after_slots, int signal) noexcept;

// Called after every msync of a file-backed segment (Sync::always: push and
// ack; Sync::interval: the janitor) with the mapping and the page-aligned
// range synced: a test keeps its own "disk" image from it, and simulates a
// power cut by opening that image (nullptr: none).
using SyncObserver = void (*)(const void* mapping, std::uint64_t offset, std::uint64_t length);
void set_sync_observer_for_testing(SyncObserver observer) noexcept;

// Makes every msync of a file-backed segment in this process fail with
// `err` (EIO: a disk that failed), or succeed again (0).
void set_sync_failure_for_testing(int err) noexcept;

// Makes this process unable to read its boot id (as without /proc), or able
// again (false).
void set_boot_id_unreadable_for_testing(bool unreadable) noexcept;

}  // namespace jobring::detail
