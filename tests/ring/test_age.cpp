// Unit tests of a job's age (issue 14 item 5): SlotMeta::pushed_at_ms,
// Stats::oldest_ready_ms and JobInfo::enqueued_ms_ago. Ages are checked
// against lower bounds only (a loaded machine makes every age larger, never
// smaller); long ages are made by forging the enqueue time in the segment
// (tests/support/segment_view.hpp) instead of sleeping.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::SegmentView;

// Forged enqueue times lie minutes back: CLOCK_MONOTONIC counts from boot,
// so a time hours back would lie before it on a freshly booted machine.
constexpr std::uint64_t kMinuteMs = 60'000;

// now_ms() - `ms`, for forging; the tests that use it skip on a machine up
// for less than 20 minutes.
std::uint64_t ago(std::uint64_t ms) { return detail::now_ms() - ms; }
bool up_long_enough() { return detail::now_ms() > 20 * kMinuteMs; }
#define SKIP_IF_JUST_BOOTED() \
  if (!up_long_enough()) GTEST_SKIP() << "up for less than 20 minutes: no room to forge old enqueue times"

// The slot of the job with id `id` (the test's queues are small).
std::uint32_t slot_of(const SegmentView& v, JobId id) {
  for (std::uint32_t i = 0; i < v.capacity(); ++i)
    if (v.word(i).state() != detail::State::free && v.meta(i).job_id.load() == id) return i;
  throw std::logic_error("no such job");
}

// Item 5: a ready job's age grows from its push. Fails without pushed_at
// (oldest_ready_ms stays 0). Lower bound only: sleeping 50 ms makes the age
// at least 50 ms, however loaded the machine.
TEST(Age, OldestReadyGrowsFromThePush) {
  QueueName name("age");
  Queue q = Queue::create(name, {.capacity = 4});
  EXPECT_EQ(q.stats().oldest_ready_ms, 0u) << "no job: 0";
  ASSERT_TRUE(q.push("a"));
  std::this_thread::sleep_for(50ms);
  const Stats s = q.stats();
  EXPECT_GE(s.oldest_ready_ms, 50u);
  const auto jobs = q.peek(JobState::ready);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_GE(jobs[0].enqueued_ms_ago, 50u);
}

// Item 5: the oldest of several ready jobs counts, and only claimable ones:
// a lease or a delayed job, however old, is not a waiting job.
TEST(Age, OnlyClaimableJobsCountAndTheOldestWins) {
  SKIP_IF_JUST_BOOTED();
  QueueName name("age-oldest");
  Queue q = Queue::create(name, {.capacity = 8});
  const auto old_ready = q.push("old");
  const auto young_ready = q.push("young");
  const auto leased = q.push("leased");
  const auto delayed = q.push("delayed", {.delay = 1h});
  ASSERT_TRUE(old_ready && young_ready && leased && delayed);
  SegmentView v(name);
  const std::uint64_t now = detail::now_ms();
  v.meta(slot_of(v, old_ready.id)).pushed_at_ms.store(now - 2 * kMinuteMs);
  v.meta(slot_of(v, young_ready.id)).pushed_at_ms.store(now - kMinuteMs);
  v.meta(slot_of(v, delayed.id)).pushed_at_ms.store(now - 5 * kMinuteMs);
  // Claim "old" (FIFO: the first pushed), then make "leased" the ancient one.
  auto job = q.try_claim({.lease = 1h});
  ASSERT_TRUE(job);
  ASSERT_EQ(job->id, old_ready.id);
  v.meta(slot_of(v, leased.id)).pushed_at_ms.store(now - 9 * kMinuteMs);
  job = q.try_claim({.lease = 1h});
  ASSERT_TRUE(job);
  ASSERT_EQ(job->id, young_ready.id);
  // Left ready: "leased"'s job (9 minutes; ready: the claim took young).
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_GE(s.oldest_ready_ms, 9 * kMinuteMs);
  EXPECT_LT(s.oldest_ready_ms, 10 * kMinuteMs);
  // Claim it too: only the delayed job (5 minutes old) and leases are left: 0.
  job = q.try_claim({.lease = 1h});
  ASSERT_TRUE(job);
  EXPECT_EQ(q.stats().oldest_ready_ms, 0u);
  // peek reports the enqueue age in every state.
  const auto d = q.peek(JobState::delayed);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_GE(d[0].enqueued_ms_ago, 5 * kMinuteMs);
  const auto l = q.peek(JobState::leased);
  ASSERT_EQ(l.size(), 3u);
  for (const JobInfo& j : l)
    EXPECT_GE(j.enqueued_ms_ago, j.id == old_ready.id ? 2 * kMinuteMs
                                 : j.id == leased.id  ? 9 * kMinuteMs
                                                      : kMinuteMs);
}

