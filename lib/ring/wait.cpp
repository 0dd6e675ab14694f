#include "ring/wait.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "jobring/queue.hpp"
#include "ring/testing.hpp"

namespace jobring {
namespace detail {
namespace {

// FUTEX_WAIT / FUTEX_WAKE without FUTEX_PRIVATE_FLAG: the word is in a
// MAP_SHARED mapping and the waiters are in other processes.
long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value, const timespec* timeout) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// Interruption, async-signal-safe: a flag, plus a fixed table of the words
// this process's threads sleep on, so that interrupt_waits() can wake them at
// once. Lock-free: a handler may run on any thread at any instruction.
std::atomic<bool> g_interrupted{false};
constexpr int kSleepers = 64;
std::atomic<std::atomic<std::uint32_t>*> g_sleeping[kSleepers];
static_assert(std::atomic<std::atomic<std::uint32_t>*>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

int register_sleeper(std::atomic<std::uint32_t>* word) noexcept {
  for (int i = 0; i < kSleepers; ++i) {
    std::atomic<std::uint32_t>* empty = nullptr;
    if (g_sleeping[i].compare_exchange_strong(empty, word, std::memory_order_seq_cst)) return i;
  }
  return -1;  // table full: this sleeper looks at the flags every kMaxSleep (sleep_on)
}

}  // namespace

std::uint32_t prepare_wait(std::atomic<std::uint32_t>& word) noexcept {
  return word.fetch_or(kWaitingBit, std::memory_order_seq_cst) | kWaitingBit;
}

void sleep_on(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::milliseconds timeout,
              std::chrono::milliseconds cap, const std::atomic<bool>* stop) noexcept {
  if (timeout > cap) timeout = cap;
  if (timeout.count() <= 0) return;
  const int entry = register_sleeper(&word);
  // Checked after registering: interrupt_waits() sets its flag before it
  // reads the table (both seq_cst), so it either sees our entry and wakes us,
  // or we see the flag here. The same for a caller's stop flag and
  // wake_waits(): whatever order the caller stored its flag with, the two
  // seq_cst fences (here, after our registering CAS; there, before it reads
  // the table) order the flag's store before its read of the table, and our
  // entry before our load of the flag; so it sees our entry or we see the
  // flag.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // In pieces of at most kMaxSleep, looking at the two flags in between
  // (not at the ring: the caller's re-check, which scans, comes only after
  // the whole sleep): a wake that is missed — it came between our look and
  // FUTEX_WAIT (interrupt_waits() and wake_waits() do not change the word),
  // or our entry did not fit in the table — is then made good within
  // kMaxSleep whatever `cap` a huge ring asked for.
  auto flagged = [&] {
    return g_interrupted.load(std::memory_order_seq_cst) ||
           (stop != nullptr && stop->load(std::memory_order_relaxed));
  };
  while (!flagged()) {
    const std::chrono::milliseconds piece = std::min(timeout, kMaxSleep);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(piece.count() / 1000);
    ts.tv_nsec = static_cast<long>(piece.count() % 1000) * 1'000'000L;
    // 0 (woken), EAGAIN (the word changed), EINTR: back to the caller, which
    // re-checks. ETIMEDOUT: this piece is over; sleep on if time is left.
    if (futex(&word, FUTEX_WAIT, expected, &ts) == 0 || errno != ETIMEDOUT) break;
    timeout -= piece;
    if (timeout.count() <= 0) break;
  }
  if (entry >= 0) g_sleeping[entry].store(nullptr, std::memory_order_release);
}

std::atomic<std::int64_t> g_safety_sleep_extra_ms{0};

void set_safety_sleep_extra_for_testing(std::chrono::milliseconds extra) noexcept {
  g_safety_sleep_extra_ms.store(extra.count(), std::memory_order_relaxed);
}

namespace {
std::atomic<bool> g_waitv_missing{false};
// Bumped by interrupt_waits() and wake_waits() before they wake: every
// sleep_on_any waits on it too (a private futex: this process's threads
// only), with the value it read before looking at the flags.
std::atomic<std::uint32_t> g_wake_generation{0};

void bump_wake_generation() noexcept {
  g_wake_generation.fetch_add(1, std::memory_order_seq_cst);
  (void)futex(&g_wake_generation, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr);
}

// futex_waitv(2) on shared (not FUTEX_PRIVATE) 32-bit words, and on the
// wake generation (private) as last read, with an absolute CLOCK_MONOTONIC
// timeout `piece` from now. The index of a word that woke it, or -1 with
// errno: EAGAIN (a word differed), ETIMEDOUT, EINTR, or what says the call
// cannot be used here (ENOSYS, EPERM, ...).
long futex_waitv_for(std::span<std::atomic<std::uint32_t>* const> words,
                     std::span<const std::uint32_t> expected, std::uint32_t generation,
                     std::chrono::milliseconds piece) noexcept {
  futex_waitv waiters[kMaxWaitWords + 1] = {};
  for (std::size_t i = 0; i < words.size(); ++i) {
    waiters[i].val = expected[i];
    waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(words[i]);
    waiters[i].flags = FUTEX_32;
  }
  waiters[words.size()].val = generation;
  waiters[words.size()].uaddr = reinterpret_cast<std::uintptr_t>(&g_wake_generation);
  waiters[words.size()].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
  timespec until{};
  ::clock_gettime(CLOCK_MONOTONIC, &until);
  const long long ns = static_cast<long long>(until.tv_nsec) + piece.count() % 1000 * 1'000'000LL;
  until.tv_sec += static_cast<time_t>(piece.count() / 1000 + ns / 1'000'000'000LL);
  until.tv_nsec = static_cast<long>(ns % 1'000'000'000LL);
  return ::syscall(SYS_futex_waitv, waiters, static_cast<unsigned>(words.size() + 1), 0u, &until,
                   CLOCK_MONOTONIC);
}
}  // namespace

void set_futex_waitv_missing_for_testing(bool missing) noexcept {
  g_waitv_missing.store(missing, std::memory_order_relaxed);
}

void sleep_on_any(std::span<std::atomic<std::uint32_t>* const> words, std::span<const std::uint32_t> expected,
                  std::chrono::milliseconds timeout, std::chrono::milliseconds cap,
                  const std::atomic<bool>* stop) noexcept {
  if (timeout > cap) timeout = cap;
  if (timeout.count() <= 0 || words.empty()) return;
  words = words.first(std::min(words.size(), kMaxWaitWords));
  // Read before the flags: interrupt_waits() and wake_waits() set theirs,
  // then bump it (seq_cst, both), so either we see their flag below or the
  // kernel finds the generation changed (EAGAIN) or is woken by the bump.
  // Registered by the first word too, for the fallback below. The fence: as
  // in sleep_on.
  const std::uint32_t generation = g_wake_generation.load(std::memory_order_seq_cst);
  const int entry = register_sleeper(words[0]);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto flagged = [&] {
    return g_interrupted.load(std::memory_order_seq_cst) ||
           (stop != nullptr && stop->load(std::memory_order_relaxed));
  };
  while (!flagged()) {
    if (g_waitv_missing.load(std::memory_order_relaxed)) {
      // No futex_waitv: the first word, in short pieces; the caller's
      // re-check after each piece sees the other rings.
      const std::chrono::milliseconds piece = std::min(timeout, kAnyFallbackPiece);
      timespec ts{0, static_cast<long>(piece.count()) * 1'000'000L};
      (void)futex(words[0], FUTEX_WAIT, expected[0], &ts);
      break;
    }
    const std::chrono::milliseconds piece = std::min(timeout, kMaxSleep);
    if (futex_waitv_for(words, expected, generation, piece) >= 0) break;  // woken: the caller re-checks
    if (errno == EAGAIN || errno == EINTR) break;  // a word moved, or a signal: re-check
    if (errno != ETIMEDOUT) {
      // ENOSYS (before Linux 5.16), EPERM (a seccomp filter older than the
      // call), EINVAL, ...: never tried again, or an idle worker would spin.
      g_waitv_missing.store(true, std::memory_order_relaxed);
      continue;
    }
    timeout -= piece;
    if (timeout.count() <= 0) break;
  }
  if (entry >= 0) g_sleeping[entry].store(nullptr, std::memory_order_release);
}

void notify_waiters(std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept {
  std::uint32_t w = seen;
  while ((w & kWaitingBit) != 0) {
    // Bump the sequence and clear the bit in one step (odd + 1 = next even).
    if (word.compare_exchange_weak(w, w + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      (void)futex(&word, FUTEX_WAKE, INT_MAX, nullptr);
      return;
    }
  }
}

bool interrupt_requested() noexcept { return g_interrupted.load(std::memory_order_seq_cst); }

}  // namespace detail

void interrupt_waits() noexcept {
  const int saved_errno = errno;  // a signal handler must leave errno as it found it
  detail::g_interrupted.store(true, std::memory_order_seq_cst);
  detail::bump_wake_generation();  // sleep_on_any's sleepers
  for (auto& slot : detail::g_sleeping) {
    if (auto* word = slot.load(std::memory_order_seq_cst)) {
      // Only the system call touches the address: if the sleeper has returned
      // and its queue was unmapped meanwhile, FUTEX_WAKE fails with EFAULT
      // instead of faulting. Other processes sleeping on the same word get a
      // spurious wake-up: harmless, they re-check and sleep again. A sleeper
      // between its flag check and FUTEX_WAIT is missed and sees the flag
      // within kMaxSleep (sleep_on sleeps in pieces).
      (void)detail::futex(word, FUTEX_WAKE, INT_MAX, nullptr);
    }
  }
  errno = saved_errno;
}

void clear_interrupt() noexcept { detail::g_interrupted.store(false, std::memory_order_seq_cst); }

void wake_waits() noexcept {
  const int saved_errno = errno;  // a signal handler must leave errno as it found it
  // Pairs with the fence in sleep_on (above): the caller's stop flag, stored
  // before this call, is seen by every sleeper that this loop misses.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  detail::bump_wake_generation();  // sleep_on_any's sleepers
  for (auto& slot : detail::g_sleeping)
    if (auto* word = slot.load(std::memory_order_seq_cst))
      (void)detail::futex(word, FUTEX_WAKE, INT_MAX, nullptr);
  errno = saved_errno;
}

}  // namespace jobring
