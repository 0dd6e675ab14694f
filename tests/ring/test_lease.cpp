// Unit tests of what a lease holder does (lib/ring/lease.cpp): release and
// give_back (T7), delays, lease expiry and takeover (T5), extend, fencing,
// and the lease's text form. One process, no concurrency. Each test names
// the guarantee of /work/shared/DESIGN.md (G1..G9) or the API contract it
// checks.
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
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Release, give_back and delays
// ---------------------------------------------------------------------------

// API contract: release makes the job claimable again, attempt 2, same id and payload.
TEST(Release, ClaimableAgainWithAttemptTwo) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  const auto pushed = q.push("retry me");
  ASSERT_TRUE(pushed);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->attempt, 1u);
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(q.release(job->lease), LeaseStatus::ok);
  EXPECT_EQ(q.release(job->lease), LeaseStatus::lease_lost);  // token no longer current
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, pushed.id);
  EXPECT_EQ(again->attempt, 2u);
  EXPECT_EQ(again->text(), "retry me");
  EXPECT_NE(again->lease.token, job->lease.token);
  EXPECT_EQ(q.stats().released, 1u);
}

// Checks that a job made invisible for `delay` at time t0 is never handed out
// by a claim that ended less than `delay` after t0 (no tolerance: a delay is
// never cut short, issue 13 item 11), and that it does show up.
void expect_invisible_then_claimable(Queue& q, Clock::time_point t0, milliseconds delay, JobId id) {
  Job job;
  const auto st = q.try_claim(job);  // immediately: must not be visible yet
  if (st == ClaimStatus::ok) {
    EXPECT_GE(Clock::now() - t0, delay) << "delayed job claimed early";
  }
  EXPECT_EQ(q.stats().delayed + (st == ClaimStatus::ok ? 1u : 0u), 1u);
  const auto infos = q.peek(JobState::delayed);
  if (st != ClaimStatus::ok) {
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].id, id);
    EXPECT_GT(infos[0].ms_until, 0);
    EXPECT_LE(infos[0].ms_until, delay.count() + 1);  // the visible-at rounds up
  }
  bool got = st == ClaimStatus::ok;
  got = got || test::poll_until(
                   [&] {
                     if (q.try_claim(job) != ClaimStatus::ok) return false;
                     EXPECT_GE(Clock::now() - t0, delay) << "delayed job claimed early";
                     return true;
                   },
                   20s, 1ms);
  ASSERT_TRUE(got) << "delayed job never became claimable";
  EXPECT_EQ(job.id, id);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// give_back is a release that does not count the attempt: on a queue with
// max_attempts = 1 the job given back is ready (release would dead-letter
// it), and the next claim is attempt 1 again. Fails if give_back counts.
TEST(GiveBack, DoesNotCountTheAttempt) {
  QueueName name;
  Options o{.capacity = 4, .max_payload = 64, .max_attempts = 1};
  Queue q = Queue::create(name, o);
  ASSERT_TRUE(q.push("shutting down"));
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->attempt, 1u);
  EXPECT_EQ(q.give_back(job->lease), LeaseStatus::ok);
  EXPECT_EQ(q.give_back(job->lease), LeaseStatus::lease_lost);  // token no longer current
  EXPECT_EQ(q.stats().dead, 0u);
  EXPECT_EQ(q.stats().released, 1u);
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, job->id);
  EXPECT_EQ(again->attempt, 1u);
  // A plain release on the last attempt still dead-letters.
  EXPECT_EQ(q.release(again->lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().dead, 1u);
}

// A stale lease (extended since: the token changed) is refused and leaves
// the attempt count alone, so the holder's count is not lowered by a caller
// that is not the holder. Fails if give_back lowers the count before it
// checks the token.
TEST(GiveBack, AStaleLeaseChangesNothing) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  const jobring::Lease stale = job->lease;
  ASSERT_EQ(q.extend(*job, 1h), LeaseStatus::ok);
  EXPECT_EQ(q.give_back(stale), LeaseStatus::lease_lost);
  const auto leased = q.peek(jobring::JobState::leased, 10);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].attempts, 1u);
  EXPECT_EQ(q.give_back(job->lease), LeaseStatus::ok);
  auto again = q.try_claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt, 1u);
}

