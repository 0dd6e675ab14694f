// jobring — the worker's side: try_claim, claim, their batch forms, and the
// pass that finds and takes claimable jobs (T4 claim, T5 takeover, T8 for an
// expired job whose attempts are used up), with the empty-ring memo that
// answers an empty poll without a scan.

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "ring/core.hpp"
#include "ring/testing.hpp"
#include "ring/wait.hpp"

namespace jobring {

namespace {

// The empty-ring memo. A claim pass that finds nothing scans the whole ring
// (capacity loads); a worker polling an empty queue would do that on every
// poll. Instead, each thread remembers, per queue handle, that its last pass
// found nothing claimable: the claimable signature (Ring::claimable_signature)
// read before that scan, and the earliest time a delayed job or a current
// lease it saw becomes due. While the signature is unchanged and that time
// has not come, nothing has become claimable since, and the pass answers
// empty after five acquire loads (the id counter and four totals) instead
// of a scan:
//   - every push takes a job id (write_job: a release fetch_add on
//     next_job_id) after its T1 reserve and before its T3 commit. If our
//     acquire load of the counter reads that id (or a later one: a
//     release sequence of RMWs), the push's T1 happens-before our scan, so
//     by coherence the scan reads the slot's word as WRITING or a later
//     one: WRITING makes the pass untrusted (it sets no memo), READY we
//     claim, and a later word is a job someone else claimed (a current
//     lease: its due time bounds the memo; released or requeued: that
//     count changes) or one already gone. If our load did not read it, the
//     push's fetch_add comes after the value we read, so the next pass
//     reads another signature and scans. Either way a memo never hides the
//     push. (The pushes' count itself is in tally blocks, which no poller
//     reads: layout.hpp, Tallies.) A dead job moved in (T10) takes an id
//     too, harmlessly (it only changes the signature);
//   - every other transition to a claimable state (T7 release, T9 requeue,
//     sweep's T7) bumps a shared count in the signature after the
//     transition, with release order; our acquire load that sees the bump
//     sees the job;
//   - a delayed job or a lease we saw becomes claimable only at its due time;
//     the one state a scan cannot see coming, a lease granted by another
//     claimer after our scan passed the slot, is granted on a job pushed,
//     released or requeued after we read the signature (else we would have
//     claimed it ourselves), so the signature has changed.
// What it cannot see: a process killed between such a transition and its
// count (not a push: its id is taken before its commit), a count bumped at
// the end of a requeue_dead rather than after each job, a slot we claimed
// and lost again within the pass (taken over, or quarantined by someone
// else: we do not know the new deadline, so such a pass does not set a
// memo), or a hostile writer of state words, totals or the id counter. So a memo is also never older than
// kEmptyMemoMs: at worst such a job is claimed that much later, never lost. Only a pass that scanned the
// whole ring sets one. Only relaxed passes use it (try_claim and a claim's first pass); the seq_cst re-check
// before a sleep always scans (wait.hpp's argument needs it). Only a pass that follows an empty pass reads
// the signature, so a busy worker never touches the id counter's or the totals' cache lines for it. A few
// memos per thread (kMemos), one per handle it claimed from last: a worker of several queues
// (Queue::claim_any) keeps one for each of them, so an idle urgent ring is not scanned again before every job
// of the bulk one.
constexpr std::uint64_t kEmptyMemoMs = 2;
// Tests lengthen it (detail::set_empty_memo_ms_for_testing) so that what
// the due time and the wait path's re-check do is seen, not hidden by it.
std::atomic<std::uint64_t> empty_memo_ms{kEmptyMemoMs};

struct EmptyMemo {
  std::uint64_t owner = 0;  // Impl::memo_owner of the handle, 0 for none
  bool armed = false;       // the last pass of this thread on `owner` found nothing
  bool valid = false;       // and it read the signature first: the fields below hold
  std::uint64_t signature = 0;
  std::uint64_t until_ms = 0;  // the memo holds while now < until_ms
  std::uint64_t due = 0;       // the pass's next_due

