// jobring::AnyQueue: a switch per call between Queue and RedisQueue
// (include/jobring/any_queue.hpp). No state of its own beyond the handle:
// everything crash-related is the backend's. This file holds the calls on an
// open queue; making, opening and owning one is any_queue_open.cpp's.
//
// Built with or without the Redis backend (JOBRING_WITH_REDIS): without it
// no call reaches a RedisQueue (none can be made), so only the
// shared-memory branches are compiled.
#include "jobring/any_queue.hpp"

#include <array>
#include <cstdlib>
#include <string>
#include <utility>

#include "any/schemes.hpp"

namespace jobring {

namespace {

// Calls f with the backend's handle. Without the Redis backend only the
// shared-memory branch is compiled (no RedisQueue member is referenced).
// Every AnyQueue made by the factories, ref() or a constructor has one
// handle; only a moved-from one has none (a use of it is a bug: abort, not
// a null dereference).
template <class F>
decltype(auto) on(Queue* shm, [[maybe_unused]] RedisQueue* redis, F&& f) {
#if JOBRING_WITH_REDIS
  if (redis != nullptr) return std::forward<F>(f)(*redis);
#endif
  if (shm == nullptr) std::abort();
  return std::forward<F>(f)(*shm);
}

}  // namespace

// --- What it is.

Backend AnyQueue::backend() const noexcept { return redis_ != nullptr ? Backend::redis : Backend::shm; }
Queue* AnyQueue::shm() const noexcept { return shm_; }
RedisQueue* AnyQueue::redis() const noexcept { return redis_; }
std::string AnyQueue::url() const {
  return on(shm_, redis_, [](auto& q) {
    if constexpr (std::is_same_v<std::decay_t<decltype(q)>, Queue>)
      return std::string(detail::kShm);
    else
      return q.url();
  });
}
const std::string& AnyQueue::name() const noexcept {
  return on(shm_, redis_, [](auto& q) -> const std::string& { return q.name(); });
}
const Options& AnyQueue::options() const noexcept {
  return on(shm_, redis_, [](auto& q) -> const Options& { return q.options(); });
}
std::uint64_t AnyQueue::incarnation() const noexcept {
  return on(shm_, redis_, [](auto& q) { return q.incarnation(); });
}

// --- Producer.

PushResult AnyQueue::push(std::span<const std::byte> payload, const PushOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.push(payload, options); });
}
PushResult AnyQueue::push(std::string_view payload, const PushOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.push(payload, options); });
}
PushResult AnyQueue::push(std::span<const std::byte> payload, const PushOptions& options,
                          std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.push(payload, options, ec); });
}
std::size_t AnyQueue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                const PushOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.push_many(payloads, ids, options); });
}
std::size_t AnyQueue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                const PushOptions& options, std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.push_many(payloads, ids, options, ec); });
}

// --- Worker.

ClaimStatus AnyQueue::try_claim(Job& job, const ClaimOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.try_claim(job, options); });
}
std::optional<Job> AnyQueue::try_claim(const ClaimOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.try_claim(options); });
}
ClaimStatus AnyQueue::claim(Job& job, milliseconds wait, const ClaimOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.claim(job, wait, options); });
}
std::size_t AnyQueue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.try_claim_many(jobs, options); });
}
std::size_t AnyQueue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options) {
  return on(shm_, redis_, [&](auto& q) { return q.claim_many(jobs, wait, options); });
}
ClaimStatus AnyQueue::try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.try_claim(job, options, ec); });
}
ClaimStatus AnyQueue::claim(Job& job, milliseconds wait, const ClaimOptions& options,
                            std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.claim(job, wait, options, ec); });
}
std::size_t AnyQueue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options,
                                     std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.try_claim_many(jobs, options, ec); });
}
std::size_t AnyQueue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                                 std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.claim_many(jobs, wait, options, ec); });
}

