// Access control and bad input (guarantee 9, issue 8): who may open a queue,
// what a hostile /dev/shm entry does to open / create, and that refusals of
// bad options, payloads and versions say what the limit is.
//
// Already covered elsewhere (not repeated here):
//   - names with '/', '..', NUL, over-long, non-ASCII, ... refused by every
//     entry point: ring/test_segment.cpp Names.InvalidNamesAreRefused; the edges
//     that are valid: Names.ValidEdgeNames;
//   - 0600 by default and a 0640 mode honoured whatever the umask:
//     ring/test_open.cpp SegmentMode.DefaultIs0600AndModeIsHonoured; the CLI's
//     --mode: the CLI's tests;
//   - another user cannot open or remove a 0600 queue (error code only):
//     ring/test_open.cpp Lifecycle.PermissionDenied;
//   - capacity × slot size over kMaxSegmentBytes, mode outside 07777:
//     ring/test_open.cpp OptionBounds.OutOfRangeIsInvalidOptions;
//   - push() of max_payload + 1 bytes names the limit:
//     ring/test_push_claim.cpp PushClaim.PayloadTooLarge;
//   - another layout version is incompatible_version (code only):
//     ring/test_segment.cpp Crafted.WrongVersionIsIncompatible.
//
// The tests that switch to another user need root: they fork a child that
// drops to nobody (uid/gid 65534) and are skipped when not run as root. The
// child never uses gtest assertions: it reports through its exit status and
// stderr, and the parent asserts.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::errc;
using jobring::Job;
using jobring::LeaseStatus;
using jobring::milliseconds;
using jobring::Options;
using jobring::PushOptions;
using jobring::Queue;
using jobring::test::QueueName;
using jobring::test::Watchdog;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

std::string segment_path(const std::string& name) { return "/dev/shm/jobring." + name; }

mode_t file_mode(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

// Runs `body` in a forked child as nobody:nogroup (no supplementary groups)
// and returns its exit status; 90 if the switch itself failed.
int as_nobody(const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  const pid_t pid = jobring::test::fork_child([&] {
    jobring::test::die_with_parent(parent);
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) return 90;
    if (::geteuid() != kNobody) return 90;
    return body();
  });
  return jobring::test::wait_child(pid);
}

// In a child: 0 if `ec` is `want`, else prints what it got and returns `fail`.
int expect_code(const char* what, const std::error_code& ec, errc want, int fail) {
  if (ec == want) return 0;
  std::fprintf(stderr, "%s: expected %s, got %s\n", what, jobring::make_error_code(want).message().c_str(),
               ec ? ec.message().c_str() : "success");
  return fail;
}

#define SKIP_UNLESS_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to another user"

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

