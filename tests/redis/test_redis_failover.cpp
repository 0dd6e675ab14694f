// Failover of a standalone primary to its replica (REPLICAOF NO ONE), and
// what the README's guarantees table ("More than one host") promises of it:
// - with RedisOptions::wait_replicas = 1, every call the primary answered
//   (pushes, claims, acks) is on the promoted replica: no acknowledged job
//   lost, no acked job redone, a lease held across the failover still acks
//   with its token, and one that ran out meanwhile is taken over (its old
//   holder's ack is lease_lost);
// - with asynchronous replication only, what the replica never got is lost:
//   a push (gone), an ack (the job is done again, its old holder's late ack
//   rejected); with wait_replicas, the same write answers timeout, so the
//   client knows.
// A URL names one server: the handles on the old primary fail
// (unavailable), and the application opens the queue on the new one.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>

#include "jobring/redis_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;
using test::Watchdog;

std::span<const std::byte> bytes(std::string_view text) { return std::as_bytes(std::span(text)); }

ClaimOptions lease(milliseconds ms) {
  ClaimOptions o;
  o.lease = ms;
  return o;
}

RedisOptions waiting(milliseconds wait_timeout = 2000ms) {
  RedisOptions o;
  o.wait_replicas = 1;
  o.wait_timeout = wait_timeout;
  return o;
}

class Failover : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    // The primary on a TCP port (replication needs one), chosen free; again
    // with another if it was taken meanwhile.
    for (int attempt = 0; !primary_; ++attempt) {
      try {
        port_ = test::free_tcp_port();
        primary_ = std::make_unique<RedisServer>(std::vector<std::string>{
            "--port", std::to_string(port_), "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0"});
      } catch (const std::runtime_error&) {
        if (attempt == 3) throw;
      }
    }
    replica_ = std::make_unique<RedisServer>(std::vector<std::string>{
        "--replicaof", "127.0.0.1", std::to_string(port_), "--repl-ping-replica-period", "1"});
    // In sync: the replica's link is up and the primary counts it online.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (test::reply_text(replica_->command({"INFO", "replication"})).find("master_link_status:up") ==
               std::string::npos ||
           test::reply_text(primary_->command({"INFO", "replication"})).find("state=online") ==
               std::string::npos) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the replica did not sync within 20 s";
      std::this_thread::sleep_for(10ms);
    }
    // And acknowledging: the first WAIT after a sync can wait for the
    // replica's periodic REPLCONF ACK (up to a second); the library loaded.
    EXPECT_TRUE(RedisQueue::create(primary_->url(), name_ + ".warm", {}, waiting(10s)).push("x"));
    EXPECT_TRUE(RedisQueue::remove(primary_->url(), name_ + ".warm", waiting(10s)));
  }

  void promote_replica() { ASSERT_EQ(test::reply_text(replica_->command({"REPLICAOF", "NO", "ONE"})), "OK"); }

  std::string name_ = "failover." + std::to_string(::getpid());
  int port_ = 0;
  std::unique_ptr<RedisServer> primary_;
  std::unique_ptr<RedisServer> replica_;
};

// wait_replicas = 1: the primary SIGKILLed mid-run, the replica promoted;
// everything the primary had answered is there.
TEST_F(Failover, WithWaitReplicasEveryAcknowledgedCallSurvives) {
  Watchdog dog(60s);
  auto q = RedisQueue::create(primary_->url(), name_, {.capacity = 64}, waiting());
  std::set<JobId> pushed;
  for (int i = 0; i < 20; ++i) {
    const PushResult p = q.push("job " + std::to_string(i));
    ASSERT_TRUE(p);
    pushed.insert(p.id);
  }
  std::set<JobId> done;
  Job job;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(q.try_claim(job, lease(60s)), ClaimStatus::ok);
    ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
    done.insert(job.id);
  }
  Job held, expiring;
  ASSERT_EQ(q.try_claim(held, lease(60s)), ClaimStatus::ok);
  ASSERT_EQ(q.try_claim(expiring, lease(300ms)), ClaimStatus::ok);

  primary_->stop();  // SIGKILL
  promote_replica();

  // The old handle names the dead server: unavailable, never a hang.
  std::error_code ec;
  (void)q.push(bytes("to the dead primary"), {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::unavailable));

  auto after = RedisQueue::open(replica_->url(), name_);
  const Stats s = after.stats();
  EXPECT_EQ(s.pushed, 20u);
  EXPECT_EQ(s.acked, 3u);
  EXPECT_EQ(s.ready + s.leased + s.expired, 17u);
  EXPECT_EQ(after.ack(held.lease), LeaseStatus::ok);  // the lease and its token were replicated
  done.insert(held.id);
  std::this_thread::sleep_for(400ms);  // `expiring` runs out
  bool took_over = false;
  while (after.try_claim(job) == ClaimStatus::ok) {
    EXPECT_TRUE(done.insert(job.id).second)
        << "job " << job.id << " acked before the failover, delivered again";
    if (job.id == expiring.id) {
      took_over = true;
      EXPECT_EQ(job.attempt, 2u);
      EXPECT_EQ(after.ack(expiring.lease), LeaseStatus::lease_lost);  // the old holder's late ack
    }
    EXPECT_EQ(after.ack(job.lease), LeaseStatus::ok);
  }
  EXPECT_TRUE(took_over);
  EXPECT_EQ(done, pushed);  // nothing lost, nothing done twice
}

