// jobring-janitor --dead-letter SRC=DST (issue 14 item 6's way out, run by
// the operator's janitor): every sweep moves SRC's dead jobs into DST, so
// that a burst of poison jobs does not fill SRC; a missing or full DST is
// logged once and the dead jobs stay where they are. The library's side is
// tests/crash/test_move.cpp.
#include <gtest/gtest.h>

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
using test::QueueName;

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif

class JanitorDeadLetter : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built";
    std::ofstream(dir.file("empty.conf")) << "";
  }
  // jobring-janitor --once with `args` after an empty config.
  test::CommandResult once(std::vector<std::string> args) {
    args.insert(args.begin(), {kJanitorBin, "--config", dir.file("empty.conf"), "--once"});
    return test::run_command(args);
  }
  // A queue whose jobs die on their first failure, with `n` dead jobs.
  static Queue with_dead_jobs(const std::string& name, int n) {
    Queue q = Queue::create(name, Options{.capacity = 8, .max_payload = 64, .max_attempts = 1});
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(q.push("job " + std::to_string(i)));
      auto job = q.try_claim();
      EXPECT_TRUE(job);
      if (job) {
        EXPECT_EQ(q.release(job->lease, 0ms, "poison"), LeaseStatus::ok);
      }
    }
    return q;
  }

  test::Watchdog dog{120s, "JanitorDeadLetter"};
  test::TempDir dir{"janitor-dl"};
};

// One sweep moves every dead job, note and all, and the source has room
// again. Fails without --dead-letter (the dead jobs would stay in SRC).
TEST_F(JanitorDeadLetter, ASweepMovesTheDeadJobsOut) {
  QueueName src("jdl-src"), dst("jdl-dst");
  Queue q = with_dead_jobs(src, 3);
  Queue d = Queue::create(dst, Options{.capacity = 8});
  const auto r = once({"--queue", src, "--dead-letter", src.str() + "=" + dst.str()});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(q.stats().dead, 0u) << r.output;
  EXPECT_EQ(q.stats().free, 8u);
  const auto dead = d.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 3u) << r.output;
  EXPECT_EQ(dead[0].error, "poison");
  EXPECT_NE(r.output.find("3 dead jobs moved to"), std::string::npos) << r.output;
}

// A dead-letter queue that does not exist: the dead jobs stay, and the log
// says how to make it. Fails if the janitor dropped them or kept quiet.
TEST_F(JanitorDeadLetter, AMissingDeadLetterQueueKeepsTheJobsAndSaysSo) {
  QueueName src("jdl-nodst"), dst("jdl-nodst-dead");
  Queue q = with_dead_jobs(src, 2);
  const auto r = once({"--queue", src, "--dead-letter", src.str() + "=" + dst.str()});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(q.stats().dead, 2u);
  EXPECT_NE(r.output.find("jobring create " + dst.str()), std::string::npos) << r.output;
}

// A full dead-letter queue: what fits moves, the rest stays, logged.
TEST_F(JanitorDeadLetter, AFullDeadLetterQueueKeepsTheRest) {
  QueueName src("jdl-full"), dst("jdl-full-dead");
  Queue q = with_dead_jobs(src, 3);
  Queue d = Queue::create(dst, Options{.capacity = 1});
  const auto r = once({"--queue", src, "--dead-letter", src.str() + "=" + dst.str()});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(q.stats().dead, 2u);
  EXPECT_EQ(d.stats().dead, 1u);
  EXPECT_NE(r.output.find("is full"), std::string::npos) << r.output;
}

// Bad values are usage errors (exit 2) that show the form.
TEST_F(JanitorDeadLetter, BadValuesAreRefused) {
  for (const std::string bad : {"orders", "orders=", "=x", "a=a", "a=bad/name"}) {
    const auto r = once({"--dead-letter", bad});
    EXPECT_EQ(r.status, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("SRC=DST"), std::string::npos) << r.output;
  }
  // One dead-letter queue per queue, and no cycles (jobs would go round for ever).
  auto r = once({"--dead-letter", "a=b", "--dead-letter", "a=c"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("already has a dead-letter queue"), std::string::npos) << r.output;
  r = once({"--dead-letter", "a=b", "--dead-letter", "b=c", "--dead-letter", "c=a"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("cycle"), std::string::npos) << r.output;
  r = once({"--dead-letter", "a=b", "--dead-letter", "b=c"});  // a chain is fine
  EXPECT_EQ(r.status, 0) << r.output;
}

}  // namespace
}  // namespace jobring
