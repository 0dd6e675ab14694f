// Several queues per worker (issue 19): Queue::claim_any (strict order, one
// sleep on every queue's event word, woken by a push or an expiring lease in
// any of them, with and without futex_waitv) and Worker({a, b, c}, ...)
// strict and weighted. Each test says what would fail without it. Waits are
// bounded by watchdogs; the statistical test uses a fixed seed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "ring/testing.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;

Options opts(std::uint32_t capacity = 64) {
  return Options{.capacity = capacity, .max_payload = 32, .default_lease = 60s};
}

// Three queues, urgent → normal → bulk.
struct Three {
  explicit Three(std::uint32_t capacity = 64)
      : a(Queue::create(na, opts(capacity))),
        b(Queue::create(nb, opts(capacity))),
        c(Queue::create(nc, opts(capacity))) {}
  QueueName na{"qs-urgent"}, nb{"qs-normal"}, nc{"qs-bulk"};
  Queue a, b, c;
  std::vector<Queue*> all() { return {&a, &b, &c}; }
};

// The first queue in the order given that has a job wins. Fails if a later
// queue's job were taken while an earlier one had one.
TEST(ClaimAny, TakesFromTheFirstQueueThatHasAJob) {
  Three t;
  Job job;
  auto r = Queue::claim_any(t.all(), job, 0ms);
  EXPECT_EQ(r.status, ClaimStatus::empty);
  ASSERT_TRUE(t.c.push("bulk"));
  ASSERT_TRUE(t.b.push("normal"));
  r = Queue::claim_any(t.all(), job, 0ms);
  ASSERT_EQ(r.status, ClaimStatus::ok);
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(job.text(), "normal");
  EXPECT_EQ(t.b.ack(job.lease), LeaseStatus::ok);
  ASSERT_TRUE(t.a.push("urgent"));
  r = Queue::claim_any(t.all(), job, 0ms);
  EXPECT_EQ(r.index, 0u);
  EXPECT_EQ(job.text(), "urgent");
  r = Queue::claim_any(t.all(), job, 0ms);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(job.text(), "bulk");
}

// Every waiter's safety sleep made 60 s longer for a test (testing.hpp): a
// wake-up owed and missed then costs a minute, not 200 ms, so a bound of
// 20 s (generous on a busy machine) tells a prompt wake from a missed one.
// And the futex_waitv fallback as asked, reset at the end.
struct LongSafetySleep {
  explicit LongSafetySleep(bool fallback = false) {
    detail::set_safety_sleep_extra_for_testing(60s);
    detail::set_futex_waitv_missing_for_testing(fallback);
  }
  ~LongSafetySleep() {
    detail::set_safety_sleep_extra_for_testing(0ms);
    detail::set_futex_waitv_missing_for_testing(false);
  }
  LongSafetySleep(const LongSafetySleep&) = delete;
  LongSafetySleep& operator=(const LongSafetySleep&) = delete;
};
constexpr auto kPrompt = 20s;

// A claim blocked on three empty queues is woken by a push to the last of
// them from another process (one sleep on all three words), and by a lease
// running out in the middle one (its due time bounds the sleep), within
// kPrompt though a missed wake-up would now sleep a minute. With the
// fallback (no futex_waitv) too, which looks at every queue every 10 ms.
// Fails if the sleep watched only the first queue, or ignored the other
// queues' due times.
TEST(ClaimAny, ABlockedClaimWakesForAnyQueue) {
  test::Watchdog dog(240s);
  for (const bool fallback : {false, true}) {
    SCOPED_TRACE(fallback ? "fallback" : "futex_waitv");
    const LongSafetySleep long_sleep(fallback);
    Three t;
    std::atomic<int> got{-1};
    Job job;
    std::thread claimer([&] {
      const auto r = Queue::claim_any(t.all(), job, 50s);
      got = r.status == ClaimStatus::ok ? static_cast<int>(r.index) : -2;
    });
    std::this_thread::sleep_for(30ms);  // let it sleep (not needed for correctness)
    const auto pushed = std::chrono::steady_clock::now();
    const pid_t pusher = test::fork_child([&] { return Queue::open(t.nc).push("late") ? 0 : 1; });
    EXPECT_EQ(test::wait_child(pusher), 0);
    claimer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - pushed, kPrompt) << "the push did not wake the claim";
    EXPECT_EQ(got.load(), 2);
    EXPECT_EQ(job.text(), "late");

    // A lease of 300 ms in the middle queue, held by nobody who will ack it.
    ASSERT_TRUE(t.b.push("held"));
    ASSERT_TRUE(t.b.try_claim(test::with_lease(300ms)));
    const auto began = std::chrono::steady_clock::now();
    const auto r = Queue::claim_any(t.all(), job, 50s);
    EXPECT_LT(std::chrono::steady_clock::now() - began, kPrompt)
        << "the lease's due time did not end the sleep";
    ASSERT_EQ(r.status, ClaimStatus::ok);
    EXPECT_EQ(r.index, 1u);
    EXPECT_EQ(job.attempt, 2u);
  }
}

