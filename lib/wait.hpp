// jobring — sleeping until something happens, between processes.
//
// An event word is a 32-bit futex word in the segment: (sequence << 1) | W,
// where W = "someone may be sleeping on this word". It never depends on a
// waiter staying alive: a waiter that dies leaves at most W set, and the next
// notify() clears it (one wasted wake-up), so the word heals itself. There is
// no lock and no waiter count to leak.
//
// Waiter (prepare → re-check → sleep):
//   e = prepare(word)        fetch_or(W), seq_cst: announces the sleeper
//   re-check the ring        with seq_cst loads of the state words
//   sleep(word, e, timeout)  FUTEX_WAIT: returns at once if the word moved
// Notifier (after its transition):
//   the transition's CAS is seq_cst; then notify(word): a seq_cst load, and
//   only if W is set, a CAS that bumps the sequence and clears W, and a
//   FUTEX_WAKE of every sleeper. No system call when nobody waits.
//
// Why no wake-up is lost: the waiter's fetch_or and re-check loads and the
// notifier's CAS and load are all seq_cst, so they sit in one total order S.
// If the waiter's re-check does not see the notifier's transition, the
// re-check precedes the transition in S, so the fetch_or (sequenced before the
// re-check) precedes the notifier's load of the word, which therefore sees W
// and wakes the waiter (or changes the word before the waiter's FUTEX_WAIT,
// which then returns at once).
//
// Every sleep is also bounded (kMaxSleep, 200 ms; longer for rings of more
// than 64 Ki slots, see safety_sleep) and followed by a re-check, so a
// notifier that died between its transition and its notify() delays a waiter
// by at most that, never for ever. Due times (a delayed job becoming
// visible, a lease running out) wake nobody: the waiter computes the earliest
// one while it scans and sleeps no longer than that.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace jobring::detail {

inline constexpr std::uint32_t kWaitingBit = 1;
inline constexpr std::chrono::milliseconds kMaxSleep{200};

// Announces a sleeper; returns the word value to sleep on.
[[nodiscard]] std::uint32_t prepare_wait(std::atomic<std::uint32_t>& word) noexcept;

// The longest sleep between two re-checks of a ring of `capacity` slots:
// kMaxSleep, longer for huge rings so that the safety re-check (a full scan)
// costs an idle waiter well under 0.1 % of a core: +2 µs per slot, so 2.2 s
// at a million slots.
[[nodiscard]] inline std::chrono::milliseconds safety_sleep(std::uint32_t capacity) noexcept {
  return kMaxSleep + std::chrono::milliseconds(capacity / 500);
}

// Sleeps while the word equals `expected`, at most `timeout` (clamped to
// `cap`), or until interrupt_waits(), or until wake_waits() with `*stop`
// true. Returns early and spuriously too: callers always re-check.
void sleep_on(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::milliseconds timeout,
              std::chrono::milliseconds cap = kMaxSleep, const std::atomic<bool>* stop = nullptr) noexcept;

// Wakes every sleeper of `word`, if the waiting bit says there may be one.
void notify(std::atomic<std::uint32_t>& word) noexcept;

// True once interrupt_waits() was called in this process (until cleared).
[[nodiscard]] bool interrupt_requested() noexcept;

}  // namespace jobring::detail
