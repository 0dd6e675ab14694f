// The Redis backend's own behaviour beside the contract suite
// (test_contract.cpp): URLs, a server that is down, stopped or restarted,
// the function library flushed, an evicting server refused. Every test has
// its own redis-server (redis_server.hpp) and a watchdog: a failure to time
// out is a failed test, never a hung one.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::RedisServer;
using test::Watchdog;

class RedisServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  }
};

RedisOptions quick() {
  RedisOptions o;
  o.connect_timeout = 500ms;
  o.io_timeout = 300ms;
  return o;
}

std::string name_for(const char* what) {
  return std::string("srv.") + what + "." + std::to_string(::getpid());
}

// A TCP port on 127.0.0.1 with nothing listening (bound, then closed).
int free_port() { return test::free_tcp_port(); }

TEST_F(RedisServerTest, UrlsAreChecked) {
  std::error_code ec;
  EXPECT_FALSE(RedisQueue::open("redis+cluster://127.0.0.1:7000,127.0.0.1:99999", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_FALSE(RedisQueue::open("redis+cluster://", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_FALSE(RedisQueue::open("http://127.0.0.1:6379", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_FALSE(RedisQueue::open("redis://127.0.0.1:99999", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_FALSE(RedisQueue::open("redis+unix://relative.sock", "q", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_FALSE(RedisQueue::open("redis://127.0.0.1:6379", "bad/name", ec));
  EXPECT_EQ(ec, make_error_code(errc::invalid_name));
  try {
    (void)RedisQueue::open("redis+cluster://h:1,h:0", "q");
    ADD_FAILURE() << "no exception";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("1..65535"), std::string::npos) << e.what();
  }
}

// redis+cluster:// naming seeds that are down: unavailable at once; naming a
// server that is not a cluster node: server_error, saying so.
TEST_F(RedisServerTest, AClusterUrlToNoClusterIsRefusedAtOnce) {
  Watchdog dog(30s);
  const auto start = Clock::now();
  std::error_code ec;
  const std::string down = "127.0.0.1:" + std::to_string(free_port());
  EXPECT_FALSE(RedisQueue::open("redis+cluster://" + down + "," + down, "q", ec, quick()));
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
  EXPECT_LT(Clock::now() - start, 5s);
  const int port = free_port();
  RedisServer server({"--port", std::to_string(port), "--bind", "127.0.0.1"});
  try {
    (void)RedisQueue::open("redis+cluster://127.0.0.1:" + std::to_string(port), "q", quick());
    ADD_FAILURE() << "no exception";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::server_error)) << e.what();
    EXPECT_NE(std::string(e.what()).find("redis://"), std::string::npos) << e.what();
  }
}

// A server that is down: unavailable at once (connection refused), over TCP
// and over a unix socket; never a hang.
TEST_F(RedisServerTest, AServerThatIsDownIsUnavailableAtOnce) {
  Watchdog dog(30s);
  const auto start = Clock::now();
  std::error_code ec;
  EXPECT_FALSE(RedisQueue::open("redis://127.0.0.1:" + std::to_string(free_port()), "q", ec, quick()));
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
  EXPECT_FALSE(RedisQueue::open("redis+unix:///nonexistent/jobring-test.sock", "q", ec, quick()));
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
  EXPECT_LT(Clock::now() - start, 5s);
  try {
    (void)RedisQueue::open("redis+unix:///nonexistent/jobring-test.sock", "q", quick());
    ADD_FAILURE() << "no exception";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("start redis-server"), std::string::npos) << e.what();
  }
}

// A server killed under an open queue: the next calls are unavailable
// (after one reconnection attempt), quickly.
TEST_F(RedisServerTest, AServerKilledMidRunIsUnavailable) {
  Watchdog dog(30s);
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("killed"), {.capacity = 4}, quick());
  ASSERT_TRUE(q.push("job"));
  server.stop();
  const auto start = Clock::now();
  std::error_code ec;
  Job job;
  EXPECT_EQ(q.try_claim(job, {}, ec), ClaimStatus::empty);
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
  (void)q.push(std::as_bytes(std::span("x", 1)), {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::unavailable));
  EXPECT_LT(Clock::now() - start, 5s);
}

// A stopped server (SIGSTOP: it accepts connections, never answers) is
// `timeout` after io_timeout, for a call and for a blocked claim.
TEST_F(RedisServerTest, AStoppedServerIsTimeout) {
  Watchdog dog(30s);
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("stopped"), {.capacity = 4}, quick());
  server.pause();
  const auto start = Clock::now();
  std::error_code ec;
  (void)q.push(std::as_bytes(std::span("x", 1)), {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::timeout));
  Job job;
  EXPECT_EQ(q.claim(job, 2s, {}, ec), ClaimStatus::empty);
  EXPECT_EQ(ec, make_error_code(errc::timeout));
  EXPECT_LT(Clock::now() - start, 10s);
  server.resume();
  // Running again: the queue works again (new connections). The push that
  // timed out reached the server's socket before it stopped, so it took
  // effect when it resumed: "may or may not have taken effect" — here, did.
  ASSERT_TRUE(q.push("after"));
  std::vector<std::string> texts;
  while (q.try_claim(job) == ClaimStatus::ok) {
    texts.emplace_back(job.text());
    EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  }
  ASSERT_FALSE(texts.empty());
  EXPECT_EQ(texts.back(), "after");
  EXPECT_LE(texts.size(), 2u);
}

// FUNCTION FLUSH (or a server restarted empty of functions): the library is
// loaded again and the call retried, unseen by the caller.
TEST_F(RedisServerTest, AFlushedFunctionLibraryIsReloadedTransparently) {
  Watchdog dog(30s);
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("flush"), {.capacity = 4});
  ASSERT_TRUE(q.push("one"));
  auto r = server.command({"FUNCTION", "FLUSH"});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
  ASSERT_TRUE(q.push("two"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "one");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().pushed, 2u);
}

// move_dead's crash case: a mover that died after the target took the copy
// (jr_move_in) and before the removal here (jr_move_out) left the job in
// both queues. The next move sends the same key: the target answers
// duplicate, and the job is only removed here — one copy in the target.
TEST_F(RedisServerTest, AMoveCutShortIsFinishedWithoutADoubledJob) {
  Watchdog dog(30s);
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("move-from"), {.capacity = 4, .max_attempts = 1});
  auto dlq = RedisQueue::create(server.url(), name_for("move-to"), {.capacity = 4});
  ASSERT_TRUE(q.push("poison"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.release(job.lease, 0ms, "broken"), LeaseStatus::ok);
  // The first mover's two first calls, by hand (as lib/redis/move.cpp sends them).
  const std::string from_key = "{jr:" + q.name() + "}", to_key = "{jr:" + dlq.name() + "}";
  auto taken = server.command({"FCALL", "jr_move_take", "1", from_key, "0", "10"});
  ASSERT_TRUE(taken && taken->type == REDIS_REPLY_ARRAY && taken->elements == 8)
      << (taken ? taken->type : -1);
  const std::string id = std::to_string(taken->element[2]->integer);
  const std::string died(taken->element[3]->str, taken->element[3]->len);
  char inc[17];
  std::snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(q.incarnation()));
  const std::string key = std::string("#moved/") + inc + "/" + id + "." + died;
  auto in =
      server.command({"FCALL", "jr_move_in", "1", to_key, key, "0", "1", "0", died, "broken", "poison"});
  ASSERT_TRUE(in && in->type == REDIS_REPLY_ARRAY && in->elements == 2);
  ASSERT_EQ(std::string(in->element[0]->str, in->element[0]->len), "ok");
  // ... and it died. The job is in both queues now.
  EXPECT_EQ(q.stats().dead, 1u);
  EXPECT_EQ(dlq.stats().dead, 1u);
  const MoveResult r = q.move_dead(dlq);
  EXPECT_EQ(r.moved, 1u);
  EXPECT_EQ(q.stats().dead, 0u);
  EXPECT_EQ(dlq.stats().dead, 1u);  // not two
  EXPECT_EQ(dlq.stats().duplicates, 1u);
  const auto dead = dlq.peek(JobState::dead, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].error, "broken");
}

// A connection closed by the server (CLIENT KILL, an idle timeout, a proxy):
// one reconnection, the call goes through.
TEST_F(RedisServerTest, AClosedConnectionIsOpenedAgain) {
  Watchdog dog(30s);
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("killclient"), {.capacity = 4});
  ASSERT_TRUE(q.push("one"));
  auto r = server.command({"CLIENT", "KILL", "TYPE", "normal"});
  ASSERT_TRUE(r);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);  // a claim is safe to send again
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

