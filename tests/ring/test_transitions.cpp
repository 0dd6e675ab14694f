// The slot state machine as data (lib/ring/transitions.hpp), checked against
// the library: each queue operation leaves in the slot exactly the word its
// transition's target() computes (new state and aux, generation + 1) and
// bumps the total the transition names; and checks on the table itself:
// every state is reachable from FREE and leads back to it, every transition
// can fire, and moves that are not transitions are refused by starts_from().
//
// A test here fails if a row of the table is wrong (its `to`, its `from`
// set, its `counts`), if an operation makes a transition other than the one
// the table and layout.hpp name for it, or if an operation skips or doubles
// a generation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/transitions.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::LeaseStatus;
using jobring::Options;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::Queue;
using jobring::detail::KeyState;
using jobring::detail::KeyTransition;
using jobring::detail::State;
using jobring::detail::Transition;
using jobring::detail::Word;
using jobring::test::QueueName;
using jobring::test::SegmentView;
using jobring::test::with_lease;
namespace T = jobring::detail::T;
namespace K = jobring::detail::K;

constexpr std::array kStates{State::free, State::writing, State::ready, State::leased, State::dead};

// Watches slot `slot` across one operation: the word before, and every
// total, so that the word after and the totals' changes can be checked
// against a transition.
class Watch {
 public:
  Watch(const SegmentView& v, std::uint32_t slot) : v_(v), slot_(slot), before_(v.word(slot)) {
    for (unsigned t = 0; t < jobring::detail::kTotalCount; ++t)
      totals_[t] = v.total(jobring::detail::Total(t));
  }
  [[nodiscard]] Word before() const { return before_; }
  [[nodiscard]] Word after() const { return v_.word(slot_); }
  // The totals that changed, and by how much: exactly `t`'s, by one (none
  // for a transition that counts nothing).
  void expect_counted_once(const Transition& t) const {
    for (unsigned i = 0; i < jobring::detail::kTotalCount; ++i) {
      const std::uint64_t want = totals_[i] + (i == t.counts ? 1 : 0);
      EXPECT_EQ(v_.total(jobring::detail::Total(i)), want) << t.name << ": total " << i;
    }
  }

 private:
  const SegmentView& v_;
  std::uint32_t slot_;
  Word before_;
  std::array<std::uint64_t, jobring::detail::kTotalCount> totals_{};
};

// `after` is what t leaves over `before` with some aux in [lo, hi].
void expect_target(const Transition& t, Word before, Word after, std::uint64_t lo, std::uint64_t hi) {
  ASSERT_TRUE(t.starts_from(before)) << t.name << " cannot start from state " << before.state_bits();
  EXPECT_EQ(after.state(), t.to) << t.name;
  EXPECT_EQ(after.gen(), (before.gen() + 1) & jobring::detail::kGenMask) << t.name;
  EXPECT_GE(after.aux(), lo) << t.name;
  EXPECT_LE(after.aux(), hi) << t.name;
  EXPECT_EQ(after, t.target(before, after.aux())) << t.name;
}
void expect_target(const Transition& t, Word before, Word after, std::uint64_t aux) {
  expect_target(t, before, after, aux, aux);
}

Options small() { return Options{.capacity = 2, .max_payload = 16}; }

// ---------------------------------------------------------------------------
// Each operation makes its transition
// ---------------------------------------------------------------------------

// T1 reserve then T3 commit: a push takes a FREE slot to READY, visible now
// (aux 0), two generations on, and counts one push.
TEST(TransitionOps, PushIsReserveThenCommit) {
  QueueName name;
  Queue q = Queue::create(name, small());
  SegmentView v(name);
  const Watch w(v, 0);
  ASSERT_EQ(w.before().state(), State::free);
  ASSERT_TRUE(q.push("x"));
  ASSERT_EQ(v.find(State::ready), 0u);
  const Word reserved = T::reserve.target(w.before(), static_cast<std::uint32_t>(::getpid()));
  ASSERT_TRUE(T::commit.starts_from(reserved));
  expect_target(T::commit, reserved, w.after(), 0);
  w.expect_counted_once(T::commit);
}