  // A relaxed pass that follows an empty one, the signature unchanged and
  // the memo not yet lapsed: empty, without a scan.
  [[nodiscard]] bool answers_empty(std::memory_order order, std::uint64_t sig,
                                   std::uint64_t now) const noexcept {
    return armed && valid && order == std::memory_order_relaxed && signature == sig && now < until_ms;
  }
  // After a pass that claimed `got` jobs; `trusted`: it followed an empty
  // pass (so `sig` was read before its scan) and saw nothing the memo
  // cannot vouch for (a WRITING slot: the next passes scan, so that T2 keeps
  // running; a slot claimed and lost again).
  void remember(std::size_t got, bool trusted, std::uint64_t sig, std::uint64_t began,
                std::uint64_t next_due) noexcept {
    armed = got == 0;
    valid = got == 0 && trusted;
    if (!valid) return;  // the fields below are read only while valid (answers_empty)
    signature = sig;
    until_ms = std::min(next_due, began + empty_memo_ms.load(std::memory_order_relaxed));
    due = next_due;
  }
};
constexpr std::size_t kMemos = 4;
thread_local std::array<EmptyMemo, kMemos> empty_memos{};
thread_local std::size_t next_victim = 0;

// This thread's memo for the handle `owner`: the one it has (entry 0 first:
// a one-queue worker pays one compare), or an entry taken over, cleared.
JOBRING_INLINE EmptyMemo& memo_for(std::uint64_t owner) noexcept {
  if (empty_memos[0].owner == owner) [[likely]]
    return empty_memos[0];
  for (std::size_t i = 1; i < kMemos; ++i)
    if (empty_memos[i].owner == owner) return empty_memos[i];
  EmptyMemo& m = empty_memos[next_victim];
  next_victim = (next_victim + 1) % kMemos;
  m = EmptyMemo{};
  m.owner = owner;
  return m;
}

std::uint64_t lease_ms_for(const Queue::Impl& q, const ClaimOptions& claim, std::string* why) {
  if (!detail::valid_duration(claim.lease, true)) {
    if (why != nullptr)
      *why = "lease of " + std::to_string(claim.lease.count()) + " ms not in 1.." +
             std::to_string(kMaxLease.count()) + " ms";
    return 0;
  }
  return static_cast<std::uint64_t>(claim.lease.count() > 0 ? claim.lease.count()
                                                            : q.options.default_lease.count());
}

// The note of a job quarantined for a payload length over max_payload.
[[gnu::cold]] void quarantine_note(detail::SlotNote& n, Word held, std::uint64_t now, std::uint32_t length,
                                   std::uint32_t max_payload) noexcept {
  char text[detail::kMaxNoteBytes];
  const int len = std::snprintf(text, sizeof text, "quarantined: payload length %u over max_payload %u",
                                length, max_payload);
  detail::write_note(
      n, T::dead_letter.target(held, 0), now,
      std::string_view(text, len < 0 ? 0 : std::min(sizeof text - 1, static_cast<std::size_t>(len))));
}

}  // namespace

namespace detail {
std::uint64_t set_empty_memo_ms_for_testing(std::uint64_t ms) noexcept {
  return empty_memo_ms.exchange(ms, std::memory_order_relaxed);
}
}  // namespace detail

// What one claim pass has seen so far.
struct Queue::Impl::ClaimScan {
  std::uint64_t now;                   // CLOCK_MONOTONIC ms, re-read every 256 slots
  std::uint64_t due = detail::kNoDue;  // the earliest due time seen (a delayed job, a current lease)
  bool saw_writing = false;            // a WRITING slot: maybe a dead producer's (T2)
  bool lost = false;                   // claimed a slot and lost it again in this pass: no memo
  bool passed_empty = false;           // passed a FREE or WRITING slot
  std::size_t got = 0;
  std::size_t takeovers = 0;
};

// The CAS loop on slot i, whose word the scan read as `w`. Cases: READY and
// visible → T4; READY but delayed → skip; LEASED and expired → T8 (attempts
// used up) or T5 takeover; LEASED and current → skip; WRITING → skip
// (remember it for T2); FREE, DEAD, invalid → skip. A failed CAS reloads w
// and re-decides; ABA is excluded by the generation (layout.hpp). True if we
// now hold the lease `mine`.
JOBRING_INLINE bool Queue::Impl::take(std::uint32_t i, Word& w, std::uint64_t lease_ms, ClaimScan& s,
                                      Word& mine, bool& takeover) noexcept {
  auto& sw = state(i);
  const std::uint32_t max_attempts = options.max_attempts;
  for (;;) {
    if (w.state() == State::ready) {
      if (detail::delayed(w, s.now)) {  // aux 0 = visible at once
        s.due = std::min(s.due, w.aux());
        return false;
      }
      takeover = false;
    } else if (w.state() == State::leased) {
      if (detail::lease_current(w, s.now)) {
        s.due = std::min(s.due, w.aux() + 1);  // expiry is strictly after the deadline
        return false;
      }
      if (max_attempts != 0 && detail::attempts_of(meta(i), w) >= max_attempts) {
        // T8: the expired job has used up its attempts: dead-letter it, its
        // note first (out of line, so the claim path does not grow; notes.cpp
        // says what a death around it leaves).
        const Word dead = T::dead_letter.target(w, 0);
        detail::write_note_after(note(i), dead, s.now, "lease expired", detail::attempts_of(meta(i), w));
        if (detail::move_weak(T::dead_letter, sw, w, dead)) {
          detail::count(T::dead_letter, *header);
          return false;
        }
        continue;
      }
      takeover = true;
    } else {
      s.saw_writing |= w.state() == State::writing;
      return false;
    }
    const detail::Transition& t = takeover ? T::takeover : T::claim;
    mine = t.target(w, s.now + lease_ms);
    if (detail::move_weak(t, sw, w, mine)) return true;
  }
}

// We hold the lease `mine` on slot i: count the attempt, write the owner
// record, copy the job out into `job`. False if the slot turned out corrupt
// (quarantined in DEAD) or the lease was lost while we copied.
JOBRING_INLINE bool Queue::Impl::copy_out(std::uint32_t i, Word from, Word mine, std::uint64_t owner_bits,
                                          ClaimScan& s, Job& job) {
  auto& sw = state(i);
  SlotMeta& m = meta(i);
  // The count and the owner record, each by CAS from a value whose tag is
  // not later than `from` (layout.hpp: count_claim, record_owner): if we
  // stalled here past our lease and the slot moved on (taken over, or even
  // acked and holding another job), the tags say so and we write nothing.
  const std::uint32_t attempt = detail::count_claim(m, from, mine);
  // Owner record for the janitor, one word tagged with our generation.
  m.claimed_at_ms.store(s.now, std::memory_order_relaxed);
  if (detail::record_owner(m, from, mine, owner_bits))
    m.owner_pid.store(owner_bits != 0 ? detail::self_pid() : 0, std::memory_order_relaxed);
  const JobId id = m.job_id.load(std::memory_order_relaxed);
  const std::uint32_t length = m.length.load(std::memory_order_relaxed);
  if (length > max_payload) {
    // Hostile or corrupt slot: never read past the payload area. Quarantine
    // the job in DEAD (T8), where an operator can see and remove it, with a
    // note saying so (before the CAS, which publishes it).
    quarantine_note(note(i), mine, s.now, length, max_payload);
    Word expected = mine;
    if (!detail::apply(T::dead_letter, *header, sw, expected, 0)) s.lost = true;
    return false;
  }
  if (job.buffer_.size() < max_payload) job.buffer_.resize(max_payload);  // once per Job object
  detail::copy_payload(job.buffer_.data(), payload(i), length);
  // The key's length is bounded like the payload's: a corrupt one reads as no key.
  const std::uint32_t key_length = m.key_length.load(std::memory_order_relaxed);
  const std::size_t key_size = key_length <= kMaxKeyLength ? key_length : 0;
  if (key_size > 0) std::memcpy(job.key_.data(), key_area(i), key_size);
  job.key_size_ = key_size;
  // Validate like a seqlock reader: if the word changed while we copied, our
  // lease was taken over (it expired within this call) and the copy may be
  // torn: the job is someone else's now.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (Word{sw.load(std::memory_order_relaxed)} != mine) {
    s.lost = true;
    return false;
  }
  job.id = id;
  job.incarnation = incarnation;
  job.attempt = attempt;
  job.size_ = length;
  job.lease = Lease{i, mine.raw, id};
  job.deadline = detail::to_time_point(host_time(mine.aux()));
  return true;
}

