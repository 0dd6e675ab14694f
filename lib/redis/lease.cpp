// RedisQueue: what a lease holder does (ack, release, give_back, extend,
// ack_many).
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
