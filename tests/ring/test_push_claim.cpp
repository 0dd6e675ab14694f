// Unit tests of push and claim (lib/ring/push.cpp, lib/ring/claim.cpp):
// payloads, full and empty, FIFO, head-of-line blocking, push_many, and the
// blocking forms (claim with a wait, push waiting for room, interrupts)
// between threads of one process (between processes: test_wait.cpp). Each
// test names the guarantee of /work/shared/DESIGN.md (G1..G9) or the API
// contract it checks.
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
// Push / claim / ack
// ---------------------------------------------------------------------------

// G2 (nothing lost) + memory ordering contract: the payload comes back byte for
// byte, including zero bytes; 0 bytes and exactly max_payload are allowed.
TEST(PushClaim, PayloadBytesIntact) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 256});
  std::vector<std::byte> binary(256);
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<std::byte>(255 - i);  // ends in 0
  std::vector<std::byte> zeros(17, std::byte{0});

  ASSERT_TRUE(q.push(std::span<const std::byte>(binary)));
  ASSERT_TRUE(q.push(std::span<const std::byte>(zeros)));
  ASSERT_TRUE(q.push(std::string_view{}));
  ASSERT_TRUE(q.push(std::string_view("a\0b", 3)));

  Job job;  // reused across claims
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(job.payload().size(), binary.size());
  EXPECT_TRUE(std::equal(binary.begin(), binary.end(), job.payload().begin()));
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);

  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(job.payload().size(), zeros.size());
  EXPECT_TRUE(std::equal(zeros.begin(), zeros.end(), job.payload().begin()));
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);

  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.payload().size(), 0u);
  EXPECT_EQ(job.text(), "");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);

  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), std::string_view("a\0b", 3));
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
}

// API contract: max_payload+1 is payload_too_large (throwing: what() names the
// limit and the queue; error_code overload: ec set, nothing pushed).
TEST(PushClaim, PayloadTooLarge) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 37});
  ASSERT_TRUE(q.push(std::string(37, 'x')));
  const std::string big(38, 'y');
  std::string what;
  EXPECT_EQ(test::code_thrown([&] { (void)q.push(big); }, &what), errc::payload_too_large);
  EXPECT_NE(what.find("37"), std::string::npos) << what;
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  std::error_code ec;
  const auto r = q.push(test::as_bytes(big), PushOptions{}, ec);
  EXPECT_EQ(ec, errc::payload_too_large);
  EXPECT_FALSE(r);
  EXPECT_EQ(q.stats().pushed, 1u);
  EXPECT_EQ(q.stats().ready, 1u);
  // And the good path through the error_code overload clears ec.
  ec = make_error_code(errc::system_error);
  EXPECT_TRUE(q.push(test::as_bytes("ok"), PushOptions{}, ec));
  EXPECT_FALSE(ec) << ec.message();
}

// G7 (bounded): a full queue answers PushStatus::full (no exception), and an
// ack makes room again. An empty queue answers ClaimStatus::empty / nullopt.
TEST(PushClaim, FullAndEmptyAreValues) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_FALSE(q.try_claim().has_value());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.push("j" + std::to_string(i)));
  const auto full = q.push("overflow");
  EXPECT_EQ(full.status, PushStatus::full);
  EXPECT_FALSE(full);
  std::error_code ec;
  EXPECT_EQ(q.push(test::as_bytes("overflow"), PushOptions{}, ec).status, PushStatus::full);
  EXPECT_FALSE(ec) << "full is not an error: " << ec.message();

  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(q.push("still full").status, PushStatus::full);  // leased still occupies its slot
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const auto r = q.push("room");
  EXPECT_EQ(r.status, PushStatus::ok);
  EXPECT_NE(r.id, 0u);
  EXPECT_EQ(q.stats().free, 0u);
}

