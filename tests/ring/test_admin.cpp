// Unit tests of what operators do (lib/ring/admin.cpp): dead letters
// (max_attempts, T8; requeue, remove_dead, T9), purge, stats and peek. One
// process, no concurrency. Each test names the guarantee of
// /work/shared/DESIGN.md (G1..G9) or the API contract it checks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

std::uint64_t jobs_in(const Stats& s) { return s.ready + s.delayed + s.leased + s.expired + s.dead; }

// ---------------------------------------------------------------------------
// Dead letters: max_attempts, requeue, remove_dead
// ---------------------------------------------------------------------------

// API contract (max_attempts, T8): claim+release twice with max_attempts 2 →
// dead: peek shows it, stats count it, it is not claimable.
TEST(DeadLetter, ByRelease) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64, .max_attempts = 2});
  const auto pushed = q.push("poison");
  ASSERT_TRUE(pushed);
  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    auto job = q.try_claim();
    ASSERT_TRUE(job);
    EXPECT_EQ(job->attempt, attempt);
    ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
  }
  EXPECT_FALSE(q.try_claim().has_value());
  const Stats s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.ready, 0u);
  EXPECT_EQ(s.dead_lettered, 1u);
  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, pushed.id);
  EXPECT_EQ(dead[0].state, JobState::dead);
  EXPECT_EQ(dead[0].attempts, 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(dead[0].payload.data()), dead[0].payload.size()),
            "poison");
  EXPECT_EQ(dead[0].owner_pid, 0);
}

// API contract (max_attempts, T8 via expiry): the claimer that finds the last
// attempt's lease expired dead-letters the job instead of taking it over.
TEST(DeadLetter, ByLeaseExpiry) {
  Watchdog wd(60s, "DeadLetter.ByLeaseExpiry");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64, .max_attempts = 2});
  const auto pushed = q.push("slow");
  ASSERT_TRUE(pushed);
  auto first = q.try_claim(test::with_lease(1ms));
  ASSERT_TRUE(first);
  Job second;
  ASSERT_TRUE(test::poll_until([&] { return q.try_claim(second, test::with_lease(1ms)) == ClaimStatus::ok; },
                               20s, 1ms));
  EXPECT_EQ(second.id, pushed.id);
  EXPECT_EQ(second.attempt, 2u);
  ASSERT_TRUE(test::poll_until(
      [&] {
        Job other;
        EXPECT_EQ(q.try_claim(other, test::with_lease(1min)), ClaimStatus::empty) << "attempt 3 of max 2";
        return q.stats().dead == 1;
      },
      20s, 1ms));
  EXPECT_EQ(q.ack(second.lease), LeaseStatus::lease_lost);
  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, pushed.id);
  EXPECT_EQ(q.stats().dead_lettered, 1u);
  EXPECT_EQ(q.stats().leased + q.stats().expired, 0u);
}

// API contract (requeue, T9): dead → ready with attempts reset, once.
TEST(DeadLetter, RequeueResetsAttempts) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64, .max_attempts = 1});
  const auto pushed = q.push("again");
  ASSERT_TRUE(pushed);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);
  ASSERT_EQ(q.stats().dead, 1u);
  EXPECT_TRUE(q.requeue(pushed.id));
  EXPECT_FALSE(q.requeue(pushed.id)) << "no longer dead";
  Stats s = q.stats();
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.requeued, 1u);
  const auto ready = q.peek(JobState::ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].attempts, 0u);
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, pushed.id);
  EXPECT_EQ(again->attempt, 1u);
  EXPECT_EQ(again->text(), "again");
  EXPECT_FALSE(q.requeue(pushed.id)) << "leased is not dead";
  EXPECT_EQ(q.ack(again->lease), LeaseStatus::ok);
}

// API contract: requeue of an id that is not dead (ready, unknown, 0) is false and changes nothing.
TEST(DeadLetter, RequeueOfNonDeadIsFalse) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64, .max_attempts = 1});
  const auto pushed = q.push("ready");
  ASSERT_TRUE(pushed);
  const Stats before = q.stats();
  EXPECT_FALSE(q.requeue(pushed.id));
  EXPECT_FALSE(q.requeue(pushed.id + 1000));
  EXPECT_FALSE(q.requeue(0));
  EXPECT_FALSE(q.remove_dead(pushed.id));
  EXPECT_FALSE(q.remove_dead(0));
  EXPECT_EQ(test::stats_fields(q.stats()), test::stats_fields(before));
}