// maxmemory-policy: an evicting policy is refused with a message that says
// what to set; noeviction and volatile-* are accepted.
TEST_F(RedisServerTest, AnEvictingServerIsRefused) {
  Watchdog dog(30s);
  RedisServer server({"--maxmemory-policy", "allkeys-lru"});
  try {
    (void)RedisQueue::create(server.url(), name_for("lru"), {.capacity = 4});
    ADD_FAILURE() << "an allkeys-lru server was accepted";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::unsafe_server_config));
    EXPECT_NE(std::string(e.what()).find("maxmemory-policy noeviction"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(server.command({"CONFIG", "SET", "maxmemory-policy", "volatile-lru"}));
  EXPECT_NO_THROW((void)RedisQueue::create(server.url(), name_for("volatile"), {.capacity = 4}));
  RedisOptions unchecked;
  unchecked.check_eviction_policy = false;
  ASSERT_TRUE(server.command({"CONFIG", "SET", "maxmemory-policy", "allkeys-random"}));
  EXPECT_NO_THROW((void)RedisQueue::open(server.url(), name_for("volatile"), unchecked));
}

// Options: open_or_create of a queue with other options names the fields.
TEST_F(RedisServerTest, OpenOrCreateComparesTheOptions) {
  RedisServer server;
  auto q = RedisQueue::open_or_create(server.url(), name_for("oc"), {.capacity = 4, .max_attempts = 3});
  auto same = RedisQueue::open_or_create(server.url(), name_for("oc"), {.capacity = 4, .max_attempts = 3});
  EXPECT_EQ(same.incarnation(), q.incarnation());
  try {
    (void)RedisQueue::open_or_create(server.url(), name_for("oc"), {.capacity = 8, .max_attempts = 3});
    ADD_FAILURE() << "no mismatch";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::options_mismatch));
    EXPECT_NE(std::string(e.what()).find("capacity 4 exists, 8 asked"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(RedisQueue::remove(server.url(), name_for("oc")));
  EXPECT_FALSE(RedisQueue::remove(server.url(), name_for("oc")));
  std::error_code ec;
  (void)q.push(std::as_bytes(std::span("x", 1)), {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::not_found));
  // Created again: another incarnation.
  auto again = RedisQueue::create(server.url(), name_for("oc"), {.capacity = 4});
  EXPECT_NE(again.incarnation(), q.incarnation());
  EXPECT_TRUE(again.push("x"));
}

// A server killed and started again with its append-only file (fsync
// always): every job is still there, the lease still held and its token
// still current; the open handle reconnects on its own.
TEST_F(RedisServerTest, JobsAndLeasesSurviveAServerRestartWithAof) {
  Watchdog dog(60s);
  RedisServer server({"--appendonly", "yes", "--appendfsync", "always"});
  auto q = RedisQueue::create(server.url(), name_for("aof"), {.capacity = 8});
  for (const char* text : {"one", "two", "three"}) ASSERT_TRUE(q.push(text));
  Job held;
  ASSERT_EQ(q.try_claim(held, ClaimOptions{.lease = 60s}), ClaimStatus::ok);
  server.stop();  // SIGKILL: no shutdown, no final save
  server.start();
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(q.ack(held.lease), LeaseStatus::ok);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "two");
}

// RedisOptions::wait_replicas: calls that write are acknowledged by a
// replica (WAIT); a replica that does not answer makes a push `timeout`,
// saying it took effect on the primary.
TEST_F(RedisServerTest, WaitForAReplica) {
  Watchdog dog(60s);
  const std::string port = std::to_string(free_port());
  RedisServer primary({"--port", port, "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0"});
  RedisServer replica({"--replicaof", "127.0.0.1", port});
  // The link is up once the replica has acknowledged a write (its offset
  // is the primary's): before that, a first WAIT can take up to the
  // replica's 1 s acknowledgement period.
  auto replication = [&](bool after_write) {
    auto info = primary.command({"INFO", "replication"});
    const std::string text = info ? std::string(info->str, info->len) : std::string();
    auto field = [&](const std::string& key) {
      const auto at = text.find(key);
      return at == std::string::npos
                 ? std::string("?")
                 : text.substr(at + key.size(), text.find_first_of(",\r", at) - at - key.size());
    };
    if (text.find("state=online") == std::string::npos) return false;
    return !after_write || (field("offset=") == field("master_repl_offset:") && field("offset=") != "0");
  };
  bool up = false;
  for (int i = 0; i < 1000 && !up; ++i)
    if (!(up = replication(false))) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(up) << "the replica never came online";
  ASSERT_TRUE(primary.command({"SET", "warm-up", "1"}));  // an offset for the replica to acknowledge
  up = false;
  for (int i = 0; i < 1000 && !up; ++i)
    if (!(up = replication(true))) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(up) << "the replica never acknowledged a write";
  RedisOptions acked = quick();
  acked.wait_replicas = 1;
  acked.wait_timeout = 300ms;
  acked.io_timeout = 2s;
  const std::string name = name_for("wait");
  auto q = RedisQueue::create(primary.url(), name, {.capacity = 8}, acked);
  ASSERT_TRUE(q.push("one"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  auto cfg = replica.command({"HGET", "{jr:" + name + "}:cfg", "capacity"});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(std::string(cfg->str, cfg->len), "8");  // the replica has the queue

  replica.pause();
  try {
    (void)q.push("two");
    ADD_FAILURE() << "a push without its replica's acknowledgement succeeded";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::timeout));
    EXPECT_NE(std::string(e.what()).find("took effect on the primary"), std::string::npos) << e.what();
  }
  replica.resume();
  auto plain = RedisQueue::open(primary.url(), name, quick());
  EXPECT_EQ(plain.stats().ready, 1u);  // it did
}

// Something that is not a Redis server on the port: one that answers
// garbage is protocol_error, one that never answers is timeout; neither
// hangs.
TEST_F(RedisServerTest, AServerThatIsNotRedisIsAProtocolErrorOrATimeout) {
  Watchdog dog(30s);
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string url = "redis://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  std::atomic<bool> answer{true}, done{false};
  std::thread server([&] {
    std::vector<int> open;  // kept open (silent) until the test is done
    for (int i = 0; i < 2; ++i) {
      const int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) break;
      if (answer.load()) {
        char buf[256];
        (void)!::read(fd, buf, sizeof buf);
        static const char kHttp[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
        (void)!::write(fd, kHttp, sizeof kHttp - 1);
      }
      open.push_back(fd);
    }
    while (!done.load()) std::this_thread::sleep_for(10ms);
    for (const int fd : open) ::close(fd);
  });
  std::error_code ec;
  EXPECT_FALSE(RedisQueue::open(url, "q", ec, quick()));
  EXPECT_EQ(ec, make_error_code(errc::protocol_error));
  answer.store(false);
  const auto start = Clock::now();
  EXPECT_FALSE(RedisQueue::open(url, "q", ec, quick()));
  EXPECT_EQ(ec, make_error_code(errc::timeout));
  EXPECT_LT(Clock::now() - start, 5s);
  done.store(true);
  ::shutdown(listener, SHUT_RDWR);
  ::close(listener);
  server.join();
}

// A server out of memory (maxmemory, noeviction) refuses pushes:
// server_error, saying what to do; nothing half done.
TEST_F(RedisServerTest, AServerOutOfMemoryIsAServerError) {
  Watchdog dog(30s);
  RedisServer server({"--maxmemory", "3mb"});
  auto q = RedisQueue::create(server.url(), name_for("oom"), {.capacity = 100000, .max_payload = 65536});
  const std::string payload(60000, 'x');
  std::error_code ec;
  std::uint64_t pushed = 0;
  for (int i = 0; i < 1000 && !ec; ++i)
    if (q.push(std::as_bytes(std::span(payload.data(), payload.size())), {}, ec)) ++pushed;
  EXPECT_EQ(ec, make_error_code(errc::server_error));
  try {
    (void)q.push(payload);
    ADD_FAILURE() << "no exception";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("maxmemory"), std::string::npos) << e.what();
  }
  const Stats s = q.stats();  // reads still work
  EXPECT_EQ(s.pushed, pushed);
  EXPECT_EQ(s.ready, pushed);
  Job job;
  // Workers can still drain it: claims, acks and purges run at maxmemory.
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.purge(), pushed - 1);
  EXPECT_TRUE(q.push("fits again"));
}

