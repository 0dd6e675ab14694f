// Unit tests of a queue's lifecycle (lib/ring/open.cpp): create, open,
// open_or_create, remove, list, options and their bounds, the segment's
// permission bits, and moving a Queue. One process, no concurrency (the
// multi-process tests live in crash/). Each test names the guarantee of
// /work/shared/DESIGN.md (G1..G9) or the API contract it checks.
#include <dirent.h>
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

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

std::string segment_path(const std::string& name) { return "/dev/shm/jobring." + name; }

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// ---------------------------------------------------------------------------
// Lifecycle: create / open / open_or_create / remove / list / options
// ---------------------------------------------------------------------------

// API contract: create makes /dev/shm/jobring.NAME; open finds it; a second
// create of the same name is already_exists (throwing and error_code forms).
TEST(Lifecycle, CreateOpenAndAlreadyExists) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64});
  EXPECT_EQ(q.name(), name.str());
  EXPECT_TRUE(file_exists(segment_path(name)));

  std::string what;
  EXPECT_EQ(
      test::code_thrown([&] { (void)Queue::create(name, Options{.capacity = 8, .max_payload = 64}); }, &what),
      errc::already_exists);
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;

  std::error_code ec;
  auto again = Queue::create(name, Options{.capacity = 8, .max_payload = 64}, ec);
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
  EXPECT_EQ(test::code_thrown([&] { (void)Queue::open(name); }, &what), errc::not_found);
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  std::error_code ec;
  EXPECT_FALSE(Queue::open(name, ec).has_value());
  EXPECT_EQ(ec, errc::not_found);
}

// API contract: remove returns true once, false when missing (both overloads);
// a removed queue keeps working for handles that have it open.
TEST(Lifecycle, RemoveAndKeepUsingOpenHandle) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(q.push("before"));
  EXPECT_TRUE(Queue::remove(name));
  EXPECT_FALSE(file_exists(segment_path(name)));
  EXPECT_FALSE(Queue::remove(name));
  std::error_code ec;
  EXPECT_FALSE(Queue::remove(name, ec));
  EXPECT_TRUE(!ec || ec == errc::not_found) << ec.message();
  EXPECT_EQ(test::code_thrown([&] { (void)Queue::open(name); }), errc::not_found);

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
  Queue fresh = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
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
    Queue qa = Queue::create(a, Options{.capacity = 2, .max_payload = 64});
    Queue qb = Queue::create(b, Options{.capacity = 2, .max_payload = 64});
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
  const Options want{.capacity = 17,
                     .max_payload = 333,
                     .default_lease = milliseconds{4321},
                     .max_attempts = 5,
                     .mode = 0640};
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

// API contract: open_or_create creates when missing, and opens an existing
// queue when what is asked is what exists (dedup_keys 0 asks for the
// automatic size; mode is informative and never compared).
TEST(Lifecycle, OpenOrCreateOpensWhatExists) {
  QueueName name;
  const Options asked{.capacity = 8, .max_payload = 100, .max_attempts = 3};
  Queue first = Queue::open_or_create(name, asked);
  EXPECT_EQ(first.options().capacity, 8u);
  Options wider = asked;
  wider.mode = 0666;
  Queue second = Queue::open_or_create(name, wider);
  EXPECT_EQ(second.options().mode, 0600u);
  std::error_code ec;
  auto third = Queue::open_or_create(name, asked, ec);
  ASSERT_TRUE(third.has_value()) << ec.message();
  ASSERT_TRUE(first.push("x"));
  auto job = third->try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->text(), "x");
}

