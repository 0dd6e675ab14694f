// jobring — what a lease holder does with its job: ack (T6), release and
// give_back (T7, or T8 when the attempts are used up), extend (T5), and the
// lease handle's text form.

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "ring/core.hpp"

namespace jobring {

namespace {

// The slot word a lease refers to, if the lease is well-formed for this queue.
std::atomic<std::uint64_t>* leased_word(Queue::Impl& q, const Lease& lease) noexcept {
  if (lease.slot >= q.capacity || Word{lease.token}.state() != State::leased) return nullptr;
  // The job id is a second check beside the generation (layout.hpp): a token
  // from another job of this slot never matches, whatever the generation.
  if (q.meta(lease.slot).job_id.load(std::memory_order_relaxed) != lease.job) return nullptr;
  return &q.state(lease.slot);
}

// T7 / T8 from a holder's side (release, give_back): the lease's word becomes
// READY (aux = visible-at) or, when the attempts are used up, DEAD. Dies
// before the CAS: the lease runs out (or the janitor returns it). Dies after
// it: the job is READY (or DEAD); a missed count or wake-up only delays a
// poller (the empty-ring memo's age bound) or a sleeper (its bounded sleep).
LeaseStatus end_lease(Queue::Impl& q, std::atomic<std::uint64_t>& sw, const Lease& lease,
                      const detail::Transition& t, std::uint64_t aux) noexcept {
  Word expected{lease.token};
  return detail::apply(t, *q.header, sw, expected, aux) ? LeaseStatus::ok : LeaseStatus::lease_lost;
}

}  // namespace

// Inlined into ack and ack_many (one call less per ack).
JOBRING_INLINE LeaseStatus Queue::Impl::ack_one(const Lease& lease) noexcept {
  auto* sw = leased_word(*this, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // The key fields and the key's entry word, read while we hold the lease
  // (the slot may be reused the moment it is free, the entry settled and
  // claimed again); if the lease is not ours, the CAS below fails.
  const SlotMeta& m = meta(lease.slot);
  const std::uint64_t hash = m.key_hash.load(std::memory_order_relaxed);
  const std::uint32_t entry = m.key_entry.load(std::memory_order_relaxed);
  // (No key, hash 0: both key-table calls would return at once; the test
  // here saves the two calls on every ack of a job without a key.)
  const Word held = hash != 0 ? keys.held_word(entry, hash) : Word{};
  // T6: succeeds only if the word is still exactly our token. Counted and
  // woken by the caller, once per batch.
  Word expected{lease.token};
  if (!detail::move(T::ack, *sw, expected, T::ack.target(expected, 0))) return LeaseStatus::lease_lost;
  // K4. Dies before it: K7 remembers the key when the next keyed push of
  // it, or a sweep, looks (keys.hpp).
  if (hash != 0) keys.finish(entry, hash, lease.job, held);
  // Sync::always (durable.cpp): the FREE word (and the key remembered) on
  // disk before the ack returns, so that a power cut does not bring it back.
  if (sync_always) [[unlikely]] {
    (void)sync_state(lease.slot);
    if (hash != 0) (void)sync_key_entry(entry);
  }
  // FIFO: a job acked at the claim cursor's own slot (the cursor stopped
  // there, e.g. capped at the push cursor) leaves a FREE position the next
  // lap refills; move the cursor over it as purge does. Rare: in the steady
  // state claims have moved the cursor past the slot long before.
  if (lease.slot == slot_at(header->claim_cursor.load(std::memory_order_relaxed)))
    skip_unclaimable_positions();
  return LeaseStatus::ok;
}

LeaseStatus Queue::ack(const Lease& lease) noexcept {
  Impl& q = *impl_;
  const LeaseStatus s = q.ack_one(lease);
  if (s == LeaseStatus::ok) {
    q.tally(detail::kTallyAcked, 1);  // T6's count, in this thread's tally block
    detail::wake(T::ack, *q.header);
  }
  return s;
}

std::size_t Queue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results) noexcept {
  Impl& q = *impl_;
  std::size_t acked = 0;
  for (std::size_t i = 0; i < leases.size(); ++i) {
    const LeaseStatus s = q.ack_one(leases[i]);
    if (i < results.size()) results[i] = s;
    acked += s == LeaseStatus::ok ? 1 : 0;
  }
  if (acked != 0) {
    q.tally(detail::kTallyAcked, acked);
    detail::wake(T::ack, *q.header);
  }
  return acked;
}

LeaseStatus Queue::release(const Lease& lease, milliseconds delay) noexcept {
  return release(lease, delay, std::string_view{});
}

LeaseStatus Queue::release(const Lease& lease, milliseconds delay, std::string_view error) noexcept {
  Impl& q = *impl_;
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  delay = std::clamp(delay, milliseconds{0}, kMaxLease);
  const std::uint32_t max_attempts = q.options.max_attempts;
  const Word token{lease.token};
  const std::uint32_t attempts = detail::attempts_of(q.meta(lease.slot), token);
  if (max_attempts == 0 || attempts < max_attempts)
    return end_lease(q, *sw, lease, T::release, q.visible_at_after(delay));
  // T8. The note first, for the DEAD word our CAS writes (layout.hpp,
  // SlotNote: the CAS publishes it), and only while our token is current
  // (acquire: as give_back), so that a holder whose lease is already lost
  // does not scribble on the slot's note. Dies before the CAS: the note
  // names a word that never was; the lease runs out and the next
  // dead-letterer writes its own. Dies after: DEAD with this note.
  if (sw->load(std::memory_order_acquire) != lease.token) return LeaseStatus::lease_lost;
  const Word dead = T::dead_letter.target(token, 0);
  if (error.empty())
    detail::write_note_after(q.note(lease.slot), dead, q.now(), "released", attempts);
  else
    detail::write_note(q.note(lease.slot), dead, q.now(), error);
  return end_lease(q, *sw, lease, T::dead_letter, 0);
}

LeaseStatus Queue::give_back(const Lease& lease) noexcept {
  Impl& q = *impl_;
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // Only a current holder may touch the count.
  if (sw->load(std::memory_order_acquire) != lease.token) return LeaseStatus::lease_lost;
  // Undo our claim's count, by CAS from a value whose tag is not later than
  // our lease (layout.hpp): if we are paused here past our lease and the
  // slot moved on (taken over; or acked, pushed again and claimed), its tag
  // is later and we leave it alone. Dies right after: the slot is still
  // LEASED with the count one lower; when the lease runs out the next claim
  // counts again, so the attempt that died is not counted.
  SlotMeta& m = q.meta(lease.slot);
  const Word token{lease.token};
  std::uint64_t a = m.attempts.load(std::memory_order_relaxed);
  while (!detail::gen_after(detail::attempts_gen(a), token.gen()) && detail::attempts_count(a) > 0)
    if (m.attempts.compare_exchange_weak(
            a, detail::make_attempts(detail::attempts_gen(a), detail::attempts_count(a) - 1),
            std::memory_order_relaxed))
      break;
  // T7 without the count (the count CAS above is published by its release).
  return end_lease(q, *sw, lease, T::release, 0);
}

namespace {

// T5 extend from the lease's token to `deadline`, and the owner record's tag
// moved along with it.
LeaseStatus extend_to(Queue::Impl& q, Lease& lease, std::uint64_t deadline) noexcept {
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // Same state, new deadline, generation + 1. Works after the deadline too,
  // as long as nobody has taken the lease over.
  // An earlier deadline than the token's is T5 shorten: it wakes claimers
  // that sleep until the old one (transitions.hpp).
  Word expected{lease.token};
  const detail::Transition& t = deadline < expected.aux() ? T::shorten : T::extend;
  const Word to = t.target(expected, deadline);
  if (!detail::move(t, *sw, expected, to)) return LeaseStatus::lease_lost;
  // The owner record is tagged with the generation: move the tag along, so
  // the janitor still recognises the owner. By CAS from a record tagged with
  // our old generation: one that did not name our lease (a claimer that died
  // before writing it, or a forged one) stays untrusted, and a record a later
  // claimer wrote after our new lease expired is not overwritten.
  SlotMeta& m = q.meta(lease.slot);
  std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
  if (detail::owner_gen(owner) == Word{lease.token}.gen())
    m.owner.compare_exchange_strong(
        owner, (owner & ~(detail::kGenMask << detail::kOwnerGenShift)) | detail::make_owner(to.gen(), 0),
        std::memory_order_relaxed);
  // The attempt count's tag moves along too, by CAS from a value tagged with
  // our old generation (our claim's, or our last extend's), so that it stays
  // within a few generations of the word however often a lease is extended
  // (gen_after's window, layout.hpp). Dies between the two CASes or before
  // this one: the tag lags by one, which every reader accepts.
  std::uint64_t a = m.attempts.load(std::memory_order_relaxed);
  if (detail::attempts_gen(a) == Word{lease.token}.gen())
    m.attempts.compare_exchange_strong(a, detail::make_attempts(to.gen(), detail::attempts_count(a)),
                                       std::memory_order_relaxed);
  lease.token = to.raw;
  detail::wake(t, *q.header);  // after the tags: a woken claimer that takes over finds them moved
  return LeaseStatus::ok;
}

std::string lease_text(milliseconds lease_time) {
  return "lease of " + std::to_string(lease_time.count()) + " ms not in 1.." +
         std::to_string(kMaxLease.count()) + " ms";
}

// Expiry is strictly after the deadline (core.hpp, lease_current): a reader
// takes the lease over only once its now_ms() > now + lease_time, i.e. at a
// true time >= now + lease_time + 1, more than lease_time after this call.
std::uint64_t deadline_after(const detail::Ring& q, milliseconds lease_time) noexcept {
  return q.now() + static_cast<std::uint64_t>(lease_time.count());
}

}  // namespace

LeaseStatus Queue::extend(Lease& lease, milliseconds lease_time) {
  Impl& q = *impl_;
  if (!detail::valid_duration(lease_time, false))
    detail::throw_error(q.name, make_error_code(errc::invalid_argument), lease_text(lease_time));
  return extend_to(q, lease, deadline_after(q, lease_time));
}

LeaseStatus Queue::extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept {
  if (!detail::valid_duration(lease_time, false)) {
    ec = make_error_code(errc::invalid_argument);
    return LeaseStatus::lease_lost;
  }
  ec.clear();
  return extend_to(*impl_, lease, deadline_after(*impl_, lease_time));
}

LeaseStatus Queue::extend(Job& job, milliseconds lease_time) {
  const LeaseStatus s = extend(job.lease, lease_time);
  if (s == LeaseStatus::ok)
    job.deadline = detail::to_time_point(impl_->host_time(Word{job.lease.token}.aux()));
  return s;
}

std::string Lease::to_string() const {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%llu.%u.%llx", static_cast<unsigned long long>(job), slot,
                              static_cast<unsigned long long>(token));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<Lease> Lease::parse(std::string_view text) noexcept {
  Lease l;
  const char* p = text.data();
  const char* const end = text.data() + text.size();
  auto field = [&](auto& value, int base, bool last) {
    auto [next, err] = std::from_chars(p, end, value, base);
    if (err != std::errc{} || next == p) return false;
    p = next;
    if (last) return p == end;
    if (p == end || *p != '.') return false;
    ++p;
    return true;
  };
  if (text.empty() || !field(l.job, 10, false) || !field(l.slot, 10, false) || !field(l.token, 16, true))
    return std::nullopt;
  return l;
}

}  // namespace jobring
