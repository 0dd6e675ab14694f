// RedisQueue::claim_any (lib/redis/claim_any.cpp): one job from the first of
// several Redis queues that has one, and a wait that sleeps in one BLPOP over
// every queue's wake-up list, so a Worker of several queues neither polls nor
// misses a push. (The same calls through AnyQueue on both backends:
// test_any_queue.cpp and test_worker_contract.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "jobring/interrupt.hpp"
#include "jobring/redis_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::Watchdog;

class RedisClaimAny : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    server_.emplace();
    for (int i = 0; i < 3; ++i)
      queues_.push_back(RedisQueue::create(
          server_->url(), "claimany." + std::to_string(::getpid()) + "." + std::to_string(i)));
    for (auto& q : queues_) ptrs_.push_back(&q);
  }
  // How many FCALLs the server ran since the last call.
  std::uint64_t fcalls() {
    auto r = server_->command({"INFO", "commandstats"});
    std::uint64_t n = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
      const std::string text(r->str, r->len);
      const auto at = text.find("cmdstat_fcall:calls=");
      if (at != std::string::npos) n = std::stoull(text.substr(at + 20));
    }
    (void)server_->command({"CONFIG", "RESETSTAT"});
    return n;
  }

  std::optional<test::RedisServer> server_;
  std::vector<RedisQueue> queues_;
  std::vector<RedisQueue*> ptrs_;
};

// The first queue in the order given that has a job gives it; the index
// says which. Fails if a later queue is served before an earlier one.
TEST_F(RedisClaimAny, TakesFromTheFirstQueueThatHasAJob) {
  Watchdog wd(60s);
  (void)queues_[2].push("c");
  (void)queues_[1].push("b");
  Job job;
  Queue::ClaimAnyResult r = RedisQueue::claim_any(ptrs_, job, 0ms);
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(job.text(), "b");
  EXPECT_EQ(job.incarnation, queues_[1].incarnation());
  EXPECT_EQ(queues_[1].ack(job.lease), LeaseStatus::ok);
  r = RedisQueue::claim_any(ptrs_, job, 0ms);
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(queues_[2].ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(RedisQueue::claim_any(ptrs_, job, 0ms).status, ClaimStatus::empty);
}

// A blocked claim_any sleeps in one BLPOP over every queue: a push to the
// last queue wakes it, and while nothing comes it makes a few calls a
// second, not a poll's dozens. Fails if the push is missed (the wait runs
// into its 30 s), or the claimer polls.
TEST_F(RedisClaimAny, ABlockedClaimSleepsOnEveryQueueAndWakesForAPushToAny) {
  Watchdog wd(60s);
  Job job;
  (void)fcalls();
  EXPECT_EQ(RedisQueue::claim_any(ptrs_, job, 2500ms).status, ClaimStatus::empty);
  // One round (3 FCALLs) per wake-up: at the start and once per 1 s slice.
  // Polling every 100 ms would make about 75.
  const std::uint64_t idle_calls = fcalls();
  EXPECT_LE(idle_calls, 30u) << "claim_any polls instead of sleeping in BLPOP";
  EXPECT_GE(idle_calls, 3u) << "INFO commandstats no longer counts FCALL: this check checks nothing";
  std::thread pusher([&] {
    std::this_thread::sleep_for(300ms);
    (void)queues_[2].push("late");
  });
  const Queue::ClaimAnyResult r = RedisQueue::claim_any(ptrs_, job, 30s);
  pusher.join();
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(job.text(), "late");
}

// The stop flag ends a blocked claim_any (interrupted); bad arguments are
// refused; a server that is gone is errc::unavailable, not a hang.
TEST_F(RedisClaimAny, StopsBadArgumentsAndADeadServer) {
  Watchdog wd(60s);
  Job job;
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(200ms);
    stop = true;
  });
  EXPECT_EQ(RedisQueue::claim_any(ptrs_, job, 30s, {.stop = &stop}).status, ClaimStatus::interrupted);
  stopper.join();

  std::vector<RedisQueue*> none;
  EXPECT_EQ(test::code_thrown([&] { (void)RedisQueue::claim_any(none, job, 0ms); }),
            make_error_code(errc::invalid_argument));
  std::vector<RedisQueue*> with_null = {ptrs_[0], nullptr};
  EXPECT_EQ(test::code_thrown([&] { (void)RedisQueue::claim_any(with_null, job, 0ms); }),
            make_error_code(errc::invalid_argument));
  std::error_code ec;
  (void)RedisQueue::claim_any(ptrs_, job, kMaxLease + 1ms, {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));

  server_->stop();
  (void)RedisQueue::claim_any(ptrs_, job, 5s, {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::unavailable)) << ec.message();
}

}  // namespace
}  // namespace jobring
