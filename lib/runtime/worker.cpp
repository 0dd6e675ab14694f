// jobring — the Worker: run(), the handler threads, and stops (signals,
// request_stop, stop_now). The threads and what they share are drawn in
// worker_impl.hpp.

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <string_view>

#include "runtime/worker_impl.hpp"

namespace jobring {

using detail::call_hook;
using detail::ceil_ms;
using detail::Clock;

namespace detail {
std::atomic<bool> g_stop_now{false};
}  // namespace detail

namespace {

// Set by the handlers of install_signal_handlers(); every Worker reads them.
std::atomic<int> g_signals{0};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

// C language linkage for sigaction, internal linkage (static) so that the
// library exports no symbol that could clash with a program's own handler.
extern "C" {
static void jobring_on_stop_signal(int) {
  // Async-signal-safe: lock-free atomics and interrupt_waits().
  if (g_signals.fetch_add(1, std::memory_order_seq_cst) >= 1)
    detail::g_stop_now.store(true, std::memory_order_seq_cst);
  interrupt_waits();  // wakes claims, heartbeats and sleep_for()s; they then read the flags
}
}  // extern "C"

}  // namespace

// ---------------------------------------------------------------------------
// Handler threads
// ---------------------------------------------------------------------------

// Strict: the queues in the order given. Weighted: a fresh draw (Plackett-
// Luce): the first queue with probability weight / total, the next among
// the rest in the same way, and so on. The first queue of the order that
// has a job gets the claim, so among the queues that have jobs, queue i
// comes first with probability w_i / (sum of their weights) (the order the
// draw gives any subset of queues is itself such a draw).
std::size_t Worker::Impl::claim_order(Slot& s, AnyQueue** order, std::size_t* index) const noexcept {
  const std::size_t n = served.size();
  if (options.weights.empty()) {
    for (std::size_t i = 0; i < n; ++i) order[i] = served[i].queue, index[i] = i;
    return n;
  }
  std::array<bool, Queue::kMaxClaimAny> taken{};
  std::uint64_t left = 0;
  for (const Served& q : served) left += q.weight;
  for (std::size_t k = 0; k < n; ++k) {
    std::uint64_t pick = detail::splitmix64(s.rng) % left;
    std::size_t i = 0;
    for (; i < n; ++i) {
      if (taken[i]) continue;
      if (pick < served[i].weight) break;
      pick -= served[i].weight;
    }
    taken[i] = true;
    left -= served[i].weight;
    order[k] = served[i].queue;
    index[k] = i;
  }
  return n;
}

// One claim into s.job from the queue (or queues) served; s.from says which.
// ec: a backend error (then the status means nothing).
ClaimStatus Worker::Impl::claim_next(Slot& s, milliseconds wait, const ClaimOptions& claim,
                                     std::error_code& ec) {
  if (served.size() == 1) {
    s.from = &served[0];
    return served[0].queue->claim(s.job, wait, claim, ec);
  }
  std::array<AnyQueue*, Queue::kMaxClaimAny> order{};
  std::array<std::size_t, Queue::kMaxClaimAny> index{};
  const std::size_t n = claim_order(s, order.data(), index.data());
  // On shared memory Queue::claim_any with the handles on the stack: the
  // claim path allocates nothing.
  const Queue::ClaimAnyResult r = AnyQueue::claim_any({order.data(), n}, s.job, wait, claim, ec);
  if (!ec && r.status == ClaimStatus::ok) s.from = &served[index[r.index]];
  return r.status;
}

void Worker::Impl::loop(unsigned index) {
  Slot& s = slots[index];
  // Our own stop flag: request_stop() on another Worker of this process does
  // not end our claims (it wakes them; they see our flag clear and wait on).
  // The lease: options.lease, or (0) each queue's default_lease.
  const ClaimOptions claim_options{.lease = options.lease, .owner = options.owner, .stop = &stop};
  std::uint32_t failures = 0;  // backend errors of the claims in a row
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
      std::error_code ec;
      const ClaimStatus st = claim_next(s, wait, claim_options, ec);
      if (ec) [[unlikely]] {
        // A backend error (Redis down, slow, or refusing): nothing claimed.
        // Back off (woken by a stop) and try again. The idle clock runs on:
        // with no job in hand, the nap ends by the idle deadline, and the
        // check below ends run() (busy stays 0: only claimers raise it).
        const milliseconds d = retry_delay(s.rng, ++failures);
        backend_error(served[0].queue->name(), "claim", ec, nullptr, d);
        auto until = Clock::now() + d;
        if (options.idle_exit.count() > 0 && busy.load() == 0)
          until =
              std::min(until, Clock::time_point(Clock::duration(last_activity.load())) + options.idle_exit);
        if (!nap(s, until, false)) return;
      } else {
        failures = 0;
        if (st == ClaimStatus::ok) break;
      }
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
    // stop_now() came while we claimed: give the job back untouched (not
    // retried on a backend error: stop_now means now; the job then comes
    // back at its deadline).
    std::error_code ec;
    const bool ok = s.from->queue->give_back(s.job.lease, ec) == LeaseStatus::ok;  // untried: not an attempt
    JobReport r;
    r.result = ec ? JobResult::unconfirmed : ok ? JobResult::abandoned : JobResult::lease_lost;
    r.backend_error = ec;
    tally(s.counts, r.result);
    call_hook(options.hooks.on_claim, std::as_const(s.job));
    if (ec) backend_error(s.from->queue->name(), "give_back", ec, &s.job, milliseconds{0});
    if (r.result != JobResult::unconfirmed)
      call_hook(ok ? options.hooks.on_abandon : options.hooks.on_lease_lost, std::as_const(s.job));
    call_hook(options.hooks.on_done, std::as_const(s.job), std::as_const(r));
    return;
  }
  {
    std::lock_guard lock(mu);
    s.active = true;
    s.lease = s.job.lease;
    s.deadline = s.job.deadline;
    s.next_extend = Clock::now() + s.from->interval;
    s.extend_failures = 0;
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

void Worker::Impl::tally(WorkerSummary& counts, JobResult result) noexcept {
  switch (result) {
    case JobResult::acked:
      ++counts.acked;
      break;
    case JobResult::skipped:
      ++counts.skipped;
      break;
    case JobResult::dropped:
      ++counts.dropped;
      break;
    case JobResult::retried:
      ++counts.retried;
      break;
    case JobResult::dead:
      ++counts.dead;
      break;
    case JobResult::lease_lost:
      ++counts.lease_lost;
      break;
    case JobResult::abandoned:
      ++counts.abandoned;
      break;
    case JobResult::unconfirmed:
      ++counts.unconfirmed;
      break;
  }
}

// The handler threw. With an on_error hook, the hook decides what to say;
// without one, a line on stderr, so that a failing handler is never retried
// in silence (issue 14 item 9). One write(2) per line, so that lines from
// several handler threads do not interleave.
void Worker::Impl::report_error(const Slot& s, std::string_view what) const noexcept {
  const Job& job = s.job;
  if (options.hooks.on_error) {
    call_hook(options.hooks.on_error, job, what);
    return;
  }
  try {
    std::string line = "jobring worker: queue '";
    line.append(s.from->queue->name()).append("': job ").append(std::to_string(job.id));
    line.append(" (attempt ").append(std::to_string(job.attempt)).append(") failed: ");
    line.append(what.empty() ? std::string_view("an exception with no message") : what.substr(0, 1000));
    line.append(" (set WorkerOptions::hooks.on_error to report errors yourself)\n");
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  } catch (...) {  // out of memory: nothing more to say
  }
}

JobReport Worker::Impl::finish(Slot& s, Outcome outcome, bool threw, std::string_view error,
                               std::chrono::nanoseconds duration) {
  if (threw) {
    ++s.counts.errors;
    outcome = Outcome::retry(error);  // what() is the reason kept with a dead job
    report_error(s, error);
  }
  Lease current;
  Clock::time_point deadline;
  bool lost = false;
  bool abandoned = false;
  {
    std::unique_lock lock(mu);
    hooks_done.wait(lock, [&] { return !s.hb_busy; });
    s.active = false;  // from here on the heartbeat leaves the lease alone
    current = s.lease;
    deadline = s.deadline;
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
    end_lease(s, outcome, current, deadline, r);
    if (r.result == JobResult::lease_lost) call_hook(options.hooks.on_lease_lost, std::as_const(s.job));
  }
  tally(s.counts, r.result);
  return r;
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

Worker::Worker(Queue& queue, Handler handler, WorkerOptions options)
    : Worker(std::vector<std::reference_wrapper<Queue>>{queue}, std::move(handler), std::move(options)) {}

// One Worker for every backend: the Queues are wrapped (AnyQueue::ref, one
// switch per call), kept in w.wrapped, whose elements do not move after this.
Worker::Worker(const std::vector<std::reference_wrapper<Queue>>& queues, Handler handler,
               WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(handler), std::move(options))) {
  Impl& w = *impl_;
  w.wrapped.reserve(queues.size());
  for (Queue& q : queues) w.wrapped.push_back(AnyQueue::ref(q));
  for (AnyQueue& q : w.wrapped) w.served.push_back(Impl::Served{&q});
  start();
}

Worker::Worker(AnyQueue& queue, Handler handler, WorkerOptions options)
    : Worker(std::vector<std::reference_wrapper<AnyQueue>>{queue}, std::move(handler), std::move(options)) {}

Worker::Worker(const std::vector<std::reference_wrapper<AnyQueue>>& queues, Handler handler,
               WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(handler), std::move(options))) {
  for (AnyQueue& q : queues) impl_->served.push_back(Impl::Served{&q});
  start();
}

void Worker::start() {
  Impl& w = *impl_;
  const WorkerOptions& o = w.options;
  std::string names;
  for (const auto& s : w.served) names += (names.empty() ? "'" : ", '") + s.queue->name() + "'";
  auto invalid = [&](const std::string& what) {
    throw error(
        make_error_code(errc::invalid_argument),
        "jobring::Worker for queue" + std::string(w.served.size() == 1 ? " " : "s ") + names + ": " + what);
  };
  if (w.served.empty() || w.served.size() > Queue::kMaxClaimAny)
    invalid("give 1 to " + std::to_string(Queue::kMaxClaimAny) + " queues");
  if (!o.weights.empty() && o.weights.size() != w.served.size())
    invalid("weights: give one per queue (" + std::to_string(w.served.size()) + "), not " +
            std::to_string(o.weights.size()));
  for (std::size_t i = 0; i < w.served.size(); ++i) {
    if (w.served[i].queue->backend() != w.served[0].queue->backend())
      invalid("the queues must all be on one backend (shared memory, or one Redis URL)");
    for (std::size_t j = 0; j < i; ++j)
      if (w.served[j].queue->incarnation() == w.served[i].queue->incarnation())
        invalid("queue '" + w.served[i].queue->name() + "' is given twice");
    if (!o.weights.empty() && (o.weights[i] < 1 || o.weights[i] > 1000))
      invalid("weights must be from 1 to 1000");
  }
  if (!w.handler) invalid("no handler");
  if (o.lease.count() < 0 || o.lease > kMaxLease) invalid("lease out of range (0 or 1 ms .. 7 days)");
  if (!(o.extend_fraction > 0.0 && o.extend_fraction < 1.0)) invalid("extend_fraction must be in (0, 1)");
  for (std::size_t i = 0; i < w.served.size(); ++i) {
    Impl::Served& s = w.served[i];
    s.lease = o.lease.count() > 0 ? o.lease : s.queue->options().default_lease;
    s.interval = std::max(
        milliseconds{1},
        milliseconds{static_cast<std::int64_t>(static_cast<double>(s.lease.count()) * o.extend_fraction)});
    s.max_attempts = s.queue->options().max_attempts;
    s.weight = o.weights.empty() ? 1 : o.weights[i];
  }
  if (o.backoff.base.count() < 0 || o.backoff.cap < o.backoff.base || o.backoff.cap > kMaxLease)
    invalid("backoff must have 0 <= base <= cap <= 7 days");
  if (o.backend_retry.base.count() < 1 || o.backend_retry.cap < o.backend_retry.base ||
      o.backend_retry.cap > kMaxLease)
    invalid("backend_retry must have 1 ms <= base <= cap <= 7 days");
  if (o.grace.count() < 0) invalid("negative grace period");
  if (o.idle_exit.count() < 0 || o.idle_exit > kMaxLease) invalid("idle_exit out of range (0 .. 7 days)");
  if (o.threads < 1 || o.threads > 1024) invalid("threads must be from 1 to 1024");
  w.slots = std::make_unique<Impl::Slot[]>(o.threads);
  std::uint64_t seed = o.seed != 0 ? o.seed
                                   : static_cast<std::uint64_t>(::getpid()) << 32 ^
                                         static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                                         reinterpret_cast<std::uintptr_t>(this);
  for (unsigned i = 0; i < o.threads; ++i) w.slots[i].rng = detail::splitmix64(seed);
  w.hb_rng = detail::splitmix64(seed);
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
    sum.unconfirmed += c.unconfirmed;
    sum.errors += c.errors;
  }
  sum.backend_errors = w.backend_errors.load();
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
  detail::g_stop_now.store(false);
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = jobring_on_stop_signal;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

}  // namespace jobring
