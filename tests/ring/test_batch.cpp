// Batch operations (issue 3): push_many, try_claim_many, claim_many,
// ack_many. Each must keep every guarantee of the single operation it
// batches — order and ids (guarantee 6), all-or-nothing argument checks,
// "full" as a partial count, distinct jobs and no double claim (guarantee 1),
// fencing per lease (guarantee 4), waking across processes. The batch calls
// under random SIGKILLs: torture/test_batch_torture.cpp.
//
// Children never use gtest assertions: they report through exit codes and
// MAP_SHARED objects; the parent asserts. The tests hold with or without a
// janitor sweeping the queues (guarantee 8).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;
using test::with_delay;
using test::with_lease;
using test::with_wait;

using jobring::test::now_ns;
std::int64_t ms_since(std::int64_t from_ns) { return (now_ns() - from_ns) / 1'000'000; }

// Byte views of strings, for push_many. The strings must outlive the views.
struct Payloads {
  std::vector<std::string> text;
  std::vector<std::span<const std::byte>> views;

  explicit Payloads(std::vector<std::string> t) : text(std::move(t)) {
    for (const std::string& s : text)
      views.push_back(std::as_bytes(std::span<const char>(s.data(), s.size())));
  }
  [[nodiscard]] std::span<const std::span<const std::byte>> all() const { return views; }
};

std::vector<std::string> numbered(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Claims every job that is claimable now, one at a time, and acks it; returns their texts in claim order.
std::vector<std::string> drain_texts(Queue& q) {
  std::vector<std::string> out;
  while (auto job = q.try_claim()) {
    out.emplace_back(job->text());
    EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  }
  return out;
}

// ===========================================================================
// push_many
// ===========================================================================

// Guarantee 6 and job ids: push_many of ten payloads returns ten, gives each
// a distinct id in push order, and the jobs are claimed in that order under
// those ids with those payloads. Fails if a batch reorders, drops or
// mislabels jobs.
TEST(BatchPush, KeepsOrderAndIds) {
  Watchdog dog(30s, "BatchPush.KeepsOrderAndIds");
  QueueName name("b-order");
  auto q = Queue::create(name.str(), Options{.capacity = 16, .max_payload = 64});
  ASSERT_TRUE(q.push("before"));
  const Payloads p(numbered("job-", 10));
  std::array<JobId, 10> ids{};
  ASSERT_EQ(q.push_many(p.all(), ids), 10u);
  for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_GT(ids[i], ids[i - 1]) << "ids must follow push order";

  auto first = q.try_claim();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->text(), "before");
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto job = q.try_claim();
    ASSERT_TRUE(job.has_value()) << "job " << i;
    EXPECT_EQ(job->id, ids[i]);
    EXPECT_EQ(job->text(), p.text[i]);
    EXPECT_EQ(job->attempt, 1u);
  }
  EXPECT_FALSE(q.try_claim().has_value());
  EXPECT_EQ(q.stats().pushed, 11u);

  // An ids span shorter than the batch is filled as far as it goes.
  std::array<JobId, 2> few{};
  ASSERT_EQ(q.push_many(p.all().first(4), few), 4u);
  EXPECT_GT(few[0], ids[9]);
  EXPECT_GT(few[1], few[0]);
  // An empty batch pushes nothing.
  EXPECT_EQ(q.push_many({}), 0u);
  EXPECT_EQ(q.stats().pushed, 15u);
}