// G9: Options::mode is the segment file's mode exactly (no umask applied),
// for modes wider and narrower than the default, through create and through
// open_or_create when it creates; options() reports it after open.
// Fails if the umask were applied, or the mode ignored or widened.
TEST(AccessMode, EveryModeIsHonouredExactly) {
  for (mode_t mask : {mode_t{022}, mode_t{077}, mode_t{0}}) {
    UmaskGuard guard(mask);
    for (unsigned mode : {0600u, 0640u, 0660u, 0644u, 0666u, 0604u, 0606u}) {
      SCOPED_TRACE(testing::Message() << "mode " << std::oct << mode << " umask " << mask);
      {
        QueueName name("mode");
        Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .mode = mode});
        EXPECT_EQ(file_mode(segment_path(name)), mode);
        EXPECT_EQ(q.options().mode, mode);
        EXPECT_EQ(Queue::open(name).options().mode, mode);
      }
      {
        QueueName name("mode");
        Queue q = Queue::open_or_create(name, Options{.capacity = 8, .max_payload = 64, .mode = mode});
        EXPECT_EQ(file_mode(segment_path(name)), mode);
        // The second open_or_create opens: the existing mode stays.
        Queue again = Queue::open_or_create(name, Options{.capacity = 8, .max_payload = 64, .mode = 0666});
        EXPECT_EQ(file_mode(segment_path(name)), mode);
        EXPECT_EQ(again.options().mode, mode);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Another user
// ---------------------------------------------------------------------------

// G9: a process of another user cannot open a 0600 queue, by any entry point:
// open and open_or_create say permission_denied (open_or_create must not
// report "created" or replace the queue), create says already_exists, and the
// message names the queue and says what to do. The queue is untouched.
// Fails if the mode let others in, or the error were unclear or another code.
TEST(AccessUser, OtherUserCannotOpenPrivateQueue) {
  SKIP_UNLESS_ROOT();
  QueueName name("priv");
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64});
  ASSERT_TRUE(q.push("root's job"));
  const std::string n = name.str();
  const int rc = as_nobody([&] {
    std::error_code ec;
    if (Queue::open(n, ec)) return 10;
    if (int r = expect_code("open", ec, errc::permission_denied, 11)) return r;
    try {
      (void)Queue::open(n);
      return 12;
    } catch (const jobring::error& e) {
      const std::string what = e.what();
      // The message names the queue, the problem and the way out.
      if (what.find(n) == std::string::npos || what.find("permission denied") == std::string::npos ||
          what.find("mode") == std::string::npos) {
        std::fprintf(stderr, "unclear message: %s\n", what.c_str());
        return 13;
      }
    }
    ec.clear();
    if (Queue::open_or_create(n, Options{.capacity = 8, .max_payload = 64, .mode = 0666}, ec)) return 14;
    if (int r = expect_code("open_or_create", ec, errc::permission_denied, 15)) return r;
    ec.clear();
    if (Queue::create(n, Options{.capacity = 8, .max_payload = 64, .mode = 0666}, ec)) return 16;
    if (int r = expect_code("create", ec, errc::already_exists, 17)) return r;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child failed at step " << rc << " (90: could not switch to nobody)";
  // Nothing changed: same file, same mode, the job still there.
  EXPECT_EQ(file_mode(segment_path(name)), 0600u);
  EXPECT_EQ(Queue::open(name).stats().ready, 1u);
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "root's job");
}

// API contract: a queue created 0666 is usable by every user: a job pushed by
// root is claimed and acked by nobody, and a job nobody pushes reaches root.
// Fails if a wider mode were not honoured, or anything in open/push/claim/
// ack needed the creator's identity.
TEST(AccessUser, OtherUserUsesWorldWritableQueue) {
  SKIP_UNLESS_ROOT();
  QueueName name("shared");
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .mode = 0666});
  ASSERT_TRUE(q.push("from root"));
  const std::string n = name.str();
  const int rc = as_nobody([&] {
    std::error_code ec;
    auto mine = Queue::open(n, ec);
    if (!mine) {
      std::fprintf(stderr, "open: %s\n", ec.message().c_str());
      return 10;
    }
    Job job;
    if (mine->try_claim(job) != ClaimStatus::ok || job.text() != "from root") return 13;
    if (mine->ack(job.lease) != LeaseStatus::ok) return 14;
    if (!mine->push("from nobody")) return 15;
    return 0;
  });
  ASSERT_EQ(rc, 0) << "child failed at step " << rc << " (90: could not switch to nobody)";
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "from nobody");
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().acked, 2u);
}

// G9: the group bits work as the mode says: with 0660 and the segment's
// group set to nobody's group, nobody may use the queue; with 0640 (group
// may only read) or 0644 (others may only read) it may not, since a queue
// is always mapped read-write; the refusal is permission_denied.
// Fails if group permissions were ignored, or read-only access let a
// process in (or failed with another code).
TEST(AccessUser, GroupAndReadOnlyBits) {
  SKIP_UNLESS_ROOT();
  struct Case {
    unsigned mode;
    bool group_nogroup;
    bool may_open;
  };
  for (const Case c : {Case{0660, true, true}, Case{0640, true, false}, Case{0600, true, false},
                       Case{0644, false, false}, Case{0666, false, true}}) {
    SCOPED_TRACE(testing::Message() << "mode " << std::oct << c.mode
                                    << (c.group_nogroup ? " group nogroup" : ""));
    QueueName name("group");
    Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .mode = c.mode});
    if (c.group_nogroup) {
      ASSERT_EQ(::chown(segment_path(name).c_str(), static_cast<uid_t>(-1), kNogroup), 0);
    }
    const std::string n = name.str();
    const bool may_open = c.may_open;
    const int rc = as_nobody([&] {
      std::error_code ec;
      auto mine = Queue::open(n, ec);
      if (may_open) return mine && mine->push("x") ? 0 : 10;
      if (mine) return 11;
      return expect_code("open", ec, errc::permission_denied, 12);
    });
    EXPECT_EQ(rc, 0) << "child failed at step " << rc << " (90: could not switch to nobody)";
  }
}

