// RedisQueue: the connection pool, the helpers the calls share, and the
// lifecycle (create, open, remove). The calls themselves are in push.cpp,
// claim.cpp, lease.cpp and admin.cpp. Each is one FCALL of
// lib/redis/jobring.lua (plus BLPOPs while waiting), so the crash reasoning
// of every call is that of its function there: the server runs it whole or
// not at all, and a client that dies before, during or after the call
// leaves the queue in a state some sequence of whole calls produces. What a
// client death leaves is said at each call.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>
#include <utility>

#include "jobring/redis_queue.hpp"
#include "redis/job_access.hpp"
#include "redis/queue_impl.hpp"
#include "ring/wait.hpp"  // detail::interrupt_requested

namespace jobring {

namespace detail::redis {

// --- reply helpers ------------------------------------------------------------

std::int64_t integer(const redisReply* r, std::size_t i) noexcept {
  if (i >= r->elements) return 0;
  const redisReply* e = r->element[i];
  if (e->type == REDIS_REPLY_INTEGER) return e->integer;
  if (e->type != REDIS_REPLY_STRING) return 0;
  std::int64_t v = 0;
  std::from_chars(e->str, e->str + e->len, v);
  return v;
}

std::string_view string(const redisReply* r, std::size_t i) noexcept {
  if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return {};
  return {r->element[i]->str, r->element[i]->len};
}

Failure fail(errc code, std::string what) { return {make_error_code(code), std::move(what)}; }

Failure unexpected(const RedisQueue::Impl& impl, std::string_view fn) {
  return fail(errc::protocol_error,
              impl.url + ": queue '" + impl.name + "': " + std::string(fn) +
                  " answered something jobring's library never sends: is another version "
                  "of jobring's function library loaded on the server?");
}

bool stop_requested(const std::atomic<bool>* stop) noexcept {
  return detail::interrupt_requested() || (stop != nullptr && stop->load(std::memory_order_relaxed));
}

void raise(const Failure& failure) { throw error(failure.ec, failure.what); }

}  // namespace detail::redis

using redis::Failure;
using redis::Reply;
using redis::Retry;
using namespace redis::helpers;

namespace {

std::string key_of(std::string_view name) { return "{jr:" + std::string(name) + "}"; }

std::string owner_text() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + ":" + std::to_string(::getpid());
}

std::uint64_t random_incarnation() {
  std::random_device device;
  std::uint64_t v = 0;
  while (v == 0) v = (std::uint64_t{device()} << 32) ^ device();
  return v;
}

redis::ConnectOptions connect_options(const RedisOptions& o) {
  return {o.connect_timeout, o.io_timeout, o.check_eviction_policy, o.wait_replicas, o.wait_timeout};
}

}  // namespace

// --- Impl ---------------------------------------------------------------------

RedisQueue::Impl::Handle::Handle(Impl& impl) : impl_(impl) {
  {
    std::lock_guard lock(impl.mutex);
    if (impl.pid != ::getpid()) {  // a forked child: the idle connections are the parent's
      impl.idle.clear();
      impl.pid = ::getpid();
      impl.owner = owner_text();
    }
    if (!impl.idle.empty()) {
      connection_ = std::move(impl.idle.back());
      impl.idle.pop_back();
    }
  }
  if (!connection_) connection_ = redis::make_link(impl.endpoint, impl.connect, impl.topology);
}

RedisQueue::Impl::Handle::~Handle() {
  std::lock_guard lock(impl_.mutex);
  if (impl_.pid == ::getpid() && impl_.idle.size() < 16) impl_.idle.push_back(std::move(connection_));
}

Reply RedisQueue::Impl::call(std::string_view fn, const std::vector<std::string_view>& args, Retry retry,
                             Failure& failure) {
  Handle connection(*this);
  // Every function but these writes (they are flagged no-writes, or only read).
  const bool writes = fn != "jr_stats" && fn != "jr_peek" && fn != "jr_open";
  Reply r = connection->fcall(fn, key, args, writes, retry, failure);
  if (!r) return nullptr;
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->type != REDIS_REPLY_STRING) {
    failure = redis::unexpected(*this, fn);
    return nullptr;
  }
  return r;
}

