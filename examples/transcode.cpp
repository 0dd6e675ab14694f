// jobring-example-transcode — "transcode video after upload": a job that runs
// four times longer than its lease, kept alive by jobring::Worker's automatic
// lease extension, and never handed to a second worker.
//
//   jobring-example-transcode [--lease-ms N] [--frames N] [--frame-ms N]
//
// Short leases and long jobs: the lease is how long a crashed worker's job
// stays hidden before another worker takes it over, so it should be short.
// But a job that outlives its lease is handed to a second worker while the
// first is still at it. jobring::Worker keeps both: while the handler runs,
// its heartbeat thread extends the lease every lease × extend_fraction (1/3
// by default), so a live worker keeps its job for as long as it needs; if the
// process dies, the extensions stop and the job comes back within one lease.
//
// Here: a lease of 300 ms, and a job that "encodes" 24 frames of 50 ms each —
// 1.2 s, four leases. From the moment the job is claimed until it is acked, a
// rival worker process polls the queue (try_claim every 2 ms). The check: the
// job was claimed once (attempt 1) and acked once, its lease was extended
// again and again and never lost, no lease expired, and the rival, after
// hundreds of polls, got nothing. Exit status 0 only if all of that holds.
//
// The queue ("transcode.<pid>") is removed at the end.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "example_support.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"

