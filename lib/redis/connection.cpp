#include "redis/connection.hpp"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <vector>

#include "jobring/error.hpp"
#include "redis/library_source.hpp"  // generated from lib/redis/jobring.lua: kLibrarySource

namespace jobring::detail::redis {
namespace {

Failure fail(errc code, std::string what) { return {make_error_code(code), std::move(what)}; }

timeval to_timeval(std::chrono::milliseconds ms) {
  const auto count = ms.count() > 0 ? ms.count() : 1;
  return timeval{.tv_sec = static_cast<time_t>(count / 1000),
                 .tv_usec = static_cast<suseconds_t>((count % 1000) * 1000)};
}

// Blocks SIGPIPE in this thread for the guard's life; a SIGPIPE raised
// meanwhile (a write to a closed socket) is consumed before unblocking, so
// it never reaches the process (whose disposition may be the default: die).
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_);
  }
  ~SigpipeGuard() {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

bool is_error_reply(const redisReply* r) { return r != nullptr && r->type == REDIS_REPLY_ERROR; }
std::string_view text(const redisReply* r) { return {r->str, r->len}; }

}  // namespace

std::string_view library_source() noexcept { return kLibrarySource; }

std::string_view library_version() noexcept {
  // The Lua's `local VERSION = '...'`: one place for the number.
  static const std::string_view version = [] {
    const std::string_view src = kLibrarySource;
    constexpr std::string_view marker = "local VERSION = '";
    const auto at = src.find(marker);
    if (at == std::string_view::npos) return std::string_view{};
    const auto from = at + marker.size();
    return src.substr(from, src.find('\'', from) - from);
  }();
  return version;
}

void ReplyDeleter::operator()(redisReply* r) const noexcept { freeReplyObject(r); }

bool is_cluster_error(std::string_view message) noexcept {
  return message.starts_with("MOVED ") || message.starts_with("ASK ") || message.starts_with("TRYAGAIN") ||
         message.starts_with("CLUSTERDOWN");
}

namespace {

// HOST[:PORT] (HOST may be [IPv6]) of `url`; sets `failure` if malformed.
HostPort parse_host_port(std::string_view rest, const std::string& url, Failure& failure) {
  HostPort out;
  if (rest.find('@') != std::string_view::npos || rest.find('/') != std::string_view::npos) {
    failure = fail(errc::not_supported, "'" + url +
                                            "': user names, passwords and database numbers are not yet "
                                            "supported: use redis://HOST:PORT");
    return out;
  }
  std::string_view host = rest;
  const auto colon = rest.rfind(':');
  const auto bracket = rest.rfind(']');  // [IPv6]:PORT
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = rest.substr(0, colon);
    const std::string_view port = rest.substr(colon + 1);
    int value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value < 1 || value > 65535) {
      failure = fail(errc::invalid_argument, "'" + url + "': the port must be a number 1..65535");
      return out;
    }
    out.port = value;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) {
    failure = fail(errc::invalid_argument, "'" + url + "': no host: use redis://HOST:PORT");
    return out;
  }
  out.host = std::string(host);
  return out;
}

}  // namespace