// T3 with a delay: aux is the visible-at time.
TEST(TransitionOps, DelayedPushCommitsItsVisibleAt) {
  QueueName name;
  Queue q = Queue::create(name, small());
  SegmentView v(name);
  const Watch w(v, 0);
  const std::uint64_t t0 = jobring::detail::now_ms();
  ASSERT_TRUE(q.push("x", PushOptions{.delay = 60'000ms}));
  const std::uint64_t t1 = jobring::detail::now_ms();
  expect_target(T::commit, T::reserve.target(w.before(), 0), w.after(), t0 + 60'000, t1 + 60'000);
}

// T4 claim: READY → LEASED with aux = the deadline; the lease's token is
// the new word.
TEST(TransitionOps, ClaimLeases) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  SegmentView v(name);
  const Watch w(v, v.find(State::ready));
  const std::uint64_t t0 = jobring::detail::now_ms();
  auto job = q.try_claim(with_lease(60s));
  const std::uint64_t t1 = jobring::detail::now_ms();
  ASSERT_TRUE(job);
  expect_target(T::claim, w.before(), w.after(), t0 + 60'000, t1 + 60'000);
  EXPECT_EQ(job->lease.token, w.after().raw);
  w.expect_counted_once(T::claim);
}

// T5 extend: LEASED → LEASED with the new deadline; counts nothing.
TEST(TransitionOps, ExtendMovesTheDeadline) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  const Watch w(v, job->lease.slot);
  const std::uint64_t t0 = jobring::detail::now_ms();
  ASSERT_EQ(q.extend(*job, 2h), LeaseStatus::ok);
  const std::uint64_t t1 = jobring::detail::now_ms();
  expect_target(T::extend, w.before(), w.after(), t0 + 7'200'000, t1 + 7'200'000);
  EXPECT_EQ(job->lease.token, w.after().raw);
  w.expect_counted_once(T::extend);
}

// T5 takeover: a claim of an expired lease leases it again.
TEST(TransitionOps, ClaimOfAnExpiredLeaseTakesItOver) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  v.forge(job->lease.slot, T::extend, jobring::detail::now_ms() - 1000);  // its deadline passed
  const Watch w(v, job->lease.slot);
  const std::uint64_t t0 = jobring::detail::now_ms();
  auto again = q.try_claim(with_lease(60s));
  const std::uint64_t t1 = jobring::detail::now_ms();
  ASSERT_TRUE(again);
  expect_target(T::takeover, w.before(), w.after(), t0 + 60'000, t1 + 60'000);
  // Counted as a takeover (T5's total) and, by the claim pass, as a claim.
  EXPECT_EQ(v.total(jobring::detail::Total(T::takeover.counts)), 1u);
  EXPECT_EQ(v.total(jobring::detail::Total(T::claim.counts)), 2u);
}

// T6 ack: LEASED → FREE, aux 0.
TEST(TransitionOps, AckFrees) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  const Watch w(v, job->lease.slot);
  ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);
  expect_target(T::ack, w.before(), w.after(), 0);
  w.expect_counted_once(T::ack);
}

// T7 release: LEASED → READY, aux = visible-at (0 without a delay).
TEST(TransitionOps, ReleaseMakesReady) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  {
    const Watch w(v, job->lease.slot);
    ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
    expect_target(T::release, w.before(), w.after(), 0);
    w.expect_counted_once(T::release);
  }
  job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  const Watch w(v, job->lease.slot);
  const std::uint64_t t0 = jobring::detail::now_ms();
  ASSERT_EQ(q.release(job->lease, 60s), LeaseStatus::ok);
  const std::uint64_t t1 = jobring::detail::now_ms();
  expect_target(T::release, w.before(), w.after(), t0 + 60'000, t1 + 60'000);
}

// give_back is T7 too, visible at once.
TEST(TransitionOps, GiveBackMakesReady) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  const Watch w(v, job->lease.slot);
  ASSERT_EQ(q.give_back(job->lease), LeaseStatus::ok);
  expect_target(T::release, w.before(), w.after(), 0);
}

