#include "common/clock.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/sys.hpp"
#include "ring/testing.hpp"

namespace jobring::detail {

std::atomic<std::int64_t> g_monotonic_offset_ms{0};

namespace {

std::atomic<std::int64_t> g_boottime_offset_ticks{0};
// shift_monotonic_for_testing: subtracted from the namespace's offset at
// every (re)load, so that it outlives a fork.
std::atomic<std::int64_t> g_test_shift_ms{0};

// Clock ticks per second, as /proc/PID/stat counts start times: read once at
// load (sysconf is not async-signal-safe, and the reload runs in a forked child).
long g_ticks_per_second = 100;

// A signed decimal at p, moving p past it.
long long parse_number(const char*& p) noexcept {
  while (*p == ' ' || *p == '\t') ++p;
  const bool negative = *p == '-';
  if (negative) ++p;
  long long v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
  return negative ? -v : v;
}

// Parses /proc/self/timens_offsets: lines "<clock> <seconds> <nanoseconds>",
// the clock named ("monotonic", "boottime") or by its id (1, 7). Missing file
// (no time namespaces in this kernel): no offsets. Async-signal-safe (open,
// read, close and plain code), for the child of a fork.
TimeOffsets read_offsets() noexcept {
  TimeOffsets o;
  char buf[512];
  if (read_small_file("/proc/self/timens_offsets", buf, sizeof buf) < 0) return o;
  const long tick = g_ticks_per_second;
  for (const char* p = buf; *p != '\0';) {
    const char* name = p;
    while (*p != '\0' && *p != ' ' && *p != '\t') ++p;
    const auto name_len = static_cast<std::size_t>(p - name);
    const long long sec = parse_number(p);
    const long long nsec = parse_number(p);
    auto is = [&](const char* what) {
      return std::strlen(what) == name_len && std::memcmp(name, what, name_len) == 0;
    };
    if (is("monotonic") || is("1"))
      o.monotonic_ms = sec * 1000 + nsec / 1'000'000;
    else if (is("boottime") || is("7"))
      o.boottime_ticks = sec * tick + nsec / (1'000'000'000 / tick);
    while (*p != '\0' && *p != '\n') ++p;
    if (*p == '\n') ++p;
  }
  return o;
}

void load_offsets() noexcept {
  const TimeOffsets o = read_offsets();
  g_monotonic_offset_ms.store(o.monotonic_ms - g_test_shift_ms.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);
  g_boottime_offset_ticks.store(o.boottime_ticks, std::memory_order_relaxed);
}

// At load, before the program's own static initialisers (priority 101), so
// that no jobring call can run before the offsets are known; again in the
// child of every fork.
[[gnu::constructor(101)]] void load_offsets_at_start() noexcept {
  if (const long t = ::sysconf(_SC_CLK_TCK); t > 0 && t <= 1'000'000'000) g_ticks_per_second = t;
  load_offsets();
  ::pthread_atfork(nullptr, nullptr, load_offsets);
}

}  // namespace

void shift_monotonic_for_testing(std::int64_t ms) noexcept {
  g_test_shift_ms.fetch_add(ms, std::memory_order_relaxed);
  g_monotonic_offset_ms.fetch_sub(ms, std::memory_order_relaxed);
}

TimeOffsets time_offsets() noexcept {
  return {g_monotonic_offset_ms.load(std::memory_order_relaxed),
          g_boottime_offset_ticks.load(std::memory_order_relaxed)};
}

}  // namespace jobring::detail
