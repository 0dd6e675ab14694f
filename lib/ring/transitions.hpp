// jobring — the slot state machine as data.
//
// Read this file to learn the state machine. Every change of a slot's state
// word is one of the transitions below: a named constant that says from which
// states it may start, which state it ends in, the memory order of its CAS,
// which waiters it wakes and which total it counts. One inline function,
// apply(), does the CAS, the count and the wake-up for every caller, so the
// 20-odd places that move a slot cannot disagree on any of these.
//
// The word's encoding (state 3 | generation 21 | aux 40) and the segment map
// are in layout.hpp. The key table's entries (keys.hpp) use the same word
// encoding with states of their own; their transitions K1..K7 are constants
// at the end of this file, and their crash analysis is in keys.hpp.
//
// ============================================================================
// State machine — every transition, who makes it, and crash analysis
// ============================================================================
//
//            push:reserve            push:commit
//   ┌──────┐ ───────────▶ ┌─────────┐ ──────────▶ ┌───────┐  claim   ┌────────┐
//   │ FREE │              │ WRITING │             │ READY │ ───────▶ │ LEASED │──┐
//   └──────┘ ◀─────────── └─────────┘             └───────┘ ◀─────── └────────┘  │ extend
//    ▲  ▲  ▲  writer dead                       ▲ ▲  (visible_at   release /     ◀┘ takeover
//    │  │  │  (recover)                         │ │   > now: shown   release(delay)   (expired:
//    │  │  └──────────────── ack ───────────────┼─┼─ as "delayed")                   new lease)
//    │  └───── purge (ready/delayed) ───────────┘ │
//    │                                            │ requeue
//    │  purge / remove_dead      ┌──────┐ ────────┘
//    └────────────────────────── │ DEAD │ ◀── release or expiry with attempts >= max_attempts
//                                └──────┘
//
//  T1 FREE→WRITING (push:reserve; aux = producer PID). Dies before: nothing
//     happened. Dies after: the slot holds a half-written job whose push never
//     returned; a claimer that finds nothing to claim, a pusher that finds the
//     ring full, or the janitor sees WRITING with a dead PID and does T2.
//  T2 WRITING→FREE (recover; only when the writer PID is proven dead, never by
//     time alone, so a stopped producer that resumes never scribbles over a
//     reused slot). Dies before/after: the same check is repeated by the next
//     scanner; the CAS makes a double recovery impossible.
//  T3 WRITING→READY (push:commit, release: publishes job id, length, payload).
//     Dies before: T2 applies. Dies after: the job is in the queue; the
//     producer may not have learnt its id, but nothing is lost.
//  T4 READY→LEASED (claim; aux = deadline). The owner and attempt count are
//     written just after, tagged with the generation, so the janitor trusts an
//     owner only if its tag matches the state word. Dies before: nothing.
//     Dies after: the job is hidden until the deadline, then T5 (or, with the
//     janitor, at once if the owner record was written; if the claimer died
//     before writing it, the lease simply runs out). The attempt count may be
//     one short if the claimer died between the CAS and its increment (or
//     stalled there past its whole lease while another claimer took over).
//     Both are written by CAS from a value tagged no later than the word
//     claimed from (layout.hpp, count_claim), so a claimer that resumes after
//     the slot moved on writes neither onto a later lease or job.
//  T5 LEASED→LEASED (takeover of an expired lease by a claimer; or extend by
//     the token holder: "shorten" when the new deadline is earlier, which
//     wakes sleeping claimers). Dies before/after: as T4.
//  T6 LEASED→FREE (ack with the current token). Dies before: the lease runs
//     out and the job is redelivered (at-least-once). Dies after: done.
//  T7 LEASED→READY (release with the current token, aux = visible-at; or a
//     sweep — the janitor — returning a lease whose owner is proven dead, or
//     whose deadline has passed). As T6.
//  T8 LEASED→DEAD (release, or a claimer finding the lease expired, when
//     attempts >= max_attempts). The job keeps its payload until an operator
//     acts. Just before the CAS the dead-letterer writes the job's note —
//     when and why it died — tagged for the DEAD word, which the CAS
//     publishes (layout.hpp, SlotNote). Dies before/after: consistent either
//     way (a note tagged for a word that never came is never shown).
//  T9 DEAD→READY (requeue; attempts reset first), DEAD/READY→FREE (purge,
//     remove_dead). Dies before/after: consistent either way.
//  T10 WRITING→DEAD (move:commit-dead, the target side of Queue::move_dead:
//     a dead job moved in from another queue arrives dead, with its note,
//     attempts and age written while the slot was ours). Dies before: T2,
//     and the job is still in its source queue. Dies after: the job is in
//     both queues until the mover (or the next one) does T11; the move's key
//     (K1..K3 as a push) makes the next mover find it here and not add it
//     again (move.cpp).
//  T11 DEAD→FREE (move:out, the source side): only from the exact word the
//     mover copied, after the copy is committed in the target. Dies
//     before: as T10's "after". Dies after: moved.
//  After a reboot (a file-backed queue, durable.cpp): the first opener in the
//     new boot does T2 on every WRITING slot and T7 reclaim (or T8) on every
//     LEASED one, from the words it read, before anyone of the new boot can
//     act on the queue: every writer and holder is of the old boot. Dies
//     half-way: the boot is not marked recovered; the next opener repeats,
//     and finds the slots already moved left alone.
//  Words with a state value above DEAD (never written by jobring) are skipped
//  by every scan, counted as corrupt in stats, and reset to FREE by purge().
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>

