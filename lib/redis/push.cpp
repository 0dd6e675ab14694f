// RedisQueue: the producer's calls (push, push_many).
#include <algorithm>
#include <string>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/queue_impl.hpp"

namespace jobring {

using redis::Failure;
using redis::Reply;
using redis::Retry;
using namespace redis::helpers;

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
  // move_dead's keys (move.cpp, "#moved/<incarnation>/<id>.<time of death>")
  // are what lets a mover cut short finish without doubling a job: a
  // producer's push must not take one, as on shared memory (ring/push.cpp).
  if (o.key.starts_with("#moved/")) [[unlikely]]
    return invalid("push: keys starting with \"#moved/\" are move_dead's (queue '" + impl.name +
                   "'): choose another key");
  return {};
}

Failure too_large(const RedisQueue::Impl& impl, std::size_t size) {
  return redis::fail(errc::payload_too_large,
                     "queue '" + impl.name + "': a payload of " + std::to_string(size) +
                         " bytes, max_payload is " + std::to_string(impl.options.max_payload) +
                         ": split the job, or create the queue again with a larger max_payload");
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
    if (!redis::wait_more(impl, impl.room, deadline, milliseconds{-1}, o.stop, interrupted, failure))
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
    if (!redis::wait_more(impl, impl.room, deadline, milliseconds{-1}, o.stop, interrupted, failure))
      return done;
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

}  // namespace jobring
