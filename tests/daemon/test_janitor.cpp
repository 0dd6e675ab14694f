// The janitor: Queue::sweep() (the recovery pass) and the real jobring-janitor
// binary (fork+exec), its command line and config file, the systemd notify
// protocol, reload, metrics, and recovery under SIGKILLs (guarantees 3 and 8,
// issue "jobring-janitor").
//
// Children never use gtest assertions: they report through pipes, files and
// exit codes, and the parent asserts. Every child dies with the test process
// (PR_SET_PDEATHSIG), so a test aborted by its Watchdog leaves no janitor or
// worker behind. The janitor's stderr goes to a file the test reads.
//
// Timing: nothing asserts a duration. A test that waits for the janitor polls
// with a generous bound (20 s for something expected within ~100 ms) and uses
// the janitor's own sweep counter (metrics file) to know that sweeps happened
// when it asserts that something did NOT happen.
//
// Note: one test (AllQueuesModePicksUpANewQueue) runs the janitor without
// --queue, i.e. on every jobring queue of the host, for as short a time as it
// can; every other test names its queues. Conversely, tests here that count
// what *their* sweep returned, or that a queue not configured is left alone,
// assume that no all-queues janitor runs on the host at the same time.
//
// Knobs: JOBRING_JANITOR_TORTURE_MS (default 3000), JOBRING_JANITOR_RACE_ROUNDS
// (default 12), JOBRING_JANITOR_METRICS_READS (default 2000).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

extern char** environ;

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::SlotMeta;
using detail::State;
using detail::Word;
using test::QueueName;
using test::Watchdog;

#ifdef JOBRING_JANITOR_BIN
constexpr const char* kJanitorBin = JOBRING_JANITOR_BIN;
#else
constexpr const char* kJanitorBin = "";
#endif
#ifdef JOBRING_JANITOR_UNIT
constexpr const char* kJanitorUnit = JOBRING_JANITOR_UNIT;
#else
constexpr const char* kJanitorUnit = "";
#endif

#define SKIP_WITHOUT_JANITOR()                                                  \
  do {                                                                          \
    if (kJanitorBin[0] == '\0') GTEST_SKIP() << "jobring-janitor is not built"; \
  } while (0)

Options small_options(std::uint32_t capacity, std::uint32_t max_attempts = 0) {
  Options o;
  o.capacity = capacity;
  o.max_payload = 64;
  o.max_attempts = max_attempts;
  o.default_lease = 60'000ms;
  return o;
}

ClaimOptions lease_of(milliseconds lease, Owner owner = Owner::process) {
  ClaimOptions o;
  o.lease = lease;
  o.owner = owner;
  return o;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::size_t count_of(const std::string& haystack, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size()))
    ++n;
  return n;
}

void write_file(const std::string& path, const std::string& text) {
  // Beside it, then rename: a reader (the janitor on SIGHUP) never sees half.
  const std::string tmp = path + ".new";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
  }
  std::filesystem::rename(tmp, path);
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string s = test::read_to_eof(fd);
  ::close(fd);
  return s;
}

using test::TempDir;  // tests/support/temp_dir.hpp

// The segment of a queue, mapped by the test (as another process would), to
// forge owner records and crash states: tests/support/segment_view.hpp.
using Segment = test::SegmentView;
using test::dead_pid;

// ---------------------------------------------------------------------------
// Holder: a forked worker that claims n jobs and holds them (pause()) until
// the test kills it. It reports each claim to the parent through a pipe.
// ---------------------------------------------------------------------------
struct HeldRecord {
  JobId id;
  std::uint64_t token;
  std::uint32_t slot;
  std::uint32_t attempt;
  std::int64_t deadline_ms;  // steady_clock (CLOCK_MONOTONIC) ms

  [[nodiscard]] Lease lease() const { return Lease{slot, token, id}; }
};
static_assert(std::is_trivially_copyable_v<HeldRecord>);

// Reads exactly n bytes within `limit`; false on timeout or EOF.
bool read_exact(int fd, void* out, std::size_t n, std::chrono::milliseconds limit) {
  auto* p = static_cast<char*>(out);
  const auto until = std::chrono::steady_clock::now() + limit;
  while (n > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return false;
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

class Holder {
 public:
  Holder(const std::string& queue, std::size_t n, const ClaimOptions& options) {
    const pid_t parent = ::getpid();
    pid_ = test::fork_child([&]() -> int {
      test::die_with_parent(parent);
      pipe_.close_read();
      auto q = Queue::open(queue);
      Job job;
      for (std::size_t k = 0; k < n; ++k) {
        const bool got =
            test::poll_until([&] { return q.try_claim(job, options) == ClaimStatus::ok; }, 10s, 1ms);
        if (!got) return 2;
        const HeldRecord rec{
            job.id, job.lease.token, job.lease.slot, job.attempt,
            std::chrono::duration_cast<std::chrono::milliseconds>(job.deadline.time_since_epoch()).count()};
        if (!test::write_all(pipe_.write_fd(), &rec, sizeof rec)) return 3;
      }
      for (;;) ::pause();  // hold the leases until killed
    });
    pipe_.close_write();
    held_.resize(n);
    ok_ = pid_ > 0 && (n == 0 || read_exact(pipe_.read_fd(), held_.data(), n * sizeof(HeldRecord), 20s));
  }
  ~Holder() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGCONT);
      test::kill_and_reap(pid_);
    }
  }
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::vector<HeldRecord>& held() const { return held_; }
  [[nodiscard]] const HeldRecord& first() const { return held_.at(0); }

  // SIGKILL and reap: from now on its PID is proven dead.
  void kill_and_reap() {
    if (reaped_) return;
    ::kill(pid_, SIGCONT);
    test::kill_and_reap(pid_);
    reaped_ = true;
  }
  // SIGKILL, then wait until it is a zombie (without reaping it).
  bool kill_leave_zombie() {
    ::kill(pid_, SIGKILL);
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) != 0) {
      if (errno != EINTR) return false;
    }
    return true;
  }
  bool stop() {
    if (::kill(pid_, SIGSTOP) != 0) return false;
    int status = 0;
    return ::waitpid(pid_, &status, WUNTRACED) == pid_ && WIFSTOPPED(status);
  }

 private:
  test::Pipe pipe_;
  pid_t pid_ = -1;
  bool ok_ = false;
  bool reaped_ = false;
  std::vector<HeldRecord> held_;
};

// Claims `n` jobs, polling up to `limit`; the jobs claimed (maybe fewer).
std::vector<Job> claim_n_within(Queue& q, std::size_t n, std::chrono::milliseconds limit,
                                const ClaimOptions& options = lease_of(60'000ms)) {
  std::vector<Job> got;
  Job job;
  test::poll_until(
      [&] {
        while (got.size() < n && q.try_claim(job, options) == ClaimStatus::ok) got.push_back(job);
        return got.size() >= n;
      },
      limit, 5ms);
  return got;
}

// ---------------------------------------------------------------------------
// JanitorProcess: the real binary, fork+exec'd, stdout and stderr to files.
// The child's environment is ours minus the systemd variables (NOTIFY_SOCKET,
// WATCHDOG_*, JOURNAL_STREAM), plus `env` ("NAME=value").
// ---------------------------------------------------------------------------
class JanitorProcess {
 public:
  explicit JanitorProcess(const std::vector<std::string>& args, const std::vector<std::string>& env = {})
      : out_("jan-out"), err_("jan-err") {
    std::vector<std::string> argv_s{kJanitorBin};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s;
    auto overridden = [&](std::string_view entry) {
      const std::string_view key = entry.substr(0, entry.find('='));
      for (const char* scrub : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"})
        if (key == scrub) return true;
      for (const auto& e : env)
        if (key == std::string_view(e).substr(0, e.find('='))) return true;
      return false;
    };
    for (char** e = environ; e != nullptr && *e != nullptr; ++e)
      if (!overridden(*e)) env_s.emplace_back(*e);
    env_s.insert(env_s.end(), env.begin(), env.end());
    std::vector<char*> argv_p, env_p;
    for (auto& s : argv_s) argv_p.push_back(s.data());
    argv_p.push_back(nullptr);
    for (auto& s : env_s) env_p.push_back(s.data());
    env_p.push_back(nullptr);

    const int out_fd = ::open(out_.path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    const int err_fd = ::open(err_.path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out_fd < 0 || err_fd < 0 || null_fd < 0) throw std::runtime_error("cannot open janitor output files");
    const pid_t parent = ::getpid();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(98);
      ::dup2(null_fd, 0);
      ::dup2(out_fd, 1);
      ::dup2(err_fd, 2);
      ::execve(argv_p[0], argv_p.data(), env_p.data());
      ::_exit(127);
    }
    ::close(out_fd);
    ::close(err_fd);
    ::close(null_fd);
    if (pid_ < 0) throw std::runtime_error("fork failed");
  }
  ~JanitorProcess() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      test::wait_child(pid_);
    }
  }
  JanitorProcess(const JanitorProcess&) = delete;
  JanitorProcess& operator=(const JanitorProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string err() const { return err_.contents(); }
  [[nodiscard]] std::string out() const { return out_.contents(); }

  // nullopt while it runs; else its exit status (0..255, or 128 + signal).
  std::optional<int> status() {
    if (!status_) status_ = test::try_wait_child(pid_);
    return status_;
  }
  bool running() { return !status().has_value(); }
  // Waits for it to exit (up to `limit`); its status, or nullopt if it still runs.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    test::poll_until([&] { return status().has_value(); }, limit, 5ms);
    return status();
  }
  // Sends `sig` and waits for the exit (up to 30 s; then SIGKILL, status -1).
  int stop(int sig = SIGTERM) {
    if (status_) return *status_;
    ::kill(pid_, sig);
    if (auto s = wait_exit(30s)) return *s;
    ::kill(pid_, SIGKILL);
    test::wait_child(pid_);
    status_ = -1;
    return -1;
  }
  // Waits until stderr contains `needle` (or the process exits / `limit` passes).
  bool wait_log(std::string_view needle, std::chrono::milliseconds limit = 20s) {
    return test::poll_until([&] { return contains(err(), needle) || !running(); }, limit, 5ms) &&
           contains(err(), needle);
  }

 private:
  test::TempFile out_;
  test::TempFile err_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

struct RunResult {
  std::optional<int> status;  // nullopt: did not exit within the bound (killed)
  std::string out;
  std::string err;
};

// Runs the janitor to completion (bounded).
RunResult run_janitor(const std::vector<std::string>& args, std::chrono::milliseconds limit = 30s) {
  JanitorProcess j(args);
  RunResult r;
  r.status = j.wait_exit(limit);
  r.out = j.out();
  r.err = j.err();
  return r;
}

// ---------------------------------------------------------------------------
// Metrics files (Prometheus text format).
// ---------------------------------------------------------------------------

// Parses a whole exposition: every line is "# HELP ...", "# TYPE name type",
// or "series value" with series = name or name{labels}; the text ends with a
// newline. Returns nullopt if any line does not parse.
std::optional<std::map<std::string, double>> parse_metrics(const std::string& text) {
  if (text.empty() || text.back() != '\n') return std::nullopt;
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) return std::nullopt;
    if (line[0] == '#') {
      if (line.rfind("# HELP ", 0) != 0 && line.rfind("# TYPE ", 0) != 0) return std::nullopt;
      continue;
    }
    const auto space = line.rfind(' ');
    if (space == std::string::npos || space == 0) return std::nullopt;
    const std::string series = line.substr(0, space);
    const std::string value = line.substr(space + 1);
    const auto brace = series.find('{');
    if (brace != std::string::npos && series.back() != '}') return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end == nullptr || *end != '\0') return std::nullopt;
    out[series] = v;
  }
  return out;
}