// After a pass that claimed something: moves the claim cursor from `start`
// over the k positions the scan passed, but never past the push cursor.
JOBRING_INLINE void Queue::Impl::advance_claim_cursor(std::uint64_t start, std::uint32_t k) noexcept {
  std::uint64_t to = start + k;
  // Read after our claims: their acquire CASes synchronised with the commits,
  // which the producers sequenced after moving the push cursor, so every job
  // we claimed in push order lies below this value, unless a rival
  // producer's store moved the cursor back meanwhile (push.cpp, push_into):
  // then the cap is lower than it could be, and the next scan passes a few
  // slots more. A lower cap never leaves a job behind.
  const std::uint64_t pushed = header->push_cursor.load(std::memory_order_relaxed);
  const std::uint64_t ahead = pushed - start;  // positions pushed but not yet passed (if <= capacity)
  if (ahead <= capacity && k > ahead) to = start + ahead;
  // A hint, written with a load and a store instead of a CAS (one locked RMW
  // fewer per claim). Only a claimer that found the cursor where its scan
  // began moves it. A rival that moves it between our load and store is
  // overwritten: if our `to` is behind its value the cursor goes back (the
  // next scans pass a few slots more, and may rescan once); if ahead, every
  // position below `to` was passed by our own scan and lies below the push
  // cursor we read: the same bound the CAS gave. Never a job left behind,
  // only extra scanning.
  if (to != start && header->claim_cursor.load(std::memory_order_relaxed) == start)
    header->claim_cursor.store(to, std::memory_order_relaxed);
}