// G6 (approximately FIFO): one producer, no retries: claims come in push order,
// across many wrap-arounds of the ring and with a varying fill level. Also:
// job ids are unique and increasing, attempt is 1 on first claim, and push
// finds room whenever fewer than `capacity` jobs are outstanding (G5).
TEST(PushClaim, FifoWithOneProducerAcrossWrapAround) {
  QueueName name;
  constexpr std::uint32_t kCap = 7;  // not a power of two on purpose
  Queue q = Queue::create(name, Options{.capacity = kCap, .max_payload = 64});
  std::deque<std::pair<JobId, std::string>> expected;
  std::uint64_t rng = 12345;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<unsigned>(rng >> 33);
  };
  int seq = 0;
  JobId last_id = 0;
  Job job;
  while (seq < 3000) {
    const unsigned pushes = next() % (kCap + 2);
    for (unsigned i = 0; i < pushes; ++i) {
      const std::string payload = std::to_string(seq);
      const auto r = q.push(payload);
      if (expected.size() < kCap) {
        ASSERT_EQ(r.status, PushStatus::ok) << "free slot not used at seq " << seq;
        ASSERT_GT(r.id, last_id) << "ids must increase";
        last_id = r.id;
        expected.emplace_back(r.id, payload);
        ++seq;
      } else {
        ASSERT_EQ(r.status, PushStatus::full);
      }
    }
    const unsigned claims = next() % (kCap + 2);
    for (unsigned i = 0; i < claims; ++i) {
      const auto st = q.try_claim(job);
      if (expected.empty()) {
        ASSERT_EQ(st, ClaimStatus::empty);
        continue;
      }
      ASSERT_EQ(st, ClaimStatus::ok);
      ASSERT_EQ(job.id, expected.front().first) << "out of order at " << expected.front().second;
      ASSERT_EQ(job.text(), expected.front().second);
      ASSERT_EQ(job.attempt, 1u);
      ASSERT_EQ(job.lease.job, job.id);
      ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
      expected.pop_front();
    }
  }
  const Stats s = q.stats();
  EXPECT_EQ(s.pushed, static_cast<std::uint64_t>(seq));
  EXPECT_EQ(s.acked + expected.size(), static_cast<std::uint64_t>(seq));
  EXPECT_EQ(s.ready, expected.size());
}

// API contract: with the default options a claim asks for 0 ms and gets the
// queue's default_lease.
TEST(PushClaim, DefaultLeaseComesFromOptions) {
  QueueName name;
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = milliseconds{3'600'000}});
  ASSERT_TRUE(q.push("x"));
  const auto before = Clock::now();
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_GT(job->deadline, before + 59min);
  EXPECT_LT(job->deadline, Clock::now() + 61min);
  const auto infos = q.peek(JobState::leased);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_GT(infos[0].ms_until, 59 * 60 * 1000);
}

// ---------------------------------------------------------------------------
// Head-of-line blocking
// ---------------------------------------------------------------------------

// G5 (no head-of-line blocking): a delayed job in front does not stop the job behind it.
TEST(HeadOfLine, DelayedJobDoesNotBlock) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("delayed", test::with_delay(1h)));
  const auto now_job = q.push("now");
  ASSERT_TRUE(now_job);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->id, now_job.id);
  EXPECT_EQ(job->text(), "now");
  EXPECT_FALSE(q.try_claim().has_value());

  // Same for a job released with a delay.
  ASSERT_EQ(q.release(job->lease, 1h), LeaseStatus::ok);
  ASSERT_TRUE(q.push("third"));
  auto third = q.try_claim();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->text(), "third");
  EXPECT_EQ(q.stats().delayed, 2u);
}

// G5: a long lease on the first job does not stop the others.
TEST(HeadOfLine, LongLeaseDoesNotBlock) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("held"));
  ASSERT_TRUE(q.push("second"));
  ASSERT_TRUE(q.push("third"));
  auto held = q.try_claim(test::with_lease(jobring::kMaxLease));
  ASSERT_TRUE(held);
  EXPECT_EQ(held->text(), "held");
  auto second = q.try_claim();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->text(), "second");
  EXPECT_EQ(q.ack(second->lease), LeaseStatus::ok);
  // Free slots are used by pushes while the lease is held.
  ASSERT_TRUE(q.push("fourth"));
  ASSERT_TRUE(q.push("fifth"));
  EXPECT_EQ(q.push("sixth").status, PushStatus::full);
  std::vector<std::string> rest;
  while (auto j = q.try_claim()) {
    rest.emplace_back(j->text());
    EXPECT_EQ(q.ack(j->lease), LeaseStatus::ok);
  }
  EXPECT_EQ(rest, (std::vector<std::string>{"third", "fourth", "fifth"}));
  EXPECT_EQ(q.ack(held->lease), LeaseStatus::ok);
}

