// Forged crash states: the tests map the segment themselves and write state
// words and slot metadata directly, to produce what a process leaves behind if
// it dies right after (or in the middle of) one of the transitions T1..T9 of
// lib/ring/layout.hpp — or what a hostile process could write — and then show that
// the queue recovers (guarantees 2, 3, 4, 5 and 9).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::Header;
using detail::SlotMeta;
using detail::State;
using detail::Word;
using test::dead_pid;
using test::QueueName;
using test::Watchdog;
using test::with_lease;
namespace T = detail::T;

// The segment of a queue, mapped by the test itself (a second mapping, as
// another process would have): tests/support/segment_view.hpp.
using Forge = jobring::test::SegmentView;

std::uint64_t now_ms() { return jobring::detail::now_ms(); }

// An attempt count as a writer acting from state word w would write it (layout.hpp).
std::uint64_t tagged(Word w, std::uint32_t count) { return jobring::detail::make_attempts(w.gen(), count); }

// Each test gets a queue `q` named `name` (4 slots of 32 bytes, a default
// lease of 60 s) and `f`, its own mapping of the segment, to forge with.
class Forged : public ::testing::Test {
 protected:
  // Replaces the queue with a fresh one of `capacity` slots.
  void reopen(std::uint32_t capacity, std::uint32_t max_attempts = 0) {
    f.reset();
    Queue::remove(name);
    q = Queue::create(name, options(capacity, max_attempts));
    f.emplace(name);
  }
  static Options options(std::uint32_t capacity, std::uint32_t max_attempts = 0) {
    return Options{
        .capacity = capacity, .max_payload = 32, .default_lease = 60s, .max_attempts = max_attempts};
  }

  // Pushes `payload` and claims it with a lease of an hour.
  std::optional<Job> push_and_lease(std::string_view payload) {
    if (!q.push(payload)) return std::nullopt;
    return q.try_claim(with_lease(1h));
  }

  QueueName name;
  Queue q = Queue::create(name, options(4));
  std::optional<Forge> f{std::in_place, name.str()};
};
// One fixture per suite, so that the tests keep their names.
class ForgedWriting : public Forged {};
class ForgedLease : public Forged {};
class ForgedSlot : public Forged {};
class ForgedHeader : public Forged {};

// ---------------------------------------------------------------------------
// T1/T2: a producer died while WRITING
// ---------------------------------------------------------------------------

// T1 then death, T2: a WRITING slot whose writer is dead (exited and reaped)
// is freed by a claim that finds nothing to claim (G3: no slot leaked).
TEST_F(ForgedWriting, DeadWriterFreedByClaim) {
  f->forge(2, T::reserve, dead_pid());
  f->meta(2).length.store(0xffffffffu);  // half-written garbage
  Stats s = q.stats();
  EXPECT_EQ(s.writing, 1u);
  EXPECT_EQ(s.free, 3u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  s = q.stats();
  EXPECT_EQ(s.writing, 0u);
  EXPECT_EQ(s.free, 4u);
  EXPECT_EQ(s.recovered_writes, 1u);
  EXPECT_EQ(s.pushed, 0u);
  EXPECT_EQ(f->word(2).state(), State::free);
  // The slot is usable again: four pushes fit.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.push("j" + std::to_string(i)));
  EXPECT_EQ(q.push("no room").status, PushStatus::full);
}

// T1 then death, T2 by push: a full ring whose only non-job slot is WRITING by
// a dead producer is not full: push recovers the slot and succeeds.
TEST_F(ForgedWriting, DeadWriterFreedByPushIntoFullRing) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.push("j" + std::to_string(i)));
  const std::uint32_t slot = f->find(State::free);
  ASSERT_LT(slot, 4u);
  f->forge(slot, T::reserve, dead_pid());
  const auto r = q.push("after recovery");
  ASSERT_EQ(r.status, PushStatus::ok);
  const Stats s = q.stats();
  EXPECT_EQ(s.recovered_writes, 1u);
  EXPECT_EQ(s.ready, 4u);
  EXPECT_EQ(s.free, 0u);
  std::set<std::string> got;
  while (auto j = q.try_claim()) {
    got.insert(std::string(j->text()));
    EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  }
  EXPECT_EQ(got, (std::set<std::string>{"j0", "j1", "j2", "after recovery"}));
}

