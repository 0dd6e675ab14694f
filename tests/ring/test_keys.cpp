// De-duplication keys (PushOptions::key; lib/ring/keys.hpp): one job per key
// while it is in the queue and for the window after its ack; the table's
// bounds and eviction. The crash states K1..K7 (forged, and by SIGKILL):
// crash/test_keys_crash.cpp.
#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/keys.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::KeyState;
using detail::State;
using detail::Word;
using test::dead_pid;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;

// ---------------------------------------------------------------------------
// Behaviour

// The same key pushed twice yields one job; the second push returns its id.
TEST(Dedup, SameKeyTwiceIsOneJob) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const PushResult a = q.push("first", PushOptions{.key = "welcome-email:42"});
  ASSERT_TRUE(a);
  EXPECT_FALSE(a.duplicate);
  const PushResult b = q.push("second", PushOptions{.key = "welcome-email:42"});
  ASSERT_TRUE(b);
  EXPECT_TRUE(b.duplicate);
  EXPECT_EQ(b.id, a.id);
  const auto s = q.stats();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.pushed, 1u);
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(s.keys_live, 1u);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "first");  // the duplicate's payload never got in
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
}

// Different keys are different jobs; a job without a key is never a duplicate.
TEST(Dedup, DifferentKeysAndUnkeyedAreSeparateJobs) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  std::set<JobId> ids;
  for (const char* k : {"a", "b", "ab", "ba", "a\0"}) ids.insert(q.push("p", PushOptions{.key = k}).id);
  ids.insert(q.push("p", PushOptions{.key = std::string("a\0", 2)}).id);  // another byte: another key
  ids.insert(q.push("x").id);
  ids.insert(q.push("x").id);
  EXPECT_EQ(ids.size(), 7u);  // "a\0" as a C string is "a": a duplicate of the first
  EXPECT_EQ(q.stats().ready, 7u);
}

// The worker sees the key (Job::key()), and no key for an unkeyed job, also
// when the Job object is reused.
TEST(Dedup, WorkerSeesTheKey) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::string longest(jobring::kMaxKeyLength, 'k');
  ASSERT_TRUE(q.push("p", PushOptions{.key = "invoice:2026-11"}));
  ASSERT_TRUE(q.push("plain"));
  ASSERT_TRUE(q.push("p", PushOptions{.key = longest}));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), "invoice:2026-11");
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "plain");
  EXPECT_EQ(job.key(), "");
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), longest);
}

// A key is a duplicate while its job is ready, delayed, leased, released or
// dead — everywhere in the queue.
TEST(Dedup, DuplicateInEveryStateOfTheJob) {
  QueueName name("dedup");
  Options o{.capacity = 16, .max_payload = 64, .default_lease = 60s, .max_attempts = 1, .dedup_window = 60s};
  Queue q = Queue::create(name, o);
  const JobId delayed = q.push("p", PushOptions{.delay = 60'000ms, .key = "d"}).id;
  EXPECT_TRUE(q.push("p", PushOptions{.key = "d"}).duplicate);
  const JobId id = q.push("p", PushOptions{.key = "k"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(job.id, id);
  EXPECT_EQ(q.push("p", PushOptions{.key = "k"}).id, id);  // leased
  EXPECT_TRUE(q.push("p", PushOptions{.key = "k"}).duplicate);
  ASSERT_EQ(q.release(job.lease), LeaseStatus::ok);  // attempts used up: dead
  ASSERT_EQ(q.stats().dead, 1u);
  const PushResult r = q.push("p", PushOptions{.key = "k"});
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.id, id);
  ASSERT_TRUE(q.requeue(id));
  EXPECT_TRUE(q.push("p", PushOptions{.key = "k"}).duplicate);
  EXPECT_EQ(q.push("p", PushOptions{.key = "d"}).id, delayed);
  EXPECT_EQ(q.stats().pushed, 2u);
}

// After the ack the key is remembered for the window: a push within it is a
// duplicate (of the acked job), a push after it adds the job again.
TEST(Dedup, RememberedForTheWindowAfterAck) {
  Watchdog wd(60s, "Dedup.RememberedForTheWindowAfterAck");
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 300ms});
  const JobId first = q.push("p", PushOptions{.key = "charge:7"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  const std::uint64_t before_ack = jobring::detail::now_ms();
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const PushResult again = q.push("p", PushOptions{.key = "charge:7"});
  // Within the window it must be a duplicate; only a machine stalled for
  // 300 ms between the two calls may see it accepted (then nothing to check).
  if (jobring::detail::now_ms() - before_ack < 300) {
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.id, first);
    EXPECT_EQ(q.stats().ready, 0u);
  }
  // After the window: accepted (poll; the window is 300 ms).
  PushResult later;
  ASSERT_TRUE(jobring::test::poll_until(
      [&] {
        later = q.push("p", PushOptions{.key = "charge:7"});
        return !later.duplicate;
      },
      20s));
  EXPECT_NE(later.id, first);
  EXPECT_EQ(q.stats().ready, 1u);
  EXPECT_TRUE(q.push("p", PushOptions{.key = "charge:7"}).duplicate);  // the new job holds the key
}

// The window is checked, not timed: with the default-sized window a push
// right after the ack is a duplicate for certain.
TEST(Dedup, RejectedWithinTheWindow) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 3'600'000ms});
  const JobId first = q.push("p", PushOptions{.key = "k"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  for (int i = 0; i < 3; ++i) {
    const PushResult r = q.push("p", PushOptions{.key = "k"});
    EXPECT_TRUE(r.duplicate);
    EXPECT_EQ(r.id, first);
  }
  EXPECT_EQ(q.stats().ready, 0u);
  EXPECT_EQ(q.stats().keys_remembered, 1u);
  EXPECT_EQ(q.stats().keys_live, 0u);
}

// A window of 0 forgets the key at the ack.
TEST(Dedup, ZeroWindowForgetsAtAck) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 0ms});
  const JobId first = q.push("p", PushOptions{.key = "k"}).id;
  EXPECT_TRUE(q.push("p", PushOptions{.key = "k"}).duplicate);  // still in the queue
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const PushResult r = q.push("p", PushOptions{.key = "k"});
  EXPECT_FALSE(r.duplicate);
  EXPECT_NE(r.id, first);
}

