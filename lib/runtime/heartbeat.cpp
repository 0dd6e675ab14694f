// jobring — the Worker's heartbeat thread: extends the leases of the jobs in
// hand, and gives them back when the grace period after a stop runs out.

#include "runtime/worker_impl.hpp"

namespace jobring {

using detail::call_hook;
using detail::ceil_ms;

// Looks after slot i at time t: gives its job back (release_all) or extends
// its lease when due. True if the slot still holds a lease to look after.
// Called under mu.
bool Worker::Impl::tend(unsigned i, Clock::time_point t, bool release_all, std::vector<unsigned>& lost_now,
                        std::vector<unsigned>& abandoned_now) {
  Slot& s = slots[i];
  if (!s.active || s.lost.load(std::memory_order_relaxed) || s.abandoned.load(std::memory_order_relaxed))
    return false;
  if (release_all) {
    // Give the job back at once (no delay): another worker can take it. If
    // the process dies right after, the job is ready: nothing lost. release,
    // not give_back: the attempt counts. A job that hangs its handler is
    // abandoned on every restart; counted, it is dead-lettered after
    // max_attempts instead of cycling for ever.
    if (s.from->queue->release(s.lease, milliseconds{0}) == LeaseStatus::ok) {
      s.abandoned.store(true, std::memory_order_seq_cst);
      abandoned_now.push_back(i);
    } else {
      s.lost.store(true, std::memory_order_seq_cst);
      lost_now.push_back(i);
    }
    s.hook_pending = true;
    detail::notify(s.event);
    return false;
  }
  if (t >= s.next_extend) {
    LeaseStatus st = LeaseStatus::lease_lost;
    try {
      st = s.from->queue->extend(s.lease, s.from->lease);  // updates s.lease.token on success
    } catch (...) {  // only for a lease out of range: checked by the constructor
    }
    if (st != LeaseStatus::ok) {
      s.lost.store(true, std::memory_order_seq_cst);
      s.hook_pending = true;
      lost_now.push_back(i);
      detail::notify(s.event);
      return false;
    }
    s.deadline = t + s.from->lease;
    s.next_extend = t + s.from->interval;
  }
  return true;
}

// The hooks of the slots whose lease was lost or given back, outside the
// lock; the handler's thread waits (hook_pending) before it reuses the slot's
// Job, so the hook may read it.
void Worker::Impl::call_lease_hooks(std::vector<unsigned>& lost_now, std::vector<unsigned>& abandoned_now) {
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
}

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
      if (stopping() && !stop_seen) {
        stop_seen = true;
        grace_end = options.grace > std::chrono::hours(24 * 365)  // kForever
                        ? Clock::time_point::max()
                        : t + options.grace;
      }
      const bool release_all = stop_now_requested() || (stop_seen && t >= grace_end);
      for (unsigned i = 0; i < n; ++i) {
        if (!tend(i, t, release_all, lost_now, abandoned_now)) continue;
        any_active = true;
        sleep = std::min(sleep, slots[i].next_extend - t);
        if (stop_seen && grace_end != Clock::time_point::max()) sleep = std::min(sleep, grace_end - t);
      }
    }
    if (!lost_now.empty() || !abandoned_now.empty()) {
      call_lease_hooks(lost_now, abandoned_now);
      continue;
    }
    // While jobs are in hand, look at least every kMaxSleep: a stop whose
    // interrupt_waits() found the sleeper table full is noticed that late.
    const milliseconds cap = any_active ? detail::kMaxSleep : std::chrono::hours(1);
    detail::sleep_on(hb_event, expected, ceil_ms(sleep), cap);
  }
}

}  // namespace jobring
