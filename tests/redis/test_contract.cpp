// The queue's contract (/work/shared/DESIGN.md), one suite over every
// backend: a typed test whose type parameter is the backend, so that the
// shared-memory Queue and the RedisQueue answer the same calls the same way
// and cannot drift. Each test names the guarantee (G1..G10) or the API
// contract it defends. Backend-specific behaviour is tested beside this
// file (test_redis_server.cpp; tests/ring/ for segments).
//
// Time: bounds are generous and one-sided ("not before the delay", "within
// 10 s"): the tests assert behaviour, never speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/interrupt.hpp"
#include "jobring/queue.hpp"
#include "jobring/redis_queue.hpp"
#include "redis/backends.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::Watchdog;

template <typename Backend>
class Contract : public ::testing::Test {
 protected:
  using Q = typename Backend::Q;

  void SetUp() override {
    if (const std::string why = Backend::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  }
  void TearDown() override {
    for (const auto& n : names_) Backend::remove(n);
  }
  Q make(const Options& o) {
    static int counter = 0;
    names_.push_back("contract." + std::to_string(::getpid()) + "." + std::to_string(counter++));
    return Backend::create(names_.back(), o);
  }
  Q other(const Q& q) { return Backend::open(q.name()); }  // a second handle: another worker

  std::vector<std::string> names_;
};

// The backends: redis/backends.hpp.
#ifdef JOBRING_CONTRACT_CLUSTER
using Backends = ::testing::Types<RedisCluster>;
#else
using Backends = ::testing::Types<Shm, Redis, AnyShm, AnyRedis>;
#endif
TYPED_TEST_SUITE(Contract, Backends, BackendNames);

ClaimOptions lease(milliseconds ms) {
  ClaimOptions o;
  o.lease = ms;
  return o;
}

// --- push, claim, ack -----------------------------------------------------------

// G2 + G6: what is pushed comes back whole, in push order; an acked job is gone.
TYPED_TEST(Contract, PushClaimAck) {
  auto q = this->make({.capacity = 8, .max_payload = 64});
  const PushResult a = q.push("first");
  ASSERT_TRUE(a);
  ASSERT_TRUE(q.push(std::string_view("sec\0nd", 6)));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "first");
  EXPECT_EQ(job.id, a.id);
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(job.lease.job, job.id);
  EXPECT_EQ(job.incarnation, q.incarnation());
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), std::string_view("sec\0nd", 6));
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::lease_lost);  // acked once, gone
}

// G1: a claimed job is hidden from every other claimer.
TYPED_TEST(Contract, ClaimHidesTheJobFromASecondClaimer) {
  auto q = this->make({.capacity = 4});
  auto q2 = this->other(q);
  ASSERT_TRUE(q.push("only"));
  Job mine, theirs;
  ASSERT_EQ(q.try_claim(mine), ClaimStatus::ok);
  EXPECT_EQ(q2.try_claim(theirs), ClaimStatus::empty);
  EXPECT_EQ(q.ack(mine.lease), LeaseStatus::ok);
}

// G3: a lease that runs out gives the job back, its attempt counted.
TYPED_TEST(Contract, AnExpiredLeaseReturnsTheJobWithTheAttemptCounted) {
  auto q = this->make({.capacity = 4});
  auto q2 = this->other(q);
  ASSERT_TRUE(q.push("job"));
  Job first, second;
  ASSERT_EQ(q.try_claim(first, lease(50ms)), ClaimStatus::ok);
  EXPECT_EQ(q2.try_claim(second), ClaimStatus::empty);
  std::this_thread::sleep_for(120ms);
  ASSERT_EQ(q2.claim(second, 5s), ClaimStatus::ok);
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.attempt, 2u);
  EXPECT_NE(second.lease.token, first.lease.token);
  EXPECT_EQ(q.stats().expired_total, 1u);
  EXPECT_EQ(q2.ack(second.lease), LeaseStatus::ok);
}