Reply RedisQueue::Impl::call(std::string_view fn, std::initializer_list<std::string_view> args, Retry retry,
                             Failure& failure) {
  return call(fn, std::vector<std::string_view>(args), retry, failure);
}

bool RedisQueue::Impl::wait_marker(const std::string& list, milliseconds wait, Failure& failure) {
  const auto ms = std::max<std::int64_t>(wait.count(), 1);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%lld.%03lld", static_cast<long long>(ms / 1000),
                static_cast<long long>(ms % 1000));
  const std::string_view argv[] = {"BLPOP", list, seconds};
  Handle connection(*this);
  // Safe to send twice: a marker popped and lost costs a waiter at most one
  // wake-up, which its bounded sleep makes good.
  return static_cast<bool>(connection->command_on(list, argv, Retry::safe, failure, milliseconds{ms}));
}

// (queue_impl.hpp) Waits for room (or a claimable job, for `list` = wake) until `deadline`,
// one slice at most; false when the wait is over or interrupted.
bool detail::redis::wait_more(RedisQueue::Impl& impl, const std::string& list, Steady::time_point deadline,
                              milliseconds due, const std::atomic<bool>* stop, bool& interrupted,
                              Failure& failure) {
  if (redis::stop_requested(stop)) {
    interrupted = true;
    return false;
  }
  const auto now = Steady::now();
  if (now >= deadline) return false;
  auto sleep = std::min(kWaitSlice, std::chrono::ceil<milliseconds>(deadline - now));
  if (due.count() >= 0) sleep = std::min(sleep, std::max(due, milliseconds{1}));
  return impl.wait_marker(list, sleep, failure);
}

Failure RedisQueue::Impl::not_found() const {
  return redis::fail(errc::not_found, url + ": no queue '" + name +
                                          "' on this server (removed?): create it first "
                                          "(RedisQueue::create or open_or_create)");
}

// --- lifecycle ------------------------------------------------------------------