#include "ring/layout.hpp"
#include "ring/wait.hpp"

namespace jobring::detail {

// Which event word a transition's notify() bumps (wait.hpp): claimers sleep
// on `work`, pushers waiting for room on `room`.
enum class Wakes : std::uint8_t { none, work, room };

inline constexpr unsigned kNoTotal = kTotalCount;  // a transition that counts nothing itself

// A bit per state, for the set of states a transition may start from.
[[nodiscard]] constexpr unsigned bit(State s) noexcept { return 1u << static_cast<unsigned>(s); }
inline constexpr unsigned kInvalidStates = 1u << 5;  // words with a state value above DEAD

struct Transition {
  const char* name;            // "T4 claim": the label used in comments, tests and the fuzz model
  unsigned from;               // bit() of every state it may start from
  State to;                    // the state it ends in
  std::memory_order order;     // of the CAS when it succeeds
  Wakes wakes;                 // whom it wakes after the CAS
  unsigned counts = kNoTotal;  // the Total it bumps (Header::totals, or a tally block), after the CAS

  [[nodiscard]] constexpr bool starts_from(Word w) const noexcept {
    return (from & (w.valid() ? bit(w.state()) : kInvalidStates)) != 0;
  }
  // The word it writes over `from_word`: new state and aux, generation + 1.
  [[nodiscard]] constexpr Word target(Word from_word, std::uint64_t aux) const noexcept {
    return from_word.next(to, aux);
  }
};

// Waking a sleeper needs the CAS to be seq_cst: the no-lost-wake-up argument
// (wait.hpp) puts the notifier's CAS and its load of the event word in one
// total order with the waiter's announce and re-check. A transition that
// wakes nobody needs no more than acq_rel.
[[nodiscard]] constexpr bool well_formed(const Transition& t) noexcept {
  const bool seq_cst = t.order == std::memory_order_seq_cst;
  return seq_cst == (t.wakes != Wakes::none) && t.from != 0;
}

namespace T {

constexpr unsigned kLeasable = bit(State::ready);

// T1: a producer reserves a FREE slot (aux = the writer: start bits | PID).
// Acquire: pairs with the release CAS that freed the slot (T6, T9 purge, T2),
// so the previous holder's reads of the payload happen-before our writes.
inline constexpr Transition reserve{"T1 reserve", bit(State::free), State::writing, std::memory_order_acquire,
                                    Wakes::none};
// T2: a slot left WRITING by a producer proven dead is freed.
inline constexpr Transition recover{"T2 recover", bit(State::writing), State::free, std::memory_order_seq_cst,
                                    Wakes::room,  kRecoveredWrites};
// T2 by the writer itself: a keyed push that found its key taken gives the
// slot back. Counts nothing: no job was pushed and no writer died.
inline constexpr Transition abandon{"T2 abandon", bit(State::writing), State::free, std::memory_order_seq_cst,
                                    Wakes::room};
// T3: the producer publishes the job (aux = visible-at, 0 = now). Release:
// the meta and the payload go to the claimer whose acquire CAS reads this word
// or any later one (every later change is an RMW: the release sequence holds).
// Counted once per push call, and claims (T4, T5) once per pass: batch
// callers move() each slot, then count how many moved (T3, T4 and T6 in
// the caller's tally block, layout.hpp) and wake.
inline constexpr Transition commit{
    "T3 commit", bit(State::writing), State::ready, std::memory_order_seq_cst, Wakes::work, kPushed};
// T4: a worker claims a READY job (aux = deadline). Acquire: synchronises
// with the producer's T3 through the release sequence.
inline constexpr Transition claim{"T4 claim",  kLeasable, State::leased, std::memory_order_acq_rel,
                                  Wakes::none, kClaimed};
// T5: a claimer takes over an expired lease (aux = its new deadline). It is
// also counted as a claim.
inline constexpr Transition takeover{
    "T5 takeover", bit(State::leased), State::leased, std::memory_order_acq_rel, Wakes::none, kExpired};
// T5: the token holder moves its deadline later or keeps it (aux = the new
// one). Relaxed: it publishes nothing (the holder's later ack or release
// does), and a sleeping claimer's due time (the old deadline) is not later
// than the new one, so it owes no wake-up.
inline constexpr Transition extend{"T5 extend", bit(State::leased), State::leased, std::memory_order_relaxed,
                                   Wakes::none};
// T5: the token holder moves its deadline earlier. A claimer that saw the old
// deadline sleeps until then: it must be woken to see the new one, so this
// is seq_cst and wakes `work` (wait.hpp's argument: if the sleeper's seq_cst
// re-check missed the new word, our load of the event word sees its waiting
// bit). Dies between the CAS and the wake-up: a sleeper re-checks within its
// bounded sleep (kMaxSleep).
inline constexpr Transition shorten{"T5 shorten", bit(State::leased), State::leased,
                                    std::memory_order_seq_cst, Wakes::work};
// T6: the token holder acks. Release: its reads of the payload happen-before
// the next producer's writes (T1's acquire).
inline constexpr Transition ack{
    "T6 ack", bit(State::leased), State::free, std::memory_order_seq_cst, Wakes::room, kAcked};
// T7: the token holder releases the job (aux = visible-at).
inline constexpr Transition release{"T7 release", bit(State::leased), State::ready, std::memory_order_seq_cst,
                                    Wakes::work,  kReleased};
// T7 by sweep: the lease of an owner proven dead, or one past its deadline.
inline constexpr Transition reclaim{"T7 reclaim", bit(State::leased), State::ready, std::memory_order_seq_cst,
                                    Wakes::work,  kReclaimed};
inline constexpr Transition expire{
    "T7 expire", bit(State::leased), State::ready, std::memory_order_seq_cst, Wakes::work, kExpired};
// T8: a lease ends with the attempts used up (release, a claimer or sweep
// finding it expired), or a claimer quarantines a slot with a corrupt length.
// DEAD is neither claimable nor room, so it wakes nobody.
inline constexpr Transition dead_letter{"T8 dead-letter",          bit(State::leased), State::dead,
                                        std::memory_order_acq_rel, Wakes::none,        kDeadLettered};
// T9 requeue, step 1: DEAD → DEAD makes the caller the only requeuer of the
// slot while it resets the attempts; step 2: DEAD → READY.
inline constexpr Transition requeue_lock{"T9 requeue-lock", bit(State::dead), State::dead,
                                         std::memory_order_acq_rel, Wakes::none};
inline constexpr Transition requeue{"T9 requeue", bit(State::dead), State::ready, std::memory_order_seq_cst,
                                    Wakes::work,  kRequeued};
// T9 purge / remove_dead: a job not under lease (or a corrupt word) is
// dropped.
inline constexpr Transition purge{"T9 purge",  bit(State::ready) | bit(State::dead) | kInvalidStates,
                                  State::free, std::memory_order_seq_cst,
                                  Wakes::room, kPurged};

// T10: a dead job moved in from another queue (move.cpp) is committed dead,
// its note, attempts and age published by the CAS (release, as T3; a reader
// acquires the DEAD word as for T8's note). Counted as moved in. Wakes
// nobody: DEAD is neither claimable nor room.
inline constexpr Transition commit_dead{"T10 commit-dead",         bit(State::writing), State::dead,
                                        std::memory_order_acq_rel, Wakes::none,         kMovedIn};
// T11: the source's copy of a moved dead job leaves (as T9 purge).
inline constexpr Transition move_out{"T11 move-out", bit(State::dead), State::free, std::memory_order_seq_cst,
                                     Wakes::room,    kMovedOut};

inline constexpr const Transition* kAll[] = {
    &reserve, &recover, &abandon, &commit,      &claim,        &takeover, &extend, &shorten,     &ack,
    &release, &reclaim, &expire,  &dead_letter, &requeue_lock, &requeue,  &purge,  &commit_dead, &move_out};

}  // namespace T

[[nodiscard]] constexpr bool every_transition_well_formed() noexcept {
  for (const Transition* t : T::kAll)
    if (!well_formed(*t)) return false;
  return true;
}
static_assert(every_transition_well_formed(), "a transition is seq_cst if and only if it wakes a waiter");
static_assert(!T::claim.starts_from(Word::make(State::free, 0, 0)), "FREE -> LEASED is not a transition");
static_assert(T::purge.starts_from(Word{~std::uint64_t{0}}), "purge resets corrupt words");

// The memory order of a failed CAS: it loads only (C++20 allows any order
// no stronger than acquire; callers that re-decide from the word they read
// take acquire where they read the slot's fields next).
[[nodiscard]] constexpr std::memory_order failure_order(std::memory_order o) noexcept {
  return o == std::memory_order_relaxed || o == std::memory_order_release ? std::memory_order_relaxed
                                                                          : std::memory_order_acquire;
}

// The event word a transition wakes, in a mapped header.
[[nodiscard]] inline std::atomic<std::uint32_t>* event_of(Header& h, Wakes w) noexcept {
  switch (w) {
    case Wakes::work:
      return &h.work_event;
    case Wakes::room:
      return &h.room_event;
    case Wakes::none:
      break;
  }
  return nullptr;
}

// The CAS of transition t on `word` from `expected` to `to` — nothing else.
// On failure `expected` holds the word read. Callers that move many slots in
// one call (a batch, a scan) CAS each with move() and then settle() once.
[[nodiscard]] inline bool move(const Transition& t, std::atomic<std::uint64_t>& word, Word& expected,
                               Word to) noexcept {
  assert(t.starts_from(expected) && to.state() == t.to);
  return word.compare_exchange_strong(expected.raw, to.raw, t.order, failure_order(t.order));
}
// As move(), but may fail spuriously: for CAS loops that re-decide anyway.
[[nodiscard]] inline bool move_weak(const Transition& t, std::atomic<std::uint64_t>& word, Word& expected,
                                    Word to) noexcept {
  assert(t.starts_from(expected) && to.state() == t.to);
  return word.compare_exchange_weak(expected.raw, to.raw, t.order, failure_order(t.order));
}

// Counts `n` successful moves of t. Release RMW: the empty-ring memo's
// acquire loads (claim.cpp) that see the count see the transitions. T3
// commit, T4 claim and T6 ack are counted by their callers in the
// thread's tally block instead (Impl::tally, core.hpp; layout.hpp,
// Tallies): no locked RMW, and not in the memo's signature (which reads
// the id counter for pushes); this shared form serves those three only
// for a thread without a block.
inline void count(const Transition& t, Header& h, std::uint64_t n = 1) noexcept {
  if (n != 0 && t.counts != kNoTotal) h.totals[t.counts].fetch_add(n, std::memory_order_release);
}
// Wakes whom t wakes (after its count, so a woken claimer's memo sees it;
// for T3 the memo sees the push's job id, taken before the commit).
inline void wake(const Transition& t, Header& h) noexcept {
  if (auto* event = event_of(h, t.wakes)) notify(*event);
}
// What follows `n` successful moves of t: its count, then its wake-up.
inline void settle(const Transition& t, Header& h, std::uint64_t n = 1) noexcept {
  if (n == 0) return;
  count(t, h, n);
  wake(t, h);
}

// One transition, whole: the CAS from `expected` to t.target(expected, aux),
// then its count and wake-up. On failure nothing else happens and
// `expected` holds the word read.
inline bool apply(const Transition& t, Header& h, std::atomic<std::uint64_t>& word, Word& expected,
                  std::uint64_t aux) noexcept {
  if (!move(t, word, expected, t.target(expected, aux))) return false;
  settle(t, h);
  return true;
}

// ============================================================================
// Key-table entries (keys.hpp): the same word encoding, other states
// ============================================================================

enum class KeyState : std::uint64_t { empty = 0, claimed = 1, live = 2, remembered = 3 };

[[nodiscard]] constexpr KeyState key_state(Word w) noexcept { return static_cast<KeyState>(w.state_bits()); }
[[nodiscard]] constexpr unsigned key_bit(Word w) noexcept {
  return w.state_bits() <= static_cast<std::uint64_t>(KeyState::remembered) ? 1u << w.state_bits()
                                                                            : kInvalidStates;
}
[[nodiscard]] constexpr unsigned bit(KeyState s) noexcept { return 1u << static_cast<unsigned>(s); }

struct KeyTransition {
  const char* name;
  unsigned from;  // bit() of every state it may start from (kInvalidStates: a corrupt word)
  KeyState to;
  std::memory_order order;

