// The `jobring` command-line tool on a Redis server (issue 15): with
// JOBRING_URL set to a redis-server of the test's own, `jobring ...` does
// what it does on shared memory. The backend-neutral behaviour of
// tests/cli/test_cli.cpp runs again here (create / stat / ls / rm, push and
// claim, keys, stale handles, extend and release, peek of every state,
// requeue, purge, pause, a full queue, top, work), checked through the library on
// the same server; then what only Redis has: a server that is down or
// stopped (exit 1 naming the URL and what to do, within the connection
// timeouts), --url against the environment, and the options that only a
// segment has, refused.
//
// Every command is the real binary (support/cli_harness.hpp), bounded by a
// kill after its limit; no assertion is on a duration.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <vector>

#include "jobring/any_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/cli_harness.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using namespace test;  // cli_harness.hpp: jr, Proc, Json, ...

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

// Every command of a test runs on the test's server: the child inherits
// JOBRING_URL from this process.
class CliRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kCli == nullptr) GTEST_SKIP() << "the jobring CLI is not built";
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    url = server().url();
    ::setenv("JOBRING_URL", url.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("JOBRING_URL");
    for (const auto& n : names) {
      std::error_code ec;
      (void)AnyQueue::remove(url, n, ec);
    }
  }
  // A queue name unique to this test, removed from the server at the end.
  std::string name(const std::string& tag) {
    names.push_back("cli." + tag + "." + std::to_string(::getpid()) + "." + std::to_string(names.size()));
    return names.back();
  }
  [[nodiscard]] Stats stats(const std::string& n) const { return AnyQueue::open(url, n).stats(); }
  // `jobring ARGS` must exit 0; its stdout.
  std::string ok(const std::vector<std::string>& args, const std::string& input = {}) {
    const Result r = jr(args, input);
    EXPECT_EQ(r.code, 0) << show(cli(args), r);
    return r.out;
  }
  // The handle of `jobring claim NAME` (which must get a job).
  std::string claim(const std::string& q, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"claim", q};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string out = ok(args);
    const auto j = parse_json(out);
    return j ? j->str("handle") : std::string("0.0.0");
  }

  Watchdog dog{120s, "CliRedis"};
  std::string url;
  std::vector<std::string> names;
};

// ===========================================================================
// The neutral cases, on Redis
// ===========================================================================

TEST_F(CliRedis, CreateStatAndRm) {
  const std::string q = name("create");
  const Result made = jr({"create", q, "--capacity", "50", "--max-payload", "200", "--lease", "2m",
                          "--max-attempts", "3", "--dedup-window", "1m"});
  ASSERT_EQ(made.code, 0) << made.err;
  EXPECT_TRUE(contains(made.out, "created queue " + q + " on " + url)) << made.out;
  const Options o = AnyQueue::open(url, q).options();
  EXPECT_EQ(o.capacity, 50u);
  EXPECT_EQ(o.max_payload, 200u);
  EXPECT_EQ(o.default_lease, 2min);
  EXPECT_EQ(o.max_attempts, 3u);
  EXPECT_EQ(o.dedup_window, 1min);

  const auto j = parse_json(ok({"stat", q, "--json"}));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->str("name"), q);
  EXPECT_EQ(j->num("capacity"), 50);
  EXPECT_EQ(j->num("default_lease_ms"), 120000);
  EXPECT_EQ(j->num("ready"), 0);
  EXPECT_EQ(j->str("incarnation").size(), 16u);
  const std::string text = ok({"stat", q});
  EXPECT_TRUE(contains(text, "queue " + q + ": capacity 50") && contains(text, "server " + url)) << text;

  const Result again = jr({"create", q});
  EXPECT_EQ(again.code, 1) << again.err;
  EXPECT_TRUE(contains(again.err, q)) << again.err;

  EXPECT_EQ(ok({"rm", q}), "");
  std::error_code ec;
  EXPECT_FALSE(AnyQueue::open(url, q, ec));
  const Result gone = jr({"rm", q});
  EXPECT_EQ(gone.code, 1);
  EXPECT_TRUE(contains(gone.err, "no queue named '" + q + "'")) << gone.err;
}

TEST_F(CliRedis, MissingQueueExitsOneNamingTheQueue) {
  const std::string q = name("missing");
  const auto results = jr_batch(
      {{"stat", q}, {"push", q, "x"}, {"claim", q}, {"peek", q}, {"purge", q, "--all"}, {"pause", q}});
  for (const Result& r : results) {
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_TRUE(contains(r.err, q)) << r.err;
  }
}

