// Across processes: P producer processes push N jobs of 64 bytes in all, W
// worker processes take them (jobring: claim + ack), all forked from the
// benchmark; jobs per second end to end, from the moment every process is
// ready until the parent sees all N jobs finished. Next to the bare
// shared-memory ring and Boost message_queue, in the same run.
//
// Variants (the name says which):
//   jobring          push / try_claim + ack, one job at a time, polling
//   jobring_batch32  push_many / try_claim_many + ack_many of up to 32 jobs
//   ring             the bare ring (peers.hpp): try_push / try_pop, polling
//   boost_mq         try_send / try_receive, polling
//   jobring_block    push waiting for room / claim waiting for a job (futex)
//   boost_mq_block   send / timed_receive (blocking: mutex + condition variables)
// Polling means: try, and when full or empty pause a little, then
// sched_yield — the same back-off for every system.
//
// Counting: each worker keeps its own tally on its own cache line (a
// relaxed store per job, no shared counter); the parent sleeps 200 µs at a
// time and stops the clock when the tallies add up to N. The counts must
// come out exact (no job lost, none done twice) or the run is an error.
//
// Sizing, from the environment (bench/compare sets them):
//   JOBRING_BENCH_XPROC_JOBS   N per run (default 400000)
//   JOBRING_BENCH_XPROC_PW     P x W list, e.g. "1x1,1x2,2x1,2x2,8x8" (default that without 8x8)
//   JOBRING_BENCH_XPROC_LIMIT_S  seconds before a run is killed (default 60)
//   JOBRING_BENCH_XPROC_PIN    1: pin each child to one CPU (sched_setaffinity),
//                              round-robin over the CPUs this process may use,
//                              producers first: producer p on cpus[p % n],
//                              worker w on cpus[(P + w) % n]. So 1x1 on two
//                              CPUs is producer on the first, worker on the
//                              second: the same placement for every system,
//                              instead of the scheduler deciding per run
//                              whether the two share a core. The parent (it
//                              sleeps 200 µs at a time) is not pinned.
//                              0 (default): the scheduler places them.
// Children die with the benchmark (PR_SET_PDEATHSIG).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <array>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "peers.hpp"
#include "pin.hpp"
#include "procs.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kCapacity = 1024;
constexpr std::size_t kPayload = 64;
constexpr std::size_t kBatch = 32;
constexpr int kMaxProcs = 64;

enum class System { jobring, jobring_batch, ring, boost_mq, jobring_block, boost_mq_block };

const char* system_name(System s) {
  switch (s) {
    case System::jobring:
      return "jobring";
    case System::jobring_batch:
      return "jobring_batch32";
    case System::ring:
      return "ring";
    case System::boost_mq:
      return "boost_mq";
    case System::jobring_block:
      return "jobring_block";
    case System::boost_mq_block:
      return "boost_mq_block";
  }
  return "?";
}

struct alignas(64) Tally {
  std::atomic<std::uint64_t> jobs{0};
};

struct Control {
  alignas(64) std::atomic<int> ready{0};
  alignas(64) std::atomic<int> go{0};
  alignas(64) std::atomic<int> stop{0};
  Tally tally[kMaxProcs];
};

// What every child needs: the queues (made by the parent before fork), the
// control block, and its share of the work.
struct Setup {
  System system;
  int producers;
  int workers;
  std::uint64_t jobs;
  std::string jobring_name;
  bench::ShmRing* ring;
  bench::BoostMq* mq;
  Control* control;
};

void wait_for_go(Control& c) {
  c.ready.fetch_add(1);
  bench::Backoff b;
  while (c.go.load(std::memory_order_acquire) == 0) b.pause();
}

std::uint64_t share_of(const Setup& s, int producer) {
  const std::uint64_t per = s.jobs / static_cast<std::uint64_t>(s.producers);
  return per + (producer == 0 ? s.jobs % static_cast<std::uint64_t>(s.producers) : 0);
}

boost::posix_time::ptime in_ms(int ms) {
  return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(ms);
}

