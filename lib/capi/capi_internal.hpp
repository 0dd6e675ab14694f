// jobring — the C API's shared internals: the handles behind the opaque
// types of jobring.h, the thread's last error, and the guard every entry
// point runs its body in so that no exception crosses into C.
//
// Internal header. Status recording is split so that the hot path touches
// only trivially destructible thread_locals (a pointer to a static text):
// only an error with a detailed message writes the thread's std::string.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

#include "jobring/any_queue.hpp"
#include "jobring/jobring.h"
#include "jobring/queue.hpp"

// A queue on either backend (jobring_open: shared memory; jobring_open_url:
// the URL's). Calls that can fail on the network (Redis) throw, so every
// entry point that calls the queue runs in guarded().
struct jobring_queue {
  jobring::AnyQueue queue;
};
struct jobring_job {
  jobring::Job job;
};
struct jobring_stop {
  std::atomic<bool> flag{false};
};

// Whether a struct whose caller-declared size is s->size holds `field`.
#define JOBRING_CAPI_COVERS(s, type, field) \
  ((s)->size >= offsetof(type, field) + sizeof(((type*)nullptr)->field))

namespace jobring::capi {

// Each records what jobring_last_error() says on this thread, and returns `code`.
int done(int code) noexcept;                            // the code's static text (OK and outcomes)
int fail(int code, const char* fixed) noexcept;         // an error with a static message
int fail(int code, std::string_view message) noexcept;  // an error with a message (copied)
// An error_code from the library; `queue` and `detail` go into the message:
// "jobring queue 'NAME': <the error's text> (<detail>)".
int fail(std::error_code ec, std::string_view queue, std::string_view detail) noexcept;
// Inside a catch handler: the exception in flight, as a status.
int fail_current_exception() noexcept;
// The status of an error_code (jobring's errc, std::errc::not_enough_memory, other OS errors).
[[nodiscard]] int status_of(std::error_code ec) noexcept;

// Runs f() (which returns a status); any exception becomes a status.
template <class F>
int guarded(F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return fail_current_exception();
  }
}

// A wait_ms: 0 .. kMaxLease, or -1 = for ever (kForeverWait).
inline constexpr std::int64_t kForeverWait = -1;
[[nodiscard]] constexpr bool valid_wait(std::int64_t ms) noexcept {
  return ms == kForeverWait || (ms >= 0 && ms <= kMaxLease.count());
}
// The wait to ask the library for: a wait for ever is done in kMaxLease steps.
[[nodiscard]] constexpr milliseconds wait_step(std::int64_t ms) noexcept {
  return ms == kForeverWait ? kMaxLease : milliseconds{ms};
}

}  // namespace jobring::capi
