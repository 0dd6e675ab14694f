// The Worker's contract (include/jobring/worker.hpp) on every backend: the
// behavioural cases of tests/runtime/test_worker.cpp, test_idempotent.cpp and
// test_queues.cpp that make sense on both, as one typed suite run over a
// shared-memory queue and a Redis queue (and, in a binary of its own,
// test_worker_contract_cluster.cpp, a Redis Cluster), all reached through
// AnyQueue — so the Worker, its hooks and idempotent() cannot drift between
// backends. (The shared-memory-only cases — signals, forged segments, the
// janitor — stay in tests/runtime/; what only Redis does — a server that
// dies or stalls — is in test_worker_redis.cpp.)
//
// Time: no test asserts that something happened fast; waits are bounded by
// tens of seconds for things expected in milliseconds, and a Watchdog fails
// a hung test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/idempotent.hpp"
#include "jobring/interrupt.hpp"
#include "jobring/worker.hpp"
#include "redis/backends.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::Watchdog;

template <typename Backend>
class WorkerContract : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = Backend::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    clear_interrupt();
  }
  void TearDown() override {
    clear_interrupt();
    queues_.clear();  // closed before removed
    for (const auto& n : names_) AnyQueue::remove(Backend::url(), n);
  }
  // A new queue under a unique name, removed after the test.
  AnyQueue& make(const Options& o = {}) {
    static int counter = 0;
    names_.push_back("wcontract." + std::to_string(::getpid()) + "." + std::to_string(counter++));
    return *queues_.emplace_back(
        std::make_unique<AnyQueue>(AnyQueue::create(Backend::url(), names_.back(), o)));
  }
  // A second handle on q: another worker's.
  AnyQueue other(const AnyQueue& q) { return AnyQueue::open(Backend::url(), q.name()); }

  std::vector<std::string> names_;
  std::vector<std::unique_ptr<AnyQueue>> queues_;
};

// The backends (redis/backends.hpp), each reached through AnyQueue at its url().
#ifdef JOBRING_WORKER_CONTRACT_CLUSTER
using Backends = ::testing::Types<RedisCluster>;
#else
using Backends = ::testing::Types<Shm, Redis>;
#endif
TYPED_TEST_SUITE(WorkerContract, Backends, BackendNames);

// Takes the handler's job away from it: gives the lease back, then claims
// the job on `queue` (another worker's handle) with a lease of `lease`.
Job steal(AnyQueue& queue, const JobContext& ctx, milliseconds lease = 1h) {
  for (;;) {
    if (queue.release(ctx.lease()) == LeaseStatus::ok) break;
  }
  Job thief;
  if (queue.try_claim(thief, {.lease = lease}) != ClaimStatus::ok) throw std::runtime_error("steal failed");
  return thief;
}

std::size_t left_in(const AnyQueue& q) {
  const Stats st = q.stats();
  return st.ready + st.leased + st.delayed + st.dead;
}

// ===========================================================================
// The ack path, hooks, the summary, the context
// ===========================================================================

