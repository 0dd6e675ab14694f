// RedisQueue::claim_any: one job from the first of several queues that has
// one, for a Worker of several queues (AnyQueue::claim_any on Redis).
//
// Each round claims from every queue in the order given (one jr_claim each,
// counted as a sleeper if empty, so that a push to any of them leaves a
// marker on its wake list: queue_impl.hpp, jobring.lua "Wait markers"), then
// sleeps until a marker comes, the earliest due time any queue reported, the
// end of the wait, or one slice (kWaitSlice: to look at the stop flag). On
// one server the sleep is ONE BLPOP naming every queue's wake list — Redis
// returns on the first list that has a marker, so a push to any queue wakes
// the claimer at once. Queues on several servers, or on a Cluster (their wake
// lists are in different hash slots: BLPOP over them is a CROSSSLOT error),
// are looked at in turn every kPollSlice instead.
//
// Crash safety: as claim's. A claimer that dies between the rounds leaves
// nothing but raised sleeper counts (one spurious wake-up each, later); one
// that dies after a jr_claim took a job holds a lease it never learned of:
// the job comes back at its deadline with the attempt counted.
#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/queue_impl.hpp"

namespace jobring {

using redis::Failure;
using redis::Retry;
using namespace redis::helpers;

namespace {

constexpr milliseconds kPollSlice{100};

Failure check(std::span<RedisQueue* const> queues, milliseconds wait, const ClaimOptions& o) {
  if (queues.empty() || queues.size() > Queue::kMaxClaimAny)
    return invalid("claim_any takes 1 to " + std::to_string(Queue::kMaxClaimAny) + " queues, not " +
                   std::to_string(queues.size()));
  for (const RedisQueue* q : queues)
    if (q == nullptr) return invalid("claim_any: a null queue");
  if (o.lease.count() != 0 && !in_range(o.lease, milliseconds{1}, kMaxLease))
    return invalid("claim_any: lease " + std::to_string(o.lease.count()) + " ms out of range 1.." +
                   std::to_string(kMaxLease.count()) + " ms (0 = each queue's default)");
  if (!in_range(wait, milliseconds{0}, kMaxLease))
    return invalid("claim_any: wait " + std::to_string(wait.count()) + " ms out of range");
  return {};
}

using Impl = RedisQueue::Impl;

Queue::ClaimAnyResult claim_any_impl(std::span<Impl* const> queues, Job& job, milliseconds wait,
                                     const ClaimOptions& o, Failure& failure) {
  const std::string lease = std::to_string(o.lease.count());
  const std::string& url = queues[0]->url;
  const bool one_server = std::all_of(queues.begin(), queues.end(),
                                      [&](const Impl* q) { return q->topology == nullptr && q->url == url; });
  const auto deadline = Steady::now() + wait;
  std::vector<std::string_view> blpop;  // BLPOP wake_1 .. wake_n seconds (one server)
  std::array<char, 32> seconds{};
  for (;;) {
    const bool waits = Steady::now() < deadline;
    milliseconds due{-1};
    for (std::size_t i = 0; i < queues.size(); ++i) {
      Impl& impl = *queues[i];
      const std::string_view owner = o.owner == Owner::process ? std::string_view(impl.owner) : "";
      const redis::ClaimReply c =
          redis::claim_once(impl, std::span(&job, 1), "1", lease, owner, waits, failure);
      if (failure) return {ClaimStatus::empty, i};
      if (c.claimed > 0) return {ClaimStatus::ok, i};
      if (c.due.count() >= 0) due = due.count() < 0 ? c.due : std::min(due, c.due);
    }
    if (redis::stop_requested(o.stop)) return {ClaimStatus::interrupted, 0};
    const auto now = Steady::now();
    if (now >= deadline) return {ClaimStatus::empty, 0};
    milliseconds sleep = std::min(kWaitSlice, std::chrono::ceil<milliseconds>(deadline - now));
    if (due.count() >= 0) sleep = std::min(sleep, std::max(due, milliseconds{1}));
    bool woke = false;
    if (one_server) {
      std::snprintf(seconds.data(), seconds.size(), "%lld.%03lld",
                    static_cast<long long>(sleep.count() / 1000),
                    static_cast<long long>(sleep.count() % 1000));
      blpop.assign({"BLPOP"});
      for (const Impl* q : queues) blpop.emplace_back(q->wake);
      blpop.emplace_back(seconds.data());
      Impl::Handle connection(*queues[0]);
      // Safe to send twice: a marker popped and lost costs a sleeper at most
      // one wake-up, which its bounded sleep makes good.
      woke = static_cast<bool>(connection->command_on(queues[0]->wake, blpop, Retry::safe, failure, sleep));
    } else {
      woke = queues[0]->wait_marker(queues[0]->wake, std::min(sleep, kPollSlice), failure);
    }
    if (!woke) return {ClaimStatus::empty, 0};
  }
}

}  // namespace

Queue::ClaimAnyResult RedisQueue::claim_any(std::span<RedisQueue* const> queues, Job& job, milliseconds wait,
                                            const ClaimOptions& options, std::error_code& ec) noexcept {
  Failure failure = check(queues, wait, options);
  std::array<Impl*, Queue::kMaxClaimAny> impls{};
  Queue::ClaimAnyResult r;
  if (!failure) {
    for (std::size_t i = 0; i < queues.size(); ++i) impls[i] = queues[i]->impl_.get();
    r = claim_any_impl({impls.data(), queues.size()}, job, wait, options, failure);
  }
  ec = failure.ec;
  return r;
}

Queue::ClaimAnyResult RedisQueue::claim_any(std::span<RedisQueue* const> queues, Job& job, milliseconds wait,
                                            const ClaimOptions& options) {
  Failure failure = check(queues, wait, options);
  if (failure) redis::raise(failure);
  std::array<Impl*, Queue::kMaxClaimAny> impls{};
  for (std::size_t i = 0; i < queues.size(); ++i) impls[i] = queues[i]->impl_.get();
  const Queue::ClaimAnyResult r = claim_any_impl({impls.data(), queues.size()}, job, wait, options, failure);
  if (failure) redis::raise(failure);
  return r;
}

}  // namespace jobring