// T2 never for a live writer (G3, G8): WRITING by this process, or by a
// stopped child, is never freed — not by claims, not by a push into a full ring.
TEST_F(ForgedWriting, LiveOrStoppedWriterNeverFreed) {
  Watchdog wd(60s, "ForgedWriting.LiveOrStoppedWriterNeverFreed");
  reopen(2);
  constexpr std::uint64_t kMine = 0x4d1e, kChild = 0xc41d;
  f->hold_token(kMine);  // as this process's own queue handle holds its token
  f->forge(0, T::reserve, jobring::detail::make_writer(kMine));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(q.try_claim(), std::nullopt);
  ASSERT_TRUE(q.push("one"));
  EXPECT_EQ(q.push("two").status, PushStatus::full);
  EXPECT_EQ(q.stats().writing, 1u);
  EXPECT_EQ(q.stats().recovered_writes, 0u);

  // A stopped child, holding its own token.
  jobring::test::Pipe holding;
  const pid_t child = jobring::test::fork_child([&] {
    jobring::test::SegmentView mine(name);
    mine.hold_token(kChild);
    (void)jobring::test::write_all(holding.write_fd(), "held\n", 5);
    for (;;) ::pause();
    return 0;
  });
  holding.close_write();
  ASSERT_TRUE(jobring::test::read_line(holding.read_fd(), 60s).has_value());
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, WUNTRACED), child);
  ASSERT_TRUE(WIFSTOPPED(status));
  // The same slot, now WRITING by the child: a word no transition makes
  // (WRITING to WRITING), written directly.
  f->step(0, State::writing, jobring::detail::make_writer(kChild));
  auto held = q.try_claim();
  ASSERT_TRUE(held);
  EXPECT_EQ(q.ack(held->lease), LeaseStatus::ok);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(q.try_claim(), std::nullopt);
  ASSERT_TRUE(q.push("one again"));
  EXPECT_EQ(q.push("two").status, PushStatus::full);
  EXPECT_EQ(q.stats().writing, 1u);
  EXPECT_EQ(q.stats().recovered_writes, 0u);

  // Once the child is dead and reaped, its slot comes back.
  jobring::test::kill_and_reap(child);
  ASSERT_TRUE(q.push("two"));
  EXPECT_EQ(q.stats().recovered_writes, 1u);
}

// T2 for a zombie writer: exited but not reaped counts as dead.
TEST_F(ForgedWriting, ZombieWriterIsDead) {
  Watchdog wd(60s, "ForgedWriting.ZombieWriterIsDead");
  reopen(2);
  const pid_t child = jobring::test::fork_child([] { return 0; });
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);  // zombie, not reaped
  f->forge(1, T::reserve, static_cast<std::uint32_t>(child));
  EXPECT_EQ(q.try_claim(), std::nullopt);
  EXPECT_EQ(q.stats().writing, 0u);
  EXPECT_EQ(q.stats().recovered_writes, 1u);
  EXPECT_EQ(jobring::test::wait_child(child), 0);
}

// G3 + G9: an aux that cannot be a PID (0, above the kernel's limit, or with
// bits above 32 set) is not a live writer: the slot is recovered, not leaked.
TEST_F(ForgedWriting, TokensNobodyHoldsAreGone) {
  const auto self = static_cast<std::uint64_t>(::getpid());
  const std::uint64_t auxes[] = {
      0,                                // names nobody: no live process writes it
      std::uint64_t{1} << 22,           // what was PID_MAX_LIMIT
      0xffffffffull,                    // -1 as a pid_t
      (std::uint64_t{1} << 32) | self,  // our PID in the low 32 bits: no PID means anything now
      (std::uint64_t{1} << 32) | 1u,    // init's PID in the low 32 bits
      jobring::detail::kAuxMask,
  };
  for (const std::uint64_t aux : auxes) {
    SCOPED_TRACE("aux " + std::to_string(aux));
    reopen(2);
    f->forge(0, T::reserve, aux);
    EXPECT_EQ(q.try_claim(), std::nullopt);
    EXPECT_EQ(q.stats().writing, 0u) << "slot leaked";
    EXPECT_EQ(q.stats().recovered_writes, 1u);
  }
}