// Fast path over FREE slots, most of an idle or draining ring: nothing to
// decide for them but that we passed an empty slot. A tight loop of loads
// (seq_cst when re-checking before a sleep) that stops at the first other
// word, which the full logic then looks at. An empty 1024-slot ring: ~10,000
// instructions instead of ~33,000.
JOBRING_INLINE void Queue::Impl::skip_free(std::uint32_t& i, std::uint32_t& k,
                                           std::memory_order load_order) const noexcept {
  if (load_order == std::memory_order_seq_cst) {
    while (k < capacity && Word{states[i].load(std::memory_order_seq_cst)}.state() == State::free) {
      ++k;
      i = next(i);
    }
  } else {
    while (k < capacity && Word{states[i].load(std::memory_order_relaxed)}.state() == State::free) {
      ++k;
      i = next(i);
    }
  }
}

JOBRING_INLINE std::size_t Queue::Impl::claim_pass_inline(std::span<Job> jobs, std::uint64_t lease_ms,
                                                          std::uint64_t owner_token,
                                                          std::memory_order load_order,
                                                          std::uint64_t& next_due) {
  // The clock: CLOCK_MONOTONIC, read once per pass and every 256 slots (a
  // coarse clock can lag by more than a tick with tickless idle: a lease
  // granted on it would be shorter than asked).
  if (jobs.empty()) return 0;  // no scan, so no memo either
  // Paused (Queue::pause, admin.cpp): nothing is handed out, and the waiter
  // sleeps until resume() wakes it. Loaded with the pass's order: seq_cst in
  // a waiter's re-check, as resume()'s wake-up argument needs.
  if (header->paused.load(load_order) != 0) [[unlikely]]
    return 0;
  const std::uint64_t began = now();
  EmptyMemo& memo = memo_for(memo_owner);
  const bool follows_empty = memo.armed;  // memo_for gave this handle's memo
  const std::uint64_t signature = follows_empty ? claimable_signature() : 0;
  if (memo.answers_empty(load_order, signature, began)) {
    next_due = std::min(next_due, host_due(memo.due));
    return 0;
  }
  ClaimScan s{began};
  // FIFO: scan from the claim cursor, the oldest position not yet passed by a
  // claim, in ring order, which is the order producers fill slots in.
  const std::uint64_t start = header->claim_cursor.load(std::memory_order_relaxed);
  const std::uint32_t first = slot_at(start);
  std::uint32_t i = first;
  std::uint32_t k = 0;
  bool rescanned = false;
  for (; k < capacity && s.got < jobs.size(); ++k, i = next(i)) {
    const std::uint32_t k0 = k;
    skip_free(i, k, load_order);
    if (k != k0) {
      s.passed_empty = true;
      if (k == capacity) break;
      if ((k & ~255u) != (k0 & ~255u)) s.now = now();  // passed a multiple of 256: as below
    }
    // A long scan re-reads the clock, so that a lease granted at its end gets
    // its full length (and expiry is judged against a fresh clock).
    if ((k & 255) == 255) {
      s.now = now();
      if (header->paused.load(std::memory_order_relaxed) != 0) break;  // paused meanwhile: hand out no more
    }
    const Word w{state(i).load(load_order)};
    if (w.state() == State::ready && s.passed_empty && !rescanned && s.got == 0) {
      // We passed an empty slot and now see a job: a producer may have filled
      // the empty one (an older position) after we passed it. Look once more
      // from the start, so that the older job goes first.
      rescanned = true;
      s.passed_empty = false;
      k = ~std::uint32_t{0};                      // ++k: 0
      i = first == 0 ? capacity - 1 : first - 1;  // next(i): first
      continue;
    }
    s.passed_empty |= w.state() == State::free || w.state() == State::writing;
    // A batch that has jobs stops at a pause (pause() promises that claims
    // starting after it return nothing; one in its scan stops here). (One
    // test here, the 256-slot look above: merged, the one-job claim paid 2
    // instructions more.)
    if (s.got > 0 && header->paused.load(std::memory_order_relaxed) != 0) [[unlikely]]
      break;
    Word from = w;  // take() leaves in it the word its CAS succeeded from
    Word mine{};
    bool takeover = false;
    if (!take(i, from, lease_ms, s, mine, takeover)) continue;
    if (!copy_out(i, from, mine, detail::make_owner(0, owner_token), s, jobs[s.got])) continue;
    ++s.got;
    s.takeovers += takeover ? 1 : 0;
  }
  if (s.got > 0) {
    advance_claim_cursor(start, k);
    tally(detail::kTallyClaimed, s.got);  // T4's count, in this thread's tally block
    detail::count(T::takeover, *header, s.takeovers);
  } else if (s.saw_writing) {
    // Nothing claimable, and a slot left WRITING by a dead producer never
    // becomes claimable: free it (T2) so that the ring keeps its capacity.
    recover_dead_writers();
  }
  next_due = std::min(next_due, host_due(s.due));
  memo.remember(s.got, follows_empty && !s.saw_writing && !s.lost, signature, began, s.due);
  return s.got;
}

