// RedisQueue: the operators' calls. stats and peek only read (their
// functions are flagged no-writes); requeue, remove_dead, purge and pause
// each change the queue in one step (a client that dies around one left it
// done or not done). The bulk ones (requeue_dead, purge) work in calls of
// kChunk jobs, so that no call holds the server long: a client that dies
// between calls left some of the jobs done, each whole.
#include <algorithm>
#include <cstring>

#include "jobring/redis_queue.hpp"
#include "redis/queue_impl.hpp"

namespace jobring {

using redis::Failure;
using redis::Reply;
using redis::Retry;

namespace {

constexpr std::size_t kChunk = 1000;
constexpr std::size_t kSweepPerCall = 64;  // jobring.lua's SWEEP

// FCALL fn, for the calls whose one good answer is "ok" with `elements`
// elements (0: any number): else nullptr, with `failure` set (not_found for
// a missing queue, protocol_error for any other answer).
Reply ok_reply(RedisQueue::Impl& impl, std::string_view fn, std::initializer_list<std::string_view> args,
               Failure& failure, std::size_t elements = 0) {
  Reply r = impl.call(fn, args, Retry::safe, failure);
  if (!r) return r;
  if (redis::status(r.get()) == "not_found") {
    failure = impl.not_found();
    return nullptr;
  }
  if (redis::status(r.get()) != "ok" || (elements != 0 && r->elements != elements)) {
    failure = redis::unexpected(impl, fn);
    return nullptr;
  }
  return r;
}

// Stats from jr_stats: ok ready delayed leased expired dead oldest_lease
// oldest_ready paused, then the totals in jobring_admin.lua's STAT_FIELDS order.
Stats stats_impl(RedisQueue::Impl& impl, Failure& failure) {
  Stats s;
  Reply r = ok_reply(impl, "jr_stats", {}, failure, 18);
  if (!r) return s;
  auto at = [&](std::size_t i) { return static_cast<std::uint64_t>(redis::integer(r.get(), i)); };
  s.ready = at(1);
  s.delayed = at(2);
  s.leased = at(3);
  s.expired = at(4);
  s.dead = at(5);
  s.oldest_lease_ms = at(6);
  s.oldest_ready_ms = at(7);
  s.paused = at(8);
  const std::uint64_t held = s.ready + s.delayed + s.leased + s.expired + s.dead;
  s.free = held < impl.options.capacity ? impl.options.capacity - held : 0;
  s.pushed = at(9);
  s.claimed = at(10);
  s.acked = at(11);
  s.released = at(12);
  s.expired_total = at(13);
  s.dead_lettered = at(14);
  s.requeued = at(15);
  s.purged = at(16);
  s.duplicates = at(17);
  return s;
}

std::vector<JobInfo> peek_impl(RedisQueue::Impl& impl, JobState state, std::size_t limit, Failure& failure) {
  std::vector<JobInfo> out;
  if (limit == 0) return out;
  const char* name = state == JobState::ready     ? "ready"
                     : state == JobState::delayed ? "delayed"
                     : state == JobState::leased  ? "leased"
                                                  : "dead";
  const std::string n = std::to_string(std::min<std::size_t>(limit, 100000));
  Reply r = ok_reply(impl, "jr_peek", {name, n}, failure);
  if (!r) return out;
  const auto k = static_cast<std::size_t>(redis::integer(r.get(), 1));
  if (r->elements != 2 + 8 * k) {
    failure = redis::unexpected(impl, "jr_peek");
    return out;
  }
  out.reserve(k);
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t at = 2 + 8 * i;
    JobInfo info;
    info.id = static_cast<JobId>(redis::integer(r.get(), at));
    info.state = state;
    info.attempts = static_cast<std::uint32_t>(redis::integer(r.get(), at + 1));
    info.ms_until = redis::integer(r.get(), at + 2);
    info.enqueued_ms_ago =
        static_cast<std::uint64_t>(std::max<std::int64_t>(redis::integer(r.get(), at + 3), 0));
    if (const std::int64_t failed = redis::integer(r.get(), at + 4); failed >= 0)
      info.failed_ms_ago = static_cast<std::uint64_t>(failed);
    info.error = std::string(redis::string(r.get(), at + 5));
    const std::string_view payload = redis::string(r.get(), at + 6);
    info.payload.resize(payload.size());
    if (!payload.empty()) std::memcpy(info.payload.data(), payload.data(), payload.size());
    out.push_back(std::move(info));
  }
  return out;
}

// One call answering "ok N" (requeue, remove_dead, purge, pause).
std::size_t count_call(RedisQueue::Impl& impl, std::string_view fn,
                       std::initializer_list<std::string_view> args, Failure& failure) {
  Reply r = ok_reply(impl, fn, args, failure);
  return r ? static_cast<std::size_t>(redis::integer(r.get(), 1)) : 0;
}

template <typename T>
T checked(T value, const Failure& failure) {
  if (failure) redis::raise(failure);
  return value;
}

}  // namespace

Stats RedisQueue::stats() const {
  Failure f;
  return checked(stats_impl(*impl_, f), f);
}

Stats RedisQueue::stats(std::error_code& ec) const noexcept {
  Failure f;
  Stats s = stats_impl(*impl_, f);
  ec = f.ec;
  return s;
}

std::vector<JobInfo> RedisQueue::peek(JobState state, std::size_t limit) const {
  Failure f;
  return checked(peek_impl(*impl_, state, limit, f), f);
}