Endpoint parse_url(std::string_view url, Failure& failure) {
  Endpoint e;
  e.url = std::string(url);
  constexpr std::string_view tcp = "redis://", unix_socket = "redis+unix://", cluster = "redis+cluster://";
  if (url.starts_with(cluster)) {
    e.kind = Endpoint::Kind::cluster;
    std::string_view rest = url.substr(cluster.size());
    if (rest.ends_with('/')) rest.remove_suffix(1);
    while (!failure) {
      const auto comma = rest.find(',');
      e.seeds.push_back(parse_host_port(rest.substr(0, comma), e.url, failure));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (!failure) {
      e.host = e.seeds.front().host;
      e.port = e.seeds.front().port;
    }
    return e;
  }
  if (url.starts_with(unix_socket)) {
    e.kind = Endpoint::Kind::unix_socket;
    e.path = std::string(url.substr(unix_socket.size()));
    if (e.path.empty() || e.path.front() != '/')
      failure = fail(errc::invalid_argument,
                     "'" + e.url + "': a unix-socket URL is redis+unix:///ABSOLUTE/PATH (three slashes)");
    return e;
  }
  if (!url.starts_with(tcp)) {
    failure = fail(errc::invalid_argument, "'" + e.url +
                                               "': not a Redis URL: use redis://HOST:PORT, "
                                               "redis+unix:///PATH/redis.sock or "
                                               "redis+cluster://HOST:PORT,HOST:PORT,...");
    return e;
  }
  std::string_view rest = url.substr(tcp.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  const HostPort hp = parse_host_port(rest, e.url, failure);
  e.host = hp.host;
  e.port = hp.port;
  return e;
}

Connection::Connection(const Endpoint& endpoint, ConnectOptions options)
    : endpoint_(endpoint), options_(options) {}

Connection::~Connection() { drop(); }

void Connection::drop() noexcept {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
}

Failure Connection::connect() {
  if (context_ != nullptr && context_->err == 0) return {};
  return open_context();
}

// Connects, sets the reply timeout, checks the server's eviction policy and
// loads the library if the server lacks it (or has another version).
Failure Connection::open_context() {
  drop();
  const timeval tv = to_timeval(options_.connect_timeout);
  {
    SigpipeGuard guard;
    context_ = endpoint_.kind == Endpoint::Kind::unix_socket
                   ? redisConnectUnixWithTimeout(endpoint_.path.c_str(), tv)
                   : redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv);
  }
  if (context_ == nullptr) return fail(errc::unavailable, endpoint_.url + ": out of memory while connecting");
  if (context_->err != 0) {
    const int saved = errno;
    std::string why = context_->errstr;
    drop();
    const bool timed_out =
        saved == ETIMEDOUT || saved == EINPROGRESS || why.find("timed out") != std::string::npos;
    if (timed_out)
      return fail(errc::timeout, endpoint_.url + ": no connection within " +
                                     std::to_string(options_.connect_timeout.count()) + " ms (" + why +
                                     "): is the host reachable and the server running?");
    return fail(errc::unavailable,
                endpoint_.url + ": cannot connect (" + why + "): start redis-server there, or check the URL");
  }
  const timeval io = to_timeval(options_.io_timeout);
  if (redisSetTimeout(context_, io) != REDIS_OK) {
    drop();
    return fail(errc::unavailable, endpoint_.url + ": cannot set the socket timeout");
  }
  if (Failure f = check_server()) {
    drop();
    return f;
  }
  return {};
}

// maxmemory-policy: jobs must never be evicted. A job's keys carry no TTL,
// so the volatile-* policies never evict them (they evict only keys with a
// TTL: here, de-duplication keys that are past their job and inside their
// window, so a key's window can end early); with no such key left, a write
// fails with OOM, as under noeviction. The allkeys-* policies would evict
// jobs, leases and the queue's config: refused. A server that refuses
// CONFIG GET (managed services rename it) cannot be checked: refused unless
// the caller turns the check off (RedisOptions::check_eviction_policy).
Failure Connection::check_server() {
  if (options_.check_eviction_policy) {
    Failure f;
    const std::string_view argv[] = {"CONFIG", "GET", "maxmemory-policy"};
    Reply r = command(argv, Retry::unsafe, f);  // unsafe: no reconnection from inside a connection
    if (f) return f;
    if (is_error_reply(r.get()) || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
      return fail(errc::unsafe_server_config,
                  endpoint_.url + ": cannot read the server's maxmemory-policy (CONFIG GET refused: " +
                      std::string(is_error_reply(r.get()) ? text(r.get()) : "unexpected reply") +
                      "); make sure it is noeviction, then set RedisOptions::check_eviction_policy = false");
    }
    const std::string policy(text(r->element[1]));
    if (policy != "noeviction" && !policy.starts_with("volatile-")) {
      return fail(errc::unsafe_server_config,
                  endpoint_.url + ": the server's maxmemory-policy is " + policy +
                      ", which evicts any key under memory pressure: a queue's jobs and leases would vanish. "
                      "Set it to noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)");
    }
  }
  // The library: loaded unless the server has this version.
  if (!options_.load_library) return {};
  Failure f;
  const std::string_view argv[] = {"FCALL", "jr_version", "0"};
  Reply r = command(argv, Retry::unsafe, f);
  if (f) return f;
  if (r->type == REDIS_REPLY_STRING && text(r.get()) == library_version()) return {};
  return load_library();
}

Failure Connection::load_library() {
  Failure f;
  const std::string_view argv[] = {"FUNCTION", "LOAD", "REPLACE", library_source()};
  Reply r = command(argv, Retry::unsafe, f);
  if (f) return f;
  if (is_error_reply(r.get()))
    return fail(errc::server_error,
                endpoint_.url + ": FUNCTION LOAD of jobring's library failed (" + std::string(text(r.get())) +
                    "): the server must be Redis 7 (or Valkey) with Lua functions enabled");
  return {};
}

Failure Connection::io_failure(std::string_view doing) {
  const int saved = errno;
  const int err = context_->err;
  std::string why = context_->errstr;
  drop();  // after an error the connection's state is unknown: never reuse it
  if (err == REDIS_ERR_PROTOCOL || err == REDIS_ERR_OOM || err == REDIS_ERR_OTHER)
    return fail(errc::protocol_error,
                endpoint_.url + ": " + std::string(doing) + ": " + why + ": is this a Redis 7 server?");
  if (err == REDIS_ERR_IO && (saved == EAGAIN || saved == EWOULDBLOCK || saved == ETIMEDOUT))
    return fail(errc::timeout,
                endpoint_.url + ": " + std::string(doing) + ": no reply within " +
                    std::to_string(options_.io_timeout.count()) +
                    " ms: the server is stopped, overloaded or unreachable (the call may or may "
                    "not have taken effect)");
  return fail(errc::unavailable, endpoint_.url + ": " + std::string(doing) + ": connection lost (" + why +
                                     "): the server went away; the call may or may not have taken effect");
}

Reply Connection::command(std::span<const std::string_view> argv, Retry retry, Failure& failure,
                          std::chrono::milliseconds extra_wait) {
  return exchange(argv, {}, nullptr, retry, failure, extra_wait);
}

Reply Connection::command_on(std::string_view /*key*/, std::span<const std::string_view> argv, Retry retry,
                             Failure& failure, std::chrono::milliseconds extra_wait) {
  return command(argv, retry, failure, extra_wait);
}

// Sends argv (and `then`, if not empty, pipelined behind it: one round
// trip) and reads the replies: the first returned, the second in
// *then_reply. Each reply has io_timeout (+ extra_wait) to come.
Reply Connection::exchange(std::span<const std::string_view> argv, std::span<const std::string_view> then,
                           Reply* then_reply, Retry retry, Failure& failure,
                           std::chrono::milliseconds extra_wait) {
  auto pack = [](std::span<const std::string_view> in, std::vector<const char*>& args,
                 std::vector<size_t>& lengths) {
    args.clear();
    lengths.clear();
    for (const auto a : in) {
      args.push_back(a.data());
      lengths.push_back(a.size());
    }
  };
  std::vector<const char*> args, then_args;
  std::vector<size_t> lengths, then_lengths;
  pack(argv, args, lengths);
  pack(then, then_args, then_lengths);
  const std::string_view name = argv.empty() ? std::string_view{} : argv[0];
  // Two tries: the second only after the connection dropped, and for a call
  // not yet sent (a stale connection) or one that is safe to repeat.
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool fresh = false;
    if (context_ == nullptr || context_->err != 0) {
      if (Failure f = open_context()) {
        failure = std::move(f);
        return nullptr;
      }
      fresh = true;
    }
    if (extra_wait.count() > 0) redisSetTimeout(context_, to_timeval(options_.io_timeout + extra_wait));
    void* raw = nullptr;
    void* then_raw = nullptr;
    {
      SigpipeGuard guard;
      errno = 0;
      if (then.empty()) {
        raw = redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data());
      } else if (redisAppendCommandArgv(context_, static_cast<int>(args.size()), args.data(),
                                        lengths.data()) == REDIS_OK &&
                 redisAppendCommandArgv(context_, static_cast<int>(then_args.size()), then_args.data(),
                                        then_lengths.data()) == REDIS_OK &&
                 redisGetReply(context_, &raw) == REDIS_OK) {
        if (redisGetReply(context_, &then_raw) != REDIS_OK) {
          freeReplyObject(raw);
          raw = nullptr;
        }
      }
    }
    if (raw != nullptr) {
      if (extra_wait.count() > 0) redisSetTimeout(context_, to_timeval(options_.io_timeout));
      if (then_reply != nullptr) *then_reply = Reply(static_cast<redisReply*>(then_raw));
      return Reply(static_cast<redisReply*>(raw));
    }
    const int saved = errno;
    if (context_ == nullptr) {  // never: a failed call leaves the context to be read here
      failure = fail(errc::unavailable, endpoint_.url + ": " + std::string(name) + ": connection lost");
      return nullptr;
    }
    const int err = context_->err;
    failure = io_failure(name);
    // A connection that dropped (EOF, reset, broken pipe: a restarted
    // server, an idle connection closed) is opened again once and the call
    // sent again, if it is safe to repeat (its first sending may have taken
    // effect) and the connection was not new. Else the failure stands and
    // the next call reconnects.
    const bool dropped = err == REDIS_ERR_EOF || (err == REDIS_ERR_IO && saved != EAGAIN &&
                                                  saved != EWOULDBLOCK && saved != ETIMEDOUT);
    if (!dropped || fresh || retry != Retry::safe) return nullptr;
    failure = {};
  }
  return nullptr;
}

