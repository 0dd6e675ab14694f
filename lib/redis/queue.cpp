// RedisQueue: lifecycle, producer and worker calls. Each is one FCALL of
// lib/redis/jobring.lua (plus BLPOPs while waiting), so the crash reasoning
// of every call is that of its function there: the server runs it whole or
// not at all, and a client that dies before, during or after the call
// leaves the queue in a state some sequence of whole calls produces. What a
// client death leaves is said at each call below.
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

// --- the door into Job (job_access.hpp) -------------------------------------
namespace detail::redis {
template struct JobMemberAccess<JobBufferTag, &Job::buffer_>;
template struct JobMemberAccess<JobSizeTag, &Job::size_>;
template struct JobMemberAccess<JobKeyTag, &Job::key_>;
template struct JobMemberAccess<JobKeySizeTag, &Job::key_size_>;

void fill_job(Job& job, std::string_view payload, std::string_view key) {
  auto& buffer = job.*member_of(JobBufferTag{});
  if (buffer.size() < payload.size()) buffer.resize(payload.size());
  if (!payload.empty()) std::memcpy(buffer.data(), payload.data(), payload.size());
  job.*member_of(JobSizeTag{}) = payload.size();
  const std::size_t key_size = key.size() <= kMaxKeyLength ? key.size() : 0;
  if (key_size > 0) std::memcpy((job.*member_of(JobKeyTag{})).data(), key.data(), key_size);
  job.*member_of(JobKeySizeTag{}) = key_size;
}

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
using Steady = std::chrono::steady_clock;

namespace {

// A blocked call sleeps at most this long at a time, to look at its stop
// flag and interrupt_waits(); the due times the server reports and the
// markers wake it sooner.
constexpr milliseconds kWaitSlice{1000};
// Jobs per FCALL in the batch calls, so that no one call holds the server long.
constexpr std::size_t kBatch = 256;

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

std::uint64_t parse_u64(std::string_view text) {
  std::uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

bool in_range(milliseconds v, milliseconds lo, milliseconds hi) { return v >= lo && v <= hi; }

redis::ConnectOptions connect_options(const RedisOptions& o) {
  return {o.connect_timeout, o.io_timeout, o.check_eviction_policy, o.wait_replicas, o.wait_timeout};
}

Failure invalid(std::string what) { return redis::fail(errc::invalid_argument, std::move(what)); }

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
  if (!connection_) connection_ = std::make_unique<redis::Connection>(impl.endpoint, impl.connect);
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
  return static_cast<bool>(connection->command(argv, Retry::safe, failure, milliseconds{ms}));
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
    failure = {ec, "'" + std::string(name) + "': " + ec.message()};
    return nullptr;
  }
  if (mode != Mode::open) {
    if ((failure = check_options(options))) return nullptr;
  }
  auto impl = std::make_unique<RedisQueue::Impl>();
  impl->endpoint = redis::parse_url(url, failure);
  if (failure) return nullptr;
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

std::optional<RedisQueue> RedisQueue::create(std::string_view url, std::string_view name,
                                             const Options& options, std::error_code& ec,
                                             const RedisOptions& redis) noexcept {
  Failure f;
  auto impl = open_queue(url, name, options, redis, Mode::create, f);
  ec = f.ec;
  if (f) return std::nullopt;
  return RedisQueue(std::move(impl));
}

std::optional<RedisQueue> RedisQueue::open(std::string_view url, std::string_view name, std::error_code& ec,
                                           const RedisOptions& redis) noexcept {
  Failure f;
  auto impl = open_queue(url, name, {}, redis, Mode::open, f);
  ec = f.ec;
  if (f) return std::nullopt;
  return RedisQueue(std::move(impl));
}

std::optional<RedisQueue> RedisQueue::open_or_create(std::string_view url, std::string_view name,
                                                     const Options& options, std::error_code& ec,
                                                     const RedisOptions& redis) noexcept {
  Failure f;
  auto impl = open_queue(url, name, options, redis, Mode::open_or_create, f);
  ec = f.ec;
  if (f) return std::nullopt;
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
    failure = {ec, "'" + std::string(name) + "': " + ec.message()};
    return false;
  }
  RedisQueue::Impl impl;
  impl.endpoint = redis::parse_url(url, failure);
  if (failure) return false;
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

// --- producer ---------------------------------------------------------------------

namespace {

Failure check_push(const RedisQueue::Impl& impl, const PushOptions& o) {
  if (!in_range(o.delay, milliseconds{0}, kMaxLease))
    return invalid("push: delay " + std::to_string(o.delay.count()) + " ms out of range 0.." +
                   std::to_string(kMaxLease.count()) + " ms");
  if (!in_range(o.wait, milliseconds{0}, kMaxLease))
    return invalid("push: wait " + std::to_string(o.wait.count()) + " ms out of range");
  if (o.key.size() > kMaxKeyLength)
    return invalid("push: a de-duplication key of " + std::to_string(o.key.size()) + " bytes (at most " +
                   std::to_string(kMaxKeyLength) + ") to queue '" + impl.name + "'");
  return {};
}

Failure too_large(const RedisQueue::Impl& impl, std::size_t size) {
  return redis::fail(errc::payload_too_large,
                     "queue '" + impl.name + "': a payload of " + std::to_string(size) +
                         " bytes, max_payload is " + std::to_string(impl.options.max_payload) +
                         ": split the job, or create the queue again with a larger max_payload");
}

// Waits for room (or a claimable job, for `list` = wake) until `deadline`,
// one slice at most; false when the wait is over or interrupted.
bool wait_more(RedisQueue::Impl& impl, const std::string& list, Steady::time_point deadline, milliseconds due,
               const std::atomic<bool>* stop, bool& interrupted, Failure& failure) {
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

// jr_push: the job (payload, key) appears whole in pending with its id, or
// not at all. A producer that dies before the reply does not know which;
// with a key, pushing again is harmless (it answers duplicate with the id),
// so keyed pushes are sent again after a dropped connection and keyless
// ones are not.
PushResult push_impl(RedisQueue::Impl& impl, std::span<const std::byte> payload, const PushOptions& o,
                     Failure& failure) {
  if ((failure = check_push(impl, o))) return {};
  if (payload.size() > impl.options.max_payload) {
    failure = too_large(impl, payload.size());
    return {};
  }
  const std::string delay = std::to_string(o.delay.count());
  const std::string_view body(reinterpret_cast<const char*>(payload.data()), payload.size());
  const auto deadline = Steady::now() + o.wait;
  for (;;) {
    const std::string_view waits = Steady::now() < deadline ? "1" : "0";  // counted as a sleeper if full
    Reply r = impl.call("jr_push", {delay, o.key, body, waits}, o.key.empty() ? Retry::unsafe : Retry::safe,
                        failure);
    if (!r) return {};
    const std::string_view s = redis::status(r.get());
    if (s == "ok")
      return {PushStatus::ok, static_cast<JobId>(redis::integer(r.get(), 1)),
              redis::integer(r.get(), 2) == 1};
    if (s == "not_found") {
      failure = impl.not_found();
      return {};
    }
    if (s == "too_large") {
      failure = too_large(impl, payload.size());
      return {};
    }
    if (s != "full") {
      failure = redis::unexpected(impl, "jr_push");
      return {};
    }
    bool interrupted = false;
    if (!wait_more(impl, impl.room, deadline, milliseconds{-1}, o.stop, interrupted, failure))
      return {interrupted ? PushStatus::interrupted : PushStatus::full, 0, false};
  }
}

// jr_push_many, kBatch payloads per call: each call pushes a prefix of its
// payloads (up to the first that finds the queue full), all or nothing.
// Not sent twice after a dropped connection (it would push the batch twice).
std::size_t push_many_impl(RedisQueue::Impl& impl, std::span<const std::span<const std::byte>> payloads,
                           std::span<JobId> ids, const PushOptions& o, Failure& failure) {
  if ((failure = check_push(impl, o))) return 0;
  if (!o.key.empty()) {
    failure = invalid("push_many: PushOptions::key is for push() alone (one key names one job)");
    return 0;
  }
  for (const auto p : payloads)
    if (p.size() > impl.options.max_payload) {
      failure = too_large(impl, p.size());
      return 0;
    }
  const std::string delay = std::to_string(o.delay.count());
  const auto deadline = Steady::now() + o.wait;
  std::size_t done = 0;
  std::vector<std::string_view> args;
  while (done < payloads.size()) {
    const std::size_t n = std::min(kBatch, payloads.size() - done);
    args.assign({delay, Steady::now() < deadline ? "1" : "0"});
    for (std::size_t i = 0; i < n; ++i)
      args.emplace_back(reinterpret_cast<const char*>(payloads[done + i].data()), payloads[done + i].size());
    Reply r = impl.call("jr_push_many", args, Retry::unsafe, failure);
    if (!r) return done;
    const std::string_view s = redis::status(r.get());
    if (s == "not_found") {
      failure = impl.not_found();
      return done;
    }
    if (s != "ok") {
      failure = redis::unexpected(impl, "jr_push_many");
      return done;
    }
    const auto pushed = static_cast<std::size_t>(redis::integer(r.get(), 1));
    for (std::size_t i = 0; i < pushed; ++i)
      if (done + i < ids.size()) ids[done + i] = static_cast<JobId>(redis::integer(r.get(), 2 + i));
    done += pushed;
    if (pushed == n) continue;
    bool interrupted = false;
    if (!wait_more(impl, impl.room, deadline, milliseconds{-1}, o.stop, interrupted, failure)) return done;
  }
  return done;
}

}  // namespace

PushResult RedisQueue::push(std::span<const std::byte> payload, const PushOptions& options) {
  Failure f;
  const PushResult r = push_impl(*impl_, payload, options, f);
  if (f) redis::raise(f);
  return r;
}

PushResult RedisQueue::push(std::string_view payload, const PushOptions& options) {
  return push(std::as_bytes(std::span(payload.data(), payload.size())), options);
}

PushResult RedisQueue::push(std::span<const std::byte> payload, const PushOptions& options,
                            std::error_code& ec) noexcept {
  Failure f;
  const PushResult r = push_impl(*impl_, payload, options, f);
  ec = f.ec;
  return r;
}

std::size_t RedisQueue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                  const PushOptions& options) {
  Failure f;
  const std::size_t n = push_many_impl(*impl_, payloads, ids, options, f);
  if (f) redis::raise(f);
  return n;
}

std::size_t RedisQueue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                  const PushOptions& options, std::error_code& ec) noexcept {
  Failure f;
  const std::size_t n = push_many_impl(*impl_, payloads, ids, options, f);
  ec = f.ec;
  return n;
}

// --- worker ---------------------------------------------------------------------------

namespace {

struct ClaimOutcome {
  std::size_t claimed = 0;
  bool interrupted = false;
};

// jr_claim: takes expired leases back, then leases up to n due jobs in one
// step (each: out of pending, attempts + 1, a new fence, into leased). A
// worker that dies before the reply holds leases it never learns of: the
// jobs come back at their deadline with the attempt counted, as for a
// worker that dies holding them. So a claim is sent again after a dropped
// connection. Between calls the claimer sleeps in BLPOP on the wake list,
// at most until the next due time the server reported (a delayed job, a
// lease's deadline): a push or release in any process on any host pushes a
// marker there, and a marker pushed after the empty claim stays until
// popped, so no wake-up is lost between the claim and the BLPOP.
ClaimOutcome claim_impl(RedisQueue::Impl& impl, std::span<Job> jobs, milliseconds wait, const ClaimOptions& o,
                        Failure& failure) {
  if (o.lease.count() != 0 && !in_range(o.lease, milliseconds{1}, kMaxLease)) {
    failure = invalid("claim: lease " + std::to_string(o.lease.count()) + " ms out of range 1.." +
                      std::to_string(kMaxLease.count()) + " ms (0 = the queue's default)");
    return {};
  }
  if (!in_range(wait, milliseconds{0}, kMaxLease)) {
    failure = invalid("claim: wait " + std::to_string(wait.count()) + " ms out of range");
    return {};
  }
  if (jobs.empty()) return {};
  const std::string n = std::to_string(std::min(jobs.size(), kBatch)),
                    lease = std::to_string(o.lease.count());
  const std::string owner = o.owner == Owner::process ? impl.owner : std::string();
  const auto deadline = Steady::now() + wait;
  for (;;) {
    const auto sent = Steady::now();
    const std::string_view waits = sent < deadline ? "1" : "0";  // counted as a sleeper if empty
    Reply r = impl.call("jr_claim", {n, lease, owner, waits}, Retry::safe, failure);
    if (!r) return {};
    const std::string_view s = redis::status(r.get());
    if (s == "ok") {
      const std::uint64_t incarnation = parse_u64(redis::string(r.get(), 1));
      const auto k = static_cast<std::size_t>(redis::integer(r.get(), 2));
      if (k > jobs.size() || r->elements != 3 + 6 * k) {
        failure = redis::unexpected(impl, "jr_claim");
        return {};
      }
      for (std::size_t i = 0; i < k; ++i) {
        const std::size_t at = 3 + 6 * i;
        Job& job = jobs[i];
        job.id = static_cast<JobId>(redis::integer(r.get(), at));
        job.incarnation = incarnation;
        job.attempt = static_cast<std::uint32_t>(redis::integer(r.get(), at + 2));
        job.lease = Lease{
            .slot = 0, .token = static_cast<std::uint64_t>(redis::integer(r.get(), at + 1)), .job = job.id};
        job.deadline = sent + milliseconds{redis::integer(r.get(), at + 5)};
        redis::fill_job(job, redis::string(r.get(), at + 3), redis::string(r.get(), at + 4));
      }
      return {k, false};
    }
    if (s == "not_found") {
      failure = impl.not_found();
      return {};
    }
    if (s != "empty") {
      failure = redis::unexpected(impl, "jr_claim");
      return {};
    }
    bool interrupted = false;
    if (!wait_more(impl, impl.wake, deadline, milliseconds{redis::integer(r.get(), 1)}, o.stop, interrupted,
                   failure))
      return {0, interrupted};
  }
}

ClaimStatus status_of(const ClaimOutcome& c) {
  return c.claimed > 0 ? ClaimStatus::ok : c.interrupted ? ClaimStatus::interrupted : ClaimStatus::empty;
}

}  // namespace

ClaimStatus RedisQueue::try_claim(Job& job, const ClaimOptions& options) {
  return claim(job, milliseconds{0}, options);
}

std::optional<Job> RedisQueue::try_claim(const ClaimOptions& options) {
  Job job;
  if (try_claim(job, options) != ClaimStatus::ok) return std::nullopt;
  return job;
}

ClaimStatus RedisQueue::claim(Job& job, milliseconds wait, const ClaimOptions& options) {
  Failure f;
  const ClaimOutcome c = claim_impl(*impl_, std::span(&job, 1), wait, options, f);
  if (f) redis::raise(f);
  return status_of(c);
}

std::size_t RedisQueue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options) {
  return claim_many(jobs, milliseconds{0}, options);
}

