// jobring — the worker runtime: runs a handler per job, keeps its lease alive,
// acks or retries with backoff, and stops gracefully.
//
//   jobring::Queue queue = jobring::Queue::open("orders");
//   jobring::Worker worker(queue, [](const jobring::Job& job, jobring::JobContext& ctx) {
//     handle(job.text());                   // throw, or return Outcome::retry(), to try again later
//     return jobring::Outcome::ack();
//   }, {.lease = 30s, .backoff = {.base = 1s, .cap = 5min}, .grace = 20s});
//   jobring::Worker::install_signal_handlers();  // SIGTERM / SIGINT stop it gracefully
//   const jobring::WorkerSummary s = worker.run();  // returns after a stop (or max_jobs / idle_exit)
//
// What run() does, per job:
//
//   claim (blocks without CPU until a job comes, or a stop)
//     → hooks.on_claim
//     → handler(job, ctx) on the calling thread; meanwhile the Worker's
//       heartbeat thread extends the lease every lease × extend_fraction
//     → Outcome::ack / skip / drop: ack (the job is deleted)
//       Outcome::retry / an exception: release with backoff (below)
//       Outcome::retry_after(d): release with delay d
//     → hooks.on_done with the result
//
// Backends. The Worker runs on a jobring::Queue (shared memory) or on any
// AnyQueue (any_queue.hpp: shared memory, or Redis by URL); one
// implementation serves both (a Queue is wrapped with AnyQueue::ref: one
// switch per queue call). Hooks, backoff, stops, idempotent() behave the
// same on both; what differs is below (Backend errors) and that on Redis a
// blocked claim notices request_stop() within a second (not at once), and a
// dead worker's job comes back at its lease's deadline (no janitor proves
// the death earlier).
//
// Lease extension. Queue::extend() changes the lease's token (the fencing
// value), so the heartbeat and the handler's thread share the job's current
// Lease under a mutex, and the final ack / release uses the latest token. If
// an extension fails (lease_lost: the lease ran out and another worker took
// the job over — the heartbeat was starved for 2/3 of a lease, or the process
// was stopped), ctx.lease_lost() turns true at once, hooks.on_lease_lost is
// called, and the handler's result is discarded: it cannot be acked (the ack
// would be rejected) and must not be released (the job is someone else's).
// The handler should stop work it cannot make idempotent (see idempotent.hpp).
//
// Backoff. A job that fails on attempt n (Job::attempt, 1 on the first claim)
// is released with
//     d      = min(cap, base × 2^(n-1))
//     delay  = d                       Jitter::none
//              uniform in [0, d]       Jitter::full
//              d/2 + uniform [0, d/2]  Jitter::equal (the default: never less than half)
// (backoff_delay() below computes it.) Poison jobs: the dead state belongs to
// the queue. Create the queue with Options::max_attempts = N: a release of a
// job on its N-th attempt (or an expiry of its lease) dead-letters it, where
// operators see it (`jobring peek NAME --state dead`) and requeue it. The
// Worker reads the queue's max_attempts: JobContext::last_attempt() tells the
// handler, and on_done reports JobResult::dead. There is no worker-side
// attempt limit on purpose: a worker cannot move a job to the dead state
// (the queue has no "bury" operation), so a limit of its own could only delete
// the job or retry it for ever. On a queue without max_attempts a failing job
// is retried for ever, at most `cap` apart.
//
// Outcome::drop() is a handler's permanent failure ("this job can never
// succeed"): the job is acked (deleted) and reported as JobResult::dropped.
// To keep it for inspection, push it to a queue of your own first.
//
// Stopping. request_stop() (or SIGTERM / SIGINT after install_signal_handlers(),
// or any call of jobring::interrupt_waits() in the process) makes run() stop
// claiming. A job in hand gets `grace` to finish: ctx.stopping() turns true,
// and ctx.sleep_for() returns early, so a handler can hurry. When the grace
// period runs out (or at once on stop_now() / a second signal) the heartbeat
// releases the job with no delay — another worker can claim it at once —,
// ctx.abandoned() turns true and hooks.on_abandon is called. A thread cannot
// be killed in-process, so the handler keeps running until it returns; its
// result is then discarded (the job is no longer ours) and run() returns.
// Meanwhile another worker may already be doing the job: a handler that
// ignores ctx.cancelled() must be idempotent. If your handler can block for
// ever, end the process in on_abandon (std::_Exit): the job is already back in
// the queue. (`jobring work` runs a command per job and kills its process
// group instead.) A job claimed just as the stop came is still handled
// (within the grace period). An abandoned job's attempt counts (it ran, and
// a job that hangs its handler must not cycle through restarts for ever):
// abandoned on its last attempt, it is dead-lettered (requeue it). Only a
// job claimed as stop_now() came, before its handler started, is given back
// without counting (Queue::give_back).
//
// request_stop() and stop_now() stop this Worker only: its claims wait with
// their own stop flag (ClaimOptions::stop) and are woken by wake_waits();
// other Workers of the process run on. What stops every Worker of the
// process: SIGTERM / SIGINT after install_signal_handlers(), and any call of
// jobring::interrupt_waits(). After one of those, call
// jobring::clear_interrupt() before running a new Worker. A Worker runs once:
// construct a new one to run again.
//
// Threads. The handler runs on the thread that called run(), and on
// options.threads - 1 more threads that run() starts and joins. One
// heartbeat thread per Worker, started by the constructor, extends every job
// in hand; it allocates nothing per job. Hooks on_claim, on_error and on_done
// run on the handler's thread; on_lease_lost and on_abandon on the heartbeat
// thread, at the moment it happens (keep them short: they delay the other
// jobs' extensions; the Job stays valid during the call) — except that a
// lease found lost at the final ack / release, and a job given back untouched
// because stop_now() came while it was being claimed, are reported on the
// handler's thread. Each job gets at most one of on_lease_lost / on_abandon.
// An exception escaping a hook is caught and ignored. on_backend_error runs on
// the thread whose call failed (a claim or the final ack / release: the
// handler's; an extension or the grace period's release: the heartbeat's).
//
// Backend errors. Shared memory never fails a call. On Redis any call can
// fail (errc::unavailable: connection refused or dropped; errc::timeout: no
// answer within RedisOptions::io_timeout; errc::server_error, ...), and then
// whether it took effect is unknown. The Worker never gives up, never spins,
// never hangs and never loses a job over one; each failed call is counted in
// WorkerSummary::backend_errors and reported to hooks.on_backend_error (else
// a line on stderr), with when it will be tried again:
//   claim    nothing claimed: wait (WorkerOptions::backend_retry: 100 ms
//            doubling to 5 s, jittered; woken by a stop) and claim again, for
//            as long as the outage lasts. idle_exit still applies.
//   extend   not a lost lease: the lease runs until its deadline (as this
//            host sees it, never later than the server's). Tried again with
//            the same backoff, never past the deadline; if no extension got
//            through by then, the lease is lost (on_lease_lost,
//            JobResult::lease_lost), as another worker may claim the job
//            from then on. (A timed-out extension may still run on the
//            server later and change the token: the next extension then
//            finds the lease lost, and the job comes back when that lease
//            runs out.)
//   ack / release / give_back (the final call)
//            sent again with the same backoff while the lease surely runs
//            (before its deadline; not after stop_now()): a repeat is
//            harmless (a repeat of a call that went through answers
//            lease_lost and changes nothing). If no try got an answer, or a
//            repeat answered lease_lost, the result is JobResult::unconfirmed
//            (WorkerSummary::unconfirmed, JobReport::backend_error): the ack
//            or release may have happened; if it did not, the job comes back
//            when its lease runs out, attempt counted, and is done again
//            (idempotent() skips it if the handler acked). Not lease_lost:
//            nobody took the job over, the server did not answer; operators
//            tell a starved heartbeat from an outage by it.
//   release at the end of the grace period
//            not retried: the job is abandoned either way (the result is
//            discarded) and comes back at once or at its deadline.
//
// Memory ordering: a hook or the handler sees the Job as the claim filled it
// in; everything the handler did happens-before its on_done call and the
// ack / release (same thread). Flags read through JobContext are seq_cst.
//
// Crash safety. The Worker keeps nothing in shared memory (or on the server)
// beyond what the queue calls do. If the process dies at any point, its job
// in hand is leased (claimed, not acked): it comes back when its lease runs
// out (at most one lease, as the heartbeat stops with the process), or, on
// shared memory, at once via the janitor, whose proof of death covers the
// process-owned leases the Worker takes by default. Died after the handler's
// side effect but before the ack: the job runs again (at-least-once) — see
// idempotent.hpp, which works unchanged on both backends.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/queue.hpp"

