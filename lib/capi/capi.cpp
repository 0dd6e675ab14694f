// jobring — the C API (include/jobring/jobring.h): status codes and the
// thread's last error, the version, queue options, lifecycle, stop flags and
// interrupts. Jobs are in capi_jobs.cpp, the operators' calls in capi_admin.cpp.
//
// Lifecycle calls use the throwing overloads inside guarded(): they are not
// on a hot path, and the exception's what() is the whole message (the
// queue, the reason from the header check, what to do), which the
// error_code overloads do not give.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include "capi/capi_internal.hpp"
#include "jobring/error.hpp"
#include "jobring/interrupt.hpp"

namespace jobring::capi {
namespace {

// The C codes of jobring::errc, value for value: JOBRING_E_x = 100 + errc::x.
// A new errc value needs a code here and in jobring.h (test_capi_cpp checks
// that the category knows no value beyond this table).
constexpr std::pair<errc, int> kErrcCodes[] = {
    {errc::invalid_name, JOBRING_E_INVALID_NAME},
    {errc::invalid_options, JOBRING_E_INVALID_OPTIONS},
    {errc::invalid_argument, JOBRING_E_INVALID_ARGUMENT},
    {errc::not_found, JOBRING_E_NOT_FOUND},
    {errc::already_exists, JOBRING_E_ALREADY_EXISTS},
    {errc::permission_denied, JOBRING_E_PERMISSION_DENIED},
    {errc::not_a_queue, JOBRING_E_NOT_A_QUEUE},
    {errc::incompatible_version, JOBRING_E_INCOMPATIBLE_VERSION},
    {errc::corrupt_segment, JOBRING_E_CORRUPT_SEGMENT},
    {errc::incomplete_segment, JOBRING_E_INCOMPLETE_SEGMENT},
    {errc::payload_too_large, JOBRING_E_PAYLOAD_TOO_LARGE},
    {errc::system_error, JOBRING_E_SYSTEM},
    {errc::corrupt_file, JOBRING_E_CORRUPT_FILE},
    {errc::options_mismatch, JOBRING_E_OPTIONS_MISMATCH},
    {errc::unavailable, JOBRING_E_UNAVAILABLE},
    {errc::timeout, JOBRING_E_TIMEOUT},
    {errc::protocol_error, JOBRING_E_PROTOCOL},
    {errc::server_error, JOBRING_E_SERVER},
    {errc::unsafe_server_config, JOBRING_E_UNSAFE_SERVER_CONFIG},
    {errc::not_supported, JOBRING_E_NOT_SUPPORTED},
};
constexpr int kErrcBase = 100;
consteval bool errc_codes_in_step() {
  int expected = 1;  // errc starts at 1 and has no gaps
  for (const auto& [e, code] : kErrcCodes) {
    if (static_cast<int>(e) != expected || code != kErrcBase + expected) return false;
    ++expected;
  }
  return true;
}
static_assert(errc_codes_in_step(),
              "jobring.h's JOBRING_E_* codes must mirror jobring::errc value for value");
constexpr int kLastErrc = static_cast<int>(errc::not_supported);
static_assert(std::size(kErrcCodes) == kLastErrc);

// The thread's last status. `t_text` is written only for an error with a
// detailed message; the rest are trivial, so the hot path never constructs
// the string (nor registers its thread-exit destructor).
thread_local const char* t_fixed = "success";
thread_local bool t_use_text = false;
thread_local std::string t_text;

}  // namespace

int done(int code) noexcept {
  t_fixed = jobring_strerror(code);
  t_use_text = false;
  return code;
}

int fail(int code, const char* fixed) noexcept {
  t_fixed = fixed;
  t_use_text = false;
  return code;
}

int fail(int code, std::string_view message) noexcept {
  try {
    t_text.assign(message);
    t_use_text = true;
  } catch (...) {  // no memory for the message: the code's text will do
    done(code);
  }
  return code;
}

int status_of(std::error_code ec) noexcept {
  if (!ec) return JOBRING_OK;
  if (ec.category() == category()) {
    const int v = ec.value();
    return v >= 1 && v <= kLastErrc ? kErrcBase + v : JOBRING_E_INTERNAL;
  }
  if (ec == std::errc::not_enough_memory) return JOBRING_E_NO_MEMORY;
  return JOBRING_E_SYSTEM;
}

int fail(std::error_code ec, std::string_view queue, std::string_view detail) noexcept {
  const int code = status_of(ec);
  try {
    std::string m = "jobring queue '";
    m.append(queue).append("': ").append(ec.message());
    if (code == JOBRING_E_SYSTEM && ec.category() != category())
      m.append(" (errno ").append(std::to_string(ec.value())).append(")");
    if (!detail.empty()) m.append(" (").append(detail).append(")");
    return fail(code, std::string_view(m));
  } catch (...) {
    return done(code);
  }
}

int fail_current_exception() noexcept {
  try {
    throw;
  } catch (const jobring::error& e) {  // what() is the whole message
    return fail(status_of(e.code()), std::string_view(e.what()));
  } catch (const std::bad_alloc&) {
    return done(JOBRING_E_NO_MEMORY);
  } catch (const std::system_error& e) {
    const int code = status_of(e.code());
    if (code != JOBRING_E_SYSTEM) return fail(code, std::string_view(e.what()));
    return fail(code, std::string(e.what()) + " (errno " + std::to_string(e.code().value()) + ")");
  } catch (const std::exception& e) {
    return fail(JOBRING_E_INTERNAL, std::string("jobring: unexpected error: ") + e.what());
  } catch (...) {
    return fail(JOBRING_E_INTERNAL, "jobring: unexpected exception of unknown type");
  }
}

namespace {

Options to_options(const jobring_options& o) {
  Options r;
#define JOBRING_TAKE(c_field, field, expr) \
  if (JOBRING_CAPI_COVERS(&o, jobring_options, c_field)) r.field = expr
  JOBRING_TAKE(capacity, capacity, o.capacity);
  JOBRING_TAKE(max_payload, max_payload, o.max_payload);
  JOBRING_TAKE(default_lease_ms, default_lease, milliseconds{o.default_lease_ms});
  JOBRING_TAKE(max_attempts, max_attempts, o.max_attempts);
  JOBRING_TAKE(mode, mode, o.mode);
  JOBRING_TAKE(group, group, o.group != nullptr ? std::string_view(o.group) : std::string_view{});
  JOBRING_TAKE(dedup_keys, dedup_keys, o.dedup_keys);
  JOBRING_TAKE(dedup_window_ms, dedup_window, milliseconds{o.dedup_window_ms});
  JOBRING_TAKE(dir, dir, o.dir != nullptr ? std::string_view(o.dir) : std::string_view{});
  JOBRING_TAKE(sync, sync, static_cast<Options::Sync>(o.sync));
  JOBRING_TAKE(sync_interval_ms, sync_interval, milliseconds{o.sync_interval_ms});
#undef JOBRING_TAKE
  return r;
}

// Fills the fields of `out` that its size covers from `o`.
void from_options(const Options& o, jobring_options& out) noexcept {
#define JOBRING_GIVE(field, expr) \
  if (JOBRING_CAPI_COVERS(&out, jobring_options, field)) out.field = expr
  JOBRING_GIVE(capacity, o.capacity);
  JOBRING_GIVE(max_payload, o.max_payload);
  JOBRING_GIVE(default_lease_ms, o.default_lease.count());
  JOBRING_GIVE(max_attempts, o.max_attempts);
  JOBRING_GIVE(mode, o.mode);
  JOBRING_GIVE(group, nullptr);
  JOBRING_GIVE(dedup_keys, o.dedup_keys);
  JOBRING_GIVE(reserved0, 0);
  JOBRING_GIVE(dedup_window_ms, o.dedup_window.count());
  JOBRING_GIVE(dir, nullptr);
  JOBRING_GIVE(sync, static_cast<std::uint32_t>(o.sync));
  JOBRING_GIVE(sync_interval_ms, static_cast<std::uint32_t>(o.sync_interval.count()));
#undef JOBRING_GIVE
}

int bad_size(const char* what) noexcept { return fail(JOBRING_E_INVALID_ARGUMENT, what); }

// open / create / open_or_create: a name and a place for the handle are needed.
template <class Make>
int make_queue(const char* call, const char* name, const jobring_options* options, jobring_queue** out,
               Make make) noexcept {
  if (out == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, call);
  *out = nullptr;
  if (name == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, call);
  if (options != nullptr && options->size < sizeof(std::size_t))
    return bad_size("jobring_options: size is not set: call jobring_options_init(&o, sizeof o) first");
  return guarded([&] {
    const Options o = options != nullptr ? to_options(*options) : Options{};
    // guarded() turns std::bad_alloc into JOBRING_E_NO_MEMORY.
    auto q = make(std::string_view(name), o);
    if constexpr (std::is_same_v<decltype(q), AnyQueue>)
      *out = new jobring_queue{std::move(q)};  // NOLINT(bugprone-unhandled-exception-at-new)
    else
      *out = new jobring_queue{AnyQueue(std::move(q))};  // NOLINT(bugprone-unhandled-exception-at-new)
    return done(JOBRING_OK);
  });
}

}  // namespace
}  // namespace jobring::capi