namespace {

enum class Mode { create, open, open_or_create };

Failure check_options(const Options& o) {
  auto bad = [](std::string what) { return redis::fail(errc::invalid_options, std::move(what)); };
  if (o.capacity < 1 || o.capacity > kMaxCapacity)
    return bad("capacity " + std::to_string(o.capacity) + " out of range 1.." + std::to_string(kMaxCapacity));
  if (o.max_payload < 1 || o.max_payload > kMaxPayload)
    return bad("max_payload " + std::to_string(o.max_payload) + " out of range 1.." +
               std::to_string(kMaxPayload));
  if (!in_range(o.default_lease, milliseconds{1}, kMaxLease))
    return bad("default_lease " + std::to_string(o.default_lease.count()) + " ms out of range 1.." +
               std::to_string(kMaxLease.count()) + " ms");
  if (!in_range(o.dedup_window, milliseconds{0}, kMaxLease))
    return bad("dedup_window " + std::to_string(o.dedup_window.count()) + " ms out of range 0.." +
               std::to_string(kMaxLease.count()) + " ms");
  return {};
}

// The options a jr_create / jr_open reply carries: ok created capacity
// max_payload lease max_attempts window incarnation.
void read_config(const redisReply* r, Options& o, std::uint64_t& incarnation) {
  o.capacity = static_cast<std::uint32_t>(redis::integer(r, 2));
  o.max_payload = static_cast<std::uint32_t>(redis::integer(r, 3));
  o.default_lease = milliseconds{redis::integer(r, 4)};
  o.max_attempts = static_cast<std::uint32_t>(redis::integer(r, 5));
  o.dedup_window = milliseconds{redis::integer(r, 6)};
  incarnation = parse_u64(redis::string(r, 7));
}

std::string differences(const Options& have, const Options& want) {
  std::string out;
  auto field = [&](const char* name, long long a, long long b) {
    if (a == b) return;
    if (!out.empty()) out += ", ";
    out += std::string(name) + " " + std::to_string(a) + " exists, " + std::to_string(b) + " asked";
  };
  field("capacity", have.capacity, want.capacity);
  field("max_payload", have.max_payload, want.max_payload);
  field("default_lease", have.default_lease.count(), want.default_lease.count());
  field("max_attempts", have.max_attempts, want.max_attempts);
  field("dedup_window", have.dedup_window.count(), want.dedup_window.count());
  return out;
}

// create / open / open_or_create. create is one jr_create (it checks that
// the name is free and writes the config in one step: racing creators get
// one queue and already_exists); open_or_create is jr_create, then jr_open
// if it existed. A creator that dies after jr_create left a whole queue.
std::unique_ptr<RedisQueue::Impl> open_queue(std::string_view url, std::string_view name,
                                             const Options& options, const RedisOptions& redis_options,
                                             Mode mode, Failure& failure) {
  if (const std::error_code ec = check_name(name)) {
    // Appended, not a chain of operator+: g++ 12 -O3 reads that chain as an
    // overlapping memcpy (a -Wrestrict false positive).
    std::string what = "'";
    what.append(name).append("': ").append(ec.message());
    failure = {ec, std::move(what)};
    return nullptr;
  }
  if (mode != Mode::open) {
    if ((failure = check_options(options))) return nullptr;
  }
  auto impl = std::make_unique<RedisQueue::Impl>();
  impl->endpoint = redis::parse_url(url, failure);
  if (failure) return nullptr;
  impl->topology = redis::make_topology(impl->endpoint);
  impl->connect = connect_options(redis_options);
  impl->url = std::string(url);
  impl->name = std::string(name);
  impl->key = key_of(name);
  impl->wake = impl->key + ":wake";
  impl->room = impl->key + ":room";
  impl->owner = owner_text();
  {
    RedisQueue::Impl::Handle connection(*impl);
    if ((failure = connection->connect())) return nullptr;
  }
  Reply r;
  if (mode != Mode::open) {
    const std::string capacity = std::to_string(options.capacity),
                      payload = std::to_string(options.max_payload),
                      lease = std::to_string(options.default_lease.count()),
                      attempts = std::to_string(options.max_attempts),
                      window = std::to_string(options.dedup_window.count()),
                      incarnation = std::to_string(random_incarnation());
    r = impl->call("jr_create", {capacity, payload, lease, attempts, window, incarnation}, Retry::unsafe,
                   failure);
    if (!r) return nullptr;
    if (redis::status(r.get()) == "exists") {
      if (mode == Mode::create) {
        failure = redis::fail(errc::already_exists, impl->url + ": a queue '" + impl->name +
                                                        "' exists already: open it, or remove it first");
        return nullptr;
      }
      r.reset();
    }
  }
  if (!r) {
    r = impl->call("jr_open", {}, Retry::safe, failure);
    if (!r) return nullptr;
    if (redis::status(r.get()) == "not_found") {
      failure = impl->not_found();
      return nullptr;
    }
  }
  if (redis::status(r.get()) != "ok" || r->elements < 8) {
    failure = redis::unexpected(*impl, "jr_open");
    return nullptr;
  }
  read_config(r.get(), impl->options, impl->incarnation);
  if (mode == Mode::open_or_create && redis::integer(r.get(), 1) == 0) {
    Options want = options;
    want.group = {};
    if (const std::string diff = differences(impl->options, want); !diff.empty()) {
      failure = redis::fail(errc::options_mismatch,
                            impl->url + ": queue '" + impl->name + "' exists with other options (" + diff +
                                "): open it as it is, or remove it and create it again");
      return nullptr;
    }
  }
  return impl;
}

}  // namespace

