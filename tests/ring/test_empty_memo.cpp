// The empty-ring memo (lib/ring/claim.cpp, before claim_pass): after two empty
// polls a thread answers "empty" from two loads of the totals instead of a
// scan of the ring, for as long as nothing can have become claimable. These
// tests check every way a job becomes claimable against a poller whose memo
// is armed: each would fail if that transition were missing from the
// claimable signature or the due time.
//
// The memo lives at most 2 ms, so one round of "poll, poll, transition,
// poll" could outlive it on a loaded machine and pass by luck. The count
// tests run many rounds: with a missing count, the rounds that do fit inside
// 2 ms (on an idle machine, nearly all) see "empty" and fail. The tests of
// the due time, the wait path and the handle check lengthen the memo's age
// bound to an hour (LongMemo), so that only what they test can make them
// pass.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "jobring/queue.hpp"
#include "ring/testing.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::Job;
using jobring::JobState;
using jobring::LeaseStatus;
using jobring::Options;
using jobring::Owner;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::Watchdog;

constexpr int kRounds = 200;

// For its scope, memos last up to an hour unless the signature or the due
// time says otherwise.
class LongMemo {
 public:
  LongMemo() : old_(jobring::detail::set_empty_memo_ms_for_testing(3'600'000)) {}
  ~LongMemo() { jobring::detail::set_empty_memo_ms_for_testing(old_); }
  LongMemo(const LongMemo&) = delete;
  LongMemo& operator=(const LongMemo&) = delete;

 private:
  std::uint64_t old_;
};

// Two empty polls: the first arms the memo, the second scans and fills it.
void arm(Queue& poller) {
  ASSERT_FALSE(poller.try_claim().has_value());
  ASSERT_FALSE(poller.try_claim().has_value());
}

// A push through another handle, with memos that would otherwise last an
// hour: the push's job id (the signature's first term since the pushes'
// count moved to tally blocks, layout.hpp) must change the signature, one
// job at a time and in a batch, delayed or not.
TEST(EmptyMemo, APushChangesTheSignatureThroughItsJobId) {
  LongMemo long_memo;
  Watchdog dog(120s, "EmptyMemo.APushChangesTheSignatureThroughItsJobId");
  QueueName name("memo");
  Queue producer = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  for (int round = 0; round < 20; ++round) {
    arm(poller);
    if (round % 2 == 0) {
      ASSERT_TRUE(producer.push("job " + std::to_string(round)));
    } else {
      const std::string text = "job " + std::to_string(round);
      const std::span<const std::byte> one[1] = {std::as_bytes(std::span(text.data(), text.size()))};
      ASSERT_EQ(producer.push_many(one, {}), 1u);
    }
    auto job = poller.try_claim();
    ASSERT_TRUE(job.has_value()) << "round " << round;
    EXPECT_EQ(job->text(), "job " + std::to_string(round));
    ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
  }
  // Delayed: the first poll after its time claims it (the memo's due time
  // does not cover a job pushed after the scan: the id does).
  arm(poller);
  ASSERT_TRUE(producer.push("later", jobring::test::with_delay(20ms)));
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  std::optional<Job> job;
  while (!(job = poller.try_claim()) && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "later");
}

// A producer thread pushing while a poller polls, memos lasting an hour: the
// poller claims every job (a memo that hid one would keep it hidden until
// the watchdog fires). What a poller racing a push's T1 .. T3 sees: the
// slot WRITING (no memo), READY, or the id not yet taken (the next poll's
// signature differs): claim.cpp.
TEST(EmptyMemo, APollerRacingPushesMissesNone) {
  LongMemo long_memo;
  Watchdog dog(180s, "EmptyMemo.APollerRacingPushesMissesNone");
  QueueName name("memo");
  Queue producer = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  constexpr int kJobs = 20000;
  std::thread push([&] {
    for (int i = 0; i < kJobs; ++i) {
      ASSERT_TRUE(producer.push("j", jobring::test::with_wait(10s)));
      if (i % 64 == 0) std::this_thread::yield();
    }
  });
  int claimed = 0;
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (claimed < kJobs && std::chrono::steady_clock::now() < give_up) {
    if (auto job = poller.try_claim()) {
      ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
      ++claimed;
    }
  }
  push.join();
  EXPECT_EQ(claimed, kJobs);
}

// A push through another handle (T3 commit: pushed).
TEST(EmptyMemo, APushIsSeenByTheNextPoll) {
  Watchdog dog(120s, "EmptyMemo.APushIsSeenByTheNextPoll");
  QueueName name("memo");
  Queue producer = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  for (int round = 0; round < kRounds; ++round) {
    arm(poller);
    ASSERT_TRUE(producer.push("job " + std::to_string(round)));
    auto job = poller.try_claim();
    ASSERT_TRUE(job.has_value()) << "round " << round;
    EXPECT_EQ(job->text(), "job " + std::to_string(round));
    ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
  }
}

