// `jobring create` and `jobring stat` warn when a queue would vanish at
// logout (issue 14 item 4): systemd-logind's RemoveIPC=yes (its default, and
// Debian 12's) deletes the POSIX shared memory of users with a uid of 1000 or
// more when their last session ends, queues included.
//
// The real CLI reads a logind.conf this test writes: JOBRING_LOGIND_CONF
// names it (and its drop-ins are read from that path + ".d"). Owners: as
// root, the test gives the queue's segment to uid 4242, or runs `create` as
// that uid; as another user it needs a uid of 1000 or more.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "jobring/queue.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::run_command;
using test::TempDir;
using test::Watchdog;

#ifdef JOBRING_CLI_BIN
constexpr const char* kCliBin = JOBRING_CLI_BIN;
#else
constexpr const char* kCliBin = "";
#endif

constexpr uid_t kUserUid = 4242;  // a regular user's uid (>= 1000), as root

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class RemoveIpcWarning : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kCliBin[0] == '\0') GTEST_SKIP() << "the jobring CLI is not built";
    std::filesystem::create_directory(dropins());
  }
  [[nodiscard]] std::string conf() const { return dir.file("logind.conf"); }
  [[nodiscard]] std::string dropins() const { return conf() + ".d"; }
  void write(const std::string& path, const std::string& text) const { std::ofstream(path) << text; }

  // A queue owned by a regular user (uid >= 1000); false if this test
  // process cannot make one.
  bool make_user_queue() {
    Options o;
    o.capacity = 4;
    o.max_payload = 16;
    (void)Queue::create(name, o);
    if (::geteuid() == 0) return ::chown(segment_path(name).c_str(), kUserUid, kUserUid) == 0;
    return ::geteuid() >= 1000;
  }
  // `jobring stat NAME` with this test's logind.conf; its stdout and stderr.
  test::CommandResult stat() const {
    return run_command({kCliBin, "stat", name.str()}, {{"JOBRING_LOGIND_CONF", conf()}});
  }

  Watchdog dog{60s, "RemoveIpcWarning"};
  TempDir dir{"logind"};
  QueueName name{"removeipc"};
};

constexpr const char* kWarning = "systemd-logind deletes the shared memory";

// Issue 14 item 4: no RemoveIPC= anywhere (the default: yes) and a queue of
// uid 4242: stat warns, on stderr, naming the queue and the default.
TEST_F(RemoveIpcWarning, Item4_StatWarnsForAUsersQueueByDefault) {
  if (!make_user_queue()) GTEST_SKIP() << "cannot make a queue owned by a uid >= 1000 here";
  const test::CommandResult r = stat();
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, kWarning)) << r.output;
  EXPECT_TRUE(contains(r.output, "queue " + name.str())) << r.output;
  EXPECT_TRUE(contains(r.output, "the default")) << r.output;
}

// Issue 14 item 4: RemoveIPC=no in [Login]: no warning; =yes: a warning
// naming the file.
TEST_F(RemoveIpcWarning, Item4_MainFileDecides) {
  if (!make_user_queue()) GTEST_SKIP() << "cannot make a queue owned by a uid >= 1000 here";
  write(conf(), "[Login]\n#RemoveIPC=yes\nRemoveIPC = no\n");
  test::CommandResult r = stat();
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, kWarning)) << r.output;
  write(conf(), "[Login]\nRemoveIPC=no\nRemoveIPC=yes\n");
  r = stat();
  EXPECT_TRUE(contains(r.output, kWarning)) << r.output;
  EXPECT_TRUE(contains(r.output, "set in " + conf())) << r.output;
  // Another section's key is not logind's.
  write(conf(), "[Login]\nRemoveIPC=no\n[Other]\nRemoveIPC=yes\n");
  EXPECT_FALSE(contains(stat().output, kWarning));
}

// Issue 14 item 4: drop-ins come after the main file, in the order of their
// names; the last setting wins; only *.conf files count.
TEST_F(RemoveIpcWarning, Item4_DropInsOverrideInNameOrder) {
  if (!make_user_queue()) GTEST_SKIP() << "cannot make a queue owned by a uid >= 1000 here";
  write(conf(), "[Login]\nRemoveIPC=no\n");
  write(dropins() + "/10-on.conf", "[Login]\nRemoveIPC=yes\n");
  EXPECT_TRUE(contains(stat().output, kWarning));
  write(dropins() + "/20-off.conf", "[Login]\nRemoveIPC=false\n");
  EXPECT_FALSE(contains(stat().output, kWarning));
  write(dropins() + "/30-on.conf.disabled", "[Login]\nRemoveIPC=yes\n");
  EXPECT_FALSE(contains(stat().output, kWarning));
}

// Issue 14 item 4: a queue of a system user (root here) is never removed by
// logind: no warning even with RemoveIPC=yes.
TEST_F(RemoveIpcWarning, Item4_NoWarningForASystemUsersQueue) {
  if (::geteuid() >= 1000) GTEST_SKIP() << "run as a system user (root in CI) to own a system user's queue";
  Options o;
  o.capacity = 4;
  (void)Queue::create(name, o);
  write(conf(), "[Login]\nRemoveIPC=yes\n");
  const test::CommandResult r = stat();
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, kWarning)) << r.output;
}

// Issue 14 item 4: `jobring create` run by a regular user warns too (and
// still creates the queue and prints its line on stdout).
TEST_F(RemoveIpcWarning, Item4_CreateAsARegularUserWarns) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run create as uid " << kUserUid;
  const test::CommandResult r = run_command({kCliBin, "create", name.str(), "--capacity", "4"},
                                            {{"JOBRING_LOGIND_CONF", conf()}}, kUserUid, kUserUid);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "created queue " + name.str())) << r.output;
  EXPECT_TRUE(contains(r.output, kWarning)) << r.output;
  struct ::stat st {};
  ASSERT_EQ(::stat(segment_path(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kUserUid);
}

}  // namespace
}  // namespace jobring