// G3, blocking: a claim asleep on a queue whose only job is leased wakes
// on its own when that lease runs out, and takes the job over.
TYPED_TEST(Contract, ABlockedClaimTakesOverALeaseWhenItRunsOut) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 4});
  auto q2 = this->other(q);
  ASSERT_TRUE(q.push("job"));
  Job first, second;
  ASSERT_EQ(q.try_claim(first, lease(300ms)), ClaimStatus::ok);
  const auto start = Clock::now();
  ASSERT_EQ(q2.claim(second, 20s), ClaimStatus::ok);
  EXPECT_GE(Clock::now() - start, 250ms);
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.attempt, 2u);
  EXPECT_EQ(q2.ack(second.lease), LeaseStatus::ok);
}

// Thread safety: one handle shared by threads that push, claim and ack at
// once; every job is acked exactly once.
TYPED_TEST(Contract, OneHandleSharedByThreads) {
  Watchdog dog(120s);
  constexpr int kThreads = 4, kPerThread = 100;
  auto q = this->make({.capacity = 64});
  std::vector<std::atomic<int>> acked(kThreads * kPerThread);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i)
        ASSERT_TRUE(q.push(std::to_string(t * kPerThread + i), PushOptions{.wait = 60s}));
    });
    threads.emplace_back([&] {
      Job job;
      while (done.load() < kThreads * kPerThread) {
        if (q.claim(job, 200ms) != ClaimStatus::ok) continue;
        const int index = std::stoi(std::string(job.text()));
        if (q.ack(job.lease) == LeaseStatus::ok) {
          acked[static_cast<std::size_t>(index)].fetch_add(1);
          done.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& a : acked) EXPECT_EQ(a.load(), 1);
  EXPECT_EQ(q.stats().acked, static_cast<std::uint64_t>(kThreads * kPerThread));
}

// G4: after a takeover the old holder's ack, release and extend are
// lease_lost and change nothing: the new owner's job is still there.
TYPED_TEST(Contract, AStaleAckAfterATakeoverIsLeaseLostAndChangesNothing) {
  auto q = this->make({.capacity = 4});
  auto q2 = this->other(q);
  ASSERT_TRUE(q.push("job"));
  Job old_job, new_job;
  ASSERT_EQ(q.try_claim(old_job, lease(50ms)), ClaimStatus::ok);
  std::this_thread::sleep_for(120ms);
  ASSERT_EQ(q2.claim(new_job, 5s, lease(30s)), ClaimStatus::ok);
  ASSERT_EQ(new_job.id, old_job.id);
  Lease stale = old_job.lease;
  EXPECT_EQ(q.ack(stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.extend(stale, 10s), LeaseStatus::lease_lost);
  const Stats s = q.stats();
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.acked, 0u);
  Job none;
  EXPECT_EQ(q.try_claim(none), ClaimStatus::empty);  // still held by the new owner
  EXPECT_EQ(q2.ack(new_job.lease), LeaseStatus::ok);
}

// API: extend moves the deadline and renews the token; the old token is stale.
TYPED_TEST(Contract, ExtendKeepsTheLeaseAndRenewsTheToken) {
  auto q = this->make({.capacity = 4});
  auto q2 = this->other(q);
  ASSERT_TRUE(q.push("job"));
  Job job, none;
  ASSERT_EQ(q.try_claim(job, lease(100ms)), ClaimStatus::ok);
  const Lease before = job.lease;
  ASSERT_EQ(q.extend(job, 30s), LeaseStatus::ok);
  EXPECT_NE(job.lease.token, before.token);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(q2.try_claim(none), ClaimStatus::empty);
  EXPECT_EQ(q.ack(before), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// API: release with a delay hides the job for at least the delay.
TYPED_TEST(Contract, ReleaseWithADelay) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 4});
  ASSERT_TRUE(q.push("job"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  const auto released = Clock::now();
  ASSERT_EQ(q.release(job.lease, 200ms), LeaseStatus::ok);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_EQ(q.stats().delayed, 1u);
  ASSERT_EQ(q.claim(job, 10s), ClaimStatus::ok);
  EXPECT_GE(Clock::now() - released, 200ms);
  EXPECT_EQ(job.attempt, 2u);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// API: a delayed push is not claimable before its delay; a blocked claim
// wakes for it on its own (no push or release to wake it).
TYPED_TEST(Contract, ADelayedPushComesDueAndWakesABlockedClaim) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 4});
  const auto pushed = Clock::now();
  ASSERT_TRUE(q.push("later", PushOptions{.delay = 300ms}));
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_EQ(q.stats().delayed, 1u);
  ASSERT_EQ(q.claim(job, 10s), ClaimStatus::ok);
  EXPECT_GE(Clock::now() - pushed, 300ms);
  EXPECT_EQ(job.text(), "later");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// API: max_attempts: the last failed attempt dead-letters the job with its
// error; requeue brings it back with its attempts reset.
TYPED_TEST(Contract, MaxAttemptsDeadLettersAndRequeueBringsItBack) {
  auto q = this->make({.capacity = 4, .max_attempts = 2});
  const PushResult pushed = q.push("fragile");
  ASSERT_TRUE(pushed);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.release(job.lease, 0ms, "first failure"), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.attempt, 2u);
  ASSERT_EQ(q.release(job.lease, 0ms, "second failure"), LeaseStatus::ok);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  const Stats s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.dead_lettered, 1u);
  const auto dead = q.peek(JobState::dead, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, pushed.id);
  EXPECT_EQ(dead[0].error, "second failure");
  EXPECT_TRUE(dead[0].failed_ms_ago.has_value());
  EXPECT_TRUE(q.requeue(pushed.id));
  EXPECT_FALSE(q.requeue(pushed.id));  // not dead any more
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// Dead jobs move to another queue (a dead-letter queue) with their payload,
// attempts and note, leaving room here; the redrive brings them back as new
// ready jobs. A job too large for the target stays, counted; a full target
// ends the move.
TYPED_TEST(Contract, MoveDeadToADeadLetterQueueAndRedriveBack) {
  auto q = this->make({.capacity = 8, .max_payload = 64, .max_attempts = 1});
  auto dlq = this->make({.capacity = 8, .max_payload = 64});
  std::vector<JobId> ids;
  for (const char* p : {"a", "b", "c"}) {
    const PushResult r = q.push(p);
    ASSERT_TRUE(r);
    ids.push_back(r.id);
    Job job;
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    ASSERT_EQ(q.release(job.lease, 0ms, std::string("broken ") + p), LeaseStatus::ok);
  }
  ASSERT_EQ(q.stats().dead, 3u);
  MoveResult r = q.move_dead(dlq, {.limit = 2});
  EXPECT_EQ(r.moved, 2u);
  r = q.move_dead(dlq);
  EXPECT_EQ(r.moved, 1u);
  EXPECT_FALSE(r.target_full);
  EXPECT_EQ(q.stats().dead, 0u);
  const auto dead = dlq.peek(JobState::dead, 10);
  ASSERT_EQ(dead.size(), 3u);
  std::set<std::string> notes, payloads;
  for (const auto& d : dead) {
    notes.insert(d.error);
    payloads.insert(std::string(reinterpret_cast<const char*>(d.payload.data()), d.payload.size()));
    EXPECT_EQ(d.attempts, 1u);
    EXPECT_TRUE(d.failed_ms_ago.has_value());
  }
  EXPECT_EQ(notes, (std::set<std::string>{"broken a", "broken b", "broken c"}));
  EXPECT_EQ(payloads, (std::set<std::string>{"a", "b", "c"}));
  EXPECT_EQ(q.move_dead(dlq).moved, 0u);  // nothing left: nothing doubled

  // The redrive: back as ready jobs, attempt 1 again.
  r = dlq.move_dead(q, {.as_ready = true});
  EXPECT_EQ(r.moved, 3u);
  EXPECT_EQ(dlq.stats().dead, 0u);
  std::set<std::string> back;
  Job job;
  while (q.try_claim(job) == ClaimStatus::ok) {
    EXPECT_EQ(job.attempt, 1u);
    back.insert(std::string(job.text()));
    EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  }
  EXPECT_EQ(back, (std::set<std::string>{"a", "b", "c"}));
}

TYPED_TEST(Contract, MoveDeadLeavesWhatTheTargetCannotTake) {
  auto q = this->make({.capacity = 8, .max_payload = 64, .max_attempts = 1});
  auto small = this->make({.capacity = 1, .max_payload = 4});
  for (const char* p : {"large payload", "ok1", "ok2"}) {
    ASSERT_TRUE(q.push(p));
    Job job;
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    ASSERT_EQ(q.release(job.lease, 0ms, "dead"), LeaseStatus::ok);
  }
  const MoveResult r = q.move_dead(small);
  EXPECT_EQ(r.too_large, 1u);
  EXPECT_EQ(r.moved, 1u);
  EXPECT_TRUE(r.target_full);
  EXPECT_EQ(q.stats().dead, 2u);  // the large one and the one that found no room
  EXPECT_EQ(small.stats().dead, 1u);
  EXPECT_EQ(test::code_thrown([&] { (void)q.move_dead(q); }), make_error_code(errc::invalid_argument));
}

// move_dead's target keys ("#moved/...") are the mover's alone: a producer
// that took one could make a move cut short look finished, so every
// backend refuses such a push and adds nothing.
TYPED_TEST(Contract, APushCannotTakeAMoveKey) {
  auto q = this->make({.capacity = 4});
  EXPECT_EQ(test::code_thrown([&] { (void)q.push("x", PushOptions{.key = "#moved/0/1.2"}); }),
            make_error_code(errc::invalid_argument));
  EXPECT_EQ(q.stats().ready, 0u);
  EXPECT_TRUE(q.push("x", PushOptions{.key = "moved/0/1.2"}));  // only the prefix is reserved
}

// G3 + max_attempts: a lease that runs out on its last attempt dead-letters
// the job (a crashed worker's attempt counts).
TYPED_TEST(Contract, AnExpiredLastAttemptIsDead) {
  auto q = this->make({.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("job"));
  Job job;
  ASSERT_EQ(q.try_claim(job, lease(30ms)), ClaimStatus::ok);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  const Stats s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(q.requeue_dead(), 1u);
  EXPECT_EQ(q.purge(), 1u);
  EXPECT_EQ(q.stats().ready, 0u);
}

// sweep: an expired lease goes back to ready without a claim; a last
// attempt goes to dead.
TYPED_TEST(Contract, SweepTakesExpiredLeasesBack) {
  auto q = this->make({.capacity = 4, .max_attempts = 2});
  ASSERT_TRUE(q.push("job"));
  Job job;
  ASSERT_EQ(q.try_claim(job, lease(30ms)), ClaimStatus::ok);
  std::this_thread::sleep_for(100ms);
  SweepResult r = q.sweep();
  EXPECT_EQ(r.expired, 1u);
  EXPECT_EQ(r.dead_lettered, 0u);
  EXPECT_EQ(q.stats().ready, 1u);
  ASSERT_EQ(q.try_claim(job, lease(30ms)), ClaimStatus::ok);
  EXPECT_EQ(job.attempt, 2u);
  std::this_thread::sleep_for(100ms);
  r = q.sweep();
  EXPECT_EQ(r.expired, 1u);
  EXPECT_EQ(r.dead_lettered, 1u);
  EXPECT_EQ(q.stats().dead, 1u);
  EXPECT_EQ(q.sweep().expired, 0u);
}

// De-duplication: a key names one job while it is in the queue and for the
// window after its ack; then a push with the key is a new job.
TYPED_TEST(Contract, ADeduplicationKeyHoldsForItsWindow) {
  auto q = this->make({.capacity = 8, .dedup_window = 300ms});
  const PushResult first = q.push("a", PushOptions{.key = "order-42"});
  ASSERT_TRUE(first);
  EXPECT_FALSE(first.duplicate);
  const PushResult again = q.push("b", PushOptions{.key = "order-42"});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.id, first.id);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), "order-42");
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const PushResult within = q.push("c", PushOptions{.key = "order-42"});
  EXPECT_TRUE(within.duplicate);
  EXPECT_EQ(within.id, first.id);
  std::this_thread::sleep_for(450ms);
  const PushResult after = q.push("d", PushOptions{.key = "order-42"});
  ASSERT_TRUE(after);
  EXPECT_FALSE(after.duplicate);
  EXPECT_NE(after.id, first.id);
  EXPECT_EQ(q.stats().duplicates, 2u);
}

