// The jobring command under the access model (issue 14 item 2), run as
// other users: `create --group` by an ordinary user, and `stat` / `peek` of a
// queue the user may read but not write. Needs root (support/as_user.hpp).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <functional>
#include <string>

#include "jobring/queue.hpp"
#include "support/as_user.hpp"
#include "support/run_command.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using test::Identity;
using test::kApp;
using test::kAppAlone;
using test::kAppUid;
using test::kPeerUid;
using test::kSharedGid;
using test::kStranger;
using test::QueueName;
using test::run_command;

#ifdef JOBRING_CLI_BIN
constexpr const char* kCli = JOBRING_CLI_BIN;
#else
constexpr const char* kCli = "";
#endif

// Runs `body` in a forked child as `who`; its exit status (90: the switch failed).
int as(const Identity& who, const std::function<int()>& body) {
  return test::wait_child(test::spawn_tied([&] { return test::become(who) ? body() : 90; }));
}

// In a child: 0 if `jobring args...` exits `status` and prints `needle`; else
// prints what it did and returns `fail`.
int expect_cli(const std::vector<std::string>& args, int status, const std::string& needle, int fail) {
  std::vector<std::string> argv{kCli};
  argv.insert(argv.end(), args.begin(), args.end());
  const test::CommandResult r = run_command(argv);
  if (r.status == status && r.output.find(needle) != std::string::npos) return 0;
  std::fprintf(stderr, "jobring %s: exit %d, wanted %d and '%s':\n%s\n", args.front().c_str(), r.status,
               status, needle.c_str(), r.output.c_str());
  return fail;
}

class CliAccess : public ::testing::Test {
 protected:
  void SetUp() override {
    JOBRING_SKIP_UNLESS_ROOT();
    if (kCli[0] == '\0') GTEST_SKIP() << "the jobring command is not built";
  }
};

// Item 2: an ordinary user in group G runs `jobring create NAME --group G`
// and gets a queue of group G, mode 0660; the same user outside G is told
// how to join it, and no queue appears.
// Fails without --group (a usage error) or if the mode stayed 0600.
TEST_F(CliAccess, Item2_CreateWithGroupByAnOrdinaryUser) {
  QueueName made("cli-access"), refused("cli-access");
  const std::string gid = std::to_string(kSharedGid);
  EXPECT_EQ(as(kApp,
               [&] {
                 return expect_cli({"create", made, "--capacity", "8", "--group", gid}, 0, "mode 0660", 10);
               }),
            0);
  struct stat st {};
  ASSERT_EQ(::stat(segment_path(made).c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kSharedGid);
  EXPECT_EQ(st.st_uid, kAppUid);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(
      as(kAppAlone,
         [&] {
           return expect_cli({"create", refused, "--group", gid}, 1, "usermod -aG " + gid + " $USER", 10);
         }),
      0);
  EXPECT_NE(::stat(segment_path(refused).c_str(), &st), 0) << "a refused create left a queue";
}

// Item 2: `jobring stat` and `peek` of a 0644 queue work for another user
// (read-only); `push` is refused saying the user may only read it; `stat` of
// a 0660 queue of a group the user is not in says which group to join.
// Fails if stat and peek needed write permission, as they did.
TEST_F(CliAccess, Item2_ReadableQueueIsInspectedNotChanged) {
  QueueName readable("cli-access"), grouped("cli-access");
  Queue q = Queue::create(readable, Options{.capacity = 8, .max_payload = 64, .mode = 0644});
  ASSERT_TRUE(q.push("hello"));
  Options g{.capacity = 8, .max_payload = 64};
  const std::string gid = std::to_string(kSharedGid);
  g.group = gid;
  (void)Queue::create(grouped, g);
  const int rc = as(kStranger, [&] {
    if (int r = expect_cli({"stat", readable, "--json"}, 0, "\"ready\":1", 10)) return r;
    if (int r = expect_cli({"peek", readable}, 0, "hello", 11)) return r;
    if (int r = expect_cli({"push", readable, "x"}, 1, "may only read it", 12)) return r;
    return expect_cli({"stat", grouped}, 1, "usermod -aG " + gid, 13);
  });
  EXPECT_EQ(rc, 0) << "child failed at step " << rc;
  EXPECT_EQ(q.stats().pushed, 1u);
}

}  // namespace
}  // namespace jobring