// Every job is handled once and acked; on_claim and on_done see each; the
// context tells the job's id, attempt and queue; JobContext::queue() is the
// shared-memory Queue, and refuses (not_supported) on another backend.
// Fails if a job is not acked, is handled twice, or a count is off.
TYPED_TEST(WorkerContract, AckPathAcksEveryJobAndReportsIt) {
  Watchdog wd(60s);
  AnyQueue& q = this->make({.capacity = 8});
  std::set<JobId> pushed;
  for (const char* p : {"a", "b", "c"}) pushed.insert(q.push(p).id);
  std::vector<std::string> texts;
  std::set<JobId> seen;
  int claims = 0;
  std::vector<JobResult> results;
  bool context_ok = true;
  bool queue_ok = true;
  WorkerOptions o{.max_jobs = 3};
  o.hooks.on_claim = [&](const Job&) { ++claims; };
  o.hooks.on_done = [&](const Job&, const JobReport& r) { results.push_back(r.result); };
  Worker worker(
      q,
      [&](const Job& job, JobContext& ctx) {
        texts.emplace_back(job.text());
        seen.insert(job.id);
        context_ok &= ctx.id() == job.id && ctx.attempt() == 1 && job.attempt == 1 && !ctx.last_attempt() &&
                      !ctx.stopping() && !ctx.cancelled() && ctx.lease() == job.lease && ctx.key().empty() &&
                      &ctx.any_queue() == &q && job.incarnation == q.incarnation();
        if (q.backend() == Backend::shm) {
          queue_ok &= &ctx.queue() == q.shm();
        } else {
          try {
            (void)ctx.queue();
            queue_ok = false;
          } catch (const error& e) {
            queue_ok &= e.code() == make_error_code(errc::not_supported);
          }
        }
        return Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(seen, pushed);
  EXPECT_TRUE(context_ok);
  EXPECT_TRUE(queue_ok);
  EXPECT_EQ(claims, 3);
  EXPECT_EQ(results, std::vector<JobResult>(3, JobResult::acked));
  EXPECT_EQ(s.claimed, 3u);
  EXPECT_EQ(s.acked, 3u);
  EXPECT_EQ(s.retried + s.dead + s.lease_lost + s.abandoned + s.errors + s.unconfirmed + s.backend_errors,
            0u);
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(left_in(q), 0u);
}

// ===========================================================================
// Retry, backoff, dead-lettering, drop, skip
// ===========================================================================

// Outcome::retry releases with the backoff (Jitter::none: base on attempt 1):
// the job is delayed, not claimable. Fails if the release has no delay or acks.
TYPED_TEST(WorkerContract, RetryReleasesWithBackoffAndHidesTheJob) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  const JobId id = q.push("j").id;
  std::vector<JobReport> reports;
  WorkerOptions o{.backoff = {.base = 1h, .cap = 2h, .jitter = Jitter::none}, .max_jobs = 1};
  o.hooks.on_done = [&](const Job&, const JobReport& r) { reports.push_back(r); };
  Worker worker(
      q, [](const Job&, JobContext&) { return Outcome::retry(); }, o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.retried, 1u);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result, JobResult::retried);
  EXPECT_EQ(reports[0].delay, 1h);
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  const auto delayed = q.peek(JobState::delayed);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_EQ(delayed[0].id, id);
}

// A throwing handler: on_error is called with what(), the job is retried.
// Fails if an exception escapes run() or the job is acked.
TYPED_TEST(WorkerContract, AnExceptionIsReportedAndRetried) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  (void)q.push("j");
  std::string what;
  WorkerOptions o{.backoff = {.base = 1h, .cap = 1h}, .max_jobs = 1};
  o.hooks.on_error = [&](const Job&, std::string_view w) { what = w; };
  Worker worker(
      q, [](const Job&, JobContext&) -> Outcome { throw std::runtime_error("disk full"); }, o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.retried, 1u);
  EXPECT_EQ(what, "disk full");
  EXPECT_EQ(q.peek(JobState::delayed).size(), 1u);
}

// retry_after(d) releases with exactly d; drop and skip ack. Fails if one
// outcome is carried out as another.
TYPED_TEST(WorkerContract, RetryAfterDropAndSkip) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  const JobId later = q.push("later").id;
  (void)q.push("drop");
  (void)q.push("skip");
  std::map<std::string, JobReport> reports;
  WorkerOptions o{.max_jobs = 3};
  o.hooks.on_done = [&](const Job& job, const JobReport& r) { reports[std::string(job.text())] = r; };
  Worker worker(
      q,
      [](const Job& job, JobContext&) {
        if (job.text() == "later") return Outcome::retry_after(1h);
        return job.text() == "drop" ? Outcome::drop() : Outcome::skip();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.retried, 1u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.skipped, 1u);
  EXPECT_EQ(reports["later"].result, JobResult::retried);
  EXPECT_EQ(reports["later"].delay, 1h);
  EXPECT_EQ(reports["drop"].result, JobResult::dropped);
  EXPECT_EQ(reports["skip"].result, JobResult::skipped);
  const auto delayed = q.peek(JobState::delayed);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_EQ(delayed[0].id, later);
  EXPECT_EQ(left_in(q), 1u);
}