  [[nodiscard]] constexpr bool starts_from(Word w) const noexcept { return (from & key_bit(w)) != 0; }
  [[nodiscard]] constexpr Word target(Word from_word, std::uint64_t aux) const noexcept {
    return from_word.next(static_cast<State>(to), aux);
  }
};

namespace K {

// K1: a producer takes an entry for its key (aux = the writer). Acquire:
// pairs with the release of whoever emptied or finished the entry.
inline constexpr KeyTransition claim{"K1 claim",
                                     bit(KeyState::empty) | bit(KeyState::remembered) | kInvalidStates,
                                     KeyState::claimed, std::memory_order_acquire};
// K2 is not an entry transition: the home bucket's version v → v+1 (keys.cpp).
// K3: the producer's job is committed: the key is live. Release.
inline constexpr KeyTransition live{"K3 live", bit(KeyState::claimed), KeyState::live,
                                    std::memory_order_release};
// K4: the job left the queue: remember the key for the window (aux =
// forget-at), or forget it at once with a window of 0. seq_cst: a wake-up of
// the room event follows it (ack's T6 and purge's T9 settle after their K4),
// and a keyed push sleeping there for a full key table must either see the
// freed entry in its re-check (KeyTable::read's seq_cst load) or be woken:
// wait.hpp's argument, with K4 as the notifier's transition.
inline constexpr KeyTransition remember{"K4 remember", bit(KeyState::live) | bit(KeyState::claimed),
                                        KeyState::remembered, std::memory_order_seq_cst};
inline constexpr KeyTransition forget{"K4 forget", bit(KeyState::live) | bit(KeyState::claimed),
                                      KeyState::empty, std::memory_order_seq_cst};
static_assert(remember.order == std::memory_order_seq_cst && forget.order == std::memory_order_seq_cst,
              "K4 is followed by a room wake-up: seq_cst (wait.hpp)");
// K5: the producer undoes its K1 (a lost K2, or a duplicate found).
inline constexpr KeyTransition undo{"K5 undo", bit(KeyState::claimed), KeyState::empty,
                                    std::memory_order_release};
// K6: a remembered key's window is over (or its forget-at is corrupt).
inline constexpr KeyTransition expire{"K6 expire", bit(KeyState::remembered), KeyState::empty,
                                      std::memory_order_acq_rel};
// K7: anyone settles an entry whose producer or finisher died: a dead
// producer's job keeps its key (keep) only if its slot proves it committed
// under this key and entry (keys.hpp), else the entry is dropped (drop,
// which also resets a corrupt word); a finisher's K4 is done for it
// (remember / forget), also by a keyed push that meets the key. acq_rel: a
// later inserter of the entry acquires through it.
inline constexpr KeyTransition keep{"K7 keep", bit(KeyState::claimed), KeyState::live,
                                    std::memory_order_acq_rel};
inline constexpr KeyTransition drop{"K7 drop", bit(KeyState::claimed) | kInvalidStates, KeyState::empty,
                                    std::memory_order_acq_rel};
inline constexpr KeyTransition remember_for{"K7 remember", bit(KeyState::live), KeyState::remembered,
                                            std::memory_order_acq_rel};
inline constexpr KeyTransition forget_for{"K7 forget", bit(KeyState::live), KeyState::empty,
                                          std::memory_order_acq_rel};

}  // namespace K

// The CAS of key transition t on entry word `word`, from `expected` to `to`.
[[nodiscard]] inline bool move(const KeyTransition& t, std::atomic<std::uint64_t>& word, Word& expected,
                               Word to) noexcept {
  assert(t.starts_from(expected) && key_state(to) == t.to);
  return word.compare_exchange_strong(expected.raw, to.raw, t.order, std::memory_order_relaxed);
}

}  // namespace jobring::detail
