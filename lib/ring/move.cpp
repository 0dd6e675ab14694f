// jobring — moving dead jobs to another queue (Queue::move_dead): a
// dead-letter queue that takes a poison burst out of the ring it filled, and
// the redrive back. Per job: a keyed push into the target (T1, K1..K3, then
// T10 commit-dead or T3 commit), then T11 move-out here.
//
// Crash analysis, per job (the mover M dies ...):
//  - before its T1 in the target: nothing happened; the job is still dead
//    here and the next move takes it.
//  - with the target slot WRITING: T2 frees it (M is proven dead) and K7
//    drops M's claimed key entry; the job is still dead here.
//  - after the commit in the target, before T11 here: the job is in both
//    queues. The next move_dead of this queue pushes it again under the same
//    key, "#moved/<incarnation>/<id>": the target answers duplicate (the key
//    is live while the copy is there, and remembered for the target's
//    dedup_window after it leaves), and only T11 is done. A copy gone from
//    the target for longer than its window arrives a second time:
//    at-least-once, never lost.
//  - after T11: moved.
// A rival requeue or remove_dead of the job between the commit and T11 makes
// T11 fail (it is made only from the word copied): the job then goes on here
// too (requeued) or only there (removed here) — at-least-once again.

#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdio>

#include "ring/core.hpp"
#include "ring/testing.hpp"

namespace jobring {

namespace {

std::atomic<int> g_kill_point{0};

// The move's key in the target: this queue's incarnation and the job's id,
// which no other job of any queue shares.
std::string_view move_key(std::uint64_t incarnation, JobId id, char (&buf)[kMaxKeyLength]) noexcept {
  const int n = std::snprintf(buf, sizeof buf, "#moved/%016" PRIx64 "/%" PRIu64, incarnation, id);
  return {buf, static_cast<std::size_t>(n)};
}

}  // namespace

void detail::set_move_kill_point_for_testing(int point) noexcept {
  g_kill_point.store(point, std::memory_order_relaxed);
}

void detail::move_kill_point(int point) noexcept {
  if (g_kill_point.load(std::memory_order_relaxed) == point) ::raise(SIGKILL);
}

void Queue::Impl::write_arrival(std::uint32_t i, Word reserved, const detail::Arrival& a) noexcept {
  // Relaxed, like write_job's stores: the T10 CAS (acq_rel) publishes them.
  // Tagged with our WRITING word's generation, as write_job does.
  SlotMeta& m = meta(i);
  m.attempts.store(detail::make_attempts(reserved.gen(), a.attempts), std::memory_order_relaxed);
  m.pushed_at_ms.store(a.pushed_at, std::memory_order_relaxed);
  // The note of the death it had in its source, tagged for the DEAD word
  // that T10 will write (layout.hpp, SlotNote). Dies before T10: T2 frees the
  // slot and the note's tag names no DEAD word.
  if (a.failed_at) detail::write_note(note(i), T::commit_dead.target(reserved, 0), *a.failed_at, a.error);
}

// One job, slot i of this queue, dead as `w`, into `to`. False if `to` had
// no room (the move stops); `moved` says whether this job moved.
bool Queue::Impl::move_one(std::uint32_t i, Word w, Impl& to, const MoveOptions& o, MoveResult& r,
                           bool& moved) {
  moved = false;
  const std::uint64_t now = detail::now_ms();
  JobInfo job;
  // A copy validated against `w` (seqlock-style): false if the job changed.
  if (!detail::read_job(detail::ReadView(*this), i, w, JobState::dead, now, job)) return true;
  if (job.payload.size() > to.max_payload) {
    ++r.too_large;
    return true;
  }
  char buf[kMaxKeyLength];
  const std::string_view key = move_key(incarnation, job.id, buf);
  detail::Arrival a;
  a.dead = !o.as_ready;
  a.attempts = job.attempts;
  a.pushed_at = now >= job.enqueued_ms_ago ? now - job.enqueued_ms_ago : 0;
  if (job.failed_ms_ago && *job.failed_ms_ago <= now) a.failed_at = now - *job.failed_ms_ago;
  a.error = job.error;
  detail::KeyedPush k{key, detail::key_hash(key)};
  k.arrival = &a;
  // A redrive is a new enqueue (as requeue): its age starts now.
  const detail::PushTimes times{0, a.dead ? a.pushed_at : now};
  const std::span<const std::byte> one[1] = {job.payload};
  JobId id = 0;
  const std::size_t n = to.push_pass(one, {&id, 1}, times, std::memory_order_relaxed, &k);
  if (k.outcome != detail::KeyInsert::duplicate) {
    if (n != 1 || k.outcome != detail::KeyInsert::inserted) return false;
    if (!a.dead) to.count(detail::kMovedIn);  // T3 counted it as pushed
  }
  detail::move_kill_point(2);
  // T11, from the word we copied: retried only while the word is unchanged
  // (a weak CAS may fail spuriously).
  Word cur = w;
  while (cur == w && !moved) moved = remove_from(i, cur, T::move_out);
  return true;
}

MoveResult Queue::Impl::move_dead_to(Impl& to, const MoveOptions& o) {
  MoveResult r;
  std::size_t out = 0;
  // Counted, woken and FIFO kept for what moved, also when a copy cannot be
  // allocated (bad_alloc out of move_one).
  struct Settle {
    Impl& q;
    std::size_t& n;
    ~Settle() { q.settle_removal(T::move_out, n); }
  } settle{*this, out};
  for (std::uint32_t i = 0; i < capacity && r.moved < o.limit; ++i) {
    // Acquire: pairs with the T8 (or T10) CAS that made it DEAD, as peek's.
    const Word w{state(i).load(std::memory_order_acquire)};
    if (!w.valid() || w.state() != State::dead) continue;
    bool moved = false;
    const bool room = move_one(i, w, to, o, r, moved);
    if (moved) {
      ++out;
      ++r.moved;
    }
    if (!room) {
      r.target_full = true;
      break;
    }
  }
  return r;
}

MoveResult Queue::move_dead(Queue& to, const MoveOptions& options) {
  if (to.impl_->incarnation == impl_->incarnation)
    detail::throw_error(impl_->name, make_error_code(errc::invalid_argument),
                        "cannot move dead jobs into their own queue: give another queue");
  return impl_->move_dead_to(*to.impl_, options);
}

MoveResult Queue::move_dead(Queue& to, const MoveOptions& options, std::error_code& ec) noexcept {
  ec.clear();
  if (to.impl_->incarnation == impl_->incarnation) {
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  try {
    return impl_->move_dead_to(*to.impl_, options);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
}

}  // namespace jobring
