// The janitor under the access model (issue 14 item 2): the real
// jobring-janitor, run as an unprivileged user, sweeps a queue that an
// ordinary application user made in a group the janitor is in, and skips,
// counts (jobring_queues_skipped{reason="permission"}) and logs once a queue
// it may not open. The library's side is tests/ring/test_group.cpp.
//
// Needs root: the application, its dead worker and the janitor are forked
// children that become throwaway uids and gids (support/as_user.hpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "support/as_user.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::Identity;
using test::kApp;
using test::kAppUid;
using test::kJanitorInGroup;
using test::kJanitorOutside;
using test::kJanitorUid;
using test::kSharedGid;
using test::QueueName;

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif

int as(const Identity& who, const std::function<int()>& body) {
  return test::wait_child(test::spawn_tied([&] { return test::become(who) ? body() : 90; }));
}

class JanitorAccess : public ::testing::Test {
 protected:
  void SetUp() override {
    JOBRING_SKIP_UNLESS_ROOT();
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built";
    // The janitor's user reads its config and writes its metrics here.
    ASSERT_EQ(::chmod(dir.str().c_str(), 0777), 0);
    std::ofstream(dir.file("janitor.conf")) << "interval = 10ms\n";
    ASSERT_EQ(::chmod(dir.file("janitor.conf").c_str(), 0644), 0);
    // The application user makes the queue in the shared group and pushes a
    // job; its worker claims the job (a process-owned lease of a minute)
    // and dies holding it.
    const std::string n = name.str(), gid = std::to_string(kSharedGid);
    ASSERT_EQ(as(kApp,
                 [&] {
                   Options o{.capacity = 8, .max_payload = 64, .default_lease = 60s};
                   o.group = gid;
                   return Queue::create(n, o).push("job") ? 0 : 10;
                 }),
              0);
    ASSERT_EQ(as(kApp,
                 [&] {
                   Queue q = Queue::open(n);
                   if (!q.try_claim()) return 10;
                   ::_exit(0);  // dies holding the lease: its liveness lock goes with it
                 }),
              0);
    ASSERT_EQ(QueueView::open(name).stats().leased, 1u);
  }

  // Runs the janitor as `who` on the queue until it has swept `sweeps` times
  // (its metrics say so), then, after `meanwhile` and as many sweeps more,
  // stops it with SIGTERM; its log is in log().
  void run_janitor(const Identity& who, int sweeps, const std::function<void()>& meanwhile = {}) {
    const std::string log_file = dir.file("janitor.log");
    const std::vector<std::string> args{kJanitorBin, "--config", dir.file("janitor.conf"),
                                        "--queue",   name.str(), "--metrics-file",
                                        metrics()};
    const pid_t pid = test::spawn_tied([&] {
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || ::dup2(fd, 2) < 0 || !test::become(who)) return 90;
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(kJanitorBin, argv.data());
      return 91;
    });
    auto swept = [&](int n) {
      return test::poll_until([&] { return metric("jobring_janitor_sweeps_total") >= n; }, 20s, 5ms);
    };
    bool ok = swept(sweeps);
    if (ok && meanwhile) {
      meanwhile();
      ok = swept(2 * sweeps);
    }
    ::kill(pid, SIGTERM);
    EXPECT_EQ(test::wait_child(pid), 0) << log();
    ASSERT_TRUE(ok) << "the janitor did not sweep as often as asked:\n" << log();
  }

  [[nodiscard]] std::string metrics() const { return dir.file("jobring.prom"); }
  [[nodiscard]] std::string log() const { return dir.read("janitor.log"); }
  // A sample of the metrics file ("name" or "name{labels}"); -1 if absent.
  [[nodiscard]] double metric(const std::string& series) const {
    std::ifstream in(metrics());
    for (std::string line; std::getline(in, line);)
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    return -1;
  }

  test::Watchdog dog{120s, "JanitorAccess"};
  test::TempDir dir{"janitor-access"};
  QueueName name{"janitor-access"};
};

// Item 2: a janitor whose user is in the queue's group (as the jobring user
// is in group jobring, for queues made with --group jobring) opens the
// ordinary user's 0660 queue and returns the dead worker's lease at once,
// a minute before its deadline; nothing is skipped.
// Fails without Options::group: the queue would be the application user's
// 0600, and the janitor would skip it.
TEST_F(JanitorAccess, Item2_GroupMemberJanitorReclaimsADeadWorkersLease) {
  run_janitor(kJanitorInGroup, 3);
  const Stats s = QueueView::open(name).stats();
  EXPECT_EQ(s.reclaimed, 1u) << log();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(metric("jobring_queues_skipped{reason=\"permission\"}"), 0) << dir.read("jobring.prom");
  EXPECT_EQ(metric("jobring_leased{queue=\"" + name.str() + "\"}"), 0);
}

// Item 2: a janitor outside the group leaves the queue alone, counts it in
// jobring_queues_skipped{reason="permission"} every sweep (a gauge), and
// logs it once — not every sweep — saying who may open it and the way in.
// Fails if skipped queues were not counted (no metric showed that the
// janitor sweeps nothing), or were logged every sweep.
TEST_F(JanitorAccess, Item2_NonMemberJanitorSkipsCountsAndLogsOnce) {
  run_janitor(kJanitorOutside, 5);
  const Stats s = QueueView::open(name).stats();
  EXPECT_EQ(s.reclaimed, 0u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(metric("jobring_queues_skipped{reason=\"permission\"}"), 1) << dir.read("jobring.prom");
  EXPECT_EQ(metric("jobring_queues_skipped{reason=\"corrupt\"}"), 0);
  EXPECT_EQ(metric("jobring_leased{queue=\"" + name.str() + "\"}"), -1)
      << "a skipped queue has no statistics";
  const std::string text = log();
  std::size_t logged = 0;
  for (auto at = text.find("skipped (permission)"); at != std::string::npos;
       at = text.find("skipped (permission)", at + 1))
    ++logged;
  EXPECT_EQ(logged, 1u) << text;
  EXPECT_NE(text.find("to group " + std::to_string(kSharedGid)), std::string::npos) << text;
}

// Item 2: a queue skipped for permission is swept as soon as its group is
// fixed (here: changed to the janitor's own group) — the janitor, which
// stops retrying a refused queue until its file changes, sees the chown.
// Fails if the janitor never looked at a skipped queue again.
TEST_F(JanitorAccess, Item2_ASkippedQueueIsSweptOnceItsGroupIsFixed) {
  run_janitor(kJanitorOutside, 5, [&] {
    EXPECT_EQ(metric("jobring_queues_skipped{reason=\"permission\"}"), 1);
    ASSERT_EQ(::chown(segment_path(name).c_str(), static_cast<uid_t>(-1), kJanitorUid), 0);
  });
  EXPECT_EQ(QueueView::open(name).stats().reclaimed, 1u) << log();
  EXPECT_EQ(metric("jobring_queues_skipped{reason=\"permission\"}"), 0);
  EXPECT_NE(log().find("can be opened now"), std::string::npos) << log();
}

}  // namespace
}  // namespace jobring
