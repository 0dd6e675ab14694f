// jobring — the C API's producer and worker calls: push, the job buffer,
// leases, claim, ack / release / give_back / extend.
//
// The hot path (push, claim, ack, release, give_back, extend) allocates
// nothing: it uses the library's noexcept / error_code overloads, a job
// buffer's Job is reused (its payload buffer grows to max_payload on the
// first claim only), and a status is recorded as a pointer to a static text
// (capi_internal.hpp). Only an error builds a message.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include "capi/capi_internal.hpp"

namespace jobring::capi {
namespace {

bool valid_lease_time(std::int64_t ms) noexcept { return ms >= 1 && ms <= kMaxLease.count(); }
bool valid_delay(std::int64_t ms) noexcept { return ms >= 0 && ms <= kMaxLease.count(); }

int lease_status(LeaseStatus s) noexcept {
  return done(s == LeaseStatus::ok ? JOBRING_OK : JOBRING_LEASE_LOST);
}

Lease to_lease(const jobring_lease& l) noexcept {
  return Lease{.slot = l.slot, .token = l.token, .job = l.job};
}

// An error `e` of queue q's, with the detail made by detail() (a std::string).
template <class Detail>
int refuse(errc e, const AnyQueue& q, Detail detail) noexcept {
  return guarded([&] { return fail(make_error_code(e), q.name(), detail()); });
}

// A push's arguments, checked before the library sees them: the library's
// error_code overload says only which error, so the message is made here.
int check_push(const jobring_queue& q, std::size_t len, const jobring_push_options& o) noexcept {
  const Options& qo = q.queue.options();
  if (len > qo.max_payload)
    return refuse(errc::payload_too_large, q.queue, [&] {
      return "payload of " + std::to_string(len) + " bytes, max_payload is " + std::to_string(qo.max_payload);
    });
  if (!valid_delay(o.delay_ms) || !valid_wait(o.wait_ms))
    return refuse(errc::invalid_argument, q.queue, [&] {
      return "delay_ms " + std::to_string(o.delay_ms) + " or wait_ms " + std::to_string(o.wait_ms) +
             " not in 0.." + std::to_string(kMaxLease.count()) + " (wait_ms -1: for ever)";
    });
  if (o.key_len > kMaxKeyLength || (o.key == nullptr && o.key_len != 0))
    return refuse(errc::invalid_argument, q.queue, [&] {
      return "key of " + std::to_string(o.key_len) + " bytes (with a NULL key: 0), the limit is " +
             std::to_string(kMaxKeyLength);
    });
  return JOBRING_OK;
}

// The options as given, their uncovered fields at their defaults (from
// `init`, the struct's jobring_*_options_init).
template <class CStruct>
CStruct options_of(const CStruct* given, int (*init)(CStruct*, std::size_t)) noexcept {
  CStruct o{};
  (void)init(&o, sizeof o);
  if (given == nullptr) return o;
  std::memcpy(&o, given, std::min(given->size, sizeof o));
  o.size = sizeof o;
  return o;
}

int bad(const char* message) noexcept { return fail(JOBRING_E_INVALID_ARGUMENT, message); }

}  // namespace
}  // namespace jobring::capi

using namespace jobring;
using capi::done;
using capi::fail;

