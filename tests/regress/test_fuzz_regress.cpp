// Regression tests for what the fuzz targets (tests/fuzz/) found. Each test
// names the target that found it and replays the smallest sequence that
// shows it, so that it runs in every build (the fuzzers only run in the
// clang "fuzz" stage).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/process.hpp"
#include "jobring/queue.hpp"
#include "ring/keys.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::Options;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::SegmentView;

// Polls `done` every 200 µs for up to 10 s.
template <class F>
bool soon(F&& done) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

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

// G6, the same when the producer then fills the whole ring: purge three
// unclaimed jobs, push four; they must be claimed in push order.
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

// G6, found by fuzz_model after the fix above: purge() moves the claim
// cursor over freed positions only within one lap of the push cursor. A
// delayed job at the cursor's slot kept it from moving while pushes and
// purges of other jobs took the push cursor more than a lap ahead; once
// everything was purged, the claim cursor stayed more than a lap behind,
// and the next three jobs were claimed b, c, a.
TEST(FuzzRegress, FifoAfterPurgeWhenTheClaimCursorIsLapsBehind) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 3, .max_payload = 8});
  ASSERT_TRUE(q.push("delayed", PushOptions{.delay = 1h}));  // slot 0: holds the claim cursor back
  ASSERT_TRUE(q.push("x"));                                  // slot 1
  ASSERT_TRUE(q.push("w"));                                  // slot 2
  ASSERT_EQ(q.purge(PurgeWhat::ready), 2u);
  ASSERT_TRUE(q.push("y"));  // slot 1: the push cursor is now more than a lap ahead
  ASSERT_EQ(q.purge(PurgeWhat::ready), 1u);
  ASSERT_EQ(q.purge(PurgeWhat::all), 1u);  // empty
  for (const char* p : {"a", "b", "c"}) ASSERT_TRUE(q.push(p));
  EXPECT_EQ(claim_all(q), (std::vector<std::string>{"a", "b", "c"}));
}

// G6, found by fuzz_model after the fix above: purge() moved the claim
// cursor over the freed positions, but stopped at a leased slot; the ack of
// that lease freed it without moving the cursor, and the one producer's next
// jobs went, in order, into a later slot and then into the freed one — which
// the claim scan, starting at the cursor, met first: y before x on a queue
// that had just become empty.
TEST(FuzzRegress, FifoAfterPurgeAndAckOfTheJobAtTheClaimCursor) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 3, .max_payload = 8});
  for (const char* p : {"a", "b", "c"}) ASSERT_TRUE(q.push(p));  // slots 0, 1, 2
  Job a;
  ASSERT_EQ(q.try_claim(a), ClaimStatus::ok);
  ASSERT_EQ(a.text(), "a");
  ASSERT_EQ(q.purge(PurgeWhat::ready), 2u);  // b, c: the claim cursor stops at a's slot
  ASSERT_TRUE(q.push("d"));                  // slot 1
  ASSERT_EQ(q.purge(PurgeWhat::ready), 1u);
  ASSERT_EQ(q.ack(a.lease), jobring::LeaseStatus::ok);      // empty; slot 0 free at the claim cursor
  for (const char* p : {"x", "y"}) ASSERT_TRUE(q.push(p));  // slots 2 and 0
  EXPECT_EQ(claim_all(q), (std::vector<std::string>{"x", "y"}));
}

// G6 ("with one producer and no retries, jobs are claimed in push order"),
// found by fuzz_model with purges allowed inside the FIFO regime: purge()
// moved the claim cursor over the freed positions but stopped at a delayed
// job, which stays; the producer's next jobs went into the freed slot before
// it (a) and the ones after it (b, c), and the claim scan, starting at the
// delayed job, met b and c before a. A purge is not a retry and the ring was
// never full, so this is none of the documented exceptions. Fixed: the
// cursor now passes delayed jobs, leases and dead jobs as a claim scan does
// (skip_unclaimable_positions), and the model checks FIFO across purges.
TEST(FuzzRegress, FifoAfterAPartialPurgeWithADelayedJobAtTheClaimCursor) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  ASSERT_TRUE(q.push("r1"));                                 // slot 0
  ASSERT_TRUE(q.push("delayed", PushOptions{.delay = 1h}));  // slot 1: stays
  ASSERT_TRUE(q.push("r3"));                                 // slot 2
  ASSERT_TRUE(q.push("r4"));                                 // slot 3
  ASSERT_EQ(q.purge(PurgeWhat::ready), 3u);
  for (const char* p : {"a", "b", "c"}) ASSERT_TRUE(q.push(p));  // slots 0, 2, 3
  EXPECT_EQ(claim_all(q), (std::vector<std::string>{"a", "b", "c"}));
}