// API contract: requeue_dead requeues every dead job; remove_dead deletes one.
TEST(DeadLetter, RequeueDeadAndRemoveDead) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .max_attempts = 1});
  std::vector<JobId> ids;
  for (int i = 0; i < 4; ++i) {
    const auto r = q.push("d" + std::to_string(i));
    ASSERT_TRUE(r);
    ids.push_back(r.id);
    auto j = q.try_claim();
    ASSERT_TRUE(j);
    ASSERT_EQ(q.release(j->lease), LeaseStatus::ok);
  }
  ASSERT_EQ(q.stats().dead, 4u);
  EXPECT_TRUE(q.remove_dead(ids[0]));
  EXPECT_FALSE(q.remove_dead(ids[0]));
  Stats s = q.stats();
  EXPECT_EQ(s.dead, 3u);
  EXPECT_EQ(s.purged, 1u);
  EXPECT_EQ(s.free, 5u);

  EXPECT_EQ(q.requeue_dead(), 3u);
  EXPECT_EQ(q.requeue_dead(), 0u);
  s = q.stats();
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.ready, 3u);
  EXPECT_EQ(s.requeued, 3u);
  std::vector<JobId> got;
  while (auto j = q.try_claim()) {
    EXPECT_EQ(j->attempt, 1u);
    got.push_back(j->id);
    EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<JobId>{ids[1], ids[2], ids[3]}));
}

// ---------------------------------------------------------------------------
// Purge
// ---------------------------------------------------------------------------

struct Population {
  Lease held;           // a leased job
  std::uint64_t ready;  // counts
  std::uint64_t delayed;
  std::uint64_t dead;
};

// max_attempts must be 1. Makes 2 dead, 1 leased, 3 ready, 2 delayed.
Population populate(Queue& q) {
  Population p{};
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(q.push("dead"));
    auto j = q.try_claim();
    EXPECT_TRUE(j);
    if (j) {
      EXPECT_EQ(q.release(j->lease), LeaseStatus::ok);
    }
  }
  EXPECT_TRUE(q.push("held"));
  auto h = q.try_claim(test::with_lease(1h));
  EXPECT_TRUE(h);
  if (h) p.held = h->lease;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(q.push("ready"));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(q.push("delayed", test::with_delay(1h)));
  p.ready = 3;
  p.delayed = 2;
  p.dead = 2;
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 3u);
  EXPECT_EQ(s.delayed, 2u);
  EXPECT_EQ(s.dead, 2u);
  EXPECT_EQ(s.leased, 1u);
  return p;
}

// API contract (purge, T9): each class separately, counts returned, leases never touched.
TEST(Purge, EachClassSeparately) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 64, .max_attempts = 1});
  const Population p = populate(q);
  EXPECT_EQ(q.purge(PurgeWhat::ready), 3u);
  Stats s = q.stats();
  EXPECT_EQ(s.ready, 0u);
  EXPECT_EQ(s.delayed, 2u);
  EXPECT_EQ(s.dead, 2u);
  EXPECT_EQ(s.purged, 3u);
  EXPECT_EQ(q.purge(PurgeWhat::delayed), 2u);
  s = q.stats();
  EXPECT_EQ(s.delayed, 0u);
  EXPECT_EQ(s.dead, 2u);
  EXPECT_EQ(q.purge(PurgeWhat::dead), 2u);
  s = q.stats();
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.purged, 7u);
  EXPECT_EQ(q.purge(PurgeWhat::all), 0u);
  s = q.stats();
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.free, 15u);
  EXPECT_EQ(q.ack(p.held), LeaseStatus::ok);
  EXPECT_EQ(q.stats().free, 16u);
}

// API contract (purge): all and combinations via operator|.
TEST(Purge, AllAndCombinations) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 64, .max_attempts = 1});
  Population p = populate(q);
  EXPECT_EQ(q.purge(PurgeWhat::ready | PurgeWhat::dead), 5u);
  EXPECT_EQ(q.stats().delayed, 2u);
  EXPECT_EQ(q.purge(), 2u);  // default: all
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.ack(p.held), LeaseStatus::ok);

  p = populate(q);
  EXPECT_EQ(q.purge(PurgeWhat::all), 7u);
  const Stats s = q.stats();
  EXPECT_EQ(jobs_in(s), 1u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(q.ack(p.held), LeaseStatus::ok);
}