TEST_F(CliRedis, LsListsEveryQueue) {
  const std::string a = name("ls-a"), b = name("ls-b");
  ok({"create", a, "--capacity", "7"});
  ok({"create", b});
  ok({"push", a, "x"});
  const std::string text = ok({"ls"});
  EXPECT_TRUE(contains(text, "NAME")) << text;
  EXPECT_TRUE(contains(text, a) && contains(text, b)) << text;
  const auto j = parse_json(ok({"ls", "--json"}));
  ASSERT_TRUE(j && j->kind == Json::Kind::array);
  int found = 0;
  for (const Json& item : j->items) {
    if (item.str("name") == a) {
      ++found;
      EXPECT_EQ(item.num("capacity"), 7);
      EXPECT_EQ(item.num("ready"), 1);
    }
    if (item.str("name") == b) ++found;
  }
  EXPECT_EQ(found, 2) << j->items.size();
}

TEST_F(CliRedis, PushDataOrStdinAndClaimReturnsIt) {
  const std::string q = name("push");
  ok({"create", q});
  EXPECT_TRUE(is_decimal_line(ok({"push", q, "first"})));
  EXPECT_TRUE(is_decimal_line(ok({"push", q}, "second\nline")));
  EXPECT_EQ(stats(q).ready, 2u);
  for (const char* want : {"first", "second\nline"}) {
    const Result r = jr({"claim", q, "--lease", "1m"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = parse_json(r.out);
    ASSERT_TRUE(j) << r.out;
    EXPECT_EQ(payload_of(*j), std::string(want));
    EXPECT_EQ(j->num("attempt"), 1);
    EXPECT_EQ(j->num("lease_ms"), 60000);
    EXPECT_EQ(ok({"ack", q, j->str("handle")}), "");
  }
  EXPECT_EQ(stats(q).acked, 2u);
}

TEST_F(CliRedis, ClaimRawAndBinaryPayloads) {
  const std::string q = name("raw");
  ok({"create", q});
  const std::string payload("a\0b\xff", 4);
  ok({"push", q}, payload);
  ok({"push", q}, payload);
  const Result raw = jr({"claim", q, "--raw"});
  ASSERT_EQ(raw.code, 0) << raw.err;
  EXPECT_EQ(raw.out, payload);
  EXPECT_TRUE(Lease::parse(raw.err.substr(0, raw.err.find('\n')))) << raw.err;
  const auto j = parse_json(ok({"claim", q}));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->str("payload_encoding"), "base64");
  EXPECT_EQ(payload_of(*j), payload);
}

TEST_F(CliRedis, PushKeyDeduplicates) {
  const std::string q = name("key");
  ok({"create", q});
  const std::string id = ok({"push", q, "a", "--key", "order-7"});
  const Result dup = jr({"push", q, "b", "--key", "order-7"});
  ASSERT_EQ(dup.code, 0) << dup.err;
  EXPECT_EQ(dup.out, id);
  EXPECT_TRUE(contains(dup.err, "order-7")) << dup.err;
  EXPECT_EQ(stats(q).ready, 1u);
}

TEST_F(CliRedis, NothingToClaimExitsThreeAndClaimWaitGetsALaterPush) {
  const std::string q = name("empty");
  ok({"create", q});
  const Result none = jr({"claim", q});
  EXPECT_EQ(none.code, 3) << none.err;
  EXPECT_TRUE(contains(none.err, q)) << none.err;
  auto waiting = jr_bg({"claim", q, "--wait", "30s"});
  ok({"push", q, "later"});
  const Result got = waiting->wait(60s);
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_EQ(jstr(got.out, "payload"), "later");
}

TEST_F(CliRedis, FullQueueExitsThree) {
  const std::string q = name("full");
  ok({"create", q, "--capacity", "1"});
  ok({"push", q, "a"});
  const Result full = jr({"push", q, "b"});
  EXPECT_EQ(full.code, 3) << full.err;
  EXPECT_TRUE(contains(full.err, "full")) << full.err;
  EXPECT_EQ(stats(q).ready, 1u);
}

TEST_F(CliRedis, StaleHandlesExitFourAndExtendGivesANewOne) {
  const std::string q = name("stale");
  ok({"create", q});
  ok({"push", q, "a"});
  const std::string h = claim(q);
  EXPECT_EQ(ok({"ack", q, h}), "");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"ack", q, h}, {"release", q, h}, {"extend", q, h, "--lease", "1m"}}) {
    const Result r = jr(args);
    EXPECT_EQ(r.code, 4) << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, "lease lost")) << r.err;
  }
  ok({"push", q, "b"});
  const std::string old = claim(q);
  const std::string fresh = ok({"extend", q, old, "--lease", "1m"});
  ASSERT_TRUE(Lease::parse(fresh.substr(0, fresh.size() - 1))) << fresh;
  EXPECT_EQ(jr({"ack", q, old}).code, 4);
  EXPECT_EQ(ok({"ack", q, fresh.substr(0, fresh.size() - 1)}), "");
}

