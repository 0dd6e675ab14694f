// jobring — the worker runtime (include/jobring/worker.hpp).
//
// Threads and what they share:
//
//   handler threads (run() and threads - 1 more)      heartbeat thread (one per Worker)
//   ─────────────────────────────────────────────      ─────────────────────────────────
//   claim_mu: one at a time blocks in claim()
//   slot i: Job, counters, rng (own, no lock)
//   mu ─┬─ slot.active / lease / next_extend ──────── extends every active slot's lease,
//       │   (the current token lives here)            releases them when the grace ends
//       └─ slot.hook_pending ◀────────────────────── set while on_lease_lost / on_abandon run
//   slot.lost / slot.abandoned: atomics written under mu by either side, read
//   without it by JobContext.
//
// The handler's thread owns a slot's lease except between "active = true"
// and "active = false" (both under mu), when the heartbeat may extend it
// (replacing the token) or release it. The final ack / release is made by the
// handler's thread with the token read under mu after "active = false", so it
// is the latest one and the heartbeat no longer touches it.
//
// Wake-ups use the library's futex protocol (lib/wait.hpp): prepare_wait on a
// word, re-check the condition, sleep_on the word; the other side changes the
// condition, then notify(word). sleep_on registers the sleeper so that
// interrupt_waits() (a signal handler's stop) wakes it too.
//
// Shared memory: the Worker only calls Queue operations; whatever instruction
// the process dies at, its jobs in hand are leased and come back when the
// lease runs out (or at once through the janitor), see worker.hpp.
#include "jobring/worker.hpp"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ring/wait.hpp"

namespace jobring {

using Clock = std::chrono::steady_clock;

namespace {

// Set by the handlers of install_signal_handlers(); every Worker reads them.
std::atomic<int> g_signals{0};
std::atomic<bool> g_stop_now{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

// C language linkage for sigaction, internal linkage (static) so that the
// library exports no symbol that could clash with a program's own handler.
extern "C" {
static void jobring_on_stop_signal(int) {
  // Async-signal-safe: lock-free atomics and interrupt_waits().
  if (g_signals.fetch_add(1, std::memory_order_seq_cst) >= 1)
    g_stop_now.store(true, std::memory_order_seq_cst);
  interrupt_waits();  // wakes claims, heartbeats and sleep_for()s; they then read the flags
}
}  // extern "C"

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Rounded up, at least 1 ms, at most kMaxLease: for sleeps and claim waits.
milliseconds ceil_ms(Clock::duration d) noexcept {
  if (d <= Clock::duration::zero()) return milliseconds{1};
  if (d >= kMaxLease) return kMaxLease;
  return std::max(milliseconds{1}, std::chrono::ceil<milliseconds>(d));
}

template <class F, class... Args>
void call_hook(const F& hook, Args&&... args) noexcept {
  if (!hook) return;
  try {
    hook(std::forward<Args>(args)...);
  } catch (...) {  // documented: an exception escaping a hook is ignored
  }
}

}  // namespace

milliseconds backoff_delay(const Backoff& backoff, std::uint32_t attempt, std::uint64_t random) noexcept {
  const std::int64_t base = std::max<std::int64_t>(0, backoff.base.count());
  const std::int64_t cap = std::max<std::int64_t>(0, backoff.cap.count());
  const unsigned shift = attempt <= 1 ? 0u : std::min(attempt - 1, 62u);
  // d = min(cap, base × 2^shift), without overflow.
  const std::int64_t d = base == 0 ? 0 : (base > (cap >> shift) ? cap : std::min(cap, base << shift));
  const auto ud = static_cast<std::uint64_t>(d);
  switch (backoff.jitter) {
    case Jitter::none:
      return milliseconds{d};
    case Jitter::full:
      return milliseconds{static_cast<std::int64_t>(random % (ud + 1))};
    case Jitter::equal:
      return milliseconds{static_cast<std::int64_t>(ud / 2 + random % (ud - ud / 2 + 1))};
  }
  return milliseconds{d};
}

struct Worker::Impl {
  struct Slot {
    // Owned by the slot's handler thread.
    Job job;
    std::uint64_t rng = 0;
    WorkerSummary counts;
    std::string error;  // the last exception's message (allocates only on failures)
    // Guarded by Impl::mu.
    bool active = false;        // the heartbeat looks after the lease
    bool hook_pending = false;  // the heartbeat is calling a hook with this job
    Lease lease;                // the current token
    Clock::time_point deadline;
    Clock::time_point next_extend;
    // Written under mu; read without it by JobContext.
    std::atomic<bool> lost{false};
    std::atomic<bool> abandoned{false};
    // Woken when lost / abandoned is set (JobContext::sleep_for sleeps on it).
    std::atomic<std::uint32_t> event{0};
  };