namespace jobring {

// What a handler decides.
class Outcome {
 public:
  enum class Kind {
    ack,          // done: ack (the job is deleted)
    skip,         // already done earlier (idempotent consumer): ack, reported as skipped
    retry,        // failed: release with the Worker's backoff
    retry_after,  // failed: release with delay()
    drop,         // can never succeed: ack, reported as dropped
  };
  [[nodiscard]] static constexpr Outcome ack() noexcept { return Outcome(Kind::ack, milliseconds{0}); }
  [[nodiscard]] static constexpr Outcome skip() noexcept { return Outcome(Kind::skip, milliseconds{0}); }
  [[nodiscard]] static constexpr Outcome retry() noexcept { return Outcome(Kind::retry, milliseconds{0}); }
  // `delay` is clamped to 0 .. kMaxLease; no jitter is added.
  [[nodiscard]] static constexpr Outcome retry_after(milliseconds delay) noexcept {
    return Outcome(Kind::retry_after, delay);
  }
  // With the reason the attempt failed: if this retry is the job's last
  // attempt, the queue keeps it with the dead job (Queue::release's
  // `error`; `jobring peek --state dead` shows it). Cut to kMaxErrorLength
  // bytes on a UTF-8 boundary. A handler that throws gets the exception's
  // what() kept the same way.
  [[nodiscard]] static constexpr Outcome retry(std::string_view reason) noexcept {
    return Outcome(Kind::retry, milliseconds{0}, reason);
  }
  [[nodiscard]] static constexpr Outcome retry_after(milliseconds delay, std::string_view reason) noexcept {
    return Outcome(Kind::retry_after, delay, reason);
  }
  [[nodiscard]] static constexpr Outcome drop() noexcept { return Outcome(Kind::drop, milliseconds{0}); }