// API contract (purge): an expired but not yet taken-over lease is still a lease: not purged.
TEST(Purge, ExpiredLeaseIsNotPurged) {
  Watchdog wd(60s, "Purge.ExpiredLeaseIsNotPurged");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  auto j = q.try_claim(test::with_lease(1ms));
  ASSERT_TRUE(j);
  ASSERT_TRUE(test::poll_until([&] { return q.stats().expired == 1; }, 20s, 1ms));
  EXPECT_EQ(q.purge(PurgeWhat::all), 0u);
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->text(), "x");
  EXPECT_EQ(again->attempt, 2u);
}

// ---------------------------------------------------------------------------
// Stats and peek
// ---------------------------------------------------------------------------

// API contract (Stats): gauges per state and every total after a scripted sequence.
TEST(Stats, GaugesAndTotalsAfterScript) {
  Watchdog wd(60s, "Stats.GaugesAndTotalsAfterScript");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .max_attempts = 2});
  Stats s = q.stats();
  EXPECT_EQ(s.free, 8u);
  EXPECT_EQ(test::stats_fields(s),
            (std::vector<std::uint64_t>{8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));

  // a: push, claim, ack.
  ASSERT_TRUE(q.push("a"));
  auto a = q.try_claim();
  ASSERT_TRUE(a);
  ASSERT_EQ(q.ack(a->lease), LeaseStatus::ok);
  // b: push, claim+release (released 1), claim+release with attempts used up (dead-lettered).
  const auto b_id = q.push("b");
  ASSERT_TRUE(b_id);
  auto b = q.try_claim();
  ASSERT_TRUE(b);
  ASSERT_EQ(q.release(b->lease), LeaseStatus::ok);
  b = q.try_claim();
  ASSERT_TRUE(b);
  ASSERT_EQ(q.release(b->lease), LeaseStatus::ok);
  s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.dead_lettered, 1u);
  // The release that dead-letters counts as dead_lettered, not as released
  // (released counts T7 only, dead_lettered counts T8).
  EXPECT_EQ(s.released, 1u);
  // b: requeue, claim with a 1 ms lease, taken over after expiry, acked.
  ASSERT_TRUE(q.requeue(b_id.id));
  auto b3 = q.try_claim(test::with_lease(1ms));
  ASSERT_TRUE(b3);
  Job b4;
  ASSERT_TRUE(
      test::poll_until([&] { return q.try_claim(b4, test::with_lease(1min)) == ClaimStatus::ok; }, 20s, 1ms));
  EXPECT_EQ(b4.attempt, 2u);
  ASSERT_EQ(q.ack(b4.lease), LeaseStatus::ok);
  // c, d ready and e delayed; purge the ready ones.
  ASSERT_TRUE(q.push("c"));
  ASSERT_TRUE(q.push("d"));
  ASSERT_TRUE(q.push("e", test::with_delay(1h)));
  ASSERT_EQ(q.purge(PurgeWhat::ready), 2u);
  // f held, g ready.
  ASSERT_TRUE(q.push("f"));
  auto f = q.try_claim(test::with_lease(1h));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->text(), "f");
  ASSERT_TRUE(q.push("g"));

  s = q.stats();
  EXPECT_EQ(s.free, 5u);
  EXPECT_EQ(s.writing, 0u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.expired, 0u);
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.pushed, 7u);   // a b c d e f g
  EXPECT_EQ(s.claimed, 6u);  // a, b, b, b(requeued), b(takeover), f
  EXPECT_EQ(s.acked, 2u);    // a, b
  EXPECT_EQ(s.released, 1u);
  EXPECT_EQ(s.expired_total, 1u);
  EXPECT_EQ(s.dead_lettered, 1u);
  EXPECT_EQ(s.requeued, 1u);
  EXPECT_EQ(s.purged, 2u);
  EXPECT_EQ(s.recovered_writes, 0u);
  EXPECT_EQ(q.ack(f->lease), LeaseStatus::ok);
}

