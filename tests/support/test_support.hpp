// Helpers shared by the tests: unique queue names, a watchdog that fails a
// hung test instead of hanging CI, fork/kill helpers, and one-field options.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "jobring/queue.hpp"

namespace jobring::test {

// A queue name unique to this process and call, removed again by QueueName's destructor.
// With JOBRING_TEST_DIR set (an absolute directory, made if missing), the
// name is DIR/NAME: the tests then run on file-backed queues (Options::dir)
// — the contract suite's second backend (tests/CMakeLists.txt, "file.").
class QueueName {
 public:
  explicit QueueName(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    name_ = "test." + tag + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    if (const char* dir = std::getenv("JOBRING_TEST_DIR"); dir != nullptr && *dir == '/') {
      ::mkdir(dir, 0700);
      name_ = std::string(dir) + "/" + name_;
    }
    Queue::remove(name_);
  }
  ~QueueName() { Queue::remove(name_); }
  QueueName(const QueueName&) = delete;
  QueueName& operator=(const QueueName&) = delete;
  [[nodiscard]] const std::string& str() const { return name_; }
  operator const std::string&() const { return name_; }  // NOLINT: implicit by design
  operator std::string_view() const { return name_; }    // NOLINT: implicit by design

 private:
  std::string name_;
};

// steady_clock now, in nanoseconds: for the tests that record when things
// happened (bounds checked with generous margins, never measurements).
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Aborts the whole test process (with a message) if not destroyed within `limit`.
//
// The constructor returns only once the watchdog thread is parked in its
// wait. Tests fork right after making a Watchdog, and GCC 12's ASan has no
// fork handler for its allocator: a thread still starting up (glibc's
// pthread_getattr_np allocates) can hold an allocator region lock at the
// fork, and the child then blocks for ever in its first `new` of that size.
// Seen in CI as OpenOrCreateRace hangs; reproduced, and the child's stack
// was in SizeClassAllocator64::GetFromAllocator. A parked thread holds no
// allocator lock, so forking after the constructor is safe.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit, std::string what = "test")
      : thread_([this, limit, what = std::move(what)] {
          std::unique_lock lock(mutex_);
          parked_ = true;
          started_.notify_all();
          // wait_for releases mutex_ only once this thread is in the wait, so
          // the constructor, which needs mutex_ to see parked_, returns after that.
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "WATCHDOG: %s did not finish within %llds; aborting\n", what.c_str(),
                         static_cast<long long>(limit.count()));
            std::fflush(stderr);
            std::abort();
          }
        }) {
    std::unique_lock lock(mutex_);
    started_.wait(lock, [this] { return parked_; });
  }
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable started_;
  bool done_ = false;
  bool parked_ = false;
  std::thread thread_;
};

// Forks a child that runs `body` and exits with its return value (or 99 if it throws).
inline pid_t fork_child(const std::function<int()>& body) {
  std::fflush(nullptr);  // else the child flushes a copy of the parent's buffered output again
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: exception: %s\n", ::getpid(), e.what());
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// Waits for `pid`; returns its exit status (0..255), or 128 + signal number.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

inline void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  wait_child(pid);
}

// The PID of a process that has exited and been reaped: certainly dead (until
// the kernel reuses it), for forging what a dead writer or owner leaves behind.
// Throws (failing the test) if the child did not exit normally.
inline std::uint32_t dead_pid() {
  const pid_t pid = fork_child([] { return 0; });
  if (pid < 0 || wait_child(pid) != 0) throw std::runtime_error("dead_pid: the short-lived child failed");
  return static_cast<std::uint32_t>(pid);
}

// Options with one field set: a push that waits or is delayed, a claim with a lease.
inline PushOptions with_wait(milliseconds wait) {
  PushOptions p;
  p.wait = wait;
  return p;
}
inline PushOptions with_delay(milliseconds delay) {
  PushOptions p;
  p.delay = delay;
  return p;
}
inline ClaimOptions with_lease(milliseconds lease) {
  ClaimOptions c;
  c.lease = lease;
  return c;
}