  [[nodiscard]] constexpr Kind kind() const noexcept { return kind_; }
  [[nodiscard]] constexpr milliseconds delay() const noexcept { return delay_; }
  [[nodiscard]] constexpr std::string_view reason() const noexcept { return {reason_.data(), reason_size_}; }
  friend constexpr bool operator==(const Outcome&, const Outcome&) = default;

 private:
  constexpr Outcome(Kind k, milliseconds d, std::string_view reason = {}) noexcept : kind_(k), delay_(d) {
    const std::string_view cut = utf8_prefix(reason, kMaxErrorLength);
    for (std::size_t i = 0; i < cut.size(); ++i) reason_[i] = cut[i];
    reason_size_ = cut.size();
  }
  Kind kind_;
  milliseconds delay_;
  // In the object, not on the heap: an Outcome stays a literal type and
  // cheap to return (the reason is short by design).
  std::array<char, kMaxErrorLength> reason_{};
  std::size_t reason_size_ = 0;
};

enum class Jitter { none, full, equal };

struct Backoff {
  milliseconds base{1000};    // delay after a failed first attempt (before jitter); >= 0
  milliseconds cap{300'000};  // longest delay; base .. kMaxLease
  Jitter jitter = Jitter::equal;
};

// The release delay after a failure on `attempt` (1-based; 0 counts as 1),
// by the formula above; `random` is a uniformly random 64-bit value.
[[nodiscard]] milliseconds backoff_delay(const Backoff& backoff, std::uint32_t attempt,
                                         std::uint64_t random) noexcept;

// How a job ended, for hooks.on_done and the summary.
enum class JobResult {
  acked,       // Outcome::ack, ack succeeded
  skipped,     // Outcome::skip, ack succeeded
  dropped,     // Outcome::drop, ack succeeded
  retried,     // released with a delay (Outcome::retry / retry_after / an exception)
  dead,        // released on the last attempt: the queue dead-lettered it
  lease_lost,  // the lease was lost (extension or final ack / release failed): result discarded
  abandoned,   // the grace period ran out (or stop_now): released by the heartbeat, result discarded
  // The final ack / release (or give_back) failed with a backend error (Redis:
  // unavailable, timeout) and retries until the lease's deadline did not get
  // an answer: it may or may not have taken effect. If it did not, the job
  // comes back when its lease runs out (attempt counted).
  unconfirmed,
};

struct JobReport {
  JobResult result = JobResult::acked;
  Outcome outcome = Outcome::ack();      // what the handler returned (retry if it threw)
  milliseconds delay{0};                 // the release delay (retried)
  std::chrono::nanoseconds duration{0};  // time in the handler
  std::string_view error;                // the exception's what(), if the handler threw
  std::error_code backend_error;         // the last backend error of the final call (unconfirmed)
};

// A call to the queue's backend that failed (on Redis: errc::unavailable,
// errc::timeout, errc::server_error, ...; shared memory never fails so).
struct BackendError {
  std::string_view queue;      // the queue's name (a claim on several queues: the first's)
  std::string_view operation;  // "claim", "extend", "ack", "release", "give_back"
  std::error_code code;
  const Job* job = nullptr;  // the job in hand; nullptr for "claim"
  milliseconds retry_in{0};  // when the Worker tries again; 0: it does not (the job is reported)
};

struct WorkerHooks {
  std::function<void(const Job&)> on_claim;                         // before the handler
  std::function<void(const Job&, const JobReport&)> on_done;        // after the ack / release
  std::function<void(const Job&, std::string_view what)> on_error;  // the handler threw
  std::function<void(const Job&)> on_lease_lost;                    // once per job, when found
  std::function<void(const Job&)> on_abandon;  // the job was released at the end of the grace period
  // A backend call failed (see "Backend errors" above); without this hook, a
  // line on stderr.
  std::function<void(const BackendError&)> on_backend_error;
};

// milliseconds::max(): no limit (for WorkerOptions::grace).
inline constexpr milliseconds kForever = milliseconds::max();

struct WorkerOptions {
  milliseconds lease{0};             // per claim; 0 = the default_lease of the job's queue
  double extend_fraction = 1.0 / 3;  // extend every lease × this (0 < f < 1; at least every 1 ms)
  Backoff backoff{};
  // After a stop request, how long a job in hand may take before it is
  // released (0: released at once; kForever: wait for the handler).
  milliseconds grace{30'000};
  unsigned threads = 1;          // jobs at once (handler threads), 1 .. 1024
  std::uint64_t max_jobs = 0;    // return after this many claims have been handled; 0 = no limit
  milliseconds idle_exit{0};     // return when no job was in hand for this long; 0 = never
  Owner owner = Owner::process;  // of the leases (see ClaimOptions)
  WorkerHooks hooks{};
  // A Worker of several queues (the constructor that takes them): empty =
  // strict priority in the order given (a queue is served only while every
  // queue before it is empty); else one weight per queue, 1 .. 1000: each
  // claim tries the queues in a fresh random order in which a queue comes
  // first with probability weight / (sum of weights), and so on among the
  // rest. So among the queues that have jobs, each gets claims in
  // proportion to its weight, and none starves.
  std::vector<unsigned> weights{};
  // Seeds the Worker's random draws (the weighted order, the backoff
  // jitter): 0 = from the PID, the clock and the object's address; any other
  // value repeats the same draws (tests, simulations).
  std::uint64_t seed = 0;
  // The wait before trying a failed backend call again (a claim, an
  // extension, the final ack / release): base × 2^(failures-1), at most cap.
  Backoff backend_retry{.base = milliseconds{100}, .cap = milliseconds{5000}, .jitter = Jitter::equal};
};

struct WorkerSummary {
  std::uint64_t claimed = 0;
  std::uint64_t acked = 0;  // JobResult::acked
  std::uint64_t skipped = 0;
  std::uint64_t dropped = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead = 0;
  std::uint64_t lease_lost = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t unconfirmed = 0;
  std::uint64_t errors = 0;          // handler exceptions (each also counted as retried or dead, or lost)
  std::uint64_t backend_errors = 0;  // failed backend calls (each reported to on_backend_error)
  bool stopped = false;              // run() returned because of a stop request
};

class JobContext;

class Worker {
 public:
  using Handler = std::function<Outcome(const Job&, JobContext&)>;