// G5: a dead job does not stop the others.
TEST(HeadOfLine, DeadJobDoesNotBlock) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 2, .max_payload = 64, .max_attempts = 1});
  ASSERT_TRUE(q.push("doomed"));
  auto j = q.try_claim();
  ASSERT_TRUE(j);
  ASSERT_EQ(q.release(j->lease), LeaseStatus::ok);  // attempts 1 >= max 1: dead
  ASSERT_EQ(q.stats().dead, 1u);
  ASSERT_TRUE(q.push("alive"));
  auto k = q.try_claim();
  ASSERT_TRUE(k);
  EXPECT_EQ(k->text(), "alive");
  EXPECT_EQ(q.ack(k->lease), LeaseStatus::ok);
}

// ---------------------------------------------------------------------------
// Batches: push_many, try_claim_many, claim_many, ack_many
// ---------------------------------------------------------------------------

// API contract (push_many): pushes in order until full, returns the count and
// the ids; a too-large payload anywhere throws before anything is pushed.
TEST(Batch, PushManyInOrderUntilFull) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
  const std::vector<std::string> texts{"p0", "p1", "p2", "p3", "p4", "p5"};
  std::vector<std::span<const std::byte>> payloads;
  for (const auto& t : texts) payloads.push_back(test::as_bytes(t));
  std::vector<JobId> ids(6, 0);
  EXPECT_EQ(q.push_many(payloads, ids), 4u);
  for (std::size_t i = 1; i < 4; ++i) EXPECT_GT(ids[i], ids[i - 1]);
  EXPECT_EQ(ids[4], 0u);
  EXPECT_EQ(q.stats().pushed, 4u);
  EXPECT_EQ(q.push_many(payloads), 0u) << "full";

  std::vector<Job> jobs(6);
  EXPECT_EQ(q.try_claim_many(jobs), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(jobs[i].id, ids[i]);
    EXPECT_EQ(jobs[i].text(), texts[i]);
    EXPECT_EQ(jobs[i].attempt, 1u);
  }
  EXPECT_EQ(q.try_claim_many(jobs), 0u);
  EXPECT_EQ(q.stats().claimed, 4u);

  // ack_many: per-lease results, stale and bogus leases are lease_lost.
  std::vector<Lease> leases{jobs[0].lease, jobs[1].lease, jobs[0].lease, Lease{}, jobs[2].lease};
  std::vector<LeaseStatus> results(leases.size(), LeaseStatus::ok);
  EXPECT_EQ(q.ack_many(leases, results), 3u);
  EXPECT_EQ(results, (std::vector<LeaseStatus>{LeaseStatus::ok, LeaseStatus::ok, LeaseStatus::lease_lost,
                                               LeaseStatus::lease_lost, LeaseStatus::ok}));
  EXPECT_EQ(q.ack_many(std::span<const Lease>(&jobs[3].lease, 1)), 1u);  // results optional
  EXPECT_EQ(q.stats().acked, 4u);
  EXPECT_EQ(q.stats().free, 4u);

  // One payload too large: throws, nothing pushed.
  const std::string big(9, 'x');
  std::vector<std::span<const std::byte>> mixed{test::as_bytes("ok"), test::as_bytes(big)};
  EXPECT_EQ(test::code_thrown([&] { (void)q.push_many(mixed); }), errc::payload_too_large);
  EXPECT_EQ(q.stats().pushed, 4u);
  EXPECT_EQ(q.stats().free, 4u);
  EXPECT_EQ(q.push_many({}), 0u);
}

// ---------------------------------------------------------------------------
// Blocking waits: claim(wait), claim_many, push with PushOptions.wait, interrupts
// ---------------------------------------------------------------------------

class InterruptGuard {
 public:
  InterruptGuard() = default;
  ~InterruptGuard() { jobring::clear_interrupt(); }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};

// API contract (claim): an empty queue answers empty after the wait; a push
// from another thread wakes a claim that waits.
TEST(Blocking, ClaimWaitsForPush) {
  Watchdog wd(60s, "Blocking.ClaimWaitsForPush");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  Job job;
  EXPECT_EQ(q.claim(job, 0ms), ClaimStatus::empty);
  EXPECT_EQ(q.claim(job, 20ms), ClaimStatus::empty);
  std::thread producer([&] {
    std::this_thread::sleep_for(100ms);
    Queue p = Queue::open(name);
    (void)p.push("woken");
  });
  const auto st = q.claim(job, 20s);
  producer.join();
  ASSERT_EQ(st, ClaimStatus::ok);
  EXPECT_EQ(job.text(), "woken");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);

  // claim_many waits likewise and returns what is there.
  std::thread producer2([&] {
    std::this_thread::sleep_for(50ms);
    (void)q.push("a");
  });
  std::vector<Job> jobs(3);
  const std::size_t n = q.claim_many(jobs, 20s);
  producer2.join();
  ASSERT_GE(n, 1u);
  EXPECT_EQ(jobs[0].text(), "a");
}

