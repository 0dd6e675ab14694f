// The Redis backend's connection layer: one hiredis (0.14, RESP2, sync)
// connection to a Redis 7 server, with
// - URLs: redis://HOST:PORT, redis+unix:///PATH, and
//   redis+cluster://H1:P1,H2:P2,... (seed nodes of a Redis Cluster: routed
//   by cluster.hpp's ClusterLink over one Connection per node);
// - a timeout on every network call: connecting (redisConnect*WithTimeout)
//   and every reply (redisSetTimeout; a blocking BLPOP gets its own wait on
//   top), so that a server that is down is `unavailable` at once and one
//   that is stopped or unreachable is `timeout` after io_timeout — never a
//   hang;
// - one reconnection after a dropped connection (a restarted server, an
//   idle connection closed by a proxy): the call is sent again only when
//   doing it twice is harmless (Retry::safe), else it reports `unavailable`
//   with "it may or may not have happened";
// - the function library (lib/redis/jobring.lua) loaded at connection time
//   if the server lacks it or has another version, and again whenever an
//   FCALL answers "Function not found" (FUNCTION FLUSH, a restarted server
//   without persistence): the FCALL is then retried once;
// - a check at connection time that the server cannot evict the queue's
//   keys (maxmemory-policy, see check_eviction_policy in connection.cpp);
// - optionally, WAIT for replicas behind every call that writes, pipelined
//   in the same round trip (ConnectOptions::wait_replicas).
// SIGPIPE: a write to a connection the server closed would raise SIGPIPE
// (hiredis uses write(2)); it is blocked in the calling thread around each
// call and a SIGPIPE that the call raised is consumed, so the process's own
// disposition is never changed.
// Not thread-safe: one Connection per thread at a time (RedisQueue keeps a
// pool of Links: a Connection, or a ClusterLink for a cluster).
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

struct redisContext;
struct redisReply;

namespace jobring::detail::redis {

struct HostPort {
  std::string host;
  int port = 6379;
  bool operator==(const HostPort&) const = default;
};

struct Endpoint {
  enum class Kind { tcp, unix_socket, cluster } kind = Kind::tcp;
  std::string host;             // tcp
  int port = 6379;              // tcp
  std::string path;             // unix_socket
  std::vector<HostPort> seeds;  // cluster: the nodes the URL names (at least one)
  std::string url;              // as given, for messages
};

// A failure with its message: `what` says what went wrong and what to do.
struct Failure {
  std::error_code ec;
  std::string what;
  explicit operator bool() const noexcept { return static_cast<bool>(ec); }
};

// Parses redis://HOST[:PORT][/], redis+unix:///PATH and
// redis+cluster://HOST[:PORT],HOST[:PORT],... Sets `failure`
// (invalid_argument, not_supported) otherwise.
[[nodiscard]] Endpoint parse_url(std::string_view url, Failure& failure);

struct ConnectOptions {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds io_timeout{5000};
  bool check_eviction_policy = true;
  int wait_replicas = 0;  // > 0: WAIT for this many replicas after each call that writes
  std::chrono::milliseconds wait_timeout{1000};
  // A node of a cluster: the cluster's redirections and refusals (MOVED,
  // ASK, TRYAGAIN, CLUSTERDOWN) come back from fcall as error replies, for
  // the ClusterLink to follow; a standalone connection reports them as a
  // failure that says to use redis+cluster://.
  bool cluster_node = false;
  // Check (and load) the function library on connecting: off for the
  // connections that only read a cluster's slot map (a seed may be a
  // replica, which cannot load it).
  bool load_library = true;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept;
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Whether a call may be sent a second time after the connection dropped
// while it was under way (its outcome unknown).
enum class Retry { safe, unsafe };

// What RedisQueue talks through: one server (Connection), or a cluster
// (ClusterLink, cluster.hpp) that sends each call to the node holding its key.
class Link {
 public:
  Link() = default;
  virtual ~Link() = default;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Connects now (else the first call does): for the open/create calls, so
  // that a bad URL or a refused server is reported by them.
  [[nodiscard]] virtual Failure connect() = 0;
  // FCALL fn 1 key args... (Connection::fcall) on the server holding `key`.
  [[nodiscard]] virtual Reply fcall(std::string_view fn, std::string_view key,
                                    std::span<const std::string_view> args, bool writes, Retry retry,
                                    Failure& failure) = 0;
  // A command about `key` (BLPOP) on the server holding it (Connection::command).
  [[nodiscard]] virtual Reply command_on(std::string_view key, std::span<const std::string_view> argv,
                                         Retry retry, Failure& failure,
                                         std::chrono::milliseconds extra_wait) = 0;
};

class Connection final : public Link {
 public:
  Connection(const Endpoint& endpoint, ConnectOptions options);
  ~Connection() override;

  [[nodiscard]] Failure connect() override;

  // One command. A reply (possibly an error reply: the caller judges it),
  // or nullptr with `failure` set: unavailable, timeout or protocol_error.
  // `extra_wait` lengthens the reply timeout (for BLPOP's own timeout).
  [[nodiscard]] Reply command(std::span<const std::string_view> argv, Retry retry, Failure& failure,
                              std::chrono::milliseconds extra_wait = std::chrono::milliseconds{0});

  // FCALL fn 1 key args...; reloads the library and retries once on
  // "Function not found". An error reply becomes a failure (server_error).
  // A call that `writes` is followed by WAIT when wait_replicas > 0; fewer
  // replicas than asked is a failure (timeout: the call did take effect on
  // the primary). On a cluster node (ConnectOptions::cluster_node), a
  // redirection or refusal of the cluster is returned as the error reply it is.
  [[nodiscard]] Reply fcall(std::string_view fn, std::string_view key, std::span<const std::string_view> args,
                            bool writes, Retry retry, Failure& failure) override;
  [[nodiscard]] Reply command_on(std::string_view key, std::span<const std::string_view> argv, Retry retry,
                                 Failure& failure, std::chrono::milliseconds extra_wait) override;

  [[nodiscard]] const Endpoint& endpoint() const noexcept { return endpoint_; }

 private:
  Failure open_context();
  Failure load_library();
  Failure check_server();
  Failure io_failure(std::string_view doing);
  Reply exchange(std::span<const std::string_view> argv, std::span<const std::string_view> then,
                 Reply* then_reply, Retry retry, Failure& failure, std::chrono::milliseconds extra_wait);
  void drop() noexcept;

  Endpoint endpoint_;
  ConnectOptions options_;
  redisContext* context_ = nullptr;
};

// The library's version (the Lua's VERSION) and its source.
[[nodiscard]] std::string_view library_source() noexcept;
[[nodiscard]] std::string_view library_version() noexcept;

// An error reply by which a cluster node redirects or refuses a call:
// MOVED, ASK, TRYAGAIN, CLUSTERDOWN.
[[nodiscard]] bool is_cluster_error(std::string_view message) noexcept;

}  // namespace jobring::detail::redis