// G7: a full queue answers full; a push that waits for room is woken by an
// ack in another handle (another process on another host).
TYPED_TEST(Contract, AFullQueueAnswersFullAndAWaitingPushIsWokenByAnAck) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 2});
  ASSERT_TRUE(q.push("1"));
  ASSERT_TRUE(q.push("2"));
  EXPECT_EQ(q.push("3").status, PushStatus::full);
  EXPECT_EQ(q.stats().free, 0u);
  auto q2 = this->other(q);
  std::thread acker([&] {
    std::this_thread::sleep_for(200ms);
    Job job;
    if (q2.try_claim(job) == ClaimStatus::ok) (void)q2.ack(job.lease);
  });
  const PushResult r = q.push("3", PushOptions{.wait = 20s});
  acker.join();
  EXPECT_EQ(r.status, PushStatus::ok);
}

// Blocking claim across processes: a claim asleep in one process is woken by
// a push from another (its own connection / segment handle).
TYPED_TEST(Contract, ABlockedClaimIsWokenByAPushFromAnotherProcess) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 4});
  const std::string name = q.name();
  const pid_t child = test::fork_child([&] {
    std::this_thread::sleep_for(200ms);
    auto mine = TypeParam::open(name);
    return mine.push("from the child") ? 0 : 1;
  });
  Job job;
  const ClaimStatus got = q.claim(job, 30s);
  EXPECT_EQ(test::wait_child(child), 0);
  ASSERT_EQ(got, ClaimStatus::ok);
  EXPECT_EQ(job.text(), "from the child");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// A stop flag ends a blocked claim, and a push waiting for room, with
