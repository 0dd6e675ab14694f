// Benchmark support: forked process groups, shared anonymous memory, clocks.
//
// Every child a benchmark forks dies with the benchmark (PR_SET_PDEATHSIG),
// and every wait on children is bounded: a benchmark that does not finish in
// time kills its group and reports an error instead of hanging the run.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace bench {

inline std::int64_t mono_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Back-off for polling loops: a few pauses, then sched_yield (the machine
// this runs on has 2 cores shared by more processes than that).
class Backoff {
 public:
  void reset() noexcept { spins_ = 0; }
  void pause() noexcept {
    if (spins_ < 64) {
      ++spins_;
      cpu_relax();
    } else {
      ::sched_yield();
    }
  }

 private:
  unsigned spins_ = 0;
};

// One T in a MAP_SHARED anonymous mapping: created before fork(), the same
// object in parent and children. T must be usable from several processes
// (atomics, plain data).
template <typename T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ptr_ = new (p) T();
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  ~Shared() {
    ptr_->~T();
    ::munmap(ptr_, sizeof(T));
  }
  T* operator->() const noexcept { return ptr_; }
  T& operator*() const noexcept { return *ptr_; }

 private:
  T* ptr_ = nullptr;
};

// Size of a file (a /dev/shm segment), or -1.
inline long long file_size(const std::string& path) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_size);
}

// A group of forked children. spawn() runs `fn` in a child, which exits with
// its return value; the child is killed (SIGKILL) if this process dies.
// wait_all() reaps them all within a deadline, or kills them and says so.
// The destructor kills and reaps whatever is left.
class ProcessGroup {
 public:
  ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;
  ~ProcessGroup() { kill_all(); }

  template <typename Fn>
  pid_t spawn(Fn&& fn) {
    const pid_t parent = ::getpid();
    std::fflush(nullptr);  // no buffered output printed twice
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(120);  // the parent died before prctl
      int rc = 121;
      try {
        rc = fn();
      } catch (...) {
        rc = 122;
      }
      ::_exit(rc);
    }
    children_.push_back(pid);
    return pid;
  }

  // Runs `argv` (execv) in a child that dies with us; output to /dev/null.
  pid_t spawn_exec(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // kept across execv (not set-uid)
      if (::getppid() != parent) ::_exit(120);
      const int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    children_.push_back(pid);
    return pid;
  }

  // Reaps every child by `deadline_ns` (mono_ns()); returns true if all
  // exited with status 0. On timeout kills the rest and returns false.
  bool wait_all(std::int64_t deadline_ns) {
    bool ok = true;
    while (!children_.empty()) {
      int status = 0;
      const pid_t r = ::waitpid(-1, &status, WNOHANG);
      if (r > 0) {
        auto it = std::find(children_.begin(), children_.end(), r);
        if (it != children_.end()) {
          children_.erase(it);
          if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ok = false;
            last_failure_ = status;
          }
        }
        continue;
      }
      if (r < 0 && errno != EINTR) break;
      if (mono_ns() >= deadline_ns) {
        kill_all();
        return false;
      }
      ::usleep(500);
    }
    return ok;
  }

  // SIGKILLs one child and reaps it at once.
  void kill_one(pid_t pid) {
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    children_.erase(std::remove(children_.begin(), children_.end(), pid), children_.end());
  }

  void kill_all() {
    for (const pid_t pid : children_) ::kill(pid, SIGKILL);
    for (const pid_t pid : children_) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    children_.clear();
  }

  [[nodiscard]] std::size_t size() const noexcept { return children_.size(); }
  [[nodiscard]] int last_failure() const noexcept { return last_failure_; }

 private:
  std::vector<pid_t> children_;
  int last_failure_ = 0;
};

// Nearest-rank percentile of sorted samples.
template <typename T>
double percentile(const std::vector<T>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
  return static_cast<double>(sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1]);
}

// A positive integer from the environment, or `fallback`.
inline long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr) return fallback;
  const long n = std::atol(v);
  return n > 0 ? n : fallback;
}

}  // namespace bench
