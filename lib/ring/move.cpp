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
//    key, "#moved/<incarnation>/<id>.<generation>": the target answers duplicate (the key
//    is live while the copy is there, and remembered for the target's
//    dedup_window after it leaves), and only T11 is done. A copy gone from
//    the target for longer than its window arrives a second time:
//    at-least-once, never lost.
//  - after T11: moved.
//  - after the commit, before K3 (the key still CLAIMED by M): the next
//    move's insert finds M proven dead, and K7 finds the job committed in
//    its slot (DEAD counts as committed): the key goes LIVE, the answer is
//    duplicate, as above.
// A rival requeue or remove_dead of the job between the commit and T11 makes
// T11 fail (it is made only from the word copied): the job then goes on here
// too (requeued) or only there (removed here) — at-least-once again. A
// rival mover that holds the job's key (alive but stopped between K1 and
// K3) makes the insert answer full after its short wait: that job is left
// (MoveResult::left) and the move goes on with the others.

#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdio>

#include "ring/core.hpp"
#include "ring/testing.hpp"

namespace jobring {

namespace {

std::atomic<int> g_kill_point{0};
std::atomic<int> g_kill_signal{SIGKILL};

// The move's key in the target: this queue's incarnation, the job's id and
// its DEAD word's generation. A retry after a crash sees the same word (T11
// is made only from it), so the same key, and the target answers duplicate;
// the same job dead again later (requeued by a rival between the commit and
// T11, then failed again) has a new word, so a new key: its new death moves
// too, with its own note. Producers cannot push keys of this prefix
// (kMoveKeyPrefix, push.cpp).
std::string_view move_key(std::uint64_t incarnation, JobId id, std::uint64_t gen,
                          char (&buf)[kMaxKeyLength]) noexcept {
  const int n = std::snprintf(buf, sizeof buf, "%.*s%016" PRIx64 "/%" PRIu64 ".%" PRIu64,
                              static_cast<int>(detail::kMoveKeyPrefix.size()), detail::kMoveKeyPrefix.data(),
                              incarnation, id, gen);
  return {buf, static_cast<std::size_t>(n)};
}

}  // namespace

void detail::set_move_kill_point_for_testing(int point, int signal) noexcept {
  g_kill_signal.store(signal, std::memory_order_relaxed);
  g_kill_point.store(point, std::memory_order_relaxed);
}

void detail::move_kill_point(int point) noexcept {
  if (g_kill_point.load(std::memory_order_relaxed) == point)
    ::raise(g_kill_signal.load(std::memory_order_relaxed));
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

// One job, slot i of this queue, dead as `w`, into `to`. Returns what the
// move does next: go on, or stop (the target has no room, or a stop came).
Queue::Impl::MoveStep Queue::Impl::move_one(std::uint32_t i, Word w, Impl& to, const MoveOptions& o,
                                            MoveResult& r) {
  // The length first, from the meta (checked against `w` by read_job below):
  // a quarantined job (a corrupt length, T8 by a claim) has no payload to
  // move, and a job too large for the target is not copied at every try
  // (the janitor tries every sweep).
  const std::uint32_t length = meta(i).length.load(std::memory_order_relaxed);
  if (length > max_payload) {
    ++r.left;
    return MoveStep::next;
  }
  if (length > to.max_payload) {
    ++r.too_large;
    return MoveStep::next;
  }
  JobInfo job;
  // A copy validated against `w` (seqlock-style): false if the job changed.
  if (!detail::read_job(detail::ReadView(*this), i, w, JobState::dead, this->now(), job))
    return MoveStep::next;
  // The times it arrives with, on the target's clock (a file-backed queue's
  // segment time is not this one's): its age and its death's, kept.
  const std::uint64_t now = to.now();
  char buf[kMaxKeyLength];
  const std::string_view key = move_key(incarnation, job.id, w.gen(), buf);
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
  // A target with Sync::always that could not put the copy on disk gave its
  // slot back: the job stays here; counted there (Stats::sync_errors).
  if (detail::take_sync_error() != 0) [[unlikely]] {
    to.count(detail::kSyncErrors);
    return MoveStep::stop;
  }
  switch (k.outcome) {
    case detail::KeyInsert::inserted:
      if (n != 1) return MoveStep::stop;        // (not reached: an inserted key's job is committed)
      if (!a.dead) to.count(detail::kMovedIn);  // T3 counted it as pushed
      break;
    case detail::KeyInsert::duplicate:  // an earlier move of this very death got it there
      break;
    case detail::KeyInsert::full:
      // The key table has no room: no job can go in. Or another mover holds
      // this job's key (stopped, or slow) past the short wait: leave this
      // job to it (or to the next move) and go on with the others.
      if (to.keys.full_for(k.hash)) return MoveStep::stop;
      ++r.left;
      return MoveStep::next;
    case detail::KeyInsert::interrupted:
      r.interrupted = true;
      return MoveStep::stop;
    case detail::KeyInsert::none:
      return MoveStep::stop;  // no free slot in the ring
  }
  detail::move_kill_point(2);
  // Sync::always here (durable.cpp): the copy on disk before the original
  // leaves, so that a power cut cannot take it from both queues. A target
  // that is always syncs its own push; one in memory cannot keep it (the
  // README says so).
  if (sync_always && to.durable != nullptr && !to.sync_always) [[unlikely]]
    (void)to.sync_everything();
  // T11, from the word we copied: retried only while the word is unchanged
  // (a weak CAS may fail spuriously).
  Word cur = w;
  bool moved = false;
  while (cur == w && !moved) moved = remove_from(i, cur, T::move_out);
  return moved ? MoveStep::moved : MoveStep::next;
}

void Queue::Impl::move_dead_to(Impl& to, const MoveOptions& o, MoveResult& r) {
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
    const MoveStep step = move_one(i, w, to, o, r);
    if (step == MoveStep::moved) {
      ++out;
      ++r.moved;
    } else if (step == MoveStep::stop) {
      r.target_full = !r.interrupted;
      return;
    }
  }
}

MoveResult Queue::move_dead(Queue& to, const MoveOptions& options) {
  if (to.impl_->incarnation == impl_->incarnation)
    detail::throw_error(impl_->name, make_error_code(errc::invalid_argument),
                        "cannot move dead jobs into their own queue: give another queue");
  MoveResult r;
  impl_->move_dead_to(*to.impl_, options, r);
  return r;
}

MoveResult Queue::move_dead(Queue& to, const MoveOptions& options, std::error_code& ec) noexcept {
  ec.clear();
  MoveResult r;
  if (to.impl_->incarnation == impl_->incarnation) {
    ec = make_error_code(errc::invalid_argument);
    return r;
  }
  try {
    impl_->move_dead_to(*to.impl_, options, r);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);  // r says what moved before
  }
  return r;
}

}  // namespace jobring