// `interrupted` (shm: at once, by wake_waits(); Redis: within a second).
TYPED_TEST(Contract, AStopFlagEndsABlockedClaimAndAWaitingPush) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 1});
  std::atomic<bool> stop{false};
  auto stop_soon = [&] {
    return std::thread([&] {
      std::this_thread::sleep_for(100ms);
      stop.store(true);
      wake_waits();
    });
  };
  std::thread stopper = stop_soon();
  Job job;
  ClaimOptions claim_options;
  claim_options.stop = &stop;
  EXPECT_EQ(q.claim(job, 30s, claim_options), ClaimStatus::interrupted);
  stopper.join();
  stop.store(false);
  ASSERT_TRUE(q.push("fills it"));
  stopper = stop_soon();
  EXPECT_EQ(q.push("no room", PushOptions{.wait = 30s, .stop = &stop}).status, PushStatus::interrupted);
  stopper.join();
}

// A claim that waits gives up at the end of its wait, empty.
TYPED_TEST(Contract, AClaimThatWaitsInVainReturnsEmpty) {
  Watchdog dog(60s);
  auto q = this->make({.capacity = 4});
  Job job;
  const auto start = Clock::now();
  EXPECT_EQ(q.claim(job, 150ms), ClaimStatus::empty);
  EXPECT_GE(Clock::now() - start, 150ms);
}

