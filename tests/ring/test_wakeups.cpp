// Wake-ups that a transition owes a sleeper (lib/ring/wait.hpp), issue 13
// item 12: extend shortening a lease wakes a claimer sleeping until the old
// deadline (12c); an ack that frees a de-duplication key wakes a keyed push
// waiting for room in a full key table (12b). Each test watches the event
// word's sequence (bumped only by a notify that found a sleeper) and checks
// that the sleeper then gets what it waits for; the Watchdog bounds the test.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include "jobring/queue.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

// Spins until `event` announces a sleeper (its waiting bit), then returns its sequence.
std::uint32_t sequence_once_waiting(const std::atomic<std::uint32_t>& event) {
  std::uint32_t e = event.load();
  while ((e & 1u) == 0) {
    std::this_thread::sleep_for(100us);
    e = event.load();
  }
  return e >> 1;
}

// issue 13 item 12c: a claimer sleeps until a lease of an hour runs out; the
// holder shortens it to 1 ms. The extend must wake the claimer (bump the work
// event), which then takes the job over once the new deadline has passed.
TEST(Wakeups, Item12c_ShorteningExtendWakesASleepingClaimer) {
  Watchdog dog(60s);
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16, .default_lease = 1h});
  test::SegmentView v(name.str());
  ASSERT_TRUE(q.push("x"));
  auto held = q.try_claim();
  ASSERT_TRUE(held);

  std::atomic<bool> got{false};
  std::thread claimer([&] {
    Queue mine = Queue::open(name.str());
    Job job;
    if (mine.claim(job, 50s, {.lease = 1h}) == ClaimStatus::ok && job.id == held->id) got = true;
  });
  const std::uint32_t before = sequence_once_waiting(v.work_event());
  ASSERT_EQ(q.extend(*held, 1ms), LeaseStatus::ok);
  const std::uint32_t after = v.work_event().load() >> 1;
  claimer.join();
  EXPECT_NE(after, before) << "a shortening extend woke no sleeping claimer";
  EXPECT_TRUE(got);
  EXPECT_EQ(q.ack(held->lease), LeaseStatus::lease_lost);  // taken over
}

// issue 13 item 12c, the other direction: lengthening a lease wakes nobody
// (a heartbeat must stay cheap: no notify, no seq_cst).
TEST(Wakeups, Item12c_LengtheningExtendWakesNobody) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16, .default_lease = 1h});
  test::SegmentView v(name.str());
  ASSERT_TRUE(q.push("x"));
  auto held = q.try_claim();
  ASSERT_TRUE(held);
  v.work_event().fetch_or(1u);  // as if a claimer slept
  const std::uint32_t before = v.work_event().load();
  ASSERT_EQ(q.extend(*held, 2h), LeaseStatus::ok);
  EXPECT_EQ(v.work_event().load(), before);
  EXPECT_EQ(q.ack(held->lease), LeaseStatus::ok);
}

// issue 13 item 12b: a keyed push waiting for room in a key table whose
// every entry holds a live key gets in once an ack frees one (K4, then the
// ack's room wake-up). The ordering K4 needs (seq_cst, as it is followed by a
// wake-up) cannot be shown to fail on x86, where every CAS is a full
// barrier; this checks the behaviour. Also reports how often the room event
// moved while the push waited (a keyed push that finds the table full gives
// its reserved slot back, T2 abandon, which wakes room sleepers: itself too).
TEST(Wakeups, Item12b_AckFreeingAKeyWakesAKeyedPushWaitingForRoom) {
  Watchdog dog(60s);
  QueueName name;
  Queue q = Queue::create(
      name, Options{.capacity = 32, .max_payload = 16, .dedup_keys = 16, .dedup_window = milliseconds{0}});
  test::SegmentView v(name.str());
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(q.push("k", {.key = "key" + std::to_string(i)}));
  auto full = q.push("k", {.key = "one too many"});
  ASSERT_EQ(full.status, PushStatus::full);

  std::atomic<bool> pushed{false};
  std::thread pusher([&] {
    Queue mine = Queue::open(name.str());
    pushed = mine.push("k", {.wait = 50s, .key = "one too many"}).status == PushStatus::ok;
  });
  const std::uint32_t waiting_at = sequence_once_waiting(v.room_event());
  std::this_thread::sleep_for(50ms);
  const std::uint32_t moved = (v.room_event().load() >> 1) - waiting_at;
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);  // K4 forgets its key (window 0)
  pusher.join();
  EXPECT_TRUE(pushed);
  RecordProperty("room_event_moves_while_waiting_50ms", static_cast<int>(moved));
  std::printf("room event moved %u times in 50 ms while the keyed push waited\n", moved);
}

}  // namespace
}  // namespace jobring
