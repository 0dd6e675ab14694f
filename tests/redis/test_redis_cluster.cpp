// The Redis backend on a Redis Cluster (redis+cluster://, lib/redis/cluster.*):
// slot routing (CRC16 against the specification's test vector, hash tags),
// hostile CLUSTER SLOTS replies and redirections, and a 6-node cluster of
// the test's own (3 primaries, a replica each): queues on different shards,
// each doing the whole lease cycle; list() over every primary; a node that
// lost the function library; a redis:// URL to a node; and last, a primary
// SIGKILLed, its replica promoted, and the work going on.
//
// One cluster for the whole binary (started on first use, ~3 s): ctest runs
// this binary as one test (tests/CMakeLists.txt), so the tests run in the
// order written, and the failover, which leaves a primary dead, is the last.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/cluster.hpp"
#include "redis/redis_cluster.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::Watchdog;
namespace r = detail::redis;

// --- slots ------------------------------------------------------------------

// The Redis Cluster specification's CRC16 test vector.
TEST(ClusterSlots, Crc16MatchesTheSpecificationsTestVector) {
  EXPECT_EQ(r::crc16("123456789"), 0x31C3);
  EXPECT_EQ(r::crc16(""), 0);
}

// The specification's hash-tag examples, and our keys: a queue's keys share one slot.
TEST(ClusterSlots, HashTagsPickTheHashedPart) {
  EXPECT_EQ(r::key_slot("foo"), 12182);  // CLUSTER KEYSLOT foo
  EXPECT_EQ(r::key_slot("123456789"), 0x31C3 % 16384);
  EXPECT_EQ(r::key_slot("{user1000}.following"), r::key_slot("{user1000}.followers"));
  EXPECT_EQ(r::key_slot("{user1000}.following"), r::key_slot("user1000"));
  EXPECT_EQ(r::key_slot("foo{}{bar}"),
            static_cast<int>(r::crc16("foo{}{bar}") % 16384));  // empty tag: whole key
  EXPECT_EQ(r::key_slot("foo{{bar}}zap"), r::key_slot("{bar"));
  EXPECT_EQ(r::key_slot("foo{bar}{zap}"), r::key_slot("bar"));
  EXPECT_EQ(r::key_slot("{jr:orders}"), r::key_slot("{jr:orders}:wake"));
  EXPECT_EQ(r::key_slot("{jr:orders}"), r::key_slot("{jr:orders}:j:17"));
}

// A RESP text parsed as hiredis parses a server's reply.
r::Reply parse_resp(std::string_view resp) {
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, resp.data(), resp.size());
  void* out = nullptr;
  const int rc = redisReaderGetReply(reader, &out);
  redisReaderFree(reader);
  EXPECT_EQ(rc, REDIS_OK) << resp;
  return r::Reply(static_cast<redisReply*>(out));
}

TEST(ClusterSlots, ACLusterSlotsReplyIsReadWithEmptyAndUnknownHosts) {
  const r::HostPort asked{"10.0.0.9", 7000};
  // [0-5460 on 127.0.0.1:7001 with a replica], [5461-10922 on "" (the node asked)],
  // [10923-16383 on "?" (unknown: left out)]; Redis 7's fourth element (metadata) too.
  const auto reply = parse_resp(
      "*3\r\n"
      "*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n*0\r\n*3\r\n$9\r\n127.0.0.1\r\n:"
      "7004\r\n$"
      "2\r\nid\r\n"
      "*3\r\n:5461\r\n:10922\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n"
      "*3\r\n:10923\r\n:16383\r\n*3\r\n$1\r\n?\r\n:7003\r\n$2\r\nid\r\n");
  std::vector<r::SlotRange> ranges;
  ASSERT_FALSE(r::parse_cluster_slots(reply.get(), asked, ranges));
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].first, 0);
  EXPECT_EQ(ranges[0].last, 5460);
  EXPECT_EQ(ranges[0].primary, (r::HostPort{"127.0.0.1", 7001}));
  EXPECT_EQ(ranges[1].primary, (r::HostPort{"10.0.0.9", 7002}));
  r::Topology t({asked}, "redis+cluster://10.0.0.9:7000");
  t.replace(ranges);
  EXPECT_EQ(t.primary(0), (r::HostPort{"127.0.0.1", 7001}));
  EXPECT_EQ(t.primary(10922), (r::HostPort{"10.0.0.9", 7002}));
  EXPECT_EQ(t.primary(16383), std::nullopt);
  EXPECT_EQ(t.primaries().size(), 2u);
  t.assign(16383, {"127.0.0.1", 7001});
  EXPECT_EQ(t.primary(16383), (r::HostPort{"127.0.0.1", 7001}));
  EXPECT_EQ(t.primaries().size(), 2u);
}

