// The Worker on Redis when the server or a worker fails (worker.hpp,
// "Backend errors"): a server that dies, stalls or comes back, and a worker
// process killed with a job in hand. Each test starts a redis-server of its
// own (tests/redis/redis_server.hpp) with an append-only file written at
// every command, so a server killed and started again keeps its queues, as a
// production server with AOF does.
//
// What each test checks is behaviour — the Worker reports the errors, does
// not hang, does not spin, and no job is lost — never speed: waits are
// bounded by tens of seconds, and the "does not spin" bound is two orders of
// magnitude above what the backoff gives.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/interrupt.hpp"
#include "jobring/worker.hpp"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::Watchdog;

const std::vector<std::string> kDurable = {"--appendonly", "yes", "--appendfsync", "always"};
// Short timeouts: a dead or stopped server is noticed within a fraction of a second.
const RedisOptions kQuick{.connect_timeout = 300ms, .io_timeout = 300ms};

class WorkerRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    clear_interrupt();
  }
  void TearDown() override { clear_interrupt(); }
  static std::string name(const char* tag) {
    return std::string("wredis.") + tag + "." + std::to_string(::getpid());
  }
};

// Waits (bounded) until `pred` holds; false if it never did.
template <class P>
bool eventually(P pred, std::chrono::seconds limit = 30s) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Records what on_backend_error reports.
struct ErrorLog {
  std::mutex mu;
  struct Seen {
    std::error_code code;
    milliseconds retry_in{0};
  };
  std::vector<Seen> seen;  // BackendError's string_views do not outlive the call
  std::vector<std::string> operations;
  std::atomic<int> count{0};
  void operator()(const BackendError& e) {
    std::lock_guard lock(mu);
    operations.emplace_back(e.operation);
    seen.push_back(Seen{e.code, e.retry_in});
    count.fetch_add(1);
  }
  bool saw(std::string_view operation) {
    std::lock_guard lock(mu);
    for (const auto& o : operations)
      if (o == operation) return true;
    return false;
  }
};

