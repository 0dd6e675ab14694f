// A Redis Cluster of the test's own: N redis-servers (RedisServer, each in
// its own temporary directory, killed with the object and by the kernel if
// the test dies) with cluster mode on, client and bus ports on 127.0.0.1
// chosen free, joined by `redis-cli --cluster create`. Tests never use a
// system Redis.
//
// Fast failover for the tests: cluster-node-timeout 1000 ms (a dead primary
// is failed over ~2-3 s after its death), replica-validity-factor 0 (a
// replica may always take over), diskless replication without delay (a
// replica is in sync within milliseconds of the cluster's creation).
//
// JOBRING_REDIS_CLI (set by tests/CMakeLists.txt) is the redis-cli found at
// configure time.
#pragma once

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis/redis_server.hpp"

namespace jobring::test {

#ifdef JOBRING_REDIS_CLI
inline constexpr const char* kRedisCli = JOBRING_REDIS_CLI;
#else
inline constexpr const char* kRedisCli = "";
#endif

inline std::string redis_cluster_skip_reason() {
  if (std::string why = redis_skip_reason(); !why.empty()) return why;
  if (*kRedisCli == '\0' || ::access(kRedisCli, X_OK) != 0)
    return "no redis-cli (apt-get install redis-tools, then configure again)";
  return {};
}

class RedisCluster {
 public:
  // `primaries` primaries (at least 3: redis-cli's rule) with `replicas`
  // replicas each. Throws if the cluster is not up within 60 s.
  RedisCluster(int primaries, int replicas) : log_("cluster") {
    const int n = primaries * (1 + replicas);
    for (int attempt = 0;; ++attempt) {
      try {
        start_nodes(n);
        break;
      } catch (const std::runtime_error&) {
        nodes_.clear();  // a port taken meanwhile: all again, with other ports
        if (attempt == 3) throw;
      }
    }
    create(replicas);
    wait_until_ready(replicas > 0);
  }

  [[nodiscard]] std::size_t size() const { return nodes_.size(); }
  [[nodiscard]] int port(std::size_t i) const { return nodes_[i].port; }
  [[nodiscard]] RedisServer& server(std::size_t i) { return *nodes_[i].server; }
  [[nodiscard]] bool alive(std::size_t i) const { return nodes_[i].server->pid() > 0; }
  // redis+cluster:// with every node as a seed.
  [[nodiscard]] std::string url() const {
    std::string u = "redis+cluster://";
    for (std::size_t i = 0; i < nodes_.size(); ++i) u += (i ? "," : "") + address(i);
    return u;
  }
  [[nodiscard]] std::string address(std::size_t i) const { return "127.0.0.1:" + std::to_string(port(i)); }

  // The node (index) serving `slot` as primary, per CLUSTER SLOTS asked of
  // a live node other than `not_asking`; nullopt if none answers or no
  // node serves it.
  [[nodiscard]] std::optional<std::size_t> primary_of(int slot, std::optional<std::size_t> not_asking = {}) {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (!alive(i) || i == not_asking) continue;
      auto r = nodes_[i].server->command({"CLUSTER", "SLOTS"});
      if (!r || r->type != REDIS_REPLY_ARRAY) continue;
      for (std::size_t k = 0; k < r->elements; ++k) {
        const redisReply* range = r->element[k];
        if (range->elements < 3 || range->element[0]->integer > slot || range->element[1]->integer < slot)
          continue;
        const auto port = static_cast<int>(range->element[2]->element[1]->integer);
        for (std::size_t j = 0; j < nodes_.size(); ++j)
          if (nodes_[j].port == port) return j;
      }
      return std::nullopt;
    }
    return std::nullopt;
  }

  // Waits (at most `limit`) until a node other than `dead` serves `slot`
  // as primary and every live node says cluster_state:ok.
  [[nodiscard]] std::optional<std::size_t> wait_for_new_primary(int slot, std::size_t dead,
                                                                std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (const auto p = primary_of(slot, dead); p && *p != dead && all_ok()) return p;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

 private:
  struct Node {
    int port = 0;
    std::unique_ptr<RedisServer> server;
  };

  void start_nodes(int n) {
    for (int i = 0; i < n; ++i) {
      const int port = free_tcp_port();
      int bus = free_tcp_port();
      while (bus == port) bus = free_tcp_port();
      Node node;
      node.port = port;
      node.server =
          std::make_unique<RedisServer>(std::vector<std::string>{"--port",
                                                                 std::to_string(port),
                                                                 "--bind",
                                                                 "127.0.0.1",
                                                                 "--cluster-enabled",
                                                                 "yes",
                                                                 "--cluster-port",
                                                                 std::to_string(bus),
                                                                 "--cluster-config-file",
                                                                 "nodes.conf",
                                                                 "--cluster-node-timeout",
                                                                 "1000",
                                                                 "--cluster-replica-validity-factor",
                                                                 "0",
                                                                 "--cluster-allow-replica-migration",
                                                                 "no",
                                                                 "--repl-diskless-sync",
                                                                 "yes",
                                                                 "--repl-diskless-sync-delay",
                                                                 "0",
                                                                 "--repl-ping-replica-period",
                                                                 "1"});
      nodes_.push_back(std::move(node));
    }
  }

  // redis-cli --cluster create, at most 30 s, its output in the log.
  void create(int replicas) {
    std::vector<std::string> args = {kRedisCli, "--cluster", "create"};
    for (std::size_t i = 0; i < nodes_.size(); ++i) args.push_back(address(i));
    args.insert(args.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
    const std::string log = log_.file("create.log");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kRedisCli, argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    for (;;) {
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        throw std::runtime_error("redis-cli --cluster create did not finish within 30 s:\n" +
                                 log_.read("create.log"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("redis-cli --cluster create failed:\n" + log_.read("create.log"));
  }

  [[nodiscard]] bool all_ok() {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (!alive(i)) continue;
      const std::string info = reply_text(nodes_[i].server->command({"CLUSTER", "INFO"}));
      if (info.find("cluster_state:ok") == std::string::npos) return false;
    }
    return true;
  }

  // Every node says cluster_state:ok, and (with replicas) every replica's
  // link to its primary is up.
  void wait_until_ready(bool with_replicas) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      bool ready = all_ok();
      for (std::size_t i = 0; ready && with_replicas && i < nodes_.size(); ++i) {
        const std::string info = reply_text(nodes_[i].server->command({"INFO", "replication"}));
        if (info.find("role:slave") != std::string::npos &&
            info.find("master_link_status:up") == std::string::npos)
          ready = false;
      }
      if (ready) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("the cluster did not come up within 30 s: see the logs in " + log_.str());
  }

  TempDir log_;
  std::vector<Node> nodes_;
};

}  // namespace jobring::test