// Hostile input: a reply of another shape is protocol_error, never a crash.
TEST(ClusterSlots, AMalformedClusterSlotsReplyIsAProtocolError) {
  const r::HostPort asked{"127.0.0.1", 7000};
  const char* bad[] = {
      "+OK\r\n",                                                  // not an array
      "*1\r\n:5\r\n",                                             // a range that is not an array
      "*1\r\n*2\r\n:0\r\n:5\r\n",                                 // no primary
      "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n",      // slot out of range
      "*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\na\r\n:1\r\n",         // negative slot
      "*1\r\n*3\r\n:9\r\n:5\r\n*2\r\n$1\r\na\r\n:1\r\n",          // first > last
      "*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\na\r\n:1\r\n",     // slot as a string
      "*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\na\r\n",                // node without a port
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\na\r\n$4\r\n7000\r\n",  // port as a string
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\na\r\n:65536\r\n",      // port out of range
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:7000\r\n",            // host as an integer
      "*1\r\n*3\r\n:0\r\n:5\r\n:7\r\n",                           // primary not an array
  };
  for (const char* resp : bad) {
    const auto reply = parse_resp(resp);
    std::vector<r::SlotRange> ranges;
    const r::Failure f = r::parse_cluster_slots(reply.get(), asked, ranges);
    EXPECT_EQ(f.ec, make_error_code(errc::protocol_error)) << resp;
    EXPECT_TRUE(ranges.empty()) << resp;
  }
  std::vector<r::SlotRange> ranges;
  EXPECT_EQ(r::parse_cluster_slots(nullptr, asked, ranges).ec, make_error_code(errc::protocol_error));
}

TEST(ClusterSlots, RedirectionsAreParsedAndMalformedOnesRefused) {
  const r::HostPort asked{"10.1.1.1", 7000};
  int slot = -1;
  r::HostPort to;
  ASSERT_TRUE(r::parse_redirection("MOVED 3999 127.0.0.1:6381", asked, slot, to));
  EXPECT_EQ(slot, 3999);
  EXPECT_EQ(to, (r::HostPort{"127.0.0.1", 6381}));
  ASSERT_TRUE(r::parse_redirection("ASK 0 :6390", asked, slot, to));  // empty host: the node asked
  EXPECT_EQ(to, (r::HostPort{"10.1.1.1", 6390}));
  ASSERT_TRUE(r::parse_redirection("MOVED 16383 [::1]:7001", asked, slot, to));
  EXPECT_EQ(to, (r::HostPort{"::1", 7001}));
  for (const char* m : {"MOVED", "MOVED 3999", "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED x h:1", "MOVED 1 h",
                        "MOVED 1 h:0", "MOVED 1 h:70000", "MOVED 1 h:1x", "ASK 1", "TRYAGAIN", "ERR x"})
    EXPECT_FALSE(r::parse_redirection(m, asked, slot, to)) << m;
}

TEST(ClusterSlots, ClusterUrlsAreParsed) {
  r::Failure f;
  const r::Endpoint e = r::parse_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002/", f);
  ASSERT_FALSE(f) << f.what;
  EXPECT_EQ(e.kind, r::Endpoint::Kind::cluster);
  ASSERT_EQ(e.seeds.size(), 3u);
  EXPECT_EQ(e.seeds[0], (r::HostPort{"10.0.0.1", 7000}));
  EXPECT_EQ(e.seeds[1], (r::HostPort{"10.0.0.2", 6379}));
  EXPECT_EQ(e.seeds[2], (r::HostPort{"::1", 7002}));
  for (const char* bad :
       {"redis+cluster://", "redis+cluster://a:1,", "redis+cluster://a:0", "redis+cluster://a:1,:2"}) {
    r::Failure g;
    (void)r::parse_url(bad, g);
    EXPECT_EQ(g.ec, make_error_code(errc::invalid_argument)) << bad;
  }
  r::Failure g;
  (void)r::parse_url("redis+cluster://user:pw@a:1", g);
  EXPECT_EQ(g.ec, make_error_code(errc::not_supported));
}

