// jobring — what operators do: stats and peek (read-only), requeue and
// remove dead jobs, purge (T9), and keeping FIFO after jobs are removed.

#include <cstring>
#include <optional>

#include "ring/core.hpp"

namespace jobring {

namespace {

void count_slots(const detail::ReadView& v, std::uint64_t now, Stats& s) noexcept {
  for (std::uint32_t i = 0; i < v.capacity(); ++i) {
    const Word w = v.word(i, std::memory_order_relaxed);
    if (!w.valid()) {
      ++s.corrupt;
      continue;
    }
    switch (w.state()) {
      case State::free:
        ++s.free;
        break;
      case State::writing:
        ++s.writing;
        break;
      case State::ready:
        if (detail::delayed(w, now)) {
          ++s.delayed;
        } else {
          ++s.ready;
          // Relaxed: advice, like the word it is read beside; a value from a
          // racing next job of the slot is as good a snapshot.
          const std::uint64_t pushed = v.meta(i).pushed_at_ms.load(std::memory_order_relaxed);
          s.oldest_ready_ms = std::max(s.oldest_ready_ms, detail::waiting_ms(pushed, w.aux(), now));
        }
        break;
      case State::leased:
        if (detail::lease_current(w, now)) {
          ++s.leased;
          const std::uint64_t at = v.meta(i).claimed_at_ms.load(std::memory_order_relaxed);
          if (at <= now) s.oldest_lease_ms = std::max(s.oldest_lease_ms, now - at);
        } else {
          ++s.expired;
        }
        break;
      case State::dead:
        ++s.dead;
        break;
    }
  }
}

void read_totals(const detail::ReadView& v, Stats& s) noexcept {
  s.pushed = v.total(detail::kPushed);
  s.claimed = v.total(detail::kClaimed);
  s.acked = v.total(detail::kAcked);
  s.released = v.total(detail::kReleased);
  s.expired_total = v.total(detail::kExpired);
  s.dead_lettered = v.total(detail::kDeadLettered);
  s.requeued = v.total(detail::kRequeued);
  s.purged = v.total(detail::kPurged);
  s.recovered_writes = v.total(detail::kRecoveredWrites);
  s.reclaimed = v.total(detail::kReclaimed);
  s.duplicates = v.total(detail::kDuplicates);
  s.keys_evicted = v.total(detail::kKeysEvicted);
  s.keys_full = v.total(detail::kKeysFull);
  s.moved_out = v.total(detail::kMovedOut);
  s.moved_in = v.total(detail::kMovedIn);
  s.sync_errors = v.total(detail::kSyncErrors);
}

// The state peek() lists a word under, if any.
std::optional<JobState> listed_as(Word w, std::uint64_t now) noexcept {
  switch (w.state()) {
    case State::ready:
      return detail::delayed(w, now) ? JobState::delayed : JobState::ready;
    case State::leased:
      return JobState::leased;
    case State::dead:
      return JobState::dead;
    default:
      return std::nullopt;
  }
}

}  // namespace

bool detail::read_job(const detail::ReadView& v, std::uint32_t i, Word w, JobState s, std::uint64_t now,
                      JobInfo& info) {
  const SlotMeta& m = v.meta(i);
  info.id = m.job_id.load(std::memory_order_relaxed);
  info.state = s;
  info.slot = i;
  info.attempts = detail::attempts_of(m, w);
  info.enqueued_ms_ago = detail::age_ms(m.pushed_at_ms.load(std::memory_order_relaxed), now);
  if (s == JobState::delayed || s == JobState::leased)
    info.ms_until = static_cast<std::int64_t>(w.aux()) - static_cast<std::int64_t>(now);
  if (s == JobState::dead) {
    // Read after the acquire load of the DEAD word: the note its T8 CAS
    // published (layout.hpp, SlotNote), validated with the payload below.
    std::uint64_t failed_at = 0;
    if (detail::read_note(v.note(i), w, failed_at, info.error))
      info.failed_ms_ago = detail::age_ms(failed_at, now);
  }
  if (s == JobState::leased) {
    const std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
    if (detail::owner_gen(owner) == w.gen() && detail::owner_token(owner) != 0)
      info.owner_pid = static_cast<int>(m.owner_pid.load(std::memory_order_relaxed));
  }
  const std::uint32_t length = m.length.load(std::memory_order_relaxed);
  // A corrupt length (a job quarantined in DEAD by a claim) is listed with no
  // payload, so that an operator can still see and remove it; the payload
  // area is never read past its end.
  info.payload.resize(length <= v.max_payload() ? length : 0);
  if (!info.payload.empty()) std::memcpy(info.payload.data(), v.payload(i), info.payload.size());
  // Seqlock-style validation: skip the job if the slot changed meanwhile.
  std::atomic_thread_fence(std::memory_order_acquire);
  return v.word(i, std::memory_order_relaxed) == w;
}

Stats Queue::stats() const noexcept {
  const detail::ReadView v(*impl_);
  Stats s;
  const std::uint64_t now = impl_->now();
  count_slots(v, now, s);
  impl_->keys.count(now, s.keys_live, s.keys_remembered);
  s.keys_capacity = impl_->keys.capacity();
  s.paused = impl_->header->paused.load(std::memory_order_relaxed) != 0 ? 1 : 0;
  read_totals(v, s);
  if (const detail::Durable* d = impl_->durable) {
    s.recoveries = d->recoveries.load(std::memory_order_relaxed);
    s.recovered_leases = d->recovered_leases.load(std::memory_order_relaxed);
    s.recovered_boot_writes = d->recovered_writes.load(std::memory_order_relaxed);
  }
  return s;
}

std::vector<JobInfo> Queue::peek(JobState state, std::size_t limit) const {
  const detail::ReadView v(*impl_);
  std::vector<JobInfo> out;
  const std::uint64_t now = impl_->now();
  for (std::uint32_t i = 0; i < v.capacity() && out.size() < limit; ++i) {
    // Acquire: pairs with the commit (T3) or any later RMW, as for a claim.
    const Word w = v.word(i, std::memory_order_acquire);
    const auto s = listed_as(w, now);
    if (s != state) continue;
    JobInfo info;
    if (read_job(v, i, w, *s, now, info)) out.push_back(std::move(info));
  }
  return out;
}

std::vector<JobInfo> Queue::peek(JobState state, std::size_t limit, std::error_code& ec) const noexcept {
  try {
    ec.clear();
    return peek(state, limit);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
}

void detail::Ring::skip_unclaimable_positions() noexcept {
  // Jobs removed before any claim passed them leave the claim cursor behind,
  // at positions now FREE; the next lap of pushes refills those slots, and a
  // scan from the stale cursor would meet the newest job first. So the
  // cursor moves over the positions, below the push cursor, whose slots hold
  // nothing a claim would take: FREE (purged, acked), a delayed job, a lease
  // (current or run out: a retry, which guarantee 6 exempts), DEAD. It stops
  // at a visible READY job (the oldest one, which the next scan must meet
  // first) and at WRITING (a producer's job in progress). A claim scan passes
  // the same slots the same way (claim.cpp). Every scan covers the whole ring
  // from the cursor, so a job passed here (a delayed one coming due, a lease
  // running out) is still claimed, only after newer ones. A hint: a racing
  // move is harmless (advance() never moves it back), and a death anywhere
  // here changes nothing.
  const std::uint64_t from = header->claim_cursor.load(std::memory_order_relaxed);
  const std::uint64_t pushed = header->push_cursor.load(std::memory_order_relaxed);
  std::uint64_t c = from;
  // A cursor more than a lap behind (a delayed or dead job at its slot held
  // it while pushes and purges went round): no position that old holds a job
  // any more; start from one lap behind the push cursor.
  if (c < pushed && pushed - c > capacity) c = pushed - capacity;
  std::uint64_t now = 0;  // read at the first word that needs it
  auto passable = [&](Word w) {
    switch (w.state()) {
      case State::free:
      case State::leased:
      case State::dead:
        return true;
      case State::ready:
        if (w.aux() == 0) return false;  // visible at once
        if (now == 0) now = this->now();
        return delayed(w, now);
      default:  // WRITING, or an invalid word: stop
        return false;
    }
  };
  while (c < pushed && pushed - c <= capacity &&
         passable(Word{state(slot_at(c)).load(std::memory_order_relaxed)}))
    ++c;
  if (c != from) advance(header->claim_cursor, c);
}

bool Queue::Impl::remove_from(std::uint32_t i, Word& w, const detail::Transition& t) noexcept {
  SlotMeta& m = meta(i);
  // The job's key and its entry word, read before the CAS (the slot may be
  // reused right after it); the CAS from `w` proves they were this job's.
  const JobId id = m.job_id.load(std::memory_order_relaxed);
  const std::uint64_t hash = m.key_hash.load(std::memory_order_relaxed);
  const std::uint32_t entry = m.key_entry.load(std::memory_order_relaxed);
  const Word held = keys.held_word(entry, hash);
  // A corrupt word gets a valid FREE word of the next generation.
  const Word to = Word::make(State::free, w.gen() + 1, 0);
  if (!detail::move_weak(t, state(i), w, to)) return false;
  if (w.valid()) keys.finish(entry, hash, id, held);  // K4: the job left the queue
  return true;
}

// After slots were freed: count them, keep FIFO (a removed job's position
// is passed), wake pushers.
void Queue::Impl::settle_removal(const detail::Transition& t, std::size_t n) noexcept {
  if (n == 0) return;
  detail::count(t, *header, n);
  skip_unclaimable_positions();
  detail::wake(t, *header);
}

namespace {

// T9 purge on every slot for which `pick(word, meta)` holds (re-checked after
// a failed CAS), at most `limit` of them; returns how many changed. Counted
// and woken by the caller.
template <typename Pick>
std::size_t purge_slots(Queue::Impl& q, Pick pick, std::size_t limit) noexcept {
  std::size_t changed = 0;
  for (std::uint32_t i = 0; i < q.capacity && changed < limit; ++i) {
    Word w{q.state(i).load(std::memory_order_acquire)};
    while (pick(w, q.meta(i))) {
      if (q.remove_from(i, w, T::purge)) {
        ++changed;
        break;
      }
    }
  }
  return changed;
}

// T9 requeue in two steps, so that resetting the attempts cannot race a
// claim: first DEAD → DEAD (generation + 1) makes us the only requeuer of the
// slot (a rival requeue, purge or remove_dead from the old word fails); then
// the attempts are reset while nobody can claim the job; then DEAD → READY.
// Dies between the steps: the job is still DEAD, with its attempts reset or
// not; consistent either way.
bool requeue_slot(Queue::Impl& q, std::uint32_t i, Word w) noexcept {
  auto& sw = q.state(i);
  const Word mine = T::requeue_lock.target(w, 0);
  if (!detail::move(T::requeue_lock, sw, w, mine)) return false;
  detail::reset_attempts(q.meta(i), mine);
  // A requeue is a new enqueue: the job's age starts again. Relaxed,
  // published by the requeue CAS below (seq_cst). Dies before it: the job
  // stays DEAD, its age as it was. Dies after: DEAD with the new time (what
  // peek shows as enqueued), READY at the next requeue. A requeuer stalled
  // here while a rival requeued and the job moved on writes a wrong age onto
  // the slot's job: advice only, nothing decides on it.
  q.meta(i).pushed_at_ms.store(q.now(), std::memory_order_relaxed);
  Word expected = mine;
  return detail::move(T::requeue, sw, expected, T::requeue.target(mine, 0));
}

std::size_t requeue_where(Queue::Impl& q, std::optional<JobId> only) noexcept {
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    const Word w{q.state(i).load(std::memory_order_acquire)};
    if (w.state() != State::dead) continue;
    if (only && q.meta(i).job_id.load(std::memory_order_relaxed) != *only) continue;
    if (requeue_slot(q, i, w)) {
      ++n;
      if (only) break;
    }
  }
  detail::settle(T::requeue, *q.header, n);
  return n;
}

}  // namespace

// Pause: the flag is seq_cst on both sides for resume's wake-up (wait.hpp's
// argument, with the flag in the role of a state word): a claimer's re-check
// after announcing its sleep loads it seq_cst (claim_pass with the re-check's
// order), and resume() stores it seq_cst before notify()'s seq_cst load of the
// event word. If the re-check saw the queue paused, it precedes our store in
// the total order, so its announcement precedes our load: we see the waiting
// bit and wake it. pause() wakes nobody (a claimer that misses it claims
// what it would have claimed a moment earlier). Dies before or after the
// store: the flag is one word, set or not; a resume that dies before its
// notify delays sleepers by at most their bounded sleep (kMaxSleep).
bool Queue::pause() noexcept { return impl_->header->paused.exchange(1, std::memory_order_seq_cst) == 0; }

bool Queue::resume() noexcept {
  detail::Header& h = *impl_->header;
  const bool was = h.paused.exchange(0, std::memory_order_seq_cst) != 0;
  detail::notify(h.work_event);
  return was;
}

bool Queue::paused() const noexcept { return impl_->header->paused.load(std::memory_order_relaxed) != 0; }

bool Queue::requeue(JobId dead_job) noexcept { return requeue_where(*impl_, dead_job) == 1; }

std::size_t Queue::requeue_dead() noexcept { return requeue_where(*impl_, std::nullopt); }

bool Queue::remove_dead(JobId dead_job) noexcept {
  Impl& q = *impl_;
  const std::size_t n = purge_slots(
      q,
      [&](Word w, SlotMeta& m) {
        return w.state() == State::dead && m.job_id.load(std::memory_order_relaxed) == dead_job;
      },
      1);
  q.settle_removal(T::purge, n);
  return n == 1;
}

std::size_t Queue::purge(PurgeWhat what) noexcept {
  Impl& q = *impl_;
  const auto bits = static_cast<unsigned>(what);
  const bool all = what == PurgeWhat::all;
  const std::uint64_t now = q.now();
  const std::size_t n = purge_slots(
      q,
      [&](Word w, SlotMeta&) {
        if (!w.valid()) return all;
        switch (w.state()) {
          case State::ready:
            return (bits & static_cast<unsigned>(detail::delayed(w, now) ? PurgeWhat::delayed
                                                                         : PurgeWhat::ready)) != 0;
          case State::dead:
            return (bits & static_cast<unsigned>(PurgeWhat::dead)) != 0;
          default:
            return false;
        }
      },
      q.capacity);
  q.settle_removal(T::purge, n);
  return n;
}

}  // namespace jobring
