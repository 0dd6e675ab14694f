// RedisQueue's state and the helpers its files share (queue.cpp: the pool
// and the lifecycle; push.cpp, claim.cpp, lease.cpp: the calls; admin.cpp:
// stats, peek, requeue, purge, pause, sweep, list). Internal.
#pragma once

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/cluster.hpp"
#include "redis/connection.hpp"

namespace jobring {

// lib/redis's internals live in jobring::detail::redis, which libjobring.so
// does not export (lib/capi/jobring.map); `redis::` for short.
namespace redis = detail::redis;

struct RedisQueue::Impl {
  redis::Endpoint endpoint;
  redis::ConnectOptions connect;
  std::shared_ptr<redis::Topology> topology;  // a cluster's slot map (redis+cluster://), else null
  std::string url;
  std::string name;
  std::string key;    // "{jr:NAME}": the key every FCALL names; the hash tag of all the queue's keys
  std::string wake;   // key + ":wake": the marker list blocked claims BLPOP
  std::string room;   // key + ":room": the marker list pushes waiting for room BLPOP
  std::string owner;  // "host:pid", recorded with process-owned leases
  Options options;
  std::uint64_t incarnation = 0;

  // Links not in use (a Connection, or a ClusterLink with a connection per
  // node). One per call in flight; a forked child drops its parent's (their
  // sockets are the parent's conversations).
  std::mutex mutex;
  std::vector<std::unique_ptr<redis::Link>> idle;
  pid_t pid = ::getpid();

  class Handle {
   public:
    explicit Handle(Impl& impl);
    ~Handle();
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    redis::Link* operator->() const noexcept { return connection_.get(); }

   private:
    Impl& impl_;
    std::unique_ptr<redis::Link> connection_;
  };

  // FCALL fn on this queue. A reply that is an array whose first element is
  // a status word, or nullptr with `failure` set (protocol_error for a
  // reply of another shape).
  redis::Reply call(std::string_view fn, std::initializer_list<std::string_view> args, redis::Retry retry,
                    redis::Failure& failure);
  redis::Reply call(std::string_view fn, const std::vector<std::string_view>& args, redis::Retry retry,
                    redis::Failure& failure);
  // BLPOP `list` for at most `wait` (at least 1 ms). False with `failure`
  // set if the server failed; a marker or a timeout are both true.
  bool wait_marker(const std::string& list, std::chrono::milliseconds wait, redis::Failure& failure);

  [[nodiscard]] redis::Failure not_found() const;
};

namespace detail::redis {

inline std::string_view status(const redisReply* r) { return {r->element[0]->str, r->element[0]->len}; }
// Element i as an integer (integer replies, or strings of digits); 0 if neither.
std::int64_t integer(const redisReply* r, std::size_t i) noexcept;
std::string_view string(const redisReply* r, std::size_t i) noexcept;
Failure fail(errc code, std::string what);
Failure unexpected(const RedisQueue::Impl& impl, std::string_view fn);
// interrupt_waits() was called, or *stop is set.
bool stop_requested(const std::atomic<bool>* stop) noexcept;

// What the calls' files share (`using namespace redis::helpers` there).
namespace helpers {
using Steady = std::chrono::steady_clock;
// A blocked call sleeps at most this long at a time, to look at its stop
// flag and interrupt_waits(); the due times the server reports and the
// markers wake it sooner.
inline constexpr milliseconds kWaitSlice{1000};
// Jobs per FCALL in the batch calls, so that no one call holds the server long.
inline constexpr std::size_t kBatch = 256;

inline std::uint64_t parse_u64(std::string_view text) {
  std::uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}
inline bool in_range(milliseconds v, milliseconds lo, milliseconds hi) { return v >= lo && v <= hi; }
inline Failure invalid(std::string what) { return fail(errc::invalid_argument, std::move(what)); }
}  // namespace helpers

// Waits for room (list = the room list) or a claimable job (the wake list)
// until `deadline`, one slice at most, and no longer than `due` (if >= 0);
// false when the wait is over or interrupted (then `interrupted` is set), or
// the server failed (`failure`).
bool wait_more(RedisQueue::Impl& impl, const std::string& list, helpers::Steady::time_point deadline,
               milliseconds due, const std::atomic<bool>* stop, bool& interrupted, Failure& failure);
// One jr_claim call for up to n (<= jobs.size()) jobs: claimed > 0 (the
// jobs filled in), or 0 with the next due time the server reported (-1:
// none); `waits`: counted as a sleeper if empty (the caller will wait for a
// marker on impl.wake). claim.cpp; claim_any.cpp uses it for several queues.
struct ClaimReply {
  std::size_t claimed = 0;
  milliseconds due{-1};
};
ClaimReply claim_once(RedisQueue::Impl& impl, std::span<Job> jobs, std::string_view n, std::string_view lease,
                      std::string_view owner, bool waits, Failure& failure);
// Rethrows a failure from the throwing overloads.
[[noreturn]] void raise(const Failure& failure);

}  // namespace detail::redis
}  // namespace jobring
