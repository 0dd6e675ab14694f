// jobring — one queue handle for every backend, chosen by a URL.
//
// Code that should run on one host today and on several tomorrow names its
// queue by a URL and a name, and never the backend's class:
//
//   const std::string url = jobring::url_from_env();  // $JOBRING_URL, or "shm:"
//   jobring::AnyQueue q = jobring::AnyQueue::open_or_create(url, "orders", {.default_lease = 30s});
//   q.push("{\"order\": 42}");
//   jobring::Worker worker(q, handler);  // the same Worker, hooks, idempotent(), on both
//
// URLs:
//   ""  or  "shm:"                  shared memory on this host (jobring::Queue); the
//                                   name is NAME or DIR/NAME (a file-backed queue)
//   redis://HOST:PORT               a Redis 7 server (jobring::RedisQueue)
//   redis+unix:///PATH/redis.sock   the same over a unix socket
//   redis+cluster://H1:P1,H2:P2     a Redis Cluster (seed nodes)
// Anything else is errc::invalid_argument, naming the schemes. A library
// built without the Redis backend (-DJOBRING_WITH_REDIS=OFF) answers
// errc::not_supported for the redis schemes.
//
// Why a facade and not a template (the choice is argued in the README's
// "More than one host"): a worker, a tool or a binding picks its backend at
// run time from configuration, and one compiled program serves both. The
// cost is one switch per call, nothing next to a queue operation (≥ 100 ns
// on shared memory, ≥ 20 µs on Redis). The backends' own classes stay: a
// program that only ever uses shared memory keeps jobring::Queue and its
// noexcept calls; backend-only features (Queue::move_dead, QueueView,
// RedisOptions::wait_replicas) are reached through shm() / redis().
//
// Errors: the signatures are the stricter backend's (RedisQueue's): the
// plain forms throw jobring::error, the std::error_code& forms never throw.
// On shared memory the calls that cannot fail there simply never do.
//
// An AnyQueue owns its backend's handle (from create/open, or moved in), or
// refers to one the caller owns (AnyQueue::ref), which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "jobring/redis_queue.hpp"

namespace jobring {

enum class Backend { shm, redis };

// $JOBRING_URL if it is set and not empty, else "shm:".
[[nodiscard]] std::string url_from_env();
// The backend a URL names; nullopt (and ec = invalid_argument) for an unknown
// scheme. Does not connect.
[[nodiscard]] std::optional<Backend> backend_of(std::string_view url, std::error_code& ec) noexcept;

class AnyQueue {
 public:
  // --- Lifecycle: as Queue's and RedisQueue's, on the backend `url` names.
  [[nodiscard]] static AnyQueue create(std::string_view url, std::string_view name,
                                       const Options& options = {}, const RedisOptions& redis = {});
  [[nodiscard]] static AnyQueue open(std::string_view url, std::string_view name,
                                     const RedisOptions& redis = {});
  [[nodiscard]] static AnyQueue open_or_create(std::string_view url, std::string_view name,
                                               const Options& options = {}, const RedisOptions& redis = {});
  static bool remove(std::string_view url, std::string_view name, const RedisOptions& redis = {});
  [[nodiscard]] static std::vector<std::string> list(std::string_view url, const RedisOptions& redis = {});

  [[nodiscard]] static std::optional<AnyQueue> create(std::string_view url, std::string_view name,
                                                      const Options& options, std::error_code& ec,
                                                      const RedisOptions& redis = {}) noexcept;
  [[nodiscard]] static std::optional<AnyQueue> open(std::string_view url, std::string_view name,
                                                    std::error_code& ec,
                                                    const RedisOptions& redis = {}) noexcept;
  [[nodiscard]] static std::optional<AnyQueue> open_or_create(std::string_view url, std::string_view name,
                                                              const Options& options, std::error_code& ec,
                                                              const RedisOptions& redis = {}) noexcept;
  static bool remove(std::string_view url, std::string_view name, std::error_code& ec,
                     const RedisOptions& redis = {}) noexcept;
  [[nodiscard]] static std::vector<std::string> list(std::string_view url, std::error_code& ec,
                                                     const RedisOptions& redis = {}) noexcept;

