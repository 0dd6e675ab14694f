// The access model (issue 14 item 2): a queue made by an ordinary user is
// shared through its group (Options::group, mode 0660 by default), and a
// queue the mode lets a user read but not write is inspected read-only
// (QueueView). The janitor's side is tests/daemon/test_janitor_access.cpp.
//
// Tests that act as other users need root: they fork children that become
// throwaway uids and gids (support/as_user.hpp) and report through their exit
// status and stderr; the parent asserts.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "support/as_user.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using test::Identity;
using test::kApp;
using test::kAppAlone;
using test::kAppUid;
using test::kPeer;
using test::kPeerUid;
using test::kSharedGid;
using test::kStranger;
using test::QueueName;

// Runs `body` in a forked child as `who`; its exit status (90: the switch failed).
int as(const Identity& who, const std::function<int()>& body) {
  return test::wait_child(test::spawn_tied([&] { return test::become(who) ? body() : 90; }));
}

struct stat file_of(const std::string& name) {
  struct stat st {};
  if (::stat(segment_path(name).c_str(), &st) != 0) st.st_ino = 0;
  return st;
}

bool mentions(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// In a child: the message of what `f` throws; "" if it throws nothing or something else.
template <class F>
std::string thrown(F&& f) {
  try {
    f();
  } catch (const jobring::error& e) {
    return e.what();
  }
  return "";
}

// The permissions ("r--s", "rw-s") of this process's mappings of `path`; "" if none.
std::string mapping_of(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string out;
  for (std::string line; std::getline(maps, line);)
    if (line.ends_with(path)) out += line.substr(line.find(' ') + 1, 4) + " ";
  return out;
}

const Options kSmall{.capacity = 8, .max_payload = 64};

// Item 2: an ordinary user who is in group G creates a queue with group G —
// by create and by open_or_create — and gets a segment owned by itself, of
// group G, mode 0660 (the default with a group) or the mode it asked for.
// Fails without Options::group (the file keeps the creator's group and 0600,
// and the janitor in G cannot open it).
TEST(AccessGroup, Item2_OrdinaryUserCreatesAQueueOfItsGroup) {
  JOBRING_SKIP_UNLESS_ROOT();
  QueueName a("group"), b("group"), c("group");
  const std::string gid = std::to_string(kSharedGid);
  const int rc = as(kApp, [&] {
    Options o = kSmall;
    o.group = gid;
    if (Queue::create(a.str(), o).options().mode != 0660) return 10;
    if (Queue::open_or_create(b.str(), o).options().mode != 0660) return 11;
    o.mode = 0640;
    if (Queue::create(c.str(), o).options().mode != 0640) return 12;
    return 0;
  });
  ASSERT_EQ(rc, 0) << "child failed at step " << rc;
  for (const auto* q : {&a, &b, &c}) {
    const struct stat st = file_of(q->str());
    EXPECT_EQ(st.st_uid, kAppUid) << q->str();
    EXPECT_EQ(st.st_gid, kSharedGid) << q->str();
    EXPECT_EQ(st.st_mode & 07777, q == &c ? 0640u : 0660u) << q->str();
  }
}

// Item 2: a group given by name is looked up; no group still means 0600 and
// the creator's group; an unknown name is invalid_options saying so, and
// nothing is created. Root may give any group.
TEST(AccessGroup, Item2_GroupByNameDefaultsAndUnknownGroup) {
  QueueName plain("group"), unknown("group");
  Queue q = Queue::create(plain, kSmall);
  EXPECT_EQ(q.options().mode, 0600u);
  EXPECT_EQ(file_of(plain).st_gid, ::getegid());
  Options o = kSmall;
  o.group = "jobring-test-no-such-group";
  std::error_code ec;
  EXPECT_FALSE(Queue::create(unknown, o, ec));
  EXPECT_EQ(ec, errc::invalid_options);
  const std::string what = thrown([&] { (void)Queue::create(unknown, o); });
  EXPECT_TRUE(mentions(what, "no group named 'jobring-test-no-such-group'")) << what;
  EXPECT_EQ(file_of(unknown).st_ino, 0u) << "a refused create left a file";
  if (::geteuid() != 0) return;
  QueueName named("group");
  o.group = "nogroup";  // Debian's group 65534
  if (::getgrnam("nogroup") == nullptr) GTEST_SKIP() << "no group named nogroup here";
  (void)Queue::create(named, o);
  EXPECT_EQ(file_of(named).st_gid, ::getgrnam("nogroup")->gr_gid);
  EXPECT_EQ(file_of(named).st_mode & 07777, 0660u);
}

// Item 2: a user outside the group is refused with permission_denied and a
// message that says how to join it; the name never appears, because the
// group is set (fchown) before the segment is linked to it.
// Fails if the group were set after the link (a queue of the wrong group, or
// one left behind by the failed create), or the message lacked the remedy.
TEST(AccessGroup, Item2_NonMemberIsRefusedAndNoSegmentAppears) {
  JOBRING_SKIP_UNLESS_ROOT();
  QueueName name("group");
  const std::string n = name.str(), gid = std::to_string(kSharedGid);
  const int rc = as(kAppAlone, [&] {
    Options o = kSmall;
    o.group = gid;
    std::error_code ec;
    if (Queue::create(n, o, ec) || ec != errc::permission_denied) return 10;
    if (Queue::open_or_create(n, o, ec) || ec != errc::permission_denied) return 11;
    const std::string what = thrown([&] { (void)Queue::create(n, o); });
    if (!mentions(what, "usermod -aG " + gid + " $USER") || !mentions(what, "log in again")) {
      std::fprintf(stderr, "unclear message: %s\n", what.c_str());
      return 12;
    }
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child failed at step " << rc;
  EXPECT_EQ(file_of(name).st_ino, 0u) << "a refused create left a segment at the name";
}

// Item 2: a queue of group G, mode 0660, made by one user, is used by another
// member of G (push, claim, ack); a user outside G is refused, and told who
// may open it and how to join.
TEST(AccessGroup, Item2_MembersShareTheQueueOthersAreToldHowToJoin) {
  JOBRING_SKIP_UNLESS_ROOT();
  QueueName name("group");
  const std::string n = name.str(), gid = std::to_string(kSharedGid);
  ASSERT_EQ(as(kApp,
               [&] {
                 Options o = kSmall;
                 o.group = gid;
                 return Queue::create(n, o).push("from app") ? 0 : 10;
               }),
            0);
  EXPECT_EQ(as(kPeer,
               [&] {
                 Queue q = Queue::open(n);
                 auto job = q.try_claim();
                 if (!job || job->text() != "from app") return 10;
                 return q.ack(job->lease) == LeaseStatus::ok && q.push("from peer") ? 0 : 11;
               }),
            0);
  EXPECT_EQ(as(kStranger,
               [&] {
                 const std::string what = thrown([&] { (void)Queue::open(n); });
                 if (mentions(what, "group " + gid) && mentions(what, "usermod -aG " + gid)) return 0;
                 std::fprintf(stderr, "unclear message: %s\n", what.c_str());
                 return 10;
               }),
            0);
  EXPECT_EQ(QueueView::open(name).stats().ready, 1u);
}

// Item 2: a queue whose mode lets others read (0644) is inspected read-only
// by another user: QueueView opens it (mapped read-only, "r--s"), stats and
// peek see its jobs; Queue::open, which needs write, is permission_denied
// and says the user may only read it. A 0600 queue is refused to both.
// Fails if stat needed write permission (as before: `jobring stat` of a 0644
// queue was permission denied), or if the view mapped the segment writable.
TEST(AccessReadOnly, Item2_AnotherUserInspectsAReadableQueueReadOnly) {
  JOBRING_SKIP_UNLESS_ROOT();
  QueueName readable("ro"), secret("ro");
  Queue q = Queue::create(readable, Options{.capacity = 8, .max_payload = 64, .mode = 0644});
  ASSERT_TRUE(q.push("one"));
  ASSERT_TRUE(q.push("two"));
  (void)Queue::create(secret, kSmall);
  const std::string n = readable.str(), s = secret.str();
  const int rc = as(kStranger, [&] {
    // (The child inherits the parent's writable mapping: only the view's is new.)
    const std::string before = mapping_of(segment_path(n));
    QueueView view = QueueView::open(n);
    if (view.stats().ready != 2 || view.options().mode != 0644) return 10;
    const auto jobs = view.peek(JobState::ready);
    if (jobs.size() != 2 || jobs[0].payload.size() != 3) return 11;
    if (mentions(before, "r--s") || !mentions(mapping_of(segment_path(n)), "r--s")) {
      std::fprintf(stderr, "mapping: %s\n", mapping_of(segment_path(n)).c_str());
      return 12;
    }
    std::error_code ec;
    if (Queue::open(n, ec) || ec != errc::permission_denied) return 13;
    const std::string what = thrown([&] { (void)Queue::open(n); });
    if (!mentions(what, "may only read it")) {
      std::fprintf(stderr, "unclear message: %s\n", what.c_str());
      return 14;
    }
    if (QueueView::open(s, ec) || ec != errc::permission_denied) return 15;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child failed at step " << rc;
  EXPECT_EQ(q.stats().ready, 2u) << "inspection changed the queue";
}

// A handle with any of these operations could write to the segment.
template <class Q>
concept Writes = requires(Q& q, Job& job, Lease& lease) {
  q.push(std::string_view{});
  q.try_claim(job);
  q.ack(lease);
  q.release(lease);
  q.extend(lease, milliseconds{1});
  q.requeue_dead();
  q.purge();
  q.sweep();
};
template <class Q>
concept WritesAny = requires(Q& q) {
  q.push(std::string_view{});
}
|| requires(Q& q, Job& j) { q.try_claim(j); }
|| requires(Q& q, Lease& l) { q.ack(l); }
|| requires(Q& q, Lease& l) { q.release(l); }
|| requires(Q& q, Lease& l) { q.extend(l, milliseconds{1}); }
|| requires(Q& q) { q.requeue_dead(); }
|| requires(Q& q) { q.purge(); }
|| requires(Q& q) { q.sweep(); };
static_assert(Writes<Queue>, "the concept names real operations");
static_assert(!WritesAny<QueueView>, "a read-only handle must offer no operation that writes");

// Item 2: a write on a read-only handle cannot be attempted — QueueView has
// no operation that writes (the static_asserts above fail to compile
// otherwise) — and its mapping is read-only (PROT_READ), beside a writable
// Queue of the same process, whose pushes it sees. The owner may open a 0600
// queue both ways.
TEST(AccessReadOnly, Item2_AReadOnlyHandleCannotWriteAndSeesWhatOthersDo) {
  QueueName name("ro");
  Queue q = Queue::create(name, kSmall);
  QueueView view = QueueView::open(name);
  const std::string maps = mapping_of(segment_path(name));
  EXPECT_TRUE(mentions(maps, "rw-s") && mentions(maps, "r--s")) << maps;
  ASSERT_TRUE(q.push("x"));
  EXPECT_EQ(view.stats().ready, 1u);
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(view.stats().leased, 1u);
  EXPECT_EQ(view.peek(JobState::leased).size(), 1u);
  EXPECT_EQ(view.incarnation(), q.incarnation());
  std::error_code ec;
  EXPECT_FALSE(QueueView::open("jobring-test-missing", ec));
  EXPECT_EQ(ec, errc::not_found);
}

}  // namespace
}  // namespace jobring
