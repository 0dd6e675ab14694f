// Thread stress for de-duplication keys (lib/ring/keys.hpp), run under TSan too:
// producers racing on the same keys while a worker acks them.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::LeaseStatus;
using jobring::Options;
using jobring::PushOptions;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::Watchdog;

// Three producer threads push keys 0..N-1, in the same order (so they
// collide on every key), three laps each, while a worker claims and acks.
// The window outlasts the test, so each key must be claimed exactly once:
// a second job for a key means two inserts won (K2), or a key forgotten
// between its ack (K4) and a racing insert.
TEST(StressDedup, RacingProducersAndAcksMakeOneJobPerKey) {
  Watchdog wd(300s, "StressDedup.RacingProducersAndAcksMakeOneJobPerKey");
  QueueName name("sdedup");
  const int keys = static_cast<int>(jobring::test::env_long("JOBRING_STRESS_KEYS", 2000));
  Options o;
  o.capacity = 64;  // small: producers also wait for room, and slots are reused often
  o.max_payload = 16;
  o.dedup_keys = static_cast<std::uint32_t>(keys) * 2;
  o.dedup_window = 3'600'000ms;
  Queue q = Queue::create(name, o);
  std::atomic<int> producers_left{3};
  std::vector<std::thread> producers;
  std::atomic<bool> failed{false};
  for (int p = 0; p < 3; ++p) {
    producers.emplace_back([&] {
      Queue mine = Queue::open(name);
      for (int lap = 0; lap < 3; ++lap) {
        for (int k = 0; k < keys && !failed; ++k) {
          PushOptions po;
          const std::string key = "key-" + std::to_string(k);
          po.key = key;
          po.wait = 60s;
          if (!mine.push("x", po)) failed = true;
        }
      }
      --producers_left;
    });
  }
  std::multiset<std::string> claimed;
  Job job;
  for (;;) {
    const bool last = producers_left.load() == 0;
    if (q.claim(job, 50ms) == ClaimStatus::ok) {
      claimed.insert(std::string(job.key()));
      ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
    } else if (last) {
      break;
    }
  }
  for (auto& t : producers) t.join();
  ASSERT_FALSE(failed.load()) << "a push timed out";
  EXPECT_EQ(claimed.size(), static_cast<std::size_t>(keys));
  int twice = 0;
  for (int k = 0; k < keys; ++k) twice += claimed.count("key-" + std::to_string(k)) > 1 ? 1 : 0;
  EXPECT_EQ(twice, 0);
  const auto s = q.stats();
  EXPECT_EQ(s.pushed, static_cast<std::uint64_t>(keys));
  EXPECT_EQ(s.duplicates, static_cast<std::uint64_t>(keys) * 9 - static_cast<std::uint64_t>(keys));
}

}  // namespace