// A release by the holder of a lease (T7: released).
TEST(EmptyMemo, AReleaseIsSeenByTheNextPoll) {
  Watchdog dog(120s, "EmptyMemo.AReleaseIsSeenByTheNextPoll");
  QueueName name("memo");
  Queue holder = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(holder.push("job"));
    auto held = holder.try_claim(ClaimOptions{.lease = 1h});
    ASSERT_TRUE(held.has_value());
    arm(poller);  // the only job is leased for an hour: nothing is due soon
    ASSERT_EQ(holder.release(held->lease), LeaseStatus::ok);
    auto job = poller.try_claim();
    ASSERT_TRUE(job.has_value()) << "round " << round;
    EXPECT_EQ(job->id, held->id);
    ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
  }
}

// A dead job put back (requeue: requeued).
TEST(EmptyMemo, ARequeueIsSeenByTheNextPoll) {
  Watchdog dog(120s, "EmptyMemo.ARequeueIsSeenByTheNextPoll");
  QueueName name("memo");
  Queue admin =
      Queue::create(name, Options{.capacity = 64, .max_payload = 32, .max_attempts = /*max_attempts=*/1});
  Queue poller = Queue::open(name);
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(admin.push("job"));
    auto held = admin.try_claim();
    ASSERT_TRUE(held.has_value());
    ASSERT_EQ(admin.release(held->lease), LeaseStatus::ok);  // attempts used up: dead
    ASSERT_EQ(admin.stats().dead, 1u);
    arm(poller);
    ASSERT_EQ(admin.requeue_dead(), 1u);
    auto job = poller.try_claim();
    ASSERT_TRUE(job.has_value()) << "round " << round;
    ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
  }
}

// The janitor's sweep returning a dead worker's lease (reclaimed).
TEST(EmptyMemo, ASweepOfADeadWorkersLeaseIsSeenByTheNextPoll) {
  Watchdog dog(120s, "EmptyMemo.ASweepOfADeadWorkersLeaseIsSeenByTheNextPoll");
  QueueName name("memo");
  Queue janitor = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  for (int round = 0; round < 20; ++round) {  // a fork per round
    ASSERT_TRUE(janitor.push("job"));
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t worker = jobring::test::fork_child([&] {
      Queue q = Queue::open(name);
      auto job = q.try_claim(ClaimOptions{.lease = 1h, .owner = Owner::process});
      const char c = job ? 'y' : 'n';
      (void)::write(ready[1], &c, 1);
      ::pause();
      return 0;
    });
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    ASSERT_EQ(c, 'y');
    ::kill(worker, SIGKILL);
    ::waitpid(worker, nullptr, 0);
    arm(poller);
    ASSERT_EQ(janitor.sweep().reclaimed, 1u);
    auto job = poller.try_claim();
    ASSERT_TRUE(job.has_value()) << "round " << round;
    ASSERT_EQ(poller.ack(job->lease), LeaseStatus::ok);
  }
}

// The due time: a lease that runs out and a delayed job that comes due are
// claimable by the first poll after their time, with no count bumped. With
// the memo's age bound at an hour, only the due time it took from the scan
// can make it look again.
TEST(EmptyMemo, AnExpiredLeaseAndADelayedJobAreSeenByTheFirstPollAfterTheirTime) {
  Watchdog dog(120s, "EmptyMemo.AnExpiredLeaseAndADelayedJobAreSeenByTheFirstPollAfterTheirTime");
  LongMemo long_memo;
  QueueName name("memo");
  Queue holder = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(holder.push("leased"));
    auto held = holder.try_claim(ClaimOptions{.lease = 20ms});
    ASSERT_TRUE(held.has_value());
    ASSERT_TRUE(holder.push("delayed", {.delay = 40ms}));
    arm(poller);
    std::this_thread::sleep_for(30ms);  // past the lease (and maybe the delay)
    auto first = poller.try_claim();
    ASSERT_TRUE(first.has_value()) << "round " << round;
    std::this_thread::sleep_for(30ms);  // past the delay
    auto second = poller.try_claim();
    ASSERT_TRUE(second.has_value()) << "round " << round;
    EXPECT_NE(first->id, second->id);
    EXPECT_TRUE(first->id == held->id || second->id == held->id);
    EXPECT_EQ(poller.ack(first->lease), LeaseStatus::ok);
    EXPECT_EQ(poller.ack(second->lease), LeaseStatus::ok);
  }
}