// --- a cluster of the test's own -------------------------------------------------

test::RedisCluster& shared_cluster() {
  static test::RedisCluster cluster(3, 1);
  return cluster;
}

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::redis_cluster_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  }

  static int slot_of(const std::string& name) { return r::key_slot("{jr:" + name + "}"); }

  // `n` queue names whose slots are on `n` different primaries.
  static std::vector<std::string> names_on_different_shards(std::size_t n) {
    auto& cluster = shared_cluster();
    std::vector<std::string> names;
    std::set<std::size_t> used;
    for (int i = 0; names.size() < n && i < 1000; ++i) {
      std::string name = "shard." + std::to_string(::getpid()) + "." + std::to_string(i);
      const auto primary = cluster.primary_of(slot_of(name));
      if (primary && used.insert(*primary).second) names.push_back(std::move(name));
    }
    return names;
  }

  // The node that holds queue `name`'s config key (EXISTS answers 1 there,
  // MOVED elsewhere); nullopt if not exactly one node has it.
  static std::optional<std::size_t> node_holding(const std::string& name) {
    auto& cluster = shared_cluster();
    std::optional<std::size_t> found;
    const std::string key = "{jr:" + name + "}:cfg";
    for (std::size_t i = 0; i < cluster.size(); ++i) {
      if (!cluster.alive(i)) continue;
      auto reply = cluster.server(i).command({"EXISTS", key});
      if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        if (found) return std::nullopt;
        found = i;
      }
    }
    return found;
  }
};

ClaimOptions lease(milliseconds ms) {
  ClaimOptions o;
  o.lease = ms;
  return o;
}

// Queues whose names hash to three shards live on three primaries, and each
// does the whole cycle there: push, claim, extend, fencing, ack.
TEST_F(Cluster, QueuesOnDifferentShardsEachDoTheWholeLeaseCycle) {
  Watchdog dog(60s);
  auto& cluster = shared_cluster();
  const auto names = names_on_different_shards(3);
  ASSERT_EQ(names.size(), 3u);
  std::set<std::size_t> holders;
  for (const auto& name : names) {
    auto q = RedisQueue::create(cluster.url(), name, {.capacity = 16});
    const auto holder = node_holding(name);
    ASSERT_TRUE(holder) << name;
    EXPECT_EQ(holder, cluster.primary_of(slot_of(name)));
    holders.insert(*holder);

    auto q2 = RedisQueue::open(cluster.url(), name);
    ASSERT_TRUE(q.push("one"));
    ASSERT_TRUE(q.push("two"));
    Job a, b;
    ASSERT_EQ(q.try_claim(a, lease(30s)), ClaimStatus::ok);
    EXPECT_EQ(a.text(), "one");
    ASSERT_EQ(q2.try_claim(b, lease(30s)), ClaimStatus::ok);
    EXPECT_EQ(b.text(), "two");
    Job none;
    EXPECT_EQ(q2.try_claim(none), ClaimStatus::empty);
    const Lease before = a.lease;
    EXPECT_EQ(q.extend(a, 30s), LeaseStatus::ok);
    EXPECT_NE(a.lease.token, before.token);
    EXPECT_EQ(q2.ack(before), LeaseStatus::lease_lost);  // fencing: the old token is stale
    EXPECT_EQ(q2.ack(a.lease), LeaseStatus::ok);
    EXPECT_EQ(q.release(b.lease), LeaseStatus::ok);
    ASSERT_EQ(q2.try_claim(b), ClaimStatus::ok);
    EXPECT_EQ(b.attempt, 2u);
    EXPECT_EQ(q.ack(b.lease), LeaseStatus::ok);
    const Stats s = q.stats();
    EXPECT_EQ(s.pushed, 2u);
    EXPECT_EQ(s.acked, 2u);
  }
  EXPECT_EQ(holders.size(), 3u);  // three primaries
  for (const auto& name : names) EXPECT_TRUE(RedisQueue::remove(cluster.url(), name));
}

