// jobring-janitor on the queues of a Redis server (issue 15: `url =` /
// --url): the real binary, against a redis-server of the test's own.
// A sweep returns a Redis queue's expired lease with no worker claiming;
// the metrics of Redis queues (labelled backend="redis", server="URL") pass
// `promtool check metrics`; a server that is down or goes away is logged
// once per outage while the queues in shared memory are swept as usual, and
// one that comes back is swept again.
//
// The janitor is always given --queue with a queue of this test's own, so
// that it never sweeps other tests' queues in /dev/shm.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "jobring/any_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/cli_harness.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::Proc;
using test::QueueName;
using test::TempDir;
using test::Watchdog;

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

class JanitorRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built";
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    server.emplace();
    std::ofstream(dir.file("empty.conf")) << "";
    shm.emplace(Queue::create(shm_name, {}));
  }
  // The janitor's command line: this test's shm queue, metrics, and `urls`.
  [[nodiscard]] std::vector<std::string> janitor(const std::vector<std::string>& urls,
                                                 const std::vector<std::string>& extra) const {
    std::vector<std::string> argv = {kJanitorBin, "--config",     dir.file("empty.conf"),
                                     "--queue",   shm_name.str(), "--metrics-file",
                                     metrics()};
    for (const auto& u : urls) argv.insert(argv.end(), {"--url", u});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  [[nodiscard]] test::Result janitor_once(const std::vector<std::string>& urls) const {
    Proc p(janitor(urls, {"--once"}));
    return p.wait(60s);
  }
  [[nodiscard]] std::string metrics() const { return dir.file("jobring.prom"); }
  // A job of queue `q` leased for `lease` by this process, whose deadline
  // has passed: stats() counts it expired (or a janitor already returned it).
  static Lease expired_lease(AnyQueue& q, milliseconds lease) {
    EXPECT_TRUE(q.push("x"));
    Job job;
    EXPECT_EQ(q.try_claim(job, test::with_lease(lease)), ClaimStatus::ok);
    EXPECT_TRUE(test::poll_until(
        [&] {
          const Stats s = q.stats();
          return s.expired + s.expired_total >= 1;
        },
        20s, 5ms));
    return job.lease;
  }

  Watchdog dog{180s, "JanitorRedis"};
  TempDir dir{"janitor-redis"};
  std::optional<test::RedisServer> server;
  QueueName shm_name{"janitor-redis"};
  std::optional<Queue> shm;
};

// The lease has expired and nobody claims: one sweep puts the job back to
// ready and counts the expiry; the late worker's ack is then lease_lost.
TEST_F(JanitorRedis, ASweepReturnsAnExpiredLeaseWithNoClaimer) {
  AnyQueue q = AnyQueue::create(server->url(), "orders", {});
  const Lease lease = expired_lease(q, 100ms);
  EXPECT_EQ(q.stats().ready, 0u);
  EXPECT_EQ(q.stats().expired_total, 0u);

  const test::Result r = janitor_once({server->url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::contains(r.err, "queue 'orders' on " + server->url() + ": 1 expired")) << r.err;
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.expired_total, 1u);
  EXPECT_EQ(q.ack(lease), LeaseStatus::lease_lost);

  const std::string text = dir.read("jobring.prom");
  const std::string labels = "{queue=\"orders\",backend=\"redis\",server=\"" + server->url() + "\"}";
  EXPECT_TRUE(test::contains(text, "jobring_ready" + labels + " 1\n")) << text;
  EXPECT_TRUE(test::contains(text, "jobring_expired_total" + labels + " 1\n")) << text;
  EXPECT_TRUE(test::contains(text, "jobring_redis_up{server=\"" + server->url() + "\"} 1\n")) << text;
  EXPECT_TRUE(test::contains(text, "jobring_ready{queue=\"" + shm_name.str() + "\"} 0\n")) << text;
}

// Queues in shared memory and on two servers, one of them down: the file
// passes promtool (one HELP and TYPE per metric, every series unique).
TEST_F(JanitorRedis, MetricsOfRedisQueuesPassPromtool) {
  test::RedisServer second;
  for (const std::string& url : {server->url(), second.url()}) {
    AnyQueue q = AnyQueue::create(url, "orders", {});  // one name on both servers
    ASSERT_TRUE(q.push("x"));
    (void)AnyQueue::create(url, "emails", {});
  }
  const std::string down = "redis+unix://" + dir.file("nothing.sock");
  const test::Result r = janitor_once({server->url(), second.url(), down});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = dir.read("jobring.prom");
  EXPECT_EQ(count(text, "jobring_pushed_total{queue=\"orders\",backend=\"redis\""), 2u) << text;
  EXPECT_TRUE(test::contains(text, "jobring_redis_up{server=\"" + down + "\"} 0\n")) << text;
  const std::string promtool = test::find_tool("promtool");
  if (promtool.empty())
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus): the file was not checked";
  const test::CommandResult check =
      test::run_command({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, metrics()});
  EXPECT_EQ(check.status, 0) << check.output << "\n--- the file:\n" << text;
  EXPECT_EQ(check.output, "") << text;
}

// One server never there, one that goes away and comes back: each outage is
// logged once, the queue in shared memory is swept all along (its expired
// lease comes back), and the returning server is swept again.
TEST_F(JanitorRedis, AServerDownIsLoggedOncePerOutageAndTheOtherQueuesGoOn) {
  const std::string down = "redis+unix://" + dir.file("nothing.sock");
  const std::string flaky = server->url();
  Proc janitor_proc(janitor({down, flaky}, {"--interval", "20ms"}));
  const std::string down_said = "redis " + down + ": cannot be reached";
  const std::string flaky_said = "redis " + flaky + ": cannot be reached";
  ASSERT_TRUE(janitor_proc.wait_output(
      [&](const std::string&, const std::string& err) { return test::contains(err, down_said); }, 30s))
      << janitor_proc.err();

  // The shm queue's expired lease comes back while a server is down.
  ASSERT_TRUE(shm->push("y"));
  const auto job = shm->try_claim(test::with_lease(50ms));
  ASSERT_TRUE(job);
  ASSERT_TRUE(test::poll_until([&] { return shm->stats().expired_total >= 1; }, 30s, 5ms))
      << janitor_proc.err();
  EXPECT_EQ(shm->stats().ready, 1u);

  server->stop();
  ASSERT_TRUE(janitor_proc.wait_output(
      [&](const std::string&, const std::string& err) { return test::contains(err, flaky_said); }, 30s))
      << janitor_proc.err();
  server->start();
  AnyQueue back = AnyQueue::create(flaky, "after", {});
  (void)expired_lease(back, 50ms);
  // Tried again within 5 s: then swept, and its expired lease returned.
  ASSERT_TRUE(janitor_proc.wait_output(
      [&](const std::string&, const std::string& err) {
        return test::contains(err, "redis " + flaky + ": reachable again");
      },
      60s))
      << janitor_proc.err();
  EXPECT_TRUE(test::poll_until([&] { return back.stats().expired_total >= 1; }, 30s, 5ms))
      << janitor_proc.err();

  janitor_proc.signal(SIGTERM);
  const test::Result r = janitor_proc.wait(30s);
  EXPECT_EQ(r.code, 0) << r.err;
  // The never-there server was tried again meanwhile (every 5 s), logged once.
  EXPECT_EQ(count(r.err, down_said), 1u) << r.err;
  EXPECT_EQ(count(r.err, flaky_said), 1u) << r.err;
  EXPECT_EQ(count(r.err, "reachable again"), 1u) << r.err;
}

}  // namespace
}  // namespace jobring