// T8 dead-letter: a release on the last attempt; T9 requeue (through its
// lock step) and T9 purge / remove_dead from DEAD.
TEST(TransitionOps, DeadLetterRequeueAndRemoveDead) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 2, .max_payload = 16, .max_attempts = 1});
  const auto pushed = q.push("x");
  ASSERT_TRUE(pushed);
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  const std::uint32_t slot = job->lease.slot;
  SegmentView v(name);
  {
    const Watch w(v, slot);
    ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
    expect_target(T::dead_letter, w.before(), w.after(), 0);
    w.expect_counted_once(T::dead_letter);
  }
  {
    const Watch w(v, slot);
    ASSERT_TRUE(q.requeue(pushed.id));
    const Word locked = T::requeue_lock.target(w.before(), 0);
    ASSERT_TRUE(T::requeue.starts_from(locked));
    expect_target(T::requeue, locked, w.after(), 0);
    w.expect_counted_once(T::requeue);
  }
  job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);  // DEAD again
  ASSERT_EQ(v.word(slot).state(), State::dead);
  const Watch w(v, slot);
  ASSERT_TRUE(q.remove_dead(pushed.id));
  expect_target(T::purge, w.before(), w.after(), 0);
  w.expect_counted_once(T::purge);
}

// T9 purge from READY.
TEST(TransitionOps, PurgeFreesAReadyJob) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  SegmentView v(name);
  const Watch w(v, v.find(State::ready));
  ASSERT_EQ(q.purge(PurgeWhat::ready), 1u);
  expect_target(T::purge, w.before(), w.after(), 0);
  w.expect_counted_once(T::purge);
}

// T2 recover: a claim that finds nothing frees the slot of a dead writer.
TEST(TransitionOps, ClaimRecoversADeadWritersSlot) {
  QueueName name;
  Queue q = Queue::create(name, small());
  SegmentView v(name);
  v.forge(0, T::reserve, jobring::test::dead_pid());
  const Watch w(v, 0);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  expect_target(T::recover, w.before(), w.after(), 0);
  w.expect_counted_once(T::recover);
}

// T7 expire: a sweep returns an expired lease (no janitor verdict needed).
TEST(TransitionOps, SweepReturnsAnExpiredLease) {
  QueueName name;
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  SegmentView v(name);
  v.forge(job->lease.slot, T::extend, jobring::detail::now_ms() - 1000);
  const Watch w(v, job->lease.slot);
  (void)q.sweep();
  expect_target(T::expire, w.before(), w.after(), 0);
  w.expect_counted_once(T::expire);
}

// ---------------------------------------------------------------------------
// The table itself
// ---------------------------------------------------------------------------

// The states reachable from `start` by the transitions of the table.
unsigned reachable_from(State start) {
  unsigned seen = jobring::detail::bit(start);
  for (bool grew = true; grew;) {
    grew = false;
    for (const Transition* t : T::kAll) {
      if ((t->from & seen) == 0) continue;
      const unsigned to = jobring::detail::bit(t->to);
      if ((seen & to) == 0) {
        seen |= to;
        grew = true;
      }
    }
  }
  return seen;
}

// From FREE every state is reachable, and from every state FREE is: no state
// is dead code, none is a trap. Every transition can fire (one of its
// `from` states is reachable).
TEST(TransitionTable, EveryStateReachableAndNoneATrap) {
  const unsigned from_free = reachable_from(State::free);
  for (const State s : kStates) {
    EXPECT_NE(from_free & jobring::detail::bit(s), 0u) << "state " << static_cast<unsigned>(s);
    EXPECT_NE(reachable_from(s) & jobring::detail::bit(State::free), 0u)
        << "state " << static_cast<unsigned>(s);
  }
  for (const Transition* t : T::kAll) {
    EXPECT_NE(t->from & from_free, 0u) << t->name << " can never fire";
    EXPECT_NE(from_free & jobring::detail::bit(t->to), 0u) << t->name;
  }
}