std::optional<std::map<std::string, double>> read_metrics(const std::string& path) {
  return parse_metrics(read_file(path));
}

// The gauge of a jobring::Stats field (jobring_FIELD) for one queue.
std::string gauge_series(const std::string& queue, const char* field) {
  return std::string("jobring_") + field + "{queue=\"" + queue + "\"}";
}

double metric_or(const std::optional<std::map<std::string, double>>& m, const std::string& series,
                 double fallback) {
  if (!m) return fallback;
  const auto it = m->find(series);
  return it == m->end() ? fallback : it->second;
}

double sweeps_in(const std::string& metrics_path) {
  return metric_or(read_metrics(metrics_path), "jobring_janitor_sweeps_total", -1);
}

// Waits until the janitor writing `metrics_path` has done `n` more sweeps
// than now (so that whatever it should have done, it has had the chance to).
bool wait_sweeps(const std::string& metrics_path, double n, std::chrono::milliseconds limit = 30s) {
  double start = -1;
  if (!test::poll_until([&] { return (start = sweeps_in(metrics_path)) >= 0; }, limit, 5ms)) return false;
  return test::poll_until([&] { return sweeps_in(metrics_path) >= start + n; }, limit, 5ms);
}

// ===========================================================================
// 1. Queue::sweep(), the library's recovery pass (no binary)
// ===========================================================================

