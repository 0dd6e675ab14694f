// Unit tests of the public API in include/jobring/queue.hpp: every operation,
// every error, every option bound. One process, no concurrency (the stress
// and multi-process tests live elsewhere). Each test names the guarantee of
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

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::ClaimStatus;
using jobring::errc;
using jobring::Job;
using jobring::JobId;
using jobring::JobInfo;
using jobring::JobState;
using jobring::Lease;
using jobring::LeaseStatus;
using jobring::milliseconds;
using jobring::Options;
using jobring::Owner;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::Stats;
using jobring::test::QueueName;
using jobring::test::Watchdog;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

Options make_options(std::uint32_t capacity, std::uint32_t max_payload = 64, std::uint32_t max_attempts = 0,
                     milliseconds default_lease = milliseconds{30'000}, unsigned mode = 0600) {
  Options o;
  o.capacity = capacity;
  o.max_payload = max_payload;
  o.max_attempts = max_attempts;
  o.default_lease = default_lease;
  o.mode = mode;
  return o;
}

ClaimOptions lease_for(milliseconds lease, Owner owner = Owner::process) {
  ClaimOptions o;
  o.lease = lease;
  o.owner = owner;
  return o;
}

PushOptions delayed_by(milliseconds delay) {
  PushOptions o;
  o.delay = delay;
  return o;
}

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string segment_path(const std::string& name) { return "/dev/shm/jobring." + name; }

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Runs `f`; returns the error code of the jobring::error it throws (empty if
// it throws nothing). Any other exception type fails the test.
template <class F>
std::error_code code_thrown(F&& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const jobring::error& e) {
    if (what != nullptr) *what = e.what();
    return e.code();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected jobring::error, got another exception: " << e.what();
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

// Polls `pred` every millisecond until it is true or `limit` has passed.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 20s) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// Every field of Stats, for "nothing changed" comparisons.
std::vector<std::uint64_t> fields(const Stats& s) {
  return {s.free,          s.writing,       s.ready,    s.delayed, s.leased,          s.expired,
          s.dead,          s.corrupt,       s.pushed,   s.claimed, s.acked,           s.released,
          s.expired_total, s.dead_lettered, s.requeued, s.purged,  s.recovered_writes};
}

std::uint64_t jobs_in(const Stats& s) { return s.ready + s.delayed + s.leased + s.expired + s.dead; }

// ---------------------------------------------------------------------------
// Lifecycle: create / open / open_or_create / remove / list / options
// ---------------------------------------------------------------------------

// API contract: create makes /dev/shm/jobring.NAME; open finds it; a second
// create of the same name is already_exists (throwing and error_code forms).
TEST(Lifecycle, CreateOpenAndAlreadyExists) {
  QueueName name;
  Queue q = Queue::create(name, make_options(8));
  EXPECT_EQ(q.name(), name.str());
  EXPECT_TRUE(file_exists(segment_path(name)));

  std::string what;
  EXPECT_EQ(code_thrown([&] { (void)Queue::create(name, make_options(8)); }, &what), errc::already_exists);
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;

  std::error_code ec;
  auto again = Queue::create(name, make_options(8), ec);
  EXPECT_FALSE(again.has_value());
  EXPECT_EQ(ec, errc::already_exists);

  Queue o = Queue::open(name);
  EXPECT_EQ(o.name(), name.str());
  ec = make_error_code(errc::system_error);
  auto o2 = Queue::open(name, ec);
  ASSERT_TRUE(o2.has_value());
  EXPECT_FALSE(ec) << ec.message();

  // Both handles see the same ring.
  ASSERT_TRUE(q.push("shared"));
  auto job = o2->try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "shared");
  EXPECT_EQ(o.ack(job->lease), LeaseStatus::ok);
}

// API contract: open of a missing queue is not_found, naming the queue.
TEST(Lifecycle, OpenMissingIsNotFound) {
  QueueName name;
  std::string what;
  EXPECT_EQ(code_thrown([&] { (void)Queue::open(name); }, &what), errc::not_found);
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  std::error_code ec;
  EXPECT_FALSE(Queue::open(name, ec).has_value());
  EXPECT_EQ(ec, errc::not_found);
}

// API contract: remove returns true once, false when missing (both overloads);
// a removed queue keeps working for handles that have it open.
TEST(Lifecycle, RemoveAndKeepUsingOpenHandle) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("before"));
  EXPECT_TRUE(Queue::remove(name));
  EXPECT_FALSE(file_exists(segment_path(name)));
  EXPECT_FALSE(Queue::remove(name));
  std::error_code ec;
  EXPECT_FALSE(Queue::remove(name, ec));
  EXPECT_TRUE(!ec || ec == errc::not_found) << ec.message();
  EXPECT_EQ(code_thrown([&] { (void)Queue::open(name); }), errc::not_found);

  // The open handle still works on the unlinked segment.
  ASSERT_TRUE(q.push("after"));
  auto a = q.try_claim();
  auto b = q.try_claim();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->text(), "before");
  EXPECT_EQ(b->text(), "after");
  EXPECT_EQ(q.ack(a->lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(b->lease), LeaseStatus::ok);

  // The name can be created afresh, independent of the old segment.
  Queue fresh = Queue::create(name, make_options(4));
  EXPECT_EQ(fresh.stats().pushed, 0u);
  ec = make_error_code(errc::system_error);
  EXPECT_TRUE(Queue::remove(name, ec));
  EXPECT_FALSE(ec) << ec.message();
}