// ---------------------------------------------------------------------------
// T4/T5: a worker died holding a lease
// ---------------------------------------------------------------------------

// T5 takeover: a LEASED slot whose deadline is past (the worker died) is
// taken over by the next claim, attempt + 1, same job; the dead worker's
// token and the forged word are both stale afterwards (G4).
TEST_F(ForgedLease, PastDeadlineIsTakenOver) {
  auto first = push_and_lease("orphan");
  ASSERT_TRUE(first);
  const std::uint32_t slot = first->lease.slot;
  f->forge(slot, T::extend, now_ms() - 1000);  // as if the lease had run out a second ago
  const Lease forged{slot, f->word(slot).raw, first->id};
  EXPECT_EQ(q.stats().expired, 1u);
  auto second = q.try_claim(with_lease(1h));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->attempt, 2u);
  EXPECT_EQ(second->text(), "orphan");
  EXPECT_EQ(q.stats().expired_total, 1u);
  EXPECT_EQ(q.ack(first->lease), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(forged), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(second->lease), LeaseStatus::ok);
}

// T4 then death before the attempt count was written: a READY→LEASED word
// with deadline 0 (long past) and attempts still 0 is taken over; the job is
// delivered (attempt 1: the dead claim was not counted, as layout.hpp says).
TEST_F(ForgedLease, DeadClaimerBeforeAttemptCount) {
  const auto pushed = q.push("x");
  ASSERT_TRUE(pushed);
  const std::uint32_t slot = f->find(State::ready);
  ASSERT_LT(slot, 4u);
  f->forge(slot, T::claim, 0);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(job->attempt, 1u);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
}

// Issue 13 item 7: a claimer that stalls right after its claim CAS (T4) and
// resumes after its lease ran out, the job was taken over and acked, and the
// next job B was pushed into the same slot and claimed, must not touch B's
// attempt count or owner record. The stall is forged: T4's word written by the
// test, and later what that claimer writes after its CAS (count_claim,
// record_owner, the very functions claim.cpp runs), with the words it had.
// B's owner (a child) dies holding it: the janitor's sweep must still reclaim
// B, and B must get its full max_attempts (2).
TEST_F(ForgedLease, Item7_StalledClaimerLeavesNextJobsCountAndOwnerAlone) {
  reopen(1, 2);  // one slot: B reuses A's
  ASSERT_TRUE(q.push("A"));
  const Word from = f->word(0);
  f->forge(0, T::claim, now_ms() - 1);  // the stalled claimer's lease, already run out
  const Word stalled = f->word(0);
  auto a = q.try_claim(with_lease(1h));  // T5 takeover
  ASSERT_TRUE(a);
  EXPECT_EQ(a->attempt, 1u);
  ASSERT_EQ(q.ack(a->lease), LeaseStatus::ok);
  const auto b_pushed = q.push("B");
  ASSERT_TRUE(b_pushed);
  const pid_t owner = jobring::test::fork_child([&] {
    Queue mine = Queue::open(name.str());
    auto b = mine.try_claim(with_lease(1h));
    return b && b->id == b_pushed.id && b->attempt == 1 ? 0 : 1;  // exits holding B's lease
  });
  ASSERT_EQ(jobring::test::wait_child(owner), 0);

  // The stalled claimer resumes.
  (void)jobring::detail::count_claim(f->meta(0), from, stalled);
  jobring::detail::record_owner(f->meta(0), from, stalled,
                                jobring::detail::make_owner(0, jobring::test::kDeadToken));

  const auto leased = q.peek(JobState::leased);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].attempts, 1u) << "the stalled claimer counted an attempt of the next job";
  EXPECT_EQ(leased[0].owner_pid, owner) << "the stalled claimer overwrote the next job's owner record";
  EXPECT_EQ(q.sweep().reclaimed, 1u) << "the janitor no longer recognises B's dead owner";
  auto b = q.try_claim(with_lease(1h));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->id, b_pushed.id);
  EXPECT_EQ(b->attempt, 2u);
  ASSERT_EQ(q.release(b->lease), LeaseStatus::ok);  // the second attempt used up: dead now
  EXPECT_EQ(q.stats().dead, 1u);
}