// Asynchronous replication: the replica promoted while the old primary
// still takes writes (a partition; Sentinel's failover), which are lost.
TEST_F(Failover, AsynchronousReplicationLosesWhatTheReplicaNeverGot) {
  Watchdog dog(60s);
  auto sync = RedisQueue::create(primary_->url(), name_, {.capacity = 64}, waiting(300ms));
  ASSERT_TRUE(sync.push("a"));
  ASSERT_TRUE(sync.push("b"));
  Job a;
  ASSERT_EQ(sync.try_claim(a, lease(500ms)), ClaimStatus::ok);  // WAITed: the replica has the lease
  ASSERT_EQ(a.text(), "a");

  promote_replica();  // the old primary goes on alone

  auto async = RedisQueue::open(primary_->url(), name_);
  const PushResult lost_push = async.push("c");
  ASSERT_TRUE(lost_push);                          // answered by the old primary...
  EXPECT_EQ(async.ack(a.lease), LeaseStatus::ok);  // ...and so is this ack...
  Job b_lost;
  ASSERT_EQ(async.try_claim(b_lost, lease(60s)), ClaimStatus::ok);  // ...and this claim
  ASSERT_EQ(b_lost.text(), "b");
  std::error_code ec;
  (void)sync.push(bytes("d"), {}, ec);  // with wait_replicas: no replica acknowledges it
  EXPECT_EQ(ec, make_error_code(errc::timeout)) << "a write no replica has must not look safe";

  auto after = RedisQueue::open(replica_->url(), name_);
  std::set<std::string> texts;
  for (const auto state : {JobState::ready, JobState::leased})
    for (const JobInfo& info : after.peek(state))
      texts.insert(std::string(reinterpret_cast<const char*>(info.payload.data()), info.payload.size()));
  EXPECT_EQ(texts, (std::set<std::string>{"a", "b"}));  // "c" and "d" lost; "a" not acked
  // The claim of "b" was lost: "b" is given again, to a new holder, under
  // another token (tokens never repeat, even after lost writes: they are
  // floored by the server's clock), so the first holder's ack is rejected.
  Job b_again;
  ASSERT_EQ(after.try_claim(b_again, lease(60s)), ClaimStatus::ok);
  ASSERT_EQ(b_again.text(), "b");
  EXPECT_NE(b_again.lease.token, b_lost.lease.token);
  EXPECT_EQ(after.ack(b_lost.lease), LeaseStatus::lease_lost);
  EXPECT_EQ(after.extend(b_lost.lease, 10s), LeaseStatus::lease_lost);
  EXPECT_EQ(after.ack(b_again.lease), LeaseStatus::ok);
  // Job ids are not given twice either: the lost push's id is not reused.
  const PushResult e = after.push("e");
  ASSERT_TRUE(e);
  EXPECT_NE(e.id, lost_push.id);
  std::this_thread::sleep_for(600ms);  // a's lease runs out on the new primary
  Job again;
  for (int i = 0; i < 2 && again.text() != "a"; ++i) {
    ASSERT_EQ(after.try_claim(again), ClaimStatus::ok);
    if (again.text() == "e") {
      EXPECT_EQ(after.ack(again.lease), LeaseStatus::ok);
    }
  }
  ASSERT_EQ(again.text(), "a");  // done again
  EXPECT_EQ(again.attempt, 2u);
  EXPECT_EQ(after.ack(a.lease), LeaseStatus::lease_lost);  // its first holder's ack, replayed: rejected
  EXPECT_EQ(after.ack(again.lease), LeaseStatus::ok);
  std::printf(
      "async failover lost: push 'c' (id %llu), push 'd' (reported as timeout), the ack of 'a' "
      "(done again, attempt 2), the claim of 'b' (given again, the first holder's ack rejected)\n",
      static_cast<unsigned long long>(lost_push.id));
}

}  // namespace
}  // namespace jobring