// "A full queue answers full" (guarantee 7) for batches: push_many into a
// queue with three free slots pushes the first three payloads, returns 3,
// fills ids[0..3) only, and the queue holds exactly those three, in order.
// Into a full queue it returns 0. Around the ring's end too (wrap-around).
// Fails if a batch overwrites an occupied slot, pushes out of order, or
// reports a wrong count.
TEST(BatchPush, PartialWhenFullReturnsCount) {
  Watchdog dog(30s, "BatchPush.PartialWhenFullReturnsCount");
  QueueName name("b-partial");
  auto q = Queue::create(name.str(), Options{.capacity = 4, .max_payload = 64});
  // Move the cursors near the end of the ring, so that the batch wraps.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.push("old"));
    auto job = q.try_claim();
    ASSERT_TRUE(job.has_value());
    ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);
  }
  ASSERT_TRUE(q.push("resident"));
  const Payloads p(numbered("p", 6));
  std::array<JobId, 6> ids{};
  ids.fill(777);
  ASSERT_EQ(q.push_many(p.all(), ids), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_NE(ids[i], 777u);
  for (std::size_t i = 3; i < 6; ++i)
    EXPECT_EQ(ids[i], 777u) << "ids of payloads not pushed must be untouched";
  EXPECT_EQ(q.push_many(p.all(), ids), 0u);
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 4u);
  EXPECT_EQ(s.free, 0u);
  EXPECT_EQ(drain_texts(q), (std::vector<std::string>{"resident", "p0", "p1", "p2"}));
}

// Argument checks are all-or-nothing: one payload over max_payload anywhere
// in the batch throws error(payload_too_large) before anything is pushed; a
// delay or wait out of range throws invalid_argument, also before. Fails if a
// batch pushes its head and then throws on its tail.
TEST(BatchPush, BadArgumentThrowsBeforePushingAnything) {
  Watchdog dog(30s, "BatchPush.BadArgumentThrowsBeforePushingAnything");
  QueueName name("b-throw");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  const Payloads p({"ok-1", "ok-2", std::string(65, 'x'), "ok-3"});
  try {
    (void)q.push_many(p.all());
    ADD_FAILURE() << "push_many with a payload of 65 bytes (max 64) did not throw";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::payload_too_large)) << e.what();
  }
  const Payloads good({"a", "b"});
  PushOptions too_long;
  too_long.delay = kMaxLease + 1ms;
  PushOptions negative_wait;
  negative_wait.wait = -1ms;
  for (const PushOptions& po : {too_long, negative_wait}) {
    try {
      (void)q.push_many(good.all(), {}, po);
      ADD_FAILURE() << "push_many with an out-of-range delay or wait did not throw";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), make_error_code(errc::invalid_argument)) << e.what();
    }
  }
  const Stats s = q.stats();
  EXPECT_EQ(s.pushed, 0u);
  EXPECT_EQ(s.free, 8u);
  EXPECT_FALSE(q.try_claim().has_value());
  // Exactly max_payload is fine.
  const Payloads edge({std::string(64, 'y')});
  EXPECT_EQ(q.push_many(edge.all()), 1u);
}

// Delayed batches: push_many with a delay hides every job of the batch until
// it is due (guarantee 5 for the rest: an undelayed job pushed after them is
// claimable at once); a claim_many waiting for them returns them not before
// the delay, in push order.
TEST(BatchPush, DelayAppliesToTheWholeBatch) {
  Watchdog dog(30s, "BatchPush.DelayAppliesToTheWholeBatch");
  QueueName name("b-delay");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  const Payloads p(numbered("d", 3));
  const std::int64_t t0 = now_ns();
  ASSERT_EQ(q.push_many(p.all(), {}, with_delay(300ms)), 3u);
  ASSERT_TRUE(q.push("now"));
  std::array<Job, 4> jobs;
  ASSERT_EQ(q.try_claim_many(jobs), 1u);
  EXPECT_EQ(jobs[0].text(), "now");
  EXPECT_EQ(q.stats().delayed, 3u);

  std::vector<std::string> got;
  while (got.size() < 3 && ms_since(t0) < 20'000) {
    const std::size_t n = q.claim_many(jobs, 20s);
    if (got.empty() && n > 0) {
      EXPECT_GE(ms_since(t0), 299) << "a delayed batch was handed out early";
    }
    for (std::size_t i = 0; i < n; ++i) got.emplace_back(jobs[i].text());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"d0", "d1", "d2"}));
}