  // Owning: takes the handle over.
  explicit AnyQueue(Queue&& queue);
  explicit AnyQueue(RedisQueue&& queue);
  // Referring: `queue` must outlive the AnyQueue (and its copies' uses).
  [[nodiscard]] static AnyQueue ref(Queue& queue) noexcept;
  [[nodiscard]] static AnyQueue ref(RedisQueue& queue) noexcept;

  AnyQueue(AnyQueue&&) noexcept;
  AnyQueue& operator=(AnyQueue&&) noexcept;
  ~AnyQueue();

  [[nodiscard]] Backend backend() const noexcept;
  // The backend's own handle, or nullptr if the queue is on the other one.
  [[nodiscard]] Queue* shm() const noexcept;
  [[nodiscard]] RedisQueue* redis() const noexcept;
  // "shm:" or the Redis URL the queue was opened with.
  [[nodiscard]] std::string url() const;

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] const Options& options() const noexcept;
  [[nodiscard]] std::uint64_t incarnation() const noexcept;

  // --- Producer.
  PushResult push(std::span<const std::byte> payload, const PushOptions& options = {});
  PushResult push(std::string_view payload, const PushOptions& options = {});
  PushResult push(std::span<const std::byte> payload, const PushOptions& options,
                  std::error_code& ec) noexcept;
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids = {},
                        const PushOptions& options = {});
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                        const PushOptions& options, std::error_code& ec) noexcept;

  // --- Worker.
  ClaimStatus try_claim(Job& job, const ClaimOptions& options = {});
  [[nodiscard]] std::optional<Job> try_claim(const ClaimOptions& options = {});
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options = {});
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options = {});
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options = {});
  ClaimStatus try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept;
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                         std::error_code& ec) noexcept;

  // One job from the first of `queues` (all on one backend; tried in the
  // order given) that has one, as Queue::claim_any. On Redis a wait sleeps
  // on every queue's wake-up list at once where the server allows it (one
  // server; a Cluster only for queues on one node), else polls them in turn.
  static Queue::ClaimAnyResult claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                         const ClaimOptions& options = {});
  static Queue::ClaimAnyResult claim_any(std::span<AnyQueue* const> queues, Job& job, milliseconds wait,
                                         const ClaimOptions& options, std::error_code& ec) noexcept;

  LeaseStatus ack(const Lease& lease);
  LeaseStatus ack(const Lease& lease, std::error_code& ec) noexcept;
  LeaseStatus release(const Lease& lease, milliseconds delay = milliseconds{0});
  LeaseStatus release(const Lease& lease, milliseconds delay, std::string_view error);
  LeaseStatus release(const Lease& lease, milliseconds delay, std::string_view error,
                      std::error_code& ec) noexcept;
  LeaseStatus give_back(const Lease& lease);
  LeaseStatus give_back(const Lease& lease, std::error_code& ec) noexcept;
  LeaseStatus extend(Lease& lease, milliseconds lease_time);
  LeaseStatus extend(Job& job, milliseconds lease_time);
  LeaseStatus extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept;
  std::size_t ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results = {});
  std::size_t ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results,
                       std::error_code& ec) noexcept;

  // --- Operators.
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] Stats stats(std::error_code& ec) const noexcept;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit = 100) const;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit,
                                          std::error_code& ec) const noexcept;
  bool requeue(JobId dead_job);
  std::size_t requeue_dead();
  bool remove_dead(JobId dead_job);
  std::size_t purge(PurgeWhat what = PurgeWhat::all);
  // This queue's dead jobs into `to` (a dead-letter queue, or a redrive
  // with options.as_ready), as Queue::move_dead and RedisQueue::move_dead:
  // both queues on one backend (shared memory to shared memory, Redis to
  // Redis on any servers); across backends errc::not_supported.
  MoveResult move_dead(AnyQueue& to, const MoveOptions& options = {});
  MoveResult move_dead(AnyQueue& to, const MoveOptions& options, std::error_code& ec) noexcept;
  bool pause();
  bool resume();
  [[nodiscard]] bool paused() const;
  SweepResult sweep();
  SweepResult sweep(std::error_code& ec) noexcept;

 private:
  AnyQueue() noexcept = default;
  Queue* shm_ = nullptr;
  RedisQueue* redis_ = nullptr;
  std::unique_ptr<Queue> owned_shm_;
  std::unique_ptr<RedisQueue> owned_redis_;
};

}  // namespace jobring
