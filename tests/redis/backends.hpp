// The backends of the typed contract suites (test_contract.cpp,
// test_worker_contract.cpp and their *_cluster.cpp builds), one definition
// for both so that they test the same things under the same names.
//
// A backend says why it cannot run here (skip_reason(), empty if it can),
// its URL (url(), for AnyQueue), and makes, opens and removes queues of its
// own type Q (the queue contract's calls):
//   Shm          Queue, shared memory
//   Redis        RedisQueue on a redis-server of the binary's own
//   AnyShm       AnyQueue on "shm:" (opened with the empty URL, its synonym)
//   AnyRedis     AnyQueue on that redis-server
//   RedisCluster RedisQueue on a Redis Cluster of 3 primaries (no replicas)
// BackendNames names them in the tests' names (Contract/shm.Test, ...).
//
// In the including file's anonymous namespace, as they were when each suite
// defined its own: the suites' ctest names carry the type's full name
// ("TypeParam = jobring::(anonymous namespace)::Shm"), and these keep them.
// A header for the contract suites' single source file each, nothing else.
#pragma once

#include <string>
#include <type_traits>

#include "jobring/any_queue.hpp"
#include "jobring/queue.hpp"
#include "jobring/redis_queue.hpp"
#include "redis/redis_cluster.hpp"
#include "redis/redis_server.hpp"

namespace jobring {
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces): see above

// One server for the whole binary: started on first use, killed at exit
// (and by the kernel if the binary dies first).
test::RedisServer& shared_server() {
  static test::RedisServer server;
  return server;
}

// One cluster for the whole binary, likewise; each test's queues hash to
// their own slots. Started only by the *_cluster builds
// (test_contract_cluster.cpp, test_worker_contract_cluster.cpp), each
// binary one ctest test.
test::RedisCluster& shared_cluster() {
  static test::RedisCluster cluster(3, 0);
  return cluster;
}

struct Shm {
  using Q = Queue;
  static std::string skip_reason() { return {}; }
  static std::string url() { return "shm:"; }
  static Q create(const std::string& name, const Options& o) { return Queue::create(name, o); }
  static Q open(const std::string& name) { return Queue::open(name); }
  static void remove(const std::string& name) { Queue::remove(name); }
};

struct Redis {
  using Q = RedisQueue;
  static std::string skip_reason() { return test::redis_skip_reason(); }
  static std::string url() { return shared_server().url(); }
  static Q create(const std::string& name, const Options& o) { return RedisQueue::create(url(), name, o); }
  static Q open(const std::string& name) { return RedisQueue::open(url(), name); }
  static void remove(const std::string& name) { RedisQueue::remove(url(), name); }
};

// The same two, through the URL-selected facade (any_queue.hpp): what a
// program that reads its backend from JOBRING_URL gets.
struct AnyShm {
  using Q = AnyQueue;
  static std::string skip_reason() { return {}; }
  static std::string url() { return "shm:"; }
  static Q create(const std::string& name, const Options& o) { return AnyQueue::create(url(), name, o); }
  static Q open(const std::string& name) { return AnyQueue::open("", name); }
  static void remove(const std::string& name) { AnyQueue::remove(url(), name); }
};

struct AnyRedis {
  using Q = AnyQueue;
  static std::string skip_reason() { return test::redis_skip_reason(); }
  static std::string url() { return shared_server().url(); }
  static Q create(const std::string& name, const Options& o) { return AnyQueue::create(url(), name, o); }
  static Q open(const std::string& name) { return AnyQueue::open(url(), name); }
  static void remove(const std::string& name) { AnyQueue::remove(url(), name); }
};

struct RedisCluster {
  using Q = RedisQueue;
  static std::string skip_reason() { return test::redis_cluster_skip_reason(); }
  static std::string url() { return shared_cluster().url(); }
  static Q create(const std::string& name, const Options& o) { return RedisQueue::create(url(), name, o); }
  static Q open(const std::string& name) { return RedisQueue::open(url(), name); }
  static void remove(const std::string& name) { RedisQueue::remove(url(), name); }
};

class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, Shm>) return "shm";
    if constexpr (std::is_same_v<T, Redis>) return "redis";
    if constexpr (std::is_same_v<T, AnyShm>) return "any_shm";
    if constexpr (std::is_same_v<T, AnyRedis>) return "any_redis";
    return "redis-cluster";
  }
};

}  // namespace
}  // namespace jobring
