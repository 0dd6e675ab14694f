// Queue::pause / resume (issue 19): a paused queue takes pushes and keeps
// its leases running but hands out no claims; blocked claimers sleep until
// resume() wakes them; the flag is a word in the segment, so it outlasts
// every process. Each test says what would fail without the guarantee.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "jobring/queue.hpp"
#include "ring/testing.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;

Options small() { return Options{.capacity = 8, .max_payload = 32, .default_lease = 60s}; }

// Paused: no claim gets a job (try, batch, blocking with a wait), while
// pushes, acks, extends and releases of the leases already out go on.
// Fails without the flag's check in the claim pass.
TEST(Pause, ClaimsFindNothingWhilePushesAndLeasesGoOn) {
  QueueName name("pause");
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("a"));
  ASSERT_TRUE(q.push("b"));
  auto held = q.try_claim();
  ASSERT_TRUE(held);
  EXPECT_TRUE(q.pause());
  EXPECT_FALSE(q.pause()) << "already paused";
  EXPECT_TRUE(q.paused());
  EXPECT_EQ(q.stats().paused, 1u);
  EXPECT_FALSE(q.try_claim());
  Job jobs[4];
  EXPECT_EQ(q.try_claim_many(jobs), 0u);
  Job one;
  EXPECT_EQ(q.claim(one, 20ms), ClaimStatus::empty);
  EXPECT_TRUE(q.push("c"));
  EXPECT_EQ(q.extend(*held, 30s), LeaseStatus::ok);
  EXPECT_EQ(q.release(held->lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().ready, 3u);
  EXPECT_FALSE(q.try_claim());

  EXPECT_TRUE(q.resume());
  EXPECT_FALSE(q.resume()) << "already running";
  EXPECT_EQ(q.stats().paused, 0u);
  EXPECT_EQ(q.try_claim_many(jobs), 3u);
}

// A lease that runs out while the queue is paused is not taken over by a
// claim; a sweep (the janitor) returns it to ready, and it is claimed after
// the resume. Fails if a takeover slipped past the pause.
TEST(Pause, ExpiryGoesOnButNoTakeover) {
  QueueName name("pause-expiry");
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("a"));
  ASSERT_TRUE(q.try_claim(test::with_lease(1ms)));
  q.pause();
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(q.try_claim());
  EXPECT_EQ(q.stats().expired, 1u);
  EXPECT_EQ(q.sweep().expired, 1u);
  EXPECT_EQ(q.stats().ready, 1u);
  EXPECT_FALSE(q.try_claim());
  q.resume();
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->attempt, 2u);
}

// A claim blocked on a paused queue with jobs in it is not woken into
// taking one by pushes; resume() wakes it and it gets a job, within 20 s
// though every safety sleep is made a minute longer (testing.hpp), so a
// resume that woke nobody fails. Fails also if the pause were only checked
// at the start of a claim.
TEST(Pause, ABlockedClaimSleepsThroughPushesUntilResume) {
  test::Watchdog dog(120s);
  detail::set_safety_sleep_extra_for_testing(60s);
  QueueName name("pause-block");
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("a"));
  q.pause();
  std::atomic<int> got{-1};
  std::thread worker([&] {
    Queue mine = Queue::open(name);
    Job job;
    got = mine.claim(job, 50s) == ClaimStatus::ok ? 1 : 0;
  });
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(q.push("more"));  // each push wakes the sleeper, which finds the queue paused
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(got.load(), -1) << "a claim returned from a paused queue";
  const auto resumed = std::chrono::steady_clock::now();
  q.resume();
  worker.join();
  detail::set_safety_sleep_extra_for_testing(0ms);
  EXPECT_LT(std::chrono::steady_clock::now() - resumed, 20s) << "resume() woke nobody";
  EXPECT_EQ(got.load(), 1);
}

// Paused by a process that then dies (SIGKILL), the queue stays paused for
// every other process, old handles and new; another process's resume wakes
// a worker blocked in a third. Fails if the flag were per process.
TEST(PauseProcesses, APauseOutlivesItsProcessAndAResumeWakesAnother) {
  test::Watchdog dog(60s);
  QueueName name("pause-procs");
  Queue q = Queue::create(name, small());
  ASSERT_TRUE(q.push("a"));
  const pid_t pauser = test::fork_child([&] {
    Queue mine = Queue::open(name);
    mine.pause();
    ::raise(SIGKILL);
    return 1;
  });
  EXPECT_EQ(test::wait_child(pauser), 128 + SIGKILL);
  EXPECT_TRUE(q.paused());
  EXPECT_TRUE(Queue::open(name).paused());
  EXPECT_FALSE(Queue::open(name).try_claim());
  test::Pipe ready;
  const pid_t worker = test::fork_child([&] {
    Queue mine = Queue::open(name);
    (void)test::write_all(ready.write_fd(), "up\n", 3);
    Job job;
    return mine.claim(job, 50s) == ClaimStatus::ok && job.text() == "a" ? 0 : 1;
  });
  ready.close_write();
  ASSERT_TRUE(test::read_line(ready.read_fd(), 30s).has_value());
  const pid_t resumer = test::fork_child([&] { return Queue::open(name).resume() ? 0 : 1; });
  EXPECT_EQ(test::wait_child(resumer), 0);
  EXPECT_EQ(test::wait_child(worker), 0);
  EXPECT_FALSE(q.paused());
}

}  // namespace
}  // namespace jobring