// Purge and remove_dead finish a job like an ack: its key is remembered.
TEST(Dedup, PurgeAndRemoveDeadRememberTheKey) {
  QueueName name("dedup");
  Options o{.capacity = 16, .max_payload = 64, .default_lease = 60s, .max_attempts = 1, .dedup_window = 60s};
  Queue q = Queue::create(name, o);
  ASSERT_TRUE(q.push("p", PushOptions{.key = "purged"}));
  EXPECT_EQ(q.purge(PurgeWhat::ready), 1u);
  EXPECT_TRUE(q.push("p", PushOptions{.key = "purged"}).duplicate);
  EXPECT_EQ(q.stats().ready, 0u);
  const JobId id = q.push("p", PushOptions{.key = "dead"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.release(job.lease), LeaseStatus::ok);
  ASSERT_TRUE(q.remove_dead(id));
  EXPECT_TRUE(q.push("p", PushOptions{.key = "dead"}).duplicate);
  EXPECT_EQ(q.stats().keys_remembered, 2u);
}

// Bad calls: a key over kMaxKeyLength (the message names the limit), a key
// with push_many (keys are per job).
TEST(Dedup, BadKeysAreRefused) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::string too_long(jobring::kMaxKeyLength + 1, 'x');
  try {
    (void)q.push("p", PushOptions{.key = too_long});
    FAIL() << "no error";
  } catch (const jobring::error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("64"), std::string::npos) << e.what();
  }
  std::error_code ec;
  PushOptions p;
  p.key = too_long;
  const std::string payload = "x";
  (void)q.push(std::as_bytes(std::span(payload)), p, ec);
  EXPECT_EQ(ec, errc::invalid_argument);
  const std::span<const std::byte> one[1] = {std::as_bytes(std::span(payload))};
  PushOptions keyed;
  keyed.key = "k";
  EXPECT_THROW((void)q.push_many(one, {}, keyed), jobring::error);
  EXPECT_EQ(q.stats().ready, 0u);
}