RedisQueue::RedisQueue(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
RedisQueue::RedisQueue(RedisQueue&&) noexcept = default;
RedisQueue& RedisQueue::operator=(RedisQueue&&) noexcept = default;
RedisQueue::~RedisQueue() = default;

RedisQueue RedisQueue::create(std::string_view url, std::string_view name, const Options& options,
                              const RedisOptions& redis) {
  Failure f;
  auto impl = open_queue(url, name, options, redis, Mode::create, f);
  if (f) redis::raise(f);
  return RedisQueue(std::move(impl));
}

RedisQueue RedisQueue::open(std::string_view url, std::string_view name, const RedisOptions& redis) {
  Failure f;
  auto impl = open_queue(url, name, {}, redis, Mode::open, f);
  if (f) redis::raise(f);
  return RedisQueue(std::move(impl));
}

RedisQueue RedisQueue::open_or_create(std::string_view url, std::string_view name, const Options& options,
                                      const RedisOptions& redis) {
  Failure f;
  auto impl = open_queue(url, name, options, redis, Mode::open_or_create, f);
  if (f) redis::raise(f);
  return RedisQueue(std::move(impl));
}

namespace {

// The std::error_code forms of create, open and open_or_create: the
// queue's Impl, or nullptr with `ec` set.
std::unique_ptr<RedisQueue::Impl> open_or_fail(std::string_view url, std::string_view name,
                                               const Options& options, const RedisOptions& redis, Mode mode,
                                               std::error_code& ec) noexcept {
  Failure f;
  auto impl = open_queue(url, name, options, redis, mode, f);
  ec = f.ec;
  if (f) impl.reset();
  return impl;
}

}  // namespace

std::optional<RedisQueue> RedisQueue::create(std::string_view url, std::string_view name,
                                             const Options& options, std::error_code& ec,
                                             const RedisOptions& redis) noexcept {
  auto impl = open_or_fail(url, name, options, redis, Mode::create, ec);
  if (!impl) return std::nullopt;
  return RedisQueue(std::move(impl));
}

std::optional<RedisQueue> RedisQueue::open(std::string_view url, std::string_view name, std::error_code& ec,
                                           const RedisOptions& redis) noexcept {
  auto impl = open_or_fail(url, name, {}, redis, Mode::open, ec);
  if (!impl) return std::nullopt;
  return RedisQueue(std::move(impl));
}

std::optional<RedisQueue> RedisQueue::open_or_create(std::string_view url, std::string_view name,
                                                     const Options& options, std::error_code& ec,
                                                     const RedisOptions& redis) noexcept {
  auto impl = open_or_fail(url, name, options, redis, Mode::open_or_create, ec);
  if (!impl) return std::nullopt;
  return RedisQueue(std::move(impl));
}

namespace {

// jr_remove: deletes every key of the queue in one call (a client that dies
// around it left the queue whole or gone). Sent again after a dropped
// connection: if the first went through, the second finds nothing and the
// answer is false although this call removed the queue.
bool remove_queue(std::string_view url, std::string_view name, const RedisOptions& redis_options,
                  Failure& failure) {
  if (const std::error_code ec = check_name(name)) {
    std::string what = "'";
    what.append(name).append("': ").append(ec.message());
    failure = {ec, std::move(what)};
    return false;
  }
  RedisQueue::Impl impl;
  impl.endpoint = redis::parse_url(url, failure);
  if (failure) return false;
  impl.topology = redis::make_topology(impl.endpoint);
  impl.connect = connect_options(redis_options);
  impl.url = std::string(url);
  impl.name = std::string(name);
  impl.key = key_of(name);
  Reply r = impl.call("jr_remove", {}, Retry::safe, failure);
  if (!r) return false;
  return redis::integer(r.get(), 1) == 1;
}

}  // namespace

bool RedisQueue::remove(std::string_view url, std::string_view name, const RedisOptions& redis) {
  Failure f;
  const bool removed = remove_queue(url, name, redis, f);
  if (f) redis::raise(f);
  return removed;
}

bool RedisQueue::remove(std::string_view url, std::string_view name, std::error_code& ec,
                        const RedisOptions& redis) noexcept {
  Failure f;
  const bool removed = remove_queue(url, name, redis, f);
  ec = f.ec;
  return removed;
}

const std::string& RedisQueue::name() const noexcept { return impl_->name; }
const Options& RedisQueue::options() const noexcept { return impl_->options; }
std::uint64_t RedisQueue::incarnation() const noexcept { return impl_->incarnation; }
const std::string& RedisQueue::url() const noexcept { return impl_->url; }

}  // namespace jobring