std::size_t RedisQueue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options) {
  Failure f;
  const ClaimOutcome c = claim_impl(*impl_, jobs, wait, options, f);
  if (f) redis::raise(f);
  return c.claimed;
}

ClaimStatus RedisQueue::try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept {
  return claim(job, milliseconds{0}, options, ec);
}

ClaimStatus RedisQueue::claim(Job& job, milliseconds wait, const ClaimOptions& options,
                              std::error_code& ec) noexcept {
  Failure f;
  const ClaimOutcome c = claim_impl(*impl_, std::span(&job, 1), wait, options, f);
  ec = f.ec;
  return status_of(c);
}

std::size_t RedisQueue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options,
                                       std::error_code& ec) noexcept {
  return claim_many(jobs, milliseconds{0}, options, ec);
}

std::size_t RedisQueue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                                   std::error_code& ec) noexcept {
  Failure f;
  const ClaimOutcome c = claim_impl(*impl_, jobs, wait, options, f);
  ec = f.ec;
  return c.claimed;
}

// --- leases -------------------------------------------------------------------------------
// jr_ack / jr_release / jr_extend check the fence before they change
// anything, and act in one step: a worker that dies around one left the
// lease held (it ends at its deadline) or the call done. All are sent again
// after a dropped connection: a repeat of a call that went through answers
// lease_lost (its fence is no longer current) and changes nothing.

