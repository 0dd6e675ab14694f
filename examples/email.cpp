// jobring-example-email — the smallest producer and worker: "send a welcome
// email" jobs, each done by exactly one worker. produce() and work() are the
// whole API a typical user needs (README.md shows them): Queue::push on one
// side, a jobring::Worker running a handler on the other.
//
//   jobring-example-email produce N   push N jobs to the queue and exit
//   jobring-example-email work        run a worker until Ctrl-C / SIGTERM
//   jobring-example-email             both in one go: fork a worker, push 5 jobs,
//                                     wait until all are done, stop the worker
//   --queue NAME                      the queue (default "emails"; the
//                                     no-argument mode uses a private one)
//
// Every 4th email fails on its first attempt ("SMTP server busy"), to show a
// retry: the handler throws, the Worker releases the job with a backoff, and
// the job comes back (attempt 2). Exit status 0 if every email was sent.

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "jobring/queue.hpp"
#include "jobring/worker.hpp"

using namespace std::chrono_literals;

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_email_stop_signal(int) {
  g_stop = 1;
  jobring::interrupt_waits();  // a waiting claim() or push() returns `interrupted` (async-signal-safe)
}

// Pretend to send the email. Every 4th job fails on its first attempt, so that
// the example shows a retry.
void send_email(const jobring::Job& job) {
  std::printf("[worker %d] %.*s (job %llu, attempt %u)\n", static_cast<int>(::getpid()),
              static_cast<int>(job.text().size()), job.text().data(), static_cast<unsigned long long>(job.id),
              job.attempt);
  if (job.id % 4 == 0 && job.attempt == 1) {
    std::printf("  failed (SMTP server busy): the Worker releases the job, to retry in 100-200 ms\n");
    throw std::runtime_error("SMTP server busy");
  }
}

// --- the core: a producer and a worker ---------------------------------------

constexpr jobring::Options kOptions{.capacity = 1024, .default_lease = 30s, .max_attempts = 5};

void produce(const std::string& queue_name, int count) {
  jobring::Queue queue = jobring::Queue::open_or_create(queue_name, kOptions);
  for (int i = 1; i <= count; ++i) {
    const std::string job = "send welcome email to user" + std::to_string(i) + "@example.com";
    if (!queue.push(job, {.wait = 10s})) throw std::runtime_error("queue full for 10 s, or interrupted");
  }
}

// Called for each job claimed. Throwing (or returning Outcome::retry()) gives
// the job back for a retry with backoff; the queue dead-letters it after 5 attempts.
jobring::Outcome handle(const jobring::Job& job, jobring::JobContext&) {
  send_email(job);
  return jobring::Outcome::ack();  // done: the job is deleted
}

void work(const std::string& queue_name) {
  jobring::Queue queue = jobring::Queue::open_or_create(queue_name, kOptions);
  // Claims one job at a time (claim = give + hide; it sleeps while there is none),
  // runs handle() and keeps extending the job's lease meanwhile, then acks or retries.
  // A failed job comes back after 100-200 ms, then 200-400 ms, ... (backoff with jitter).
  jobring::Worker worker(queue, handle, {.backoff = {.base = 200ms}});
  jobring::Worker::install_signal_handlers();  // Ctrl-C / SIGTERM: finish the job in hand, then stop
  worker.run();
}

// --- the rest: command line and the one-process demo --------------------------

const char kUsage[] =
    "usage: jobring-example-email [--queue NAME] [produce N | work]\n"
    "\n"
    "  produce N     push N \"send welcome email\" jobs and exit\n"
    "  work          claim, \"send\" and ack jobs until Ctrl-C or SIGTERM\n"
    "  (nothing)     fork a worker, push 5 jobs, wait until all are acked, stop the worker\n"
    "  --queue NAME  the queue to use (default \"emails\"); it is created if missing\n";

// Forks a worker, pushes `count` jobs, waits until every one is acked.
int demo(int count) {
  const std::string name = "email-demo." + std::to_string(::getpid());
  std::error_code ec;
  jobring::Queue::remove(name, ec);  // a left-over of a killed run with our PID
  jobring::Queue queue = jobring::Queue::create(name, kOptions);
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t worker = ::fork();
  if (worker < 0) {
    std::perror("fork");
    jobring::Queue::remove(name, ec);
    return 1;
  }
  if (worker == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the demo
    int status = ::getppid() == parent ? 0 : 1;
    try {
      if (status == 0) work(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker: %s\n", e.what());
      status = 1;
    }
    std::fflush(nullptr);
    ::_exit(status);
  }
  bool pushed = false;
  try {
    produce(name, count);
    pushed = true;
    std::printf("[producer %d] pushed %d jobs\n", static_cast<int>(::getpid()), count);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "producer: %s\n", e.what());
  }
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (pushed && queue.stats().acked < static_cast<std::uint64_t>(count) &&
         std::chrono::steady_clock::now() < give_up && !g_stop) {
    std::this_thread::sleep_for(10ms);
  }
  const jobring::Stats stats = queue.stats();
  ::kill(worker, SIGTERM);  // the worker finishes the job in hand and exits
  int status = 0;
  ::waitpid(worker, &status, 0);
  jobring::Queue::remove(name, ec);
  const bool ok = stats.acked == static_cast<std::uint64_t>(count) &&
                  stats.released == stats.claimed - stats.acked && WIFEXITED(status) &&
                  WEXITSTATUS(status) == 0;
  std::printf("result: %s: %llu of %d emails sent by one worker process, %llu after a retry%s\n",
              ok ? "OK" : "FAILED", static_cast<unsigned long long>(stats.acked), count,
              static_cast<unsigned long long>(stats.released),
              WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : " (the worker did not exit cleanly)");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::signal(SIGINT, on_email_stop_signal);
  std::signal(SIGTERM, on_email_stop_signal);
  std::string queue_name = "emails";
  int arg = 1;
  if (arg < argc && (std::string_view(argv[arg]) == "--help" || std::string_view(argv[arg]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (arg + 1 < argc && std::string_view(argv[arg]) == "--queue") {
    queue_name = argv[arg + 1];
    arg += 2;
  }
  try {
    const std::string_view mode = arg < argc ? argv[arg] : "";
    if (mode.empty()) return demo(5);
    if (mode == "produce" && arg + 2 == argc) {
      const int count = std::atoi(argv[arg + 1]);
      if (count < 1) {
        std::fprintf(stderr, "jobring-example-email: produce needs a count >= 1\n");
        return 2;
      }
      produce(queue_name, count);
      std::printf("pushed %d jobs to \"%s\"\n", count, queue_name.c_str());
      return 0;
    }
    if (mode == "work" && arg + 1 == argc) {
      std::printf("worker %d on \"%s\"; Ctrl-C to stop\n", static_cast<int>(::getpid()), queue_name.c_str());
      work(queue_name);
      return 0;
    }
    std::fputs(kUsage, stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jobring-example-email: %s\n", e.what());
    return 1;
  }
}
