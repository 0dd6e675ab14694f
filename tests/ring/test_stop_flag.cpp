// Per-call stop flags (ClaimOptions::stop, PushOptions::stop) and
// wake_waits(): a blocking call given a flag ends with `interrupted` once the
// flag is set and the waits are woken, while the other blocking calls of the
// process wait on. (Worker::request_stop(), built on them:
// runtime/test_worker.cpp, WorkerStop.) Before these, the only way to end a
// wait was interrupt_waits(), which ends every wait in the process.
//
// Time bounds here are limits after which a test gives up (60 s waits, 20 s
// bounds), never measurements.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "ring/wait.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::Options;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::Watchdog;

// The flag ends its own claim; a claim without it, asleep on the same queue in
// the same process, is woken too but waits on, and gets the next job. Fails
// if the flag is ignored (the first claim waits 60 s) or if it stops every
// claim (the second returns interrupted).
TEST(StopFlag, AClaimWithAStopFlagEndsAndTheOthersWaitOn) {
  Watchdog dog(120s, "StopFlag.AClaimWithAStopFlagEndsAndTheOthersWaitOn");
  QueueName name("stop");
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 32});
  std::atomic<bool> stop{false};
  auto flagged = std::async(std::launch::async, [&] {
    Job job;
    return q.claim(job, 60s, ClaimOptions{.stop = &stop});
  });
  auto other = std::async(std::launch::async, [&] {
    Job job;
    const ClaimStatus st = q.claim(job, 60s);
    return st == ClaimStatus::ok ? std::string(job.text()) : "status " + std::to_string(static_cast<int>(st));
  });
  std::this_thread::sleep_for(100ms);  // let both go to sleep (not needed for the outcome)
  stop.store(true);
  jobring::wake_waits();
  ASSERT_EQ(flagged.wait_for(20s), std::future_status::ready) << "the flagged claim did not end";
  EXPECT_EQ(flagged.get(), ClaimStatus::interrupted);
  EXPECT_EQ(other.wait_for(200ms), std::future_status::timeout) << "the claim without the flag ended too";
  ASSERT_TRUE(q.push("for the other"));
  ASSERT_EQ(other.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(other.get(), "for the other");
  EXPECT_FALSE(jobring::detail::interrupt_requested()) << "a stop flag must not interrupt the process";
}

// A push waiting for room: the same.
TEST(StopFlag, APushWaitingForRoomEndsWithItsFlag) {
  Watchdog dog(120s, "StopFlag.APushWaitingForRoomEndsWithItsFlag");
  QueueName name("stop");
  Queue q = Queue::create(name, Options{.capacity = 1, .max_payload = 32});
  ASSERT_TRUE(q.push("fills the ring"));
  std::atomic<bool> stop{false};
  auto pushed = std::async(std::launch::async,
                           [&] { return q.push("waits", PushOptions{.wait = 60s, .stop = &stop}); });
  std::this_thread::sleep_for(100ms);
  stop.store(true);
  jobring::wake_waits();
  ASSERT_EQ(pushed.wait_for(20s), std::future_status::ready) << "the flagged push did not end";
  EXPECT_EQ(pushed.get().status, PushStatus::interrupted);
  EXPECT_EQ(q.stats().ready, 1u);
}

// A flag set before the call: one look, then `interrupted` without waiting.
// And a flag set with no wake_waits(): the wait still ends, at its next
// safety re-check (200 ms here), not after the full 60 s.
TEST(StopFlag, AFlagSetBeforeOrWithoutAWakeEndsTheWait) {
  Watchdog dog(120s, "StopFlag.AFlagSetBeforeOrWithoutAWakeEndsTheWait");
  QueueName name("stop");
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 32});
  std::atomic<bool> stop{true};
  Job job;
  EXPECT_EQ(q.claim(job, 60s, ClaimOptions{.stop = &stop}), ClaimStatus::interrupted);
  ASSERT_TRUE(q.push("taken at the first look"));
  EXPECT_EQ(q.claim(job, 60s, ClaimOptions{.stop = &stop}), ClaimStatus::ok)
      << "the first look must still claim";

  stop.store(false);
  auto flagged = std::async(std::launch::async, [&] {
    Job j;
    return q.claim(j, 60s, ClaimOptions{.stop = &stop});
  });
  std::this_thread::sleep_for(100ms);
  stop.store(true);  // no wake_waits()
  ASSERT_EQ(flagged.wait_for(20s), std::future_status::ready) << "a set flag was not noticed at the re-check";
  EXPECT_EQ(flagged.get(), ClaimStatus::interrupted);
}

}  // namespace
