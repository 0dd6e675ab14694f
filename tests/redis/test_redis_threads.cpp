// Threads sharing one RedisQueue (labels "redis" and "concurrency": the TSan
// build runs it). A RedisQueue keeps a pool of connections, one per call in
// flight; these tests make many threads call it at once — pushes, blocking
// claims, extends, acks, releases, stats — through the RedisQueue itself and
// through an AnyQueue on it, and account for every job: each is acked once,
// none is lost, no two threads hold one job's lease at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/redis_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;

constexpr int kProducers = 3;
constexpr int kConsumers = 4;

int jobs_per_producer() {
  const long normal = (test::kThreadSanitizer || test::kAddressSanitizer) ? 150 : 600;
  return static_cast<int>(std::max(1L, test::env_long("JOBRING_STRESS_JOBS", normal)));
}

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

std::string unique(const char* what) {
  static std::atomic<int> counter{0};
  return std::string("threads.") + what + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// Producers push "P.N" (some keyed, some delayed a little); consumers claim
// with a blocking wait, sometimes extend, release one job in five once (it
// comes back), ack the rest; one thread reads stats all along. Every payload
// must be acked exactly once.
template <class Q>
void hammer(Q& q) {
  const int per = jobs_per_producer();
  const int total = kProducers * per;
  std::atomic<int> acked{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::multiset<std::string> done;
  std::set<std::string> released;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < per; ++i) {
        const std::string payload = std::to_string(p) + "." + std::to_string(i);
        PushOptions o;
        const std::string key = "k" + payload;  // o.key is a view: the string outlives the push
        if (i % 3 == 0) o.key = key;
        if (i % 7 == 0) o.delay = 5ms;
        std::error_code ec;
        const PushResult r = q.push(std::as_bytes(std::span(payload.data(), payload.size())), o, ec);
        if (ec || !r) failed = true;
      }
    });
  for (int c = 0; c < kConsumers; ++c)
    threads.emplace_back([&, c] {
      Job job;
      unsigned n = 0;
      while (acked.load() < total && !failed.load()) {
        std::error_code ec;
        const ClaimStatus s = q.claim(job, 200ms, {.lease = 30s}, ec);
        if (ec) {
          failed = true;
          return;
        }
        if (s != ClaimStatus::ok) continue;
        const std::string payload(job.text());
        if (++n % 4 == 0 && q.extend(job.lease, 30s, ec) != LeaseStatus::ok) failed = true;
        bool release = false;
        {
          std::lock_guard lock(mu);
          if ((n + static_cast<unsigned>(c)) % 5 == 0 && released.insert(payload).second) release = true;
        }
        if (release) {
          if (q.release(job.lease, 0ms, "again", ec) != LeaseStatus::ok) failed = true;
          continue;
        }
        if (q.ack(job.lease, ec) != LeaseStatus::ok) {
          failed = true;
          continue;
        }
        {
          std::lock_guard lock(mu);
          done.insert(payload);
        }
        acked.fetch_add(1);
      }
    });
  std::atomic<bool> stop_reader{false};
  std::thread reader([&] {
    while (!stop_reader.load()) {
      std::error_code ec;
      (void)q.stats(ec);
      if (ec) failed = true;
      std::this_thread::sleep_for(5ms);
    }
  });
  for (auto& t : threads) t.join();
  stop_reader = true;
  reader.join();
  ASSERT_FALSE(failed.load());
  ASSERT_EQ(done.size(), static_cast<std::size_t>(total));
  for (int p = 0; p < kProducers; ++p)
    for (int i = 0; i < per; ++i)
      EXPECT_EQ(done.count(std::to_string(p) + "." + std::to_string(i)), 1u) << p << "." << i;
  const Stats s = q.stats();
  EXPECT_EQ(s.ready + s.leased + s.delayed + s.dead, 0u);
}

TEST(RedisThreads, OneRedisQueueManyThreads) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  test::Watchdog watchdog(240s);
  const std::string name = unique("direct");
  RedisQueue q = RedisQueue::create(server().url(), name, {.capacity = 100000});
  hammer(q);
  RedisQueue::remove(server().url(), name);
}

TEST(RedisThreads, OneAnyQueueManyThreads) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  test::Watchdog watchdog(240s);
  const std::string name = unique("any");
  AnyQueue q = AnyQueue::create(server().url(), name, {.capacity = 100000});
  hammer(q);
  AnyQueue::remove(server().url(), name);
}

// Handles opened and dropped while other threads use the same server: each
// has its own pool; none leaks or crosses another's connections.
TEST(RedisThreads, HandlesComeAndGo) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  test::Watchdog watchdog(240s);
  const std::string name = unique("handles");
  (void)RedisQueue::create(server().url(), name, {.capacity = 100000});
  const int rounds = (test::kThreadSanitizer || test::kAddressSanitizer) ? 10 : 40;
  std::atomic<int> pushed{0}, acked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int r = 0; r < rounds; ++r) {
        RedisQueue q = RedisQueue::open(server().url(), name);
        if (q.push("x")) pushed.fetch_add(1);
        Job job;
        if (q.try_claim(job) == ClaimStatus::ok && q.ack(job.lease) == LeaseStatus::ok) acked.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  RedisQueue q = RedisQueue::open(server().url(), name);
  Job job;
  while (q.try_claim(job) == ClaimStatus::ok)
    if (q.ack(job.lease) == LeaseStatus::ok) acked.fetch_add(1);
  EXPECT_EQ(pushed.load(), 4 * rounds);
  EXPECT_EQ(acked.load(), pushed.load());
  RedisQueue::remove(server().url(), name);
}

}  // namespace
}  // namespace jobring