// Backpressure for batches across processes: a producer process whose
// push_many (wait 20 s) finds the queue full waits, is woken by acks of a
// worker in another process, and pushes the whole batch, in order; with a
// short wait and nobody acking it returns the partial count after the wait.
TEST(BatchPush, WaitsForRoomAcrossProcesses) {
  Watchdog dog(60s, "BatchPush.WaitsForRoomAcrossProcesses");
  QueueName name("b-room");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  ASSERT_TRUE(q.push("r0"));
  ASSERT_TRUE(q.push("r1"));
  test::SharedObject<std::atomic<long>> pushed;
  pushed->store(-1);
  const pid_t producer = test::spawn_tied([&] {
    auto pq = Queue::open(name.str());
    const Payloads p(numbered("n", 4));
    pushed->store(static_cast<long>(pq.push_many(p.all(), {}, with_wait(20s))));
    return 0;
  });
  ASSERT_GT(producer, 0);

  std::vector<std::string> got;
  Job job;
  while (got.size() < 6) {
    const ClaimStatus st = q.claim(job, 20s);
    if (st != ClaimStatus::ok) break;
    got.emplace_back(job.text());
    ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  }
  ASSERT_EQ(test::wait_child(producer), 0);
  EXPECT_EQ(pushed->load(), 4);
  EXPECT_EQ(got, (std::vector<std::string>{"r0", "r1", "n0", "n1", "n2", "n3"}));

  // One free slot, three payloads, nobody acking: one goes in, after the wait.
  ASSERT_TRUE(q.push("stays"));
  const Payloads p(numbered("late", 3));
  const std::int64_t t0 = now_ns();
  EXPECT_EQ(q.push_many(p.all(), {}, with_wait(300ms)), 1u);
  EXPECT_GE(ms_since(t0), 300);
  EXPECT_LT(ms_since(t0), 10'000);
  EXPECT_EQ(drain_texts(q), (std::vector<std::string>{"stays", "late0"}));
}

// ===========================================================================
// try_claim_many / claim_many
// ===========================================================================

// Guarantees 1 and 6 for batches: try_claim_many returns up to N distinct
// jobs (distinct ids, slots and leases), oldest first, each hidden from every
// later claim; it returns fewer when fewer are ready, and 0 when none are.
TEST(BatchClaim, TryClaimManyReturnsDistinctJobsInFifoOrder) {
  Watchdog dog(30s, "BatchClaim.TryClaimManyReturnsDistinctJobsInFifoOrder");
  QueueName name("b-claim");
  auto q = Queue::create(name.str(), Options{.capacity = 16, .max_payload = 64});
  const Payloads p(numbered("j", 10));
  std::array<JobId, 10> ids{};
  ASSERT_EQ(q.push_many(p.all(), ids), 10u);

  std::array<Job, 4> four;
  ASSERT_EQ(q.try_claim_many(four, with_lease(60s)), 4u);
  std::array<Job, 10> rest;
  ASSERT_EQ(q.try_claim_many(rest, with_lease(60s)), 6u);
  EXPECT_EQ(q.try_claim_many(rest), 0u);

  std::vector<const Job*> all;
  for (const Job& j : four) all.push_back(&j);
  for (std::size_t i = 0; i < 6; ++i) all.push_back(&rest[i]);
  std::set<JobId> seen_ids;
  std::set<std::uint32_t> seen_slots;
  std::set<std::string> seen_leases;  // a token is a slot's state word: unique only with its slot
  for (std::size_t i = 0; i < all.size(); ++i) {
    const Job& j = *all[i];
    EXPECT_EQ(j.id, ids[i]) << "claim order differs from push order at " << i;
    EXPECT_EQ(j.text(), p.text[i]);
    EXPECT_EQ(j.attempt, 1u);
    EXPECT_EQ(j.lease.job, j.id);
    EXPECT_GT(j.deadline, std::chrono::steady_clock::now() + 30s);
    seen_ids.insert(j.id);
    seen_slots.insert(j.lease.slot);
    seen_leases.insert(j.lease.to_string());
  }
  EXPECT_EQ(seen_ids.size(), 10u);
  EXPECT_EQ(seen_slots.size(), 10u);
  EXPECT_EQ(seen_leases.size(), 10u);
  const Stats s = q.stats();
  EXPECT_EQ(s.leased, 10u);
  EXPECT_EQ(s.claimed, 10u);
  // Every lease of the batch works on its own.
  for (const Job* j : all) EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().free, 16u);
}

