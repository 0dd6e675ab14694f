// jobring — the Worker's backend errors (a queue call that failed:
// unavailable, timeout, ...; see worker.hpp, WorkerOptions::backend_retry):
// the delay before a call is tried again, the nap until then, the report
// (on_backend_error, or a line on stderr), and the end of a handled job's
// lease (ack or release), tried again while the lease is surely ours. The
// claim's retry is in worker.cpp's loop(), the extension's in heartbeat.cpp.

#include <unistd.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "runtime/worker_impl.hpp"

namespace jobring {

using detail::call_hook;
using detail::ceil_ms;

milliseconds Worker::Impl::retry_delay(std::uint64_t& rng, std::uint32_t n) const noexcept {
  return std::max(milliseconds{1}, backoff_delay(options.backend_retry, n, detail::splitmix64(rng)));
}

bool Worker::Impl::nap(Slot& s, Clock::time_point until, bool only_stop_now) const {
  for (;;) {
    const std::uint32_t expected = detail::prepare_wait(s.event);
    if (only_stop_now ? stop_now_requested() : stopping()) return false;
    const auto t = Clock::now();
    if (t >= until) return true;
    detail::sleep_on(s.event, expected, ceil_ms(until - t));
  }
}

// Without an on_backend_error hook, a line on stderr (one write(2)), as for
// a handler's exception: a Worker never fails in silence.
void Worker::Impl::backend_error(std::string_view queue, std::string_view operation,
                                 const std::error_code& ec, const Job* job, milliseconds retry_in) noexcept {
  backend_errors.fetch_add(1, std::memory_order_relaxed);
  if (options.hooks.on_backend_error) {
    call_hook(
        options.hooks.on_backend_error,
        BackendError{.queue = queue, .operation = operation, .code = ec, .job = job, .retry_in = retry_in});
    return;
  }
  try {
    std::string line = "jobring worker: queue '";
    line.append(queue).append("': ").append(operation);
    if (job != nullptr) line.append(" of job ").append(std::to_string(job->id));
    line.append(" failed: ").append(ec.message());
    if (retry_in.count() > 0)
      line.append("; trying again in ").append(std::to_string(retry_in.count())).append(" ms");
    line.append(" (set WorkerOptions::hooks.on_backend_error to report these yourself)\n");
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  } catch (...) {  // out of memory: nothing more to say
  }
}

// The handler's outcome, carried out on the job's lease `current`: ack, or
// release (with a backoff, or its own delay); r.result says how it went.
//
// A backend error leaves the call's effect unknown. The call is sent again
// (WorkerOptions::backend_retry) while the lease is surely ours (before its
// deadline as this host sees it; the heartbeat no longer extends it) and no
// stop_now() came: an ack or release sent twice is harmless (the second
// finds the lease gone: lease_lost). So after an error, lease_lost means
// "done by the earlier try, or the lease ran out": unconfirmed, as is an
// error still there at the deadline. An unconfirmed job is either finished
// (acked or released) or comes back when its lease runs out.
void Worker::Impl::end_lease(Slot& s, const Outcome& outcome, const Lease& current,
                             Clock::time_point deadline, JobReport& r) {
  AnyQueue& queue = *s.from->queue;
  const bool ack = outcome.kind() == Outcome::Kind::ack || outcome.kind() == Outcome::Kind::skip ||
                   outcome.kind() == Outcome::Kind::drop;
  milliseconds delay{0};
  if (outcome.kind() == Outcome::Kind::retry)
    delay = backoff_delay(options.backoff, s.job.attempt, detail::splitmix64(s.rng));
  else if (outcome.kind() == Outcome::Kind::retry_after)
    delay = std::clamp(outcome.delay(), milliseconds{0}, kMaxLease);
  LeaseStatus st = LeaseStatus::lease_lost;
  std::error_code ec;
  std::error_code last_error;
  for (std::uint32_t failures = 0;;) {
    ec.clear();
    // The reason goes with the job if this release dead-letters it.
    st = ack ? queue.ack(current, ec) : queue.release(current, delay, outcome.reason(), ec);
    if (!ec) break;
    last_error = ec;
    const milliseconds d = retry_delay(s.rng, ++failures);
    const auto t = Clock::now();
    const bool retry = t + d < deadline && !stop_now_requested();
    backend_error(queue.name(), ack ? "ack" : "release", ec, &s.job, retry ? d : milliseconds{0});
    if (!retry || !nap(s, t + d, true)) break;
  }
  r.backend_error = last_error;
  if (ec || (last_error && st == LeaseStatus::lease_lost)) {
    r.result = JobResult::unconfirmed;
  } else if (st != LeaseStatus::ok) {
    r.result = JobResult::lease_lost;
  } else if (ack) {
    r.result = outcome.kind() == Outcome::Kind::ack    ? JobResult::acked
               : outcome.kind() == Outcome::Kind::skip ? JobResult::skipped
                                                       : JobResult::dropped;
  } else {
    // The queue dead-letters a release on the last attempt (attempts >=
    // max_attempts, on every backend); attempts change only at a claim, so
    // job.attempt is what the release sees.
    const std::uint32_t max_attempts = s.from->max_attempts;
    const bool last = max_attempts != 0 && s.job.attempt >= max_attempts;
    r.result = last ? JobResult::dead : JobResult::retried;
    r.delay = last ? milliseconds{0} : delay;
  }
}

}  // namespace jobring