  // Throws jobring::error(invalid_argument) for options out of range. `queue`
  // must outlive the Worker. Starts the heartbeat thread.
  Worker(Queue& queue, Handler handler, WorkerOptions options = {});
  // Serves several queues (1 .. Queue::kMaxClaimAny, each once), strict or
  // weighted (WorkerOptions::weights): Worker({urgent, normal, bulk}, h).
  // With nothing to do it sleeps on all of them at once (Queue::claim_any).
  // JobContext::queue() tells the handler where a job came from; each job is
  // acked, released and extended in its own queue, with its queue's
  // default_lease and max_attempts.
  Worker(const std::vector<std::reference_wrapper<Queue>>& queues, Handler handler,
         WorkerOptions options = {});
  // The same on any backend (any_queue.hpp): a queue on shared memory or on
  // Redis. Several queues must all be on one backend (AnyQueue::claim_any).
  Worker(AnyQueue& queue, Handler handler, WorkerOptions options = {});
  Worker(const std::vector<std::reference_wrapper<AnyQueue>>& queues, Handler handler,
         WorkerOptions options = {});
  // Stops and joins the heartbeat. Do not destroy a Worker while run() runs.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Claims and handles jobs until a stop request, max_jobs or idle_exit; then
  // waits for the jobs in hand (see Stopping above) and returns. Call it once.
  WorkerSummary run();