// A job failing on every attempt ends dead after the queue's max_attempts,
// with the reason; the handler is told its last attempt. Fails if the Worker
// retries past max_attempts, or deletes the job.
TYPED_TEST(WorkerContract, DeadAfterMaxAttempts) {
  Watchdog wd(60s);
  AnyQueue& q = this->make({.max_attempts = 2});
  const JobId id = q.push("poison").id;
  std::vector<JobResult> results;
  std::vector<bool> last;
  WorkerOptions o{.backoff = {.base = 0ms, .cap = 0ms}, .max_jobs = 2};
  o.hooks.on_done = [&](const Job&, const JobReport& r) { results.push_back(r.result); };
  Worker worker(
      q,
      [&](const Job&, JobContext& ctx) {
        last.push_back(ctx.last_attempt());
        return Outcome::retry("no such customer");
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(results, (std::vector<JobResult>{JobResult::retried, JobResult::dead}));
  EXPECT_EQ(last, (std::vector<bool>{false, true}));
  EXPECT_EQ(s.dead, 1u);
  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, id);
  EXPECT_EQ(dead[0].error, "no such customer");
}

// ===========================================================================
// Leases
// ===========================================================================

// A handler that takes three leases keeps its job: the heartbeat extends
// it, no other worker can claim it meanwhile, and the ack goes through with
// the latest token. Fails if an extension is missed or the ack uses a stale token.
TYPED_TEST(WorkerContract, ExtensionKeepsAJobLongerThanItsLease) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  (void)q.push("long");
  AnyQueue q2 = this->other(q);
  bool hidden = true;
  Worker worker(q,
                [&](const Job&, JobContext& ctx) {
                  for (int i = 0; i < 6; ++i) {
                    if (!ctx.sleep_for(500ms)) return Outcome::retry();
                    Job job;
                    hidden &= q2.try_claim(job) == ClaimStatus::empty;
                  }
                  return Outcome::ack();
                },
                {.lease = 900ms, .max_jobs = 1});
  const WorkerSummary s = worker.run();
  EXPECT_TRUE(hidden) << "another worker claimed the job while it was extended";
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.lease_lost, 0u);
  EXPECT_EQ(left_in(q), 0u);
}

// Lease lost while the handler runs (another worker has the job): the
// handler sees it, on_lease_lost is called once, nothing is acked, the new
// owner's lease is untouched. Fails if the Worker acks a job it lost.
TYPED_TEST(WorkerContract, LeaseLostIsSeenReportedAndNotAcked) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  (void)q.push("j");
  AnyQueue q2 = this->other(q);
  std::atomic<int> lost_hooks{0};
  Job thief;
  bool saw_lost = false;
  WorkerOptions o{.lease = 600ms, .max_jobs = 1};
  o.hooks.on_lease_lost = [&](const Job&) { lost_hooks.fetch_add(1); };
  Worker worker(
      q,
      [&](const Job&, JobContext& ctx) {
        thief = steal(q2, ctx);
        saw_lost = !ctx.sleep_for(20s) && ctx.lease_lost() && ctx.cancelled();
        return Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_TRUE(saw_lost);
  EXPECT_EQ(lost_hooks.load(), 1);
  EXPECT_EQ(s.lease_lost, 1u);
  EXPECT_EQ(s.acked, 0u);
  EXPECT_EQ(q2.ack(thief.lease), LeaseStatus::ok) << "the Worker touched the thief's lease";
}

// ===========================================================================
// Stopping
// ===========================================================================

// request_stop() during a job: the handler sees stopping(), finishes within
// the grace period, its ack goes through, and nothing more is claimed.
TYPED_TEST(WorkerContract, GracefulStopLetsTheJobFinish) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  (void)q.push("first");
  (void)q.push("second");
  std::atomic<bool> started{false};
  Worker worker(q,
                [&](const Job&, JobContext& ctx) {
                  started = true;
                  (void)ctx.sleep_for(30s);  // returns at the stop
                  return ctx.stopping() ? Outcome::ack() : Outcome::retry();
                },
                {.grace = 30s});
  WorkerSummary s;
  std::thread t([&] { s = worker.run(); });
  while (!started) std::this_thread::sleep_for(5ms);
  worker.request_stop();
  t.join();
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.claimed, 1u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(left_in(q), 1u);
}