// The job count the library keeps in B:cfg (held: what `full` is decided
// by) equals the jobs in its sorted sets after every kind of change.
TEST_F(RedisServerTest, TheHeldCountMatchesTheSets) {
  RedisServer server;
  const std::string name = name_for("held"), b = "{jr:" + name + "}";
  auto q = RedisQueue::create(server.url(), name, {.capacity = 16, .max_attempts = 1});
  auto check = [&](const char* after) {
    auto number = [&](std::initializer_list<std::string_view> args) -> long long {
      auto r = server.command(args);
      if (!r) return -1;
      if (r->type == REDIS_REPLY_INTEGER) return r->integer;
      return r->type == REDIS_REPLY_STRING ? std::stoll(std::string(r->str, r->len)) : -1;
    };
    const long long sets =
        number({"ZCARD", b + ":pend"}) + number({"ZCARD", b + ":lease"}) + number({"ZCARD", b + ":dead"});
    EXPECT_EQ(number({"HGET", b + ":cfg", "held"}), sets) << "after " << after;
  };
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(q.push("job " + std::to_string(i)));
  ASSERT_TRUE(q.push("keyed", PushOptions{.key = "k"}));
  ASSERT_TRUE(q.push("keyed again", PushOptions{.key = "k"}).duplicate);
  check("pushes");
  std::vector<Job> jobs(4);
  ASSERT_EQ(q.try_claim_many(jobs, ClaimOptions{.lease = 30ms}), 4u);
  ASSERT_EQ(q.ack(jobs[0].lease), LeaseStatus::ok);
  ASSERT_EQ(q.release(jobs[1].lease, 0ms, "fails"), LeaseStatus::ok);  // max_attempts 1: dead
  check("ack, release to dead");
  std::this_thread::sleep_for(100ms);
  (void)q.sweep();  // jobs[2], jobs[3]: expired on their last attempt: dead
  check("sweep");
  EXPECT_TRUE(q.remove_dead(jobs[1].id));
  EXPECT_EQ(q.requeue_dead(), 2u);
  check("remove_dead, requeue");
  const std::vector<Lease> none = {jobs[0].lease};
  EXPECT_EQ(q.ack_many(none), 0u);
  EXPECT_EQ(q.purge(PurgeWhat::ready), 5u);
  check("purge");
  EXPECT_EQ(q.stats().free, 16u);
}