// Guarantee 8 / T7: the lease of an owner proven dead (SIGKILLed and reaped)
// goes back to ready at the first sweep — long before its 60 s deadline —
// counted as reclaimed (not expired), and the next claim is attempt 2 of the
// same job. Fails if sweep waits for the deadline or miscounts.
TEST(Sweep, ReclaimsDeadOwnersLeaseAtOnce) {
  Watchdog dog(60s, "Sweep.ReclaimsDeadOwnersLeaseAtOnce");
  QueueName name("jan-dead");
  Queue q = Queue::create(name, small_options(8));
  const PushResult pushed = q.push("job");
  ASSERT_TRUE(pushed);
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(q.sweep().reclaimed, 0u) << "a live owner's lease was reclaimed";
  holder.kill_and_reap();

  const SweepResult r = q.sweep();
  EXPECT_EQ(r.reclaimed, 1u);
  EXPECT_EQ(r.expired, 0u);
  EXPECT_EQ(r.dead_lettered, 0u);
  const Stats s = q.stats();
  EXPECT_EQ(s.reclaimed, 1u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.leased, 0u);
  auto job = q.try_claim(lease_of(60'000ms));
  ASSERT_TRUE(job.has_value()) << "the dead owner's job is not claimable after the sweep";
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(job->attempt, 2u);
  EXPECT_EQ(job->text(), "job");
  // The dead worker's lease is fenced (guarantee 4).
  EXPECT_EQ(q.ack(holder.first().lease()), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  // Nothing more to do: a second sweep changes nothing.
  const SweepResult again = q.sweep();
  EXPECT_EQ(again.reclaimed + again.expired + again.dead_lettered + again.recovered_writes, 0u);
}

// Guarantee 8: an owner that was killed but not yet reaped (a zombie) is dead.
TEST(Sweep, ReclaimsZombieOwnersLease) {
  Watchdog dog(60s, "Sweep.ReclaimsZombieOwnersLease");
  QueueName name("jan-zomb");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(holder.kill_leave_zombie());
  const SweepResult r = q.sweep();
  EXPECT_EQ(r.reclaimed, 1u);
  EXPECT_EQ(q.stats().ready, 1u);
  holder.kill_and_reap();
}

// The owner record a claim writes is what proof of death needs: the claiming
// handle's liveness token, tagged with the lease's generation, and a token
// that the handle really holds (its lock is taken, so the record is alive).
// The PID beside it is for display. A detached lease names nobody.
TEST(Sweep, ClaimRecordsItsOwnersLivenessToken) {
  QueueName name("jan-rec");
  Queue q = Queue::create(name, small_options(4));
  ASSERT_TRUE(q.push("job"));
  auto job = q.try_claim(lease_of(60'000ms));
  ASSERT_TRUE(job.has_value());
  Segment seg(name);
  const Word w = seg.word(job->lease.slot);
  ASSERT_EQ(w.state(), State::leased);
  const SlotMeta& m = seg.meta(job->lease.slot);
  const std::uint64_t token = detail::owner_token(m.owner.load());
  ASSERT_NE(token, 0u);
  EXPECT_EQ(detail::owner_gen(m.owner.load()), w.gen());
  EXPECT_EQ(m.owner_pid.load(), static_cast<std::uint32_t>(::getpid()));
  // The token's lock is held (by the claiming handle): another holder is refused.
  EXPECT_THROW(seg.hold_token(token), std::runtime_error);
  // Detached: no owner.
  ASSERT_TRUE(q.push("job2"));
  auto detached = q.try_claim(lease_of(60'000ms, Owner::detached));
  ASSERT_TRUE(detached.has_value());
  EXPECT_EQ(detail::owner_token(seg.meta(detached->lease.slot).owner.load()), 0u);
}

// Guarantee 8: a stopped (SIGSTOP) worker is alive: however many sweeps run,
// its lease is not reclaimed.
TEST(Sweep, StoppedOwnerIsNotDead) {
  Watchdog dog(60s, "Sweep.StoppedOwnerIsNotDead");
  QueueName name("jan-stop");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(holder.stop());
  for (int i = 0; i < 50; ++i) {
    const SweepResult r = q.sweep();
    ASSERT_EQ(r.reclaimed, 0u) << "sweep " << i << " reclaimed a stopped worker's lease";
    ASSERT_EQ(r.expired, 0u);
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  holder.kill_and_reap();
  EXPECT_EQ(q.sweep().reclaimed, 1u);
}

// Guarantee 8 with a short lease: a stopped owner keeps its lease until the
// deadline (every sweep that finished before the deadline returned nothing),
// and after the deadline the lease is returned as expired — not as reclaimed
// from a dead owner. Fails if sweep takes a live lease early, or never.
TEST(Sweep, StoppedOwnersLeaseReturnsOnlyAfterDeadline) {
  Watchdog dog(60s, "Sweep.StoppedOwnersLeaseReturnsOnlyAfterDeadline");
  QueueName name("jan-stop2");
  Queue q = Queue::create(name, small_options(8));
  const PushResult pushed = q.push("job");
  ASSERT_TRUE(pushed);
  Holder holder(name, 1, lease_of(500ms));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(holder.stop());
  const auto deadline =
      std::chrono::steady_clock::time_point(std::chrono::milliseconds(holder.first().deadline_ms));
  int early_sweeps = 0;
  bool returned = false;
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!returned && std::chrono::steady_clock::now() < give_up) {
    const SweepResult r = q.sweep();
    const auto after = std::chrono::steady_clock::now();
    ASSERT_EQ(r.reclaimed, 0u) << "a stopped (live) owner was judged dead";
    if (r.expired > 0) {
      EXPECT_EQ(r.expired, 1u);
      // The sweep that returned it ended after the deadline (expiry is
      // strictly after it): it cannot have read a clock before the deadline.
      EXPECT_GE(after, deadline) << "lease returned before its deadline";
      returned = true;
    } else if (after + 2ms < deadline) {
      ++early_sweeps;
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(returned) << "the expired lease was never returned by sweep";
  std::printf("sweeps before the deadline that kept the lease: %d\n", early_sweeps);
  const Stats s = q.stats();
  EXPECT_EQ(s.reclaimed, 0u);
  EXPECT_EQ(s.ready, 1u);
  ASSERT_EQ(::kill(holder.pid(), SIGCONT), 0);
  holder.kill_and_reap();
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(job->attempt, 2u);
}

// Guarantee 8: an expired lease of a live owner is returned by sweep as
// "expired" (T7 by deadline), and the job is claimable again.
TEST(Sweep, ReturnsExpiredLeaseOfLiveOwner) {
  Watchdog dog(60s, "Sweep.ReturnsExpiredLeaseOfLiveOwner");
  QueueName name("jan-exp");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  auto first = q.try_claim(lease_of(1ms));
  ASSERT_TRUE(first.has_value());
  std::size_t expired = 0;
  ASSERT_TRUE(test::poll_until([&] { return (expired += q.sweep().expired) > 0; }, 20s, 2ms));
  EXPECT_EQ(expired, 1u);
  EXPECT_EQ(q.stats().reclaimed, 0u);
  EXPECT_EQ(q.ack(first->lease), LeaseStatus::lease_lost);
  auto again = q.try_claim();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->attempt, 2u);
}

// Guarantee 8 (reused PID): the owner's PID is alive but its start time is
// not the one recorded with the lease — the PID was reused by another process
// — so the owner is dead and the lease is reclaimed. Forged: the live owner is
// this process, and only the start-time bits of its owner record are changed
// (the generation tag still matches). Also: token 0 (nobody) never proves
// death.
TEST(Sweep, ATokenNobodyHoldsCountsAsGone) {
  Watchdog dog(60s, "Sweep.ATokenNobodyHoldsCountsAsGone");
  QueueName name("jan-reuse");
  Queue q = Queue::create(name, small_options(8));
  const PushResult pushed = q.push("job");
  ASSERT_TRUE(pushed);
  auto job = q.try_claim(lease_of(60'000ms));
  ASSERT_TRUE(job.has_value());
  Segment seg(name);
  SlotMeta& m = seg.meta(job->lease.slot);
  const std::uint64_t gen = seg.word(job->lease.slot).gen();
  ASSERT_NE(detail::owner_token(m.owner.load()), 0u);

  // Control: the real owner record: alive, not reclaimed.
  EXPECT_EQ(q.sweep().reclaimed, 0u);
  // Token 0 names nobody: nothing to prove: not reclaimed.
  m.owner.store(detail::make_owner(gen, 0));
  EXPECT_EQ(q.sweep().reclaimed, 0u);
  EXPECT_EQ(q.stats().leased, 1u);

  // A token no process holds: its owner is gone.
  m.owner.store(detail::make_owner(gen, test::kDeadToken));
  const SweepResult r = q.sweep();
  EXPECT_EQ(r.reclaimed, 1u);
  EXPECT_EQ(q.stats().reclaimed, 1u);
  // This process's lease is fenced now; the job is claimable as attempt 2.
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::lease_lost);
  auto again = q.try_claim(lease_of(60'000ms));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->id, pushed.id);
  EXPECT_EQ(again->attempt, 2u);
  EXPECT_EQ(q.ack(again->lease), LeaseStatus::ok);
}

// T4 crash analysis: an owner record whose generation tag does not match the
// state word belongs to an earlier lease (or the claimer died before writing
// it): it is not trusted, so even a dead PID in it does not free the slot
// before the deadline. Restoring the right tag makes the same dead owner
// reclaimable (so the tag is what held it).
TEST(Sweep, OwnerRecordWithStaleGenerationIsNotTrusted) {
  Watchdog dog(60s, "Sweep.OwnerRecordWithStaleGenerationIsNotTrusted");
  QueueName name("jan-gen");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  Segment seg(name);
  const std::uint32_t slot = holder.first().slot;
  const Word w = seg.word(slot);
  ASSERT_EQ(w.state(), State::leased);
  SlotMeta& m = seg.meta(slot);
  const std::uint64_t good = m.owner.load();
  ASSERT_EQ(detail::owner_gen(good), w.gen());
  ASSERT_NE(detail::owner_token(good), 0u);
  m.owner.store(detail::make_owner((w.gen() + detail::kGenMask) & detail::kGenMask,  // gen - 1
                                   detail::owner_token(good)));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(q.sweep().reclaimed, 0u) << "an untrusted owner record was believed";
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  m.owner.store(good);
  EXPECT_EQ(q.sweep().reclaimed, 1u);
  EXPECT_EQ(q.stats().ready, 1u);
}

// Owner::detached: a detached lease has no owner to prove dead, so it lives
// until its deadline even when the process that claimed it is gone.
TEST(Sweep, DetachedLeaseIsNotReclaimedBeforeDeadline) {
  Watchdog dog(60s, "Sweep.DetachedLeaseIsNotReclaimedBeforeDeadline");
  QueueName name("jan-det");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms, Owner::detached));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  for (int i = 0; i < 10; ++i) {
    const SweepResult r = q.sweep();
    ASSERT_EQ(r.reclaimed + r.expired, 0u) << "a detached lease was returned before its deadline";
  }
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  // It still works for whoever holds the handle (the lease is plain data).
  EXPECT_EQ(q.ack(holder.first().lease()), LeaseStatus::ok);
}

// T8 by sweep: with max_attempts = 1 a dead owner's job has used its only
// attempt, so the sweep dead-letters it instead of returning it to ready.
TEST(Sweep, DeadOwnerWithAttemptsUsedUpGoesToDead) {
  Watchdog dog(60s, "Sweep.DeadOwnerWithAttemptsUsedUpGoesToDead");
  QueueName name("jan-dl");
  Queue q = Queue::create(name, small_options(8, /*max_attempts=*/1));
  const PushResult pushed = q.push("poison");
  ASSERT_TRUE(pushed);
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  const SweepResult r = q.sweep();
  EXPECT_EQ(r.dead_lettered, 1u);
  EXPECT_EQ(r.reclaimed, 1u);
  const Stats s = q.stats();
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.ready, 0u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.dead_lettered, 1u);
  EXPECT_EQ(q.try_claim(), std::nullopt);
  const auto dead = q.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, pushed.id);
  // Requeue works on it (T9).
  EXPECT_TRUE(q.requeue(pushed.id));
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->attempt, 1u);
}

// T1/T2 by sweep: a slot left WRITING by a producer that is gone (a token no
// process holds, or one whose holder let go of it) is freed by the sweep,
// while one WRITING by a live producer (a held token) is not. A word that
// names nobody (token 0, which no live process writes) is freed too: a
// hostile word must not hide a slot for ever.
TEST(Sweep, FreesHalfWrittenSlotOfDeadProducerOnly) {
  Watchdog dog(60s, "Sweep.FreesHalfWrittenSlotOfDeadProducerOnly");
  QueueName name("jan-wr");
  Queue q = Queue::create(name, small_options(8));
  Segment seg(name);
  auto forge_writing = [&](std::uint32_t slot, std::uint64_t aux) {
    seg.forge(slot, detail::T::reserve, aux);
  };
  constexpr std::uint64_t kLive = 0x2222, kLetGo = 0x3333;
  Segment holder(name);
  holder.hold_token(kLive);
  holder.hold_token(kLetGo);
  holder.release_token(kLetGo);
  forge_writing(1, detail::make_writer(test::kDeadToken));
  forge_writing(2, detail::make_writer(kLive));
  forge_writing(3, detail::make_writer(kLetGo));  // held once, then let go (died, exec'd, closed)
  forge_writing(4, detail::make_writer(0));       // names nobody: hostile
  const SweepResult r = q.sweep();
  EXPECT_EQ(r.recovered_writes, 3u);
  EXPECT_EQ(seg.word(1).state(), State::free);
  EXPECT_EQ(seg.word(2).state(), State::writing) << "a live producer's slot was freed under it";
  EXPECT_EQ(seg.word(3).state(), State::free) << "a token let go of kept its slot";
  EXPECT_EQ(seg.word(4).state(), State::free);
  EXPECT_EQ(q.stats().recovered_writes, 3u);
  EXPECT_EQ(q.sweep().recovered_writes, 0u);
}

// "Every change is a CAS from the word read": a sweep racing the acks of a
// dead worker's leases (handed to this process) loses and doubles nothing.
// Each job is either acked (ack ok) or returned by the sweep (then the ack is
// fenced), never both and never neither: acked + reclaimed == pushed, and the
// jobs claimable afterwards are exactly those whose ack was fenced.
TEST(Sweep, RacingAcksLosesAndDoublesNothing) {
  Watchdog dog(120s, "Sweep.RacingAcksLosesAndDoublesNothing");
  const long rounds = test::env_long("JOBRING_JANITOR_RACE_ROUNDS", 12);
  constexpr std::size_t kJobs = 2000;
  constexpr std::uint32_t kCapacity = 2048;
  QueueName name("jan-race");
  Queue q = Queue::create(name, small_options(kCapacity));
  std::size_t total_acked = 0, total_reclaimed = 0;
  int mixed_rounds = 0;
  for (long round = 0; round < rounds; ++round) {
    std::map<JobId, std::string> pushed;
    for (std::size_t i = 0; i < kJobs; ++i) {
      const std::string payload = "r" + std::to_string(round) + "-" + std::to_string(i);
      const PushResult p = q.push(payload);
      ASSERT_TRUE(p);
      pushed[p.id] = payload;
    }
    Holder holder(name, kJobs, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();  // every lease's owner is now proven dead
    const std::uint64_t reclaimed_before = q.stats().reclaimed;

    // Both threads spin (no yield) until both are running, then start at once.
    std::atomic<int> arrived{0};
    std::atomic<bool> acks_done{false};
    std::atomic<std::size_t> acks_started{0};
    const int pace = std::array<int, 3>{8, 32, 128}[static_cast<std::size_t>(round / 4 % 3)];
    auto start_together = [&] {
      arrived.fetch_add(1);
      while (arrived.load() < 2) {
      }
    };
    std::vector<LeaseStatus> results(kJobs, LeaseStatus::lease_lost);
    std::size_t swept = 0;
    std::thread acker([&] {
      start_together();
      // Alternate directions so that the ack front meets the sweep front.
      for (std::size_t k = 0; k < kJobs; ++k) {
        const std::size_t i = (round % 2 == 0) ? k : kJobs - 1 - k;
        results[i] = q.ack(holder.held()[i].lease());
        acks_started.store(k + 1);
        // Pace the acks (they are faster than a sweep's per-slot work), at a
        // different pace in different rounds, so that the fronts overlap.
        for (int spin = 0; spin < pace; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
        // On a loaded machine the two threads rarely run at the same time:
        // give the sweeper the CPU now and then, in the middle of the acks.
        if (k % 256 == 255) std::this_thread::yield();
      }
      acks_done.store(true);
    });
    std::thread sweeper([&] {
      start_together();
      // Let the acks get a head start of 0, 1/4, 1/2 or 3/4 of the jobs, so
      // that the two fronts meet at different places in different rounds.
      const std::size_t head_start = kJobs * static_cast<std::size_t>(round % 4) / 4;
      while (acks_started.load() < head_start) {
      }
      while (!acks_done.load()) swept += q.sweep().reclaimed;
      swept += q.sweep().reclaimed;
    });
    acker.join();
    sweeper.join();

    std::set<JobId> acked, fenced;
    for (std::size_t i = 0; i < kJobs; ++i)
      (results[i] == LeaseStatus::ok ? acked : fenced).insert(holder.held()[i].id);
    EXPECT_EQ(acked.size() + swept, kJobs) << "round " << round;
    EXPECT_EQ(q.stats().reclaimed - reclaimed_before, swept) << "round " << round;
    // What is left is exactly the fenced jobs, each once, as attempt 2.
    std::set<JobId> left;
    Job job;
    while (q.try_claim(job) == ClaimStatus::ok) {
      EXPECT_TRUE(left.insert(job.id).second) << "job " << job.id << " claimable twice";
      EXPECT_EQ(acked.count(job.id), 0u) << "job " << job.id << " was acked and came back";
      EXPECT_EQ(job.attempt, 2u);
      EXPECT_EQ(job.text(), pushed[job.id]);
      EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
    }
    EXPECT_EQ(left, fenced) << "round " << round;
    const Stats s = q.stats();
    ASSERT_EQ(s.free, kCapacity) << "round " << round;
    total_acked += acked.size();
    total_reclaimed += swept;
    mixed_rounds += (!acked.empty() && swept > 0) ? 1 : 0;
  }
  std::printf(
      "acked by the late worker: %zu, reclaimed by sweep: %zu, rounds where both won some: %d of %ld\n",
      total_acked, total_reclaimed, mixed_rounds, rounds);
}

// The tests of the binary: skipped when jobring-janitor is not built. Each
// has a temporary directory, with an empty config file that the tests pass
// as --config so that the host's /etc/jobring/janitor.conf plays no part.
class JanitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_JANITOR();
    write_file(empty_conf(), "");
  }
  [[nodiscard]] std::string empty_conf() const { return dir.file("empty.conf"); }

  TempDir dir;
};
using JanitorBinary = JanitorTest;
using JanitorNotify = JanitorTest;
using JanitorSignals = JanitorTest;
using JanitorReload = JanitorTest;
using JanitorCli = JanitorTest;
using JanitorQueues = JanitorTest;
using JanitorMetrics = JanitorTest;
using JanitorTorture = JanitorTest;

// ===========================================================================
// 2. The binary: recovery
// ===========================================================================

// Guarantee 8 (the point of the daemon): a worker SIGKILLed while it holds a
// 60 s lease; with the janitor running the job is claimable again long before
// the lease would run out — a worker blocked in claim() gets it (woken).
TEST_F(JanitorBinary, ReclaimsKilledWorkersJobLongBeforeLease) {
  Watchdog dog(90s, "JanitorBinary.ReclaimsKilledWorkersJobLongBeforeLease");
  QueueName name("jan-bin");
  Queue q = Queue::create(name, small_options(8));
  const PushResult pushed = q.push("the job");
  ASSERT_TRUE(pushed);
  JanitorProcess jan({"--config", empty_conf(), "--queue", name, "--interval", "50ms"});
  ASSERT_TRUE(jan.wait_log("watching")) << jan.err();

  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  const auto killed_at = std::chrono::steady_clock::now();
  holder.kill_and_reap();
  Job job;
  const ClaimStatus st = q.claim(job, 20'000ms, lease_of(60'000ms));
  const auto took = std::chrono::steady_clock::now() - killed_at;
  ASSERT_EQ(st, ClaimStatus::ok) << "not reclaimed within 20 s; janitor stderr:\n" << jan.err();
  EXPECT_EQ(job.id, pushed.id);
  EXPECT_EQ(job.attempt, 2u);
  EXPECT_EQ(job.text(), "the job");
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(q.stats().reclaimed, 1u);
  std::printf("killed worker's job claimable again after %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_TRUE(jan.wait_log("reclaimed from dead owners")) << jan.err();
  EXPECT_TRUE(jan.running());
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// Guarantee 8: the janitor never takes a live owner's lease, even a stopped
// one's, however many sweeps it runs; once the owner dies, it does.
TEST_F(JanitorBinary, LeavesStoppedWorkersLeaseAlone) {
  Watchdog dog(90s, "JanitorBinary.LeavesStoppedWorkersLeaseAlone");
  const std::string metrics = dir.file("m.prom");
  QueueName name("jan-binstop");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(holder.stop());
  JanitorProcess jan(
      {"--config", empty_conf(), "--queue", name, "--interval", "10ms", "--metrics-file", metrics});
  ASSERT_TRUE(wait_sweeps(metrics, 20)) << jan.err();
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.stats().reclaimed, 0u);
  EXPECT_EQ(q.try_claim(), std::nullopt) << "the janitor took a stopped worker's lease";
  holder.kill_and_reap();
  const auto got = claim_n_within(q, 1, 20s);
  EXPECT_EQ(got.size(), 1u) << jan.err();
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// --once: one sweep, then exit 0 — and that sweep did the work.
TEST_F(JanitorBinary, OnceSweepsOnceAndExitsZero) {
  Watchdog dog(60s, "JanitorBinary.OnceSweepsOnceAndExitsZero");
  QueueName name("jan-once");
  Queue q = Queue::create(name, small_options(8));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  const RunResult r = run_janitor({"--config", empty_conf(), "--queue", name, "--once"});
  ASSERT_TRUE(r.status.has_value()) << "--once did not exit";
  EXPECT_EQ(*r.status, 0) << r.err;
  EXPECT_EQ(q.stats().reclaimed, 1u) << r.err;
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->attempt, 2u);

  // --once on a queue that does not exist: nothing to do, still a clean exit.
  QueueName missing("jan-once-missing");
  const RunResult r2 = run_janitor({"--config", empty_conf(), "--queue", missing, "--once"});
  ASSERT_TRUE(r2.status.has_value());
  EXPECT_EQ(*r2.status, 0) << r2.err;
}

// Without --queue the janitor looks after every jobring queue, including one
// created after it started. (Runs on the whole host: kept as short as possible.)
TEST_F(JanitorBinary, AllQueuesModePicksUpANewQueue) {
  Watchdog dog(90s, "JanitorBinary.AllQueuesModePicksUpANewQueue");
  QueueName name("jan-all");
  JanitorProcess jan({"--config", empty_conf(), "--interval", "20ms"});
  ASSERT_TRUE(jan.wait_log("started")) << jan.err();
  Queue q = Queue::create(name, small_options(8));
  const PushResult pushed = q.push("job");
  ASSERT_TRUE(pushed);
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  const auto got = claim_n_within(q, 1, 20s);
  const int status = jan.stop();
  ASSERT_EQ(got.size(), 1u) << "a queue created after start was not looked after:\n" << jan.err();
  EXPECT_EQ(got[0].id, pushed.id);
  EXPECT_EQ(got[0].attempt, 2u);
  EXPECT_TRUE(contains(jan.err(), "queue '" + name.str() + "': watching")) << jan.err();
  EXPECT_EQ(status, 0) << jan.err();
}

// ===========================================================================
// 3. systemd notification protocol (a fake NOTIFY_SOCKET)
// ===========================================================================

class NotifySocket {
 public:
  explicit NotifySocket(bool abstract) {
    static std::atomic<int> counter{0};
    const std::string base =
        "jobring-test.notify." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      env_ = "@" + base;
      addr.sun_path[0] = '\0';
      std::memcpy(addr.sun_path + 1, base.data(), base.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + base.size());
    } else {
      path_ = "/tmp/" + base;
      ::unlink(path_.c_str());
      env_ = path_;
      std::memcpy(addr.sun_path, path_.data(), path_.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1);
    }
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) != 0)
      throw std::runtime_error(std::string("bind failed: ") + std::strerror(errno));
  }
  ~NotifySocket() {
    ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  [[nodiscard]] std::string env() const { return "NOTIFY_SOCKET=" + env_; }

  // Receives datagrams until one satisfies `pred` (true) or `limit` passes.
  // Every datagram received is kept in messages().
  template <class Pred>
  bool wait_for(Pred&& pred, std::chrono::milliseconds limit = 20s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      const int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (pr < 0 && errno == EINTR) continue;
      if (pr <= 0) return false;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) continue;
      messages_.emplace_back(buf, static_cast<std::size_t>(n));
      if (pred(messages_.back())) return true;
    }
  }
  bool wait_for_line(const std::string& line, std::chrono::milliseconds limit = 20s) {
    return wait_for([&](const std::string& m) { return has_line(m, line); }, limit);
  }
  [[nodiscard]] const std::vector<std::string>& messages() const { return messages_; }
  [[nodiscard]] std::string all() const {
    std::string s;
    for (const auto& m : messages_) s += "[" + m + "] ";
    return s;
  }

  static bool has_line(const std::string& message, const std::string& line) {
    std::istringstream in(message);
    std::string l;
    while (std::getline(in, l))
      if (l == line) return true;
    return false;
  }
  static bool has_line_starting(const std::string& message, const std::string& prefix) {
    std::istringstream in(message);
    std::string l;
    while (std::getline(in, l))
      if (l.rfind(prefix, 0) == 0 && l.size() > prefix.size()) return true;
    return false;
  }

 private:
  int fd_ = -1;
  std::string path_;
  std::string env_;
  std::vector<std::string> messages_;
};

// The sd_notify protocol of a Type=notify service with a watchdog: READY=1
// (with a STATUS= summary) after the first sweep (a dead owner's job that was
// there at start is already reclaimed when READY=1 arrives), WATCHDOG=1 repeatedly at
// half of WATCHDOG_USEC, RELOADING=1 then READY=1 around a SIGHUP reload, and
// STOPPING=1 on SIGTERM, after which the process exits 0. The parameter:
// NOTIFY_SOCKET is an abstract socket ("@name"), or a path in the file system.
class JanitorNotifyProtocol : public JanitorTest, public ::testing::WithParamInterface<bool> {};

INSTANTIATE_TEST_SUITE_P(Socket, JanitorNotifyProtocol, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Abstract" : "Path";
                         });

TEST_P(JanitorNotifyProtocol, ReadyWatchdogReloadStopping) {
  Watchdog dog(90s, "JanitorNotifyProtocol.ReadyWatchdogReloadStopping");
  const bool abstract = GetParam();
  QueueName name("jan-notify");
  Queue q = Queue::create(name, small_options(4));
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  NotifySocket sock(abstract);
  JanitorProcess jan({"--config", empty_conf(), "--queue", name, "--interval", "50ms"},
                     {sock.env(), "WATCHDOG_USEC=200000"});
  std::string ready;
  ASSERT_TRUE(sock.wait_for([&](const std::string& m) {
    return NotifySocket::has_line(m, "READY=1") && !(ready = m).empty();
  })) << "no READY=1; got: "
      << sock.all() << "\nstderr:\n"
      << jan.err();
  EXPECT_TRUE(NotifySocket::has_line_starting(ready, "STATUS="))
      << "READY=1 without a STATUS= line: " << ready;
  EXPECT_EQ(q.stats().reclaimed, 1u) << "READY=1 came before the first sweep";
  // WATCHDOG=1, several times (every 100 ms here).
  int pings = 0;
  ASSERT_TRUE(sock.wait_for([&](const std::string& m) {
    return NotifySocket::has_line(m, "WATCHDOG=1") && ++pings >= 4;
  })) << "only "
      << pings << " WATCHDOG=1; got: " << sock.all();
  // A reload is announced and followed by READY=1 again.
  ASSERT_EQ(::kill(jan.pid(), SIGHUP), 0);
  ASSERT_TRUE(sock.wait_for_line("RELOADING=1")) << sock.all();
  ASSERT_TRUE(sock.wait_for_line("READY=1")) << sock.all();
  ASSERT_TRUE(sock.wait_for_line("WATCHDOG=1")) << "no watchdog ping after the reload: " << sock.all();
  // SIGTERM: STOPPING=1, exit 0.
  ASSERT_EQ(::kill(jan.pid(), SIGTERM), 0);
  ASSERT_TRUE(sock.wait_for_line("STOPPING=1")) << sock.all() << "\nstderr:\n" << jan.err();
  const auto status = jan.wait_exit(30s);
  ASSERT_TRUE(status.has_value()) << "did not exit after SIGTERM";
  EXPECT_EQ(*status, 0) << jan.err();
}

// WATCHDOG_PID names another process: the watchdog is not ours, no pings
// (sd_watchdog_enabled(3)); READY=1 and STOPPING=1 still come. And SIGINT
// stops as cleanly as SIGTERM.
TEST_F(JanitorNotify, ForeignWatchdogPidMeansNoPingsAndSigintStops) {
  Watchdog dog(90s, "JanitorNotify.ForeignWatchdogPidMeansNoPingsAndSigintStops");
  const std::string metrics = dir.file("m.prom");
  QueueName name("jan-notify2");
  Queue q = Queue::create(name, small_options(4));
  NotifySocket sock(false);
  JanitorProcess jan(
      {"--config", empty_conf(), "--queue", name, "--interval", "10ms", "--metrics-file", metrics},
      {sock.env(), "WATCHDOG_USEC=20000", "WATCHDOG_PID=1"});
  ASSERT_TRUE(sock.wait_for_line("READY=1")) << sock.all() << jan.err();
  ASSERT_TRUE(wait_sweeps(metrics, 20)) << jan.err();  // 200+ ms: ~20 pings if they were ours
  ASSERT_EQ(::kill(jan.pid(), SIGINT), 0);
  ASSERT_TRUE(sock.wait_for_line("STOPPING=1")) << sock.all();
  for (const auto& m : sock.messages()) EXPECT_FALSE(NotifySocket::has_line(m, "WATCHDOG=1")) << sock.all();
  const auto status = jan.wait_exit(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << jan.err();
}

// Signals cut the sleep between sweeps short: with --interval 1h, SIGHUP
// reloads and sweeps at once (a dead owner's job is returned), and SIGTERM
// stops at once, exit 0.
TEST_F(JanitorSignals, SignalsInterruptALongInterval) {
  Watchdog dog(90s, "JanitorSignals.SignalsInterruptALongInterval");
  QueueName name("jan-longint");
  Queue q = Queue::create(name, small_options(4));
  JanitorProcess jan({"--config", empty_conf(), "--queue", name, "--interval", "1h"});
  ASSERT_TRUE(jan.wait_log("watching")) << jan.err();
  ASSERT_TRUE(q.push("job"));
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  ASSERT_EQ(::kill(jan.pid(), SIGHUP), 0);
  EXPECT_EQ(claim_n_within(q, 1, 20s).size(), 1u) << "SIGHUP did not lead to a sweep:\n" << jan.err();
  ASSERT_EQ(::kill(jan.pid(), SIGTERM), 0);
  const auto status = jan.wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << "SIGTERM did not stop a janitor sleeping for 1h";
  EXPECT_EQ(*status, 0) << jan.err();
}

// ===========================================================================
// 4. SIGHUP reload
// ===========================================================================

// SIGHUP re-reads the config file: a queue added to it is looked after from
// then on (a dead owner's job on it is reclaimed), and one that was not in it
// was not swept before. A bad config on reload is logged, the janitor keeps
// running, and the old configuration stays in force.
TEST_F(JanitorReload, SighupPicksUpNewQueueAndKeepsOldConfigOnError) {
  Watchdog dog(120s, "JanitorReload.SighupPicksUpNewQueueAndKeepsOldConfigOnError");
  const std::string conf = dir.file("janitor.conf");
  const std::string metrics = dir.file("m.prom");
  QueueName a("jan-hup-a"), b("jan-hup-b");
  Queue qa = Queue::create(a, small_options(8));
  Queue qb = Queue::create(b, small_options(8));
  write_file(conf, "# only A\nqueue = " + a.str() + "\ninterval = 20ms\n");
  JanitorProcess jan({"--config", conf, "--metrics-file", metrics});
  ASSERT_TRUE(jan.wait_log("queue '" + a.str() + "': watching")) << jan.err();

  // B is not watched yet: a dead owner's job on it stays leased.
  ASSERT_TRUE(qb.push("b1"));
  {
    Holder holder(b, 1, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    ASSERT_TRUE(wait_sweeps(metrics, 10)) << jan.err();
    EXPECT_EQ(qb.stats().leased, 1u) << "B was swept before it was configured";
    EXPECT_EQ(metric_or(read_metrics(metrics), gauge_series(b, "ready"), -1), -1);
  }

  write_file(conf, "# A and B\nqueue = " + a.str() + "\nqueue = " + b.str() + "\ninterval = 20ms\n");
  ASSERT_EQ(::kill(jan.pid(), SIGHUP), 0);
  auto got = claim_n_within(qb, 1, 20s);
  ASSERT_EQ(got.size(), 1u) << "B's dead owner's job not reclaimed after the reload:\n" << jan.err();
  EXPECT_EQ(got[0].attempt, 2u);
  EXPECT_EQ(qb.ack(got[0].lease), LeaseStatus::ok);
  EXPECT_TRUE(contains(jan.err(), "queue '" + b.str() + "': watching")) << jan.err();

  // A bad config file on reload: logged, still running, old config (A and B) kept.
  const std::vector<std::string> bad_configs = {"queue = " + a.str() + "\nno-such-key = 1\n",
                                                "this is not a config line\n", "interval = abc\n"};
  for (const std::string& bad : bad_configs) {
    const std::size_t failures = count_of(jan.err(), "reload failed");
    write_file(conf, bad);
    ASSERT_EQ(::kill(jan.pid(), SIGHUP), 0);
    ASSERT_TRUE(test::poll_until(
        [&] { return count_of(jan.err(), "reload failed") > failures || !jan.running(); }, 20s))
        << "no error logged for a bad config on reload:\n"
        << jan.err();
    ASSERT_TRUE(jan.running()) << "a bad config on reload killed the janitor:\n" << jan.err();
  }
  ASSERT_TRUE(qb.push("b2"));
  {
    Holder holder(b, 1, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    got = claim_n_within(qb, 1, 20s);
    ASSERT_EQ(got.size(), 1u) << "after a failed reload, B is no longer looked after:\n" << jan.err();
  }
  ASSERT_TRUE(qa.push("a1"));
  {
    Holder holder(a, 1, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    got = claim_n_within(qa, 1, 20s);
    ASSERT_EQ(got.size(), 1u) << "after a failed reload, A is no longer looked after:\n" << jan.err();
  }
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// A SIGHUP that arrives while the janitor is busy sweeping is not lost: it
// is acted on right after that sweep, not after the next sleep (which is an
// hour here). The queues are big so that a sweep takes a while, and the
// SIGHUP is sent as soon as the janitor says it has started (its first sweep
// follows at once). Correct code passes every time; code that sleeps
// without looking at a pending reload fails whenever the SIGHUP lands
// inside the sweep.
TEST_F(JanitorReload, SighupDuringASweepIsNotLost) {
  Watchdog dog(120s, "JanitorReload.SighupDuringASweepIsNotLost");
  const std::string conf = dir.file("janitor.conf");
  std::vector<std::unique_ptr<QueueName>> big;
  std::string listed;
  for (int i = 0; i < 4; ++i) {
    big.push_back(std::make_unique<QueueName>("jan-bigq"));
    Options o = small_options(1u << 20);
    o.max_payload = 1;
    (void)Queue::create(*big.back(), o);
    listed += "queue = " + big.back()->str() + "\n";
  }
  QueueName b("jan-hup-late");
  Queue qb = Queue::create(b, small_options(8));
  ASSERT_TRUE(qb.push("job"));
  Holder holder(b, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  write_file(conf, listed + "interval = 1h\n");
  JanitorProcess jan({"--config", conf});
  ASSERT_TRUE(test::poll_until([&] { return contains(jan.err(), "started") || !jan.running(); }, 20s, 0ms));
  write_file(conf, listed + "queue = " + b.str() + "\ninterval = 1h\n");
  ASSERT_EQ(::kill(jan.pid(), SIGHUP), 0);
  const bool during_first_sweep = !contains(jan.err(), "queue '" + big.back()->str() + "': watching");
  EXPECT_EQ(claim_n_within(qb, 1, 20s).size(), 1u)
      << "a SIGHUP sent " << (during_first_sweep ? "during" : "after")
      << " the first sweep was not acted on:\n"
      << jan.err();
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// ===========================================================================
// 5. Command line and config file errors: documented exit codes, messages
// ===========================================================================

struct BadArgs {
  std::vector<std::string> args;
  int exit_code;
  std::vector<std::string> mentions;  // the message names the problem
};

// A bounded run of the janitor (`what` names it in messages) exited with
// `code`, and its stderr mentions each of `mentions`. Call it inside
// ASSERT_NO_FATAL_FAILURE: a run that did not exit ends the test.
void expect_exit_mentioning(const RunResult& r, int code, const std::vector<std::string>& mentions,
                            const std::string& what) {
  ASSERT_TRUE(r.status.has_value()) << what << ": did not exit";
  EXPECT_EQ(*r.status, code) << what << ": stderr: " << r.err;
  for (const auto& m : mentions)
    EXPECT_TRUE(contains(r.err, m)) << what << ": stderr does not mention '" << m << "': " << r.err;
}

// Exit codes (from --help): 2 bad command line, 3 bad or unreadable config
// file. Each bad invocation exits with its code at once (never starts
// sweeping) and says on stderr what is wrong.
TEST_F(JanitorCli, BadCommandLineExitsTwoNamingTheProblem) {
  Watchdog dog(120s, "JanitorCli.BadCommandLineExitsTwoNamingTheProblem");
  const std::string empty = empty_conf();
  write_file(empty, "");
  const std::vector<BadArgs> cases = {
      {{"--bogus"}, 2, {"--bogus"}},
      {{"--interval", "abc"}, 2, {"interval", "abc"}},
      {{"--interval", "5ms"}, 2, {"interval", "5ms"}},
      {{"--interval", "2h"}, 2, {"interval", "2h"}},
      {{"--interval", "-1s"}, 2, {"interval"}},
      {{"--interval"}, 2, {"interval"}},
      {{"--log-level", "loud"}, 2, {"log-level", "loud"}},
      {{"--queue", "a/b"}, 2, {"a/b"}},
      {{"--queue", ".."}, 2, {".."}},
      {{"--queue", std::string(65, 'x')}, 2, {"xxxxxxxx"}},
      {{"--queue", ""}, 2, {"queue"}},
      // A stray word: e.g. "jobring-janitor orders" meant "--queue orders";
      // it must not start a janitor for every queue on the host.
      {{"orders"}, 2, {"orders"}},
  };
  // A named (non-existent) queue in every case, so that a case that is
  // wrongly accepted sweeps nothing else on the host.
  QueueName none("jan-none");
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--config", empty, "--once", "--queue", none};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string shown;
    for (const auto& a : c.args) shown += "'" + a + "' ";
    const RunResult r = run_janitor(args, 20s);
    ASSERT_NO_FATAL_FAILURE(expect_exit_mentioning(r, c.exit_code, c.mentions, shown));
    EXPECT_FALSE(contains(r.err, "watching")) << shown << ": started sweeping anyway: " << r.err;
  }
}

// Exit code 3 for every kind of bad config file (missing when named with
// --config, unknown key, bad syntax, a command-line-only option, bad values),
// with a message naming the file or the bad value.
TEST_F(JanitorCli, BadConfigFileExitsThree) {
  Watchdog dog(120s, "JanitorCli.BadConfigFileExitsThree");
  QueueName name("jan-cfg");
  struct ConfCase {
    std::string what;
    std::optional<std::string> text;  // nullopt: the file does not exist
    std::vector<std::string> mentions;
  };
  const std::vector<ConfCase> cases = {
      {"missing file", std::nullopt, {"missing.conf"}},
      {"unknown key", "queue = " + name.str() + "\nno-such-key = 1\n", {"no-such-key"}},
      {"bad syntax", "queue " + name.str() + "\n", {"bad.conf"}},
      {"command-line-only option", "once = 1\n", {"once"}},
      // Bad values in the file are a bad config file too (exit 3), and the
      // message should say where they came from.
      {"bad interval value", "interval = abc\n", {"abc"}},
      {"bad log level value", "log-level = loud\n", {"loud"}},
      {"bad queue name value", "queue = a/b\n", {"a/b"}},
  };
  for (const auto& c : cases) {
    const std::string path = dir.file(c.text ? "bad.conf" : "missing.conf");
    if (c.text) write_file(path, *c.text);
    const RunResult r = run_janitor({"--config", path, "--once"}, 20s);
    ASSERT_NO_FATAL_FAILURE(expect_exit_mentioning(r, 3, c.mentions, c.what));
  }
}

// A config file that cannot be read (a directory) is "unreadable": exit 3,
// not silently treated as empty.
TEST_F(JanitorCli, UnreadableConfigFileExitsThree) {
  Watchdog dog(60s, "JanitorCli.UnreadableConfigFileExitsThree");
  std::filesystem::create_directory(dir.file("conf.d"));
  QueueName name("jan-cfgdir");
  const RunResult r = run_janitor({"--config", dir.file("conf.d"), "--queue", name, "--once"}, 20s);
  ASSERT_TRUE(r.status.has_value());
  EXPECT_EQ(*r.status, 3) << r.err;
}

// A good config file is used, and the command line wins over it.
TEST_F(JanitorCli, ConfigFileIsReadAndCommandLineWins) {
  Watchdog dog(60s, "JanitorCli.ConfigFileIsReadAndCommandLineWins");
  const std::string conf = dir.file("janitor.conf");
  write_file(conf, "# comment\ninterval = 1h\nlog-level = error\n");
  // log-level from the file (error): the info line "started" is not printed.
  RunResult r = run_janitor({"--config", conf, "--once"}, 20s);
  ASSERT_TRUE(r.status.has_value());
  EXPECT_EQ(*r.status, 0) << r.err;
  EXPECT_FALSE(contains(r.err, "started")) << r.err;
  // The command line wins: info, and the interval given here.
  r = run_janitor({"--config", conf, "--once", "--log-level", "info", "--interval", "250ms"}, 20s);
  ASSERT_TRUE(r.status.has_value());
  EXPECT_EQ(*r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "started")) << r.err;
  EXPECT_TRUE(contains(r.err, "250ms")) << r.err;
  // The shipped default config (everything commented out) is valid.
  const std::string shipped =
      (std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "daemon/janitor.conf")
          .string();
  ASSERT_TRUE(std::filesystem::exists(shipped)) << shipped;
  r = run_janitor({"--config", shipped, "--once", "--queue", "jan-none-such-queue"}, 20s);
  ASSERT_TRUE(r.status.has_value());
  EXPECT_EQ(*r.status, 0) << r.err;
}

// --help and --version: exit 0; --help documents the exit codes.
TEST_F(JanitorCli, HelpAndVersion) {
  Watchdog dog(60s, "JanitorCli.HelpAndVersion");
  for (const char* flag : {"--help", "-h"}) {
    const RunResult r = run_janitor({flag}, 20s);
    ASSERT_TRUE(r.status.has_value());
    EXPECT_EQ(*r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "Exit codes")) << r.out;
    EXPECT_TRUE(contains(r.out, "--queue")) << r.out;
    EXPECT_TRUE(contains(r.out, "--interval")) << r.out;
  }
  for (const char* flag : {"--version", "-V"}) {
    const RunResult r = run_janitor({flag}, 20s);
    ASSERT_TRUE(r.status.has_value());
    EXPECT_EQ(*r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "jobring-janitor")) << r.out;
  }
}

// ===========================================================================
// 6. Queues that come and go, corrupt segments
// ===========================================================================

// A queue removed and recreated (with other options) while the janitor runs:
// no crash; the janitor re-opens it and serves the new queue — all 40 dead
// owner's jobs of a 64-slot queue that replaced a 4-slot one are reclaimed
// (so it is not still sweeping the old mapping).
TEST_F(JanitorQueues, RemovedAndRecreatedQueueIsReopened) {
  Watchdog dog(120s, "JanitorQueues.RemovedAndRecreatedQueueIsReopened");
  QueueName name("jan-recreate");
  std::optional<Queue> q = Queue::create(name, small_options(4));
  JanitorProcess jan({"--config", empty_conf(), "--queue", name, "--interval", "20ms"});
  ASSERT_TRUE(jan.wait_log("watching")) << jan.err();
  const std::uint32_t capacities[] = {64, 8, 64};
  for (int round = 0; round < 3; ++round) {
    q.reset();
    ASSERT_TRUE(Queue::remove(name));
    if (round == 1) {
      // Let the janitor see it gone.
      ASSERT_TRUE(jan.wait_log("removed")) << jan.err();
    } else if (round == 2) {
      // Missing for a while.
      std::this_thread::sleep_for(100ms);
    }
    q = Queue::create(name, small_options(capacities[round]));
    const std::size_t n = capacities[round] * 5 / 8;
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(q->push("j" + std::to_string(i)));
    Holder holder(name, n, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    const auto got = claim_n_within(*q, n, 20s);
    ASSERT_EQ(got.size(), n) << "round " << round << ": recreated queue not served:\n" << jan.err();
    for (const auto& j : got) EXPECT_EQ(j.attempt, 2u);
    ASSERT_TRUE(jan.running()) << jan.err();
  }
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// Guarantee 9 for the daemon: a corrupt segment (garbage) is logged and
// skipped — once, not every sweep — and the janitor keeps serving its other
// queues; a valid queue whose slots are garbage is swept without a crash;
// when the corrupt segment is replaced by a real queue, the janitor picks
// that up.
TEST_F(JanitorQueues, CorruptSegmentIsLoggedAndSkipped) {
  Watchdog dog(120s, "JanitorQueues.CorruptSegmentIsLoggedAndSkipped");
  const std::string metrics = dir.file("m.prom");
  QueueName garbage("jan-garbage"), small("jan-small"), scribbled("jan-scribbled"), good("jan-good");
  std::mt19937_64 rng(42);
  auto write_segment = [](const std::string& queue, const std::string& bytes) {
    const int fd = ::open(("/dev/shm/jobring." + queue).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    const bool ok = fd >= 0 && test::write_all(fd, bytes.data(), bytes.size());
    if (fd >= 0) ::close(fd);
    return ok;
  };
  std::string bytes(8192, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  ASSERT_TRUE(write_segment(garbage, bytes));
  ASSERT_TRUE(write_segment(small, bytes.substr(0, 100)));  // smaller than a header
  {
    Queue s = Queue::create(scribbled, small_options(64));
    Segment seg(scribbled);
    for (auto& b : seg.body()) b = static_cast<std::byte>(rng());
  }
  Queue qg = Queue::create(good, small_options(8));
  JanitorProcess jan({"--config", empty_conf(), "--queue", garbage, "--queue", small, "--queue", scribbled,
                      "--queue", good, "--interval", "10ms", "--metrics-file", metrics});
  ASSERT_TRUE(jan.wait_log("queue '" + good.str() + "': watching")) << jan.err();
  ASSERT_TRUE(wait_sweeps(metrics, 30)) << jan.err();
  ASSERT_TRUE(jan.running()) << jan.err();
  const std::string log = jan.err();
  EXPECT_TRUE(contains(log, "'" + garbage.str() + "'")) << "corrupt segment not logged:\n" << log;
  EXPECT_TRUE(contains(log, "'" + small.str() + "'")) << "truncated segment not logged:\n" << log;
  EXPECT_LE(count_of(log, "'" + garbage.str() + "'"), 2u) << "logged every sweep:\n" << log;
  EXPECT_LE(count_of(log, "'" + small.str() + "'"), 2u) << "logged every sweep:\n" << log;

  // Still serving the good queue.
  ASSERT_TRUE(qg.push("job"));
  {
    Holder holder(good, 1, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    EXPECT_EQ(claim_n_within(qg, 1, 20s).size(), 1u) << jan.err();
  }

  // The garbage is replaced by a real queue: it is served.
  ASSERT_TRUE(Queue::remove(garbage));
  Queue fixed = Queue::create(garbage, small_options(8));
  ASSERT_TRUE(fixed.push("job"));
  {
    Holder holder(garbage, 1, lease_of(60'000ms));
    ASSERT_TRUE(holder.ok());
    holder.kill_and_reap();
    EXPECT_EQ(claim_n_within(fixed, 1, 20s).size(), 1u) << "a repaired queue is not served:\n" << jan.err();
  }
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// Empty segments (what a creator that died between shm_open and ftruncate
// leaves behind) are skipped without holding up the other queues: with 25 of
// them listed, the good queue is still watched at once and a dead worker's
// job on it comes back (bound 20 s for what takes ~10 ms). Fails if every
// sweep waits on each empty segment (Queue::open waits up to 1 s for a
// creator to finish: 25 s per sweep here).
TEST_F(JanitorQueues, EmptySegmentsDoNotStallOtherQueues) {
  Watchdog dog(120s, "JanitorQueues.EmptySegmentsDoNotStallOtherQueues");
  QueueName good("jan-good3");
  std::vector<std::unique_ptr<QueueName>> empties;
  std::vector<std::string> args = {"--config", empty_conf(), "--interval", "10ms"};
  for (int i = 0; i < 25; ++i) {
    empties.push_back(std::make_unique<QueueName>("jan-empty"));
    const int fd =
        ::open(("/dev/shm/jobring." + empties.back()->str()).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    args.push_back("--queue");
    args.push_back(empties.back()->str());
  }
  args.push_back("--queue");  // last: the janitor comes to it after the empty ones
  args.push_back(good);
  Queue qg = Queue::create(good, small_options(8));
  ASSERT_TRUE(qg.push("job"));
  Holder holder(good, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  JanitorProcess jan(args);
  const auto got = claim_n_within(qg, 1, 20s);
  EXPECT_EQ(got.size(), 1u) << "the good queue was held up by empty segments:\n" << jan.err();
  EXPECT_TRUE(jan.running()) << jan.err();
}

// A segment truncated behind the janitor's back (another process with write
// access shrinks /dev/shm/jobring.NAME while the janitor has it mapped) is a
// corrupt segment too: it must be skipped, not kill the janitor (SIGBUS when
// it touches the pages past the new end) and with it recovery for every
// other queue.
TEST_F(JanitorQueues, SegmentTruncatedWhileWatchedDoesNotKillTheJanitor) {
  Watchdog dog(120s, "JanitorQueues.SegmentTruncatedWhileWatchedDoesNotKillTheJanitor");
  const std::string metrics = dir.file("m.prom");
  QueueName shrunk("jan-shrunk"), good("jan-good2");
  { Queue s = Queue::create(shrunk, small_options(1024)); }
  Queue qg = Queue::create(good, small_options(8));
  JanitorProcess jan({"--config", empty_conf(), "--queue", shrunk, "--queue", good, "--interval", "10ms",
                      "--metrics-file", metrics});
  ASSERT_TRUE(jan.wait_log("queue '" + shrunk.str() + "': watching")) << jan.err();
  ASSERT_EQ(::truncate(("/dev/shm/jobring." + shrunk.str()).c_str(), 4096), 0);
  wait_sweeps(metrics, 20, 10s);
  ASSERT_TRUE(jan.running()) << "janitor died (status " << jan.status().value_or(-1) << "):\n" << jan.err();
  ASSERT_TRUE(qg.push("job"));
  Holder holder(good, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  holder.kill_and_reap();
  EXPECT_EQ(claim_n_within(qg, 1, 20s).size(), 1u) << jan.err();
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// The same, many times and at random moments: a big segment is shrunk to
// one page and grown back while the janitor sweeps it every 10 ms (so some
// truncations land in the middle of a sweep). The janitor survives, keeps
// serving another queue, and once the segment is whole again serves it too.
TEST_F(JanitorQueues, SegmentShrunkAndRegrownRepeatedlyDuringSweeps) {
  Watchdog dog(120s, "JanitorQueues.SegmentShrunkAndRegrownRepeatedlyDuringSweeps");
  QueueName shrunk("jan-shrink2"), good("jan-good4");
  Queue qs = Queue::create(shrunk, small_options(1u << 16));
  Queue qg = Queue::create(good, small_options(8));
  const std::string path = "/dev/shm/jobring." + shrunk.str();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  const off_t full = st.st_size;
  JanitorProcess jan({"--config", empty_conf(), "--queue", shrunk, "--queue", good, "--interval", "10ms"});
  ASSERT_TRUE(jan.wait_log("queue '" + shrunk.str() + "': watching")) << jan.err();
  std::mt19937 rng(11);
  const long rounds = test::env_long("JOBRING_JANITOR_SHRINK_ROUNDS", 40);
  for (long i = 0; i < rounds && jan.running(); ++i) {
    ASSERT_EQ(::truncate(path.c_str(), 4096), 0);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 15000));
    ASSERT_EQ(::truncate(path.c_str(), full), 0);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 15000));
  }
  ASSERT_TRUE(jan.running()) << "janitor died (status " << jan.status().value_or(-1) << "):\n" << jan.err();
  // Both queues served: a dead owner's job on each comes back. (The regrown
  // segment's slots past the first page were zeroed by the shrink: FREE.)
  ASSERT_TRUE(qg.push("job"));
  ASSERT_TRUE(qs.push("job"));
  Holder hg(good, 1, lease_of(60'000ms));
  Holder hs(shrunk, 1, lease_of(60'000ms));
  ASSERT_TRUE(hg.ok());
  ASSERT_TRUE(hs.ok());
  hg.kill_and_reap();
  hs.kill_and_reap();
  EXPECT_EQ(claim_n_within(qg, 1, 20s).size(), 1u) << jan.err();
  EXPECT_EQ(claim_n_within(qs, 1, 20s).size(), 1u) << "the regrown segment is not served:\n" << jan.err();
  EXPECT_TRUE(contains(jan.err(), "dropped")) << jan.err();
  std::printf("segment dropped %zu times (%zu of them by SIGBUS mid-sweep)\n", count_of(jan.err(), "dropped"),
              count_of(jan.err(), "SIGBUS"));
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// ===========================================================================
// 7. Metrics file
// ===========================================================================

// --metrics-file: the file appears and holds, per queue, the job gauges, the
// counters (reclaimed from dead owners among them) and the oldest lease's
// age, with # TYPE lines; the values follow the queue.
TEST_F(JanitorMetrics, MetricsFileFollowsTheQueue) {
  Watchdog dog(120s, "JanitorMetrics.MetricsFileFollowsTheQueue");
  const std::string metrics = dir.file("jobring.prom");
  QueueName name("jan-metrics");
  Queue q = Queue::create(name, small_options(8));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.push("j" + std::to_string(i)));
  JanitorProcess jan(
      {"--config", empty_conf(), "--queue", name, "--interval", "20ms", "--metrics-file", metrics});
  const std::string ready = gauge_series(name, "ready");
  const std::string leased = gauge_series(name, "leased");
  const std::string reclaimed = "jobring_reclaimed_total{queue=\"" + name.str() + "\"}";
  const std::string oldest = gauge_series(name, "oldest_lease_seconds");
  ASSERT_TRUE(test::poll_until([&] { return metric_or(read_metrics(metrics), ready, -1) == 3; }, 20s))
      << read_file(metrics) << jan.err();
  const std::string text = read_file(metrics);
  EXPECT_TRUE(contains(text, "jobring_ready{queue=\"" + name.str() + "\"} 3\n")) << text;
  for (const char* field : {"free", "writing", "ready", "delayed", "leased", "expired", "dead", "corrupt",
                            "keys_live", "keys_remembered", "keys_capacity"})
    EXPECT_TRUE(contains(text, gauge_series(name, field) + " ")) << field << "\n" << text;
  // Counters: jobring_FIELD_total (the field expired_total keeps one _total).
  for (const char* counter :
       {"pushed", "claimed", "acked", "released", "expired", "dead_lettered", "requeued", "purged",
        "recovered_writes", "reclaimed", "duplicates", "keys_evicted", "keys_full"})
    EXPECT_TRUE(contains(text, std::string("jobring_") + counter + "_total{queue=\"" + name.str() + "\"} "))
        << counter << "\n"
        << text;
  EXPECT_TRUE(contains(text, oldest + " ")) << text;
  EXPECT_TRUE(contains(text, "# TYPE jobring_ready gauge\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE jobring_expired gauge\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE jobring_expired_total counter\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE jobring_reclaimed_total counter\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE jobring_oldest_lease_seconds gauge\n")) << text;
  EXPECT_FALSE(contains(text, "_total_total")) << text;
  EXPECT_EQ(metric_or(read_metrics(metrics), "jobring_pushed_total{queue=\"" + name.str() + "\"}", -1), 3);
  EXPECT_EQ(metric_or(read_metrics(metrics), oldest, -1), 0);

  // A lease: leased 1, and the oldest lease's age grows.
  Holder holder(name, 1, lease_of(60'000ms));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto m = read_metrics(metrics);
        return metric_or(m, leased, -1) == 1 && metric_or(m, oldest, -1) > 0;
      },
      20s))
      << read_file(metrics);
  // Its owner dies: reclaimed 1, ready 3 again, no lease.
  holder.kill_and_reap();
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto m = read_metrics(metrics);
        return metric_or(m, reclaimed, -1) == 1 && metric_or(m, ready, -1) == 3 &&
               metric_or(m, leased, -1) == 0 && metric_or(m, oldest, -1) == 0;
      },
      20s))
      << read_file(metrics) << jan.err();
  EXPECT_EQ(jan.stop(), 0) << jan.err();
  // Nothing left behind but the metrics file (no temporary files).
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"empty.conf", "jobring.prom"}));
}

// A janitor SIGKILLed between writing its temporary metrics file and the
// rename leaves FILE.tmp.PID; the next janitor removes those of dead PIDs
// (and leaves a live one's alone). The de-duplication gauges and counters
// are exported too.
TEST_F(JanitorMetrics, StaleTemporaryFilesOfDeadJanitorsAreRemoved) {
  Watchdog dog(60s, "JanitorMetrics.StaleTemporaryFilesOfDeadJanitorsAreRemoved");
  const std::string metrics = dir.file("jobring.prom");
  const pid_t gone = test::fork_child([] { return 0; });
  ASSERT_EQ(test::wait_child(gone), 0);
  write_file(metrics + ".tmp." + std::to_string(gone), "partial");
  write_file(metrics + ".tmp." + std::to_string(::getpid()), "a live writer's");
  QueueName name("jan-tmp");
  Queue q = Queue::create(name, small_options(8));
  jobring::PushOptions keyed;
  keyed.key = "k";
  ASSERT_TRUE(q.push("a", keyed));
  ASSERT_TRUE(q.push("a", keyed).duplicate);
  const RunResult r =
      run_janitor({"--config", empty_conf(), "--queue", name, "--once", "--metrics-file", metrics});
  ASSERT_TRUE(r.status.has_value());
  EXPECT_EQ(*r.status, 0) << r.err;
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"empty.conf", "jobring.prom",
                                                     "jobring.prom.tmp." + std::to_string(::getpid())}));
  const auto m = read_metrics(metrics);
  EXPECT_EQ(metric_or(m, gauge_series(name, "keys_live"), -1), 1) << read_file(metrics);
  EXPECT_EQ(metric_or(m, "jobring_duplicates_total{queue=\"" + name.str() + "\"}", -1), 1);
}

// The metrics file is replaced atomically: a reader never sees a partial
// file. Read it many times while the janitor rewrites it every 10 ms: every
// read parses as a whole exposition, ends with a newline and has the last
// line the janitor writes (its sweep counter).
TEST_F(JanitorMetrics, MetricsFileIsReplacedAtomically) {
  Watchdog dog(120s, "JanitorMetrics.MetricsFileIsReplacedAtomically");
  const std::string metrics = dir.file("jobring.prom");
  QueueName q1("jan-atomic-1"), q2("jan-atomic-2");
  Queue a = Queue::create(q1, small_options(64));
  Queue b = Queue::create(q2, small_options(64));
  JanitorProcess jan({"--config", empty_conf(), "--queue", q1, "--queue", q2, "--interval", "10ms",
                      "--metrics-file", metrics});
  ASSERT_TRUE(test::poll_until([&] { return sweeps_in(metrics) >= 1; }, 20s)) << jan.err();
  const long reads = test::env_long("JOBRING_JANITOR_METRICS_READS", 2000);
  double first_sweeps = sweeps_in(metrics), last_sweeps = first_sweeps;
  int pushes = 0;
  for (long i = 0; i < reads; ++i) {
    const std::string text = read_file(metrics);
    ASSERT_FALSE(text.empty()) << "read " << i << ": missing or empty metrics file";
    ASSERT_EQ(text.back(), '\n') << "read " << i << ": partial file:\n" << text;
    const auto parsed = parse_metrics(text);
    ASSERT_TRUE(parsed.has_value()) << "read " << i << ": does not parse:\n" << text;
    ASSERT_TRUE(parsed->count("jobring_janitor_sweeps_total")) << "read " << i << ":\n" << text;
    ASSERT_TRUE(parsed->count(gauge_series(q2, "ready"))) << "read " << i << ":\n" << text;
    const double sweeps = parsed->at("jobring_janitor_sweeps_total");
    ASSERT_GE(sweeps, last_sweeps) << "sweep counter went backwards";
    last_sweeps = sweeps;
    if (i % 50 == 0 && pushes < 60) {  // keep the values moving
      ASSERT_TRUE(a.push("x"));
      ++pushes;
    }
    if (i % 4 == 0) std::this_thread::sleep_for(1ms);
  }
  std::printf("%ld reads over %.0f janitor rewrites\n", reads, last_sweeps - first_sweeps);
  EXPECT_GT(last_sweeps, first_sweeps) << "the janitor did not rewrite the file during the test";
  EXPECT_EQ(jan.stop(), 0) << jan.err();
}

// ===========================================================================
// 8. The systemd unit
// ===========================================================================

// systemd-analyze verify accepts the unit (ExecStart names the built binary).
TEST(JanitorUnit, SystemdAnalyzeVerifyPasses) {
  SKIP_WITHOUT_JANITOR();
  if (kJanitorUnit[0] == '\0') GTEST_SKIP() << "no unit file";
  const char* candidates[] = {"/usr/bin/systemd-analyze", "/bin/systemd-analyze",
                              "/usr/local/bin/systemd-analyze"};
  const char* tool = nullptr;
  for (const char* c : candidates)
    if (::access(c, X_OK) == 0) tool = c;
  if (tool == nullptr) GTEST_SKIP() << "systemd-analyze is not installed";
  Watchdog dog(120s, "JanitorUnit.SystemdAnalyzeVerifyPasses");
  test::TempFile out("sa-out");
  const pid_t pid = test::fork_child([&]() -> int {
    const int fd = out.open_append();
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(tool, tool, "verify", kJanitorUnit, static_cast<char*>(nullptr));
    return 127;
  });
  const int status = test::wait_child(pid);
  const std::string text = out.contents();
  EXPECT_EQ(status, 0) << text;
  // Any complaint about our unit file (it may warn about unrelated system units).
  EXPECT_FALSE(contains(text, "jobring-janitor.service:")) << text;
}

// The unit's contract (issue: systemd): Type=notify with a watchdog, restart on
// failure, and never DynamicUser= or RemoveIPC=yes (they would delete the
// queues' segments when the janitor stops).
TEST(JanitorUnit, UnitIsNotifyWithWatchdogAndKeepsSegments) {
  if (kJanitorUnit[0] == '\0') GTEST_SKIP() << "no unit file";
  const std::string unit = read_file(kJanitorUnit);
  ASSERT_FALSE(unit.empty());
  std::set<std::string> lines;
  std::istringstream in(unit);
  for (std::string l; std::getline(in, l);)
    if (!l.empty() && l[0] != '#') lines.insert(l);
  EXPECT_TRUE(lines.count("Type=notify")) << unit;
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                          [](const std::string& l) { return l.rfind("WatchdogSec=", 0) == 0; }));
  EXPECT_TRUE(lines.count("Restart=on-failure"));
  EXPECT_TRUE(lines.count("ExecStart=" + std::string(kJanitorBin) + " --config /etc/jobring/janitor.conf") ||
              std::any_of(lines.begin(), lines.end(),
                          [](const std::string& l) {
                            return l.rfind(std::string("ExecStart=") + kJanitorBin, 0) == 0;
                          }))
      << unit;
  EXPECT_FALSE(std::any_of(lines.begin(), lines.end(),
                           [](const std::string& l) { return l.rfind("DynamicUser=yes", 0) == 0; }));
  EXPECT_FALSE(lines.count("RemoveIPC=yes"));
  EXPECT_FALSE(lines.count("PrivateDevices=yes")) << "a private /dev hides /dev/shm";
}

// ===========================================================================
// 9. Two janitors, workers killed at random: nothing lost, nothing stuck
// ===========================================================================

struct WorkRecord {
  JobId id;
  std::uint32_t attempt;
  std::uint32_t kind;  // 1 claimed (about to ack), 2 ack was fenced (lease_lost)
};

// Guarantees 2, 3 and 8 with the daemon: workers are SIGKILLed at random
// while two janitors sweep the same queue (and one janitor is itself
// SIGKILLed and restarted). Every pushed job is processed and acked, no
// slot is stuck (the queue ends all free), no worker's ack is ever fenced
// (a janitor never takes a live worker's 10 s lease), and redeliveries are
// bounded by the kills. Duration: JOBRING_JANITOR_TORTURE_MS (default 3000).
TEST_F(JanitorTorture, TwoJanitorsRandomWorkerKillsLoseNothing) {
  Watchdog dog(240s, "JanitorTorture.TwoJanitorsRandomWorkerKillsLoseNothing");
  const auto duration = std::chrono::milliseconds(test::env_long("JOBRING_JANITOR_TORTURE_MS", 3000));
  constexpr int kWorkers = 3;
  constexpr std::uint32_t kCapacity = 128;
  QueueName name("jan-torture");
  Options o = small_options(kCapacity);
  o.default_lease = 10'000ms;
  Queue q = Queue::create(name, o);
  test::TempFile records("jan-torture");
  const std::vector<std::string> jan_args = {"--config", empty_conf(), "--queue", name, "--interval", "20ms"};
  auto jan1 = std::make_unique<JanitorProcess>(jan_args);
  auto jan2 = std::make_unique<JanitorProcess>(jan_args);

  const pid_t parent = ::getpid();
  auto spawn_worker = [&](unsigned seed) {
    return test::fork_child([&, seed]() -> int {
      test::die_with_parent(parent);
      const int fd = records.open_append();
      if (fd < 0) return 2;
      auto wq = Queue::open(name.str());
      std::mt19937 rng(seed);
      Job job;
      for (;;) {
        if (wq.claim(job, 200ms) != ClaimStatus::ok) continue;
        if (!test::append_record(fd, WorkRecord{job.id, job.attempt, 1})) return 3;
        // Hold the job a little, so that kills often land while it is held.
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        if (wq.ack(job.lease) != LeaseStatus::ok) test::append_record(fd, WorkRecord{job.id, job.attempt, 2});
      }
    });
  };
  std::vector<pid_t> workers;
  unsigned seed = 1;
  for (int i = 0; i < kWorkers; ++i) workers.push_back(spawn_worker(seed++));

  std::mt19937 rng(7);
  std::set<JobId> pushed;
  int kills = 0;
  bool janitor_restarted = false;
  const auto start = std::chrono::steady_clock::now();
  auto next_kill = start + std::chrono::milliseconds(20 + rng() % 100);
  std::size_t payload_no = 0;
  while (std::chrono::steady_clock::now() - start < duration) {
    for (int k = 0; k < 8; ++k) {
      const PushResult r = q.push("job-" + std::to_string(payload_no));
      if (r.status != PushStatus::ok) break;
      pushed.insert(r.id);
      ++payload_no;
    }
    if (std::chrono::steady_clock::now() >= next_kill) {
      const std::size_t victim = rng() % workers.size();
      test::kill_and_reap(workers[victim]);
      workers[victim] = spawn_worker(seed++);
      ++kills;
      next_kill = std::chrono::steady_clock::now() + std::chrono::milliseconds(20 + rng() % 100);
    }
    if (!janitor_restarted && std::chrono::steady_clock::now() - start > duration / 2) {
      // Guarantee 3 for the janitor itself: kill -9 mid-run, then restart.
      ::kill(jan1->pid(), SIGKILL);
      jan1->wait_exit(30s);
      jan1 = std::make_unique<JanitorProcess>(jan_args);
      janitor_restarted = true;
    }
    std::this_thread::sleep_for(2ms);
  }
  // Drain: every pushed job acked. A worker killed between its claim CAS and
  // writing its owner record leaves a lease only its 10 s deadline frees.
  const bool drained = test::poll_until(
      [&] {
        const Stats s = q.stats();
        return s.free == kCapacity;
      },
      60s, 10ms);
  for (const pid_t w : workers) test::kill_and_reap(w);
  const Stats s = q.stats();
  EXPECT_TRUE(drained) << "queue not drained: ready " << s.ready << " leased " << s.leased << " expired "
                       << s.expired << " writing " << s.writing << " dead " << s.dead;
  EXPECT_EQ(s.free, kCapacity);
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.corrupt, 0u);

  std::size_t partial = 0;
  const auto recs = records.records<WorkRecord>(&partial);
  EXPECT_EQ(partial, 0u);
  std::map<JobId, int> claims;
  int fenced = 0;
  for (const auto& r : recs) {
    if (r.kind == 1) ++claims[r.id];
    if (r.kind == 2) ++fenced;
  }
  EXPECT_EQ(fenced, 0) << "a live worker's lease was taken (its ack was fenced)";
  std::size_t missing = 0;
  int redelivered = 0;
  for (const JobId id : pushed) {
    const auto it = claims.find(id);
    if (it == claims.end()) {
      ++missing;
    } else {
      redelivered += it->second - 1;
    }
  }
  EXPECT_EQ(missing, 0u) << "pushed jobs never processed";
  EXPECT_LE(redelivered, kills) << "more redeliveries than worker kills";
  for (const auto& [id, n] : claims) EXPECT_TRUE(pushed.count(id)) << "job " << id << " was never pushed";
  std::printf("pushed %zu, kills %d, redelivered %d, reclaimed by janitors %llu, expired %llu\n",
              pushed.size(), kills, redelivered, static_cast<unsigned long long>(s.reclaimed),
              static_cast<unsigned long long>(s.expired_total));
  EXPECT_TRUE(jan1->running()) << jan1->err();
  EXPECT_TRUE(jan2->running()) << jan2->err();
  EXPECT_EQ(jan1->stop(), 0) << jan1->err();
  EXPECT_EQ(jan2->stop(), 0) << jan2->err();
}

}  // namespace
}  // namespace jobring