  // Async-signal-safe. Stop claiming; jobs in hand get the grace period.
  // Stops this Worker only (see above).
  void request_stop() noexcept;
  // Async-signal-safe. Stop claiming and release the jobs in hand at once
  // (their attempts count; a job claimed but not yet started is given back
  // uncounted).
  void stop_now() noexcept;
  [[nodiscard]] bool stop_requested() const noexcept;

  // Installs SIGTERM and SIGINT handlers for the whole process: the first
  // signal stops every Worker gracefully (interrupt_waits()), the second
  // releases their jobs in hand at once (stop_now). Replaces the previous
  // handlers of these signals; calling it again resets the signal count.
  static void install_signal_handlers();

  struct Impl;

 private:
  void start();  // validates the options, resolves the queues, starts the heartbeat
  std::unique_ptr<Impl> impl_;
};

// What a handler sees besides the Job. Valid during the handler call only.
// Thread-safe: the flags may be read from other threads the handler starts.
class JobContext {
 public:
  [[nodiscard]] JobId id() const noexcept;
  [[nodiscard]] std::string_view key() const noexcept;  // de-duplication key, empty if none
  [[nodiscard]] std::uint32_t attempt() const noexcept;
  // The queue dead-letters this job if this attempt fails (Options::max_attempts).
  [[nodiscard]] bool last_attempt() const noexcept;
  // A stop was requested: finish (or give up with Outcome::retry) soon.
  [[nodiscard]] bool stopping() const noexcept;
  // The lease was lost: another worker may have the job; the result is discarded.
  [[nodiscard]] bool lease_lost() const noexcept;
  // The grace period ran out: the job was released; the result is discarded.
  [[nodiscard]] bool abandoned() const noexcept;
  [[nodiscard]] bool cancelled() const noexcept { return lease_lost() || abandoned(); }
  // The current lease (its token changes at every extension) and deadline.
  [[nodiscard]] Lease lease() const;
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const;
  // Sleeps up to `d`; returns false early when the job is cancelled or a stop
  // is requested, true after the whole `d`.
  bool sleep_for(milliseconds d) const;
  // The queue the job came from (a Worker of several queues). queue() is the
  // shared-memory Queue: it throws jobring::error(not_supported) for a job
  // from another backend; any_queue() works on every backend.
  [[nodiscard]] Queue& queue() const;
  [[nodiscard]] AnyQueue& any_queue() const noexcept;
  // Which handler thread runs this job: 0 .. threads - 1.
  [[nodiscard]] unsigned thread_index() const noexcept { return slot_; }

 private:
  friend struct Worker::Impl;
  JobContext(Worker::Impl& worker, unsigned slot, const Job& job) noexcept
      : worker_(worker), slot_(slot), job_(job) {}
  Worker::Impl& worker_;
  unsigned slot_;
  const Job& job_;
};

}  // namespace jobring