// Guarantee 5 for batches: a delayed job, a job under a valid lease and a
// dead job in front of ready ones do not stop try_claim_many from taking the
// ready ones behind them; an expired lease is taken over (T5, attempt 2).
TEST(BatchClaim, SkipsHiddenJobsAndTakesOverExpiredLeases) {
  Watchdog dog(30s, "BatchClaim.SkipsHiddenJobsAndTakesOverExpiredLeases");
  QueueName name("b-hol");
  Options o{.capacity = 8, .max_payload = 64, .max_attempts = 1};
  auto q = Queue::create(name.str(), o);
  ASSERT_TRUE(q.push("dead"));
  auto d = q.try_claim();
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ(q.release(d->lease), LeaseStatus::ok);  // max_attempts 1: dead
  ASSERT_TRUE(q.push("delayed", with_delay(60s)));
  ASSERT_TRUE(q.push("held"));
  auto held = q.try_claim(with_lease(60s));
  ASSERT_TRUE(held.has_value());
  ASSERT_EQ(held->text(), "held");
  ASSERT_TRUE(q.push("a"));
  ASSERT_TRUE(q.push("b"));

  std::array<Job, 8> jobs;
  ASSERT_EQ(q.try_claim_many(jobs), 2u);
  EXPECT_EQ(jobs[0].text(), "a");
  EXPECT_EQ(jobs[1].text(), "b");

  // Expired leases are taken over by a batch claim (max_attempts 2 here).
  QueueName name2("b-take");
  auto q2 = Queue::create(name2.str(), Options{.capacity = 8, .max_payload = 64});
  const Payloads p(numbered("t", 2));
  ASSERT_EQ(q2.push_many(p.all()), 2u);
  std::array<Job, 2> first;
  ASSERT_EQ(q2.try_claim_many(first, with_lease(50ms)), 2u);
  std::this_thread::sleep_for(120ms);
  std::array<Job, 4> second;
  ASSERT_EQ(q2.try_claim_many(second, with_lease(60s)), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(second[i].attempt, 2u);
    EXPECT_EQ(second[i].id, first[i].id);
    EXPECT_NE(second[i].lease.token, first[i].lease.token);
  }
  EXPECT_EQ(q2.stats().expired_total, 2u);
}

