// The janitor's metrics file as Prometheus and node_exporter take it (issue
// 14 item 3): `promtool check metrics` accepts the real output (a HELP and a
// TYPE for every metric, names by Prometheus' conventions), and the file is
// readable by another user (node_exporter runs as prometheus) even under the
// unit's UMask=0077.
//
// The real jobring-janitor runs with --once on queues this test makes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

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

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif

// A queue with something in every metric that can be non-zero cheaply: jobs
// ready, a lease held (by this process, so that its age grows), a key and a
// duplicate.
class MetricsExport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built";
    Options o;
    o.capacity = 16;
    o.max_payload = 64;
    queue.emplace(Queue::create(name, o));
    PushOptions keyed;
    keyed.key = "k";
    ASSERT_TRUE(queue->push("a", keyed));
    ASSERT_TRUE(queue->push("a", keyed).duplicate);
    ASSERT_TRUE(queue->push("b"));
    lease = queue->try_claim(test::with_lease(60'000ms));
    ASSERT_TRUE(lease.has_value());
    std::ofstream(dir.file("empty.conf")) << "";
  }
  // Runs the janitor once with `umask`, writing metrics to dir/jobring.prom.
  void run_janitor_once(mode_t umask) {
    const mode_t old = ::umask(umask);  // inherited by the forked janitor
    const test::CommandResult r = run_command({kJanitorBin, "--config", dir.file("empty.conf"), "--queue",
                                               name.str(), "--once", "--metrics-file", metrics()});
    ::umask(old);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  [[nodiscard]] std::string metrics() const { return dir.file("jobring.prom"); }

  Watchdog dog{120s, "MetricsExport"};
  TempDir dir{"metrics"};
  QueueName name{"metrics-export"};
  std::optional<Queue> queue;
  std::optional<Job> lease;
};

// Issue 14 item 3: promtool rejected the file (no HELP for the counters).
TEST_F(MetricsExport, Item3_PromtoolCheckMetricsAcceptsTheRealFile) {
  run_janitor_once(022);
  const std::string promtool = test::find_tool("promtool");
  if (promtool.empty())
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus): the file was not checked";
  const test::CommandResult r =
      run_command({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, metrics()});
  EXPECT_EQ(r.status, 0) << r.output << "\n--- the file:\n" << dir.read("jobring.prom");
  EXPECT_EQ(r.output, "") << dir.read("jobring.prom");
  // Issue 14 item 2: the checked file holds the skipped-queues gauge too.
  EXPECT_NE(dir.read("jobring.prom").find("jobring_queues_skipped{reason=\"permission\"} 0"),
            std::string::npos);
}

// Issue 14 item 3: every metric has HELP and TYPE, counters end in _total,
// and times are in seconds (the base unit), never milliseconds.
TEST_F(MetricsExport, Item3_EveryMetricHasHelpAndTypeAndConventionalName) {
  run_janitor_once(022);
  std::istringstream in(dir.read("jobring.prom"));
  std::set<std::string> helped, typed, sampled;
  for (std::string line; std::getline(in, line);) {
    std::istringstream w(line);
    std::string first, metric, type;
    w >> first;
    if (first == "#") {
      w >> type >> metric;  // "# HELP name ..." or "# TYPE name kind"
      std::string rest;
      std::getline(w, rest);
      if (type == "HELP") {
        EXPECT_FALSE(rest.empty()) << line;
        helped.insert(metric);
      } else if (type == "TYPE") {
        typed.insert(metric);
        if (rest == " counter") {
          EXPECT_TRUE(metric.ends_with("_total")) << line;
        }
      }
      continue;
    }
    sampled.insert(first.substr(0, first.find('{')));
  }
  EXPECT_EQ(sampled.size(), 36u);  // 33 statistics + the janitor's three
  for (const std::string& m : sampled) {
    EXPECT_TRUE(helped.count(m)) << m << " has no # HELP";
    EXPECT_TRUE(typed.count(m)) << m << " has no # TYPE";
    EXPECT_FALSE(m.ends_with("_ms")) << m << ": Prometheus' base unit is seconds";
  }
  EXPECT_TRUE(sampled.count("jobring_oldest_lease_seconds"));
  EXPECT_TRUE(sampled.count("jobring_expired_total"));
  EXPECT_FALSE(sampled.count("jobring_expired_total_total"));
  EXPECT_TRUE(sampled.count("jobring_queues_skipped"));
}

// Issue 14 item 5: the age of the oldest waiting job, the queue's main
// alerting signal, is exported in seconds as a gauge with HELP and TYPE.
// SetUp leaves job "b" ready; after 100 ms it is at least 0.1 s old (a lower
// bound only: a loaded machine makes it older). Fails without the field.
TEST_F(MetricsExport, Item5_OldestReadySecondsIsTheWaitingJobsAge) {
  std::this_thread::sleep_for(100ms);
  run_janitor_once(022);
  const std::string text = dir.read("jobring.prom");
  EXPECT_NE(text.find("# HELP jobring_oldest_ready_seconds "), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE jobring_oldest_ready_seconds gauge\n"), std::string::npos) << text;
  const std::string series = "jobring_oldest_ready_seconds{queue=\"" + name.str() + "\"} ";
  const auto at = text.find(series);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_GE(std::stod(text.substr(at + series.size())), 0.1) << text;
}

// Issue 14 item 3: under the unit's UMask=0077 the file was -rw-------, which
// node_exporter (user prometheus) cannot read. It is 0644 whatever the umask.
TEST_F(MetricsExport, Item3_FileIsWorldReadableUnderUmask0077) {
  run_janitor_once(077);
  struct ::stat st {};
  ASSERT_EQ(::stat(metrics().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

}  // namespace
}  // namespace jobring
