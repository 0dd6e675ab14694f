#include "common/clock.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace jobring::detail {

std::atomic<std::int64_t> g_monotonic_offset_ms{kUnknownOffset};
std::atomic<std::int64_t> g_boottime_offset_ticks{kUnknownOffset};

namespace {

std::once_flag g_atfork_once;

void forget_offsets_in_child() noexcept {
  g_monotonic_offset_ms.store(kUnknownOffset, std::memory_order_relaxed);
  g_boottime_offset_ticks.store(kUnknownOffset, std::memory_order_relaxed);
}

// Parses /proc/self/timens_offsets: lines "<clock> <seconds> <nanoseconds>",
// the clock named ("monotonic", "boottime") or by its id (1, 7). Missing file
// (no time namespaces in this kernel): no offsets.
TimeOffsets read_offsets() noexcept {
  TimeOffsets o;
  const int fd = ::open("/proc/self/timens_offsets", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return o;
  char buf[512];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return o;
  buf[n] = '\0';
  const long tick = ::sysconf(_SC_CLK_TCK) > 0 ? ::sysconf(_SC_CLK_TCK) : 100;
  char* save = nullptr;
  for (char* line = ::strtok_r(buf, "\n", &save); line != nullptr; line = ::strtok_r(nullptr, "\n", &save)) {
    char name[32] = {};
    long long sec = 0, nsec = 0;
    if (std::sscanf(line, "%31s %lld %lld", name, &sec, &nsec) != 3) continue;
    if (std::strcmp(name, "monotonic") == 0 || std::strcmp(name, "1") == 0)
      o.monotonic_ms = sec * 1000 + nsec / 1'000'000;
    else if (std::strcmp(name, "boottime") == 0 || std::strcmp(name, "7") == 0)
      o.boottime_ticks = sec * tick + nsec / (1'000'000'000 / tick);
  }
  return o;
}

}  // namespace

TimeOffsets time_offsets() noexcept {
  const std::int64_t mono = g_monotonic_offset_ms.load(std::memory_order_relaxed);
  const std::int64_t boot = g_boottime_offset_ticks.load(std::memory_order_relaxed);
  if (mono != kUnknownOffset && boot != kUnknownOffset) return {mono, boot};
  std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, forget_offsets_in_child); });
  const TimeOffsets o = read_offsets();
  g_monotonic_offset_ms.store(o.monotonic_ms, std::memory_order_relaxed);
  g_boottime_offset_ticks.store(o.boottime_ticks, std::memory_order_relaxed);
  return o;
}

}  // namespace jobring::detail