namespace {

using namespace std::chrono_literals;
using example::Clock;
using std::chrono::milliseconds;

const char kUsage[] =
    "usage: jobring-example-transcode [--lease-ms N] [--frames N] [--frame-ms N]\n"
    "\n"
    "One transcoding job that runs for frames x frame-ms (default 24 x 50 ms = 1.2 s)\n"
    "under a lease of lease-ms (default 300): jobring::Worker extends the lease while\n"
    "it runs, and a rival worker process polling the queue meanwhile never gets the job.\n"
    "\n"
    "  --lease-ms N   lease of the claim (default 300)\n"
    "  --frames N     frames to encode (default 24)\n"
    "  --frame-ms N   time per frame (default 50)\n"
    "\n"
    "Exit status: 0 if every check passed, 1 if not, 2 for a usage error.\n";

struct Config {
  std::uint64_t lease_ms = 300;
  std::uint64_t frames = 24;
  std::uint64_t frame_ms = 50;
};

// What the processes tell the parent: a page shared by all of them
// (MAP_SHARED | MAP_ANONYMOUS, mapped before the forks).
struct Shared {
  std::atomic<std::uint32_t> attempt{0};     // the worker's Job::attempt
  std::atomic<std::uint32_t> frames{0};      // frames encoded
  std::atomic<std::uint32_t> extensions{0};  // lease token changes the handler saw
  std::atomic<bool> lease_lost{false};       // the handler saw ctx.lease_lost()
  std::atomic<std::int64_t> handler_ms{0};   // time in the handler
  std::atomic<std::uint64_t> rival_polls{0};
  std::atomic<std::uint64_t> rival_got{0};  // claims the rival made: must stay 0
};
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

// --- The worker ----------------------------------------------------------------------------

// The handler: "encode" the frames, sleeping in ctx.sleep_for — which returns
// early if the job is cancelled (lease lost) or a stop is requested. It does
// nothing about the lease: the Worker extends it.
jobring::Outcome transcode(const jobring::Job& job, jobring::JobContext& ctx, const Config& config,
                           Shared& shared) {
  const Clock::time_point start = Clock::now();
  shared.attempt = job.attempt;
  std::printf("[worker] %.*s  (job %llu, attempt %u, lease %llu ms)\n", static_cast<int>(job.text().size()),
              job.text().data(), static_cast<unsigned long long>(job.id), job.attempt,
              static_cast<unsigned long long>(config.lease_ms));
  jobring::Lease lease = ctx.lease();
  const std::uint64_t report_every = std::max<std::uint64_t>(1, config.frames / 6);
  for (std::uint64_t frame = 1; frame <= config.frames; ++frame) {
    if (!ctx.sleep_for(milliseconds(config.frame_ms))) {
      shared.lease_lost = ctx.lease_lost();
      std::printf("[worker] %s at frame %llu: giving up\n",
                  ctx.lease_lost() ? "LEASE LOST" : "stop requested", static_cast<unsigned long long>(frame));
      return jobring::Outcome::retry();  // (discarded if the lease was lost)
    }
    shared.frames = static_cast<std::uint32_t>(frame);
    if (const jobring::Lease now = ctx.lease(); now.token != lease.token) {  // the heartbeat extended it
      lease = now;
      ++shared.extensions;
    }
    if (frame % report_every == 0 || frame == config.frames) {
      const double elapsed = example::ms_since(start);
      std::printf(
          "[worker]   frame %3llu/%llu  %5.0f ms = %.1f leases; lease extended %u times, %lld ms left\n",
          static_cast<unsigned long long>(frame), static_cast<unsigned long long>(config.frames), elapsed,
          elapsed / static_cast<double>(config.lease_ms), shared.extensions.load(),
          static_cast<long long>(
              std::chrono::duration_cast<milliseconds>(ctx.deadline() - Clock::now()).count()));
    }
  }
  shared.handler_ms = static_cast<std::int64_t>(example::ms_since(start));
  return jobring::Outcome::ack();
}

// The worker process: one job (max_jobs = 1), then run() returns.
int worker_process(const std::string& queue_name, const Config& config, Shared& shared) {
  jobring::Queue queue = jobring::Queue::open(queue_name);
  jobring::Worker worker(
      queue,
      [&](const jobring::Job& job, jobring::JobContext& ctx) { return transcode(job, ctx, config, shared); },
      {.lease = milliseconds(config.lease_ms), .max_jobs = 1});
  jobring::Worker::install_signal_handlers();
  const jobring::WorkerSummary s = worker.run();
  std::printf("[worker] done: %llu claimed, %llu acked, %llu leases lost\n",
              static_cast<unsigned long long>(s.claimed), static_cast<unsigned long long>(s.acked),
              static_cast<unsigned long long>(s.lease_lost));
  return s.acked == 1 ? 0 : 1;
}

// The rival: another worker of the same queue, polling as hard as it can
// until SIGTERM. Any job it gets, it gives back at once and counts.
int rival_process(const std::string& queue_name, const Config& config, Shared& shared) {
  example::catch_interrupts();  // SIGTERM sets a flag
  jobring::Queue queue = jobring::Queue::open(queue_name);
  jobring::Job job;
  while (!example::interrupted()) {
    ++shared.rival_polls;
    if (queue.try_claim(job, {.lease = milliseconds(config.lease_ms)}) == jobring::ClaimStatus::ok) {
      ++shared.rival_got;
      std::printf("[rival]  GOT job %llu (attempt %u): the lease was not kept\n",
                  static_cast<unsigned long long>(job.id), job.attempt);
      (void)queue.release(job.lease);
    }
    std::this_thread::sleep_for(2ms);
  }
  std::printf("[rival]  stopped: %llu polls, %llu jobs\n",
              static_cast<unsigned long long>(shared.rival_polls.load()),
              static_cast<unsigned long long>(shared.rival_got.load()));
  return 0;
}

// --- The parent ------------------------------------------------------------------------------

int run(const Config& config) {
  void* page = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  Shared& shared = *new (page) Shared;
  const milliseconds lease(config.lease_ms);
  example::ExampleQueue queue("transcode", {.capacity = 16, .max_payload = 256, .default_lease = lease});
  const double leases =
      static_cast<double>(config.frames * config.frame_ms) / static_cast<double>(config.lease_ms);
  std::printf(
      "transcode: one job of %llu frames x %llu ms = %llu ms (%.1f leases of %llu ms), queue \"%s\"\n\n",
      static_cast<unsigned long long>(config.frames), static_cast<unsigned long long>(config.frame_ms),
      static_cast<unsigned long long>(config.frames * config.frame_ms), leases,
      static_cast<unsigned long long>(config.lease_ms), queue.name().c_str());

  if (!queue->push("transcode upload-42.mp4 to 720p")) throw std::runtime_error("the queue is full");
  const pid_t worker = example::spawn([&] { return worker_process(queue.name(), config, shared); });
  // The rival starts once the job is claimed, and polls until it is acked.
  const bool claimed = example::poll_until([&] { return queue->stats().claimed >= 1; }, 20s);
  const pid_t rival = example::spawn([&] { return rival_process(queue.name(), config, shared); });
  std::printf("[parent] the job is claimed; a rival worker now polls the queue every 2 ms\n");
  const int worker_status =
      example::wait_for(worker, 30s + 2 * milliseconds(config.frames * config.frame_ms));
  ::kill(rival, SIGTERM);
  const int rival_status = example::wait_for(rival, 10s);

  std::printf("\ncheck\n");
  example::Checks checks;
  const jobring::Stats s = queue->stats();
  char held[32];
  std::snprintf(held, sizeof held, "%.1f",
                static_cast<double>(shared.handler_ms.load()) / static_cast<double>(config.lease_ms));
  checks.expect(claimed && example::exited_ok(worker_status),
                "the worker finished the job (" + example::describe(worker_status) + ")");
  checks.expect(shared.frames.load() == config.frames && shared.attempt.load() == 1 &&
                    shared.handler_ms.load() >= static_cast<std::int64_t>(2 * config.lease_ms),
                "it encoded all " + std::to_string(config.frames) + " frames on attempt " +
                    std::to_string(shared.attempt.load()) + ", in " +
                    std::to_string(shared.handler_ms.load()) + " ms = " + held + " leases");
  checks.expect(
      !shared.lease_lost.load() && shared.extensions.load() >= 1,
      "its lease was extended " + std::to_string(shared.extensions.load()) + " times and never lost");
  checks.expect(s.claimed == 1 && s.acked == 1 && s.expired_total == 0,
                "the queue: claimed once, acked once, no lease expired (claimed " +
                    std::to_string(s.claimed) + ", acked " + std::to_string(s.acked) + ", expired " +
                    std::to_string(s.expired_total) + ")");
  checks.expect(
      shared.rival_got.load() == 0 && shared.rival_polls.load() > 0 && example::exited_ok(rival_status),
      "the rival polled " + std::to_string(shared.rival_polls.load()) + " times and got the job " +
          std::to_string(shared.rival_got.load()) + " times");
  const std::string story = "a " + std::to_string(shared.handler_ms.load()) + " ms job under a " +
                            std::to_string(config.lease_ms) + " ms lease, extended " +
                            std::to_string(shared.extensions.load()) + " times; claimed once, the rival's " +
                            std::to_string(shared.rival_polls.load()) + " polls got nothing";
  ::munmap(page, sizeof(Shared));
  return checks.finish(story);
}

}  // namespace

int main(int argc, char** argv) {
  return example::run_main("jobring-example-transcode", [&] {
    Config config;
    example::Args args(argc, argv, kUsage);
    args.number("--lease-ms", config.lease_ms, 10, 60'000);
    args.number("--frames", config.frames, 1, 100'000);
    args.number("--frame-ms", config.frame_ms, 1, 60'000);
    args.done();
    if (config.frames * config.frame_ms < 2 * config.lease_ms)
      throw example::UsageError{
          "the job (frames x frame-ms) should take at least two leases: that is the point"};
    example::catch_interrupts();
    return run(config);
  });
}