// stop_now(): the job in hand is released at once (attempt counted), the
// handler sees abandoned(), its result is discarded, and another worker can
// claim the job straight away. Fails if the job stays leased or is acked.
TYPED_TEST(WorkerContract, StopNowAbandonsTheJobToAnotherWorker) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  const JobId id = q.push("j").id;
  AnyQueue q2 = this->other(q);
  std::atomic<bool> started{false};
  std::atomic<int> abandon_hooks{0};
  WorkerOptions o{.lease = 1h, .grace = 1h};
  o.hooks.on_abandon = [&](const Job&) { abandon_hooks.fetch_add(1); };
  Worker worker(
      q,
      [&](const Job&, JobContext& ctx) {
        started = true;
        while (!ctx.abandoned()) std::this_thread::sleep_for(5ms);
        return Outcome::ack();
      },
      o);
  WorkerSummary s;
  std::thread t([&] { s = worker.run(); });
  while (!started) std::this_thread::sleep_for(5ms);
  worker.stop_now();
  t.join();
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(s.acked, 0u);
  EXPECT_EQ(abandon_hooks.load(), 1);
  Job job;
  ASSERT_EQ(q2.try_claim(job), ClaimStatus::ok) << "the abandoned job is not back in the queue";
  EXPECT_EQ(job.id, id);
  EXPECT_EQ(job.attempt, 2u);
  EXPECT_EQ(q2.ack(job.lease), LeaseStatus::ok);
}

// ===========================================================================
// Threads, max_jobs, idle_exit
// ===========================================================================

// threads = 3: three jobs are handled at the same time. Fails if the
// handler threads take jobs one after the other.
TYPED_TEST(WorkerContract, ThreadsRunJobsAtOnce) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  for (int i = 0; i < 3; ++i) (void)q.push("j");
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::set<unsigned> indexes;
  std::mutex mu;
  Worker worker(q,
                [&](const Job&, JobContext& ctx) {
                  {
                    std::lock_guard lock(mu);
                    indexes.insert(ctx.thread_index());
                  }
                  const int now = inside.fetch_add(1) + 1;
                  int seen = most.load();
                  while (now > seen && !most.compare_exchange_weak(seen, now)) {
                  }
                  const auto until = Clock::now() + 20s;  // until all three are in (or give up)
                  while (most.load() < 3 && Clock::now() < until) std::this_thread::sleep_for(2ms);
                  inside.fetch_sub(1);
                  return Outcome::ack();
                },
                {.threads = 3, .max_jobs = 3});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(most.load(), 3);
  EXPECT_EQ(indexes, (std::set<unsigned>{0, 1, 2}));
  EXPECT_EQ(s.acked, 3u);
}

// max_jobs ends run() after that many claims, leaving the rest; idle_exit
// ends it once the queue has been empty that long. Fails if either limit is
// ignored (the test then hangs into its watchdog) or overshot.
TYPED_TEST(WorkerContract, MaxJobsAndIdleExit) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  for (int i = 0; i < 5; ++i) (void)q.push("j");
  auto ack = [](const Job&, JobContext&) { return Outcome::ack(); };
  {
    Worker worker(q, ack, {.max_jobs = 2});
    const WorkerSummary s = worker.run();
    EXPECT_EQ(s.claimed, 2u);
    EXPECT_FALSE(s.stopped);
  }
  EXPECT_EQ(left_in(q), 3u);
  Worker worker(q, ack, {.idle_exit = 300ms});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 3u);
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(left_in(q), 0u);
}

// ===========================================================================
// Several queues
// ===========================================================================