// Batches: push_many, try_claim_many / claim_many, ack_many.
TYPED_TEST(Contract, Batches) {
  auto q = this->make({.capacity = 16});
  std::vector<std::string> texts;
  for (int i = 0; i < 10; ++i) texts.push_back("job " + std::to_string(i));
  std::vector<std::span<const std::byte>> payloads;
  for (const auto& t : texts) payloads.push_back(std::as_bytes(std::span(t.data(), t.size())));
  std::vector<JobId> ids(10);
  ASSERT_EQ(q.push_many(payloads, ids), 10u);
  EXPECT_EQ(std::set<JobId>(ids.begin(), ids.end()).size(), 10u);
  std::vector<Job> jobs(4);
  ASSERT_EQ(q.try_claim_many(jobs), 4u);
  EXPECT_EQ(jobs[0].text(), "job 0");
  EXPECT_EQ(jobs[3].text(), "job 3");
  std::vector<Job> rest(8);
  ASSERT_EQ(q.claim_many(rest, 1s), 6u);
  EXPECT_EQ(rest[5].text(), "job 9");
  std::vector<Lease> leases;
  for (const auto& j : jobs) leases.push_back(j.lease);
  for (std::size_t i = 0; i < 6; ++i) leases.push_back(rest[i].lease);
  leases.push_back(jobs[0].lease);  // twice: the second is lease_lost
  std::vector<LeaseStatus> results(leases.size());
  EXPECT_EQ(q.ack_many(leases, results), 10u);
  EXPECT_EQ(results.back(), LeaseStatus::lease_lost);
  EXPECT_EQ(results.front(), LeaseStatus::ok);
  // A batch into a nearly full queue pushes what fits.
  std::vector<std::span<const std::byte>> many(20, payloads[0]);
  EXPECT_EQ(q.push_many(many), 16u);
}