// API contract: list() returns every queue (sorted), including ours, and not after remove.
TEST(Lifecycle, ListContainsName) {
  QueueName a("list");
  QueueName b("list");
  {
    Queue qa = Queue::create(a, make_options(2));
    Queue qb = Queue::create(b, make_options(2));
    const auto names = Queue::list();
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
    EXPECT_NE(std::find(names.begin(), names.end(), a.str()), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), b.str()), names.end());
  }
  ASSERT_TRUE(Queue::remove(a));
  const auto names = Queue::list();
  EXPECT_EQ(std::find(names.begin(), names.end(), a.str()), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), b.str()), names.end());
}

// API contract: options() reflects what is stored, for the creator and an opener.
TEST(Lifecycle, OptionsReflectStoredOptions) {
  QueueName name;
  const Options want = make_options(17, 333, 5, milliseconds{4321}, 0640);
  Queue q = Queue::create(name, want);
  Queue opened = Queue::open(name);
  for (const Options* got : {&q.options(), &opened.options()}) {
    EXPECT_EQ(got->capacity, 17u);
    EXPECT_EQ(got->max_payload, 333u);
    EXPECT_EQ(got->max_attempts, 5u);
    EXPECT_EQ(got->default_lease, milliseconds{4321});
    EXPECT_EQ(got->mode, 0640u);
  }
}

// API contract: open_or_create creates when missing, and an existing queue's own options win.
TEST(Lifecycle, OpenOrCreateKeepsExistingOptions) {
  QueueName name;
  Queue first = Queue::open_or_create(name, make_options(8, 100, 3));
  EXPECT_EQ(first.options().capacity, 8u);
  Queue second = Queue::open_or_create(name, make_options(16, 200, 0));
  EXPECT_EQ(second.options().capacity, 8u);
  EXPECT_EQ(second.options().max_payload, 100u);
  EXPECT_EQ(second.options().max_attempts, 3u);
  std::error_code ec;
  auto third = Queue::open_or_create(name, make_options(32), ec);
  ASSERT_TRUE(third.has_value()) << ec.message();
  EXPECT_EQ(third->options().capacity, 8u);
  ASSERT_TRUE(first.push("x"));
  auto job = third->try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->text(), "x");
}