// Issue 13 item 7, the stall resuming between B's push and B's claim: B
// still starts at attempt 1, and its claimer's owner record stands.
TEST_F(ForgedLease, Item7_StalledClaimerBeforeNextJobsClaim) {
  reopen(1, 2);
  ASSERT_TRUE(q.push("A"));
  const Word from = f->word(0);
  f->forge(0, T::claim, now_ms() - 1);
  const Word stalled = f->word(0);
  auto a = q.try_claim(with_lease(1h));
  ASSERT_TRUE(a);
  ASSERT_EQ(q.ack(a->lease), LeaseStatus::ok);
  ASSERT_TRUE(q.push("B"));
  (void)jobring::detail::count_claim(f->meta(0), from, stalled);
  jobring::detail::record_owner(f->meta(0), from, stalled,
                                jobring::detail::make_owner(0, jobring::test::kDeadToken));
  EXPECT_EQ(q.peek(JobState::ready).at(0).attempts, 0u);
  auto b = q.try_claim(with_lease(1h));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->attempt, 1u) << "the stalled claimer counted an attempt of the next job";
  EXPECT_EQ(q.peek(JobState::leased).at(0).owner_pid, ::getpid());
  ASSERT_EQ(q.release(b->lease), LeaseStatus::ok);  // attempt 1 of 2: back to ready
  EXPECT_EQ(q.stats().ready, 1u);
}

// Issue 13 item 7, requeue's side: a requeuer that stalls after its lock
// (T9 requeue-lock) and resumes after a rival requeued the job and it was
// claimed again must not reset that claim's count (a store of 0 would give
// the job max_attempts more runs).
TEST_F(ForgedLease, Item7_StalledRequeuerLeavesCountAlone) {
  reopen(1, 1);
  auto job = push_and_lease("x");
  ASSERT_TRUE(job);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);  // attempt 1 of 1: dead
  ASSERT_EQ(q.stats().dead, 1u);
  f->forge(0, T::requeue_lock, 0);  // the stalled requeuer's lock
  const Word locked = f->word(0);
  ASSERT_TRUE(q.requeue(job->id));  // a rival's requeue, from the locked word
  auto again = q.try_claim(with_lease(1h));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt, 1u);
  jobring::detail::reset_attempts(f->meta(0), locked);  // the stalled requeuer resumes
  EXPECT_EQ(q.peek(JobState::leased).at(0).attempts, 1u) << "a stale requeue reset a live count";
  ASSERT_EQ(q.release(again->lease), LeaseStatus::ok);  // attempt 1 of 1: dead again
  EXPECT_EQ(q.stats().dead, 1u);
}

// G1 + G5 + G9: a LEASED word with a future deadline hides its job (no double
// claim), does not block the others; a deadline more than kMaxLease ahead can
// only be forged and counts as passed, so no word can hide a slot for decades.
TEST_F(ForgedLease, FutureDeadline) {
  const auto held = q.push("held");
  ASSERT_TRUE(held);
  const std::uint32_t slot = f->find(State::ready);
  f->forge(slot, T::claim, now_ms() + 3'600'000);
  f->meta(slot).attempts.store(tagged(f->word(slot), 1));
  EXPECT_EQ(q.try_claim(), std::nullopt);
  EXPECT_EQ(q.stats().leased, 1u);
  ASSERT_TRUE(q.push("other"));
  auto other = q.try_claim();
  ASSERT_TRUE(other);
  EXPECT_EQ(other->text(), "other");
  EXPECT_EQ(q.ack(other->lease), LeaseStatus::ok);

  // Decades ahead: treated as expired.
  f->forge(slot, T::extend, jobring::detail::kAuxMask);
  auto taken = q.try_claim(with_lease(1h));
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->id, held.id);
  EXPECT_EQ(q.ack(taken->lease), LeaseStatus::ok);
}