// ---------------------------------------------------------------------------
// Helpers for multi-process and stress tests.
// ---------------------------------------------------------------------------

// An integer from the environment variable `name`, or `fallback` when it is
// unset, empty or not a number. Lets CI and sanitizer builds size the tests.
inline long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0') ? n : fallback;
}

// True when built with ThreadSanitizer / AddressSanitizer (for sizing only).
inline constexpr bool kThreadSanitizer =
#if defined(__SANITIZE_THREAD__)
    true;
#else
    false;
#endif
inline constexpr bool kAddressSanitizer =
#if defined(__SANITIZE_ADDRESS__)
    true;
#else
    false;
#endif

// Call first thing in a forked child: the child gets SIGKILL if the test
// process dies (e.g. aborted by a Watchdog), so no orphan outlives the test.
inline void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(98);  // the parent died before prctl
}

// Forks a child that dies with the test process (die_with_parent) and runs
// `body`, exiting with its return value (as fork_child).
template <class F>
pid_t spawn_tied(F&& body) {
  const pid_t parent = ::getpid();
  return fork_child([&body, parent] {
    die_with_parent(parent);
    return body();
  });
}

// Writes all of [data, data+n) to `fd` (retrying on EINTR and short writes).
inline bool write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads everything from `fd` until EOF.
inline std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (r == 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  return out;
}

// Reads one '\n'-terminated line from `fd` (without the '\n'), waiting at most
// `timeout` in total. std::nullopt on timeout or EOF before a full line.
inline std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string line;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{fd, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return std::nullopt;
    char c = 0;
    const ssize_t r = ::read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

// A pipe whose ends are closed by the destructor (each end at most once).
class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe() failed");
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  [[nodiscard]] int read_fd() const { return fds_[0]; }
  [[nodiscard]] int write_fd() const { return fds_[1]; }
  void close_read() { close_end(0); }
  void close_write() { close_end(1); }

 private:
  void close_end(int i) {
    if (fds_[i] >= 0) ::close(fds_[i]);
    fds_[i] = -1;
  }
  int fds_[2] = {-1, -1};
};

// A start barrier for forked children: each child calls wait() (it blocks
// until the parent calls release()); release() lets all of them go at once.
class ForkBarrier {
 public:
  // In a child: close our copy of the write end and block until EOF.
  void wait() {
    pipe_.close_write();
    char c = 0;
    while (::read(pipe_.read_fd(), &c, 1) < 0 && errno == EINTR) {
    }
  }
  // In the parent, after forking every child.
  void release() { pipe_.close_write(); }

 private:
  Pipe pipe_;
};

// An object of type T in an anonymous MAP_SHARED mapping: forked children and
// the parent see the same object (use it for atomics that steer children).
template <class T>
class SharedObject {
 public:
  SharedObject() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap(MAP_SHARED|MAP_ANONYMOUS) failed");
    obj_ = new (p) T();
  }
  ~SharedObject() {
    obj_->~T();
    ::munmap(obj_, sizeof(T));
  }
  SharedObject(const SharedObject&) = delete;
  SharedObject& operator=(const SharedObject&) = delete;
  T* operator->() const { return obj_; }
  T& operator*() const { return *obj_; }

 private:
  T* obj_ = nullptr;
};

// ---------------------------------------------------------------------------
// Record logs: children append fixed-size records, the parent reads them.
// ---------------------------------------------------------------------------