// API contract: open_or_create is safe when many processes race on it: all
// succeed, exactly one segment is created, all see the same options.
TEST(Lifecycle, OpenOrCreateRaceBetweenProcesses) {
  Watchdog wd(60s, "OpenOrCreateRace");
  for (int round = 0; round < 5; ++round) {
    QueueName name("race");
    std::vector<pid_t> kids;
    for (int i = 0; i < 4; ++i) {
      kids.push_back(jobring::test::fork_child([&, i] {
        std::error_code ec;
        auto q = Queue::open_or_create(name, make_options(8u + static_cast<std::uint32_t>(i)), ec);
        if (!q) {
          std::fprintf(stderr, "open_or_create: %s\n", ec.message().c_str());
          return 1;
        }
        if (!q->push("from child")) return 2;
        return 0;
      }));
    }
    for (pid_t k : kids) EXPECT_EQ(jobring::test::wait_child(k), 0);
    Queue q = Queue::open(name);
    EXPECT_GE(q.options().capacity, 8u);
    EXPECT_LE(q.options().capacity, 11u);
    EXPECT_EQ(q.stats().pushed, 4u);
    EXPECT_EQ(q.stats().ready, 4u);
  }
}

// API contract: environment failure permission_denied — a user the mode does not let in.
TEST(Lifecycle, PermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  const pid_t kid = jobring::test::fork_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
    std::error_code ec;
    if (Queue::open(name, ec)) return 11;
    if (ec != errc::permission_denied) {
      std::fprintf(stderr, "open: %s\n", ec.message().c_str());
      return 12;
    }
    // /dev/shm is sticky: another user cannot unlink our segment either.
    ec.clear();
    if (Queue::remove(name, ec)) return 13;
    if (ec != errc::permission_denied) {
      std::fprintf(stderr, "remove: %s\n", ec.message().c_str());
      return 14;
    }
    return 0;
  });
  EXPECT_EQ(jobring::test::wait_child(kid), 0);
  EXPECT_TRUE(file_exists(segment_path(name)));
}

// ---------------------------------------------------------------------------
// Option bounds
// ---------------------------------------------------------------------------

void expect_invalid_options(const Options& o, const char* why) {
  SCOPED_TRACE(why);
  QueueName name("bounds");
  EXPECT_EQ(code_thrown([&] { (void)Queue::create(name, o); }), errc::invalid_options);
  std::error_code ec;
  EXPECT_FALSE(Queue::create(name, o, ec).has_value());
  EXPECT_EQ(ec, errc::invalid_options);
  ec.clear();
  EXPECT_FALSE(Queue::open_or_create(name, o, ec).has_value());
  EXPECT_EQ(ec, errc::invalid_options);
  // A refused create leaves nothing behind.
  EXPECT_FALSE(file_exists(segment_path(name)));
}

void expect_valid_options(const Options& o, const char* why) {
  SCOPED_TRACE(why);
  QueueName name("bounds");
  std::error_code ec;
  auto q = Queue::create(name, o, ec);
  ASSERT_TRUE(q.has_value()) << ec.message();
  EXPECT_EQ(q->options().capacity, o.capacity);
  EXPECT_EQ(q->options().max_payload, o.max_payload);
  EXPECT_EQ(q->options().default_lease, o.default_lease);
}

// API contract (Options): every bound rejected with invalid_options, every edge value accepted.
TEST(OptionBounds, OutOfRangeIsInvalidOptions) {
  using jobring::kMaxCapacity;
  using jobring::kMaxLease;
  using jobring::kMaxPayload;
  expect_invalid_options(make_options(0), "capacity 0");
  expect_invalid_options(make_options(kMaxCapacity + 1), "capacity > kMaxCapacity");
  expect_invalid_options(make_options(std::numeric_limits<std::uint32_t>::max()), "capacity 2^32-1");
  expect_invalid_options(make_options(4, 0), "max_payload 0");
  expect_invalid_options(make_options(4, kMaxPayload + 1), "max_payload > kMaxPayload");
  expect_invalid_options(make_options(4, std::numeric_limits<std::uint32_t>::max()), "max_payload 2^32-1");
  expect_invalid_options(make_options(4, 64, 0, milliseconds{0}), "default_lease 0");
  expect_invalid_options(make_options(4, 64, 0, milliseconds{-1}), "default_lease negative");
  expect_invalid_options(make_options(4, 64, 0, kMaxLease + milliseconds{1}), "default_lease > kMaxLease");
  // Each alone is in range, but capacity × slot size exceeds kMaxSegmentBytes:
  // slot_stride = 2^26 + 64, so 1024 slots are 2^36 + 64 KiB > 2^36.
  expect_invalid_options(make_options(1024, kMaxPayload), "segment > kMaxSegmentBytes");
  expect_invalid_options(make_options(kMaxCapacity, kMaxPayload), "both at maximum");
  Options bad_mode = make_options(4);
  bad_mode.mode = 010000;  // not permission bits
  expect_invalid_options(bad_mode, "mode outside 07777");
}

