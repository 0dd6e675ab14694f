// jobring — the Worker's internals (include/jobring/worker.hpp), shared by
// worker.cpp (run, the handler threads, stops), heartbeat.cpp (lease
// extension and the grace period), backend_retry.cpp (backend errors: retry
// delays, reports, the end of a lease tried again) and context.cpp
// (JobContext).
//
// Threads and what they share:
//
//   handler threads (run() and threads - 1 more)      heartbeat thread (one per Worker)
//   ─────────────────────────────────────────────      ─────────────────────────────────
//   claim_mu: one at a time blocks in claim()
//   slot i: Job, counters, rng (own, no lock)
//   mu ─┬─ slot.active / lease / next_extend ──────── extends every active slot's lease,
//       │   (the current token lives here)            releases them when the grace ends
//       └─ slot.hb_busy ◀─────────────────────────── set while the heartbeat works on the
//                                                     slot outside mu (extend, release, hooks)
//   slot.lost / slot.abandoned: atomics written under mu by either side, read
//   without it by JobContext.
//
// The handler's thread owns a slot's lease except between "active = true"
// and "active = false" (both under mu), when the heartbeat may extend it
// (replacing the token) or release it. The heartbeat makes its queue calls
// outside mu (a Redis call can take io_timeout; one slow slot must not hold
// up the others, nor JobContext::lease()): it marks the slot hb_busy under
// mu, calls the queue with a copy of the lease, and stores the new token and
// clears hb_busy under mu again. The final ack / release is made by the
// handler's thread with the token read under mu after "active = false" once
// hb_busy is clear, so it is the latest one and the heartbeat no longer
// touches it.
//
// Wake-ups use the library's futex protocol (lib/ring/wait.hpp): prepare_wait on a
// word, re-check the condition, sleep_on the word; the other side changes the
// condition, then notify(word). sleep_on registers the sleeper so that
// interrupt_waits() (a signal handler's stop) wakes it too.
//
// Backends: the Worker calls its queues through AnyQueue (a Queue& given to
// the constructor is wrapped with AnyQueue::ref), always in the
// std::error_code& forms: on shared memory they never fail; on Redis a failed
// call is a backend error, handled as worker.hpp says ("Backend errors").
// Whatever instruction the process dies at, its jobs in hand are leased and
// come back when the lease runs out (or at once through the janitor, on
// shared memory), see worker.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "jobring/worker.hpp"
#include "ring/wait.hpp"

namespace jobring {

namespace detail {

using Clock = std::chrono::steady_clock;

// Set by the second stop signal (install_signal_handlers): every Worker in
// the process gives its jobs back at once.
extern std::atomic<bool> g_stop_now;

// Rounded up, at least 1 ms, at most kMaxLease: for sleeps and claim waits.
inline milliseconds ceil_ms(Clock::duration d) noexcept {
  if (d <= Clock::duration::zero()) return milliseconds{1};
  if (d >= kMaxLease) return kMaxLease;
  return std::max(milliseconds{1}, std::chrono::ceil<milliseconds>(d));
}

// The next number of a SplitMix64 sequence: the Worker's jitter (backoff,
// retry delays) and weighted draws, one state per thread.
inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <class F, class... Args>
inline void call_hook(const F& hook, Args&&... args) noexcept {
  if (!hook) return;
  try {
    hook(std::forward<Args>(args)...);
  } catch (...) {  // documented: an exception escaping a hook is ignored
  }
}

}  // namespace detail

struct Worker::Impl {
  using Clock = detail::Clock;

  // A queue served, with what the Worker resolved for it.
  struct Served {
    AnyQueue* queue = nullptr;
    milliseconds lease{0};     // options.lease, or the queue's default_lease
    milliseconds interval{0};  // between extensions: lease × extend_fraction, at least 1 ms
    std::uint32_t max_attempts = 0;
    unsigned weight = 1;
  };