// list() scans every primary; a blocked claim waits on its queue's node.
TEST_F(Cluster, ListScansEveryPrimaryAndABlockedClaimIsWoken) {
  Watchdog dog(60s);
  auto& cluster = shared_cluster();
  const auto names = names_on_different_shards(3);
  ASSERT_EQ(names.size(), 3u);
  std::vector<RedisQueue> queues;
  for (const auto& name : names) queues.push_back(RedisQueue::create(cluster.url(), name, {.capacity = 4}));
  // A URL with one seed is enough: the others are learnt from it.
  const std::vector<std::string> listed = RedisQueue::list("redis+cluster://" + cluster.address(0));
  for (const auto& name : names)
    EXPECT_NE(std::find(listed.begin(), listed.end(), name), listed.end()) << name;

  Job job;
  std::thread pusher([&] {
    std::this_thread::sleep_for(300ms);
    auto other = RedisQueue::open(cluster.url(), names[1]);
    EXPECT_TRUE(other.push("wake up"));
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(queues[1].claim(job, 20s), ClaimStatus::ok);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  pusher.join();
  EXPECT_EQ(job.text(), "wake up");
  EXPECT_EQ(queues[1].ack(job.lease), LeaseStatus::ok);
  for (const auto& name : names) EXPECT_TRUE(RedisQueue::remove(cluster.url(), name));
}

// A node that lost the library (FUNCTION FLUSH; a node emptied and rejoined)
// gets it again at the next call, which then runs.
TEST_F(Cluster, ANodeThatLostTheFunctionLibraryGetsItAgain) {
  Watchdog dog(60s);
  auto& cluster = shared_cluster();
  const std::string name = names_on_different_shards(1).at(0);
  auto q = RedisQueue::create(cluster.url(), name, {.capacity = 4});
  const auto holder = node_holding(name);
  ASSERT_TRUE(holder);
  ASSERT_EQ(test::reply_text(cluster.server(*holder).command({"FUNCTION", "FLUSH"})), "OK");
  ASSERT_TRUE(q.push("after the flush"));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_TRUE(RedisQueue::remove(cluster.url(), name));
}

// redis:// naming one node of a cluster: a queue whose slot is elsewhere is
// refused with a message that says to use redis+cluster://.
TEST_F(Cluster, ARedisUrlToAClusterNodeSaysToUseTheClusterUrl) {
  auto& cluster = shared_cluster();
  const auto names = names_on_different_shards(2);
  ASSERT_EQ(names.size(), 2u);
  // names[1] is not on names[0]'s primary.
  const std::size_t node = *cluster.primary_of(slot_of(names[0]));
  try {
    (void)RedisQueue::create("redis://" + cluster.address(node), names[1], {.capacity = 4});
    ADD_FAILURE() << "a queue of another node's slot was created";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), make_error_code(errc::server_error)) << e.what();
    EXPECT_NE(std::string(e.what()).find("redis+cluster://"), std::string::npos) << e.what();
  }
}