// list: every queue on the server, sorted; none after their removal.
TEST_F(RedisServerTest, ListNamesTheServersQueues) {
  RedisServer server;
  EXPECT_TRUE(RedisQueue::list(server.url()).empty());
  auto b = RedisQueue::create(server.url(), "b.queue", {.capacity = 4});
  auto a = RedisQueue::create(server.url(), "a-queue", {.capacity = 4});
  EXPECT_EQ(RedisQueue::list(server.url()), (std::vector<std::string>{"a-queue", "b.queue"}));
  EXPECT_TRUE(RedisQueue::remove(server.url(), "a-queue"));
  EXPECT_EQ(RedisQueue::list(server.url()), (std::vector<std::string>{"b.queue"}));
}

// Arguments out of range and payloads over max_payload are refused before
// anything is sent: nothing reaches the queue.
TEST_F(RedisServerTest, OversizedPayloadAndBadArgumentsAreRefusedBeforeTheServer) {
  RedisServer server;
  auto q = RedisQueue::create(server.url(), name_for("args"), {.capacity = 4, .max_payload = 8});
  std::error_code ec;
  (void)q.push(std::as_bytes(std::span("123456789", 9)), {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::payload_too_large));
  Job job;
  EXPECT_THROW((void)q.try_claim(job, ClaimOptions{.lease = kMaxLease + 1ms}), error);
  EXPECT_THROW((void)q.push("x", PushOptions{.delay = -1ms}), error);
  EXPECT_EQ(q.stats().pushed, 0u);
}

}  // namespace
}  // namespace jobring