// ---------------------------------------------------------------------------
// Hostile /dev/shm entries
// ---------------------------------------------------------------------------

// Returns the file's contents (for "unchanged" checks).
std::string contents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<missing>";
  std::string s = jobring::test::read_to_eof(fd);
  ::close(fd);
  return s;
}

// Checks that every entry point refuses the entry at the queue's path —
// open and open_or_create with not_a_queue and a message that says what is
// there, create with already_exists — and leaves `target` (what a symlink
// points to; empty: nothing to compare) as it was.
void expect_refused_and_untouched(const std::string& name, const std::string& target,
                                  const char* what_is_there) {
  const std::string before = target.empty() ? "" : contents(target);
  std::error_code ec;
  EXPECT_FALSE(Queue::open(name, ec).has_value());
  EXPECT_EQ(ec, errc::not_a_queue) << ec.message();
  try {
    (void)Queue::open(name);
    ADD_FAILURE() << "open succeeded";
  } catch (const jobring::error& e) {
    EXPECT_NE(std::string(e.what()).find(what_is_there), std::string::npos) << e.what();
  }
  ec.clear();
  EXPECT_FALSE(Queue::create(name, Options{.capacity = 8, .max_payload = 64, .mode = 0666}, ec).has_value());
  EXPECT_EQ(ec, errc::already_exists) << ec.message();
  ec.clear();
  EXPECT_FALSE(
      Queue::open_or_create(name, Options{.capacity = 8, .max_payload = 64, .mode = 0666}, ec).has_value());
  EXPECT_EQ(ec, errc::not_a_queue) << ec.message();
  if (!target.empty()) {
    EXPECT_EQ(contents(target), before) << "the entry's target was modified";
  }
}