// A claim with a wait uses the memo on its first pass only: the re-check
// before it sleeps scans the ring (wait.hpp's no-lost-wakeup argument needs
// it). A READY job with no count (forged) and a memo that would otherwise
// hide it for an hour: the waiting claim returns it.
TEST(EmptyMemo, AWaitingClaimScansBeforeItSleeps) {
  Watchdog dog(120s, "EmptyMemo.AWaitingClaimScansBeforeItSleeps");
  LongMemo long_memo;
  QueueName name("memo");
  Queue holder = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  jobring::test::SegmentView view(name);
  ASSERT_TRUE(holder.push("job"));
  auto held = holder.try_claim(ClaimOptions{.lease = 1h});
  ASSERT_TRUE(held.has_value());
  arm(poller);
  view.forge(held->lease.slot, jobring::detail::T::release, 0);  // the word only: no count
  EXPECT_FALSE(poller.try_claim().has_value()) << "the memo should still answer: is it armed?";
  Job job;
  ASSERT_EQ(poller.claim(job, 30s), jobring::ClaimStatus::ok);
  EXPECT_EQ(job.id, held->id);
}

// try_claim_many with no room for a job scans nothing, so it must not renew
// the memo (found in review: a saturated batch worker asking for 0 jobs
// between polls kept a due job hidden for good).
TEST(EmptyMemo, AClaimOfNoJobsDoesNotRenewTheMemo) {
  Watchdog dog(120s, "EmptyMemo.AClaimOfNoJobsDoesNotRenewTheMemo");
  QueueName name("memo");
  Queue holder = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  ASSERT_TRUE(holder.push("delayed", {.delay = 5ms}));
  arm(poller);
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  std::optional<Job> job;
  while (std::chrono::steady_clock::now() < give_up) {
    EXPECT_EQ(poller.try_claim_many(std::span<Job>{}), 0u);
    if ((job = poller.try_claim())) break;
    std::this_thread::sleep_for(200us);
  }
  ASSERT_TRUE(job.has_value()) << "a job delayed by 5 ms was not claimed in 20 s";
}

// What the signature cannot see: a transition to READY with no count, as left
// by a process killed between the two, or written by a hostile process. The
// memo's age bound gets it claimed soon all the same (the lease here would
// otherwise hide it for an hour).
TEST(EmptyMemo, AReadyJobWithNoCountIsClaimedSoonAllTheSame) {
  Watchdog dog(120s, "EmptyMemo.AReadyJobWithNoCountIsClaimedSoonAllTheSame");
  QueueName name("memo");
  Queue holder = Queue::create(name, Options{.capacity = 64, .max_payload = 32});
  Queue poller = Queue::open(name);
  jobring::test::SegmentView view(name);
  ASSERT_TRUE(holder.push("job"));
  auto held = holder.try_claim(ClaimOptions{.lease = 1h});
  ASSERT_TRUE(held.has_value());
  arm(poller);
  // T7 as the janitor would do it, but without its count.
  view.forge(held->lease.slot, jobring::detail::T::reclaim, 0);
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  std::optional<Job> job;
  while (!(job = poller.try_claim()) && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->id, held->id);
}

// A memo belongs to one handle. Two queues with the same signature (two jobs
// pushed into each): polling one empty queue must not answer for the other,
// which has a job its totals do not show (forged READY, as a killed sweeper
// would leave it), so that only a scan of that queue finds it.
TEST(EmptyMemo, AMemoBelongsToOneHandle) {
  LongMemo long_memo;
  QueueName a("memo-a");
  QueueName b("memo-b");
  Queue qa = Queue::create(a, Options{.capacity = 64, .max_payload = 32});
  Queue qb = Queue::create(b, Options{.capacity = 64, .max_payload = 32});
  for (const char* text : {"one", "two"}) {
    ASSERT_TRUE(qa.push(text));
    auto job = qa.try_claim();
    ASSERT_TRUE(job.has_value());
    ASSERT_EQ(qa.ack(job->lease), LeaseStatus::ok);
  }
  ASSERT_TRUE(qb.push("one"));
  auto one = qb.try_claim();
  ASSERT_TRUE(one.has_value());
  ASSERT_EQ(qb.ack(one->lease), LeaseStatus::ok);
  ASSERT_TRUE(qb.push("x"));
  auto taken = qb.try_claim(ClaimOptions{.lease = 1h});
  ASSERT_TRUE(taken.has_value());
  jobring::test::SegmentView view(b);
  view.forge(taken->lease.slot, jobring::detail::T::reclaim, 0);
  const auto sa = qa.stats();
  const auto sb = qb.stats();
  ASSERT_EQ(sa.pushed + sa.released + sa.requeued + sa.expired_total + sa.reclaimed,
            sb.pushed + sb.released + sb.requeued + sb.expired_total + sb.reclaimed);
  arm(qa);
  auto job = qb.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "x");
}

}  // namespace