// API contract (Options): the edge values inside the bounds work.
TEST(OptionBounds, EdgeValuesAreValid) {
  expect_valid_options(make_options(1, 1), "capacity 1, max_payload 1");
  expect_valid_options(make_options(1, jobring::kMaxPayload), "max_payload = kMaxPayload");
  expect_valid_options(make_options(2, 64, 0, milliseconds{1}), "default_lease 1 ms");
  expect_valid_options(make_options(2, 64, 0, jobring::kMaxLease), "default_lease = kMaxLease");
  // kMaxCapacity with the smallest slot: ~2.1 GB sparse; only the bounds check
  // is asserted (a host without the room may refuse with system_error).
  QueueName name("bounds");
  std::error_code ec;
  auto q = Queue::create(name, make_options(jobring::kMaxCapacity, 1), ec);
  EXPECT_NE(ec, errc::invalid_options) << ec.message();
}

// API contract: a queue of capacity 1 and max_payload 1 works end to end.
TEST(OptionBounds, CapacityOneRoundTrip) {
  QueueName name;
  Queue q = Queue::create(name, make_options(1, 1));
  ASSERT_TRUE(q.push("a"));
  EXPECT_EQ(q.push("b").status, PushStatus::full);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->text(), "a");
  EXPECT_EQ(q.push("c").status, PushStatus::full);  // the leased job still holds the only slot
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  ASSERT_TRUE(q.push("c"));
}

// ---------------------------------------------------------------------------
// Push / claim / ack
// ---------------------------------------------------------------------------

// G2 (nothing lost) + memory ordering contract: the payload comes back byte for
// byte, including zero bytes; 0 bytes and exactly max_payload are allowed.
TEST(PushClaim, PayloadBytesIntact) {
  QueueName name;
  Queue q = Queue::create(name, make_options(8, 256));
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
  Queue q = Queue::create(name, make_options(4, 37));
  ASSERT_TRUE(q.push(std::string(37, 'x')));
  const std::string big(38, 'y');
  std::string what;
  EXPECT_EQ(code_thrown([&] { (void)q.push(big); }, &what), errc::payload_too_large);
  EXPECT_NE(what.find("37"), std::string::npos) << what;
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  std::error_code ec;
  const auto r = q.push(as_bytes(big), PushOptions{}, ec);
  EXPECT_EQ(ec, errc::payload_too_large);
  EXPECT_FALSE(r);
  EXPECT_EQ(q.stats().pushed, 1u);
  EXPECT_EQ(q.stats().ready, 1u);
  // And the good path through the error_code overload clears ec.
  ec = make_error_code(errc::system_error);
  EXPECT_TRUE(q.push(as_bytes("ok"), PushOptions{}, ec));
  EXPECT_FALSE(ec) << ec.message();
}

// G7 (bounded): a full queue answers PushStatus::full (no exception), and an
// ack makes room again. An empty queue answers ClaimStatus::empty / nullopt.
TEST(PushClaim, FullAndEmptyAreValues) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
  EXPECT_FALSE(q.try_claim().has_value());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.push("j" + std::to_string(i)));
  const auto full = q.push("overflow");
  EXPECT_EQ(full.status, PushStatus::full);
  EXPECT_FALSE(full);
  std::error_code ec;
  EXPECT_EQ(q.push(as_bytes("overflow"), PushOptions{}, ec).status, PushStatus::full);
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
  Queue q = Queue::create(name, make_options(kCap));
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
  Queue q = Queue::create(name, make_options(4, 64, 0, milliseconds{3'600'000}));
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
// Release, delays, head-of-line blocking
// ---------------------------------------------------------------------------