std::vector<JobInfo> RedisQueue::peek(JobState state, std::size_t limit, std::error_code& ec) const noexcept {
  Failure f;
  auto out = peek_impl(*impl_, state, limit, f);
  ec = f.ec;
  return out;
}

bool RedisQueue::requeue(JobId dead_job) {
  Failure f;
  const std::string id = std::to_string(dead_job);
  return checked(count_call(*impl_, "jr_requeue", {id}, f) == 1, f);
}

std::size_t RedisQueue::requeue_dead() {
  Failure f;
  const std::string chunk = std::to_string(kChunk);
  std::size_t total = 0;
  for (;;) {
    const std::size_t n = count_call(*impl_, "jr_requeue_dead", {chunk}, f);
    total += n;
    if (f || n < kChunk) break;
  }
  return checked(total, f);
}

bool RedisQueue::remove_dead(JobId dead_job) {
  Failure f;
  const std::string id = std::to_string(dead_job);
  return checked(count_call(*impl_, "jr_remove_dead", {id}, f) == 1, f);
}

std::size_t RedisQueue::purge(PurgeWhat what) {
  Failure f;
  const std::string bits = std::to_string(static_cast<unsigned>(what)), chunk = std::to_string(kChunk);
  std::size_t total = 0;
  for (;;) {
    const std::size_t n = count_call(*impl_, "jr_purge", {bits, chunk}, f);
    total += n;
    if (f || n < kChunk) break;
  }
  return checked(total, f);
}

bool RedisQueue::pause() {
  Failure f;
  return checked(count_call(*impl_, "jr_pause", {"1"}, f) == 1, f);
}

bool RedisQueue::resume() {
  Failure f;
  return checked(count_call(*impl_, "jr_pause", {"0"}, f) == 1, f);
}

bool RedisQueue::paused() const { return stats().paused != 0; }

namespace {

// jr_sweep until a call takes fewer than its limit (each call whole: a
// client that dies between calls left the leases each took back).
SweepResult sweep_impl(RedisQueue::Impl& impl, Failure& failure) {
  SweepResult total;
  for (;;) {
    Reply r = ok_reply(impl, "jr_sweep", {}, failure, 3);
    if (!r) return total;
    const auto n = static_cast<std::size_t>(redis::integer(r.get(), 1));
    total.expired += n;
    total.dead_lettered += static_cast<std::size_t>(redis::integer(r.get(), 2));
    if (n < kSweepPerCall) return total;
  }
}

// Adds the names of the jobring queues on the server `connection` talks to
// (a SCAN of its keys for the queues' config keys).
void scan_names(redis::Connection& connection, std::vector<std::string>& names, Failure& failure) {
  constexpr std::string_view prefix = "{jr:", suffix = "}:cfg";
  std::string cursor = "0";
  do {
    const std::string_view argv[] = {"SCAN", cursor, "MATCH", "{jr:*}:cfg", "COUNT", "1000"};
    Reply r = connection.command(argv, Retry::safe, failure);
    if (!r) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      failure = redis::fail(errc::protocol_error, connection.endpoint().url +
                                                      ": SCAN answered something else than a "
                                                      "cursor and keys: is this a Redis server?");
      return;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    const redisReply* keys = r->element[1];
    for (std::size_t i = 0; i < keys->elements; ++i) {
      if (keys->element[i]->type != REDIS_REPLY_STRING) continue;
      const std::string_view key(keys->element[i]->str, keys->element[i]->len);
      if (key.size() > prefix.size() + suffix.size() && key.starts_with(prefix) && key.ends_with(suffix))
        names.emplace_back(key.substr(prefix.size(), key.size() - prefix.size() - suffix.size()));
    }
  } while (cursor != "0");
}

// One server: a SCAN of it. A cluster: a SCAN of every primary (the slot
// map read first), each queue's keys being on one of them.
std::vector<std::string> list_impl(std::string_view url, const RedisOptions& options, Failure& failure) {
  std::vector<std::string> names;
  const redis::Endpoint endpoint = redis::parse_url(url, failure);
  if (failure) return names;
  const redis::ConnectOptions connect{options.connect_timeout, options.io_timeout,
                                      options.check_eviction_policy, options.wait_replicas,
                                      options.wait_timeout};
  if (const auto topology = redis::make_topology(endpoint)) {
    redis::ClusterLink cluster(topology, connect);
    if ((failure = cluster.refresh())) return {};
    for (const redis::HostPort& node : topology->primaries()) {
      scan_names(cluster.node(node), names, failure);
      if (failure) return {};
    }
  } else {
    redis::Connection connection(endpoint, connect);
    scan_names(connection, names, failure);
    if (failure) return {};
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());  // SCAN may repeat a key
  return names;
}

}  // namespace

SweepResult RedisQueue::sweep() {
  Failure f;
  return checked(sweep_impl(*impl_, f), f);
}

SweepResult RedisQueue::sweep(std::error_code& ec) noexcept {
  Failure f;
  const SweepResult r = sweep_impl(*impl_, f);
  ec = f.ec;
  return r;
}

std::vector<std::string> RedisQueue::list(std::string_view url, const RedisOptions& redis) {
  Failure f;
  return checked(list_impl(url, redis, f), f);
}

std::vector<std::string> RedisQueue::list(std::string_view url, std::error_code& ec,
                                          const RedisOptions& redis) noexcept {
  Failure f;
  auto names = list_impl(url, redis, f);
  ec = f.ec;
  return names;
}

}  // namespace jobring