// G4 (fencing) against forged tokens: a token of an older generation, a token
// with another job id, a token equal to a non-LEASED word — all lease_lost,
// nothing changed. The current word with the right job id is the lease.
TEST_F(ForgedLease, ForgedTokens) {
  auto job = push_and_lease("x");
  ASSERT_TRUE(job);
  const std::uint32_t slot = job->lease.slot;
  const Word cur = f->word(slot);
  ASSERT_EQ(cur.raw, job->lease.token);

  const Word older = Word::make(State::leased, (cur.gen() - 1) & jobring::detail::kGenMask, cur.aux());
  const Word newer = Word::make(State::leased, (cur.gen() + 1) & jobring::detail::kGenMask, cur.aux());
  for (const Lease& bad :
       {Lease{slot, older.raw, job->id}, Lease{slot, newer.raw, job->id}, Lease{slot, cur.raw, job->id + 1},
        Lease{slot, cur.raw, 0}, Lease{(slot + 1) % 4, cur.raw, job->id}}) {
    EXPECT_EQ(q.ack(bad), LeaseStatus::lease_lost);
    EXPECT_EQ(q.release(bad), LeaseStatus::lease_lost);
    Lease copy = bad;
    EXPECT_EQ(q.extend(copy, 1s), LeaseStatus::lease_lost);
  }
  EXPECT_EQ(f->word(slot), cur) << "a rejected token changed the slot";

  // A READY word used as a token must not ack (free) a ready job.
  ASSERT_TRUE(q.push("ready"));
  const std::uint32_t rslot = f->find(State::ready);
  ASSERT_LT(rslot, 4u);
  const Word ready = f->word(rslot);
  const JobId rid = f->meta(rslot).job_id.load();
  EXPECT_EQ(q.ack(Lease{rslot, ready.raw, rid}), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(Lease{rslot, ready.raw, rid}), LeaseStatus::lease_lost);
  EXPECT_EQ(f->word(rslot), ready);

  // The current word with the right id (as another process would hand it over) works.
  EXPECT_EQ(q.ack(Lease{slot, cur.raw, job->id}), LeaseStatus::ok);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::lease_lost);
}

// Janitor contract (T4 owner record): an owner record whose generation tag does
// not match the state word is not trusted: peek reports no owner.
TEST_F(ForgedLease, StaleOwnerTagIsNotTrusted) {
  auto job = push_and_lease("x");
  ASSERT_TRUE(job);
  ASSERT_EQ(q.peek(JobState::leased).at(0).owner_pid, ::getpid());
  const Word cur = f->word(job->lease.slot);
  f->meta(job->lease.slot).owner.store(jobring::detail::make_owner(cur.gen() + 7, 4242));
  EXPECT_EQ(q.peek(JobState::leased).at(0).owner_pid, 0);
  // (Not asserted: extend re-tags whatever pid the owner record holds, so a
  // forged record becomes trusted after the holder's next extend — see the report.)
  ASSERT_EQ(q.extend(*job, 2h), LeaseStatus::ok);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
}