// API contract: release makes the job claimable again, attempt 2, same id and payload.
TEST(Release, ClaimableAgainWithAttemptTwo) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
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
// by a claim that ended less than `delay` after t0, and that it does show up.
void expect_invisible_then_claimable(Queue& q, Clock::time_point t0, milliseconds delay, JobId id) {
  Job job;
  const auto st = q.try_claim(job);  // immediately: must not be visible yet
  if (st == ClaimStatus::ok) {
    EXPECT_GE(Clock::now() - t0, delay - 1ms) << "delayed job claimed early";
  }
  EXPECT_EQ(q.stats().delayed + (st == ClaimStatus::ok ? 1u : 0u), 1u);
  const auto infos = q.peek(JobState::delayed);
  if (st != ClaimStatus::ok) {
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].id, id);
    EXPECT_GT(infos[0].ms_until, 0);
    EXPECT_LE(infos[0].ms_until, delay.count());
  }
  bool got = st == ClaimStatus::ok;
  got = got || eventually([&] {
          if (q.try_claim(job) != ClaimStatus::ok) return false;
          EXPECT_GE(Clock::now() - t0, delay - 1ms) << "delayed job claimed early";
          return true;
        });
  ASSERT_TRUE(got) << "delayed job never became claimable";
  EXPECT_EQ(job.id, id);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// API contract: release(lease, delay) hides the job for `delay`, then it is claimable.
// give_back is a release that does not count the attempt: on a queue with
// max_attempts = 1 the job given back is ready (release would dead-letter
// it), and the next claim is attempt 1 again. Fails if give_back counts.
TEST(GiveBack, DoesNotCountTheAttempt) {
  QueueName name;
  Options o = make_options(4);
  o.max_attempts = 1;
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
  Queue q = Queue::create(name, make_options(4));
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

TEST(Release, WithDelay) {
  Watchdog wd(60s, "Release.WithDelay");
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
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
  Queue q = Queue::create(name, make_options(4));
  const auto t0 = Clock::now();
  const auto pushed = q.push("later", delayed_by(300ms));
  ASSERT_TRUE(pushed);
  expect_invisible_then_claimable(q, t0, 300ms, pushed.id);
}

// API contract: delays out of 0..kMaxLease are invalid_argument (push throws / sets ec).
TEST(Release, PushDelayOutOfRange) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  EXPECT_EQ(code_thrown([&] { (void)q.push("x", delayed_by(milliseconds{-1})); }), errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.push("x", delayed_by(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  std::error_code ec;
  EXPECT_FALSE(q.push(as_bytes("x"), delayed_by(jobring::kMaxLease + 1ms), ec));
  EXPECT_EQ(ec, errc::invalid_argument);
  EXPECT_EQ(q.stats().pushed, 0u);
  EXPECT_EQ(q.stats().free, 4u);
  EXPECT_TRUE(q.push("x", delayed_by(jobring::kMaxLease)));  // the edge is valid
  EXPECT_EQ(q.stats().delayed, 1u);
}

// G5 (no head-of-line blocking): a delayed job in front does not stop the job behind it.
TEST(HeadOfLine, DelayedJobDoesNotBlock) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("delayed", delayed_by(1h)));
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
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("held"));
  ASSERT_TRUE(q.push("second"));
  ASSERT_TRUE(q.push("third"));
  auto held = q.try_claim(lease_for(jobring::kMaxLease));
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
  Queue q = Queue::create(name, make_options(2, 64, 1));
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
// Lease expiry and fencing
// ---------------------------------------------------------------------------

// G1 + G4 (fencing): a 1 ms lease runs out and the next claim takes the job
// over (attempt 2), never before the lease has run out; the first worker's
// ack / release / extend are then lease_lost and change nothing; the new
// lease still acks.
TEST(Lease, ExpiryTakeoverAndFencing) {
  Watchdog wd(60s, "Lease.ExpiryTakeoverAndFencing");
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  const auto pushed = q.push("payload");
  ASSERT_TRUE(pushed);
  const auto t0 = Clock::now();
  auto first = q.try_claim(lease_for(50ms));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->attempt, 1u);

  Job second;
  ASSERT_TRUE(eventually([&] { return q.try_claim(second, lease_for(1min)) == ClaimStatus::ok; }))
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
  EXPECT_EQ(fields(q.stats()), fields(before));
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
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("x"));
  auto a = q.try_claim(lease_for(1h));
  ASSERT_TRUE(a);
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(q.try_claim().has_value());
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.stats().expired, 0u);
}