TEST_F(CliRedis, ReleaseDelayNoCountAndPeekEveryState) {
  const std::string q = name("peek");
  ok({"create", q, "--max-attempts", "1"});
  ok({"push", q, "delayed-one", "--delay", "1h"});
  ok({"push", q, "to-release"});
  ok({"push", q, "to-die"});
  ok({"push", q, "stays"});
  // The first claim goes back untried: its job's next claim is attempt 1 again.
  const auto first = parse_json(ok({"claim", q}));
  ASSERT_TRUE(first);
  EXPECT_EQ(ok({"release", q, first->str("handle"), "--no-count"}), "");
  // Then each job by its payload, whatever order they come in.
  std::string leased;
  for (int i = 0; i < 3; ++i) {
    const auto j = parse_json(ok({"claim", q, "--lease", "10m"}));
    ASSERT_TRUE(j);
    EXPECT_EQ(j->num("attempt"), 1) << "--no-count counted an attempt";
    const std::string p = j->str("payload"), h = j->str("handle");
    if (p == "to-release")  // its one attempt: dead (max-attempts 1), delay or not
      EXPECT_EQ(ok({"release", q, h, "--delay", "1h"}), "");
    else if (p == "to-die")
      EXPECT_EQ(ok({"release", q, h, "--error", "it broke"}), "");
    else
      leased = h;
  }
  ASSERT_FALSE(leased.empty());
  const Stats s = stats(q);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.dead, 2u);
  EXPECT_EQ(s.leased, 1u);

  const auto dead = parse_json(ok({"peek", q, "--state", "dead", "--json"}));
  ASSERT_TRUE(dead && dead->kind == Json::Kind::array);
  ASSERT_EQ(dead->items.size(), 2u);
  bool saw_error = false;
  for (const Json& j : dead->items) {
    EXPECT_EQ(j.str("state"), "dead");
    if (payload_of(j) == std::string("to-die")) saw_error = j.str("error") == "it broke";
  }
  EXPECT_TRUE(saw_error);
  const auto delayed = parse_json(ok({"peek", q, "--state", "delayed", "--json"}));
  ASSERT_TRUE(delayed && delayed->items.size() == 1u);
  EXPECT_EQ(payload_of(delayed->items[0]), std::string("delayed-one"));
  const std::string text = ok({"peek", q, "--state", "leased"});
  EXPECT_TRUE(contains(text, "leased") && contains(text, "\"stays\"")) << text;
  EXPECT_EQ(ok({"ack", q, leased}), "");
}

TEST_F(CliRedis, RequeueAndPurge) {
  const std::string q = name("requeue");
  ok({"create", q, "--max-attempts", "1"});
  for (const char* p : {"a", "b", "c"}) ok({"push", q, p});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ok({"release", q, claim(q)}), "");
  EXPECT_EQ(stats(q).dead, 3u);
  const auto dead = parse_json(ok({"peek", q, "--state", "dead", "--json"}));
  ASSERT_TRUE(dead && dead->items.size() == 3u);
  const std::string one = std::to_string(dead->items[0].num("job"));
  EXPECT_EQ(ok({"requeue", q, one}), "1\n");
  const Result not_dead = jr({"requeue", q, one});
  EXPECT_EQ(not_dead.code, 1);
  EXPECT_EQ(ok({"requeue", q, "--dead"}), "2\n");
  EXPECT_EQ(stats(q).ready, 3u);
  ok({"push", q, "later", "--delay", "1h"});
  EXPECT_EQ(ok({"purge", q, "--state", "delayed"}), "1\n");
  EXPECT_EQ(ok({"purge", q, "--all"}), "3\n");
  EXPECT_EQ(stats(q).ready, 0u);
}

TEST_F(CliRedis, PauseAndResume) {
  const std::string q = name("pause");
  ok({"create", q});
  ok({"push", q, "x"});
  EXPECT_EQ(ok({"pause", q}), "queue '" + q + "' paused\n");
  EXPECT_EQ(ok({"pause", q}), "queue '" + q + "' was already paused\n");
  EXPECT_EQ(jr({"claim", q}).code, 3);
  EXPECT_TRUE(contains(ok({"stat", q}), "PAUSED"));
  EXPECT_EQ(ok({"resume", q}), "queue '" + q + "' running\n");
  EXPECT_EQ(jr({"claim", q}).code, 0);
}

