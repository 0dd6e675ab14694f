// Regression tests for what the fuzz targets (tests/fuzz/) found. Each test
// names the target that found it and replays the smallest sequence that
// shows it, so that it runs in every build (the fuzzers only run in the
// clang "fuzz" stage).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::Options;
using jobring::PurgeWhat;
using jobring::Queue;
using jobring::test::QueueName;

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

// G6, the same with remove-free ring positions made by a full wrap: purge
// after a lap of pushes, then the producer fills the whole ring in order.
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

}  // namespace