// T8 with stale attempts: an expired lease whose attempt count (forged) is
// already at max_attempts is dead-lettered by the next claim, not taken over;
// requeue resets the count (T9).
TEST_F(ForgedLease, StaleAttemptsDeadLetterOnTakeover) {
  reopen(4, 3);
  auto job = push_and_lease("tired");
  ASSERT_TRUE(job);
  f->meta(job->lease.slot).attempts.store(tagged(f->word(job->lease.slot), 100));
  f->forge(job->lease.slot, T::extend, now_ms() - 1);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  Stats s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.dead_lettered, 1u);
  EXPECT_EQ(s.expired_total, 0u);
  ASSERT_TRUE(q.requeue(job->id));
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt, 1u);
  EXPECT_EQ(q.ack(again->lease), LeaseStatus::ok);
}

// T5 with a wrapped attempt count (forged 2^32-1, unlimited attempts): the
// takeover still delivers the job and the new lease acks.
TEST_F(ForgedLease, AttemptCountAtMaximum) {
  auto job = push_and_lease("x");
  ASSERT_TRUE(job);
  f->meta(job->lease.slot)
      .attempts.store(tagged(f->word(job->lease.slot), std::numeric_limits<std::uint32_t>::max()));
  f->forge(job->lease.slot, T::extend, now_ms() - 1);
  auto again = q.try_claim(with_lease(1h));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->text(), "x");
  EXPECT_EQ(q.ack(again->lease), LeaseStatus::ok);
}

// ---------------------------------------------------------------------------
// Hostile slot contents
// ---------------------------------------------------------------------------

// G9: a READY slot whose length exceeds max_payload is never handed out with
// that length (nor read out of bounds: the ASan build checks); the claim moves
// it to DEAD (quarantine) and goes on to the next job; stats count it.
TEST_F(ForgedSlot, ReadyWithLengthOverMaxPayload) {
  for (const std::uint32_t bad_length : {33u, 4096u, std::numeric_limits<std::uint32_t>::max()}) {
    SCOPED_TRACE(bad_length);
    reopen(4);
    const auto bad = q.push("bad");
    const auto good = q.push("good");
    ASSERT_TRUE(bad && good);
    std::uint32_t slot = 4;
    for (std::uint32_t i = 0; i < 4; ++i)
      if (f->meta(i).job_id.load() == bad.id) slot = i;
    ASSERT_LT(slot, 4u);
    f->meta(slot).length.store(bad_length);

    // peek must not copy it either.
    for (const auto& info : q.peek(JobState::ready)) EXPECT_LE(info.payload.size(), 32u);

    Job job;
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    EXPECT_EQ(job.id, good.id) << "the hostile slot was handed out";
    EXPECT_EQ(job.text(), "good");
    EXPECT_LE(job.payload().size(), 32u);
    EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
    EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);

    const Stats s = q.stats();
    EXPECT_EQ(s.dead, 1u) << "quarantined in DEAD";
    EXPECT_EQ(s.dead_lettered, 1u);
    EXPECT_EQ(f->word(slot).state(), State::dead);
    // Operators can get rid of it by id.
    EXPECT_TRUE(q.remove_dead(bad.id));
    EXPECT_EQ(q.stats().free, 4u);
  }
}

// G9: a LEASED slot with a hostile length, expired: the takeover quarantines
// it instead of copying; a DEAD slot with a hostile length requeued then claimed likewise.
TEST_F(ForgedSlot, HostileLengthOnTakeoverAndRequeue) {
  reopen(2, 5);
  auto job = push_and_lease("x");
  ASSERT_TRUE(job);
  const std::uint32_t slot = job->lease.slot;
  f->meta(slot).length.store(1u << 31);
  f->forge(slot, T::extend, now_ms() - 1);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  EXPECT_EQ(q.stats().dead, 1u);
  ASSERT_TRUE(q.requeue(job->id));
  EXPECT_EQ(q.try_claim(), std::nullopt);
  EXPECT_EQ(q.stats().dead, 1u);
  EXPECT_EQ(q.purge(PurgeWhat::dead), 1u);
  EXPECT_EQ(q.stats().free, 2u);
}

