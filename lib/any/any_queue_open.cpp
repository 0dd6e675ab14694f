// jobring::AnyQueue's lifecycle (include/jobring/any_queue.hpp): the URLs
// and their backends, the factories (throwing and error_code forms), remove
// and list, and the ownership of the backend's handle (constructors, ref,
// moves). The calls on an open queue are in any_queue.cpp.
//
// Built with or without the Redis backend (JOBRING_WITH_REDIS): without it
// no RedisQueue can be made (its factories are not in the library), the
// redis URLs answer not_supported, and the few RedisQueue members an
// AnyQueue names (its destructor and move) are defined here as those of an
// empty handle.
#include <cstdlib>
#include <string>
#include <utility>

#include "any/schemes.hpp"
#include "jobring/any_queue.hpp"

namespace jobring {

#if !JOBRING_WITH_REDIS
struct RedisQueue::Impl {};
RedisQueue::RedisQueue(RedisQueue&&) noexcept = default;
RedisQueue::~RedisQueue() = default;
#endif

namespace {

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

}  // namespace

std::string url_from_env() {
  const char* url = std::getenv("JOBRING_URL");
  return url != nullptr && *url != '\0' ? std::string(url) : std::string(detail::kShm);
}

std::optional<Backend> backend_of(std::string_view url, std::error_code& ec) noexcept {
  ec.clear();
  if (url.empty() || url == detail::kShm) return Backend::shm;
  for (const std::string_view scheme : detail::kRedisSchemes)
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

}  // namespace jobring
