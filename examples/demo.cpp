// jobring-demo — a pool of worker processes drains a queue while one of them
// is killed with SIGKILL in the middle of a job. The job is not lost: it stays
// hidden until its lease runs out, then another worker claims it (attempt 2)
// and acks it. At the end every job is accounted for.
//
//   jobring-demo [--jobs N] [--workers N] [--lease-ms N]
//
// How the kill is made deterministic: the job in the middle of the run (the
// "victim") is recognised by the worker that claims it first; that worker
// reports it to the parent over the pipe and pauses, lease in hand, and the
// parent kills it. No janitor runs, so the job comes back only when its lease
// runs out (--lease-ms).
//
// Processes: the parent creates the queue "demo.<pid>", forks the workers,
// pushes the jobs (retrying while the queue is full) and reads the workers'
// reports from one pipe: one fixed-size record per acked job.

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Config {
  std::uint64_t jobs = 3000;
  std::uint64_t workers = 4;
  std::uint64_t lease_ms = 1000;
};

// One report from a worker. Each is written with a single write(2) of at most
// PIPE_BUF bytes, so the records of different workers never interleave.
enum class Event : std::uint32_t { acked = 1, lease_lost = 2, holding_victim = 3 };
struct Record {
  Event event;
  std::uint32_t worker;   // index 0 .. workers-1
  std::uint32_t attempt;  // Job::attempt of the claim
  std::uint32_t reserved;
  std::uint64_t seq;  // the producer's sequence number (from the payload)
  jobring::JobId job;
};
static_assert(sizeof(Record) <= PIPE_BUF);

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

const char kUsage[] =
    "usage: jobring-demo [--jobs N] [--workers N] [--lease-ms N]\n"
    "\n"
    "Forks a pool of worker processes that drain a fresh queue while this process pushes\n"
    "the jobs. The worker that claims the job in the middle of the run is killed with\n"
    "SIGKILL while it holds the job; the job comes back when its lease runs out and\n"
    "another worker does it. Prints progress and an account of every job.\n"
    "\n"
    "  --jobs N       jobs to push (default 3000)\n"
    "  --workers N    worker processes, at least 2 (default 4)\n"
    "  --lease-ms N   lease of each claim in ms (default 1000): how long the killed\n"
    "                 worker's job stays hidden\n"
    "  --help         this text\n"
    "\n"
    "Exit status: 0 if every job was acked exactly once and the killed worker's job\n"
    "was finished by another worker; 1 otherwise; 2 for a usage error.\n";

bool parse_number(std::string_view text, std::uint64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end && !text.empty();
}

// Returns nullopt after printing a message when the command line is wrong.
std::optional<Config> parse_args(int argc, char** argv, bool& help) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help = true;
      return config;
    }
    std::string_view value;
    const auto eq = arg.find('=');
    if (eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    }
    std::uint64_t* target = nullptr;
    if (arg == "--jobs") target = &config.jobs;
    if (arg == "--workers") target = &config.workers;
    if (arg == "--lease-ms") target = &config.lease_ms;
    if (target == nullptr) {
      std::fprintf(stderr, "jobring-demo: unknown option '%.*s' (try --help)\n", static_cast<int>(arg.size()),
                   arg.data());
      return std::nullopt;
    }
    if (!parse_number(value, *target)) {
      std::fprintf(stderr, "jobring-demo: %.*s needs a number (try --help)\n", static_cast<int>(arg.size()),
                   arg.data());
      return std::nullopt;
    }
  }
  if (config.jobs < 1 || config.jobs > 10'000'000) {
    std::fprintf(stderr, "jobring-demo: --jobs must be 1 .. 10000000\n");
    return std::nullopt;
  }
  if (config.workers < 2 || config.workers > 64) {
    std::fprintf(stderr, "jobring-demo: --workers must be 2 .. 64 (one of them is killed)\n");
    return std::nullopt;
  }
  if (config.lease_ms < 1 || config.lease_ms > 60'000) {
    std::fprintf(stderr, "jobring-demo: --lease-ms must be 1 .. 60000\n");
    return std::nullopt;
  }
  return config;
}

std::uint64_t seq_of(std::string_view payload) {
  // Payloads are "job <seq>".
  std::uint64_t seq = 0;
  if (payload.substr(0, 4) != "job " || !parse_number(payload.substr(4), seq)) {
    throw std::runtime_error("unexpected payload '" + std::string(payload) + "'");
  }
  return seq;
}

void send_record(int fd, const Record& record) {
  while (::write(fd, &record, sizeof record) < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "write to the parent");
  }
}