std::size_t Queue::Impl::claim_pass(std::span<Job> jobs, std::uint64_t lease_ms, std::uint64_t owner_token,
                                    std::memory_order load_order, std::uint64_t& next_due) {
  return claim_pass_inline(jobs, lease_ms, owner_token, load_order, next_due);
}

// A bad lease (lease_ms_or_throw's slow path): throws, saying why.
void Queue::Impl::throw_bad_lease(const ClaimOptions& claim) const {
  std::string why;
  (void)lease_ms_for(*this, claim, &why);
  detail::throw_error(name, make_error_code(errc::invalid_argument), why);
}

detail::Progress Queue::Impl::claim_waiting(std::span<Job> jobs, milliseconds wait, std::uint64_t lease_ms,
                                            const ClaimOptions& claim) {
  if (jobs.empty()) return {};
  const std::uint64_t me = owner_of(*this, claim);
  return detail::wait_until_progress(header->work_event, wait, capacity, claim.stop,
                                     [&](std::memory_order order, std::uint64_t& due) {
                                       return claim_pass(jobs, lease_ms, me, order, due);
                                     });
}

namespace {

// The status of a one-job claim from its wait's outcome.
ClaimStatus status_of(const detail::Progress& p, milliseconds wait) noexcept {
  if (p.done == 1) return ClaimStatus::ok;
  return wait.count() > 0 && p.interrupted ? ClaimStatus::interrupted : ClaimStatus::empty;
}

std::string wait_text(milliseconds wait) {
  return "wait of " + std::to_string(wait.count()) + " ms not in 0.." + std::to_string(kMaxLease.count()) +
         " ms";
}

// try_claim and try_claim_many: one relaxed pass, inlined into each (one
// call, not three, on every poll).
JOBRING_INLINE std::size_t try_claim_pass(Queue::Impl& q, std::span<Job> jobs, const ClaimOptions& options) {
  const std::uint64_t lease_ms = q.lease_ms_or_throw(options);
  std::uint64_t due = detail::kNoDue;
  return q.claim_pass_inline(jobs, lease_ms, owner_of(q, options), std::memory_order_relaxed, due);
}

}  // namespace