Reply Connection::fcall(std::string_view fn, std::string_view key, std::span<const std::string_view> args,
                        bool writes, Retry retry, Failure& failure) {
  std::vector<std::string_view> argv;
  argv.reserve(args.size() + 4);
  argv.insert(argv.end(), {"FCALL", fn, "1", key});
  argv.insert(argv.end(), args.begin(), args.end());
  // WAIT (ConnectOptions::wait_replicas) behind a call that writes, in the
  // same round trip: its answer says how many replicas have every write
  // this connection made so far, this call's included.
  const std::string replicas = std::to_string(options_.wait_replicas),
                    wait_ms = std::to_string(options_.wait_timeout.count());
  const std::string_view wait_argv[] = {"WAIT", replicas, wait_ms};
  const bool wait = writes && options_.wait_replicas > 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Reply waited;
    Reply r = wait ? exchange(argv, wait_argv, &waited, retry, failure, options_.wait_timeout)
                   : command(argv, retry, failure);
    if (!r) return nullptr;
    if (!is_error_reply(r.get())) {
      if (wait &&
          (!waited || waited->type != REDIS_REPLY_INTEGER || waited->integer < options_.wait_replicas)) {
        const long long got = waited && waited->type == REDIS_REPLY_INTEGER ? waited->integer : 0;
        std::string what = endpoint_.url;
        what += ": ";
        what += fn;
        what += " took effect on the primary, but " + std::to_string(got) + " of " + replicas;
        what += " replicas acknowledged it within " + wait_ms;
        what += " ms: a failover now could lose it; check the replicas' link (INFO replication)";
        failure = fail(errc::timeout, std::move(what));
        return nullptr;
      }
      return r;
    }
    const std::string_view message = text(r.get());
    if (options_.cluster_node && is_cluster_error(message)) return r;  // the ClusterLink's to follow
    // FUNCTION FLUSH, or a server restarted without persistence: load it
    // again and run the call once more (nothing ran: the function was missing).
    if (attempt == 0 && message.find("Function not found") != std::string_view::npos) {
      if (Failure f = load_library()) {
        failure = std::move(f);
        return nullptr;
      }
      continue;
    }
    const bool oom = message.starts_with("OOM");
    failure =
        fail(errc::server_error,
             endpoint_.url + ": " + std::string(fn) + " refused: " + std::string(message) +
                 (oom ? " (the server reached maxmemory: add memory, raise maxmemory, or drain the queues)"
                  : message.starts_with("READONLY") ? " (a read-only replica: point the URL at the primary)"
                  : is_cluster_error(message)
                      ? " (a node of a Redis Cluster: use redis+cluster://HOST:PORT,HOST:PORT,...)"
                      : ""));
    return nullptr;
  }
  return nullptr;
}

}  // namespace jobring::detail::redis