extern "C" {

int jobring_push_options_init(jobring_push_options* o, size_t size) {
  if (o == nullptr || size < sizeof(std::size_t))
    return capi::bad("jobring_push_options_init: NULL, or a size smaller than size_t");
  std::memset(o, 0, std::min(size, sizeof *o));
  o->size = size;  // every default is 0 / NULL
  return done(JOBRING_OK);
}

int jobring_push(jobring_queue* q, const void* payload, size_t len, const jobring_push_options* options,
                 uint64_t* id, int* duplicate) {
  if (q == nullptr || (payload == nullptr && len != 0))
    return capi::bad("jobring_push: NULL queue or payload");
  if (options != nullptr && options->size < sizeof(std::size_t))
    return capi::bad("jobring_push: options->size is not set: call jobring_push_options_init(&o, sizeof o)");
  const jobring_push_options o = capi::options_of(options, jobring_push_options_init);
  if (const int bad = capi::check_push(*q, len, o); bad != JOBRING_OK) return bad;
  const PushOptions po{.delay = milliseconds{o.delay_ms},
                       .wait = capi::wait_step(o.wait_ms),
                       .key = std::string_view(o.key, o.key != nullptr ? o.key_len : 0),
                       .stop = o.stop != nullptr ? &o.stop->flag : nullptr};
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(payload), len);
  std::error_code ec;
  PushResult r;
  do {
    r = q->queue.push(bytes, po, ec);
    if (ec) return fail(ec, q->queue.name(), "");
  } while (r.status == PushStatus::full && o.wait_ms == capi::kForeverWait);
  if (id != nullptr) *id = r.status == PushStatus::ok ? r.id : 0;
  if (duplicate != nullptr) *duplicate = r.duplicate ? 1 : 0;
  switch (r.status) {
    case PushStatus::ok:
      return done(JOBRING_OK);
    case PushStatus::full:
      return done(JOBRING_FULL);
    case PushStatus::interrupted:
      return done(JOBRING_INTERRUPTED);
  }
  return done(JOBRING_E_INTERNAL);
}

int jobring_job_new(jobring_job** out) {
  if (out == nullptr) return capi::bad("jobring_job_new: NULL out");
  *out = new (std::nothrow) jobring_job;
  return *out != nullptr ? done(JOBRING_OK) : done(JOBRING_E_NO_MEMORY);
}

void jobring_job_free(jobring_job* job) { delete job; }

uint64_t jobring_job_id(const jobring_job* job) { return job != nullptr ? job->job.id : 0; }

const void* jobring_job_payload(const jobring_job* job, size_t* len) {
  const auto p = job != nullptr ? job->job.payload() : std::span<const std::byte>{};
  if (len != nullptr) *len = p.size();
  return job != nullptr ? p.data() : nullptr;
}

uint32_t jobring_job_attempt(const jobring_job* job) { return job != nullptr ? job->job.attempt : 0; }

const char* jobring_job_key(const jobring_job* job, size_t* len) {
  const std::string_view k = job != nullptr ? job->job.key() : std::string_view{};
  if (len != nullptr) *len = k.size();
  return job != nullptr ? k.data() : nullptr;
}

uint64_t jobring_job_incarnation(const jobring_job* job) { return job != nullptr ? job->job.incarnation : 0; }

int jobring_job_lease(const jobring_job* job, jobring_lease* out) {
  if (job == nullptr || out == nullptr) return capi::bad("jobring_job_lease: NULL");
  const Lease& l = job->job.lease;
  *out = jobring_lease{.job = l.job, .token = l.token, .slot = l.slot, .reserved0 = 0};
  return done(JOBRING_OK);
}

int jobring_lease_format(const jobring_lease* lease, char* buf, size_t buf_size) {
  if (lease == nullptr || buf == nullptr) return capi::bad("jobring_lease_format: NULL");
  // As Lease::to_string, without its std::string.
  const int n = std::snprintf(buf, buf_size, "%llu.%u.%llx", static_cast<unsigned long long>(lease->job),
                              lease->slot, static_cast<unsigned long long>(lease->token));
  if (n < 0 || static_cast<std::size_t>(n) >= buf_size) {
    if (buf_size > 0) buf[0] = '\0';
    return capi::bad("jobring_lease_format: the buffer is too small (JOBRING_LEASE_TEXT_SIZE bytes suffice)");
  }
  return done(JOBRING_OK);
}

int jobring_lease_parse(const char* text, jobring_lease* out) {
  if (text == nullptr || out == nullptr) return capi::bad("jobring_lease_parse: NULL");
  const std::optional<Lease> l = Lease::parse(text);
  if (!l) return capi::bad("jobring_lease_parse: not a lease (job.slot.token: decimal.decimal.hex)");
  *out = jobring_lease{.job = l->job, .token = l->token, .slot = l->slot, .reserved0 = 0};
  return done(JOBRING_OK);
}