// No operation waits for another process (queue.hpp, guarantee 3), and a
// push with no wait returns at once (DESIGN.md), found while writing
// fuzz_segment: a keyed push that finds its key CLAIMED in the key table by
// a producer that is alive but does not finish (here forged: every entry
// names this process; in real life a producer stopped with SIGSTOP, or
// descheduled for long, between K1 and K3 of keys.hpp) waits for it without
// bound. The same held for a hostile segment whose entry names any live
// PID (PID 1). The push must return, not interrupted (since eec1219 it
// waits at most 10 ms and answers full); 10 s here is only the limit after
// which the test stops waiting.
TEST(FuzzRegress, KeyedPushDoesNotWaitForAnUnfinishedProducer) {
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  // A producer that lives through the test: this view holds its token.
  constexpr std::uint64_t kLive = 0x11fe;
  SegmentView holder(name);
  holder.hold_token(kLive);
  {
    SegmentView view(name);
    const std::uint64_t hash = jobring::detail::key_hash("order-1");
    for (std::uint32_t e = 0; e < view.key_capacity(); ++e) {
      auto& entry = view.key(e);
      entry.hash.store(hash);
      entry.job_id.store(77);
      entry.slot.store(0);
      view.forge_key(e, jobring::detail::K::claim, jobring::detail::make_writer(kLive));
    }
  }
  auto pushed = std::async(std::launch::async, [&] { return q.push("x", PushOptions{.key = "order-1"}); });
  const bool returned = pushed.wait_for(10s) == std::future_status::ready;
  if (!returned) jobring::interrupt_waits();  // unblock it, so that the test ends
  const auto r = pushed.get();
  jobring::clear_interrupt();
  EXPECT_TRUE(returned) << "push with a key held by an unfinished producer did not return within 10 s";
  EXPECT_NE(r.status, PushStatus::interrupted);
}

// Stats::expired is "claimed, deadline passed: the next claim takes it over"
// (queue.hpp), found by fuzz_model: a claim with a 1 ms lease, then wait
// until stats() counts it expired; the next try_claim found nothing. Claims
// judged the deadline with CLOCK_MONOTONIC_COARSE, trusting it to lag the
// exact clock by at most coarse_lag_ms() (the tick + 1 ms: 5 ms on the
// project's VM), but it lags by up to 7 ms there after a short sleep, so a
// lease that stats() and peek() (exact clock) show expired was still current
// to the claim. Repeated, because the lag varies with the tick.
TEST(FuzzRegress, AnExpiredLeaseIsTakenOverByTheNextClaim) {
  jobring::test::Watchdog wd(120s, "FuzzRegress.AnExpiredLeaseIsTakenOverByTheNextClaim");
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 2, .max_payload = 8});
  ASSERT_TRUE(q.push("x"));
  Job job;
  ASSERT_EQ(q.try_claim(job, {.lease = 1ms}), ClaimStatus::ok);
  int missed = 0;
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(soon([&] { return q.stats().expired == 1; }));
    if (q.try_claim(job, {.lease = 1ms}) != ClaimStatus::ok) {
      ++missed;
      ASSERT_TRUE(soon([&] { return q.try_claim(job, {.lease = 1ms}) == ClaimStatus::ok; }));
    }
  }
  EXPECT_EQ(missed, 0) << "of 600 leases that stats() counted expired, the next claim missed that many";
}

// "A lease of L ms expires strictly after L ms" (README, Limits), found with
// the test above: a lease granted on the coarse clock gets coarse_lag_ms()
// on top, which is too little when the coarse clock lags by more, so the
// deadline written into the segment was up to 2 ms before grant + L on the
// exact clock that stats(), peek(), sweep() and the janitor judge it by.
// Checked against a clock reading taken before each claim.
TEST(FuzzRegress, ALeaseIsNeverShorterThanAsked) {
  jobring::test::Watchdog wd(120s, "FuzzRegress.ALeaseIsNeverShorterThanAsked");
  QueueName name("fuzzreg");
  Queue q = Queue::create(name, Options{.capacity = 2, .max_payload = 8});
  ASSERT_TRUE(q.push("x"));
  constexpr auto kLease = 1000ms;
  int short_leases = 0;
  long worst_ms = 0;
  Job job;
  for (int i = 0; i < 4000; ++i) {
    std::this_thread::sleep_for(500us);  // idle CPUs: the coarse clock falls behind
    const auto before = std::chrono::floor<std::chrono::milliseconds>(std::chrono::steady_clock::now());
    ASSERT_EQ(q.try_claim(job, {.lease = kLease}), ClaimStatus::ok);
    const auto shortfall = (before + kLease) - job.deadline;
    if (shortfall > 0ms) {
      ++short_leases;
      worst_ms = std::max(worst_ms,
                          static_cast<long>(std::chrono::ceil<std::chrono::milliseconds>(shortfall).count()));
    }
    ASSERT_EQ(q.release(job.lease), jobring::LeaseStatus::ok);
  }
  EXPECT_EQ(short_leases, 0) << "leases shorter than asked, by up to " << worst_ms << " ms";
}

}  // namespace
