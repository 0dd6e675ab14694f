// jobring — what a handler sees of its job and its Worker (JobContext), and
// the retry backoff.

#include "runtime/worker_impl.hpp"

namespace jobring {

using detail::ceil_ms;
using detail::Clock;

milliseconds backoff_delay(const Backoff& backoff, std::uint32_t attempt, std::uint64_t random) noexcept {
  const std::int64_t base = std::max<std::int64_t>(0, backoff.base.count());
  const std::int64_t cap = std::max<std::int64_t>(0, backoff.cap.count());
  const unsigned shift = attempt <= 1 ? 0u : std::min(attempt - 1, 62u);
  // d = min(cap, base × 2^shift), without overflow.
  const std::int64_t d = base == 0 ? 0 : (base > (cap >> shift) ? cap : std::min(cap, base << shift));
  const auto ud = static_cast<std::uint64_t>(d);
  switch (backoff.jitter) {
    case Jitter::none:
      return milliseconds{d};
    case Jitter::full:
      return milliseconds{static_cast<std::int64_t>(random % (ud + 1))};
    case Jitter::equal:
      return milliseconds{static_cast<std::int64_t>(ud / 2 + random % (ud - ud / 2 + 1))};
  }
  return milliseconds{d};
}

JobId JobContext::id() const noexcept { return job_.id; }
std::string_view JobContext::key() const noexcept { return job_.key(); }
std::uint32_t JobContext::attempt() const noexcept { return job_.attempt; }
bool JobContext::last_attempt() const noexcept {
  const std::uint32_t max = worker_.slots[slot_].from->max_attempts;
  return max != 0 && job_.attempt >= max;
}
bool JobContext::stopping() const noexcept { return worker_.stopping(); }
bool JobContext::lease_lost() const noexcept { return worker_.slots[slot_].lost.load(); }
bool JobContext::abandoned() const noexcept { return worker_.slots[slot_].abandoned.load(); }

Queue& JobContext::queue() const {
  AnyQueue& q = *worker_.slots[slot_].from->queue;
  if (Queue* shm = q.shm(); shm != nullptr) return *shm;
  throw error(make_error_code(errc::not_supported), "JobContext::queue(): queue '" + q.name() +
                                                        "' is not on shared memory (" + q.url() +
                                                        "): use JobContext::any_queue()");
}

AnyQueue& JobContext::any_queue() const noexcept { return *worker_.slots[slot_].from->queue; }

Lease JobContext::lease() const {
  std::lock_guard lock(worker_.mu);
  return worker_.slots[slot_].lease;
}

std::chrono::steady_clock::time_point JobContext::deadline() const {
  std::lock_guard lock(worker_.mu);
  return worker_.slots[slot_].deadline;
}

bool JobContext::sleep_for(milliseconds d) const {
  auto& event = worker_.slots[slot_].event;
  const auto until = Clock::now() + std::min<Clock::duration>(d, std::chrono::hours(24 * 365 * 100));
  for (;;) {
    const std::uint32_t expected = detail::prepare_wait(event);
    if (cancelled() || stopping()) return false;
    const auto t = Clock::now();
    if (t >= until) return true;
    detail::sleep_on(event, expected, ceil_ms(until - t));
  }
}

}  // namespace jobring