// A stop flag and interrupt_waits() end a blocked claim_any; bad arguments
// are errors. Fails if the sleep on several words could not be interrupted.
TEST(ClaimAny, StopsAndBadArguments) {
  test::Watchdog dog(60s);
  Three t;
  Job job;
  std::atomic<bool> stop{false};
  std::thread claimer([&] {
    const auto r = Queue::claim_any(t.all(), job, 50s, ClaimOptions{.stop = &stop});
    EXPECT_EQ(r.status, ClaimStatus::interrupted);
  });
  std::this_thread::sleep_for(20ms);
  stop = true;
  wake_waits();
  claimer.join();
  EXPECT_THROW((void)Queue::claim_any({}, job, 0ms), jobring::error);
  std::vector<Queue*> with_null{&t.a, nullptr};
  EXPECT_THROW((void)Queue::claim_any(with_null, job, 0ms), jobring::error);
  EXPECT_THROW((void)Queue::claim_any(t.all(), job, -1ms), jobring::error);
}

// Fills queue q with n jobs named after it.
void fill(Queue& q, int n, const std::string& tag) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(q.push(tag + std::to_string(i)));
}

// Strict: with every queue full, the urgent one is drained first, then the
// normal one, then bulk. Fails if the order were not strict.
TEST(WorkerQueues, StrictServesEachQueueOnlyWhenTheOnesBeforeAreEmpty) {
  test::Watchdog dog(60s);
  Three t;
  fill(t.c, 10, "c");
  fill(t.b, 10, "b");
  fill(t.a, 10, "a");
  std::string seen;
  Worker w({t.a, t.b, t.c},
           [&](const Job& job, JobContext& ctx) {
             seen += ctx.queue().name() == t.na.str() ? 'a' : ctx.queue().name() == t.nb.str() ? 'b' : 'c';
             EXPECT_EQ(job.text()[0], seen.back()) << "ctx.queue() is the job's queue";
             return Outcome::ack();
           },
           {.max_jobs = 30});
  const auto sum = w.run();
  EXPECT_EQ(sum.acked, 30u);
  EXPECT_EQ(seen, std::string(10, 'a') + std::string(10, 'b') + std::string(10, 'c'));
  EXPECT_EQ(t.a.stats().acked + t.b.stats().acked + t.c.stats().acked, 30u);
}

// Weighted 5:3:1 with every queue non-empty throughout: the claims split
// 5:3:1 within a tolerance (fixed seed: the same draws every run; the
// tolerance is over 6 standard deviations of the binomial counts). And the
// bulk queue is never starved. Fails with strict order (bulk would get 0)
// or with an unweighted draw (a third each).
TEST(WorkerQueues, WeightedSplitsClaimsByWeightAndStarvesNone) {
  test::Watchdog dog(120s);
  Three t(1024);
  fill(t.a, 1000, "a");
  fill(t.b, 1000, "b");
  fill(t.c, 1000, "c");
  constexpr int kClaims = 900;  // expected 500 / 300 / 100: no queue runs dry
  std::map<char, int> count;
  Worker w({t.a, t.b, t.c},
           [&](const Job& job, JobContext&) {
             ++count[job.text()[0]];
             return Outcome::ack();
           },
           {.max_jobs = kClaims, .weights = {5, 3, 1}, .seed = 12345});
  (void)w.run();
  EXPECT_NEAR(count['a'], 500, 90);
  EXPECT_NEAR(count['b'], 300, 85);
  EXPECT_NEAR(count['c'], 100, 60);
  EXPECT_GT(count['c'], 0);
}

// With weights, a queue that is empty gives its turn to the others (no
// idling while work waits), and a job that fails is released in its own
// queue, where max_attempts dead-letters it. Fails if the Worker released or
// acked in the wrong queue.
TEST(WorkerQueues, EmptyQueuesGiveWayAndEachJobEndsInItsOwnQueue) {
  test::Watchdog dog(60s);
  QueueName na("qs-w-a"), nb("qs-w-b");
  Queue a = Queue::create(na, opts());
  Queue b = Queue::create(nb, Options{.capacity = 8, .max_payload = 32, .max_attempts = 1});
  fill(b, 3, "b");
  Worker w({a, b}, [&](const Job&, JobContext&) { return Outcome::retry("no"); },
           {.max_jobs = 3, .weights = {100, 1}, .seed = 7});
  const auto sum = w.run();
  EXPECT_EQ(sum.dead, 3u);
  EXPECT_EQ(b.stats().dead, 3u);
  EXPECT_EQ(a.stats().dead, 0u);
}

// Bad Worker arguments: a queue twice, weights of the wrong count or out of
// range. Fails if such a Worker could be built.
TEST(WorkerQueues, BadArgumentsAreRefused) {
  Three t;
  auto h = [](const Job&, JobContext&) { return Outcome::ack(); };
  EXPECT_THROW(Worker({t.a, t.a}, h), jobring::error);
  EXPECT_THROW(Worker({t.a, t.b}, h, {.weights = {1}}), jobring::error);
  EXPECT_THROW(Worker({t.a, t.b}, h, {.weights = {1, 0}}), jobring::error);
  EXPECT_THROW(Worker(std::vector<std::reference_wrapper<Queue>>{}, h), jobring::error);
}

}  // namespace
}  // namespace jobring
