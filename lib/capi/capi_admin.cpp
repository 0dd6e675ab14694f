// jobring — the C API's operator calls: stats, peek, requeue, remove_dead,
// requeue_dead, move_dead, pause / resume, purge.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "capi/capi_internal.hpp"

namespace jobring::capi {
namespace {

// The C enums mirror the C++ ones value for value.
static_assert(JOBRING_STATE_READY == static_cast<int>(JobState::ready));
static_assert(JOBRING_STATE_DELAYED == static_cast<int>(JobState::delayed));
static_assert(JOBRING_STATE_LEASED == static_cast<int>(JobState::leased));
static_assert(JOBRING_STATE_DEAD == static_cast<int>(JobState::dead));
static_assert(JOBRING_PURGE_READY == static_cast<unsigned>(PurgeWhat::ready));
static_assert(JOBRING_PURGE_DELAYED == static_cast<unsigned>(PurgeWhat::delayed));
static_assert(JOBRING_PURGE_DEAD == static_cast<unsigned>(PurgeWhat::dead));
static_assert(JOBRING_PURGE_ALL == static_cast<unsigned>(PurgeWhat::all));
// Every Stats field is a uint64_t that jobring_stats has, in the same order:
// a field added to Stats without its C twin changes Stats' size.
static_assert(sizeof(Stats) == sizeof(jobring_stats) - offsetof(jobring_stats, free),
              "jobring::Stats gained a field: append it to jobring_stats (jobring.h) and to fill_stats");

void fill_stats(const Stats& s, jobring_stats& out) noexcept {
#define JOBRING_GIVE(field) \
  if (JOBRING_CAPI_COVERS(&out, jobring_stats, field)) out.field = s.field
  JOBRING_GIVE(free);
  JOBRING_GIVE(writing);
  JOBRING_GIVE(ready);
  JOBRING_GIVE(delayed);
  JOBRING_GIVE(leased);
  JOBRING_GIVE(expired);
  JOBRING_GIVE(dead);
  JOBRING_GIVE(corrupt);
  JOBRING_GIVE(oldest_lease_ms);
  JOBRING_GIVE(oldest_ready_ms);
  JOBRING_GIVE(keys_live);
  JOBRING_GIVE(keys_remembered);
  JOBRING_GIVE(keys_capacity);
  JOBRING_GIVE(pushed);
  JOBRING_GIVE(claimed);
  JOBRING_GIVE(acked);
  JOBRING_GIVE(released);
  JOBRING_GIVE(expired_total);
  JOBRING_GIVE(dead_lettered);
  JOBRING_GIVE(requeued);
  JOBRING_GIVE(purged);
  JOBRING_GIVE(recovered_writes);
  JOBRING_GIVE(reclaimed);
  JOBRING_GIVE(duplicates);
  JOBRING_GIVE(keys_evicted);
  JOBRING_GIVE(keys_full);
  JOBRING_GIVE(moved_out);
  JOBRING_GIVE(moved_in);
  JOBRING_GIVE(paused);
  JOBRING_GIVE(recoveries);
  JOBRING_GIVE(recovered_leases);
  JOBRING_GIVE(recovered_boot_writes);
  JOBRING_GIVE(sync_errors);
#undef JOBRING_GIVE
}

// Writes the fields of one jobring_job_info that `size` bytes hold (a
// caller's older, shorter struct), its payload into payloads[*used ..).
void fill_info(const JobInfo& j, void* at, std::size_t size, std::byte* payloads, std::size_t payloads_size,
               std::size_t& used) noexcept {
  jobring_job_info c{};
  c.id = j.id;
  c.state = static_cast<std::int32_t>(j.state);
  c.slot = j.slot;
  c.attempts = j.attempts;
  c.owner_pid = j.owner_pid;
  c.ms_until = j.ms_until;
  c.enqueued_ms_ago = j.enqueued_ms_ago;
  c.failed_ms_ago = j.failed_ms_ago ? static_cast<std::int64_t>(*j.failed_ms_ago) : -1;
  const std::size_t n = std::min(j.error.size(), std::size_t{JOBRING_MAX_ERROR_LENGTH});
  std::memcpy(c.error, j.error.data(), n);
  c.error[n] = '\0';
  c.error_len = static_cast<std::uint32_t>(n);
  c.payload_len = j.payload.size();
  const std::size_t copy = std::min(j.payload.size(), payloads_size - used);
  if (copy > 0) std::memcpy(payloads + used, j.payload.data(), copy);
  c.payload_offset = used;
  c.payload_copied = copy;
  used += copy;
  std::memcpy(at, &c, std::min(size, sizeof c));
}

}  // namespace
}  // namespace jobring::capi

using namespace jobring;
using capi::done;
using capi::fail;