std::size_t Queue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options) {
  return try_claim_pass(*impl_, jobs, options);
}

ClaimStatus Queue::try_claim(Job& job, const ClaimOptions& options) {
  return try_claim_pass(*impl_, {&job, 1}, options) == 1 ? ClaimStatus::ok : ClaimStatus::empty;
}

std::optional<Job> Queue::try_claim(const ClaimOptions& options) {
  Job job;
  if (try_claim(job, options) == ClaimStatus::ok) return job;
  return std::nullopt;
}

std::size_t Queue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options) {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = q.lease_ms_or_throw(options);
  if (!detail::valid_duration(wait, true))
    detail::throw_error(q.name, make_error_code(errc::invalid_argument), wait_text(wait));
  return q.claim_waiting(jobs, wait, lease_ms, options).done;
}

ClaimStatus Queue::claim(Job& job, milliseconds wait, const ClaimOptions& options) {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = q.lease_ms_or_throw(options);
  if (!detail::valid_duration(wait, true))
    detail::throw_error(q.name, make_error_code(errc::invalid_argument), wait_text(wait));
  return status_of(q.claim_waiting({&job, 1}, wait, lease_ms, options), wait);
}

// The error_code forms: a bad argument or a failed allocation (of a Job's
// buffer, the first time it is used) is reported in `ec`, never thrown.
std::size_t Queue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                              std::error_code& ec) noexcept {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = lease_ms_for(q, options, nullptr);
  if (lease_ms == 0 || !detail::valid_duration(wait, true)) {
    ec = make_error_code(errc::invalid_argument);
    return 0;
  }
  try {
    ec.clear();
    return q.claim_waiting(jobs, wait, lease_ms, options).done;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return 0;
  }
}

ClaimStatus Queue::claim(Job& job, milliseconds wait, const ClaimOptions& options,
                         std::error_code& ec) noexcept {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = lease_ms_for(q, options, nullptr);
  if (lease_ms == 0 || !detail::valid_duration(wait, true)) {
    ec = make_error_code(errc::invalid_argument);
    return ClaimStatus::empty;
  }
  try {
    ec.clear();
    return status_of(q.claim_waiting({&job, 1}, wait, lease_ms, options), wait);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return ClaimStatus::empty;
  }
}

std::size_t Queue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options,
                                  std::error_code& ec) noexcept {
  return claim_many(jobs, milliseconds{0}, options, ec);
}

ClaimStatus Queue::try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept {
  return claim(job, milliseconds{0}, options, ec);
}

}  // namespace jobring