// A slot moved while a queue is created on it: during the migration the
// old owner answers ASK (the queue's keys are not there) and the client
// asks the new owner (ASKING); once the slot is moved, the old owner
// answers MOVED and the client reads the map again. Both without an error.
TEST_F(Cluster, AskDuringASlotMigrationAndMovedAfterIt) {
  Watchdog dog(60s);
  auto& cluster = shared_cluster();
  const auto names = names_on_different_shards(2);
  ASSERT_EQ(names.size(), 2u);
  const std::string& name = names[0];
  const int slot = slot_of(name);
  const std::size_t source = *cluster.primary_of(slot), target = *cluster.primary_of(slot_of(names[1]));
  const std::string source_id = test::reply_text(cluster.server(source).command({"CLUSTER", "MYID"}));
  const std::string target_id = test::reply_text(cluster.server(target).command({"CLUSTER", "MYID"}));
  ASSERT_FALSE(source_id.empty());
  ASSERT_FALSE(target_id.empty());
  auto q =
      RedisQueue::open_or_create(cluster.url(), names[1], {.capacity = 4});  // the link knows the map now
  const std::string slot_text = std::to_string(slot);
  ASSERT_EQ(test::reply_text(
                cluster.server(target).command({"CLUSTER", "SETSLOT", slot_text, "IMPORTING", source_id})),
            "OK");
  ASSERT_EQ(test::reply_text(
                cluster.server(source).command({"CLUSTER", "SETSLOT", slot_text, "MIGRATING", target_id})),
            "OK");
  auto moving = RedisQueue::create(cluster.url(), name, {.capacity = 4});  // ASK: created on the target
  ASSERT_TRUE(moving.push("pushed while the slot moved"));
  const std::string stats = test::reply_text(cluster.server(target).command({"INFO", "commandstats"}));
  EXPECT_NE(stats.find("cmdstat_asking:calls="), std::string::npos) << "no ASKING reached the target";
  // The migration ends: every primary learns the slot's new owner.
  for (std::size_t i = 0; i < cluster.size(); ++i)
    if (cluster.alive(i))
      (void)cluster.server(i).command({"CLUSTER", "SETSLOT", slot_text, "NODE", target_id});
  ASSERT_EQ(cluster.primary_of(slot), target);
  EXPECT_EQ(node_holding(name), target);  // created there, through ASK
  Job job;
  ASSERT_EQ(moving.try_claim(job), ClaimStatus::ok);  // MOVED: the handle's map said `source`
  EXPECT_EQ(job.text(), "pushed while the slot moved");
  EXPECT_EQ(moving.ack(job.lease), LeaseStatus::ok);
  EXPECT_TRUE(RedisQueue::remove(cluster.url(), name));
  EXPECT_TRUE(RedisQueue::remove(cluster.url(), names[1]));
}

// A stale slot map (all slots on a wrong primary) is corrected by the first MOVED.
TEST_F(Cluster, AStaleSlotMapIsCorrectedByMoved) {
  auto& cluster = shared_cluster();
  const std::string name = names_on_different_shards(1).at(0);
  (void)RedisQueue::create(cluster.url(), name, {.capacity = 4});
  const int slot = slot_of(name);
  const std::size_t owner = *cluster.primary_of(slot);
  std::size_t wrong = 0;
  while (wrong == owner || !cluster.alive(wrong) || cluster.primary_of(0) == std::nullopt) ++wrong;
  r::Failure f;
  const r::Endpoint endpoint = r::parse_url(cluster.url(), f);
  ASSERT_FALSE(f) << f.what;
  auto topology = r::make_topology(endpoint);
  r::ClusterLink link(topology, {});
  ASSERT_FALSE(link.refresh());
  const r::HostPort right{"127.0.0.1", cluster.port(owner)}, stale{"127.0.0.1", cluster.port(wrong)};
  EXPECT_EQ(topology->primary(slot), right);
  topology->assign(slot, stale);
  const std::string key = "{jr:" + name + "}";
  const r::Reply reply = link.fcall("jr_open", key, {}, false, r::Retry::safe, f);
  ASSERT_TRUE(reply) << f.what;
  EXPECT_EQ(std::string_view(reply->element[0]->str, reply->element[0]->len), "ok");
  EXPECT_EQ(topology->primary(slot), right);
  EXPECT_TRUE(RedisQueue::remove(cluster.url(), name));
}