extern "C" {

int jobring_get_stats(const jobring_queue* q, jobring_stats* out) {
  if (q == nullptr || out == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_get_stats: NULL");
  if (out->size < sizeof(std::size_t))
    return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_get_stats: set out->size = sizeof(jobring_stats) first");
  return capi::guarded([&] {
    capi::fill_stats(q->queue.stats(), *out);
    return done(JOBRING_OK);
  });
}

int jobring_peek(const jobring_queue* q, int state, jobring_job_info* infos, size_t info_size,
                 size_t capacity, void* payloads, size_t payloads_size, size_t* count) {
  if (count != nullptr) *count = 0;
  if (q == nullptr || count == nullptr || (infos == nullptr && capacity > 0) ||
      (payloads == nullptr && payloads_size > 0))
    return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_peek: NULL queue, count, infos or payloads");
  if (state < JOBRING_STATE_READY || state > JOBRING_STATE_DEAD ||
      (capacity > 0 && info_size < sizeof(uint64_t)))
    return fail(JOBRING_E_INVALID_ARGUMENT,
                "jobring_peek: state not a JOBRING_STATE_*, or info_size too small");
  if (capacity == 0) return done(JOBRING_OK);
  std::error_code ec;
  const std::vector<JobInfo> jobs = q->queue.peek(static_cast<JobState>(state), capacity, ec);
  if (ec) return fail(ec, q->queue.name(), "");
  std::size_t used = 0;
  auto* const bytes = static_cast<std::byte*>(payloads);
  for (std::size_t i = 0; i < jobs.size() && i < capacity; ++i)
    capi::fill_info(jobs[i], reinterpret_cast<char*>(infos) + i * info_size, info_size, bytes, payloads_size,
                    used);
  *count = std::min(jobs.size(), capacity);
  return done(JOBRING_OK);
}

int jobring_requeue(jobring_queue* q, uint64_t dead_job) {
  if (q == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_requeue: NULL queue");
  return capi::guarded([&] { return done(q->queue.requeue(dead_job) ? JOBRING_OK : JOBRING_NO_SUCH_JOB); });
}

int jobring_remove_dead(jobring_queue* q, uint64_t dead_job) {
  if (q == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_remove_dead: NULL queue");
  return capi::guarded(
      [&] { return done(q->queue.remove_dead(dead_job) ? JOBRING_OK : JOBRING_NO_SUCH_JOB); });
}

int jobring_requeue_dead(jobring_queue* q, uint64_t* count) {
  if (q == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_requeue_dead: NULL queue");
  return capi::guarded([&] {
    const std::size_t n = q->queue.requeue_dead();
    if (count != nullptr) *count = n;
    return done(JOBRING_OK);
  });
}

int jobring_move_dead(jobring_queue* q, jobring_queue* to, int as_ready, uint64_t limit, uint64_t* moved,
                      uint64_t* too_large, uint64_t* left) {
  if (moved != nullptr) *moved = 0;
  if (too_large != nullptr) *too_large = 0;
  if (left != nullptr) *left = 0;
  if (q == nullptr || to == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_move_dead: NULL queue");
  if ((q->queue.shm() == nullptr) != (to->queue.shm() == nullptr))
    return fail(JOBRING_E_NOT_SUPPORTED,
                "jobring_move_dead: both queues must be on one backend (shared memory, or Redis)");
  if (q == to || (q->queue.incarnation() == to->queue.incarnation() && q->queue.name() == to->queue.name()))
    return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_move_dead: to is the queue itself: give another queue");
  MoveOptions o;
  o.as_ready = as_ready != 0;
  if (limit != 0) o.limit = static_cast<std::size_t>(std::min<uint64_t>(limit, SIZE_MAX));
  std::error_code ec;
  const MoveResult r = q->queue.move_dead(to->queue, o, ec);
  if (moved != nullptr) *moved = r.moved;
  if (too_large != nullptr) *too_large = r.too_large;
  if (left != nullptr) *left = r.left;
  if (ec) return fail(ec, q->queue.name(), "jobring_move_dead");
  if (r.interrupted) return done(JOBRING_INTERRUPTED);
  return done(r.target_full ? JOBRING_FULL : JOBRING_OK);
}

}  // extern "C"

namespace {

// jobring_pause / jobring_resume: `flip` on the queue, *changed its answer.
int switch_queue(jobring_queue* q, int* changed, bool (AnyQueue::*flip)(), const char* null_message) {
  if (changed != nullptr) *changed = 0;
  if (q == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, null_message);
  return capi::guarded([&] {
    const bool did = (q->queue.*flip)();
    if (changed != nullptr) *changed = did ? 1 : 0;
    return done(JOBRING_OK);
  });
}

}  // namespace

extern "C" {

int jobring_pause(jobring_queue* q, int* changed) {
  return switch_queue(q, changed, &AnyQueue::pause, "jobring_pause: NULL queue");
}

int jobring_resume(jobring_queue* q, int* changed) {
  return switch_queue(q, changed, &AnyQueue::resume, "jobring_resume: NULL queue");
}

int jobring_is_paused(const jobring_queue* q) {
  if (q == nullptr) return -1;
  try {
    return q->queue.paused() ? 1 : 0;
  } catch (...) {
    (void)capi::fail_current_exception();
    return -1;
  }
}

int jobring_purge(jobring_queue* q, unsigned what, uint64_t* count) {
  if (count != nullptr) *count = 0;
  if (q == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_purge: NULL queue");
  if ((what & ~static_cast<unsigned>(JOBRING_PURGE_ALL)) != 0)
    return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_purge: what has bits other than JOBRING_PURGE_*");
  return capi::guarded([&] {
    const std::size_t n = q->queue.purge(static_cast<PurgeWhat>(what));
    if (count != nullptr) *count = n;
    return done(JOBRING_OK);
  });
}

}  // extern "C"