int run_producer(const Setup& s, int index) {
  std::array<std::byte, kPayload> payload{};
  const std::uint64_t n = share_of(s, index);
  bench::Backoff b;
  switch (s.system) {
    case System::jobring:
    case System::jobring_block: {
      auto q = jobring::Queue::open(s.jobring_name);
      jobring::PushOptions opts;
      if (s.system == System::jobring_block) opts.wait = 1000ms;
      wait_for_go(*s.control);
      for (std::uint64_t i = 0; i < n; ++i) {
        std::memcpy(payload.data(), &i, sizeof i);
        while (!q.push(payload, opts)) b.pause();
        b.reset();
      }
      return 0;
    }
    case System::jobring_batch: {
      auto q = jobring::Queue::open(s.jobring_name);
      std::array<std::array<std::byte, kPayload>, kBatch> bodies{};
      std::array<std::span<const std::byte>, kBatch> spans;
      for (std::size_t k = 0; k < kBatch; ++k) spans[k] = bodies[k];
      wait_for_go(*s.control);
      std::uint64_t i = 0;
      while (i < n) {
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, n - i));
        for (std::size_t k = 0; k < want; ++k) {
          const std::uint64_t v = i + k;
          std::memcpy(bodies[k].data(), &v, sizeof v);
        }
        std::size_t done = 0;
        while (done < want) {
          const std::size_t got = q.push_many(std::span(spans).subspan(done, want - done));
          if (got == 0) {
            b.pause();
          } else {
            b.reset();
          }
          done += got;
        }
        i += want;
      }
      return 0;
    }
    case System::ring: {
      wait_for_go(*s.control);
      for (std::uint64_t i = 0; i < n; ++i) {
        std::memcpy(payload.data(), &i, sizeof i);
        while (!s.ring->try_push(payload)) b.pause();
        b.reset();
      }
      return 0;
    }
    case System::boost_mq:
    case System::boost_mq_block: {
      auto q = s.mq->open();
      wait_for_go(*s.control);
      for (std::uint64_t i = 0; i < n; ++i) {
        std::memcpy(payload.data(), &i, sizeof i);
        if (s.system == System::boost_mq_block) {
          q->send(payload.data(), payload.size(), 0);
        } else {
          while (!q->try_send(payload.data(), payload.size(), 0)) b.pause();
          b.reset();
        }
      }
      return 0;
    }
  }
  return 1;
}

int run_worker(const Setup& s, int index) {
  Control& c = *s.control;
  std::atomic<std::uint64_t>& tally = c.tally[index].jobs;
  std::uint64_t done = 0;
  bench::Backoff b;
  auto finished = [&] { return c.stop.load(std::memory_order_relaxed) != 0; };
  switch (s.system) {
    case System::jobring:
    case System::jobring_block: {
      auto q = jobring::Queue::open(s.jobring_name);
      jobring::Job job;
      const bool block = s.system == System::jobring_block;
      wait_for_go(c);
      while (!finished()) {
        const auto st = block ? q.claim(job, 5ms) : q.try_claim(job);
        if (st != jobring::ClaimStatus::ok) {
          if (!block) b.pause();
          continue;
        }
        b.reset();
        if (q.ack(job.lease) != jobring::LeaseStatus::ok) return 3;
        tally.store(++done, std::memory_order_relaxed);
      }
      return 0;
    }
    case System::jobring_batch: {
      auto q = jobring::Queue::open(s.jobring_name);
      std::array<jobring::Job, kBatch> jobs;
      std::array<jobring::Lease, kBatch> leases;
      wait_for_go(c);
      while (!finished()) {
        const std::size_t n = q.try_claim_many(jobs);
        if (n == 0) {
          b.pause();
          continue;
        }
        b.reset();
        for (std::size_t k = 0; k < n; ++k) leases[k] = jobs[k].lease;
        if (q.ack_many(std::span(leases).first(n)) != n) return 3;
        done += n;
        tally.store(done, std::memory_order_relaxed);
      }
      return 0;
    }
    case System::ring: {
      std::array<std::byte, kPayload> out{};
      wait_for_go(c);
      while (!finished()) {
        if (s.ring->try_pop(out.data()) < 0) {
          b.pause();
          continue;
        }
        b.reset();
        tally.store(++done, std::memory_order_relaxed);
      }
      return 0;
    }
    case System::boost_mq:
    case System::boost_mq_block: {
      auto q = s.mq->open();
      std::array<std::byte, kPayload> out{};
      const bool block = s.system == System::boost_mq_block;
      wait_for_go(c);
      while (!finished()) {
        std::size_t got = 0;
        unsigned priority = 0;
        const bool ok = block ? q->timed_receive(out.data(), out.size(), got, priority, in_ms(5))
                              : q->try_receive(out.data(), out.size(), got, priority);
        if (!ok) {
          if (!block) b.pause();
          continue;
        }
        b.reset();
        tally.store(++done, std::memory_order_relaxed);
      }
      return 0;
    }
  }
  return 1;
}

