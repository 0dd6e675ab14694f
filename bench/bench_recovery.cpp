// Recovery: a worker holding a lease is SIGKILLed; how long until another
// worker — a process blocked in claim() all along — gets the job.
//
//   janitor  jobring-janitor runs with its default interval (50 ms) on the
//            queue: it proves the owner dead (pidfd / PID + start time) and
//            returns the lease at its next sweep, which wakes the claimer.
//            Target (DESIGN.md): within two sweep intervals.
//   lease    no janitor: the job comes back when its lease runs out; the
//            blocked claimer sleeps until the deadline it saw. The figure is
//            the lease (JOBRING_BENCH_RECOVERY_LEASE_MS, default 500 ms) plus
//            how late after the deadline the job was handed out
//            (counter late_ms).
//
// Each round: child A claims the job (lease L) and says so; then child B
// starts and blocks in claim(); the parent SIGKILLs A, reaps it (as a supervisor would) and
// stamps the time; B stamps the time its claim returned. Reported: median,
// p90 and max over the rounds, in ms.
//
// The janitor binary: JOBRING_JANITOR (environment) or the build tree's
// (compiled in). JOBRING_BENCH_RECOVERY_ROUNDS rounds (default 10).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "procs.hpp"

namespace {

using namespace std::chrono_literals;

struct Control {
  alignas(64) std::atomic<int> holding{0};  // A has the lease
  alignas(64) std::atomic<int> b_ready{0};  // B is about to block in claim()
  alignas(64) std::atomic<std::int64_t> b_got_ns{0};
  std::atomic<std::int64_t> a_deadline_ns{0};  // A's lease deadline (CLOCK_MONOTONIC)
};

std::string janitor_path() {
  if (const char* env = std::getenv("JOBRING_JANITOR")) return env;
#ifdef JOBRING_JANITOR_BUILT
  return JOBRING_JANITOR_BUILT;
#else
  return "";
#endif
}

void BM_Recovery(benchmark::State& state, bool with_janitor) {
  const long rounds = bench::env_long("JOBRING_BENCH_RECOVERY_ROUNDS", 10);
  const long lease_ms = bench::env_long("JOBRING_BENCH_RECOVERY_LEASE_MS", 500);
  const std::string name = "bench.recovery." + std::to_string(::getpid());
  const std::string janitor = janitor_path();
  if (with_janitor && (janitor.empty() || ::access(janitor.c_str(), X_OK) != 0)) {
    state.SkipWithError("no jobring-janitor binary (set JOBRING_JANITOR)");
    return;
  }
  std::vector<double> ms;
  std::vector<double> late;
  for (auto _ : state) {
    jobring::Queue::remove(name);
    jobring::Options o;
    o.capacity = 16;
    o.max_payload = 64;
    o.default_lease = std::chrono::milliseconds(lease_ms);
    auto q = jobring::Queue::create(name, o);
    bench::ProcessGroup janitor_group;
    if (with_janitor) {
      janitor_group.spawn_exec({janitor, "--queue", name, "--log-level", "error"});
      ::usleep(100'000);  // let it start; its sweeps are not synchronised with our kills anyway
    }
    bool failed = false;
    for (long r = 0; r < rounds && !failed; ++r) {
      bench::Shared<Control> c;
      if (!q.push("job")) {
        failed = true;
        break;
      }
      bench::ProcessGroup group;
      const pid_t a = group.spawn([&] {
        auto mine = jobring::Queue::open(name);
        jobring::Job job;
        if (mine.claim(job, 10s) != jobring::ClaimStatus::ok) return 2;
        c->a_deadline_ns.store(
            std::chrono::duration_cast<std::chrono::nanoseconds>(job.deadline.time_since_epoch()).count());
        c->holding.store(1);
        for (;;) ::pause();  // holds the lease until killed
      });
      std::int64_t give_up = bench::mono_ns() + 20'000'000'000;
      while (c->holding.load() == 0 && bench::mono_ns() < give_up) ::usleep(200);
      group.spawn([&] {
        auto mine = jobring::Queue::open(name);
        jobring::Job job;
        c->b_ready.store(1);
        const auto st = mine.claim(job, 30s);
        c->b_got_ns.store(bench::mono_ns());
        if (st != jobring::ClaimStatus::ok) return 2;
        (void)mine.ack(job.lease);
        return 0;
      });
      give_up = bench::mono_ns() + 20'000'000'000;
      while (c->b_ready.load() == 0 && bench::mono_ns() < give_up) ::usleep(200);
      if (c->holding.load() == 0 || c->b_ready.load() == 0) {
        failed = true;
        break;
      }
      ::usleep(5'000);  // B is asleep in claim() by now (it found only A's lease)
      const std::int64_t killed = bench::mono_ns();
      group.kill_one(a);
      if (!group.wait_all(bench::mono_ns() + 20'000'000'000)) {
        failed = true;
        break;
      }
      const double took = static_cast<double>(c->b_got_ns.load() - killed) / 1e6;
      ms.push_back(took);
      late.push_back(static_cast<double>(c->b_got_ns.load() - c->a_deadline_ns.load()) / 1e6);
    }
    janitor_group.kill_all();
    jobring::Queue::remove(name);
    if (failed) {
      state.SkipWithError("a round did not complete (the job never came back?)");
      return;
    }
  }
  std::sort(ms.begin(), ms.end());
  const double p50 = bench::percentile(ms, 0.5), p90 = bench::percentile(ms, 0.9), max = ms.back();
  state.counters["rounds"] = static_cast<double>(ms.size());
  state.counters["p50_ms"] = p50;
  state.counters["p90_ms"] = p90;
  state.counters["max_ms"] = max;
  state.counters["lease_ms"] = static_cast<double>(lease_ms);
  std::sort(late.begin(), late.end());
  if (!with_janitor) state.counters["late_ms"] = bench::percentile(late, 0.5);  // after the deadline, median
  if (with_janitor) {
    state.counters["interval_ms"] = 50;  // the janitor's default, which this runs with
  }
  std::fprintf(
      stderr, "recovery %-8s rounds=%zu  median=%.1f ms  p90=%.1f ms  max=%.1f ms%s\n",
      with_janitor ? "janitor" : "lease", ms.size(), p50, p90, max,
      with_janitor ? "  (sweep every 50 ms)" : ("  (lease " + std::to_string(lease_ms) + " ms)").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("BM_Recovery/janitor", BM_Recovery, true)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Recovery/lease", BM_Recovery, false)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