int jobring_claim_options_init(jobring_claim_options* o, size_t size) {
  if (o == nullptr || size < sizeof(std::size_t))
    return capi::bad("jobring_claim_options_init: NULL, or a size smaller than size_t");
  std::memset(o, 0, std::min(size, sizeof *o));
  o->size = size;  // every default is 0 / NULL (JOBRING_OWNER_PROCESS)
  return done(JOBRING_OK);
}

int jobring_claim_any(jobring_queue* const* queues, size_t count, jobring_job* job,
                      const jobring_claim_options* options, size_t* index) {
  if (index != nullptr) *index = 0;
  if (queues == nullptr || job == nullptr || count == 0 || count > Queue::kMaxClaimAny)
    return capi::bad("jobring_claim_any: NULL queues or job, or a count not in 1..64");
  if (options != nullptr && options->size < sizeof(std::size_t))
    return capi::bad(
        "jobring_claim_any: options->size is not set: call jobring_claim_options_init(&o, sizeof o)");
  const jobring_claim_options o = capi::options_of(options, jobring_claim_options_init);
  if ((o.lease_ms != 0 && !capi::valid_lease_time(o.lease_ms)) || !capi::valid_wait(o.wait_ms) ||
      (o.owner != JOBRING_OWNER_PROCESS && o.owner != JOBRING_OWNER_DETACHED))
    return capi::bad("jobring_claim_any: lease_ms, wait_ms or owner out of range (see jobring_claim)");
  std::array<AnyQueue*, Queue::kMaxClaimAny> qs{};
  for (std::size_t i = 0; i < count; ++i) {
    if (queues[i] == nullptr) return capi::bad("jobring_claim_any: a NULL queue");
    qs[i] = &queues[i]->queue;
  }
  const ClaimOptions co{.lease = milliseconds{o.lease_ms},
                        .owner = o.owner == JOBRING_OWNER_DETACHED ? Owner::detached : Owner::process,
                        .stop = o.stop != nullptr ? &o.stop->flag : nullptr};
  return capi::guarded([&] {
    Queue::ClaimAnyResult r;
    do {
      r = AnyQueue::claim_any({qs.data(), count}, job->job, capi::wait_step(o.wait_ms), co);
    } while (r.status == ClaimStatus::empty && o.wait_ms == capi::kForeverWait);
    if (r.status == ClaimStatus::ok && index != nullptr) *index = r.index;
    return done(r.status == ClaimStatus::ok      ? JOBRING_OK
                : r.status == ClaimStatus::empty ? JOBRING_EMPTY
                                                 : JOBRING_INTERRUPTED);
  });
}

int jobring_claim(jobring_queue* q, jobring_job* job, const jobring_claim_options* options) {
  if (q == nullptr || job == nullptr) return capi::bad("jobring_claim: NULL queue or job");
  if (options != nullptr && options->size < sizeof(std::size_t))
    return capi::bad(
        "jobring_claim: options->size is not set: call jobring_claim_options_init(&o, sizeof o)");
  const jobring_claim_options o = capi::options_of(options, jobring_claim_options_init);
  if ((o.lease_ms != 0 && !capi::valid_lease_time(o.lease_ms)) || !capi::valid_wait(o.wait_ms) ||
      (o.owner != JOBRING_OWNER_PROCESS && o.owner != JOBRING_OWNER_DETACHED))
    return capi::refuse(errc::invalid_argument, q->queue, [&] {
      return "lease_ms " + std::to_string(o.lease_ms) + " not 0 or in 1.." +
             std::to_string(kMaxLease.count()) + ", wait_ms " + std::to_string(o.wait_ms) +
             " not -1 or in 0.." + std::to_string(kMaxLease.count()) + ", or owner " +
             std::to_string(o.owner) + " not 0 or 1";
    });
  const ClaimOptions co{.lease = milliseconds{o.lease_ms},
                        .owner = o.owner == JOBRING_OWNER_DETACHED ? Owner::detached : Owner::process,
                        .stop = o.stop != nullptr ? &o.stop->flag : nullptr};
  std::error_code ec;
  ClaimStatus s = ClaimStatus::empty;
  do {
    s = q->queue.claim(job->job, capi::wait_step(o.wait_ms), co, ec);
    if (ec) return fail(ec, q->queue.name(), "");
  } while (s == ClaimStatus::empty && o.wait_ms == capi::kForeverWait);
  switch (s) {
    case ClaimStatus::ok:
      return done(JOBRING_OK);
    case ClaimStatus::empty:
      return done(JOBRING_EMPTY);
    case ClaimStatus::interrupted:
      return done(JOBRING_INTERRUPTED);
  }
  return done(JOBRING_E_INTERNAL);
}