namespace {

LeaseStatus lease_status(RedisQueue::Impl& impl, const Reply& r, std::string_view fn, Failure& failure) {
  const std::string_view s = redis::status(r.get());
  if (s == "ok") return LeaseStatus::ok;
  if (s != "lost") failure = redis::unexpected(impl, fn);
  return LeaseStatus::lease_lost;
}

LeaseStatus ack_impl(RedisQueue::Impl& impl, const Lease& lease, Failure& failure) {
  const std::string id = std::to_string(lease.job), fence = std::to_string(lease.token);
  Reply r = impl.call("jr_ack", {id, fence}, Retry::safe, failure);
  if (!r) return LeaseStatus::lease_lost;
  return lease_status(impl, r, "jr_ack", failure);
}

LeaseStatus release_impl(RedisQueue::Impl& impl, const Lease& lease, milliseconds delay,
                         std::string_view error, bool counted, Failure& failure) {
  if (!in_range(delay, milliseconds{0}, kMaxLease)) {
    failure = invalid("release: delay " + std::to_string(delay.count()) + " ms out of range");
    return LeaseStatus::lease_lost;
  }
  const std::string id = std::to_string(lease.job), fence = std::to_string(lease.token),
                    d = std::to_string(delay.count());
  Reply r = impl.call("jr_release", {id, fence, d, utf8_prefix(error, kMaxErrorLength), counted ? "1" : "0"},
                      Retry::safe, failure);
  if (!r) return LeaseStatus::lease_lost;
  return lease_status(impl, r, "jr_release", failure);
}

LeaseStatus extend_impl(RedisQueue::Impl& impl, Lease& lease, milliseconds time, Failure& failure) {
  if (!in_range(time, milliseconds{1}, kMaxLease)) {
    failure = invalid("extend: lease " + std::to_string(time.count()) + " ms out of range 1.." +
                      std::to_string(kMaxLease.count()) + " ms");
    return LeaseStatus::lease_lost;
  }
  const std::string id = std::to_string(lease.job), fence = std::to_string(lease.token),
                    t = std::to_string(time.count());
  Reply r = impl.call("jr_extend", {id, fence, t}, Retry::safe, failure);
  if (!r) return LeaseStatus::lease_lost;
  const LeaseStatus s = lease_status(impl, r, "jr_extend", failure);
  if (s == LeaseStatus::ok) lease.token = static_cast<std::uint64_t>(redis::integer(r.get(), 1));
  return s;
}

std::size_t ack_many_impl(RedisQueue::Impl& impl, std::span<const Lease> leases,
                          std::span<LeaseStatus> results, Failure& failure) {
  std::fill(results.begin(), results.end(), LeaseStatus::lease_lost);
  std::size_t acked = 0;
  std::vector<std::string> text;
  std::vector<std::string_view> args;
  for (std::size_t done = 0; done < leases.size();) {
    const std::size_t n = std::min(kBatch, leases.size() - done);
    text.clear();
    for (std::size_t i = 0; i < n; ++i) {
      text.push_back(std::to_string(leases[done + i].job));
      text.push_back(std::to_string(leases[done + i].token));
    }
    args.assign(text.begin(), text.end());
    Reply r = impl.call("jr_ack_many", args, Retry::safe, failure);
    if (!r) return acked;
    if (redis::status(r.get()) != "ok" || r->elements != 1 + n) {
      failure = redis::unexpected(impl, "jr_ack_many");
      return acked;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const bool ok = redis::integer(r.get(), 1 + i) == 1;
      acked += ok ? 1 : 0;
      if (done + i < results.size()) results[done + i] = ok ? LeaseStatus::ok : LeaseStatus::lease_lost;
    }
    done += n;
  }
  return acked;
}

}  // namespace