// Stats: gauges and totals after a known history.
TYPED_TEST(Contract, Stats) {
  auto q = this->make({.capacity = 8});
  ASSERT_TRUE(q.push("a"));
  ASSERT_TRUE(q.push("b"));
  ASSERT_TRUE(q.push("c", PushOptions{.delay = 60s}));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  const Stats s = q.stats();
  EXPECT_EQ(s.pushed, 3u);
  EXPECT_EQ(s.claimed, 2u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.ready, 0u);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.free, 6u);
  const auto delayed = q.peek(JobState::delayed, 10);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_GT(delayed[0].ms_until, 50'000);
  EXPECT_EQ(q.peek(JobState::leased, 10).size(), 1u);
  EXPECT_EQ(q.purge(PurgeWhat::delayed), 1u);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// Pause: claims find nothing while paused; pushes still go in.
TYPED_TEST(Contract, PauseAndResume) {
  auto q = this->make({.capacity = 4});
  EXPECT_TRUE(q.pause());
  EXPECT_FALSE(q.pause());
  ASSERT_TRUE(q.push("job"));
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_TRUE(q.resume());
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// give_back: back at once, the attempt not counted.
TYPED_TEST(Contract, GiveBackDoesNotCountTheAttempt) {
  auto q = this->make({.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("job"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.give_back(job.lease), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// Lifecycle: create of a name taken is already_exists; open_or_create with
// other options is options_mismatch; open of no queue is not_found.
TYPED_TEST(Contract, LifecycleErrors) {
  auto q = this->make({.capacity = 4});
  try {
    (void)TypeParam::create(q.name(), {.capacity = 4});
    ADD_FAILURE() << "create of an existing name succeeded";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::already_exists)) << e.what();
  }
  try {
    (void)TypeParam::open("contract.none." + std::to_string(::getpid()));
    ADD_FAILURE() << "open of no queue succeeded";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::not_found)) << e.what();
  }
  EXPECT_EQ(q.options().capacity, 4u);
}

}  // namespace
}  // namespace jobring
