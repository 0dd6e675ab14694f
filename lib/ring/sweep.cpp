// jobring — recovery: sweep (what the janitor runs: T7 for leases of dead
// owners and expired leases, T8 when their attempts are used up, T2, K7) and
// the freeing of dead producers' half-written slots that claims and pushes
// also do on their own.

#include <algorithm>
#include <iterator>

#include "ring/core.hpp"

namespace jobring {

std::size_t detail::Ring::recover_dead_writers() noexcept {
  std::size_t freed = 0;
  for (std::uint32_t i = 0; i < capacity; ++i) {
    Word w{state(i).load(std::memory_order_relaxed)};
    if (w.state() != State::writing) continue;
    if (!liveness.writer_gone(writer_token(w.aux()))) continue;
    // T2. Release: pairs with the acquire of the next producer's T1.
    if (detail::move(T::recover, state(i), w, T::recover.target(w, 0))) {
      ++freed;
      detail::count(T::recover, *header);
    }
  }
  if (freed > 0) detail::wake(T::recover, *header);
  return freed;
}

namespace {

// Verdicts on lease owners within one sweep, so that many leases of one owner
// cost one check: the last 16 owners judged (a ring: a pass over many owners
// keeps the recent ones, and leases of one owner tend to be judged together).
class OwnerVerdicts {
 public:
  explicit OwnerVerdicts(const detail::Liveness& judge) noexcept : judge_(judge) {}
  bool gone(std::uint64_t token) noexcept {
    for (std::size_t v = 0; v < std::min(judged_, std::size(verdicts_)); ++v)
      if (verdicts_[v].token == token) return verdicts_[v].gone;
    const bool gone = judge_.proven_gone(token);
    verdicts_[judged_++ % std::size(verdicts_)] = {token, gone};
    return gone;
  }

 private:
  struct Verdict {
    std::uint64_t token;
    bool gone;
  };
  const detail::Liveness& judge_;
  Verdict verdicts_[16]{};
  std::size_t judged_ = 0;
};

// Is the lease `w` on slot `m` one that sweep returns: past its deadline, or
// held by an owner proven dead? `dead_owner` tells which.
bool returnable(Word w, const SlotMeta& m, std::uint64_t now, OwnerVerdicts& verdicts,
                bool& dead_owner) noexcept {
  dead_owner = false;
  if (!detail::lease_current(w, now)) return true;
  // The tag must name this very lease (generation), else the record is a
  // previous owner's, or the claimer died before writing it: then only the
  // deadline frees the slot. Token 0: a detached lease.
  const std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
  const std::uint64_t token = detail::owner_token(owner);
  if (detail::owner_gen(owner) != w.gen() || token == 0) return false;
  dead_owner = verdicts.gone(token);
  return dead_owner;
}

}  // namespace

SweepResult Queue::sweep() noexcept {
  Impl& q = *impl_;
  SweepResult r;
  const std::uint64_t now = q.now();
  const std::uint32_t max_attempts = q.options.max_attempts;
  OwnerVerdicts verdicts(q.liveness);
  bool returned = false;
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    auto& sw = q.state(i);
    Word w{sw.load(std::memory_order_acquire)};
    if (w.state() != State::leased) continue;
    SlotMeta& m = q.meta(i);
    bool dead_owner = false;
    if (!returnable(w, m, now, verdicts, dead_owner)) continue;
    const std::uint32_t used = detail::attempts_of(m, w);
    const bool exhausted = max_attempts != 0 && used >= max_attempts;
    // T7 (or T8). From the word we judged: if the owner acked, extended or
    // the lease was taken over meanwhile, the CAS fails and we do nothing.
    // Counted here, woken once at the end.
    const detail::Transition& t = exhausted ? T::dead_letter : dead_owner ? T::reclaim : T::expire;
    // T8's note before its CAS (layout.hpp, SlotNote; notes.cpp).
    if (exhausted)
      detail::write_note_after(q.note(i), t.target(w, 0), now, dead_owner ? "owner died" : "lease expired",
                               used);
    if (!detail::move(t, sw, w, t.target(w, 0))) continue;
    detail::count(t, *q.header);
    if (exhausted) {
      ++r.dead_lettered;
    } else {
      returned = true;
    }
    // A dead-lettered lease is also reported, and counted, as reclaimed or expired.
    if (dead_owner) {
      ++r.reclaimed;
      if (exhausted) q.count(detail::kReclaimed);
    } else {
      ++r.expired;
      if (exhausted) q.count(detail::kExpired);
    }
  }
  r.recovered_writes = q.recover_dead_writers();
  // K7 / K6 over the key table: keys of dead producers and finishers, and
  // windows that are over.
  q.keys.resolve_all(now);
  if (returned) detail::wake(T::reclaim, *q.header);
  // A file-backed queue: the wall clock's anchor, for the next boot's
  // recovery (durable.cpp), at most one sweep interval old.
  if (q.durable != nullptr) detail::refresh_anchor(q);
  return r;
}

}  // namespace jobring