// API contract: release(lease, delay) hides the job for `delay`, then it is claimable.
TEST(Release, WithDelay) {
  Watchdog wd(60s, "Release.WithDelay");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  const auto pushed = q.push("later");
  ASSERT_TRUE(pushed);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  const auto t0 = Clock::now();
  ASSERT_EQ(q.release(job->lease, 300ms), LeaseStatus::ok);
  expect_invisible_then_claimable(q, t0, 300ms, pushed.id);
}

// API contract: PushOptions.delay hides the job for `delay`, then it is claimable.
TEST(Release, PushWithDelay) {
  Watchdog wd(60s, "Release.PushWithDelay");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  const auto t0 = Clock::now();
  const auto pushed = q.push("later", test::with_delay(300ms));
  ASSERT_TRUE(pushed);
  expect_invisible_then_claimable(q, t0, 300ms, pushed.id);
}

// API contract: delays out of 0..kMaxLease are invalid_argument (push throws / sets ec).
TEST(Release, PushDelayOutOfRange) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  EXPECT_EQ(test::code_thrown([&] { (void)q.push("x", test::with_delay(milliseconds{-1})); }),
            errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.push("x", test::with_delay(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  std::error_code ec;
  EXPECT_FALSE(q.push(test::as_bytes("x"), test::with_delay(jobring::kMaxLease + 1ms), ec));
  EXPECT_EQ(ec, errc::invalid_argument);
  EXPECT_EQ(q.stats().pushed, 0u);
  EXPECT_EQ(q.stats().free, 4u);
  EXPECT_TRUE(q.push("x", test::with_delay(jobring::kMaxLease)));  // the edge is valid
  EXPECT_EQ(q.stats().delayed, 1u);
}

// ---------------------------------------------------------------------------
// Lease expiry and fencing
// ---------------------------------------------------------------------------

// G1 + G4 (fencing): a 1 ms lease runs out and the next claim takes the job
// over (attempt 2), never before the lease has run out; the first worker's
// ack / release / extend are then lease_lost and change nothing; the new
// lease still acks.
TEST(Lease, ExpiryTakeoverAndFencing) {
  Watchdog wd(60s, "Lease.ExpiryTakeoverAndFencing");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  const auto pushed = q.push("payload");
  ASSERT_TRUE(pushed);
  const auto t0 = Clock::now();
  auto first = q.try_claim(test::with_lease(50ms));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->attempt, 1u);

  Job second;
  ASSERT_TRUE(test::poll_until([&] { return q.try_claim(second, test::with_lease(1min)) == ClaimStatus::ok; },
                               20s, 1ms))
      << "expired lease never taken over";
  // "A lease of L ms expires strictly after L ms": no takeover before.
  EXPECT_GT(Clock::now() - t0, 50ms);
  EXPECT_EQ(second.id, pushed.id);
  EXPECT_EQ(second.attempt, 2u);
  EXPECT_EQ(second.text(), "payload");
  EXPECT_NE(second.lease.token, first->lease.token);
  EXPECT_EQ(q.stats().expired_total, 1u);
  EXPECT_EQ(q.stats().claimed, 2u);

  const Stats before = q.stats();
  Lease stale = first->lease;
  EXPECT_EQ(q.ack(stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(stale, 10ms), LeaseStatus::lease_lost);
  EXPECT_EQ(q.extend(stale, 1h), LeaseStatus::lease_lost);
  EXPECT_EQ(stale, first->lease) << "a failed extend must not change the lease";
  EXPECT_EQ(q.extend(*first, 1h), LeaseStatus::lease_lost);
  EXPECT_EQ(test::stats_fields(q.stats()), test::stats_fields(before));
  const auto leased = q.peek(JobState::leased);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].attempts, 2u);
  EXPECT_GT(leased[0].ms_until, 30'000);  // still the second worker's 1 min lease
  EXPECT_FALSE(q.try_claim().has_value());
  EXPECT_EQ(q.ack(second.lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().acked, 1u);
  EXPECT_EQ(q.stats().free, 4u);
}

// G1: while a lease is valid no other claim returns the job.
TEST(Lease, ValidLeaseHidesTheJob) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  auto a = q.try_claim(test::with_lease(1h));
  ASSERT_TRUE(a);
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(q.try_claim().has_value());
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.stats().expired, 0u);
}