// G9 + layout.hpp: state values 5, 6, 7 (never written by jobring) are skipped
// by push and claim, counted as corrupt in stats, hidden from peek, left alone
// by requeue and partial purges, and reset to FREE by purge(all).
TEST_F(ForgedSlot, InvalidStateBits) {
  for (std::uint32_t i = 0; i < 3; ++i) {
    const std::uint64_t raw =
        (std::uint64_t{5 + i} << jobring::detail::kStateShift) | (std::uint64_t{i} << 40) | 12345u;
    f->set(i, Word{raw});
  }
  Stats s = q.stats();
  EXPECT_EQ(s.corrupt, 3u);
  EXPECT_EQ(s.free, 1u);
  const auto pushed = q.push("only room");
  ASSERT_TRUE(pushed);
  EXPECT_EQ(q.push("none").status, PushStatus::full);
  for (JobState st : {JobState::ready, JobState::delayed, JobState::leased, JobState::dead}) {
    for (const auto& info : q.peek(st)) EXPECT_EQ(info.id, pushed.id);
  }
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(job->lease.slot, 3u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  EXPECT_EQ(q.requeue_dead(), 0u);
  EXPECT_EQ(q.purge(PurgeWhat::ready | PurgeWhat::dead), 0u);
  EXPECT_EQ(q.stats().corrupt, 3u);
  // A token equal to a corrupt word is no lease.
  EXPECT_EQ(q.ack(Lease{0, f->word(0).raw, 0}), LeaseStatus::lease_lost);

  const std::uint64_t purged_before = q.stats().purged;
  EXPECT_EQ(q.purge(PurgeWhat::all), 3u) << "the return value counts every slot reset";
  s = q.stats();
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.free, 3u);
  EXPECT_EQ(s.leased, 1u) << "purge never touches a lease";
  EXPECT_EQ(s.purged, purged_before + 3) << "the total agrees with the return value";
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(f->word(i).state(), State::free);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.push("refill"));
}

// G5 + G9: a READY word delayed by more than kMaxLease can only be forged and
// counts as visible now; one delayed within range stays hidden without
// blocking the others.
TEST_F(ForgedSlot, ReadyVisibleAtFarFuture) {
  const auto a = q.push("far");
  const auto b = q.push("near");
  ASSERT_TRUE(a && b);
  // READY to READY with another visible-at: no transition makes it (T3 and
  // T7 would, from WRITING and LEASED), so the words are written directly.
  for (std::uint32_t i = 0; i < 4; ++i) {
    if (f->meta(i).job_id.load() == a.id) f->step(i, State::ready, jobring::detail::kAuxMask);
    if (f->meta(i).job_id.load() == b.id) f->step(i, State::ready, now_ms() + 3'600'000);
  }
  EXPECT_EQ(q.stats().delayed, 1u);
  ASSERT_TRUE(q.push("now"));
  std::set<std::string> got;
  while (auto j = q.try_claim()) {
    got.insert(std::string(j->text()));
    EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  }
  EXPECT_EQ(got, (std::set<std::string>{"far", "now"}));
  EXPECT_EQ(q.purge(PurgeWhat::delayed), 1u);
}

// T9 by a forged DEAD word: peek shows it, requeue and remove_dead act on it.
TEST_F(ForgedSlot, ForgedDeadJob) {
  const auto a = q.push("a");
  ASSERT_TRUE(a);
  const std::uint32_t slot = f->find(State::ready);
  f->forge(slot, T::claim, 0);
  f->forge(slot, T::dead_letter, 0);
  f->meta(slot).attempts.store(tagged(f->word(slot), 9));
  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, a.id);
  EXPECT_EQ(dead[0].attempts, 9u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  ASSERT_TRUE(q.requeue(a.id));
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->attempt, 1u);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
  f->forge(slot, T::claim, 0);
  f->forge(slot, T::dead_letter, 0);
  EXPECT_TRUE(q.remove_dead(a.id));
  EXPECT_EQ(q.stats().free, 4u);
}