// Issue 14 item 9: removing a queue is not a matter of its mode (/dev/shm is
// sticky: only the owner or root may unlink), so the error says who can, and
// does not advise a wider mode, even for a queue every user may write.
TEST(AccessUser, Item9_RemoveDeniedSaysWhoCanNotAWiderMode) {
  SKIP_UNLESS_ROOT();
  QueueName name("rmdenied");
  (void)Queue::create(name, Options{.capacity = 8, .max_payload = 64, .mode = 0666});
  const std::string n = name.str();
  const int rc = as_nobody([&] {
    try {
      (void)Queue::remove(n);
      return 10;
    } catch (const jobring::error& e) {
      const std::string what = e.what();
      if (e.code() != errc::permission_denied) return 11;
      if (what.find("only its owner, user root (uid 0) or root") == std::string::npos ||
          what.find("wider mode") != std::string::npos) {
        std::fprintf(stderr, "unhelpful message: %s\n", what.c_str());
        return 12;
      }
    }
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child failed at step " << rc << " (90: could not switch to nobody)";
  EXPECT_TRUE(Queue::remove(name));
}

// G9: a symlink planted at /dev/shm/jobring.NAME — by root or by another
// user — is never followed: open and open_or_create fail with not_a_queue
// ("is a symbolic link"), create says already_exists, the file it points to
// keeps its contents and size (no ftruncate, no header written), and
// remove() unlinks the link only.
// Fails if any entry point followed the link (e.g. open_or_create truncating
// and initialising someone else's file as a queue).
TEST(AccessHostile, SymlinkIsNeverFollowed) {
  Watchdog dog(60s, "AccessHostile.SymlinkIsNeverFollowed");
  jobring::test::TempFile target("victim");
  {
    const int fd = ::open(target.path().c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(jobring::test::write_all(fd, "precious data\n", 14));
    ::close(fd);
  }
  {
    QueueName name("link");
    ASSERT_EQ(::symlink(target.path().c_str(), segment_path(name).c_str()), 0) << std::strerror(errno);
    expect_refused_and_untouched(name, target.path(), "symbolic link");
    EXPECT_TRUE(Queue::remove(name));
    struct stat st {};
    EXPECT_NE(::lstat(segment_path(name).c_str(), &st), 0) << "the link is still there";
    EXPECT_EQ(contents(target.path()), "precious data\n") << "remove() followed the link";
  }
  if (::geteuid() == 0) {
    // The attack proper: another user plants the link, root opens the name.
    QueueName name("link");
    ASSERT_EQ(::chmod(target.path().c_str(), 0644), 0);
    const std::string link = segment_path(name), to = target.path();
    const int rc = as_nobody([&] { return ::symlink(to.c_str(), link.c_str()) == 0 ? 0 : 10; });
    ASSERT_EQ(rc, 0);
    expect_refused_and_untouched(name, target.path(), "symbolic link");
  }
}

// G9: a FIFO or a directory at /dev/shm/jobring.NAME is refused by open and
// open_or_create at once with not_a_queue, saying what is there (anyone may
// make a FIFO in /dev/shm); create says already_exists.
// Fails if opening hung (the Watchdog aborts) or succeeded, or if the FIFO
// were taken for a half-made segment (incomplete_segment after a 1 s wait) or
// the directory for a bad name (invalid_name).
TEST(AccessHostile, FifoOrDirectoryIsRefused) {
  Watchdog dog(60s, "AccessHostile.FifoOrDirectoryIsRefused");
  {
    QueueName name("fifo");
    ASSERT_EQ(::mkfifo(segment_path(name).c_str(), 0600), 0) << std::strerror(errno);
    expect_refused_and_untouched(name, "", "not a regular file");  // (reading a FIFO would block this test)
    struct stat st {};
    EXPECT_EQ(::lstat(segment_path(name).c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
    ::unlink(segment_path(name).c_str());
  }
  {
    QueueName name("dir");
    ASSERT_EQ(::mkdir(segment_path(name).c_str(), 0700), 0) << std::strerror(errno);
    expect_refused_and_untouched(name, "", "is a directory");
    ::rmdir(segment_path(name).c_str());
  }
}

// ---------------------------------------------------------------------------
// Sizes and limits in messages
// ---------------------------------------------------------------------------

// API contract: options whose sizes add up past kMaxSegmentBytes are refused
// with invalid_options and a message naming the limit, also when it is the
// de-duplication table that tips the total over (capacity × slot size alone
// fits); dedup_keys outside its range is refused; in range it is rounded up
// to whole buckets. Nothing is created.
// Fails if the key table were left out of the size check (a segment over the
// limit would be created), or the message lacked the limit.
TEST(AccessLimits, SegmentSizeIncludesTheKeyTable) {
  // slot stride = round_up(64 + 64 + 128 + 65216, 64) = 65472 = 2^16 - 64, so the
  // 2^20 slots take 2^36 - 2^26 bytes; states (2^23) and the header fit too,
  // but the default key table (2 × capacity entries × 32 bytes = 2^26) does not.
  Options o{.capacity = 1u << 20, .max_payload = 65216};
  static_assert(jobring::detail::geometry(1u << 20, 65216, 0).slot_stride == 65472);
  QueueName name("limits");
  std::string what;
  try {
    (void)Queue::create(name, o);
    ADD_FAILURE() << "created a segment over kMaxSegmentBytes";
  } catch (const jobring::error& e) {
    EXPECT_EQ(e.code(), errc::invalid_options);
    what = e.what();
  }
  EXPECT_NE(what.find(std::to_string(jobring::kMaxSegmentBytes)), std::string::npos) << what;
  struct stat st {};
  EXPECT_NE(::stat(segment_path(name).c_str(), &st), 0) << "a refused create left a file";

  for (std::uint32_t keys : {1u, jobring::kMaxKeyCapacity + 1}) {
    SCOPED_TRACE(keys);
    Options bad{.capacity = 8, .max_payload = 64, .dedup_keys = keys};
    std::error_code ec;
    EXPECT_FALSE(Queue::create(name, bad, ec).has_value());
    EXPECT_EQ(ec, errc::invalid_options);
  }
  Options odd{.capacity = 8, .max_payload = 64, .dedup_keys = jobring::detail::kKeyWays + 1};
  Queue q = Queue::create(name, odd);
  EXPECT_EQ(q.options().dedup_keys, 2 * jobring::detail::kKeyWays);
}

// API contract: a payload over max_payload is refused with payload_too_large
// by push (error_code overload) and push_many, whose message names the size
// and the limit; push_many pushes nothing when any payload is too large. A
// key over kMaxKeyLength is refused with a message naming that limit.
// Fails if a too-large payload were truncated or partly pushed, or the
// message lacked the numbers.
TEST(AccessLimits, OversizePayloadAndKeyNameTheLimit) {
  QueueName name("limits");
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64});  // max_payload 64
  const std::string ok(64, 'a'), big(65, 'b');
  std::error_code ec;
  const auto r = q.push(std::as_bytes(std::span<const char>(big)), PushOptions{}, ec);
  EXPECT_FALSE(r);
  EXPECT_EQ(ec, errc::payload_too_large);

  const std::vector<std::span<const std::byte>> batch{std::as_bytes(std::span<const char>(ok)),
                                                      std::as_bytes(std::span<const char>(big))};
  try {
    (void)q.push_many(batch);
    ADD_FAILURE() << "push_many accepted a payload over max_payload";
  } catch (const jobring::error& e) {
    EXPECT_EQ(e.code(), errc::payload_too_large);
    const std::string what = e.what();
    EXPECT_NE(what.find("65"), std::string::npos) << what;
    EXPECT_NE(what.find("64"), std::string::npos) << what;
    EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  }
  EXPECT_EQ(q.stats().pushed, 0u) << "push_many pushed part of a refused batch";
  EXPECT_EQ(q.stats().ready, 0u);

  const std::string long_key(jobring::kMaxKeyLength + 1, 'k');
  PushOptions po;
  po.key = long_key;
  try {
    (void)q.push("x", po);
    ADD_FAILURE() << "a key over kMaxKeyLength was accepted";
  } catch (const jobring::error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(jobring::kMaxKeyLength)), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(q.stats().pushed, 0u);
}

// ---------------------------------------------------------------------------
// Layout versions
// ---------------------------------------------------------------------------

// Rewrites the layout version field of `name`'s segment file in place.
void set_layout_version(const std::string& name, std::uint32_t version) {
  const int fd = ::open(segment_path(name).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(
      ::pwrite(fd, &version, sizeof version, offsetof(jobring::detail::Header, identity.layout_version)),
      static_cast<ssize_t>(sizeof version));
  ::close(fd);
}

// G9: a segment of a newer layout version is refused with
// incompatible_version and a message that says it is newer (and that this
// library reads another version); an older one says older. Both name the queue.
// Fails if the message did not tell the user which way the mismatch goes.
TEST(AccessVersion, NewerAndOlderLayoutsSaySo) {
  // Layouts 6 (memory) and 7 (file-backed) are read; 4 and 5 (before the
  // tally blocks) are older.
  const std::uint32_t ours = jobring::detail::kLayoutVersion;
  const std::uint32_t newest = jobring::detail::kDurableLayoutVersion;
  struct Case {
    std::uint32_t version;
    const char* word;
  };
  for (const Case c :
       {Case{newest + 1, "newer"}, Case{newest + 100, "newer"}, Case{ours - 1, "older"}, Case{4, "older"}}) {
    SCOPED_TRACE(c.version);
    QueueName name("version");
    { Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64}); }
    set_layout_version(name, c.version);
    std::error_code ec;
    EXPECT_FALSE(Queue::open(name, ec).has_value());
    EXPECT_EQ(ec, errc::incompatible_version);
    try {
      (void)Queue::open(name);
      ADD_FAILURE() << "opened a segment of layout version " << c.version;
    } catch (const jobring::error& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.code(), errc::incompatible_version);
      EXPECT_NE(what.find(c.word), std::string::npos) << what;
      EXPECT_NE(what.find(std::to_string(c.version)), std::string::npos) << what;
      EXPECT_NE(what.find(name.str()), std::string::npos) << what;
    }
    // open_or_create must not "repair" it by creating over it.
    ec.clear();
    EXPECT_FALSE(Queue::open_or_create(name, Options{.capacity = 8, .max_payload = 64}, ec).has_value());
    EXPECT_EQ(ec, errc::incompatible_version);
  }
}

}  // namespace