TEST_F(CliRedis, TopShowsTheServersQueues) {
  const std::string q = name("top");
  ok({"create", q, "--capacity", "9"});
  ok({"push", q, "x"});
  const std::string text = ok({"top", "--once"});
  EXPECT_TRUE(contains(text, q) && contains(text, "8/9")) << text;
  const Result frames = jr({"top", q, "--frames", "2", "--interval", "50ms", "--json"});
  ASSERT_EQ(frames.code, 0) << frames.err;
  const std::string second = frames.out.substr(frames.out.find('\n') + 1);
  const auto j = parse_json(second);
  ASSERT_TRUE(j) << frames.out;
  const Json* queues = j->find("queues");
  ASSERT_TRUE(queues && queues->items.size() == 1u) << frames.out;
  EXPECT_EQ(queues->items[0].str("name"), q);
  EXPECT_EQ(queues->items[0].num("ready"), 1);
  EXPECT_TRUE(queues->items[0].find("per_second")->kind == Json::Kind::object) << frames.out;
}

// `jobring work` on Redis: the same Worker (on AnyQueue), a command per job.
TEST_F(CliRedis, WorkRunsACommandPerJob) {
  const std::string q = name("work");
  ok({"create", q});
  ok({"push", q, "one"});
  ok({"push", q, "two"});
  TempDir out("work");
  const Result r = jr({"work", q, "--max-jobs", "2", "--", "/bin/sh", "-c",
                       "cat >> \"$0/$JOBRING_QUEUE.$JOBRING_JOB_ID\"", out.str()},
                      {}, 60s);
  ASSERT_EQ(r.code, 0) << r.err;
  const Stats s = stats(q);
  EXPECT_EQ(s.acked, 2u);
  EXPECT_EQ(s.ready + s.leased, 0u);
  // One file per job, named by its id (on Redis ids are floored by the
  // server's clock in µs: the same number of digits, so sorted by name is
  // sorted by id, which is push order).
  std::string all;
  for (const auto& e : out.entries()) all += out.read(e);
  EXPECT_EQ(out.entries().size(), 2u);
  EXPECT_EQ(all, "onetwo");
}

TEST_F(CliRedis, WorkFailingCommandEndsDeadWithItsExitStatus) {
  const std::string q = name("work-dead");
  ok({"create", q, "--max-attempts", "2"});
  ok({"push", q, "x"});
  const Result r = jr({"work", q, "--max-jobs", "2", "--backoff", "10ms", "--", "false"}, {}, 60s);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "attempts used up: dead-lettered")) << r.err;
  const auto dead = parse_json(ok({"peek", q, "--state", "dead", "--json"}));
  ASSERT_TRUE(dead && dead->items.size() == 1u);
  EXPECT_EQ(dead->items[0].str("error"), "false: exit 1");
  EXPECT_EQ(dead->items[0].num("attempts"), 2);
}

// ===========================================================================
// Redis only
// ===========================================================================

// A server that is down (nothing at the socket, a refused port) or stopped
// (SIGSTOP: connections hang): every command exits 1, naming the URL and
// saying what to do, within the connection timeouts — never a hang.
TEST_F(CliRedis, ServerDownExitsOneNamingTheUrl) {
  TempDir dir("down");
  const std::vector<std::string> down_urls = {"redis+unix://" + dir.file("nothing.sock"),
                                              "redis://127.0.0.1:1"};
  for (const std::string& down : down_urls) {
    ::setenv("JOBRING_URL", down.c_str(), 1);
    const std::vector<std::vector<std::string>> rows = {
        {"ls"},        {"create", "q"},   {"push", "q", "x"}, {"claim", "q", "--wait", "10s"},
        {"stat", "q"}, {"top", "--once"}, {"rm", "q"}};
    const auto results = jr_batch(rows, {}, 60s);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Result& r = results[i];
      EXPECT_EQ(r.code, 1) << down << show(cli(rows[i]), r);
      EXPECT_TRUE(contains(r.err, "is redis-server running at " + down + "?")) << show(cli(rows[i]), r);
      EXPECT_TRUE(contains(r.err, "JOBRING_URL")) << r.err;
    }
  }
}