// claim_many across processes: a worker process blocked in claim_many (4
// jobs, 20 s) returns as soon as at least one job is there — pushed as one
// push_many of 3 by another process — and it and a follow-up
// try_claim_many get all three, once each, in push order. Also: with jobs
// ready, claim_many returns at once with min(N, ready).
TEST(BatchClaim, ClaimManyWaitsForAtLeastOne) {
  Watchdog dog(60s, "BatchClaim.ClaimManyWaitsForAtLeastOne");
  QueueName name("b-cmany");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  struct Report {
    std::atomic<long> first_batch{-1};
    std::atomic<long> total{-1};
    std::atomic<std::int64_t> waited_ms{-1};
    std::atomic<int> order_ok{0};
  };
  test::SharedObject<Report> rep;
  test::SharedObject<std::atomic<int>> ready;
  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    std::array<Job, 4> jobs;
    ready->store(1);
    const std::int64_t t0 = now_ns();
    const std::size_t n = wq.claim_many(jobs, 20s);
    rep->waited_ms.store(ms_since(t0));
    rep->first_batch.store(static_cast<long>(n));
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < n; ++i) texts.emplace_back(jobs[i].text());
    // The rest of the batch may still be in flight: collect for up to 10 s.
    const std::int64_t t1 = now_ns();
    while (texts.size() < 3 && ms_since(t1) < 10'000) {
      const std::size_t m = wq.claim_many(jobs, 1s);
      for (std::size_t i = 0; i < m; ++i) texts.emplace_back(jobs[i].text());
    }
    rep->total.store(static_cast<long>(texts.size()));
    rep->order_ok.store(texts == std::vector<std::string>{"c0", "c1", "c2"} ? 1 : 0);
    return 0;
  });
  ASSERT_GT(worker, 0);
  SegmentView view(name.str());
  ASSERT_TRUE(test::poll_until([&] { return ready->load() == 1; }, 10s));
  (void)test::poll_until([&] { return (view.work_event().load() & 1u) != 0; }, 10s,
                         1ms);  // the worker announced itself
  std::this_thread::sleep_for(50ms);
  const std::uint32_t seq_before = view.work_event().load() >> 1;
  const Payloads p(numbered("c", 3));
  ASSERT_EQ(q.push_many(p.all()), 3u);
  EXPECT_NE(view.work_event().load() >> 1, seq_before) << "push_many did not notify the waiting claim_many";
  ASSERT_EQ(test::wait_child(worker), 0);
  EXPECT_GE(rep->first_batch.load(), 1);
  EXPECT_LT(rep->waited_ms.load(), 10'000);
  EXPECT_EQ(rep->total.load(), 3);
  EXPECT_EQ(rep->order_ok.load(), 1) << "claim_many did not return the batch once each, in push order";
  // (Not `leased`: the worker has exited, and a janitor, if one runs, hands
  // a dead owner's leases back at once — guarantee 8.)
  const Stats s = q.stats();
  EXPECT_EQ(s.claimed, 3u) << "a job of the batch was claimed twice";

  // Jobs ready: no waiting, at most N.
  QueueName name2("b-cmany2");
  auto q2 = Queue::create(name2.str(), Options{.capacity = 8, .max_payload = 64});
  const Payloads p2(numbered("r", 5));
  ASSERT_EQ(q2.push_many(p2.all()), 5u);
  std::array<Job, 3> three;
  const std::int64_t t0 = now_ns();
  EXPECT_EQ(q2.claim_many(three, 20s), 3u);
  EXPECT_EQ(q2.claim_many(three, 20s), 2u);
  EXPECT_LT(ms_since(t0), 10'000);
}

// ===========================================================================
// ack_many
// ===========================================================================

// Guarantee 4 per lease in a batch: ack_many reports each lease's outcome —
// ok for current leases; lease_lost for one already acked, for one taken over
// after expiry, for a forged one, and for the second copy of a lease in the
// same batch — returns how many were acked, and changes nothing for the lost
// ones: the new holder of the taken-over job still holds it.
TEST(BatchAck, ResultsPerLeaseIncludingStaleOnes) {
  Watchdog dog(30s, "BatchAck.ResultsPerLeaseIncludingStaleOnes");
  QueueName name("b-ack");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  const Payloads p(numbered("a", 4));
  ASSERT_EQ(q.push_many(p.all()), 4u);
  std::array<Job, 4> jobs;
  ASSERT_EQ(q.try_claim_many(std::span<Job>(jobs).first(2), with_lease(60s)), 2u);
  ASSERT_EQ(q.try_claim_many(std::span<Job>(jobs).subspan(2, 1), with_lease(50ms)), 1u);
  ASSERT_EQ(q.try_claim_many(std::span<Job>(jobs).subspan(3, 1), with_lease(60s)), 1u);

  ASSERT_EQ(q.ack(jobs[1].lease), LeaseStatus::ok);  // jobs[1]: already acked
  std::this_thread::sleep_for(120ms);                // jobs[2]: expires...
  auto thief = q.try_claim(with_lease(60s));         // ... and is taken over
  ASSERT_TRUE(thief.has_value());
  ASSERT_EQ(thief->id, jobs[2].id);
  Lease forged = jobs[0].lease;
  forged.slot = 1000;  // out of range

  const std::array<Lease, 6> leases = {jobs[0].lease, jobs[1].lease, jobs[2].lease,
                                       jobs[3].lease, forged,        jobs[3].lease};
  std::array<LeaseStatus, 6> results{};
  results.fill(LeaseStatus::ok);
  EXPECT_EQ(q.ack_many(leases, results), 2u);
  const std::array<LeaseStatus, 6> expected = {LeaseStatus::ok,         LeaseStatus::lease_lost,
                                               LeaseStatus::lease_lost, LeaseStatus::ok,
                                               LeaseStatus::lease_lost, LeaseStatus::lease_lost};
  for (std::size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i], expected[i]) << "lease " << i;

  Stats s = q.stats();
  EXPECT_EQ(s.acked, 3u);
  EXPECT_EQ(s.leased, 1u) << "a stale lease in a batch changed the new holder's lease";
  EXPECT_EQ(q.ack(thief->lease), LeaseStatus::ok);
  // Results shorter than the leases, and none at all.
  EXPECT_EQ(q.ack_many(leases, std::span<LeaseStatus>(results).first(1)), 0u);
  EXPECT_EQ(results[0], LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack_many({}), 0u);
  s = q.stats();
  EXPECT_EQ(s.acked, 4u);
  EXPECT_EQ(s.free, 8u);
}