// The body of a worker process; never returns.
[[noreturn]] void worker_main(const std::string& name, std::uint32_t index, std::uint64_t victim_seq,
                              int report_fd, const std::atomic<int>* stop, pid_t parent) {
  std::signal(SIGINT, SIG_DFL);  // Ctrl-C ends the workers at once; the parent cleans up
  std::signal(SIGTERM, SIG_DFL);
  int status = 0;
  try {
    jobring::Queue queue = jobring::Queue::open(name);
    jobring::Job job;  // reused for every claim
    while (stop->load(std::memory_order_acquire) == 0) {
      // Sleeps until a push (or a lease running out) makes a job claimable;
      // wakes every 50 ms to look at the stop flag.
      if (queue.claim(job, milliseconds(50)) != jobring::ClaimStatus::ok) {
        if (::getppid() != parent) break;  // the parent is gone
        continue;
      }
      Record record{Event::acked, index, job.attempt, 0, seq_of(job.text()), job.id};
      if (record.seq == victim_seq && job.attempt == 1) {
        // Tell the parent, then wait, lease in hand, for its SIGKILL.
        record.event = Event::holding_victim;
        send_record(report_fd, record);
        for (;;) ::pause();
      }
      // "Process" the job: a few hundred microseconds of work.
      std::this_thread::sleep_for(std::chrono::microseconds(200 + record.seq % 300));
      if (queue.ack(job.lease) != jobring::LeaseStatus::ok) record.event = Event::lease_lost;
      send_record(report_fd, record);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker %u (pid %d): %s\n", index, static_cast<int>(::getpid()), e.what());
    status = 1;
  }
  std::fflush(nullptr);
  ::_exit(status);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Everything the parent learns while the demo runs.
struct Account {
  explicit Account(std::uint64_t jobs) : acks(jobs, 0) {}
  std::vector<std::uint32_t> acks;  // per sequence number: successful acks seen
  std::uint64_t pushed = 0;
  std::uint64_t acked = 0;        // distinct jobs acked
  std::uint64_t redelivered = 0;  // acks of a claim with attempt > 1
  std::uint64_t duplicates = 0;   // a second successful ack of one job: must never happen
  std::uint64_t lease_lost = 0;   // acks rejected because the lease had been taken over
  std::uint64_t full = 0;         // pushes answered "full" (and retried)
  std::uint64_t bogus = 0;        // records with an unknown sequence number
  // The victim: which worker held it when it was killed, and who finished it.
  std::optional<Record> victim_holder;
  pid_t victim_pid = 0;
  Clock::time_point killed_at;
  std::optional<Record> victim_finisher;
  pid_t finisher_pid = 0;
  double victim_delay_ms = 0;
};

class Demo {
 public:
  explicit Demo(const Config& config)
      : config_(config),
        name_("demo." + std::to_string(::getpid())),
        victim_seq_(config.jobs / 2),
        account_(config.jobs) {}

  ~Demo() {
    stop_workers();
    if (fd_ >= 0) ::close(fd_);
    if (stop_ != nullptr) ::munmap(stop_, sizeof(std::atomic<int>));
    std::error_code ec;  // the non-throwing overload: this is a destructor
    if (created_) jobring::Queue::remove(name_, ec);
  }
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;

  int run() {
    jobring::Options options;
    options.capacity = 256;  // smaller than --jobs: the producer sees "full" and retries
    options.max_payload = 32;
    options.default_lease = milliseconds(config_.lease_ms);
    jobring::Queue::remove(name_);  // a left-over of an earlier process with our pid
    jobring::Queue queue = jobring::Queue::create(name_, options);
    created_ = true;
    std::printf("jobring-demo: %llu jobs, %llu worker processes, lease %llu ms, queue \"%s\"\n",
                static_cast<unsigned long long>(config_.jobs),
                static_cast<unsigned long long>(config_.workers),
                static_cast<unsigned long long>(config_.lease_ms), name_.c_str());
    std::printf("the worker that claims job #%llu will be killed (SIGKILL) while it holds it\n\n",
                static_cast<unsigned long long>(victim_seq_));
    start_workers();

    const Clock::time_point start = Clock::now();
    const Clock::time_point deadline = start + std::chrono::seconds(30) + 5 * milliseconds(config_.lease_ms);
    Clock::time_point next_progress = start + milliseconds(500);
    std::string payload;
    bool ok = true;
    while (account_.acked < config_.jobs) {
      // Push a burst, then read the reports, so that the pipe never fills up.
      bool full = false;
      for (int i = 0; i < 64 && account_.pushed < config_.jobs; ++i) {
        payload = "job " + std::to_string(account_.pushed);
        if (!queue.push(payload)) {
          full = true;
          ++account_.full;
          break;
        }
        ++account_.pushed;
      }
      const int timeout_ms = full ? 1 : account_.pushed < config_.jobs ? 0 : 20;
      if (!read_reports(timeout_ms)) {
        std::fprintf(stderr, "jobring-demo: every worker has exited before the jobs were done\n");
        ok = false;
        break;
      }
      const Clock::time_point now = Clock::now();
      if (now >= next_progress) {
        print_progress(queue, start);
        next_progress += milliseconds(500);
      }
      if (g_interrupted != 0) {
        std::fprintf(stderr, "jobring-demo: interrupted\n");
        return 130;
      }
      if (now >= deadline) {
        std::fprintf(stderr, "jobring-demo: gave up after %.1f s\n", seconds_since(start));
        ok = false;
        break;
      }
    }
    stop_workers();
    while (read_reports(0)) {
    }  // reports written before the workers exited
    const double elapsed = seconds_since(start);
    print_progress(queue, start);
    return summarize(queue, elapsed) && ok ? 0 : 1;
  }

 private:
  void start_workers() {
    void* mem =
        ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    stop_ = new (mem) std::atomic<int>(0);
    int fds[2];
    if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    fd_ = fds[0];
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    for (std::uint32_t w = 0; w < config_.workers; ++w) {
      const pid_t pid = ::fork();
      if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
      if (pid == 0) {
        ::close(fds[0]);
        worker_main(name_, w, victim_seq_, fds[1], stop_, parent);
      }
      pids_.push_back(pid);
    }
    ::close(fds[1]);  // so that read() sees EOF once every worker has exited
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }

  // Sets the stop flag and reaps every worker (SIGKILL after 5 s).
  void stop_workers() {
    if (stop_ != nullptr) stop_->store(1, std::memory_order_release);
    const Clock::time_point give_up = Clock::now() + std::chrono::seconds(5);
    for (pid_t& pid : pids_) {
      if (pid <= 0) continue;
      int status = 0;
      while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (Clock::now() >= give_up) ::kill(pid, SIGKILL);
        std::this_thread::sleep_for(milliseconds(1));
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "jobring-demo: worker pid %d ended abnormally (status 0x%x)\n",
                     static_cast<int>(pid), static_cast<unsigned>(status));
        workers_failed_ = true;
      }
      pid = 0;
    }
  }

  // Waits up to timeout_ms for reports and handles all that are there.
  // Returns false at EOF (every worker has exited).
  bool read_reports(int timeout_ms) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return true;
    for (;;) {
      const ssize_t n = ::read(fd_, buffer_.data() + buffered_, buffer_.size() - buffered_);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return true;
        throw std::system_error(errno, std::generic_category(), "read from the workers");
      }
      buffered_ += static_cast<std::size_t>(n);
      std::size_t used = 0;
      for (; buffered_ - used >= sizeof(Record); used += sizeof(Record)) {
        Record record;
        std::memcpy(&record, buffer_.data() + used, sizeof record);
        handle(record);
      }
      std::memmove(buffer_.data(), buffer_.data() + used, buffered_ - used);
      buffered_ -= used;
    }
  }

  void handle(const Record& r) {
    if (r.seq >= config_.jobs || r.worker >= pids_.size()) {
      ++account_.bogus;
      return;
    }
    switch (r.event) {
      case Event::holding_victim: {
        account_.victim_holder = r;
        account_.victim_pid = pids_[r.worker];
        ::kill(pids_[r.worker], SIGKILL);
        int status = 0;
        ::waitpid(pids_[r.worker], &status, 0);  // reaped: its PID is now provably dead
        pids_[r.worker] = 0;
        account_.killed_at = Clock::now();
        std::printf(
            "  !! worker %u (pid %d) claimed job #%llu (id %llu, attempt %u): killed it with SIGKILL\n",
            r.worker, static_cast<int>(account_.victim_pid), static_cast<unsigned long long>(r.seq),
            static_cast<unsigned long long>(r.job), r.attempt);
        std::printf(
            "     it stays hidden until its %llu ms lease runs out (or until a running jobring-janitor\n"
            "     sees that its owner is dead)\n",
            static_cast<unsigned long long>(config_.lease_ms));
        break;
      }
      case Event::acked:
        if (account_.acks[r.seq]++ == 0) {
          ++account_.acked;
        } else {
          ++account_.duplicates;
        }
        if (r.attempt > 1) ++account_.redelivered;
        if (r.seq == victim_seq_) {
          account_.victim_finisher = r;
          account_.finisher_pid = pids_[r.worker];
          if (account_.victim_holder) {
            account_.victim_delay_ms =
                std::chrono::duration<double, std::milli>(Clock::now() - account_.killed_at).count();
          }
          std::printf("  ** job #%llu (id %llu) done by worker %u (pid %d) on attempt %u\n",
                      static_cast<unsigned long long>(r.seq), static_cast<unsigned long long>(r.job),
                      r.worker, static_cast<int>(pids_[r.worker]), r.attempt);
        }
        break;
      case Event::lease_lost:
        ++account_.lease_lost;
        break;
      default:
        ++account_.bogus;
    }
  }

  void print_progress(const jobring::Queue& queue, Clock::time_point start) {
    const jobring::Stats s = queue.stats();
    std::printf("[%5.1f s] pushed %6llu/%llu   acked %6llu   in flight %3llu", seconds_since(start),
                static_cast<unsigned long long>(account_.pushed),
                static_cast<unsigned long long>(config_.jobs),
                static_cast<unsigned long long>(account_.acked),
                static_cast<unsigned long long>(s.leased + s.expired));
    if (s.expired != 0) std::printf(" (%llu past the deadline)", static_cast<unsigned long long>(s.expired));
    std::printf("   waiting %4llu\n", static_cast<unsigned long long>(s.ready + s.delayed));
    std::fflush(stdout);
  }

  // Prints the account; returns true if every check passed.
  bool summarize(const jobring::Queue& queue, double elapsed) const {
    const jobring::Stats s = queue.stats();
    std::uint64_t missing = 0;
    for (std::uint32_t n : account_.acks) missing += n == 0 ? 1 : 0;
    const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };

    std::printf("\nsummary\n");
    std::printf("  jobs pushed       %llu  (the queue was full %llu times; the producer retried)\n",
                u(account_.pushed), u(account_.full));
    std::printf("  jobs acked        %llu\n", u(account_.acked));
    std::printf("  redelivered       %llu  (acked on attempt > 1)\n", u(account_.redelivered));
    std::printf("  missing           %llu\n", u(missing));
    std::printf("  acked twice       %llu\n", u(account_.duplicates));
    std::printf("  late acks refused %llu  (lease_lost)\n", u(account_.lease_lost));
    bool ok = true;
    if (account_.victim_holder) {
      const Record& h = *account_.victim_holder;
      std::printf("  killed worker     worker %u (pid %d) held job #%llu (id %llu) when it was SIGKILLed\n",
                  h.worker, static_cast<int>(account_.victim_pid), u(h.seq), u(h.job));
      if (account_.victim_finisher && account_.victim_finisher->worker != h.worker &&
          account_.victim_finisher->attempt >= 2) {
        const Record& f = *account_.victim_finisher;
        std::printf("  finished by       worker %u (pid %d) on attempt %u, %.0f ms after the kill\n",
                    f.worker, static_cast<int>(account_.finisher_pid), f.attempt, account_.victim_delay_ms);
      } else {
        std::printf("  finished by       NOBODY ELSE: the killed worker's job was not redone\n");
        ok = false;
      }
    } else {
      std::printf("  killed worker     none: job #%llu was never claimed\n", u(victim_seq_));
      ok = false;
    }
    const std::uint64_t left = s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead + s.corrupt;
    std::printf(
        "  queue at the end  %llu jobs left; totals: pushed %llu, claimed %llu, acked %llu, expired %llu\n",
        u(left), u(s.pushed), u(s.claimed), u(s.acked), u(s.expired_total));
    std::printf("  elapsed           %.2f s\n", elapsed);

    if (missing != 0 || account_.duplicates != 0 || account_.bogus != 0 || left != 0 || workers_failed_)
      ok = false;
    std::printf(
        "%s\n",
        ok ? "OK: every job was acked exactly once; the killed worker's job was done by another worker"
           : "FAILED");
    return ok;
  }

  Config config_;
  std::string name_;
  std::uint64_t victim_seq_;
  Account account_;
  bool created_ = false;
  bool workers_failed_ = false;
  std::atomic<int>* stop_ = nullptr;
  int fd_ = -1;
  std::vector<pid_t> pids_;
  std::vector<char> buffer_ = std::vector<char>(64 * sizeof(Record));
  std::size_t buffered_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  bool help = false;
  const std::optional<Config> config = parse_args(argc, argv, help);
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!config) return 2;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  try {
    Demo demo(*config);
    return demo.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jobring-demo: %s\n", e.what());
    return 1;
  }
}
