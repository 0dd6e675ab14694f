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
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/transitions.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::KeyState;
using detail::KeyTransition;
using detail::State;
using detail::Transition;
using detail::Word;
using test::QueueName;
using test::SegmentView;
using test::with_lease;
namespace T = detail::T;
namespace K = detail::K;

constexpr std::array kStates{State::free, State::writing, State::ready, State::leased, State::dead};

// The word a transition leaves carries an aux the test knows (0, a
// writer) or a time: now_ms() when the operation ran, plus `ahead_ms`.
struct Aux {
  bool timed = false;
  std::uint64_t value = 0;  // the aux; or, when timed, the milliseconds ahead of now
  static Aux zero() { return {}; }
  static Aux ahead(std::chrono::milliseconds ms) { return {true, static_cast<std::uint64_t>(ms.count())}; }
};

// A queue of two slots, mapped by the test too, on which each test runs one
// operation and checks the word and the totals it leaves.
class TransitionOps : public ::testing::Test {
 protected:
  void SetUp() override { reopen(Options{.capacity = 2, .max_payload = 16}); }
  void reopen(const Options& o) {
    v_.reset();
    q_.reset();
    Queue::remove(name_);
    q_.emplace(Queue::create(name_, o));
    v_.emplace(name_.str());
  }
  Queue& q() { return *q_; }
  SegmentView& v() { return *v_; }
  // A job pushed and then claimed with a lease of 60 s.
  std::optional<Job> leased() {
    if (!q().push("x")) return std::nullopt;
    return q().try_claim(with_lease(60s));
  }

  // Runs `op`, then checks that slot `slot` holds exactly what t leaves over
  // the word it held before (after `via`, a first step whose word is not
  // observable: push's T1, requeue's lock), with an aux as `aux` says, and
  // that of all the totals only t's moved, by one (`counts_once` false: t's
  // total is checked by the caller).
  template <class Op>
  void expect_makes(const Transition& t, std::uint32_t slot, Op&& op, Aux aux = Aux::zero(),
                    const Transition* via = nullptr, bool counts_once = true) {
    SCOPED_TRACE(t.name);
    std::array<std::uint64_t, detail::kTotalCount> totals{};
    for (unsigned i = 0; i < detail::kTotalCount; ++i) totals[i] = v().total(detail::Total(i));
    Word before = v().word(slot);
    const std::uint64_t t0 = detail::now_ms();
    op();
    const std::uint64_t t1 = detail::now_ms();
    const Word after = v().word(slot);
    if (via != nullptr) {
      ASSERT_TRUE(via->starts_from(before))
          << via->name << " cannot start from state " << before.state_bits();
      before = via->target(before, 0);
    }
    ASSERT_TRUE(t.starts_from(before)) << t.name << " cannot start from state " << before.state_bits();
    EXPECT_EQ(after.state(), t.to);
    EXPECT_EQ(after.gen(), (before.gen() + 1) & detail::kGenMask);
    EXPECT_GE(after.aux(), aux.timed ? t0 + aux.value : aux.value);
    EXPECT_LE(after.aux(), aux.timed ? t1 + aux.value : aux.value);
    EXPECT_EQ(after, t.target(before, after.aux()));
    if (!counts_once) return;
    for (unsigned i = 0; i < detail::kTotalCount; ++i)
      EXPECT_EQ(v().total(detail::Total(i)), totals[i] + (i == t.counts ? 1 : 0)) << "total " << i;
  }

  QueueName name_;
  std::optional<Queue> q_;
  std::optional<SegmentView> v_;
};

// ---------------------------------------------------------------------------
// Each operation makes its transition
// ---------------------------------------------------------------------------

// T1 reserve then T3 commit: a push takes a FREE slot to READY, visible now
// (aux 0), two generations on, and counts one push.
TEST_F(TransitionOps, PushIsReserveThenCommit) {
  expect_makes(
      T::commit, 0, [&] { ASSERT_TRUE(q().push("x")); }, Aux::zero(), &T::reserve);
}

// T3 with a delay: aux is the visible-at time, 1 ms past now + delay
// (now_ms() truncates; a delay is never cut short, issue 13 item 11).
TEST_F(TransitionOps, DelayedPushCommitsItsVisibleAt) {
  expect_makes(
      T::commit, 0, [&] { ASSERT_TRUE(q().push("x", PushOptions{.delay = 60s})); }, Aux::ahead(60s + 1ms),
      &T::reserve);
}

// T4 claim: READY → LEASED with aux = the deadline; the lease's token is
// the new word.
TEST_F(TransitionOps, ClaimLeases) {
  ASSERT_TRUE(q().push("x"));
  std::optional<Job> job;
  expect_makes(
      T::claim, v().find(State::ready), [&] { job = q().try_claim(with_lease(60s)); }, Aux::ahead(60s));
  ASSERT_TRUE(job);
  EXPECT_EQ(job->lease.token, v().word(job->lease.slot).raw);
}

// T5 extend: LEASED → LEASED with the new deadline; counts nothing.
TEST_F(TransitionOps, ExtendMovesTheDeadline) {
  auto job = leased();
  ASSERT_TRUE(job);
  expect_makes(
      T::extend, job->lease.slot, [&] { ASSERT_EQ(q().extend(*job, 2h), LeaseStatus::ok); }, Aux::ahead(2h));
  EXPECT_EQ(job->lease.token, v().word(job->lease.slot).raw);
}