// API contract (extend): a new token and deadline; the old token is then
// lease_lost; after ack, extend is lease_lost.
TEST(Lease, ExtendUpdatesTokenAndDeadline) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("x"));
  Job job;
  ASSERT_EQ(q.try_claim(job, lease_for(1s)), ClaimStatus::ok);
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
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("x"));
  ASSERT_TRUE(q.push("y"));
  Job job;
  ASSERT_EQ(q.try_claim(job, lease_for(1h)), ClaimStatus::ok);
  const Lease before = job.lease;
  EXPECT_EQ(code_thrown([&] { (void)q.extend(job, 0ms); }), errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.extend(job, -5ms); }), errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.extend(job, jobring::kMaxLease + 1ms); }), errc::invalid_argument);
  Lease l = job.lease;
  EXPECT_EQ(code_thrown([&] { (void)q.extend(l, 0ms); }), errc::invalid_argument);
  EXPECT_EQ(job.lease, before);
  EXPECT_EQ(l, before);

  Job other;
  EXPECT_EQ(code_thrown([&] { (void)q.try_claim(other, lease_for(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.try_claim(lease_for(jobring::kMaxLease + 1ms)); }),
            errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.try_claim(lease_for(-1ms)); }), errc::invalid_argument);
  EXPECT_EQ(q.stats().ready, 1u) << "a refused claim must not take the job";
  EXPECT_EQ(q.stats().claimed, 1u);

  // The edges are valid.
  EXPECT_EQ(q.extend(job, jobring::kMaxLease), LeaseStatus::ok);
  EXPECT_EQ(q.extend(job, 1ms), LeaseStatus::ok);
  EXPECT_EQ(q.extend(job, 1h), LeaseStatus::ok);
  ASSERT_EQ(q.try_claim(other, lease_for(jobring::kMaxLease)), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(other.lease), LeaseStatus::ok);
}

// G4: ack twice, a lease for a slot out of range, a default Lease — all
// lease_lost, nothing changed, no crash.
TEST(Lease, BogusLeasesAreLeaseLost) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4));
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
// Dead letters: max_attempts, requeue, remove_dead
// ---------------------------------------------------------------------------

// API contract (max_attempts, T8): claim+release twice with max_attempts 2 →
// dead: peek shows it, stats count it, it is not claimable.
TEST(DeadLetter, ByRelease) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4, 64, 2));
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
  Queue q = Queue::create(name, make_options(4, 64, 2));
  const auto pushed = q.push("slow");
  ASSERT_TRUE(pushed);
  auto first = q.try_claim(lease_for(1ms));
  ASSERT_TRUE(first);
  Job second;
  ASSERT_TRUE(eventually([&] { return q.try_claim(second, lease_for(1ms)) == ClaimStatus::ok; }));
  EXPECT_EQ(second.id, pushed.id);
  EXPECT_EQ(second.attempt, 2u);
  ASSERT_TRUE(eventually([&] {
    Job other;
    EXPECT_EQ(q.try_claim(other, lease_for(1min)), ClaimStatus::empty) << "attempt 3 of max 2";
    return q.stats().dead == 1;
  }));
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
  Queue q = Queue::create(name, make_options(4, 64, 1));
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
  Queue q = Queue::create(name, make_options(4, 64, 1));
  const auto pushed = q.push("ready");
  ASSERT_TRUE(pushed);
  const Stats before = q.stats();
  EXPECT_FALSE(q.requeue(pushed.id));
  EXPECT_FALSE(q.requeue(pushed.id + 1000));
  EXPECT_FALSE(q.requeue(0));
  EXPECT_FALSE(q.remove_dead(pushed.id));
  EXPECT_FALSE(q.remove_dead(0));
  EXPECT_EQ(fields(q.stats()), fields(before));
}