// API contract (peek): ids, payloads, attempts, ms_until signs, owner_pid of
// process-owned vs detached leases, limit.
TEST(Peek, ShowsEveryState) {
  Watchdog wd(60s, "Peek.ShowsEveryState");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 64, .max_attempts = 1});
  // dead
  const auto dead_id = q.push("dead-one");
  ASSERT_TRUE(dead_id);
  {
    auto j = q.try_claim();
    ASSERT_TRUE(j);
    ASSERT_EQ(q.release(j->lease), LeaseStatus::ok);
  }
  // leased: process-owned, detached, expired
  const auto own_id = q.push("owned");
  auto own = q.try_claim(ClaimOptions{.lease = 1h, .owner = Owner::process});
  const auto det_id = q.push("detached");
  auto det = q.try_claim(ClaimOptions{.lease = 1h, .owner = Owner::detached});
  const auto exp_id = q.push("expiring");
  auto exp = q.try_claim(test::with_lease(1ms));
  ASSERT_TRUE(own && det && exp);
  ASSERT_EQ(own->id, own_id.id);
  ASSERT_EQ(det->id, det_id.id);
  ASSERT_EQ(exp->id, exp_id.id);
  // ready and delayed
  std::vector<JobId> ready_ids;
  for (int i = 0; i < 5; ++i) ready_ids.push_back(q.push("ready" + std::to_string(i)).id);
  const auto delayed_id = q.push("later", test::with_delay(1h));
  ASSERT_TRUE(delayed_id);
  ASSERT_TRUE(test::poll_until([&] { return q.stats().expired == 1; }, 20s, 1ms));

  auto text_of = [](const JobInfo& i) {
    return std::string(reinterpret_cast<const char*>(i.payload.data()), i.payload.size());
  };

  const auto ready = q.peek(JobState::ready);
  ASSERT_EQ(ready.size(), 5u);
  for (std::size_t i = 0; i < ready.size(); ++i) {
    EXPECT_EQ(ready[i].state, JobState::ready);
    EXPECT_LT(ready[i].slot, 16u);
    EXPECT_EQ(ready[i].attempts, 0u);
    EXPECT_EQ(ready[i].owner_pid, 0);
  }
  std::vector<JobId> seen;
  for (const auto& i : ready) {
    seen.push_back(i.id);
    EXPECT_EQ(text_of(i), "ready" + std::to_string(std::find(ready_ids.begin(), ready_ids.end(), i.id) -
                                                   ready_ids.begin()));
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, ready_ids);
  EXPECT_EQ(q.peek(JobState::ready, 2).size(), 2u);
  EXPECT_EQ(q.peek(JobState::ready, 0).size(), 0u);

  const auto delayed = q.peek(JobState::delayed);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_EQ(delayed[0].id, delayed_id.id);
  EXPECT_EQ(delayed[0].state, JobState::delayed);
  EXPECT_EQ(text_of(delayed[0]), "later");
  EXPECT_GT(delayed[0].ms_until, 0);
  EXPECT_LE(delayed[0].ms_until, 3'600'000);

  const auto leased = q.peek(JobState::leased);
  ASSERT_EQ(leased.size(), 3u);
  for (const auto& i : leased) {
    EXPECT_EQ(i.state, JobState::leased);
    EXPECT_EQ(i.attempts, 1u);
    if (i.id == own_id.id) {
      EXPECT_EQ(text_of(i), "owned");
      EXPECT_EQ(i.owner_pid, ::getpid());
      EXPECT_GT(i.ms_until, 0);
      EXPECT_EQ(i.slot, own->lease.slot);
    } else if (i.id == det_id.id) {
      EXPECT_EQ(text_of(i), "detached");
      EXPECT_EQ(i.owner_pid, 0);
      EXPECT_GT(i.ms_until, 0);
    } else {
      EXPECT_EQ(i.id, exp_id.id);
      EXPECT_LT(i.ms_until, 0) << "expired lease shows a negative ms_until";
      EXPECT_EQ(i.owner_pid, ::getpid());
    }
  }

  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, dead_id.id);
  EXPECT_EQ(text_of(dead[0]), "dead-one");
  EXPECT_EQ(dead[0].attempts, 1u);

  // A detached lease acks like any other.
  EXPECT_EQ(q.ack(det->lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(own->lease), LeaseStatus::ok);
}

}  // namespace
}  // namespace jobring