namespace {

// The queues' backend if they all share one; throws invalid_argument otherwise.
Backend common_backend(std::span<AnyQueue* const> queues) {
  if (queues.empty() || queues.size() > Queue::kMaxClaimAny)
    throw error(make_error_code(errc::invalid_argument),
                "jobring: claim_any takes 1 to " + std::to_string(Queue::kMaxClaimAny) + " queues");
  for (const AnyQueue* q : queues)
    if (q == nullptr)
      throw error(make_error_code(errc::invalid_argument), "jobring: claim_any: a null queue");
  const Backend b = queues.front()->backend();
  for (const AnyQueue* q : queues)
    if (q->backend() != b)
      throw error(
          make_error_code(errc::invalid_argument),
          "jobring: claim_any: every queue must be on one backend (queue '" + q->name() + "' is not)");
  return b;
}

// Shared memory: Queue::claim_any over the queues' handles, gathered on the
// stack (no allocation: the C API's claims allocate nothing).
Queue::ClaimAnyResult shm_claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                    const ClaimOptions& options) {
  std::array<Queue*, Queue::kMaxClaimAny> shm{};
  for (std::size_t i = 0; i < queues.size(); ++i) shm[i] = queues[i]->shm();
  return Queue::claim_any({shm.data(), queues.size()}, job, wait, options);
}

#if JOBRING_WITH_REDIS
// Redis: RedisQueue::claim_any (lib/redis/claim_any.cpp): one BLPOP over
// every queue's wake-up list on one server, else a poll of them in turn.
Queue::ClaimAnyResult redis_claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                      const ClaimOptions& options, std::error_code& ec) noexcept {
  std::array<RedisQueue*, Queue::kMaxClaimAny> redis{};
  for (std::size_t i = 0; i < queues.size(); ++i) redis[i] = queues[i]->redis();
  return RedisQueue::claim_any({redis.data(), queues.size()}, job, wait, options, ec);
}
#endif

}  // namespace

Queue::ClaimAnyResult AnyQueue::claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                          const ClaimOptions& options) {
  if (common_backend(queues) == Backend::shm) return shm_claim_any(queues, job, wait, options);
#if JOBRING_WITH_REDIS
  std::error_code ec;
  const auto r = redis_claim_any(queues, job, wait, options, ec);
  if (ec) throw error(ec, "jobring: claiming from '" + queues[r.index]->name() + "': " + ec.message());
  return r;
#else
  return {};
#endif
}

Queue::ClaimAnyResult AnyQueue::claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                          const ClaimOptions& options, std::error_code& ec) noexcept {
  ec.clear();
  try {
    if (common_backend(queues) == Backend::shm) return shm_claim_any(queues, job, wait, options);
#if JOBRING_WITH_REDIS
    return redis_claim_any(queues, job, wait, options, ec);
#else
    return {};
#endif
  } catch (const error& e) {
    ec = e.code();
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return {};
}

// --- Leases. Queue's never throw and have no error_code forms: they are
// called as they are, with ec cleared.

namespace {
template <class Q>
constexpr bool is_shm = std::is_same_v<std::decay_t<Q>, Queue>;
}  // namespace

LeaseStatus AnyQueue::ack(const Lease& lease) {
  return on(shm_, redis_, [&](auto& q) { return q.ack(lease); });
}
LeaseStatus AnyQueue::ack(const Lease& lease, std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.ack(lease);
    } else {
      return q.ack(lease, ec);
    }
  });
}
LeaseStatus AnyQueue::release(const Lease& lease, milliseconds delay) {
  return on(shm_, redis_, [&](auto& q) { return q.release(lease, delay); });
}
LeaseStatus AnyQueue::release(const Lease& lease, milliseconds delay, std::string_view error_text) {
  return on(shm_, redis_, [&](auto& q) { return q.release(lease, delay, error_text); });
}
LeaseStatus AnyQueue::release(const Lease& lease, milliseconds delay, std::string_view error_text,
                              std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.release(lease, delay, error_text);
    } else {
      return q.release(lease, delay, error_text, ec);
    }
  });
}
LeaseStatus AnyQueue::give_back(const Lease& lease) {
  return on(shm_, redis_, [&](auto& q) { return q.give_back(lease); });
}
LeaseStatus AnyQueue::give_back(const Lease& lease, std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.give_back(lease);
    } else {
      return q.give_back(lease, ec);
    }
  });
}
LeaseStatus AnyQueue::extend(Lease& lease, milliseconds lease_time) {
  return on(shm_, redis_, [&](auto& q) { return q.extend(lease, lease_time); });
}
LeaseStatus AnyQueue::extend(Job& job, milliseconds lease_time) {
  return on(shm_, redis_, [&](auto& q) { return q.extend(job, lease_time); });
}
LeaseStatus AnyQueue::extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.extend(lease, lease_time, ec); });
}
std::size_t AnyQueue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results) {
  return on(shm_, redis_, [&](auto& q) { return q.ack_many(leases, results); });
}
std::size_t AnyQueue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results,
                               std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.ack_many(leases, results);
    } else {
      return q.ack_many(leases, results, ec);
    }
  });
}