// Strict priority: each queue is served only while the ones before it are
// empty; each job is acked in its own queue. Fails on a wrong order or an
// ack sent to the wrong queue.
TYPED_TEST(WorkerContract, SeveralQueuesStrictPriority) {
  Watchdog wd(60s);
  AnyQueue& a = this->make();
  AnyQueue& b = this->make();
  AnyQueue& c = this->make();
  for (AnyQueue* x : {&c, &b, &a}) {
    (void)x->push("1");
    (void)x->push("2");
  }
  std::vector<std::string> order;
  Worker worker({c, b, a},
                [&](const Job& job, JobContext& ctx) {
                  order.push_back(ctx.any_queue().name() + "/" + std::string(job.text()));
                  return Outcome::ack();
                },
                {.max_jobs = 6});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 6u);
  EXPECT_EQ(order, (std::vector<std::string>{c.name() + "/1", c.name() + "/2", b.name() + "/1",
                                             b.name() + "/2", a.name() + "/1", a.name() + "/2"}));
  for (AnyQueue* x : {&a, &b, &c}) EXPECT_EQ(left_in(*x), 0u) << x->name();
}

// Weighted: with both queues full, claims split by weight (3 : 1) and the
// lighter queue is not starved. Bounds are loose: the draw is random.
TYPED_TEST(WorkerContract, SeveralQueuesWeighted) {
  Watchdog wd(60s);
  AnyQueue& heavy = this->make({.capacity = 256});
  AnyQueue& light = this->make({.capacity = 256});
  for (int i = 0; i < 60; ++i) {
    (void)heavy.push("h");
    (void)light.push("l");
  }
  int from_heavy = 0;
  int from_light = 0;
  Worker worker({heavy, light},
                [&](const Job& job, JobContext&) {
                  ++(job.text() == "h" ? from_heavy : from_light);
                  return Outcome::ack();
                },
                {.max_jobs = 60, .weights = {3, 1}, .seed = 42});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 60u);
  EXPECT_GT(from_heavy, from_light);
  EXPECT_GT(from_light, 0);
}

// ===========================================================================
// idempotent()
// ===========================================================================

// A DoneRecordStore in memory (a table in the user's database would do).
struct MemoryStore {
  std::mutex mu;
  std::set<std::string> keys;
  bool contains(std::string_view key) {
    std::lock_guard lock(mu);
    return keys.count(std::string(key)) != 0;
  }
  void mark_done(std::string_view key) {
    std::lock_guard lock(mu);
    keys.emplace(key);
  }
};

// The idempotent consumer on both backends: a worker does the side effect
// and records it, but its ack is lost (its lease was taken over); the job
// comes back and the next Worker skips it. The default done key carries the
// queue's incarnation and the job id. Fails if the side effect runs twice,
// or the redelivered job is not acked.
TYPED_TEST(WorkerContract, IdempotentSkipsAJobRedeliveredAfterALostAck) {
  Watchdog wd(60s);
  AnyQueue& q = this->make();
  const JobId id = q.push("charge 42").id;
  AnyQueue q2 = this->other(q);
  MemoryStore store;
  int effects = 0;
  {
    Worker worker(q,
                  idempotent(store,
                             [&](const Job&, JobContext& ctx) {
                               ++effects;
                               (void)steal(q2, ctx, 300ms);  // the ack will be lost; the thief never acks
                               return Outcome::ack();
                             }),
                  {.lease = 1h, .max_jobs = 1});
    const WorkerSummary s = worker.run();
    EXPECT_EQ(s.lease_lost, 1u);
  }
  char key[64];
  std::snprintf(key, sizeof key, "#%016llx.%llu", static_cast<unsigned long long>(q.incarnation()),
                static_cast<unsigned long long>(id));
  EXPECT_TRUE(store.contains(key)) << key;
  std::vector<JobReport> reports;
  WorkerOptions o{.max_jobs = 1};
  o.hooks.on_done = [&](const Job&, const JobReport& r) { reports.push_back(r); };
  Worker worker(q,
                idempotent(store,
                           [&](const Job&, JobContext&) {
                             ++effects;
                             return Outcome::ack();
                           }),
                o);
  const WorkerSummary s = worker.run();  // waits for the thief's lease to run out
  EXPECT_EQ(effects, 1) << "the side effect ran again";
  EXPECT_EQ(s.skipped, 1u);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result, JobResult::skipped);
  EXPECT_EQ(left_in(q), 0u);
}

}  // namespace
}  // namespace jobring