LeaseStatus RedisQueue::ack(const Lease& lease) {
  Failure f;
  const LeaseStatus s = ack_impl(*impl_, lease, f);
  if (f) redis::raise(f);
  return s;
}

LeaseStatus RedisQueue::ack(const Lease& lease, std::error_code& ec) noexcept {
  Failure f;
  const LeaseStatus s = ack_impl(*impl_, lease, f);
  ec = f.ec;
  return s;
}

LeaseStatus RedisQueue::release(const Lease& lease, milliseconds delay) { return release(lease, delay, {}); }

LeaseStatus RedisQueue::release(const Lease& lease, milliseconds delay, std::string_view error) {
  Failure f;
  const LeaseStatus s = release_impl(*impl_, lease, delay, error, true, f);
  if (f) redis::raise(f);
  return s;
}

LeaseStatus RedisQueue::release(const Lease& lease, milliseconds delay, std::string_view error,
                                std::error_code& ec) noexcept {
  Failure f;
  const LeaseStatus s = release_impl(*impl_, lease, delay, error, true, f);
  ec = f.ec;
  return s;
}

LeaseStatus RedisQueue::give_back(const Lease& lease) {
  Failure f;
  const LeaseStatus s = release_impl(*impl_, lease, milliseconds{0}, {}, false, f);
  if (f) redis::raise(f);
  return s;
}