// API contract: requeue_dead requeues every dead job; remove_dead deletes one.
TEST(DeadLetter, RequeueDeadAndRemoveDead) {
  QueueName name;
  Queue q = Queue::create(name, make_options(8, 64, 1));
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
  auto h = q.try_claim(lease_for(1h));
  EXPECT_TRUE(h);
  if (h) p.held = h->lease;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(q.push("ready"));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(q.push("delayed", delayed_by(1h)));
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
  Queue q = Queue::create(name, make_options(16, 64, 1));
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
  Queue q = Queue::create(name, make_options(16, 64, 1));
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
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("x"));
  auto j = q.try_claim(lease_for(1ms));
  ASSERT_TRUE(j);
  ASSERT_TRUE(eventually([&] { return q.stats().expired == 1; }));
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
  Queue q = Queue::create(name, make_options(8, 64, 2));
  Stats s = q.stats();
  EXPECT_EQ(s.free, 8u);
  EXPECT_EQ(fields(s), (std::vector<std::uint64_t>{8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));

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
  auto b3 = q.try_claim(lease_for(1ms));
  ASSERT_TRUE(b3);
  Job b4;
  ASSERT_TRUE(eventually([&] { return q.try_claim(b4, lease_for(1min)) == ClaimStatus::ok; }));
  EXPECT_EQ(b4.attempt, 2u);
  ASSERT_EQ(q.ack(b4.lease), LeaseStatus::ok);
  // c, d ready and e delayed; purge the ready ones.
  ASSERT_TRUE(q.push("c"));
  ASSERT_TRUE(q.push("d"));
  ASSERT_TRUE(q.push("e", delayed_by(1h)));
  ASSERT_EQ(q.purge(PurgeWhat::ready), 2u);
  // f held, g ready.
  ASSERT_TRUE(q.push("f"));
  auto f = q.try_claim(lease_for(1h));
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
  Queue q = Queue::create(name, make_options(16, 64, 1));
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
  auto own = q.try_claim(lease_for(1h, Owner::process));
  const auto det_id = q.push("detached");
  auto det = q.try_claim(lease_for(1h, Owner::detached));
  const auto exp_id = q.push("expiring");
  auto exp = q.try_claim(lease_for(1ms));
  ASSERT_TRUE(own && det && exp);
  ASSERT_EQ(own->id, own_id.id);
  ASSERT_EQ(det->id, det_id.id);
  ASSERT_EQ(exp->id, exp_id.id);
  // ready and delayed
  std::vector<JobId> ready_ids;
  for (int i = 0; i < 5; ++i) ready_ids.push_back(q.push("ready" + std::to_string(i)).id);
  const auto delayed_id = q.push("later", delayed_by(1h));
  ASSERT_TRUE(delayed_id);
  ASSERT_TRUE(eventually([&] { return q.stats().expired == 1; }));

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
  Queue q = Queue::create(name, make_options(4));
  ASSERT_TRUE(q.push("x"));
  auto j = q.try_claim(lease_for(1h, Owner::detached));
  ASSERT_TRUE(j);
  auto parsed = Lease::parse(j->lease.to_string());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(q.extend(*parsed, 2h), LeaseStatus::ok);
  EXPECT_EQ(q.ack(*parsed), LeaseStatus::ok);
}

// ---------------------------------------------------------------------------
// Segment permissions
// ---------------------------------------------------------------------------

class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

mode_t file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