// The server dies while the Worker waits for work: its claims fail
// (unavailable), each reported, with a growing pause between them (no busy
// loop); run() neither returns nor hangs; once the server is back, a job
// pushed then is done. Fails if the Worker spins, gives up, or never
// reconnects.
TEST_F(WorkerRedis, ServerDiesWhileIdleThenComesBack) {
  Watchdog wd(90s);
  test::RedisServer server(kDurable);
  AnyQueue q = AnyQueue::create(server.url(), name("idle"), {}, kQuick);
  ErrorLog log;
  WorkerOptions o{.max_jobs = 1};
  o.hooks.on_backend_error = std::ref(log);
  std::atomic<int> runs{0};
  Worker worker(
      q,
      [&](const Job&, JobContext&) {
        runs.fetch_add(1);
        return Outcome::ack();
      },
      o);
  WorkerSummary s;
  std::atomic<bool> returned{false};
  std::thread t([&] {
    s = worker.run();
    returned = true;
  });
  std::this_thread::sleep_for(300ms);  // usually blocked in its claim by now
  server.stop();                       // SIGKILL
  ASSERT_TRUE(eventually([&] { return log.count.load() >= 1; })) << "no backend error reported";
  std::this_thread::sleep_for(3s);
  const int in_3s = log.count.load();
  // Backoff 100 ms doubling to 5 s: about 6 errors in 3 s. A busy loop makes thousands.
  EXPECT_LE(in_3s, 60) << "the Worker spins on a dead server";
  EXPECT_FALSE(returned.load());
  EXPECT_TRUE(log.saw("claim"));
  {
    std::lock_guard lock(log.mu);
    for (const auto& e : log.seen) {
      EXPECT_TRUE(e.code == make_error_code(errc::unavailable) || e.code == make_error_code(errc::timeout))
          << e.code.message();
      EXPECT_GT(e.retry_in.count(), 0);
    }
  }
  server.start();
  AnyQueue producer = AnyQueue::open(server.url(), q.name(), kQuick);
  (void)producer.push("after the outage");
  t.join();  // max_jobs = 1: returns once the job is done
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_GE(s.backend_errors, 1u);
  EXPECT_EQ(static_cast<int>(s.backend_errors), log.count.load());
  const Stats st = producer.stats();
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// The server dies in the middle of a job and is back before the lease runs
// out: the heartbeat's extensions fail (unavailable: never sent, so nothing
// changed on the server), are reported and tried again, and succeed once the
// server answers; the lease is not lost and the job is acked. Fails if a
// failed extension is taken as a lost lease while the lease still runs.
TEST_F(WorkerRedis, ServerRestartsDuringAJobAndTheLeaseSurvives) {
  Watchdog wd(90s);
  test::RedisServer server(kDurable);
  AnyQueue q = AnyQueue::create(server.url(), name("restart"), {}, kQuick);
  (void)q.push("long job");
  ErrorLog log;
  std::atomic<bool> started{false};
  std::atomic<bool> cancelled{false};
  WorkerOptions o{.lease = 8s, .max_jobs = 1};  // extended every 2.7 s
  o.hooks.on_backend_error = std::ref(log);
  Worker worker(
      q,
      [&](const Job&, JobContext& ctx) {
        started = true;
        cancelled = !ctx.sleep_for(7s);
        return Outcome::ack();
      },
      o);
  WorkerSummary s;
  std::thread t([&] { s = worker.run(); });
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  server.stop();  // the extension due 2.7 s after the claim fails
  ASSERT_TRUE(eventually([&] { return log.count.load() >= 1; })) << "the dead server was not noticed";
  server.start();
  t.join();
  EXPECT_FALSE(cancelled.load());
  EXPECT_TRUE(log.saw("extend"));
  EXPECT_EQ(s.lease_lost, 0u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_GE(s.backend_errors, 1u);
  const Stats st = q.stats();
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// The server stalls (SIGSTOP) in the middle of a job: the heartbeat's
// extensions time out, and are reported. A timed-out extension may still run
// when the server wakes, giving the lease a token this Worker never learns:
// then the next extension finds the lease lost (lease_lost, the handler is
// told), and the job comes back at its deadline. Either way the Worker does
// not hang, and the job ends done exactly once by a Worker's ack. Fails if
// the Worker hangs on the stalled server or the job is lost.
TEST_F(WorkerRedis, ServerStallsDuringAJobAndNoJobIsLost) {
  Watchdog wd(90s);
  test::RedisServer server;
  AnyQueue q = AnyQueue::create(server.url(), name("stall"), {}, kQuick);
  (void)q.push("long job");
  ErrorLog log;
  std::atomic<bool> started{false};
  WorkerOptions o{.lease = 3s, .max_jobs = 1};  // extended every second
  o.hooks.on_backend_error = std::ref(log);
  Worker worker(
      q,
      [&](const Job&, JobContext& ctx) {
        started = true;
        return ctx.sleep_for(4s) ? Outcome::ack() : Outcome::retry();
      },
      o);
  WorkerSummary s;
  std::thread t([&] { s = worker.run(); });
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  server.pause();
  ASSERT_TRUE(eventually([&] { return log.count.load() >= 1; })) << "the stalled server was not noticed";
  std::this_thread::sleep_for(300ms);
  server.resume();
  t.join();
  EXPECT_TRUE(log.saw("extend"));
  EXPECT_EQ(s.acked + s.lease_lost, 1u);
  if (s.lease_lost == 1) {
    // The job comes back when the lease the stale extension set runs out.
    Worker again(q, [](const Job&, JobContext&) { return Outcome::ack(); }, {.max_jobs = 1});
    EXPECT_EQ(again.run().acked, 1u);
  }
  const Stats st = q.stats();
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// The server dies between the handler's return and its ack, and stays down
// past the lease: the ack is tried until the lease's deadline, then the job
// is reported unconfirmed (not acked, not lost). Once the server is back,
// the job is claimable again (its lease ran out, attempt counted) and
// another Worker finishes it. Fails if the Worker hangs on the dead server,
// reports the job acked, or the job is lost.
TEST_F(WorkerRedis, AckWithTheServerDownIsUnconfirmedAndTheJobComesBack) {
  Watchdog wd(90s);
  test::RedisServer server(kDurable);
  AnyQueue q = AnyQueue::create(server.url(), name("ack"), {}, kQuick);
  const JobId id = q.push("job").id;
  ErrorLog log;
  std::vector<JobReport> reports;
  WorkerOptions o{.lease = 1500ms, .max_jobs = 1};
  o.hooks.on_backend_error = std::ref(log);
  o.hooks.on_done = [&](const Job&, const JobReport& r) { reports.push_back(r); };
  {
    Worker worker(
        q,
        [&](const Job&, JobContext&) {
          server.stop();  // SIGKILL: the ack below finds no server
          return Outcome::ack();
        },
        o);
    const WorkerSummary s = worker.run();
    EXPECT_EQ(s.unconfirmed, 1u);
    EXPECT_EQ(s.acked + s.lease_lost, 0u);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].result, JobResult::unconfirmed);
    EXPECT_TRUE(reports[0].backend_error);
    EXPECT_TRUE(log.saw("ack"));
  }
  server.start();
  std::uint32_t attempt = 0;
  Worker again(q,
               [&](const Job& job, JobContext&) {
                 EXPECT_EQ(job.id, id);
                 attempt = job.attempt;
                 return Outcome::ack();
               },
               {.max_jobs = 1});
  const WorkerSummary s = again.run();  // waits for the lease to run out
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(attempt, 2u);
  const Stats st = q.stats();
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// The server drops every connection (CLIENT KILL) before the ack: the ack
// fails, is sent again on a new connection, and goes through: acked, one
// error reported at most per failed try. Fails if a transient error turns a
// finished job into a redone one.
TEST_F(WorkerRedis, AnAckAfterADroppedConnectionIsSentAgain) {
  Watchdog wd(60s);
  test::RedisServer server;
  AnyQueue q = AnyQueue::create(server.url(), name("drop"), {}, kQuick);
  (void)q.push("job");
  Worker worker(q,
                [&](const Job&, JobContext&) {
                  (void)server.command({"CLIENT", "KILL", "TYPE", "normal"});
                  return Outcome::ack();
                },
                {.max_jobs = 1});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 1u);
  const Stats st = q.stats();
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// A worker process is SIGKILLed with a job in hand: nothing acks or releases
// it, and no janitor reclaims Redis leases early; the job comes back when its
// lease runs out, with the attempt counted, and another Worker finishes it.
// Fails if the job is lost or never comes back.
TEST_F(WorkerRedis, AWorkerKilledWithAJobInHandLosesNothing) {
  Watchdog wd(90s);
  test::RedisServer server;
  const std::string qname = name("killed");
  AnyQueue q = AnyQueue::create(server.url(), qname, {}, kQuick);
  const JobId id = q.push("job").id;
  test::Pipe pipe;
  const std::string url = server.url();
  const pid_t child = test::spawn_tied([&] {
    AnyQueue mine = AnyQueue::open(url, qname, kQuick);  // a connection of its own
    Worker worker(mine,
                  [&](const Job&, JobContext& ctx) {
                    (void)test::write_all(pipe.write_fd(), "claimed\n", 8);
                    (void)ctx.sleep_for(1h);
                    return Outcome::ack();
                  },
                  {.lease = 4s});
    (void)worker.run();
    return 1;
  });
  ASSERT_EQ(test::read_line(pipe.read_fd(), 30s).value_or(""), "claimed");
  test::kill_and_reap(child);
  Job job;
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty) << "the dead worker's lease ended before its deadline";
  std::uint32_t attempt = 0;
  Worker worker(q,
                [&](const Job& j, JobContext&) {
                  EXPECT_EQ(j.id, id);
                  attempt = j.attempt;
                  return Outcome::ack();
                },
                {.max_jobs = 1});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(attempt, 2u);
}

}  // namespace
}  // namespace jobring