// ack_many frees room for blocked producers in other processes (one wake-up
// for the batch): a producer blocked in push(wait 20 s) on a full queue
// returns ok after the parent acks both jobs with one ack_many, which must
// notify (the room event word moves; the producer's bounded re-check alone
// would also find the room).
TEST(BatchAck, WakesProducerBlockedOnFullQueue) {
  Watchdog dog(60s, "BatchAck.WakesProducerBlockedOnFullQueue");
  QueueName name("b-ackwake");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  const Payloads p(numbered("f", 2));
  ASSERT_EQ(q.push_many(p.all()), 2u);
  std::array<Job, 2> jobs;
  ASSERT_EQ(q.try_claim_many(jobs), 2u);
  test::SharedObject<std::atomic<int>> status;
  status->store(-1);
  test::SharedObject<std::atomic<std::int64_t>> waited;
  const pid_t producer = test::spawn_tied([&] {
    auto pq = Queue::open(name.str());
    const std::int64_t t0 = now_ns();
    const PushResult r = pq.push("in", with_wait(20s));
    waited->store(ms_since(t0));
    status->store(static_cast<int>(r.status));
    return 0;
  });
  ASSERT_GT(producer, 0);
  SegmentView view(name.str());
  (void)test::poll_until([&] { return (view.room_event().load() & 1u) != 0; }, 10s,
                         1ms);  // the producer announced itself
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(status->load(), -1) << "push with a wait returned while the queue was full";
  const std::uint32_t seq_before = view.room_event().load() >> 1;
  const std::array<Lease, 2> leases = {jobs[0].lease, jobs[1].lease};
  EXPECT_EQ(q.ack_many(leases), 2u);
  EXPECT_NE(view.room_event().load() >> 1, seq_before) << "ack_many did not notify the blocked producer";
  ASSERT_EQ(test::wait_child(producer), 0);
  EXPECT_EQ(status->load(), static_cast<int>(PushStatus::ok));
  EXPECT_LT(waited->load(), 10'000);
  EXPECT_EQ(drain_texts(q), (std::vector<std::string>{"in"}));
}

}  // namespace
}  // namespace jobring
