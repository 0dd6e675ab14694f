// jobring::AnyQueue: a switch per call between Queue and RedisQueue
// (include/jobring/any_queue.hpp). No state of its own beyond the handle:
// everything crash-related is the backend's.
//
// Built with or without the Redis backend (JOBRING_WITH_REDIS): without it
// no call reaches a RedisQueue (none can be made: its factories are not in
// the library), the redis URLs answer not_supported, and the few RedisQueue
// members an AnyQueue names (its destructor and move) are defined here as
// those of an empty handle.
#include "jobring/any_queue.hpp"

#include <array>
#include <cstdlib>
#include <string>
#include <utility>

namespace jobring {

#if !JOBRING_WITH_REDIS
struct RedisQueue::Impl {};
RedisQueue::RedisQueue(RedisQueue&&) noexcept = default;
RedisQueue::~RedisQueue() = default;
#endif

namespace {

constexpr std::string_view kShm = "shm:";
constexpr std::string_view kRedisSchemes[] = {"redis://", "redis+unix://", "redis+cluster://"};

const std::string& unknown_scheme_text() {
  static const std::string text =
      "use shm: (this host's shared memory, the default), redis://HOST:PORT, "
      "redis+unix:///PATH/redis.sock or redis+cluster://HOST:PORT,HOST:PORT";
  return text;
}

// The backend of `url`, or throws error(invalid_argument / not_supported).
Backend backend_or_throw(std::string_view url) {
  std::error_code ec;
  const auto b = backend_of(url, ec);
  if (!b) throw error(ec, "jobring: unknown queue URL '" + std::string(url) + "': " + unknown_scheme_text());
#if !JOBRING_WITH_REDIS
  if (*b == Backend::redis)
    throw error(make_error_code(errc::not_supported),
                "jobring: '" + std::string(url) +
                    "': this jobring was built without the Redis backend (JOBRING_WITH_REDIS=OFF); "
                    "rebuild it with libhiredis-dev installed");
#endif
  return *b;
}

// The backend of `url` for the non-throwing forms: nullopt with `ec` set.
std::optional<Backend> backend_or_code(std::string_view url, std::error_code& ec) noexcept {
  const auto b = backend_of(url, ec);
#if !JOBRING_WITH_REDIS
  if (b == Backend::redis) {
    ec = make_error_code(errc::not_supported);
    return std::nullopt;
  }
#endif
  return b;
}

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

std::string url_from_env() {
  const char* url = std::getenv("JOBRING_URL");
  return url != nullptr && *url != '\0' ? std::string(url) : std::string(kShm);
}

std::optional<Backend> backend_of(std::string_view url, std::error_code& ec) noexcept {
  ec.clear();
  if (url.empty() || url == kShm) return Backend::shm;
  for (const std::string_view scheme : kRedisSchemes)
    if (url.starts_with(scheme)) return Backend::redis;
  ec = make_error_code(errc::invalid_argument);
  return std::nullopt;
}

// --- Lifecycle.

AnyQueue::AnyQueue(Queue&& queue) : owned_shm_(std::make_unique<Queue>(std::move(queue))) {
  shm_ = owned_shm_.get();
}

#if JOBRING_WITH_REDIS
AnyQueue::AnyQueue(RedisQueue&& queue) : owned_redis_(std::make_unique<RedisQueue>(std::move(queue))) {
  redis_ = owned_redis_.get();
}
#else
AnyQueue::AnyQueue(RedisQueue&&) {
  throw error(make_error_code(errc::not_supported), "jobring: built without the Redis backend");
}
#endif

AnyQueue AnyQueue::ref(Queue& queue) noexcept {
  AnyQueue q;
  q.shm_ = &queue;
  return q;
}

AnyQueue AnyQueue::ref(RedisQueue& queue) noexcept {
  AnyQueue q;
  q.redis_ = &queue;
  return q;
}

// The moved-from AnyQueue keeps no pointer to the handle it gave away.
AnyQueue::AnyQueue(AnyQueue&& other) noexcept
    : shm_(std::exchange(other.shm_, nullptr)),
      redis_(std::exchange(other.redis_, nullptr)),
      owned_shm_(std::move(other.owned_shm_)),
      owned_redis_(std::move(other.owned_redis_)) {}
AnyQueue& AnyQueue::operator=(AnyQueue&& other) noexcept {
  if (this != &other) {
    shm_ = std::exchange(other.shm_, nullptr);
    redis_ = std::exchange(other.redis_, nullptr);
    owned_shm_ = std::move(other.owned_shm_);
    owned_redis_ = std::move(other.owned_redis_);
  }
  return *this;
}
AnyQueue::~AnyQueue() = default;

AnyQueue AnyQueue::create(std::string_view url, std::string_view name, const Options& options,
                          const RedisOptions& redis) {
  if (backend_or_throw(url) == Backend::shm) return AnyQueue(Queue::create(name, options));
#if JOBRING_WITH_REDIS
  return AnyQueue(RedisQueue::create(url, name, options, redis));
#else
  (void)redis;
  return AnyQueue();  // not reached: backend_or_throw threw
#endif
}

AnyQueue AnyQueue::open(std::string_view url, std::string_view name, const RedisOptions& redis) {
  if (backend_or_throw(url) == Backend::shm) return AnyQueue(Queue::open(name));
#if JOBRING_WITH_REDIS
  return AnyQueue(RedisQueue::open(url, name, redis));
#else
  (void)redis;
  return AnyQueue();
#endif
}

AnyQueue AnyQueue::open_or_create(std::string_view url, std::string_view name, const Options& options,
                                  const RedisOptions& redis) {
  if (backend_or_throw(url) == Backend::shm) return AnyQueue(Queue::open_or_create(name, options));
#if JOBRING_WITH_REDIS
  return AnyQueue(RedisQueue::open_or_create(url, name, options, redis));
#else
  (void)redis;
  return AnyQueue();
#endif
}

bool AnyQueue::remove(std::string_view url, std::string_view name, const RedisOptions& redis) {
  if (backend_or_throw(url) == Backend::shm) return Queue::remove(name);
#if JOBRING_WITH_REDIS
  return RedisQueue::remove(url, name, redis);
#else
  (void)redis;
  return false;
#endif
}

std::vector<std::string> AnyQueue::list(std::string_view url, const RedisOptions& redis) {
  if (backend_or_throw(url) == Backend::shm) return Queue::list();
#if JOBRING_WITH_REDIS
  return RedisQueue::list(url, redis);
#else
  (void)redis;
  return {};
#endif
}

namespace {

// The non-throwing factories: `shm_call` / `redis_call` return an
// optional handle and set `ec`.
template <class ShmCall, class RedisCall>
std::optional<AnyQueue> make(std::string_view url, std::error_code& ec, ShmCall shm_call,
                             [[maybe_unused]] RedisCall redis_call) noexcept {
  const auto b = backend_or_code(url, ec);
  if (!b) return std::nullopt;
  try {
    if (*b == Backend::shm) {
      auto q = shm_call();
      if (!q) return std::nullopt;
      return AnyQueue(std::move(*q));
    }
#if JOBRING_WITH_REDIS
    auto q = redis_call();
    if (!q) return std::nullopt;
    return AnyQueue(std::move(*q));
#else
    return std::nullopt;
#endif
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return std::nullopt;
  }
}

}  // namespace

std::optional<AnyQueue> AnyQueue::create(std::string_view url, std::string_view name, const Options& options,
                                         std::error_code& ec, const RedisOptions& redis) noexcept {
  return make(
      url, ec, [&] { return Queue::create(name, options, ec); },
      [&] {
#if JOBRING_WITH_REDIS
        return RedisQueue::create(url, name, options, ec, redis);
#else
        (void)redis;
        return std::optional<Queue>();
#endif
      });
}

std::optional<AnyQueue> AnyQueue::open(std::string_view url, std::string_view name, std::error_code& ec,
                                       const RedisOptions& redis) noexcept {
  return make(
      url, ec, [&] { return Queue::open(name, ec); },
      [&] {
#if JOBRING_WITH_REDIS
        return RedisQueue::open(url, name, ec, redis);
#else
        (void)redis;
        return std::optional<Queue>();
#endif
      });
}

std::optional<AnyQueue> AnyQueue::open_or_create(std::string_view url, std::string_view name,
                                                 const Options& options, std::error_code& ec,
                                                 const RedisOptions& redis) noexcept {
  return make(
      url, ec, [&] { return Queue::open_or_create(name, options, ec); },
      [&] {
#if JOBRING_WITH_REDIS
        return RedisQueue::open_or_create(url, name, options, ec, redis);
#else
        (void)redis;
        return std::optional<Queue>();
#endif
      });
}

bool AnyQueue::remove(std::string_view url, std::string_view name, std::error_code& ec,
                      const RedisOptions& redis) noexcept {
  const auto b = backend_or_code(url, ec);
  if (!b) return false;
  if (*b == Backend::shm) return Queue::remove(name, ec);
#if JOBRING_WITH_REDIS
  return RedisQueue::remove(url, name, ec, redis);
#else
  (void)redis;
  return false;
#endif
}

std::vector<std::string> AnyQueue::list(std::string_view url, std::error_code& ec,
                                        const RedisOptions& redis) noexcept {
  const auto b = backend_or_code(url, ec);
  if (!b) return {};
  if (*b == Backend::shm) return Queue::list(ec);
#if JOBRING_WITH_REDIS
  return RedisQueue::list(url, ec, redis);
#else
  (void)redis;
  return {};
#endif
}

// --- What it is.

Backend AnyQueue::backend() const noexcept { return redis_ != nullptr ? Backend::redis : Backend::shm; }
Queue* AnyQueue::shm() const noexcept { return shm_; }
RedisQueue* AnyQueue::redis() const noexcept { return redis_; }
std::string AnyQueue::url() const {
  return on(shm_, redis_, [](auto& q) {
    if constexpr (std::is_same_v<std::decay_t<decltype(q)>, Queue>)
      return std::string(kShm);
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