// Opens `path` for appending (created 0600 if missing; not inherited across
// exec); -1 on failure.
inline int open_append(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

// For a process that restarts after a SIGKILL and goes on appending records
// of `record_size` bytes to `path`: a write(2) cut short by the kill (the
// kernel stops copying when a fatal signal is pending) leaves a partial
// record at the end; drop it, so that later records stay aligned. Only the
// restarted process writes the file then (its predecessor is reaped), and
// the dropped record's event did not complete: a producer logs after its
// push returned (an unlogged push is allowed), a worker logs before its ack
// (an unacked job is claimed again and logged again).
inline int open_append_records(const std::string& path, std::size_t record_size) {
  const int fd = open_append(path);
  struct stat st {};
  if (fd >= 0 && ::fstat(fd, &st) == 0 && st.st_size % static_cast<off_t>(record_size) != 0 &&
      ::ftruncate(fd, st.st_size - st.st_size % static_cast<off_t>(record_size)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The whole file `path` ("" if it cannot be read).
inline std::string file_contents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string s = read_to_eof(fd);
  ::close(fd);
  return s;
}

// The file `path` as records of type R (trivially copyable); a trailing
// partial record (there should be none) is reported through `partial`.
template <class R>
[[nodiscard]] std::vector<R> read_records(const std::string& path, std::size_t* partial = nullptr) {
  const std::string s = file_contents(path);
  std::vector<R> out(s.size() / sizeof(R));
  if (!out.empty()) std::memcpy(out.data(), s.data(), out.size() * sizeof(R));
  if (partial != nullptr) *partial = s.size() % sizeof(R);
  return out;
}

// A uniquely named temporary file, removed by the destructor. Children append
// fixed-size records to it with append_record() (O_APPEND: one write(2) each).
class TempFile {
 public:
  explicit TempFile(const std::string& tag = "f") {
    static std::atomic<int> counter{0};
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/jobring-test." + tag + "." +
            std::to_string(::getpid()) + "." + std::to_string(counter++);
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + path_);
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

  // Opens for appending (in a child); -1 on failure.
  [[nodiscard]] int open_append() const { return test::open_append(path_); }
  // As the free function open_append_records() below.
  [[nodiscard]] int open_append_records(std::size_t record_size) const {
    return test::open_append_records(path_, record_size);
  }
  // The whole file.
  [[nodiscard]] std::string contents() const { return file_contents(path_); }
  // As the free function read_records() below.
  template <class R>
  [[nodiscard]] std::vector<R> records(std::size_t* partial = nullptr) const {
    return read_records<R>(path_, partial);
  }

 private:
  std::string path_;
};

// Appends one record with a single write(2) on an O_APPEND descriptor.
template <class R>
inline bool append_record(int fd, const R& record) {
  return ::write(fd, &record, sizeof record) == static_cast<ssize_t>(sizeof record);
}

// Every field of Stats, for "nothing changed" comparisons.
inline std::vector<std::uint64_t> stats_fields(const Stats& s) {
  return {s.free,          s.writing,       s.ready,    s.delayed, s.leased,          s.expired,
          s.dead,          s.corrupt,       s.pushed,   s.claimed, s.acked,           s.released,
          s.expired_total, s.dead_lettered, s.requeued, s.purged,  s.recovered_writes};
}

// The bytes of `s`, for the calls that take a payload as bytes.
inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A queue's gauges in one line, for failure messages.
inline std::string describe(const Stats& s) {
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "free=%llu writing=%llu ready=%llu delayed=%llu leased=%llu expired=%llu dead=%llu corrupt=%llu",
      static_cast<unsigned long long>(s.free), static_cast<unsigned long long>(s.writing),
      static_cast<unsigned long long>(s.ready), static_cast<unsigned long long>(s.delayed),
      static_cast<unsigned long long>(s.leased), static_cast<unsigned long long>(s.expired),
      static_cast<unsigned long long>(s.dead), static_cast<unsigned long long>(s.corrupt));
  return buf;
}

// Polls `done` every `step` until it returns true or `limit` has passed.
// Returns the last value of done().
template <class F>
inline bool poll_until(F&& done, std::chrono::milliseconds limit,
                       std::chrono::milliseconds step = std::chrono::milliseconds{2}) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= until) return done();
    std::this_thread::sleep_for(step);
  }
}

// Waits for `pid` without blocking: std::nullopt if it is still running, else
// its status as wait_child() reports it.
inline std::optional<int> try_wait_child(pid_t pid) {
  int status = 0;
  pid_t r = 0;
  do {
    r = ::waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace jobring::test
