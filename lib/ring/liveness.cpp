#include "ring/liveness.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

namespace jobring::detail {

std::atomic<std::uint64_t> Liveness::g_fork_generation{0};

namespace {

// The descriptors of every attached handle, for the fork handler: a fixed
// table of atomics, because the handler runs in a child where only
// async-signal-safe code may run (no lock another thread might have held).
constexpr int kTable = 1024;
std::atomic<int> g_fds[kTable];
// Set in a child whose fork handler could not give g_fds[i] a description
// of its own (open or dup3 failed: EMFILE at the descriptor limit, ENFILE):
// that handle still shares its parent's, through which the kernel reports
// neither side's locks to the other (Liveness::shares_parents).
std::atomic<bool> g_shared[kTable];
std::once_flag g_atfork_once;

// In the child of a fork: each handle's descriptor gets an open file
// description of its own, so the child holds none of the parent's locks.
// open, dup3 and close are async-signal-safe.
void fresh_descriptions_in_child() noexcept {
  Liveness::g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < kTable; ++i) {
    const int fd = g_fds[i].load(std::memory_order_relaxed);
    if (fd <= 0) continue;
    char path[32];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    const int fresh = ::open(path, O_RDWR | O_CLOEXEC);
    // Failed: the descriptor still shares the parent's description. Not
    // the safe direction: F_OFD_GETLK through it reports no conflict with
    // a lock held through the same description, so this child would judge
    // its parent gone, and the parent judge the child's token (taken
    // through it) gone. Marked: the handle judges nobody gone and takes no
    // token in this process (Liveness::shares_parents).
    const bool own = fresh >= 0 && ::dup3(fresh, fd, O_CLOEXEC) == fd;
    if (fresh >= 0) ::close(fresh);
    g_shared[i].store(!own, std::memory_order_relaxed);
  }
}

std::uint64_t random_token() noexcept {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    static std::atomic<std::uint64_t> counter{0};
    r = (static_cast<std::uint64_t>(::getpid()) << 32) ^ counter.fetch_add(0x9e3779b97f4a7c15ull) ^
        reinterpret_cast<std::uintptr_t>(&r);
    r ^= r >> 31;
    r *= 0xbf58476d1ce4e5b9ull;
    r ^= r >> 29;
  }
  return r & kTokenMask;
}

flock lock_of(short type, std::uint64_t token) noexcept {
  flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = kLockBase + static_cast<std::int64_t>(token);
  fl.l_len = 1;
  fl.l_pid = 0;  // required by F_OFD_*
  return fl;
}

}  // namespace

void Liveness::attach(int segment_fd) noexcept {
  // Attached again (a creator maps its segment again by name once it is
  // linked): one lock descriptor per handle. A token already taken stays
  // valid: its lock is on the same file through the descriptor we keep.
  if (fd_ >= 0) return;
  if (segment_fd < 0) return;
  char path[32];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", segment_fd);
  const int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return;  // no /proc: no token; records name nobody (never proven gone)
  fd_ = fd;
  attached_generation_ = g_fork_generation.load(std::memory_order_relaxed);
  std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, fresh_descriptions_in_child); });
  for (int i = 0; i < kTable && fd > 0; ++i) {
    int empty = 0;
    if (g_fds[i].compare_exchange_strong(empty, fd, std::memory_order_relaxed)) {
      // Its own description (opened above). A flag left by an earlier
      // handle of this slot is never read for this one before a fork sets
      // it anew (shares_parents looks only after a fork since attach).
      g_shared[i].store(false, std::memory_order_relaxed);
      registered_ = i;
      break;
    }
  }
}

void Liveness::detach() noexcept {
  if (registered_ >= 0) g_fds[registered_].store(0, std::memory_order_relaxed);
  registered_ = -1;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Liveness::~Liveness() { detach(); }

bool Liveness::shares_parents() const noexcept {
  if (g_fork_generation.load(std::memory_order_relaxed) == attached_generation_) return false;
  return registered_ < 0 || g_shared[registered_].load(std::memory_order_relaxed);
}

std::uint64_t Liveness::take_token() noexcept {
  if (fd_ < 0 || shares_parents()) return 0;
  const std::uint64_t generation = g_fork_generation.load(std::memory_order_relaxed) & kGenerationMask;
  for (int tries = 0; tries < 64; ++tries) {
    std::uint64_t seen = state_.load(std::memory_order_relaxed);
    if (current(seen)) return seen & kTokenMask;  // another thread of this handle took one
    const std::uint64_t t = random_token();
    if (t == 0) continue;
    flock fl = lock_of(F_WRLCK, t);
    if (::fcntl(fd_, F_OFD_SETLK, &fl) != 0) {
      if (errno == EAGAIN || errno == EACCES) continue;  // someone holds it: another token
      return 0;                                          // no OFD locks here: records name nobody
    }
    // Publish it; if another thread of this handle published one first, use
    // that one and give ours back, so that the handle has one token (a
    // judge in this process must recognise every record the process wrote).
    // Relaxed: the token is a number; the lock it names is the kernel's.
    if (state_.compare_exchange_strong(seen, (generation << kTokenBits) | t, std::memory_order_relaxed))
      return t;
    flock un = lock_of(F_UNLCK, t);
    (void)::fcntl(fd_, F_OFD_SETLK, &un);
  }
  return 0;
}

bool Liveness::proven_gone(std::uint64_t t) const noexcept {
  t &= kTokenMask;
  if (t == 0 || fd_ < 0 || shares_parents()) return false;
  // Our own lock does not conflict with our own open file description, so
  // F_OFD_GETLK would call our own token free: we are alive.
  if (const std::uint64_t s = state_.load(std::memory_order_relaxed); current(s) && t == (s & kTokenMask))
    return false;
  flock fl = lock_of(F_WRLCK, t);
  if (::fcntl(fd_, F_OFD_GETLK, &fl) != 0) return false;  // cannot tell: alive
  return fl.l_type == F_UNLCK;
}

}  // namespace jobring::detail
