// RedisQueue: the worker's claims (try_claim, claim, and their batches).
#include <algorithm>
#include <string>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/job_access.hpp"
#include "redis/queue_impl.hpp"

namespace jobring {

using redis::Failure;
using redis::Reply;
using namespace redis::helpers;

// (queue_impl.hpp) One jr_claim: takes expired leases back, then leases up
// to n due jobs in one step (each: out of pending, attempts + 1, a new
// fence, into leased).
redis::ClaimReply detail::redis::claim_once(RedisQueue::Impl& impl, std::span<Job> jobs, std::string_view n,
                                            std::string_view lease, std::string_view owner, bool waits,
                                            Failure& failure) {
  const auto sent = Steady::now();
  Reply r = impl.call("jr_claim", {n, lease, owner, waits ? "1" : "0"}, Retry::safe, failure);
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
    return {k, milliseconds{-1}};
  }
  if (s == "not_found") {
    failure = impl.not_found();
    return {};
  }
  if (s != "empty") {
    failure = redis::unexpected(impl, "jr_claim");
    return {};
  }
  return {0, milliseconds{redis::integer(r.get(), 1)}};
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
    // Counted as a sleeper if empty, when it will wait.
    const redis::ClaimReply c =
        redis::claim_once(impl, jobs, n, lease, owner, Steady::now() < deadline, failure);
    if (failure) return {};
    if (c.claimed > 0) return {c.claimed, false};
    bool interrupted = false;
    if (!redis::wait_more(impl, impl.wake, deadline, c.due, o.stop, interrupted, failure))
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

}  // namespace jobring