// Issue 13 item 10: open_or_create of an existing queue whose stored
// options differ from those asked — geometry (capacity, max_payload, the
// de-duplication table's size) or contract (max_attempts, default_lease,
// dedup_window) — is options_mismatch, in both forms, with a message that
// names each field that differs with both values and says what to do; the
// existing queue is untouched.
// Fails if open_or_create silently hands back a queue of other options.
TEST(Lifecycle, Item10_OpenOrCreateRefusesOtherOptions) {
  QueueName name;
  const Options stored{
      .capacity = 2, .max_payload = 64, .default_lease = milliseconds{5000}, .max_attempts = 3};
  Queue q = Queue::create(name, stored);
  ASSERT_TRUE(q.push("kept"));
  struct Case {
    const char* field;
    Options asked;
    const char* text;  // expected in the message
  };
  std::vector<Case> cases;
  auto with = [&](auto set) {
    Options o = stored;
    set(o);
    return o;
  };
  cases.push_back({"capacity", with([](Options& o) { o.capacity = 4096; }), "capacity 2 exists, 4096 asked"});
  cases.push_back(
      {"max_payload", with([](Options& o) { o.max_payload = 65; }), "max_payload 64 exists, 65 asked"});
  cases.push_back(
      {"dedup_keys", with([](Options& o) { o.dedup_keys = 64; }), "dedup_keys 16 exists, 64 asked"});
  cases.push_back(
      {"max_attempts", with([](Options& o) { o.max_attempts = 0; }), "max_attempts 3 exists, 0 asked"});
  cases.push_back({"default_lease", with([](Options& o) { o.default_lease = milliseconds{30000}; }),
                   "default_lease 5s exists, 30s asked"});
  cases.push_back({"dedup_window", with([](Options& o) { o.dedup_window = milliseconds{0}; }),
                   "dedup_window 5m exists, 0ms asked"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    std::error_code ec;
    EXPECT_FALSE(Queue::open_or_create(name, c.asked, ec).has_value());
    EXPECT_EQ(ec, errc::options_mismatch) << ec.message();
    std::string what;
    EXPECT_EQ(test::code_thrown([&] { (void)Queue::open_or_create(name, c.asked); }, &what),
              errc::options_mismatch);
    EXPECT_NE(what.find(c.text), std::string::npos) << what;
    EXPECT_NE(what.find("jobring rm " + name.str()), std::string::npos) << what;
    EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  }
  // Two fields at once: both named.
  std::string what;
  (void)test::code_thrown(
      [&] {
        (void)Queue::open_or_create(name, Options{.capacity = 16, .max_payload = 32, .max_attempts = 3});
      },
      &what);
  EXPECT_NE(what.find("capacity 2 exists, 16 asked"), std::string::npos) << what;
  EXPECT_NE(what.find("max_payload 64 exists, 32 asked"), std::string::npos) << what;
  // Untouched.
  EXPECT_EQ(Queue::open(name).options().capacity, 2u);
  EXPECT_EQ(q.stats().ready, 1u);
}

// API contract: open_or_create is safe when many processes race on it: all
// succeed, exactly one segment is created, all see the same options.
TEST(Lifecycle, OpenOrCreateRaceBetweenProcesses) {
  Watchdog wd(60s, "OpenOrCreateRace");
  for (int round = 0; round < 5; ++round) {
    QueueName name("race");
    std::vector<pid_t> kids;
    for (int i = 0; i < 4; ++i) {
      kids.push_back(jobring::test::fork_child([&] {
        std::error_code ec;
        auto q = Queue::open_or_create(name, Options{.capacity = 8, .max_payload = 64}, ec);
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
    EXPECT_EQ(q.options().capacity, 8u);
    EXPECT_EQ(q.stats().pushed, 4u);
    EXPECT_EQ(q.stats().ready, 4u);
  }
}

// API contract: environment failure permission_denied — a user the mode does not let in.
TEST(Lifecycle, PermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
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
  EXPECT_EQ(test::code_thrown([&] { (void)Queue::create(name, o); }), errc::invalid_options);
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
  expect_invalid_options(Options{.capacity = 0, .max_payload = 64}, "capacity 0");
  expect_invalid_options(Options{.capacity = kMaxCapacity + 1, .max_payload = 64}, "capacity > kMaxCapacity");
  expect_invalid_options(Options{.capacity = std::numeric_limits<std::uint32_t>::max(), .max_payload = 64},
                         "capacity 2^32-1");
  expect_invalid_options(Options{.capacity = 4, .max_payload = 0}, "max_payload 0");
  expect_invalid_options(Options{.capacity = 4, .max_payload = kMaxPayload + 1}, "max_payload > kMaxPayload");
  expect_invalid_options(Options{.capacity = 4, .max_payload = std::numeric_limits<std::uint32_t>::max()},
                         "max_payload 2^32-1");
  expect_invalid_options(Options{.capacity = 4, .max_payload = 64, .default_lease = milliseconds{0}},
                         "default_lease 0");
  expect_invalid_options(Options{.capacity = 4, .max_payload = 64, .default_lease = milliseconds{-1}},
                         "default_lease negative");
  expect_invalid_options(
      Options{.capacity = 4, .max_payload = 64, .default_lease = kMaxLease + milliseconds{1}},
      "default_lease > kMaxLease");
  // Each alone is in range, but capacity × slot size exceeds kMaxSegmentBytes:
  // slot_stride = 2^26 + 256 (meta, key and note areas), so 1024 slots are
  // 2^36 + 256 KiB > 2^36.
  expect_invalid_options(Options{.max_payload = kMaxPayload}, "segment > kMaxSegmentBytes");
  expect_invalid_options(Options{.capacity = kMaxCapacity, .max_payload = kMaxPayload}, "both at maximum");
  Options bad_mode{.capacity = 4, .max_payload = 64};
  bad_mode.mode = 010000;  // not permission bits
  expect_invalid_options(bad_mode, "mode outside 07777");
}

// API contract (Options): the edge values inside the bounds work.
TEST(OptionBounds, EdgeValuesAreValid) {
  expect_valid_options(Options{.capacity = 1, .max_payload = 1}, "capacity 1, max_payload 1");
  expect_valid_options(Options{.capacity = 1, .max_payload = jobring::kMaxPayload},
                       "max_payload = kMaxPayload");
  expect_valid_options(Options{.capacity = 2, .max_payload = 64, .default_lease = milliseconds{1}},
                       "default_lease 1 ms");
  expect_valid_options(Options{.capacity = 2, .max_payload = 64, .default_lease = jobring::kMaxLease},
                       "default_lease = kMaxLease");
  // kMaxCapacity with the smallest slot: ~2.1 GB sparse; only the bounds check
  // is asserted (a host without the room may refuse with system_error).
  QueueName name("bounds");
  std::error_code ec;
  auto q = Queue::create(name, Options{.capacity = jobring::kMaxCapacity, .max_payload = 1}, ec);
  EXPECT_NE(ec, errc::invalid_options) << ec.message();
}

// API contract: a queue of capacity 1 and max_payload 1 works end to end.
TEST(OptionBounds, CapacityOneRoundTrip) {
  QueueName name;
  Queue q = Queue::create(name, Options{.capacity = 1, .max_payload = 1});
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
      Queue q = Queue::create(
          name, Options{.capacity = 4, .max_payload = 64, .default_lease = milliseconds{1000}, .mode = 0640});
      EXPECT_EQ(file_mode(segment_path(name)), 0640u) << "umask " << std::oct << mask;
      EXPECT_EQ(Queue::open(name).options().mode, 0640u);
    }
    {
      QueueName name("mode");
      Queue q = Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 64});
      EXPECT_EQ(file_mode(segment_path(name)), 0600u) << "umask " << std::oct << mask;
    }
  }
}

// ---------------------------------------------------------------------------
// Move semantics
// ---------------------------------------------------------------------------

// API contract: Queue is movable; the moved-to object keeps working.
TEST(Lifecycle, MoveKeepsTheQueue) {
  QueueName name;
  Queue a = Queue::create(name, Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(a.push("one"));
  Queue b = std::move(a);
  EXPECT_EQ(b.name(), name.str());
  QueueName other;
  Queue c = Queue::create(other, Options{.capacity = 2, .max_payload = 64});
  c = std::move(b);
  EXPECT_EQ(c.name(), name.str());
  auto j = c.try_claim();
  ASSERT_TRUE(j);
  EXPECT_EQ(j->text(), "one");
  EXPECT_EQ(c.ack(j->lease), LeaseStatus::ok);
}

}  // namespace
}  // namespace jobring

namespace jobring {
namespace {

std::size_t open_descriptors() {
  std::size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.' ? 1 : 0;
  ::closedir(d);
  return n;
}

// Guarantee 7 (bounded): a handle holds its descriptors (the segment's, and
// its liveness lock's) only while it lives. A creator that maps its segment
// again by name once it is linked must not open a second lock descriptor: a
// leak of one per create ran a fuzzer out of descriptors.
TEST(Lifecycle, HandlesLeakNoDescriptors) {
  test::QueueName name("fds");
  const std::size_t before = open_descriptors();
  for (int i = 0; i < 50; ++i) {
    Queue::remove(name);
    Queue a = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
    Queue b = Queue::open(name);
    Queue c = Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 8});
    ASSERT_TRUE(a.push("x"));
    ASSERT_TRUE(b.try_claim().has_value());
    (void)c.stats();
  }
  Queue::remove(name);
  EXPECT_EQ(open_descriptors(), before);
}

}  // namespace
}  // namespace jobring