// G9: segments are created 0600 unless asked otherwise, whatever the umask;
// a mode asked for is honoured exactly (no umask applied).
TEST(SegmentMode, DefaultIs0600AndModeIsHonoured) {
  for (mode_t mask : {mode_t{0}, mode_t{077}, mode_t{022}}) {
    UmaskGuard guard(mask);
    {
      QueueName name("mode");
      Queue q = Queue::create(name);
      EXPECT_EQ(file_mode(segment_path(name)), 0600u) << "umask " << std::oct << mask;
      EXPECT_EQ(q.options().mode, 0600u);
    }
    {
      QueueName name("mode");
      Queue q = Queue::create(name, make_options(4, 64, 0, milliseconds{1000}, 0640));
      EXPECT_EQ(file_mode(segment_path(name)), 0640u) << "umask " << std::oct << mask;
      EXPECT_EQ(Queue::open(name).options().mode, 0640u);
    }
    {
      QueueName name("mode");
      Queue q = Queue::open_or_create(name, make_options(4));
      EXPECT_EQ(file_mode(segment_path(name)), 0600u) << "umask " << std::oct << mask;
    }
  }
}

// ---------------------------------------------------------------------------
// Batches: push_many, try_claim_many, claim_many, ack_many
// ---------------------------------------------------------------------------

// API contract (push_many): pushes in order until full, returns the count and
// the ids; a too-large payload anywhere throws before anything is pushed.
TEST(Batch, PushManyInOrderUntilFull) {
  QueueName name;
  Queue q = Queue::create(name, make_options(4, 8));
  const std::vector<std::string> texts{"p0", "p1", "p2", "p3", "p4", "p5"};
  std::vector<std::span<const std::byte>> payloads;
  for (const auto& t : texts) payloads.push_back(as_bytes(t));
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
  std::vector<std::span<const std::byte>> mixed{as_bytes("ok"), as_bytes(big)};
  EXPECT_EQ(code_thrown([&] { (void)q.push_many(mixed); }), errc::payload_too_large);
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
  Queue q = Queue::create(name, make_options(4));
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
  Queue q = Queue::create(name, make_options(4));
  auto t0 = Clock::now();
  ASSERT_TRUE(q.push("due", delayed_by(150ms)));
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
  Queue q = Queue::create(name, make_options(4));
  Job job;
  EXPECT_EQ(code_thrown([&] { (void)q.claim(job, -1ms); }), errc::invalid_argument);
  EXPECT_EQ(code_thrown([&] { (void)q.claim(job, jobring::kMaxLease + 1ms); }), errc::invalid_argument);
  PushOptions po;
  po.wait = -1ms;
  EXPECT_EQ(code_thrown([&] { (void)q.push("x", po); }), errc::invalid_argument);
  po.wait = jobring::kMaxLease + 1ms;
  EXPECT_EQ(code_thrown([&] { (void)q.push("x", po); }), errc::invalid_argument);
  EXPECT_EQ(q.stats().pushed, 0u);
}

// G7 (a full queue answers full, or waits if asked): push with a wait on a
// full queue returns full after the wait, and ok when an ack makes room.
TEST(Blocking, PushWaitsForRoom) {
  Watchdog wd(60s, "Blocking.PushWaitsForRoom");
  QueueName name;
  Queue q = Queue::create(name, make_options(2));
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
  Queue q = Queue::create(name, make_options(1));
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

// ---------------------------------------------------------------------------
// Move semantics
// ---------------------------------------------------------------------------

// API contract: Queue is movable; the moved-to object keeps working.
TEST(Lifecycle, MoveKeepsTheQueue) {
  QueueName name;
  Queue a = Queue::create(name, make_options(4));
  ASSERT_TRUE(a.push("one"));
  Queue b = std::move(a);
  EXPECT_EQ(b.name(), name.str());
  QueueName other;
  Queue c = Queue::create(other, make_options(2));
  c = std::move(b);
  EXPECT_EQ(c.name(), name.str());
  auto j = c.try_claim();
  ASSERT_TRUE(j);
  EXPECT_EQ(j->text(), "one");
  EXPECT_EQ(c.ack(j->lease), LeaseStatus::ok);
}

}  // namespace