// Word invariant (layout.hpp): generations wrap at 2^21 without harm — every
// transition still changes the word, tokens stay unique across the wrap.
TEST_F(ForgedSlot, GenerationWrap) {
  reopen(1);
  f->set(0, Word::make(State::free, jobring::detail::kGenMask - 2, 0));
  std::set<std::uint64_t> tokens;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(q.push("w" + std::to_string(i)));
    auto job = q.try_claim(with_lease(1h));
    ASSERT_TRUE(job);
    EXPECT_EQ(job->text(), "w" + std::to_string(i));
    EXPECT_TRUE(tokens.insert(job->lease.token).second);
    Lease l = job->lease;
    ASSERT_EQ(q.extend(l, 2h), LeaseStatus::ok);
    EXPECT_TRUE(tokens.insert(l.token).second);
    EXPECT_EQ(q.ack(job->lease), LeaseStatus::lease_lost);
    ASSERT_EQ(q.ack(l), LeaseStatus::ok);
  }
  EXPECT_LT(f->word(0).gen(), 100u) << "the generation wrapped";
}

// ---------------------------------------------------------------------------
// Hostile header after open
// ---------------------------------------------------------------------------

std::error_code code_of_push_too_large(Queue& q) {
  const std::string big(q.options().max_payload + 1u, 'x');
  std::error_code ec;
  (void)q.push(std::as_bytes(std::span<const char>(big.data(), big.size())), jobring::PushOptions{}, ec);
  return ec;
}

// G9 (layout.hpp: the geometry is validated once and cached): a process that
// scribbles on the header of an open queue cannot move our bounds; a new open
// then refuses the segment.
TEST_F(ForgedHeader, GeometryChangedAfterOpen) {
  ASSERT_TRUE(q.push("before"));
  jobring::detail::Identity& h = f->header().identity;
  const jobring::detail::Identity saved = h;
  h.capacity = jobring::kMaxCapacity;
  h.max_payload = jobring::kMaxPayload;
  h.slot_stride = 1u << 30;
  h.states_offset = 1ull << 40;
  h.slots_offset = 1ull << 41;
  h.total_bytes = 1ull << 42;

  EXPECT_EQ(q.options().capacity, 4u);
  EXPECT_EQ(q.stats().free, 3u);
  ASSERT_TRUE(q.push("after"));
  EXPECT_EQ(code_of_push_too_large(q), jobring::errc::payload_too_large);
  std::set<std::string> got;
  while (auto j = q.try_claim()) {
    got.insert(std::string(j->text()));
    EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  }
  EXPECT_EQ(got, (std::set<std::string>{"before", "after"}));
  (void)q.peek(JobState::ready);
  (void)q.purge();

  std::error_code ec;
  EXPECT_FALSE(Queue::open(name, ec).has_value());
  EXPECT_EQ(ec, jobring::errc::corrupt_segment);

  h = saved;
  EXPECT_TRUE(Queue::open(name, ec).has_value()) << ec.message();
}

// G9: forged hint cursors and job-id counter (any 64-bit value) do not stop
// push or claim, and every job is delivered once.
TEST_F(ForgedHeader, CursorsAtExtremes) {
  for (const std::uint64_t cursor : {std::numeric_limits<std::uint64_t>::max(),
                                     std::numeric_limits<std::uint64_t>::max() - 1, std::uint64_t{1} << 63}) {
    SCOPED_TRACE(cursor);
    reopen(3);
    f->header().push_cursor.store(cursor);
    f->header().claim_cursor.store(cursor - 1);
    std::multiset<std::string> pushed;
    std::multiset<std::string> claimed;
    for (int round = 0; round < 20; ++round) {
      for (int i = 0; i < 2; ++i) {
        const std::string p = std::to_string(round) + "." + std::to_string(i);
        ASSERT_TRUE(q.push(p));
        pushed.insert(p);
      }
      while (auto j = q.try_claim()) {
        claimed.insert(std::string(j->text()));
        ASSERT_EQ(q.ack(j->lease), LeaseStatus::ok);
      }
    }
    EXPECT_EQ(pushed, claimed);
  }
}

}  // namespace
}  // namespace jobring
