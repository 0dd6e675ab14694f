// jobring — the Worker's heartbeat thread: extends the leases of the jobs in
// hand, and gives them back when the grace period after a stop runs out.
//
// Backend errors (a Redis call that failed: unavailable, timeout, ...) are
// not lost leases: the lease may well still be ours. An extension that fails
// so is tried again (WorkerOptions::backend_retry, never after the lease's
// deadline as this host sees it); only when the deadline has passed without
// a successful extension is the lease taken as lost (lease_lost, reported as
// on a token mismatch): another worker may claim the job from then on. A
// give-back at the end of the grace period that fails so is not retried:
// the job is abandoned either way, and comes back at its deadline at the
// latest.

#include "runtime/worker_impl.hpp"

namespace jobring {

using detail::call_hook;
using detail::ceil_ms;

// Carries out `due` (decided under mu; the slot is hb_busy, so the handler's
// thread waits in finish() and the slot's job, lease and queue stay put),
// then clears hb_busy. Called without mu.
void Worker::Impl::tend(const Due& due) {
  Slot& s = slots[due.slot];
  AnyQueue& queue = *s.from->queue;
  std::error_code ec;
  enum class End { kept, lost, abandoned } end = End::kept;
  milliseconds retry_in{0};
  if (due.release) {
    // Give the job back at once (no delay): another worker can take it. If
    // the process dies right after, the job is ready: nothing lost. release,
    // not give_back: the attempt counts. A job that hangs its handler is
    // abandoned on every restart; counted, it is dead-lettered after
    // max_attempts instead of cycling for ever. A backend error leaves the
    // release unknown: abandoned all the same (the result is discarded), and
    // the job is back at its deadline at the latest.
    const LeaseStatus st = queue.release(due.lease, milliseconds{0}, {}, ec);
    end = st == LeaseStatus::ok || ec ? End::abandoned : End::lost;
    std::lock_guard lock(mu);
    (end == End::abandoned ? s.abandoned : s.lost).store(true, std::memory_order_seq_cst);
  } else {
    Lease lease = due.lease;
    const auto sent = Clock::now();
    const LeaseStatus st = queue.extend(lease, s.from->lease, ec);  // a new token on success
    const auto t = Clock::now();
    std::lock_guard lock(mu);
    if (!ec && st == LeaseStatus::ok) {
      s.lease = lease;
      s.deadline = sent + s.from->lease;  // the queue's deadline is later than this
      s.next_extend = sent + s.from->interval;
      s.extend_failures = 0;
    } else if (ec && t < s.deadline) {
      // Unknown: the lease is ours until its deadline at least. Try again
      // after a backoff, at the deadline at the latest (then it is lost).
      retry_in = retry_delay(s, ++s.extend_failures);
      s.next_extend = std::min(t + retry_in, s.deadline);
      retry_in = std::max(milliseconds{1}, std::chrono::ceil<milliseconds>(s.next_extend - t));
    } else {
      // lease_lost (the token changed: another worker has the job), or backend
      // errors until the deadline passed (another worker may have it now).
      end = End::lost;
      s.lost.store(true, std::memory_order_seq_cst);
    }
  }
  if (end != End::kept) detail::notify(s.event);  // a handler in ctx.sleep_for() sees it
  if (ec) backend_error(queue.name(), due.release ? "release" : "extend", ec, &s.job, retry_in);
  // The hooks outside mu; the handler's thread waits (hb_busy) before it
  // reuses the slot's Job, so the hook may read it.
  if (end == End::lost) call_hook(options.hooks.on_lease_lost, std::as_const(s.job));
  if (end == End::abandoned) call_hook(options.hooks.on_abandon, std::as_const(s.job));
  {
    std::lock_guard lock(mu);
    s.hb_busy = false;
  }
  hooks_done.notify_all();
}

void Worker::Impl::heartbeat_loop() {
  const unsigned n = options.threads;
  std::vector<Due> due;
  due.reserve(n);  // the loop below allocates nothing
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
      if (stopping() && !stop_seen) {
        stop_seen = true;
        grace_end = options.grace > std::chrono::hours(24 * 365)  // kForever
                        ? Clock::time_point::max()
                        : t + options.grace;
      }
      const bool release_all = stop_now_requested() || (stop_seen && t >= grace_end);
      for (unsigned i = 0; i < n; ++i) {
        Slot& s = slots[i];
        if (!s.active || s.hb_busy || s.lost.load(std::memory_order_relaxed) ||
            s.abandoned.load(std::memory_order_relaxed))
          continue;
        if (release_all || t >= s.next_extend) {
          s.hb_busy = true;
          due.push_back(Due{i, release_all, s.lease});
          continue;
        }
        any_active = true;
        sleep = std::min(sleep, s.next_extend - t);
        if (stop_seen && grace_end != Clock::time_point::max()) sleep = std::min(sleep, grace_end - t);
      }
    }
    if (!due.empty()) {
      for (const Due& d : due) tend(d);
      due.clear();
      continue;
    }
    // While jobs are in hand, look at least every kMaxSleep: a stop whose
    // interrupt_waits() found the sleeper table full is noticed that late.
    const milliseconds cap = any_active ? detail::kMaxSleep : std::chrono::hours(1);
    detail::sleep_on(hb_event, expected, ceil_ms(sleep), cap);
  }
}

}  // namespace jobring
