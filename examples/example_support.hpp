// Scaffolding shared by the examples — NOT part of the patterns they show.
//
// Each example is one command that plays every role: it makes a queue and a
// temporary directory of its own, forks worker processes, injects a failure,
// and checks the outcome. What a user copies is in the example files
// themselves (the producer and the handler); this header holds the parts that
// only exist so that one command can run and check a whole scenario:
//
//   Args           --name VALUE / --name=VALUE / --flag options, --help
//   ExampleQueue   a queue named "<example>.<pid>", removed when it goes out of scope
//   TempDir        mkdtemp, removed (recursively) when it goes out of scope
//   spawn()        fork a child process that is killed when its parent dies
//   wait_for()     reap a child, SIGKILL it after a timeout
//   Checks         "  ok    ..." / "  FAIL  ..." lines and the final "result: ..." line
//                  (scripts/demo shows that last line in its summary)
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "jobring/queue.hpp"

namespace example {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// --- Command line -------------------------------------------------------------

// A usage error: main() prints it and exits with status 2.
struct UsageError {
  std::string message;
};

// Options are "--name VALUE", "--name=VALUE" or "--flag". Unknown options are
// usage errors; --help / -h print `usage` and exit 0.
class Args {
 public:
  Args(int argc, char** argv, const char* usage) : usage_(usage) {
    for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
    for (const std::string& a : args_) {
      if (a == "--help" || a == "-h") {
        std::fputs(usage_, stdout);
        std::exit(0);
      }
    }
  }

  // Sets `out` if --name is given; a usage error unless it is a number in [lo, hi].
  void number(std::string_view name, std::uint64_t& out, std::uint64_t lo, std::uint64_t hi) {
    const std::optional<std::string> v = take(name, true);
    if (!v) return;
    std::uint64_t n = 0;
    const char* end = v->data() + v->size();
    const auto [ptr, ec] = std::from_chars(v->data(), end, n);
    if (v->empty() || ec != std::errc{} || ptr != end || n < lo || n > hi)
      throw UsageError{std::string(name) + " needs a number from " + std::to_string(lo) + " to " +
                       std::to_string(hi)};
    out = n;
  }
  // True if --name is given (it takes no value).
  bool flag(std::string_view name) { return take(name, false).has_value(); }

  // Call after the options: anything left over is a usage error.
  void done() const {
    if (!args_.empty()) throw UsageError{"unexpected argument '" + args_.front() + "'"};
  }

 private:
  std::optional<std::string> take(std::string_view name, bool has_value) {
    for (std::size_t i = 0; i < args_.size(); ++i) {
      const std::string& a = args_[i];
      if (has_value && a.size() > name.size() && a.starts_with(name) && a[name.size()] == '=') {
        std::string v = a.substr(name.size() + 1);
        args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i));
        return v;
      }
      if (a != name) continue;
      if (!has_value) {
        args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i));
        return std::string();
      }
      if (i + 1 >= args_.size()) throw UsageError{std::string(name) + " needs a value"};
      std::string v = args_[i + 1];
      args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i),
                  args_.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return v;
    }
    return std::nullopt;
  }

  const char* usage_;
  std::vector<std::string> args_;
};

// Runs `body` and turns its outcome into an exit status: its own return value,
// 2 for a usage error, 1 for an exception.
inline int run_main(const char* program, const std::function<int()>& body) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one write per line: lines of processes do not mix
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s (try --help)\n", program, e.message.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    std::printf("result: FAILED (%s)\n", e.what());
    return 1;
  }
}

// --- Ctrl-C in the parent -----------------------------------------------------

inline volatile std::sig_atomic_t g_interrupted = 0;
extern "C" inline void jobring_example_on_interrupt(int) { g_interrupted = 1; }

// SIGINT / SIGTERM set a flag that the parent's loops check, so that it
// cleans up (queue, temporary files, children) before it exits.
inline void catch_interrupts() {
  struct sigaction sa {};
  sa.sa_handler = jobring_example_on_interrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}
inline bool interrupted() noexcept { return g_interrupted != 0; }

// --- A queue and a directory of our own ----------------------------------------

// A queue named "<prefix>.<pid>" (so that runs at the same time never share
// one), created fresh and removed when this object goes out of scope.
class ExampleQueue {
 public:
  ExampleQueue(std::string_view prefix, const jobring::Options& options)
      : name_(std::string(prefix) + "." + std::to_string(::getpid())) {
    std::error_code ec;
    jobring::Queue::remove(name_, ec);  // a left-over of a killed run that had our PID
    queue_.emplace(jobring::Queue::create(name_, options));
  }
  ~ExampleQueue() {
    std::error_code ec;
    jobring::Queue::remove(name_, ec);
  }
  ExampleQueue(const ExampleQueue&) = delete;
  ExampleQueue& operator=(const ExampleQueue&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  jobring::Queue& operator*() noexcept { return *queue_; }
  jobring::Queue* operator->() noexcept { return &*queue_; }

 private:
  std::string name_;
  std::optional<jobring::Queue> queue_;
};

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// when this object goes out of scope, unless keep() was called.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + std::string(prefix) + ".XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    if (keep_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  void keep() noexcept { keep_ = true; }

 private:
  std::filesystem::path path_;
  bool keep_ = false;
};

// --- Child processes ------------------------------------------------------------

// Forks a child that runs `body` and exits with its return value (1 if it
// throws). The child is SIGKILLed if the parent dies, so that a killed
// example leaves no orphans. Call it before this process starts any thread.
inline pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid > 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  int status = 1;
  try {
    status = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "process %d: %s\n", static_cast<int>(::getpid()), e.what());
  }
  std::fflush(nullptr);
  ::_exit(status);  // no exit handlers or destructors of the parent's objects
}

// Waits up to `timeout` for `pid` to end, then SIGKILLs it. Returns the wait status.
inline int wait_for(pid_t pid, milliseconds timeout) {
  const Clock::time_point give_up = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= give_up) {
      std::fprintf(stderr, "process %d did not end within %lld ms: killing it\n", static_cast<int>(pid),
                   static_cast<long long>(timeout.count()));
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return status;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

inline bool exited_ok(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

inline std::string describe(int status) {
  if (status < 0) return "not waited for";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") + (name != nullptr ? name : std::to_string(WTERMSIG(status)).c_str());
  }
  return "status " + std::to_string(status);
}

// Polls `done` every 5 ms for up to `timeout`; false if it never turned true
// (or Ctrl-C was pressed).
inline bool poll_until(const std::function<bool()>& done, milliseconds timeout) {
  const Clock::time_point give_up = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= give_up || interrupted()) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// --- The verdict ------------------------------------------------------------------

// Prints one line per check and, at the end, "result: OK — <what happened>" or
// "result: FAILED — <the first failed check>". Exit status 0 only if every check passed.
class Checks {
 public:
  bool expect(bool ok, const std::string& what) {
    std::printf("  %-5s %s\n", ok ? "ok" : "FAIL", what.c_str());
    if (!ok && first_failure_.empty()) first_failure_ = what;
    return ok;
  }
  [[nodiscard]] bool passed() const noexcept { return first_failure_.empty(); }
  // Prints the result line; returns the exit status.
  int finish(const std::string& story) const {
    if (interrupted()) {
      std::printf("result: FAILED (interrupted)\n");
      return 130;
    }
    if (passed()) {
      std::printf("result: OK: %s\n", story.c_str());
      return 0;
    }
    std::printf("result: FAILED: %s\n", first_failure_.c_str());
    return 1;
  }

 private:
  std::string first_failure_;
};

}  // namespace example