// API contract (extend): a new token and deadline; the old token is then
// lease_lost; after ack, extend is lease_lost.
TEST(Lease, ExtendUpdatesTokenAndDeadline) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  Job job;
  ASSERT_EQ(q.try_claim(job, test::with_lease(1s)), ClaimStatus::ok);
  const Lease old = job.lease;
  const auto old_deadline = job.deadline;
  ASSERT_EQ(q.extend(job, 1h), LeaseStatus::ok);
  EXPECT_NE(job.lease.token, old.token);
  EXPECT_EQ(job.lease.slot, old.slot);
  EXPECT_EQ(job.lease.job, old.job);
  EXPECT_GT(job.deadline, old_deadline);
  EXPECT_GT(job.deadline, Clock::now() + 59min);
  const auto infos = q.peek(JobState::leased);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_GT(infos[0].ms_until, 59 * 60 * 1000);

  EXPECT_EQ(q.ack(old), LeaseStatus::lease_lost);
  Lease old_copy = old;
  EXPECT_EQ(q.extend(old_copy, 1h), LeaseStatus::lease_lost);

  // extend(Lease&) updates the token in place as well.
  Lease by_lease = job.lease;
  ASSERT_EQ(q.extend(by_lease, 2h), LeaseStatus::ok);
  EXPECT_NE(by_lease.token, job.lease.token);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(by_lease), LeaseStatus::ok);
  EXPECT_EQ(q.extend(by_lease, 1h), LeaseStatus::lease_lost);
  EXPECT_EQ(q.extend(job, 1h), LeaseStatus::lease_lost);
}