// Item 5: a delayed job waits from when it came due, not from its push.
// Fails if the age counted from pushed_at alone (it would be >= 5 minutes).
TEST(Age, ADelayedJobWaitsFromItsDueTime) {
  SKIP_IF_JUST_BOOTED();
  QueueName name("age-due");
  Queue q = Queue::create(name, {.capacity = 4});
  const auto r = q.push("was delayed", {.delay = 1h});
  ASSERT_TRUE(r);
  SegmentView v(name);
  const std::uint32_t i = slot_of(v, r.id);
  const std::uint64_t now = detail::now_ms();
  // As if pushed 5 minutes ago with a delay that ran out 10 s ago.
  v.meta(i).pushed_at_ms.store(now - 5 * kMinuteMs);
  v.set(i, v.word(i).next(detail::State::ready, now - 10'000));
  const Stats s = q.stats();
  ASSERT_EQ(s.ready, 1u);
  EXPECT_GE(s.oldest_ready_ms, 10'000u);
  EXPECT_LT(s.oldest_ready_ms, kMinuteMs);
  const auto jobs = q.peek(JobState::ready);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_GE(jobs[0].enqueued_ms_ago, 5 * kMinuteMs) << "enqueued_ms_ago counts from the push";
}

// Item 5 (guarantee 9, hostile segment): an enqueue time in the future, 0,
// or the largest value reads as age 0, never as a huge or wrapped age.
TEST(Age, ForgedEnqueueTimesReadAsZero) {
  QueueName name("age-forged");
  Queue q = Queue::create(name, {.capacity = 4});
  const auto r = q.push("x");
  ASSERT_TRUE(r);
  SegmentView v(name);
  const std::uint32_t i = slot_of(v, r.id);
  for (const std::uint64_t forged :
       {detail::now_ms() + 60 * kMinuteMs, std::uint64_t{0}, std::numeric_limits<std::uint64_t>::max()}) {
    v.meta(i).pushed_at_ms.store(forged);
    EXPECT_EQ(q.stats().oldest_ready_ms, 0u) << forged;
    const auto jobs = q.peek(JobState::ready);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].enqueued_ms_ago, 0u) << forged;
  }
}

// Item 5: a requeue from dead is a new enqueue: the age starts again.
// Fails if requeue kept the old pushed_at (the age would be >= 1 minute).
TEST(Age, RequeueRestartsTheAge) {
  SKIP_IF_JUST_BOOTED();
  QueueName name("age-requeue");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  const auto r = q.push("poison");
  ASSERT_TRUE(r);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
  ASSERT_EQ(q.stats().dead, 1u);
  SegmentView v(name);
  v.meta(slot_of(v, r.id)).pushed_at_ms.store(ago(kMinuteMs));
  ASSERT_TRUE(q.requeue(r.id));
  const Stats s = q.stats();
  ASSERT_EQ(s.ready, 1u);
  EXPECT_LT(s.oldest_ready_ms, kMinuteMs);
  EXPECT_LT(q.peek(JobState::ready).at(0).enqueued_ms_ago, kMinuteMs);
}

// Item 5: a release (retry) is not a new enqueue: the job's age keeps
// counting from its push (or from the end of the release's delay).
TEST(Age, ReleaseKeepsThePushTime) {
  SKIP_IF_JUST_BOOTED();
  QueueName name("age-release");
  Queue q = Queue::create(name, {.capacity = 4});
  const auto r = q.push("retried");
  ASSERT_TRUE(r);
  SegmentView v(name);
  v.meta(slot_of(v, r.id)).pushed_at_ms.store(ago(kMinuteMs));
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
  EXPECT_GE(q.stats().oldest_ready_ms, kMinuteMs);
}

}  // namespace
}  // namespace jobring