// API contract (claim): wakes on its own when a delayed job comes due or a
// lease runs out (nobody pushes), and never hands them out early.
TEST(Blocking, ClaimWakesForDueJobAndExpiredLease) {
  Watchdog wd(60s, "Blocking.ClaimWakesForDueJobAndExpiredLease");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  auto t0 = Clock::now();
  ASSERT_TRUE(q.push("due", test::with_delay(150ms)));
  Job job;
  ASSERT_EQ(q.claim(job, 20s), ClaimStatus::ok);
  EXPECT_GE(Clock::now() - t0, 149ms);
  EXPECT_EQ(job.text(), "due");

  t0 = Clock::now();
  ASSERT_EQ(q.extend(job, 100ms), LeaseStatus::ok);
  Job second;
  ASSERT_EQ(q.claim(second, 20s), ClaimStatus::ok);
  EXPECT_GT(Clock::now() - t0, 100ms);
  EXPECT_EQ(second.id, job.id);
  EXPECT_EQ(second.attempt, 2u);
}

// API contract: wait durations out of range are invalid_argument.
TEST(Blocking, WaitOutOfRangeThrows) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  Job job;
  EXPECT_EQ(test::code_thrown([&] { (void)q.claim(job, -1ms); }), errc::invalid_argument);
  EXPECT_EQ(test::code_thrown([&] { (void)q.claim(job, jobring::kMaxLease + 1ms); }), errc::invalid_argument);
  PushOptions po;
  po.wait = -1ms;
  EXPECT_EQ(test::code_thrown([&] { (void)q.push("x", po); }), errc::invalid_argument);
  po.wait = jobring::kMaxLease + 1ms;
  EXPECT_EQ(test::code_thrown([&] { (void)q.push("x", po); }), errc::invalid_argument);
  EXPECT_EQ(q.stats().pushed, 0u);
}

// G7 (a full queue answers full, or waits if asked): push with a wait on a
// full queue returns full after the wait, and ok when an ack makes room.
TEST(Blocking, PushWaitsForRoom) {
  Watchdog wd(60s, "Blocking.PushWaitsForRoom");
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 2, .max_payload = 64});
  ASSERT_TRUE(q.push("a"));
  ASSERT_TRUE(q.push("b"));
  PushOptions po;
  po.wait = 30ms;
  EXPECT_EQ(q.push("c", po).status, PushStatus::full);
  auto a = q.try_claim();
  ASSERT_TRUE(a);
  std::thread worker([&] {
    std::this_thread::sleep_for(100ms);
    (void)q.ack(a->lease);
  });
  po.wait = 20s;
  const auto r = q.push("c", po);
  worker.join();
  EXPECT_EQ(r.status, PushStatus::ok);
  EXPECT_EQ(q.stats().pushed, 3u);
}

// API contract (interrupt_waits): blocking calls return interrupted, at once
// and while blocked; non-blocking calls are unaffected; clear_interrupt ends it.
TEST(Blocking, InterruptWaits) {
  Watchdog wd(60s, "Blocking.InterruptWaits");
  InterruptGuard guard;
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 1, .max_payload = 64});
  Job job;
  std::thread interrupter([] {
    std::this_thread::sleep_for(100ms);
    jobring::interrupt_waits();
  });
  EXPECT_EQ(q.claim(job, 20s), ClaimStatus::interrupted);
  interrupter.join();
  EXPECT_EQ(q.claim(job, 20s), ClaimStatus::interrupted) << "still interrupted until cleared";
  ASSERT_TRUE(q.push("x"));  // no wait: unaffected
  PushOptions po;
  po.wait = 20s;
  EXPECT_EQ(q.push("y", po).status, PushStatus::interrupted);
  EXPECT_EQ(q.try_claim(job), ClaimStatus::ok);  // non-blocking: unaffected
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  jobring::clear_interrupt();
  ASSERT_TRUE(q.push("z"));
  EXPECT_EQ(q.claim(job, 20s), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "z");
}

}  // namespace
}  // namespace jobring