// A node whose maxmemory-policy evicts keys is refused at once, not retried.
TEST_F(Cluster, AnEvictingNodeIsRefusedAtOnce) {
  Watchdog dog(60s);
  auto& cluster = shared_cluster();
  const std::string name = names_on_different_shards(1).at(0);
  const std::size_t owner = *cluster.primary_of(slot_of(name));
  ASSERT_EQ(
      test::reply_text(cluster.server(owner).command({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"})),
      "OK");
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  EXPECT_FALSE(RedisQueue::create(cluster.url(), name, {.capacity = 4}, ec));
  EXPECT_EQ(ec, make_error_code(errc::unsafe_server_config)) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_EQ(
      test::reply_text(cluster.server(owner).command({"CONFIG", "SET", "maxmemory-policy", "noeviction"})),
      "OK");
}

// A shard's primary is SIGKILLed: its replica takes over (cluster-node-timeout
// 1 s), and the handles opened before go on, on that queue and on another
// shard's. What was acknowledged with wait_replicas = 1 survives: the jobs,
// and the leases with their tokens; a lease that ran out meanwhile is taken
// over, and its old holder's ack is lease_lost.
TEST_F(Cluster, APrimaryKilledItsReplicaTakesOverAndTheWorkGoesOn) {
  Watchdog dog(90s);
  auto& cluster = shared_cluster();
  const auto names = names_on_different_shards(2);
  ASSERT_EQ(names.size(), 2u);
  RedisOptions replicated;
  replicated.wait_replicas = 1;
  auto victim_queue = RedisQueue::create(cluster.url(), names[0], {.capacity = 64}, replicated);
  auto other_queue = RedisQueue::create(cluster.url(), names[1], {.capacity = 64}, replicated);
  std::set<JobId> pushed;
  for (int i = 0; i < 10; ++i) {
    const PushResult p = victim_queue.push("job " + std::to_string(i));
    ASSERT_TRUE(p);
    pushed.insert(p.id);
  }
  ASSERT_TRUE(other_queue.push("elsewhere"));
  Job held, expiring;
  ASSERT_EQ(victim_queue.try_claim(held, lease(60s)), ClaimStatus::ok);
  ASSERT_EQ(victim_queue.try_claim(expiring, lease(500ms)), ClaimStatus::ok);
  // A handle without wait_replicas (after the failover the new primary has
  // no replica: WAIT would answer timeout), used before the kill, so that
  // its pooled link knows the old primary.
  auto follower = RedisQueue::open(cluster.url(), names[0]);
  EXPECT_EQ(follower.stats().leased, 2u);

  const int slot = slot_of(names[0]);
  const std::size_t victim = *cluster.primary_of(slot);
  const auto killed_at = std::chrono::steady_clock::now();
  cluster.server(victim).stop();  // SIGKILL
  const auto successor = cluster.wait_for_new_primary(slot, victim, 60s);
  ASSERT_TRUE(successor) << "no replica took over within 60 s";
  const auto failover_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at)
          .count();
  std::printf("failover: a replica served slot %d %lld ms after its primary's SIGKILL\n", slot,
              static_cast<long long>(failover_ms));

  // The handles opened before: their links find the new primary (retrying, within
  // io_timeout per call, while the cluster settles).
  auto retry = [](auto&& call) {
    for (int i = 0;; ++i) {
      std::error_code ec;
      auto result = call(ec);
      if (!ec || i == 20) {
        EXPECT_FALSE(ec) << ec.message();
        return result;
      }
      std::this_thread::sleep_for(200ms);
    }
  };
  EXPECT_EQ(retry([&](std::error_code& ec) { return follower.ack(held.lease, ec); }), LeaseStatus::ok);
  std::set<JobId> seen = {held.id};
  Job job;
  bool took_over = false;
  while (retry([&](std::error_code& ec) { return follower.claim(job, 2s, lease(60s), ec); }) ==
         ClaimStatus::ok) {
    EXPECT_TRUE(seen.insert(job.id).second) << "job " << job.id << " delivered twice";
    if (job.id == expiring.id) {  // its lease ran out during the failover: taken over, attempt 2
      took_over = true;
      EXPECT_EQ(job.attempt, 2u);
      EXPECT_EQ(follower.ack(expiring.lease), LeaseStatus::lease_lost);  // the old holder's ack
    }
    EXPECT_EQ(follower.ack(job.lease), LeaseStatus::ok);
  }
  EXPECT_TRUE(took_over);
  EXPECT_EQ(seen, pushed);  // every acknowledged push survived, each done once
  ASSERT_TRUE(follower.push("after the failover"));
  ASSERT_EQ(follower.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(follower.ack(job.lease), LeaseStatus::ok);

  // The other shard went on too.
  ASSERT_EQ(retry([&](std::error_code& ec) { return other_queue.try_claim(job, {}, ec); }), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "elsewhere");
  EXPECT_EQ(other_queue.ack(job.lease), LeaseStatus::ok);
  // And so does a new handle, and list().
  auto fresh = RedisQueue::open(cluster.url(), names[0]);
  EXPECT_EQ(fresh.stats().acked, 11u);
  const auto listed = RedisQueue::list(cluster.url());
  EXPECT_NE(std::find(listed.begin(), listed.end(), names[0]), listed.end());
}

}  // namespace
}  // namespace jobring