// Options: dedup_keys rounds up to whole buckets of 16 and survives open();
// out-of-range sizes and windows are refused.
TEST(Dedup, TableSizeOptions) {
  QueueName name("dedup");
  {
    Queue q = Queue::create(name, Options{.capacity = 16,
                                          .max_payload = 64,
                                          .default_lease = 60s,
                                          .dedup_keys = 17,
                                          .dedup_window = 1'000ms});
    EXPECT_EQ(q.options().dedup_keys, 32u);
    EXPECT_EQ(q.stats().keys_capacity, 32u);
    Queue other = Queue::open(name);
    EXPECT_EQ(other.options().dedup_keys, 32u);
    EXPECT_EQ(other.options().dedup_window, 1'000ms);
  }
  Queue::remove(name);
  {
    Queue q = Queue::create(
        name, Options{.capacity = 100, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
    EXPECT_EQ(q.options().dedup_keys, 208u);  // default: 2 x capacity, rounded up to 16
  }
  Queue::remove(name);
  std::error_code ec;
  EXPECT_FALSE(Queue::create(
      name,
      Options{
          .capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_keys = 15, .dedup_window = 1'000ms},
      ec));
  EXPECT_EQ(ec, errc::invalid_options);
  EXPECT_FALSE(Queue::create(name,
                             Options{.capacity = 16,
                                     .max_payload = 64,
                                     .default_lease = 60s,
                                     .dedup_keys = jobring::kMaxKeyCapacity + 1,
                                     .dedup_window = 1'000ms},
                             ec));
  EXPECT_EQ(ec, errc::invalid_options);
  EXPECT_FALSE(Queue::create(
      name,
      Options{
          .capacity = 16, .max_payload = 64, .default_lease = 60s, .dedup_window = jobring::kMaxLease + 1ms},
      ec));
  EXPECT_EQ(ec, errc::invalid_options);
}

// A full table: with one bucket (16 entries) whose every key is live, a 17th
// key is refused as full (counted), nothing is lost, and the ring is not
// changed; once a job is acked its remembered key is the one evicted.
TEST(Dedup, FullTableRefusesThenEvictsTheOldestRemembered) {
  QueueName name("dedup");
  Queue q = Queue::create(name, Options{.capacity = 32,
                                        .max_payload = 64,
                                        .default_lease = 60s,
                                        .dedup_keys = 16,
                                        .dedup_window = 3'600'000ms});
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(q.push("p", PushOptions{.key = "k" + std::to_string(i)}));
  const PushResult r = q.push("p", PushOptions{.key = "k16"});
  EXPECT_EQ(r.status, PushStatus::full);
  auto s = q.stats();
  EXPECT_EQ(s.keys_full, 1u);
  EXPECT_EQ(s.ready, 16u);
  EXPECT_EQ(s.free, 16u);  // the slot taken for the refused push was given back
  // Ack k0 then k1 (distinct milliseconds, so the order is known).
  Job job;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    ASSERT_EQ(job.key(), "k" + std::to_string(i));
    ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
    std::this_thread::sleep_for(3ms);
  }
  const PushResult k16 = q.push("p", PushOptions{.key = "k16"});
  ASSERT_TRUE(k16);
  EXPECT_FALSE(k16.duplicate);
  s = q.stats();
  EXPECT_EQ(s.keys_evicted, 1u);
  // k0 (the oldest remembered) was evicted: it is accepted again; k1 is still remembered.
  EXPECT_TRUE(q.push("p", PushOptions{.key = "k1"}).duplicate);
  const PushResult k0 = q.push("p", PushOptions{.key = "k0"});
  EXPECT_FALSE(k0.duplicate);
  EXPECT_EQ(q.stats().keys_evicted, 2u);  // k1 went for k0
  // k1 was evicted, and every entry holds a live key now: the table is full.
  EXPECT_EQ(q.push("p", PushOptions{.key = "k1"}).status, PushStatus::full);
  EXPECT_EQ(q.stats().keys_full, 2u);
}

// A keyed push that waits (PushOptions::wait) for room in a full key table
// sleeps until an ack frees an entry, and then gets in: it does not spin.
// Before the fix each pass reserved a slot and gave it back, bumping the room
// event it slept on, so it burned a core for the whole wait. Fails if the
// waiter's CPU time is close to the time it waited (a generous bound: a
// sleeping waiter uses a few ms), or if the ack does not let it in.
TEST(Dedup, KeyedPushWaitingForAFullTableSleeps) {
  Watchdog wd(120s);
  QueueName name("dedup-wait");
  Queue q = Queue::create(name, Options{.capacity = 32, .max_payload = 64, .dedup_keys = 16});
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(q.push("p", PushOptions{.key = "k" + std::to_string(i)}));
  ASSERT_EQ(q.push("p", PushOptions{.key = "late"}).status, PushStatus::full);
  std::atomic<bool> started{false};
  PushResult late;
  std::chrono::nanoseconds cpu{0};
  std::thread pusher([&] {
    started = true;
    timespec a{}, b{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    late = q.push("p", PushOptions{.wait = 60s, .key = "late"});
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    cpu = std::chrono::seconds(b.tv_sec - a.tv_sec) + std::chrono::nanoseconds(b.tv_nsec - a.tv_nsec);
  });
  while (!started) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);  // the pusher waits through this
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  pusher.join();
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(late.status, PushStatus::ok);
  EXPECT_FALSE(late.duplicate);
  EXPECT_LT(cpu, waited / 4) << "the waiting push used " << cpu.count() / 1'000'000 << " ms of CPU in "
                             << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                             << " ms";
}

// A keyed push waits for room like any push (PushOptions::wait), and a
// duplicate is answered at once even when the ring is full.
TEST(Dedup, DuplicateAnsweredWhenTheRingIsFull) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 2, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const JobId a = q.push("p", PushOptions{.key = "a"}).id;
  ASSERT_TRUE(q.push("p", PushOptions{.key = "b"}));
  EXPECT_EQ(q.push("p", PushOptions{.key = "c"}).status, PushStatus::full);
  const PushResult dup = q.push("p", PushOptions{.key = "a"});
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.id, a);
}

}  // namespace
}  // namespace jobring
