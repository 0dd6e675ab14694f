// Regression tests for what the fuzz targets (tests/fuzz/) found. Each test
// names the target that found it and replays the smallest sequence that
// shows it, so that it runs in every build (the fuzzers only run in the
// clang "fuzz" stage).
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "keys.hpp"
#include "process.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::Options;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::SegmentView;

std::vector<std::string> claim_all(Queue& q) {
  std::vector<std::string> order;
  Job job;
  while (q.try_claim(job) == ClaimStatus::ok) order.emplace_back(job.text());
  return order;
}

// G6, found by fuzz_model: purge() removed jobs that no claim had passed, so
// the claim cursor stayed where they were while the push cursor moved on.
// The next jobs of the one producer wrapped round into the purged slots, and
// the claim scan, starting at the stale cursor, met the newest job first:
// "c" was claimed before "a" and "b" on a queue that the producer had
// filled in order after the purge emptied it.
TEST(FuzzRegress, FifoAfterPurgeOfUnclaimedJobs) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  ASSERT_TRUE(q.push("old1"));
  ASSERT_TRUE(q.push("old2"));
  ASSERT_EQ(q.purge(PurgeWhat::all), 2u);  // empty again; the producers' cursor is at slot 2
  for (const char* p : {"a", "b", "c"}) ASSERT_TRUE(q.push(p));  // slots 2, 3 and 0
  EXPECT_EQ(claim_all(q), (std::vector<std::string>{"a", "b", "c"}));
}

// G6, the same when the producer then fills the whole ring: purge three
// unclaimed jobs, push four; they must be claimed in push order.
TEST(FuzzRegress, FifoAfterPurgeWithAFullRing) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  ASSERT_TRUE(q.push("old1"));
  ASSERT_TRUE(q.push("old2"));
  ASSERT_TRUE(q.push("old3"));
  ASSERT_EQ(q.purge(PurgeWhat::ready), 3u);
  for (const char* p : {"a", "b", "c", "d"}) ASSERT_TRUE(q.push(p));
  EXPECT_EQ(claim_all(q), (std::vector<std::string>{"a", "b", "c", "d"}));
}

// No operation waits for another process (queue.hpp, guarantee 3), and a
// push with no wait returns at once (DESIGN.md), found while writing
// fuzz_segment: a keyed push that finds its key CLAIMED in the key table by
// a producer that is alive but does not finish (here forged: every entry
// names this process; in real life a producer stopped with SIGSTOP, or
// descheduled for long, between K1 and K3 of keys.hpp) waits for it without
// bound. The same holds for a hostile segment whose entry names any live
// PID (PID 1). The push must return (full, or ok) within the watchdog's time.
TEST(FuzzRegress, KeyedPushDoesNotWaitForAnUnfinishedProducer) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  {
    SegmentView view(name);
    const auto me = jobring::detail::self();
    const std::uint64_t hash = jobring::detail::key_hash("order-1");
    for (std::uint32_t e = 0; e < view.key_capacity(); ++e) {
      auto& entry = view.key(e);
      entry.hash.store(hash);
      entry.job_id.store(77);
      entry.slot.store(0);
      const jobring::detail::Word w{entry.word.load()};
      entry.word.store(jobring::detail::key_word(w, jobring::detail::KeyState::claimed,
                                                 jobring::detail::make_writer(me.pid, me.start_ticks))
                           .raw);
    }
  }
  auto pushed = std::async(std::launch::async, [&] { return q.push("x", PushOptions{.key = "order-1"}); });
  const bool returned = pushed.wait_for(10s) == std::future_status::ready;
  if (!returned) jobring::interrupt_waits();  // unblock it, so that the test ends
  const auto r = pushed.get();
  jobring::clear_interrupt();
  EXPECT_TRUE(returned) << "push with a key held by an unfinished producer did not return within 10 s";
  EXPECT_NE(r.status, PushStatus::interrupted);
}

}  // namespace
