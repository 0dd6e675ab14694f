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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/clock.hpp"

namespace jobring::detail {

inline constexpr std::uint32_t kWaitingBit = 1;
inline constexpr std::chrono::milliseconds kMaxSleep{200};

// Announces a sleeper; returns the word value to sleep on.
[[nodiscard]] std::uint32_t prepare_wait(std::atomic<std::uint32_t>& word) noexcept;

// The longest sleep between two re-checks of a ring of `capacity` slots:
// kMaxSleep, longer for huge rings so that the safety re-check (a full scan)
// costs an idle waiter well under 0.1 % of a core: +2 µs per slot, so 2.2 s
// at a million slots.
// Tests add to it (set_safety_sleep_extra_for_testing) so that a wake-up a
// notifier owed and missed shows as a long sleep, not one hidden by the cap.
extern std::atomic<std::int64_t> g_safety_sleep_extra_ms;
[[nodiscard]] inline std::chrono::milliseconds safety_sleep(std::uint32_t capacity) noexcept {
  return kMaxSleep + std::chrono::milliseconds(capacity / 500) +
         std::chrono::milliseconds(g_safety_sleep_extra_ms.load(std::memory_order_relaxed));
}

// Sleeps while the word equals `expected`, at most `timeout` (clamped to
// `cap`), or until interrupt_waits(), or until wake_waits() with `*stop`
// true. Returns early and spuriously too: callers always re-check.
void sleep_on(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::milliseconds timeout,
              std::chrono::milliseconds cap = kMaxSleep, const std::atomic<bool>* stop = nullptr) noexcept;

// sleep_on for several words at once (Queue::claim_any): returns when any
// of them differs from its `expected`, or as sleep_on does. One
// futex_waitv(2) system call (Linux 5.16 and later) on the words and on a
// process-wide wake generation that interrupt_waits() and wake_waits() bump
// (so a signal handler's wake is never lost, even when the kernel restarts
// the call after the handler: SA_RESTART). Where futex_waitv cannot be used
// (ENOSYS on an old kernel, EPERM from a container's seccomp filter, ...)
// it sleeps on the first word only, in pieces of at most kAnyFallbackPiece,
// so a change of another word is seen that late.
inline constexpr std::chrono::milliseconds kAnyFallbackPiece{10};
inline constexpr std::size_t kMaxWaitWords = 64;  // futex_waitv takes 128
void sleep_on_any(std::span<std::atomic<std::uint32_t>* const> words, std::span<const std::uint32_t> expected,
                  std::chrono::milliseconds timeout, std::chrono::milliseconds cap,
                  const std::atomic<bool>* stop) noexcept;

// notify()'s slow path, out of line (wait.cpp): from the value `seen`
// (waiting bit set), the CAS that bumps the sequence and clears the bit,
// then the FUTEX_WAKE.
void notify_waiters(std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept;
// Wakes every sleeper of `word`, if the waiting bit says there may be one.
// Inline: every push and ack calls it, and while nobody waits it is only
// the seq_cst load of the no-lost-wake-up argument above.
inline void notify(std::atomic<std::uint32_t>& word) noexcept {
  const std::uint32_t w = word.load(std::memory_order_seq_cst);
  if ((w & kWaitingBit) != 0) [[unlikely]]
    notify_waiters(word, w);
}

// True once interrupt_waits() was called in this process (until cleared).
[[nodiscard]] bool interrupt_requested() noexcept;

inline constexpr std::uint64_t kNoDue = ~std::uint64_t{0};

// What a blocking call's wait came to: how much it did, and whether it gave
// up because it was interrupted (interrupt_waits, or its stop flag).
struct Progress {
  std::size_t done = 0;
  bool interrupted = false;
};

// Runs `attempt(load_order, next_due)` until it makes progress, `wait` runs
// out, or the call is interrupted; sleeps on `event` in between: prepare,
// re-check with seq_cst loads, sleep (see the top of this file for why no
// wake-up is lost). `attempt` returns how much it did and lowers next_due to
// the earliest due time it saw, which bounds the sleep.
// Always inlined: its first attempt is a hot path (a push, a claim that finds a job).
// The slow path of wait_until_progress, for one event word or several
// (Queue::claim_any: an attempt over several rings, sleeping on all their
// event words). The argument is the same for each word: its announcement
// (fetch_or) precedes the re-check of its ring in the one total order, so a
// notifier whose transition the re-check missed sees its waiting bit.
template <typename Attempt>
Progress wait_after_first_try(std::span<std::atomic<std::uint32_t>* const> events,
                              std::chrono::milliseconds wait, std::chrono::milliseconds cap,
                              const std::atomic<bool>* stop, Attempt attempt) {
  if (wait.count() <= 0) return {};
  // +1: now_ms() truncates, so this never returns before `wait` has passed.
  const std::uint64_t deadline = now_ms() + static_cast<std::uint64_t>(wait.count()) + 1;
  std::uint32_t expected[kMaxWaitWords];
  const std::size_t n = std::min(events.size(), kMaxWaitWords);
  for (;;) {
    if (interrupt_requested() || (stop != nullptr && stop->load(std::memory_order_relaxed))) return {0, true};
    for (std::size_t i = 0; i < n; ++i) expected[i] = prepare_wait(*events[i]);
    std::uint64_t due = kNoDue;
    // The re-check after announcing ourselves, with seq_cst loads.
    if (const std::size_t done = attempt(std::memory_order_seq_cst, due)) return {done, false};
    const std::uint64_t now = now_ms();
    if (now >= deadline) return {};
    const std::uint64_t until = std::min(deadline, std::max(due, now + 1));
    const std::chrono::milliseconds left(static_cast<std::int64_t>(until - now));
    if (n == 1)
      sleep_on(*events[0], expected[0], left, cap, stop);
    else
      sleep_on_any(events.first(n), {expected, n}, left, cap, stop);
  }
}

template <typename Attempt>
[[gnu::always_inline]] inline Progress wait_until_progress(std::atomic<std::uint32_t>& event,
                                                           std::chrono::milliseconds wait,
                                                           std::uint32_t capacity,
                                                           const std::atomic<bool>* stop, Attempt attempt) {
  std::uint64_t due = kNoDue;
  if (const std::size_t n = attempt(std::memory_order_relaxed, due)) return {n, false};
  std::atomic<std::uint32_t>* const one[1] = {&event};
  return wait_after_first_try(one, wait, safety_sleep(capacity), stop, attempt);
}

}  // namespace jobring::detail
