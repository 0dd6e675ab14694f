// jobring-janitor and file-backed queues (issue 18): `--dir DIR` (or `dir =`
// in the config) makes the janitor look after the queues in DIR as it does
// after those in /dev/shm, and write a queue created with --sync interval to
// disk every interval. The library's side is tests/crash/test_durable.cpp.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif

class JanitorDurable : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built";
    std::ofstream(conf.file("empty.conf")) << "";
  }
  // jobring-janitor --once with `args` after an empty config.
  test::CommandResult once(std::vector<std::string> args) {
    args.insert(args.begin(), {kJanitorBin, "--config", conf.file("empty.conf"), "--once"});
    return test::run_command(args);
  }

  test::Watchdog dog{120s, "JanitorDurable"};
  test::TempDir conf{"janitor-durable-conf"};
  test::TempDir dir{"janitor-durable"};
};

// A worker killed while it holds a job of a file-backed queue: one sweep
// with --dir returns the job. Fails if the janitor looked only in /dev/shm.
TEST_F(JanitorDurable, DirMakesItSweepTheFileBackedQueuesThere) {
  const std::string name = dir.str() + "/q";
  Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64});
  ASSERT_TRUE(q.push("held by a worker that dies"));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t worker = test::spawn_tied([&] {
    auto mine = Queue::open(name);
    auto job = mine.try_claim(ClaimOptions{.lease = 1h});
    if (!job) return 1;
    (void)!::write(ready[1], "x", 1);
    ::pause();
    return 0;
  });
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::kill(worker, SIGKILL);
  test::wait_child(worker);
  EXPECT_EQ(q.stats().leased, 1u);
  const auto r = once({"--dir", dir.str()});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(q.stats().ready, 1u) << r.output;
  EXPECT_NE(r.output.find("queue '" + name + "': watching"), std::string::npos) << r.output;
}

// --sync interval: the janitor writes the queue to disk at its sweeps (the
// first one at once). A queue with another policy is never msynced by it.
TEST_F(JanitorDurable, ItWritesIntervalQueuesToDisk) {
  Options o{.capacity = 8, .max_payload = 64};
  o.sync = Options::Sync::interval;
  o.sync_interval = 10ms;
  Queue q = Queue::create(dir.str() + "/every", o);
  o.sync = Options::Sync::always;
  Queue a = Queue::create(dir.str() + "/always", o);
  const auto r = once({"--dir", dir.str(), "--log-level", "debug"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("queue '" + dir.str() + "/every': written to disk"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("queue '" + dir.str() + "/always': written to disk"), std::string::npos)
      << r.output;
}

// A --dir that does not exist (yet): said once, and the other queues are
// looked after.
TEST_F(JanitorDurable, AMissingDirIsLoggedAndTheRestGoesOn) {
  const auto r = once({"--dir", dir.file("missing")});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("cannot be listed"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace jobring
