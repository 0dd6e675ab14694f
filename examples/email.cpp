// jobring-example-email — the smallest producer and worker: "send a welcome
// email" jobs, each done by exactly one worker. produce() and work() are the
// whole API a typical user needs (README.md shows them).
//
//   jobring-example-email produce N   push N jobs to the queue and exit
//   jobring-example-email work        run a worker until Ctrl-C / SIGTERM
//   jobring-example-email             both in one go: fork a worker, push 5 jobs,
//                                     wait until all are done, stop the worker
//   --queue NAME                      the queue (default "emails"; the
//                                     no-argument mode uses a private one)

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
#include <thread>

#include "jobring/queue.hpp"

using namespace std::chrono_literals;

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) {
  g_stop = 1;
  jobring::interrupt_waits();  // a waiting claim() or push() returns `interrupted` (async-signal-safe)
}

// Pretend to send the email. Every 4th job fails on its first attempt, so that
// the example shows a release and a retry.
void send_email(const jobring::Job& job) {
  std::printf("[worker %d] %.*s (job %llu, attempt %u)\n", static_cast<int>(::getpid()),
              static_cast<int>(job.text().size()), job.text().data(), static_cast<unsigned long long>(job.id),
              job.attempt);
  if (job.id % 4 == 0 && job.attempt == 1) throw std::runtime_error("SMTP server busy");
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

void work(const std::string& queue_name) {
  jobring::Queue queue = jobring::Queue::open_or_create(queue_name, kOptions);
  jobring::Job job;  // reused for every claim
  for (;;) {
    const jobring::ClaimStatus got = queue.claim(job, 1s);  // claim = give + hide; sleeps until a job comes
    if (got == jobring::ClaimStatus::interrupted) break;    // SIGTERM / Ctrl-C
    if (got == jobring::ClaimStatus::empty) continue;       // nothing for 1 s
    try {
      send_email(job);
      if (queue.ack(job.lease) == jobring::LeaseStatus::lease_lost)  // done: the job is deleted
        std::fprintf(stderr, "job %llu outlived its lease; another worker has it\n",
                     static_cast<unsigned long long>(job.id));
    } catch (const std::exception& e) {
      std::printf("  failed (%s): released, retry in 200 ms\n", e.what());
      (void)queue.release(job.lease, 200ms);  // back to the queue; dead after 5 attempts
    }
  }
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
  jobring::Queue::remove(name);
  jobring::Queue queue = jobring::Queue::create(name, kOptions);
  std::fflush(nullptr);
  const pid_t worker = ::fork();
  if (worker < 0) {
    std::perror("fork");
    jobring::Queue::remove(name);
    return 1;
  }
  if (worker == 0) {
    int status = 0;
    try {
      work(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker: %s\n", e.what());
      status = 1;
    }
    std::fflush(nullptr);
    ::_exit(status);
  }
  produce(name, count);
  std::printf("[producer %d] pushed %d jobs\n", static_cast<int>(::getpid()), count);

  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (queue.stats().acked < static_cast<std::uint64_t>(count) &&
         std::chrono::steady_clock::now() < give_up && !g_stop) {
    std::this_thread::sleep_for(10ms);
  }
  const jobring::Stats stats = queue.stats();
  ::kill(worker, SIGTERM);  // the worker finishes the job in hand and exits
  int status = 0;
  ::waitpid(worker, &status, 0);
  jobring::Queue::remove(name);
  const bool ok =
      stats.acked == static_cast<std::uint64_t>(count) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("%s: %llu of %d emails sent, %llu released and retried\n", ok ? "done" : "FAILED",
              static_cast<unsigned long long>(stats.acked), count,
              static_cast<unsigned long long>(stats.released));
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
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
  } catch (const jobring::error& e) {
    std::fprintf(stderr, "jobring-example-email: %s\n", e.what());
    return 1;
  }
}