  struct Slot {
    // Owned by the slot's handler thread.
    Job job;
    std::uint64_t rng = 0;
    WorkerSummary counts;
    std::string error;  // the last exception's message (allocates only on failures)
    // Guarded by Impl::mu.
    bool active = false;         // the heartbeat looks after the lease
    bool hb_busy = false;        // the heartbeat works on this slot outside mu (a queue call, a hook)
    Lease lease;                 // the current token
    Clock::time_point deadline;  // this host's view of the lease's end: never later than the queue's
    Clock::time_point next_extend;
    std::uint32_t extend_failures = 0;  // backend errors of the extensions in a row
    // Written under mu; read without it by JobContext.
    std::atomic<bool> lost{false};
    std::atomic<bool> abandoned{false};
    // Woken when lost / abandoned is set (JobContext::sleep_for sleeps on it).
    std::atomic<std::uint32_t> event{0};
    // The queue of the job in hand (set by the handler thread before
    // `active`, read by the heartbeat under mu while active).
    const Served* from = nullptr;
  };

  Impl(Handler h, WorkerOptions o) : handler(std::move(h)), options(std::move(o)) {}

  std::vector<AnyQueue> wrapped;  // AnyQueue::ref of the Queues given to the constructor
  std::vector<Served> served;     // in the order given (strict priority)
  const Handler handler;
  const WorkerOptions options;
  std::unique_ptr<Slot[]> slots;

  // Heartbeat.
  std::mutex mu;
  std::condition_variable hooks_done;  // some slot's hb_busy became false
  bool shutdown = false;               // guarded by mu
  bool stop_seen = false;              // guarded by mu (heartbeat)
  Clock::time_point grace_end{};       // guarded by mu (heartbeat)
  std::atomic<std::uint32_t> hb_event{0};
  std::uint64_t hb_rng = 0;  // the heartbeat thread's own (extension retries' jitter)
  std::thread heartbeat;

  // Stop requests (async-signal-safe to set).
  std::atomic<bool> stop{false};
  std::atomic<bool> now{false};
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

  // run().
  std::mutex claim_mu;                // one thread at a time blocks in claim()
  std::uint64_t claims = 0;           // guarded by claim_mu (max_jobs)
  std::atomic<bool> finished{false};  // max_jobs reached, or idle for idle_exit
  std::atomic<int> busy{0};           // jobs in hand
  std::atomic<Clock::rep> last_activity{0};
  std::atomic<std::uint64_t> backend_errors{0};  // by every thread (WorkerSummary::backend_errors)
  bool ran = false;

  [[nodiscard]] bool stop_now_requested() const noexcept {
    return now.load(std::memory_order_seq_cst) || detail::g_stop_now.load(std::memory_order_seq_cst);
  }
  [[nodiscard]] bool stopping() const noexcept {
    return stop.load(std::memory_order_seq_cst) || stop_now_requested() || detail::interrupt_requested();
  }

  // The heartbeat's work on one slot, decided under mu, done outside it.
  struct Due {
    unsigned slot = 0;
    bool release = false;  // the grace period ended (or stop_now): give the job back; else extend
    Lease lease;           // the token when decided
  };
  void heartbeat_loop();
  void tend(const Due& due);
  void loop(unsigned index);
  // The queues to try for the next claim, in order (strict, or a weighted draw).
  std::size_t claim_order(Slot& s, AnyQueue** order, std::size_t* index) const noexcept;
  ClaimStatus claim_next(Slot& s, milliseconds wait, const ClaimOptions& claim, std::error_code& ec);
  // Counts a failed backend call and reports it (on_backend_error or stderr).
  void backend_error(std::string_view queue, std::string_view operation, const std::error_code& ec,
                     const Job* job, milliseconds retry_in) noexcept;
  // The wait before the n-th retry of a failed backend call (n >= 1), drawn
  // from the calling thread's own rng (a slot's, or hb_rng).
  [[nodiscard]] milliseconds retry_delay(std::uint64_t& rng, std::uint32_t n) const noexcept;
  // Sleeps on the slot's event until `until`; false early on a stop request
  // (only_stop_now: on stop_now only), woken by request_stop / stop_now /
  // interrupt_waits.
  bool nap(Slot& s, Clock::time_point until, bool only_stop_now) const;
  void handle(unsigned index);
  void report_error(const Slot& s, std::string_view what) const noexcept;
  [[nodiscard]] JobReport finish(Slot& s, Outcome outcome, bool threw, std::string_view error,
                                 std::chrono::nanoseconds duration);
  void end_lease(Slot& s, const Outcome& outcome, const Lease& current, Clock::time_point deadline,
                 JobReport& r);
  static void tally(WorkerSummary& counts, JobResult result) noexcept;
};

}  // namespace jobring
