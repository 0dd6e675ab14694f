#include "common/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "common/clock.hpp"
#include "common/sys.hpp"

namespace jobring::detail {

std::atomic<std::uint32_t> g_self_pid{0};

namespace {

// Reads /proc/PID/stat. Returns false if it cannot be read. The command name
// (field 2) may contain spaces and parentheses, so parse after the last ')'.
bool read_stat(std::uint32_t pid, char& state, std::uint64_t& start_ticks) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  char buf[1024];
  if (read_small_file(path, buf, sizeof buf) < 0) return false;
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  // Fields 3..22: state is field 3, starttime field 22, 19 separators later.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  char* end = nullptr;
  const std::uint64_t seen = std::strtoull(p, &end, 10);
  // /proc shows a start time through the reader's time namespace (shifted by
  // its CLOCK_BOOTTIME offset): take our offset away, so that every process,
  // in whatever time namespace, gets the same value for one process.
  const auto host = static_cast<std::int64_t>(seen) - time_offsets().boottime_ticks;
  start_ticks = host > 0 ? static_cast<std::uint64_t>(host) : 0;
  return end != p;
}

// Entries of /proc/PID/task (threads), or a large number if unknown.
int count_tasks(std::uint32_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/task", pid);
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return 1 << 20;
  int n = 0;
  while (const dirent* e = ::readdir(dir)) n += e->d_name[0] != '.' ? 1 : 0;
  ::closedir(dir);
  return n;
}

std::atomic<std::uint64_t> g_start{0};
std::once_flag g_atfork_once;

void forget_self_in_child() noexcept {
  g_self_pid.store(0, std::memory_order_relaxed);
  g_start.store(0, std::memory_order_relaxed);
}

}  // namespace

std::uint64_t start_ticks_of(std::uint32_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, state, start) ? start : 0;
}

ProcessIdentity self() noexcept {
  // Acquire pairs with the release store below, so a thread that sees the PID
  // also sees its start time.
  if (const std::uint32_t pid = g_self_pid.load(std::memory_order_acquire); pid != 0) {
    return {pid, g_start.load(std::memory_order_relaxed)};
  }
  std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, forget_self_in_child); });
  const auto pid = static_cast<std::uint32_t>(::getpid());
  const std::uint64_t start = start_ticks_of(pid);
  g_start.store(start, std::memory_order_relaxed);
  g_self_pid.store(pid, std::memory_order_release);
  return {pid, start};
}

bool proven_dead(std::uint32_t pid, std::uint64_t start_bits, std::uint64_t start_mask) noexcept {
  if (pid == 0 || pid >= kPidLimit) return true;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  // A pidfd pins the process we judge: what we read below is about it, and
  // it becomes readable only when its whole thread group has exited.
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0 && errno == ESRCH) return true;
  char state = 0;
  std::uint64_t start = 0;
  const bool have_stat = read_stat(pid, state, start);
  bool dead = false;
  if (have_stat && start_bits != 0 && start != 0 && (start & start_mask) != start_bits) {
    dead = true;  // the PID now names another process
  } else if (fd >= 0) {
    pollfd p{fd, POLLIN, 0};
    dead = ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
  } else if (have_stat && state == 'Z') {
    // No pidfd (kernel < 5.3): a zombie leader is dead only if no other
    // thread of the group is left (/proc/PID/task lists live threads).
    dead = count_tasks(pid) <= 1;
  }
  // Without /proc/PID/stat (it vanished just now, or hidepid hides other
  // users' processes) nothing more is proven: alive, until kill() says ESRCH.
  if (fd >= 0) ::close(fd);
  return dead;
}

}  // namespace jobring::detail