void BM_Xproc(benchmark::State& state, System system, int producers, int workers) {
  const auto jobs = static_cast<std::uint64_t>(bench::env_long("JOBRING_BENCH_XPROC_JOBS", 400000));
  const long limit_s = bench::env_long("JOBRING_BENCH_XPROC_LIMIT_S", 60);
  const bool pin = bench::env_long("JOBRING_BENCH_XPROC_PIN", 0) != 0;
  const std::vector<int> cpus = pin ? bench::allowed_cpus() : std::vector<int>{};
  if (pin && cpus.empty()) {
    state.SkipWithError("JOBRING_BENCH_XPROC_PIN=1 but sched_getaffinity failed");
    return;
  }
  // The CPU of the k-th child (producers first), or -1 when not pinning.
  auto cpu_of = [&](int k) { return pin ? cpus[static_cast<std::size_t>(k) % cpus.size()] : -1; };
  if (producers + workers > kMaxProcs) {
    state.SkipWithError("too many processes");
    return;
  }
  for (auto _ : state) {
    const std::string name = "bench.xproc." + std::to_string(::getpid());
    std::optional<jobring::Queue> jq;
    std::unique_ptr<bench::ShmRing> ring;
    std::unique_ptr<bench::BoostMq> mq;
    switch (system) {
      case System::jobring:
      case System::jobring_batch:
      case System::jobring_block: {
        jobring::Queue::remove(name);
        jobring::Options o;
        o.capacity = kCapacity;
        o.max_payload = kPayload;
        jq.emplace(jobring::Queue::create(name, o));
        break;
      }
      case System::ring:
        ring = std::make_unique<bench::ShmRing>(kCapacity, static_cast<std::uint32_t>(kPayload));
        break;
      case System::boost_mq:
      case System::boost_mq_block:
        mq = std::make_unique<bench::BoostMq>(name, kCapacity, kPayload);
        break;
    }
    bench::Shared<Control> control;
    const Setup setup{system, producers, workers, jobs, name, ring.get(), mq.get(), &*control};

    bench::ProcessGroup group;
    // A child that cannot be pinned fails (exit 4): the run is reported as
    // an error rather than as a pinned figure that was not pinned.
    for (int w = 0; w < workers; ++w)
      group.spawn(
          [&setup, w, cpu = cpu_of(producers + w)] { return bench::pin_to(cpu) ? run_worker(setup, w) : 4; });
    for (int p = 0; p < producers; ++p)
      group.spawn([&setup, p, cpu = cpu_of(p)] { return bench::pin_to(cpu) ? run_producer(setup, p) : 4; });

    const std::int64_t give_up = bench::mono_ns() + limit_s * 1'000'000'000;
    bool ok = true;
    while (control->ready.load() < producers + workers) {
      if (bench::mono_ns() > give_up || group.size() < static_cast<std::size_t>(producers + workers)) {
        ok = false;
        break;
      }
      ::usleep(200);
    }
    std::uint64_t total = 0;
    std::int64_t t0 = 0, t1 = 0;
    if (ok) {
      t0 = bench::mono_ns();
      control->go.store(1, std::memory_order_release);
      for (;;) {
        ::usleep(200);
        total = 0;
        for (int w = 0; w < workers; ++w) total += control->tally[w].jobs.load(std::memory_order_relaxed);
        if (total >= jobs) break;
        if (bench::mono_ns() > give_up) {
          ok = false;
          break;
        }
      }
      t1 = bench::mono_ns();
    }
    control->stop.store(1);
    const bool clean = group.wait_all(bench::mono_ns() + 10'000'000'000);
    if (jq) jobring::Queue::remove(name);
    if (!ok) {
      state.SkipWithError("did not finish in time (JOBRING_BENCH_XPROC_LIMIT_S)");
      return;
    }
    total = 0;
    for (int w = 0; w < workers; ++w) total += control->tally[w].jobs.load();
    if (!clean || total != jobs) {
      state.SkipWithError(
          ("a child failed or the count is off: " + std::to_string(total) + " of " + std::to_string(jobs))
              .c_str());
      return;
    }
    const double seconds = static_cast<double>(t1 - t0) / 1e9;
    state.SetIterationTime(seconds);
    state.counters["jobs_per_s"] = static_cast<double>(jobs) / seconds;
    state.counters["ns_per_job"] = seconds * 1e9 / static_cast<double>(jobs);
    state.counters["producers"] = producers;
    state.counters["workers"] = workers;
    state.counters["jobs"] = static_cast<double>(jobs);
    state.counters["pinned"] = pin ? 1 : 0;
  }
}

std::vector<std::pair<int, int>> shapes() {
  const char* env = std::getenv("JOBRING_BENCH_XPROC_PW");
  std::string spec = env != nullptr ? env : "1x1,1x2,2x1,2x2";
  std::vector<std::pair<int, int>> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto x = item.find('x');
    if (x == std::string::npos) continue;
    const int p = std::atoi(item.substr(0, x).c_str());
    const int w = std::atoi(item.substr(x + 1).c_str());
    if (p > 0 && w > 0 && p + w <= kMaxProcs) out.emplace_back(p, w);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  for (const auto& [p, w] : shapes()) {
    for (const System s : {System::jobring, System::jobring_batch, System::ring, System::boost_mq,
                           System::jobring_block, System::boost_mq_block}) {
      const std::string name =
          std::string("BM_Xproc/") + system_name(s) + "/p" + std::to_string(p) + "w" + std::to_string(w);
      benchmark::RegisterBenchmark(name.c_str(), BM_Xproc, s, p, w)
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