  Impl(Queue& q, Handler h, WorkerOptions o) : queue(q), handler(std::move(h)), options(std::move(o)) {}

  Queue& queue;
  const Handler handler;
  const WorkerOptions options;
  milliseconds lease{0};     // resolved: options.lease or the queue's default
  milliseconds interval{0};  // between extensions
  std::uint32_t max_attempts = 0;
  std::unique_ptr<Slot[]> slots;

  // Heartbeat.
  std::mutex mu;
  std::condition_variable hooks_done;  // some slot's hook_pending became false
  bool shutdown = false;               // guarded by mu
  bool stop_seen = false;              // guarded by mu (heartbeat)
  Clock::time_point grace_end{};       // guarded by mu (heartbeat)
  std::atomic<std::uint32_t> hb_event{0};
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
  bool ran = false;

  [[nodiscard]] bool stop_now_requested() const noexcept {
    return now.load(std::memory_order_seq_cst) || g_stop_now.load(std::memory_order_seq_cst);
  }
  [[nodiscard]] bool stopping() const noexcept {
    return stop.load(std::memory_order_seq_cst) || stop_now_requested() || detail::interrupt_requested();
  }

  void heartbeat_loop();
  void loop(unsigned index);
  void handle(unsigned index);
  [[nodiscard]] JobReport finish(Slot& s, Outcome outcome, bool threw, std::string_view error,
                                 std::chrono::nanoseconds duration);
};

// ---------------------------------------------------------------------------
// Heartbeat: extends the leases of the jobs in hand; releases them when the
// grace period runs out.
// ---------------------------------------------------------------------------

void Worker::Impl::heartbeat_loop() {
  const unsigned n = options.threads;
  std::vector<unsigned> lost_now;
  std::vector<unsigned> abandoned_now;
  lost_now.reserve(n);  // the loop below allocates nothing
  abandoned_now.reserve(n);
  for (;;) {
    // Announce the sleep before looking (wait.hpp): a change made after our
    // look is followed by a notify that finds the waiting bit.
    const std::uint32_t expected = detail::prepare_wait(hb_event);
    Clock::duration sleep = std::chrono::hours(1);
    bool any_active = false;
    {
      std::lock_guard lock(mu);
      if (shutdown) return;
      const auto t = Clock::now();
      const bool stopping_now = stopping();
      if (stopping_now && !stop_seen) {
        stop_seen = true;
        grace_end = options.grace > std::chrono::hours(24 * 365)  // kForever
                        ? Clock::time_point::max()
                        : t + options.grace;
      }
      const bool release_all = stop_now_requested() || (stop_seen && t >= grace_end);
      for (unsigned i = 0; i < n; ++i) {
        Slot& s = slots[i];
        if (!s.active || s.lost.load(std::memory_order_relaxed) ||
            s.abandoned.load(std::memory_order_relaxed))
          continue;
        if (release_all) {
          // Give the job back at once (no delay): another worker can take it.
          // If the process dies right after, the job is ready: nothing lost.
          // release, not give_back: the attempt counts. A job that hangs its
          // handler is abandoned on every restart; counted, it is
          // dead-lettered after max_attempts instead of cycling for ever.
          if (queue.release(s.lease, milliseconds{0}) == LeaseStatus::ok) {
            s.abandoned.store(true, std::memory_order_seq_cst);
            abandoned_now.push_back(i);
          } else {
            s.lost.store(true, std::memory_order_seq_cst);
            lost_now.push_back(i);
          }
          s.hook_pending = true;
          detail::notify(s.event);
          continue;
        }
        if (t >= s.next_extend) {
          LeaseStatus st = LeaseStatus::lease_lost;
          try {
            st = queue.extend(s.lease, lease);  // updates s.lease.token on success
          } catch (...) {                       // only for a lease out of range: checked by the constructor
          }
          if (st != LeaseStatus::ok) {
            s.lost.store(true, std::memory_order_seq_cst);
            s.hook_pending = true;
            lost_now.push_back(i);
            detail::notify(s.event);
            continue;
          }
          s.deadline = t + lease;
          s.next_extend = t + interval;
        }
        any_active = true;
        sleep = std::min(sleep, s.next_extend - t);
        if (stop_seen && grace_end != Clock::time_point::max()) sleep = std::min(sleep, grace_end - t);
      }
    }
    // Hooks outside the lock; the handler's thread waits (hook_pending) before
    // it reuses the slot's Job, so the hook may read it.
    if (!lost_now.empty() || !abandoned_now.empty()) {
      for (unsigned i : lost_now) call_hook(options.hooks.on_lease_lost, std::as_const(slots[i].job));
      for (unsigned i : abandoned_now) call_hook(options.hooks.on_abandon, std::as_const(slots[i].job));
      {
        std::lock_guard lock(mu);
        for (unsigned i : lost_now) slots[i].hook_pending = false;
        for (unsigned i : abandoned_now) slots[i].hook_pending = false;
      }
      hooks_done.notify_all();
      lost_now.clear();
      abandoned_now.clear();
      continue;
    }
    // While jobs are in hand, look at least every kMaxSleep: a stop whose
    // interrupt_waits() found the sleeper table full is noticed that late.
    const milliseconds cap = any_active ? detail::kMaxSleep : std::chrono::hours(1);
    detail::sleep_on(hb_event, expected, ceil_ms(sleep), cap);
  }
}

// ---------------------------------------------------------------------------
// Handler threads
// ---------------------------------------------------------------------------

void Worker::Impl::loop(unsigned index) {
  Slot& s = slots[index];
  // Our own stop flag: request_stop() on another Worker of this process does
  // not end our claims (it wakes them; they see our flag clear and wait on).
  const ClaimOptions claim_options{.lease = lease, .owner = options.owner, .stop = &stop};
  for (;;) {
    if (stopping() || finished.load()) return;
    std::unique_lock claim_lock(claim_mu);  // idle threads wait here, not in claim()
    for (;;) {
      if (stopping() || finished.load()) return;
      if (options.max_jobs != 0 && claims >= options.max_jobs) {
        finished.store(true);
        return;
      }
      milliseconds wait = std::chrono::hours(1);
      if (options.idle_exit.count() > 0) {
        const auto idle_since = Clock::time_point(Clock::duration(last_activity.load()));
        wait = busy.load() == 0 ? ceil_ms(idle_since + options.idle_exit - Clock::now()) : options.idle_exit;
      }
      const ClaimStatus st = queue.claim(s.job, wait, claim_options);
      if (st == ClaimStatus::ok) break;
      if (st == ClaimStatus::interrupted) return;  // stopping() is now true
      if (options.idle_exit.count() > 0 && busy.load() == 0 &&
          Clock::now() - Clock::time_point(Clock::duration(last_activity.load())) >= options.idle_exit) {
        finished.store(true);
        return;
      }
    }
    ++claims;
    busy.fetch_add(1);  // before the next claimer's idle check
    last_activity.store(Clock::now().time_since_epoch().count());
    claim_lock.unlock();
    handle(index);
    last_activity.store(Clock::now().time_since_epoch().count());
    busy.fetch_sub(1);
  }
}

void Worker::Impl::handle(unsigned index) {
  Slot& s = slots[index];
  ++s.counts.claimed;
  if (stop_now_requested()) {
    // stop_now() came while we claimed: give the job back untouched.
    const bool ok = queue.give_back(s.job.lease) == LeaseStatus::ok;  // untried: not an attempt
    JobReport r;
    r.result = ok ? JobResult::abandoned : JobResult::lease_lost;
    ++(ok ? s.counts.abandoned : s.counts.lease_lost);
    call_hook(options.hooks.on_claim, std::as_const(s.job));
    call_hook(ok ? options.hooks.on_abandon : options.hooks.on_lease_lost, std::as_const(s.job));
    call_hook(options.hooks.on_done, std::as_const(s.job), std::as_const(r));
    return;
  }
  {
    std::lock_guard lock(mu);
    s.active = true;
    s.lease = s.job.lease;
    s.deadline = s.job.deadline;
    s.next_extend = Clock::now() + interval;
    s.lost.store(false);
    s.abandoned.store(false);
  }
  detail::notify(hb_event);                                 // the heartbeat recomputes its sleep
  call_hook(options.hooks.on_claim, std::as_const(s.job));  // the heartbeat already looks after the lease

  Outcome outcome = Outcome::retry();
  bool threw = false;
  std::string_view error;
  const auto t0 = Clock::now();
  try {
    JobContext ctx(*this, index, s.job);
    outcome = handler(s.job, ctx);
  } catch (const std::exception& e) {
    threw = true;
    s.error = e.what();
    error = s.error;
  } catch (...) {
    threw = true;
    s.error = "unknown exception";
    error = s.error;
  }
  const auto duration = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0);
  const JobReport r = finish(s, outcome, threw, error, duration);
  call_hook(options.hooks.on_done, std::as_const(s.job), r);
}

JobReport Worker::Impl::finish(Slot& s, Outcome outcome, bool threw, std::string_view error,
                               std::chrono::nanoseconds duration) {
  if (threw) {
    ++s.counts.errors;
    outcome = Outcome::retry();
    call_hook(options.hooks.on_error, std::as_const(s.job), error);
  }
  Lease current;
  bool lost = false;
  bool abandoned = false;
  {
    std::unique_lock lock(mu);
    hooks_done.wait(lock, [&] { return !s.hook_pending; });
    s.active = false;  // from here on the heartbeat leaves the lease alone
    current = s.lease;
    lost = s.lost.load();
    abandoned = s.abandoned.load();
  }
  JobReport r;
  r.outcome = outcome;
  r.duration = duration;
  r.error = error;
  if (abandoned) {
    r.result = JobResult::abandoned;  // released by the heartbeat; on_abandon already called
  } else if (lost) {
    r.result = JobResult::lease_lost;  // on_lease_lost already called
  } else {
    switch (outcome.kind()) {
      case Outcome::Kind::ack:
      case Outcome::Kind::skip:
      case Outcome::Kind::drop:
        if (queue.ack(current) == LeaseStatus::ok)
          r.result = outcome.kind() == Outcome::Kind::ack    ? JobResult::acked
                     : outcome.kind() == Outcome::Kind::skip ? JobResult::skipped
                                                             : JobResult::dropped;
        else
          r.result = JobResult::lease_lost;
        break;
      case Outcome::Kind::retry:
      case Outcome::Kind::retry_after: {
        const milliseconds delay = outcome.kind() == Outcome::Kind::retry
                                       ? backoff_delay(options.backoff, s.job.attempt, splitmix64(s.rng))
                                       : std::clamp(outcome.delay(), milliseconds{0}, kMaxLease);
        // The queue dead-letters a release on the last attempt (lib/queue.cpp:
        // attempts >= max_attempts); attempts change only at a claim, so
        // job.attempt is what the release sees.
        const bool last = max_attempts != 0 && s.job.attempt >= max_attempts;
        if (queue.release(current, delay) == LeaseStatus::ok) {
          r.result = last ? JobResult::dead : JobResult::retried;
          r.delay = last ? milliseconds{0} : delay;
        } else {
          r.result = JobResult::lease_lost;
        }
        break;
      }
    }
    if (r.result == JobResult::lease_lost) call_hook(options.hooks.on_lease_lost, std::as_const(s.job));
  }
  switch (r.result) {
    case JobResult::acked:
      ++s.counts.acked;
      break;
    case JobResult::skipped:
      ++s.counts.skipped;
      break;
    case JobResult::dropped:
      ++s.counts.dropped;
      break;
    case JobResult::retried:
      ++s.counts.retried;
      break;
    case JobResult::dead:
      ++s.counts.dead;
      break;
    case JobResult::lease_lost:
      ++s.counts.lease_lost;
      break;
    case JobResult::abandoned:
      ++s.counts.abandoned;
      break;
  }
  return r;
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

Worker::Worker(Queue& queue, Handler handler, WorkerOptions options)
    : impl_(std::make_unique<Impl>(queue, std::move(handler), std::move(options))) {
  Impl& w = *impl_;
  const WorkerOptions& o = w.options;
  auto invalid = [&](const std::string& what) {
    throw error(make_error_code(errc::invalid_argument),
                "jobring::Worker for queue '" + queue.name() + "': " + what);
  };
  if (!w.handler) invalid("no handler");
  if (o.lease.count() < 0 || o.lease > kMaxLease) invalid("lease out of range (0 or 1 ms .. 7 days)");
  w.lease = o.lease.count() > 0 ? o.lease : queue.options().default_lease;
  if (!(o.extend_fraction > 0.0 && o.extend_fraction < 1.0)) invalid("extend_fraction must be in (0, 1)");
  w.interval = std::max(
      milliseconds{1},
      milliseconds{static_cast<std::int64_t>(static_cast<double>(w.lease.count()) * o.extend_fraction)});
  if (o.backoff.base.count() < 0 || o.backoff.cap < o.backoff.base || o.backoff.cap > kMaxLease)
    invalid("backoff must have 0 <= base <= cap <= 7 days");
  if (o.grace.count() < 0) invalid("negative grace period");
  if (o.idle_exit.count() < 0 || o.idle_exit > kMaxLease) invalid("idle_exit out of range (0 .. 7 days)");
  if (o.threads < 1 || o.threads > 1024) invalid("threads must be from 1 to 1024");
  w.max_attempts = queue.options().max_attempts;
  w.slots = std::make_unique<Impl::Slot[]>(o.threads);
  std::uint64_t seed = static_cast<std::uint64_t>(::getpid()) << 32 ^
                       static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                       reinterpret_cast<std::uintptr_t>(this);
  for (unsigned i = 0; i < o.threads; ++i) w.slots[i].rng = splitmix64(seed);
  w.heartbeat = std::thread([&w] { w.heartbeat_loop(); });
}

Worker::~Worker() {
  Impl& w = *impl_;
  {
    std::lock_guard lock(w.mu);
    w.shutdown = true;
  }
  detail::notify(w.hb_event);
  w.heartbeat.join();
}

WorkerSummary Worker::run() {
  Impl& w = *impl_;
  if (w.ran) throw error(make_error_code(errc::invalid_argument), "jobring::Worker::run() called twice");
  w.ran = true;
  w.last_activity.store(Clock::now().time_since_epoch().count());
  std::vector<std::thread> extra;
  try {
    extra.reserve(w.options.threads - 1);
    for (unsigned i = 1; i < w.options.threads; ++i) extra.emplace_back([&w, i] { w.loop(i); });
  } catch (...) {
    // Could not start a thread: stop the ones that run, then report.
    request_stop();
    for (auto& t : extra) t.join();
    throw;
  }
  w.loop(0);
  for (auto& t : extra) t.join();
  WorkerSummary sum;
  for (unsigned i = 0; i < w.options.threads; ++i) {
    const WorkerSummary& c = w.slots[i].counts;
    sum.claimed += c.claimed;
    sum.acked += c.acked;
    sum.skipped += c.skipped;
    sum.dropped += c.dropped;
    sum.retried += c.retried;
    sum.dead += c.dead;
    sum.lease_lost += c.lease_lost;
    sum.abandoned += c.abandoned;
    sum.errors += c.errors;
  }
  sum.stopped = w.stopping();
  return sum;
}

void Worker::request_stop() noexcept {
  const int saved_errno = errno;  // may run in a signal handler
  Impl& w = *impl_;
  w.stop.store(true, std::memory_order_seq_cst);
  // Wakes our claims (they see `stop`), and every other blocking call in
  // the process, which sees its own flag clear and waits on. Not
  // interrupt_waits(): that would stop every Worker of the process.
  wake_waits();
  detail::notify(w.hb_event);
  // Handlers in ctx.sleep_for(): they look at stopping() when woken.
  for (unsigned i = 0; i < w.options.threads; ++i) detail::notify(w.slots[i].event);
  errno = saved_errno;
}

void Worker::stop_now() noexcept {
  impl_->now.store(true, std::memory_order_seq_cst);
  request_stop();
}

bool Worker::stop_requested() const noexcept { return impl_->stopping(); }

void Worker::install_signal_handlers() {
  g_signals.store(0);
  g_stop_now.store(false);
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = jobring_on_stop_signal;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

// ---------------------------------------------------------------------------
// JobContext
// ---------------------------------------------------------------------------

JobId JobContext::id() const noexcept { return job_.id; }
std::string_view JobContext::key() const noexcept { return job_.key(); }
std::uint32_t JobContext::attempt() const noexcept { return job_.attempt; }
bool JobContext::last_attempt() const noexcept {
  return worker_.max_attempts != 0 && job_.attempt >= worker_.max_attempts;
}
bool JobContext::stopping() const noexcept { return worker_.stopping(); }
bool JobContext::lease_lost() const noexcept { return worker_.slots[slot_].lost.load(); }
bool JobContext::abandoned() const noexcept { return worker_.slots[slot_].abandoned.load(); }

Lease JobContext::lease() const {
  std::lock_guard lock(worker_.mu);
  return worker_.slots[slot_].lease;
}

std::chrono::steady_clock::time_point JobContext::deadline() const {
  std::lock_guard lock(worker_.mu);
  return worker_.slots[slot_].deadline;
}

bool JobContext::sleep_for(milliseconds d) const {
  auto& event = worker_.slots[slot_].event;
  const auto until = Clock::now() + std::min<Clock::duration>(d, std::chrono::hours(24 * 365 * 100));
  for (;;) {
    const std::uint32_t expected = detail::prepare_wait(event);
    if (cancelled() || stopping()) return false;
    const auto t = Clock::now();
    if (t >= until) return true;
    detail::sleep_on(event, expected, ceil_ms(until - t));
  }
}

}  // namespace jobring