// Every transition's target(): its own `to`, the aux asked for, generation
// + 1 (wrapping), from every state it starts from; and starts_from() is true
// exactly for its `from` states.
TEST(TransitionTable, TargetAndStartsFromAgreeWithTheRow) {
  for (const Transition* t : T::kAll) {
    for (const State s : kStates) {
      for (const std::uint64_t gen : {std::uint64_t{0}, std::uint64_t{7}, jobring::detail::kGenMask}) {
        const Word from = Word::make(s, gen, 12345);
        EXPECT_EQ(t->starts_from(from), (t->from & jobring::detail::bit(s)) != 0) << t->name;
        const Word to = t->target(from, 777);
        EXPECT_EQ(to.state(), t->to) << t->name;
        EXPECT_EQ(to.aux(), 777u) << t->name;
        EXPECT_EQ(to.gen(), (gen + 1) & jobring::detail::kGenMask) << t->name;
        EXPECT_NE(to, from) << t->name << ": a transition always changes the word";
      }
    }
  }
}

// Moves that are not transitions: no row takes these states to these.
TEST(TransitionTable, IllegalMovesAreNotTransitions) {
  struct Move {
    State from, to;
  };
  for (const Move m : {Move{State::free, State::leased}, Move{State::free, State::ready},
                       Move{State::free, State::dead}, Move{State::writing, State::leased},
                       Move{State::ready, State::dead}, Move{State::ready, State::writing},
                       Move{State::leased, State::writing}, Move{State::dead, State::leased}}) {
    for (const Transition* t : T::kAll)
      EXPECT_FALSE(t->starts_from(Word::make(m.from, 3, 0)) && t->to == m.to)
          << t->name << " moves " << static_cast<unsigned>(m.from) << " to " << static_cast<unsigned>(m.to);
  }
  // A corrupt word (a state value above DEAD) is left alone by all but purge.
  const Word corrupt{~std::uint64_t{0}};
  for (const Transition* t : T::kAll) EXPECT_EQ(t->starts_from(corrupt), t == &T::purge) << t->name;
}

// The rows' counts and wake-ups as layout.hpp's crash table and the totals
// of Stats describe them: a transition that makes a job claimable wakes
// claimers, one that frees a slot wakes pushers.
TEST(TransitionTable, WakesFollowTheTargetState) {
  using jobring::detail::Wakes;
  for (const Transition* t : T::kAll) {
    Wakes want = Wakes::none;
    if (t->to == State::ready) want = Wakes::work;
    if (t->to == State::free) want = Wakes::room;
    EXPECT_EQ(t->wakes, want) << t->name;
  }
}

// The key table's K1..K7: every entry state is reachable from EMPTY and
// leads back to it; a corrupt entry is taken only by K1 (a new claim) and K7
// drop.
TEST(TransitionTable, KeyEntryStatesReachableAndNoneATrap) {
  const KeyTransition* all[] = {&K::claim,  &K::live, &K::remember, &K::forget,       &K::undo,
                                &K::expire, &K::keep, &K::drop,     &K::remember_for, &K::forget_for};
  const auto reach = [&](KeyState start) {
    unsigned seen = jobring::detail::bit(start);
    for (bool grew = true; grew;) {
      grew = false;
      for (const KeyTransition* t : all) {
        if ((t->from & seen) == 0 || (seen & jobring::detail::bit(t->to)) != 0) continue;
        seen |= jobring::detail::bit(t->to);
        grew = true;
      }
    }
    return seen;
  };
  for (const KeyState s : {KeyState::empty, KeyState::claimed, KeyState::live, KeyState::remembered}) {
    EXPECT_NE(reach(KeyState::empty) & jobring::detail::bit(s), 0u) << static_cast<unsigned>(s);
    EXPECT_NE(reach(s) & jobring::detail::bit(KeyState::empty), 0u) << static_cast<unsigned>(s);
  }
  const Word corrupt{std::uint64_t{5} << jobring::detail::kStateShift};  // no KeyState has value 5
  for (const KeyTransition* t : all)
    EXPECT_EQ(t->starts_from(corrupt), t == &K::claim || t == &K::drop) << t->name;
}

}  // namespace
