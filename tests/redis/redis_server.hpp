// A redis-server of the test's own, on a unix socket in a temporary
// directory (no TCP port, no persistence unless asked), killed when the
// object goes — and by the kernel when the test process dies (the child is
// started with PR_SET_PDEATHSIG), so that no test leaves a server behind
// or hangs on one. Tests never use a system Redis.
//
// JOBRING_REDIS_SERVER (set by tests/CMakeLists.txt) is the redis-server
// found at configure time; without one, a test calls skip_reason() and
// skips, saying so.
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/temp_dir.hpp"

namespace jobring::test {

#ifdef JOBRING_REDIS_SERVER
inline constexpr const char* kRedisServer = JOBRING_REDIS_SERVER;
#else
inline constexpr const char* kRedisServer = "";
#endif

// Why Redis tests cannot run here (empty: they can).
inline std::string redis_skip_reason() {
  if (*kRedisServer == '\0' || ::access(kRedisServer, X_OK) != 0)
    return "no redis-server (apt-get install redis-server, then configure again)";
  return {};
}

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}) : dir_("redis"), extra_(std::move(extra)) {
    socket_ = dir_.file("redis.sock");
    start();
  }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  [[nodiscard]] std::string url() const { return "redis+unix://" + socket_; }
  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string log_file() const { return dir_.file("redis.log"); }

  void start() {
    if (pid_ > 0) return;
    std::vector<std::string> args = {kRedisServer,
                                     "--port",
                                     "0",
                                     "--unixsocket",
                                     socket_,
                                     "--unixsocketperm",
                                     "700",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_.str(),
                                     "--daemonize",
                                     "no",
                                     "--loglevel",
                                     "warning",
                                     "--logfile",
                                     dir_.file("redis.log")};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kRedisServer, argv.data());
      ::_exit(127);
    }
    // Ready when it answers PING (at most 10 s: a loaded CI machine); a
    // server that exits (a port taken, a bad option) fails at once.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto r = command({"PING"}); r && r->type == REDIS_REPLY_STATUS) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited while starting: see " + dir_.file("redis.log"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    throw std::runtime_error("redis-server did not start within 10 s: see " + dir_.file("redis.log"));
  }

  // SIGKILL and reap (no shutdown: the server vanishes as in a crash).
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    ::unlink(socket_.c_str());
  }
  void pause() const { ::kill(pid_, SIGSTOP); }
  void resume() const { ::kill(pid_, SIGCONT); }

  struct ReplyFree {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using Reply = std::unique_ptr<redisReply, ReplyFree>;

  // One command on a fresh connection (1 s timeout); nullptr if it failed.
  [[nodiscard]] Reply command(std::initializer_list<std::string_view> args) const {
    return command(std::vector<std::string_view>(args));
  }
  [[nodiscard]] Reply command(const std::vector<std::string_view>& args) const {
    const timeval tv{1, 0};
    redisContext* c = redisConnectUnixWithTimeout(socket_.c_str(), tv);
    if (c == nullptr) return nullptr;
    if (c->err != 0) {
      redisFree(c);
      return nullptr;
    }
    redisSetTimeout(c, tv);
    std::vector<const char*> argv;
    std::vector<size_t> len;
    for (auto a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    auto* r =
        static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), len.data()));
    redisFree(c);
    return Reply(r);
  }

 private:
  TempDir dir_;
  std::vector<std::string> extra_;
  std::string socket_;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice
// of an ephemeral port). Another process may take it before the caller
// binds it: callers start again with other ports when a server exits.
inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind to 127.0.0.1:0 failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The text of a status, string or error reply ("" for others or none).
inline std::string reply_text(const RedisServer::Reply& r) {
  if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR))
    return {};
  return {r->str, r->len};
}

}  // namespace jobring::test
