// AnyQueue's own behaviour (any_queue.hpp): URLs, ownership, the backend's
// handle, claim_any over either backend. The queue contract through the
// facade runs in test_contract.cpp (any_shm, any_redis).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "jobring/any_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;

std::string unique(const char* what) {
  static int counter = 0;
  return std::string("anyq.") + what + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// `f` throws jobring::error(code) whose message contains `text`.
template <class F>
void expect_error(errc code, const std::string& text, F&& f) {
  std::string what;
  EXPECT_EQ(test::code_thrown(std::forward<F>(f), &what), make_error_code(code)) << what;
  EXPECT_NE(what.find(text), std::string::npos) << what;
}

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

TEST(AnyQueueUrl, SchemesPickTheBackend) {
  std::error_code ec;
  EXPECT_EQ(backend_of("", ec), Backend::shm);
  EXPECT_EQ(backend_of("shm:", ec), Backend::shm);
  EXPECT_EQ(backend_of("redis://127.0.0.1:6379", ec), Backend::redis);
  EXPECT_EQ(backend_of("redis+unix:///run/redis.sock", ec), Backend::redis);
  EXPECT_EQ(backend_of("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", ec), Backend::redis);
  EXPECT_FALSE(ec);
  for (const char* bad : {"shm", "shm://", "http://x", "REDIS://x:1", "rediss://x:1", "postgres://db"}) {
    EXPECT_FALSE(backend_of(bad, ec)) << bad;
    EXPECT_EQ(ec, make_error_code(errc::invalid_argument)) << bad;
  }
}

TEST(AnyQueueUrl, AnUnknownSchemeSaysWhichOnesThereAre) {
  expect_error(errc::invalid_argument, "redis+unix:///PATH", [] { (void)AnyQueue::open("amqp://x", "q"); });
  std::error_code ec;
  EXPECT_FALSE(AnyQueue::open("amqp://x", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
}

TEST(AnyQueueUrl, FromTheEnvironment) {
  const char* old = ::getenv("JOBRING_URL");
  const std::string saved = old != nullptr ? old : "";
  ::unsetenv("JOBRING_URL");
  EXPECT_EQ(url_from_env(), "shm:");
  ::setenv("JOBRING_URL", "", 1);
  EXPECT_EQ(url_from_env(), "shm:");
  ::setenv("JOBRING_URL", "redis://127.0.0.1:6390", 1);
  EXPECT_EQ(url_from_env(), "redis://127.0.0.1:6390");
  if (old != nullptr)
    ::setenv("JOBRING_URL", saved.c_str(), 1);
  else
    ::unsetenv("JOBRING_URL");
}

TEST(AnyQueue, OwnsOrRefersToTheBackendsHandle) {
  const std::string name = unique("own");
  AnyQueue owned = AnyQueue::create("shm:", name, {.capacity = 4});
  ASSERT_EQ(owned.backend(), Backend::shm);
  ASSERT_NE(owned.shm(), nullptr);
  EXPECT_EQ(owned.redis(), nullptr);
  EXPECT_EQ(owned.url(), "shm:");
  EXPECT_EQ(owned.name(), name);
  ASSERT_TRUE(owned.push("x"));

  Queue direct = Queue::open(name);
  {
    AnyQueue r = AnyQueue::ref(direct);
    EXPECT_EQ(r.shm(), &direct);
    Job job;
    ASSERT_EQ(r.try_claim(job), ClaimStatus::ok);
    EXPECT_EQ(job.text(), "x");
    EXPECT_EQ(r.ack(job.lease), LeaseStatus::ok);
  }  // the reference goes; the Queue stays usable
  EXPECT_EQ(direct.stats().ready, 0u);
  AnyQueue moved = std::move(owned);
  EXPECT_EQ(moved.name(), name);
  EXPECT_TRUE(AnyQueue::remove("shm:", name));
  EXPECT_FALSE(AnyQueue::remove("shm:", name));
}

TEST(AnyQueue, RedisHandle) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const std::string name = unique("redis");
  AnyQueue q = AnyQueue::open_or_create(server().url(), name, {.capacity = 4});
  EXPECT_EQ(q.backend(), Backend::redis);
  ASSERT_NE(q.redis(), nullptr);
  EXPECT_EQ(q.shm(), nullptr);
  EXPECT_EQ(q.url(), server().url());
  const auto names = AnyQueue::list(server().url());
  EXPECT_NE(std::find(names.begin(), names.end(), name), names.end());
  RedisQueue direct = RedisQueue::open(server().url(), name);
  AnyQueue r = AnyQueue::ref(direct);
  EXPECT_EQ(r.redis(), &direct);
  EXPECT_TRUE(AnyQueue::remove(server().url(), name));
}

TEST(AnyQueue, ADownServerIsUnavailableNotAHang) {
  test::Watchdog watchdog(60s);
  const test::TempDir dir("anyq");
  const std::string url = "redis+unix://" + dir.file("nobody.sock");
  std::error_code ec;
  EXPECT_FALSE(AnyQueue::open(url, "q", ec, {.connect_timeout = 500ms, .io_timeout = 500ms}));
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
}

// claim_any: the first queue in the order given that has a job; a wait
// sleeps until a job comes to any of them (on Redis also to a later one).
void claim_any_in_order(std::vector<AnyQueue>& qs) {
  std::vector<AnyQueue*> order;
  for (auto& q : qs) order.push_back(&q);
  Job job;
  EXPECT_EQ(AnyQueue::claim_any(order, job, 0ms).status, ClaimStatus::empty);
  ASSERT_TRUE(qs[2].push("c"));
  ASSERT_TRUE(qs[1].push("b"));
  auto r = AnyQueue::claim_any(order, job, 0ms);
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(job.text(), "b");
  EXPECT_EQ(qs[r.index].ack(job.lease), LeaseStatus::ok);
  r = AnyQueue::claim_any(order, job, 0ms);
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(qs[r.index].ack(job.lease), LeaseStatus::ok);

  // A blocked claim_any is woken by a push to the last queue.
  std::thread pusher([&] {
    std::this_thread::sleep_for(200ms);
    (void)qs[2].push("late");
  });
  r = AnyQueue::claim_any(order, job, 30s);
  pusher.join();
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(job.text(), "late");
  EXPECT_EQ(qs[2].ack(job.lease), LeaseStatus::ok);
}

TEST(AnyQueue, ClaimAnyOnSharedMemory) {
  test::Watchdog watchdog(60s);
  std::vector<AnyQueue> qs;
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(unique("any"));
    qs.push_back(AnyQueue::create("shm:", names.back(), {.capacity = 4}));
  }
  claim_any_in_order(qs);
  for (const auto& n : names) AnyQueue::remove("shm:", n);
}

TEST(AnyQueue, ClaimAnyOnRedis) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  test::Watchdog watchdog(60s);
  std::vector<AnyQueue> qs;
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(unique("any"));
    qs.push_back(AnyQueue::create(server().url(), names.back(), {.capacity = 4}));
  }
  claim_any_in_order(qs);
  for (const auto& n : names) AnyQueue::remove(server().url(), n);
}

TEST(AnyQueue, ClaimAnyRefusesMixedBackends) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const std::string a = unique("mix"), b = unique("mix");
  AnyQueue shm = AnyQueue::create("shm:", a, {.capacity = 4});
  AnyQueue redis = AnyQueue::create(server().url(), b, {.capacity = 4});
  std::vector<AnyQueue*> both{&shm, &redis};
  Job job;
  expect_error(errc::invalid_argument, "one backend", [&] { (void)AnyQueue::claim_any(both, job, 0ms); });
  std::error_code ec;
  (void)AnyQueue::claim_any(both, job, 0ms, {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  AnyQueue::remove("shm:", a);
  AnyQueue::remove(server().url(), b);
}

}  // namespace
}  // namespace jobring