LeaseStatus RedisQueue::give_back(const Lease& lease, std::error_code& ec) noexcept {
  Failure f;
  const LeaseStatus s = release_impl(*impl_, lease, milliseconds{0}, {}, false, f);
  ec = f.ec;
  return s;
}

LeaseStatus RedisQueue::extend(Lease& lease, milliseconds lease_time) {
  Failure f;
  const LeaseStatus s = extend_impl(*impl_, lease, lease_time, f);
  if (f) redis::raise(f);
  return s;
}

LeaseStatus RedisQueue::extend(Job& job, milliseconds lease_time) {
  const auto sent = Steady::now();
  const LeaseStatus s = extend(job.lease, lease_time);
  if (s == LeaseStatus::ok) job.deadline = sent + lease_time;
  return s;
}

LeaseStatus RedisQueue::extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept {
  Failure f;
  const LeaseStatus s = extend_impl(*impl_, lease, lease_time, f);
  ec = f.ec;
  return s;
}

std::size_t RedisQueue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results) {
  Failure f;
  const std::size_t n = ack_many_impl(*impl_, leases, results, f);
  if (f) redis::raise(f);
  return n;
}

std::size_t RedisQueue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results,
                                 std::error_code& ec) noexcept {
  Failure f;
  const std::size_t n = ack_many_impl(*impl_, leases, results, f);
  ec = f.ec;
  return n;
}

}  // namespace jobring