// --- Operators.

Stats AnyQueue::stats() const {
  return on(shm_, redis_, [&](auto& q) { return q.stats(); });
}
Stats AnyQueue::stats(std::error_code& ec) const noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.stats();
    } else {
      return q.stats(ec);
    }
  });
}
std::vector<JobInfo> AnyQueue::peek(JobState state, std::size_t limit) const {
  return on(shm_, redis_, [&](auto& q) { return q.peek(state, limit); });
}
std::vector<JobInfo> AnyQueue::peek(JobState state, std::size_t limit, std::error_code& ec) const noexcept {
  return on(shm_, redis_, [&](auto& q) { return q.peek(state, limit, ec); });
}
bool AnyQueue::requeue(JobId dead_job) {
  return on(shm_, redis_, [&](auto& q) { return q.requeue(dead_job); });
}
std::size_t AnyQueue::requeue_dead() {
  return on(shm_, redis_, [&](auto& q) { return q.requeue_dead(); });
}
bool AnyQueue::remove_dead(JobId dead_job) {
  return on(shm_, redis_, [&](auto& q) { return q.remove_dead(dead_job); });
}
std::size_t AnyQueue::purge(PurgeWhat what) {
  return on(shm_, redis_, [&](auto& q) { return q.purge(what); });
}
MoveResult AnyQueue::move_dead(AnyQueue& to, const MoveOptions& options) {
  if (shm_ != nullptr && to.shm_ != nullptr) return shm_->move_dead(*to.shm_, options);
#if JOBRING_WITH_REDIS
  if (redis_ != nullptr && to.redis_ != nullptr) return redis_->move_dead(*to.redis_, options);
#endif
  throw error(make_error_code(errc::not_supported),
              "jobring queue '" + name() + "': move_dead to '" + to.name() + "' (" + to.url() +
                  "): both queues must be on one backend; move between backends by peek, push and purge");
}
MoveResult AnyQueue::move_dead(AnyQueue& to, const MoveOptions& options, std::error_code& ec) noexcept {
  if (shm_ != nullptr && to.shm_ != nullptr) return shm_->move_dead(*to.shm_, options, ec);
#if JOBRING_WITH_REDIS
  if (redis_ != nullptr && to.redis_ != nullptr) return redis_->move_dead(*to.redis_, options, ec);
#endif
  ec = make_error_code(errc::not_supported);
  return {};
}
bool AnyQueue::pause() {
  return on(shm_, redis_, [&](auto& q) { return q.pause(); });
}
bool AnyQueue::resume() {
  return on(shm_, redis_, [&](auto& q) { return q.resume(); });
}
bool AnyQueue::paused() const {
  return on(shm_, redis_, [&](auto& q) { return q.paused(); });
}
SweepResult AnyQueue::sweep() {
  return on(shm_, redis_, [&](auto& q) { return q.sweep(); });
}
SweepResult AnyQueue::sweep(std::error_code& ec) noexcept {
  return on(shm_, redis_, [&](auto& q) {
    if constexpr (is_shm<decltype(q)>) {
      ec.clear();
      return q.sweep();
    } else {
      return q.sweep(ec);
    }
  });
}

}  // namespace jobring