TEST_F(CliRedis, StoppedServerIsAnErrorNotAHang) {
  test::RedisServer stopped;
  ::setenv("JOBRING_URL", stopped.url().c_str(), 1);
  const Result made = jr({"create", "stopped-q"});
  ASSERT_EQ(made.code, 0) << made.err;
  stopped.pause();
  // Connecting works (the kernel accepts), answers never come: the call's
  // timeout (RedisOptions::io_timeout, 5 s) ends it.
  const Result r = jr({"push", "stopped-q", "x"}, {}, 60s);
  stopped.resume();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "is redis-server running at " + stopped.url())) << r.err;
}

TEST_F(CliRedis, UrlOptionBeatsTheEnvironment) {
  TempDir dir("url");
  const std::string q = name("url");
  ::setenv("JOBRING_URL", ("redis+unix://" + dir.file("nothing.sock")).c_str(), 1);
  // Before the subcommand, after it, and as --url=URL.
  ok({"--url", url, "create", q});
  ok({"push", q, "x", "--url", url});
  EXPECT_EQ(ok({"--url=" + url, "stat", q, "--json"}).find("\"ready\":1") != std::string::npos, true);
  EXPECT_EQ(jr({"stat", q}).code, 1);  // the environment's server is down
  // --url shm: beats a Redis JOBRING_URL: the queue is made in shared memory.
  ::setenv("JOBRING_URL", url.c_str(), 1);
  test::QueueName shm_name("cli-redis-url");
  ok({"--url", "shm:", "create", shm_name});
  EXPECT_NO_THROW((void)Queue::open(shm_name));
  std::error_code ec;
  EXPECT_FALSE(AnyQueue::open(url, shm_name.str(), ec));
}

TEST_F(CliRedis, BadUrlsAreUsageErrors) {
  ::setenv("JOBRING_URL", "postgres://db", 1);
  const Result env = jr({"ls"});
  EXPECT_EQ(env.code, 2);
  EXPECT_TRUE(contains(env.err, "postgres://db") && contains(env.err, "JOBRING_URL") &&
              contains(env.err, "redis://HOST:PORT"))
      << env.err;
  const Result opt = jr({"--url", "amqp://x", "ls"});
  EXPECT_EQ(opt.code, 2);
  EXPECT_TRUE(contains(opt.err, "amqp://x") && !contains(opt.err, "JOBRING_URL")) << opt.err;
  EXPECT_EQ(jr({"--url"}).code, 2);
}

TEST_F(CliRedis, ShmOnlyOptionsAreRefusedSayingWhy) {
  const std::string q = name("shm-only");
  TempDir dir("shm-only");
  const std::vector<std::vector<std::string>> rows = {
      {"create", q, "--mode", "0640"},     {"create", q, "--group", "jobring"},
      {"create", q, "--dir", dir.str()},   {"create", q, "--sync", "always"},
      {"create", q, "--dedup-keys", "64"}, {"ls", "--dir", dir.str()}};
  const std::vector<std::string> option = {"--mode", "--group", "--dir", "--sync", "--dedup-keys", "--dir"};
  const auto results = jr_batch(rows);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(results[i].code, 2) << show(cli(rows[i]), results[i]);
    EXPECT_TRUE(contains(results[i].err, option[i] + " is for queues in shared memory") &&
                contains(results[i].err, url))
        << show(cli(rows[i]), results[i]);
  }
  std::error_code ec;
  EXPECT_FALSE(AnyQueue::open(url, q, ec)) << "a refused create made the queue";
}

// `jobring move` on Redis: the dead jobs into a dead-letter queue with their
// notes, and the redrive back as ready jobs.
TEST_F(CliRedis, MoveDeadJobsAndRedriveThem) {
  const std::string a = name("move-a"), b = name("move-b");
  ok({"create", a, "--max-attempts", "1"});
  ok({"create", b});
  ok({"push", a, "one"});
  ok({"push", a, "two"});
  for (int i = 0; i < 2; ++i) ok({"release", a, claim(a), "--error", "broken"});
  EXPECT_EQ(stats(a).dead, 2u);
  const Result moved = jr({"move", a, b});
  ASSERT_EQ(moved.code, 0) << moved.err;
  EXPECT_EQ(moved.out, "2\n");
  EXPECT_EQ(stats(a).dead, 0u);
  EXPECT_EQ(stats(b).dead, 2u);
  const Result peek = jr({"peek", b, "--state", "dead"});
  EXPECT_TRUE(contains(peek.out, "broken")) << peek.out;
  const Result back = jr({"move", b, a, "--ready"});
  ASSERT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, "2\n");
  EXPECT_EQ(stats(a).ready, 2u);
  EXPECT_EQ(stats(b).dead, 0u);
}

}  // namespace
}  // namespace jobring