using namespace jobring;
using capi::done;
using capi::fail;

namespace {
// A C URL: NULL is the default backend (shared memory).
std::string_view url_of(const char* url) noexcept { return url != nullptr ? std::string_view(url) : "shm:"; }
}  // namespace

extern "C" {

const char* jobring_strerror(int code) {
  switch (code) {
    case JOBRING_OK:
      return "success";
    case JOBRING_EMPTY:
      return "nothing to claim";
    case JOBRING_FULL:
      return "the queue is full";
    case JOBRING_LEASE_LOST:
      return "the lease is lost: another worker may have the job; nothing was changed";
    case JOBRING_INTERRUPTED:
      return "interrupted (jobring_interrupt_waits, or the call's stop flag)";
    case JOBRING_NO_SUCH_JOB:
      return "no dead job with that id";
    case JOBRING_E_INVALID_NAME:
      return "invalid queue name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'";
    case JOBRING_E_INVALID_OPTIONS:
      return "invalid queue options";
    case JOBRING_E_INVALID_ARGUMENT:
      return "invalid argument";
    case JOBRING_E_NOT_FOUND:
      return "no such queue";
    case JOBRING_E_ALREADY_EXISTS:
      return "a queue with this name already exists";
    case JOBRING_E_PERMISSION_DENIED:
      return "permission denied";
    case JOBRING_E_NOT_A_QUEUE:
      return "the segment is not a jobring queue";
    case JOBRING_E_INCOMPATIBLE_VERSION:
      return "the queue was created by an incompatible jobring version";
    case JOBRING_E_CORRUPT_SEGMENT:
      return "the queue's segment is corrupt or truncated";
    case JOBRING_E_INCOMPLETE_SEGMENT:
      return "the queue's segment was never fully initialised";
    case JOBRING_E_PAYLOAD_TOO_LARGE:
      return "payload larger than the queue's max_payload";
    case JOBRING_E_SYSTEM:
      return "operating system error";
    case JOBRING_E_CORRUPT_FILE:
      return "a jobring file is corrupt or of another kind";
    case JOBRING_E_OPTIONS_MISMATCH:
      return "the queue exists with other options than those asked for";
    case JOBRING_E_UNAVAILABLE:
      return "the queue's server is unavailable";
    case JOBRING_E_TIMEOUT:
      return "the queue's server did not answer in time";
    case JOBRING_E_PROTOCOL:
      return "the server's answer is not what jobring expects";
    case JOBRING_E_SERVER:
      return "the server refused the call";
    case JOBRING_E_UNSAFE_SERVER_CONFIG:
      return "the server's configuration could lose jobs";
    case JOBRING_E_NOT_SUPPORTED:
      return "not supported";
    case JOBRING_E_NO_MEMORY:
      return "out of memory";
    case JOBRING_E_INTERNAL:
      return "internal error in the jobring library";
    default:
      return "unknown jobring status code";
  }
}

const char* jobring_last_error(void) { return capi::t_use_text ? capi::t_text.c_str() : capi::t_fixed; }

const char* jobring_version(void) { return JOBRING_VERSION_STRING; }

int jobring_options_init(jobring_options* o, size_t size) {
  if (o == nullptr || size < sizeof(std::size_t))
    return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_options_init: NULL, or a size smaller than size_t");
  std::memset(o, 0, std::min(size, sizeof(jobring_options)));
  o->size = size;
  capi::from_options(Options{}, *o);
  return done(JOBRING_OK);
}

int jobring_create(const char* name, const jobring_options* options, jobring_queue** out) {
  return capi::make_queue("jobring_create: NULL name or out", name, options, out,
                          [](std::string_view n, const Options& o) { return Queue::create(n, o); });
}

int jobring_open(const char* name, jobring_queue** out) {
  return capi::make_queue("jobring_open: NULL name or out", name, nullptr, out,
                          [](std::string_view n, const Options&) { return Queue::open(n); });
}

int jobring_open_or_create(const char* name, const jobring_options* options, jobring_queue** out) {
  return capi::make_queue("jobring_open_or_create: NULL name or out", name, options, out,
                          [](std::string_view n, const Options& o) { return Queue::open_or_create(n, o); });
}

int jobring_create_url(const char* url, const char* name, const jobring_options* options,
                       jobring_queue** out) {
  return capi::make_queue(
      "jobring_create_url: NULL name or out", name, options, out,
      [url](std::string_view n, const Options& o) { return AnyQueue::create(url_of(url), n, o); });
}

int jobring_open_url(const char* url, const char* name, jobring_queue** out) {
  return capi::make_queue(
      "jobring_open_url: NULL name or out", name, nullptr, out,
      [url](std::string_view n, const Options&) { return AnyQueue::open(url_of(url), n); });
}

int jobring_open_or_create_url(const char* url, const char* name, const jobring_options* options,
                               jobring_queue** out) {
  return capi::make_queue(
      "jobring_open_or_create_url: NULL name or out", name, options, out,
      [url](std::string_view n, const Options& o) { return AnyQueue::open_or_create(url_of(url), n, o); });
}

int jobring_remove_url(const char* url, const char* name) {
  if (name == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_remove_url: NULL name");
  return capi::guarded([&] {
    if (!AnyQueue::remove(url_of(url), name))
      return fail(JOBRING_E_NOT_FOUND, std::string("jobring queue '") + name + "': no such queue to remove");
    return done(JOBRING_OK);
  });
}

int jobring_queue_is_remote(const jobring_queue* q) {
  if (q == nullptr) return -1;
  return q->queue.backend() == Backend::redis ? 1 : 0;
}

void jobring_close(jobring_queue* q) {
  delete q;  // ~AnyQueue is noexcept
  done(JOBRING_OK);
}

int jobring_remove(const char* name) {
  if (name == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_remove: NULL name");
  return capi::guarded([&] {
    if (!Queue::remove(name))
      return fail(JOBRING_E_NOT_FOUND, std::string("jobring queue '") + name + "': no such queue to remove");
    return done(JOBRING_OK);
  });
}

int jobring_queue_options(const jobring_queue* q, jobring_options* out) {
  if (q == nullptr || out == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_queue_options: NULL");
  if (out->size < sizeof(std::size_t))
    return capi::bad_size("jobring_queue_options: set out->size = sizeof(jobring_options) first");
  capi::from_options(q->queue.options(), *out);
  return done(JOBRING_OK);
}

const char* jobring_queue_name(const jobring_queue* q) {
  return q != nullptr ? q->queue.name().c_str() : nullptr;
}

uint64_t jobring_queue_incarnation(const jobring_queue* q) {
  return q != nullptr ? q->queue.incarnation() : 0;
}

int jobring_stop_new(jobring_stop** out) {
  if (out == nullptr) return fail(JOBRING_E_INVALID_ARGUMENT, "jobring_stop_new: NULL out");
  *out = new (std::nothrow) jobring_stop;
  return *out != nullptr ? done(JOBRING_OK) : done(JOBRING_E_NO_MEMORY);
}

void jobring_stop_free(jobring_stop* s) { delete s; }

void jobring_stop_set(jobring_stop* s, int value) {  // no last-error write: async-signal-safe
  if (s != nullptr) s->flag.store(value != 0, std::memory_order_release);
}

void jobring_interrupt_waits(void) { interrupt_waits(); }
void jobring_clear_interrupt(void) { clear_interrupt(); }
void jobring_wake_waits(void) { wake_waits(); }

}  // extern "C"