// API contract: extend / try_claim with a lease out of range throw invalid_argument, change nothing.
TEST(Lease, LeaseTimeOutOfRangeThrows) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  ASSERT_TRUE(q.push("y"));
  Job job;
  ASSERT_EQ(q.try_claim(job, test::with_lease(1h)), ClaimStatus::ok);
  const Lease before = job.lease;
  EXPECT_EQ(test::code_thrown([&] { (void)q.extend(job, 0ms); }), errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.extend(job, -5ms); }), errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.extend(job, jobring::kMaxLease + 1ms); }),
            errc::invalid_argument);
  Lease l = job.lease;
  EXPECT_EQ(test::code_thrown([&] { (void)q.extend(l, 0ms); }), errc::invalid_argument);
  EXPECT_EQ(job.lease, before);
  EXPECT_EQ(l, before);

  Job other;
  EXPECT_EQ(test::code_thrown([&] { (void)q.try_claim(other, test::with_lease(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.try_claim(test::with_lease(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.try_claim(test::with_lease(-1ms)); }), errc::invalid_argument);
  EXPECT_EQ(q.stats().ready, 1u) << "a refused claim must not take the job";
  EXPECT_EQ(q.stats().claimed, 1u);

  // The edges are valid.
  EXPECT_EQ(q.extend(job, jobring::kMaxLease), LeaseStatus::ok);
  EXPECT_EQ(q.extend(job, 1ms), LeaseStatus::ok);
  EXPECT_EQ(q.extend(job, 1h), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(other, test::with_lease(jobring::kMaxLease)), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(other.lease), LeaseStatus::ok);
}

// G4: ack twice, a lease for a slot out of range, a default Lease — all
// lease_lost, nothing changed, no crash.
TEST(Lease, BogusLeasesAreLeaseLost) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  // On a fresh queue slot 0's state word may well be 0: token 0 must still not match.
  EXPECT_EQ(q.ack(Lease{}), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(Lease{}), LeaseStatus::lease_lost);
  Lease def{};
  EXPECT_EQ(q.extend(def, 1s), LeaseStatus::lease_lost);
  EXPECT_EQ(q.stats().free, 4u);

  ASSERT_TRUE(q.push("x"));
  EXPECT_EQ(q.ack(Lease{}), LeaseStatus::lease_lost);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  for (std::uint32_t slot : {4u, 5u, 1000u, std::numeric_limits<std::uint32_t>::max()}) {
    Lease bad = job->lease;
    bad.slot = slot;
    EXPECT_EQ(q.ack(bad), LeaseStatus::lease_lost);
    EXPECT_EQ(q.release(bad), LeaseStatus::lease_lost);
    EXPECT_EQ(q.extend(bad, 1s), LeaseStatus::lease_lost);
  }
  Lease wrong_token = job->lease;
  wrong_token.token ^= 1;
  EXPECT_EQ(q.ack(wrong_token), LeaseStatus::lease_lost);
  EXPECT_EQ(q.stats().leased, 1u);
  const Stats before = q.stats();
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(job->lease), LeaseStatus::lease_lost);
  Stats after = q.stats();
  EXPECT_EQ(after.acked, before.acked + 1);
  EXPECT_EQ(after.free, 4u);
  EXPECT_EQ(after.released, 0u);
}

// ---------------------------------------------------------------------------
// Lease text form
// ---------------------------------------------------------------------------

// API contract (Lease::to_string / parse): "job.slot.token", round trip, garbage rejected.
TEST(LeaseText, RoundTripAndRejects) {
  const Lease l{3, 0xabcdef0123ull, 42};
  const std::string s = l.to_string();
  EXPECT_EQ(s.rfind("42.3.", 0), 0u) << s;
  auto back = Lease::parse(s);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, l);

  const Lease max{std::numeric_limits<std::uint32_t>::max(), std::numeric_limits<std::uint64_t>::max(),
                  std::numeric_limits<std::uint64_t>::max()};
  back = Lease::parse(max.to_string());
  ASSERT_TRUE(back.has_value()) << max.to_string();
  EXPECT_EQ(*back, max);
  back = Lease::parse(Lease{}.to_string());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, Lease{});

  for (const char* bad : {"", "1.2", "a.b.c", "1.2.3.4", "1..2", ".1.2", "1.2.", "..", " 1.2.3", "1.2.3 ",
                          "-1.2.3", "1.-2.3", "1.2.g", "1.2.0x3", "+1.2.3",
                          "18446744073709551616.1.1",  // job id 2^64
                          "1.4294967296.1",            // slot 2^32
                          "1.1.10000000000000000",     // token of 17 hex digits
                          "99999999999999999999999999.1.1"}) {
    EXPECT_FALSE(Lease::parse(bad).has_value()) << '"' << bad << '"';
  }
  EXPECT_FALSE(Lease::parse(std::string_view("1.2\0.3", 6)).has_value());
}

// API contract: a lease written down as text and parsed back acks the job.
TEST(LeaseText, ParsedLeaseAcks) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("x"));
  auto j = q.try_claim(ClaimOptions{.lease = 1h, .owner = Owner::detached});
  ASSERT_TRUE(j);
  auto parsed = Lease::parse(j->lease.to_string());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(q.extend(*parsed, 2h), LeaseStatus::ok);
  EXPECT_EQ(q.ack(*parsed), LeaseStatus::ok);
}

}  // namespace
}  // namespace jobring