// T5 shorten: an extend to an earlier deadline; counts nothing (its wake-up:
// tests/ring/test_wakeups.cpp).
TEST_F(TransitionOps, ShortenMovesTheDeadlineEarlier) {
  auto job = leased();
  ASSERT_TRUE(job);
  expect_makes(
      T::shorten, job->lease.slot, [&] { ASSERT_EQ(q().extend(*job, 1s), LeaseStatus::ok); }, Aux::ahead(1s));
  EXPECT_EQ(job->lease.token, v().word(job->lease.slot).raw);
}

// T5 takeover: a claim of an expired lease leases it again. Counted as a
// takeover (T5's total) and, by the claim pass, as a claim.
TEST_F(TransitionOps, ClaimOfAnExpiredLeaseTakesItOver) {
  auto job = leased();
  ASSERT_TRUE(job);
  v().forge(job->lease.slot, T::extend, detail::now_ms() - 1000);  // its deadline passed
  expect_makes(
      T::takeover, job->lease.slot, [&] { ASSERT_TRUE(q().try_claim(with_lease(60s))); }, Aux::ahead(60s),
      nullptr, false);
  EXPECT_EQ(v().total(detail::Total(T::takeover.counts)), 1u);
  EXPECT_EQ(v().total(detail::Total(T::claim.counts)), 2u);
}

// T6 ack: LEASED → FREE, aux 0.
TEST_F(TransitionOps, AckFrees) {
  auto job = leased();
  ASSERT_TRUE(job);
  expect_makes(T::ack, job->lease.slot, [&] { ASSERT_EQ(q().ack(job->lease), LeaseStatus::ok); });
}

// T7 release: LEASED → READY, aux = visible-at (0 without a delay).
TEST_F(TransitionOps, ReleaseMakesReady) {
  auto job = leased();
  ASSERT_TRUE(job);
  expect_makes(T::release, job->lease.slot, [&] { ASSERT_EQ(q().release(job->lease), LeaseStatus::ok); });
  job = q().try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  expect_makes(
      T::release, job->lease.slot, [&] { ASSERT_EQ(q().release(job->lease, 60s), LeaseStatus::ok); },
      Aux::ahead(60s + 1ms));  // as a push's delay
}

// give_back is T7 too, visible at once.
TEST_F(TransitionOps, GiveBackMakesReady) {
  auto job = leased();
  ASSERT_TRUE(job);
  expect_makes(T::release, job->lease.slot, [&] { ASSERT_EQ(q().give_back(job->lease), LeaseStatus::ok); });
}

// T8 dead-letter: a release on the last attempt; T9 requeue (through its
// lock step) and T9 purge / remove_dead from DEAD.
TEST_F(TransitionOps, DeadLetterRequeueAndRemoveDead) {
  reopen(Options{.capacity = 2, .max_payload = 16, .max_attempts = 1});
  auto job = leased();
  ASSERT_TRUE(job);
  const std::uint32_t slot = job->lease.slot;
  const JobId id = job->id;
  expect_makes(T::dead_letter, slot, [&] { ASSERT_EQ(q().release(job->lease), LeaseStatus::ok); });
  expect_makes(
      T::requeue, slot, [&] { ASSERT_TRUE(q().requeue(id)); }, Aux::zero(), &T::requeue_lock);
  job = q().try_claim(with_lease(60s));
  ASSERT_TRUE(job);
  ASSERT_EQ(q().release(job->lease), LeaseStatus::ok);  // DEAD again
  expect_makes(T::purge, slot, [&] { ASSERT_TRUE(q().remove_dead(id)); });
}

// T9 purge from READY.
TEST_F(TransitionOps, PurgeFreesAReadyJob) {
  ASSERT_TRUE(q().push("x"));
  expect_makes(T::purge, v().find(State::ready), [&] { ASSERT_EQ(q().purge(PurgeWhat::ready), 1u); });
}

// T2 recover: a claim that finds nothing frees the slot of a dead writer.
TEST_F(TransitionOps, ClaimRecoversADeadWritersSlot) {
  v().forge(0, T::reserve, test::dead_pid());
  expect_makes(T::recover, 0, [&] { EXPECT_EQ(q().try_claim(), std::nullopt); });
}

// T7 expire: a sweep returns an expired lease (no janitor verdict needed).
TEST_F(TransitionOps, SweepReturnsAnExpiredLease) {
  auto job = leased();
  ASSERT_TRUE(job);
  v().forge(job->lease.slot, T::extend, detail::now_ms() - 1000);
  expect_makes(T::expire, job->lease.slot, [&] { (void)q().sweep(); });
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
// claimers, one that frees a slot wakes pushers; and T5 shorten, which makes
// a job claimable sooner than a sleeping claimer was told, wakes claimers.
TEST(TransitionTable, WakesFollowTheTargetState) {
  using jobring::detail::Wakes;
  for (const Transition* t : T::kAll) {
    Wakes want = Wakes::none;
    if (t->to == State::ready) want = Wakes::work;
    if (t->to == State::free) want = Wakes::room;
    if (t == &T::shorten) want = Wakes::work;
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
}  // namespace jobring