int jobring_ack(jobring_queue* q, const jobring_job* job) {
  if (q == nullptr || job == nullptr) return capi::bad("jobring_ack: NULL queue or job");
  return capi::guarded([&] { return capi::lease_status(q->queue.ack(job->job.lease)); });
}

int jobring_ack_lease(jobring_queue* q, const jobring_lease* lease) {
  if (q == nullptr || lease == nullptr) return capi::bad("jobring_ack_lease: NULL queue or lease");
  return capi::guarded([&] { return capi::lease_status(q->queue.ack(capi::to_lease(*lease))); });
}

int jobring_release_lease(jobring_queue* q, const jobring_lease* lease, int64_t delay_ms, const char* error) {
  if (q == nullptr || lease == nullptr) return capi::bad("jobring_release: NULL queue or lease");
  if (!capi::valid_delay(delay_ms))
    return capi::refuse(errc::invalid_argument, q->queue, [&] {
      return "delay_ms " + std::to_string(delay_ms) + " not in 0.." + std::to_string(kMaxLease.count());
    });
  const std::string_view why = error != nullptr ? std::string_view(error) : std::string_view{};
  return capi::guarded([&] {
    return capi::lease_status(q->queue.release(capi::to_lease(*lease), milliseconds{delay_ms}, why));
  });
}

int jobring_release(jobring_queue* q, const jobring_job* job, int64_t delay_ms, const char* error) {
  if (job == nullptr) return capi::bad("jobring_release: NULL job");
  jobring_lease l{};
  jobring_job_lease(job, &l);
  return jobring_release_lease(q, &l, delay_ms, error);
}

int jobring_give_back(jobring_queue* q, const jobring_job* job) {
  if (q == nullptr || job == nullptr) return capi::bad("jobring_give_back: NULL queue or job");
  return capi::guarded([&] { return capi::lease_status(q->queue.give_back(job->job.lease)); });
}

int jobring_give_back_lease(jobring_queue* q, const jobring_lease* lease) {
  if (q == nullptr || lease == nullptr) return capi::bad("jobring_give_back_lease: NULL queue or lease");
  return capi::guarded([&] { return capi::lease_status(q->queue.give_back(capi::to_lease(*lease))); });
}

int jobring_extend(jobring_queue* q, jobring_job* job, int64_t lease_ms) {
  if (q == nullptr || job == nullptr) return capi::bad("jobring_extend: NULL queue or job");
  if (!capi::valid_lease_time(lease_ms))
    return capi::refuse(errc::invalid_argument, q->queue, [&] {
      return "lease_ms " + std::to_string(lease_ms) + " not in 1.." + std::to_string(kMaxLease.count());
    });
  // Checked above, so the throwing overload (which also moves job.deadline)
  // throws only for a network failure (Redis), which guarded() reports.
  return capi::guarded([&] { return capi::lease_status(q->queue.extend(job->job, milliseconds{lease_ms})); });
}

int jobring_extend_lease(jobring_queue* q, jobring_lease* lease, int64_t lease_ms) {
  if (q == nullptr || lease == nullptr) return capi::bad("jobring_extend_lease: NULL queue or lease");
  if (!capi::valid_lease_time(lease_ms))
    return capi::refuse(errc::invalid_argument, q->queue, [&] {
      return "lease_ms " + std::to_string(lease_ms) + " not in 1.." + std::to_string(kMaxLease.count());
    });
  Lease l = capi::to_lease(*lease);
  std::error_code ec;
  const LeaseStatus s = q->queue.extend(l, milliseconds{lease_ms}, ec);
  if (ec) return fail(ec, q->queue.name(), "");
  lease->token = l.token;
  return capi::lease_status(s);
}

}  // extern "C"
