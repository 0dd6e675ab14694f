// One process, one job at a time: the cost of moving one job through the
// queue and finishing it, next to the peers in the same binary and run.
//
//   jobring           push + try_claim + ack (a lease, a fencing token, an
//                     owner record, crash safety at every step)
//   jobring_batch32   push_many + try_claim_many + ack_many of 32 jobs,
//                     reported per job
//   ring              the bare shared-memory MPMC ring (peers.hpp): push +
//                     pop, no lease, not crash-safe — the lower bound
//   boost_mq          boost::interprocess::message_queue: send + receive
//
// Argument: payload bytes (8, 64, 256, 1024); each queue is made for that
// size (max_payload = size) with 1024 slots. Read items_per_second (or its
// inverse, ns per job): one item is one job through the whole cycle.
//
// BM_EmptyPoll_*: what a polling worker pays to learn that there is nothing
// to do — try_claim on an empty 1024-slot queue (jobring: the empty-ring memo
// answers after the first two polls), a pop from the empty ring, and Boost's
// try_receive.
//
// BM_Clock/*: the clock reads the hot path pays for — jobring's now_ms()
// (CLOCK_MONOTONIC in ms, lib/common/clock.hpp; a push reads it once, a
// claim pass once), the raw clock_gettime(CLOCK_MONOTONIC) under it, and
// CLOCK_MONOTONIC_COARSE for comparison (not used: it lags under tickless
// idle). Their cost depends on the clocksource (tsc: in the vDSO; kvm-clock:
// slower; a clocksource without a vDSO path: a system call).
#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "peers.hpp"

namespace {

constexpr std::uint32_t kCapacity = 1024;

std::string unique_name(const char* what) {
  return std::string("bench.") + what + "." + std::to_string(::getpid());
}

void BM_Cycle_jobring(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::string name = unique_name("cycle");
  jobring::Queue::remove(name);
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = static_cast<std::uint32_t>(size);
  auto q = jobring::Queue::create(name, o);
  std::vector<std::byte> payload(size, std::byte{0x5a});
  jobring::Job job;
  for (auto _ : state) {
    if (!q.push(payload)) {
      state.SkipWithError("push failed");
      break;
    }
    if (q.try_claim(job) != jobring::ClaimStatus::ok) {
      state.SkipWithError("claim found nothing");
      break;
    }
    if (q.ack(job.lease) != jobring::LeaseStatus::ok) {
      state.SkipWithError("ack lost its lease");
      break;
    }
  }
  benchmark::DoNotOptimize(job.payload().data());
  state.SetItemsProcessed(state.iterations());
  jobring::Queue::remove(name);
}

// The same cycle on a file-backed queue (Options::dir, issue 18) in
// $JOBRING_BENCH_DIR (default /var/tmp: a disk, where /tmp may be memory),
// under each sync policy: none and interval cost a push what /dev/shm does
// (the page cache; interval's msync runs in the janitor, not here); always
// waits for the disk twice per push (the slot before its commit, the state
// word after) and once per ack. 64-byte jobs.
void BM_Durable(benchmark::State& state, jobring::Options::Sync sync) {
  const char* env = std::getenv("JOBRING_BENCH_DIR");
  const std::string dir = env != nullptr && *env == '/' ? env : "/var/tmp";
  const std::string name = dir + "/" + unique_name("durable");
  jobring::Queue::remove(name);
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = 64;
  o.sync = sync;
  auto q = jobring::Queue::create(name, o);
  std::vector<std::byte> payload(64, std::byte{0x5a});
  jobring::Job job;
  for (auto _ : state) {
    if (!q.push(payload) || q.try_claim(job) != jobring::ClaimStatus::ok ||
        q.ack(job.lease) != jobring::LeaseStatus::ok) {
      state.SkipWithError("cycle failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  jobring::Queue::remove(name);
}

constexpr std::size_t kBatch = 32;

void BM_Cycle_jobring_batch32(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::string name = unique_name("cyclebatch");
  jobring::Queue::remove(name);
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = static_cast<std::uint32_t>(size);
  auto q = jobring::Queue::create(name, o);
  std::vector<std::byte> payload(size, std::byte{0x5a});
  std::array<std::span<const std::byte>, kBatch> payloads;
  payloads.fill(payload);
  std::array<jobring::Job, kBatch> jobs;
  std::array<jobring::Lease, kBatch> leases;
  for (auto _ : state) {
    if (q.push_many(payloads) != kBatch) {
      state.SkipWithError("push_many fell short");
      break;
    }
    const std::size_t n = q.try_claim_many(jobs);
    if (n != kBatch) {
      state.SkipWithError("claim_many fell short");
      break;
    }
    for (std::size_t i = 0; i < n; ++i) leases[i] = jobs[i].lease;
    if (q.ack_many(leases) != kBatch) {
      state.SkipWithError("ack_many lost a lease");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
  jobring::Queue::remove(name);
}

void BM_Cycle_ring(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  bench::ShmRing ring(kCapacity, static_cast<std::uint32_t>(size));
  std::vector<std::byte> payload(size, std::byte{0x5a});
  std::vector<std::byte> out(size);
  for (auto _ : state) {
    if (!ring.try_push(payload)) {
      state.SkipWithError("ring full");
      break;
    }
    if (ring.try_pop(out.data()) < 0) {
      state.SkipWithError("ring empty");
      break;
    }
  }
  benchmark::DoNotOptimize(out.data());
  state.SetItemsProcessed(state.iterations());
}

void BM_Cycle_boost_mq(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  bench::BoostMq q(unique_name("cyclemq"), kCapacity, size);
  std::vector<std::byte> payload(size, std::byte{0x5a});
  std::vector<std::byte> out(size);
  auto& mq = q.get();
  for (auto _ : state) {
    mq.send(payload.data(), payload.size(), 0);
    std::size_t got = 0;
    unsigned priority = 0;
    mq.receive(out.data(), out.size(), got, priority);
    benchmark::DoNotOptimize(got);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EmptyPoll_jobring(benchmark::State& state) {
  const std::string name = unique_name("empty");
  jobring::Queue::remove(name);
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = 64;
  auto q = jobring::Queue::create(name, o);
  jobring::Job job;
  for (auto _ : state) {
    if (q.try_claim(job) != jobring::ClaimStatus::empty) {
      state.SkipWithError("claimed from an empty queue");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  jobring::Queue::remove(name);
}

void BM_EmptyPoll_ring(benchmark::State& state) {
  bench::ShmRing ring(kCapacity, 64);
  std::array<std::byte, 64> out{};
  for (auto _ : state) benchmark::DoNotOptimize(ring.try_pop(out.data()));
  state.SetItemsProcessed(state.iterations());
}

void BM_EmptyPoll_boost_mq(benchmark::State& state) {
  bench::BoostMq q(unique_name("emptymq"), kCapacity, 64);
  std::array<std::byte, 64> out{};
  auto& mq = q.get();
  for (auto _ : state) {
    std::size_t got = 0;
    unsigned priority = 0;
    benchmark::DoNotOptimize(mq.try_receive(out.data(), out.size(), got, priority));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Clock_now_ms(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(jobring::detail::now_ms());
  state.SetItemsProcessed(state.iterations());
}

void BM_Clock_monotonic(benchmark::State& state, clockid_t clock) {
  timespec ts{};
  for (auto _ : state) {
    ::clock_gettime(clock, &ts);
    benchmark::DoNotOptimize(ts);
  }
  state.SetItemsProcessed(state.iterations());
}

void sizes(benchmark::internal::Benchmark* b) {
  for (const long s : {8, 64, 256, 1024}) b->Arg(s);
  b->ArgName("bytes")->Unit(benchmark::kNanosecond);
}

BENCHMARK(BM_Cycle_jobring)->Apply(sizes);
BENCHMARK(BM_Cycle_jobring_batch32)->Apply(sizes);
BENCHMARK(BM_Cycle_ring)->Apply(sizes);
BENCHMARK(BM_Cycle_boost_mq)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Durable, none, jobring::Options::Sync::none)->Unit(benchmark::kNanosecond);
BENCHMARK_CAPTURE(BM_Durable, always, jobring::Options::Sync::always)
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(0.5);
BENCHMARK(BM_EmptyPoll_jobring)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_EmptyPoll_ring)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_EmptyPoll_boost_mq)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_Clock_now_ms)->Name("BM_Clock/now_ms")->Unit(benchmark::kNanosecond);
BENCHMARK_CAPTURE(BM_Clock_monotonic, monotonic, CLOCK_MONOTONIC)
    ->Name("BM_Clock/monotonic")
    ->Unit(benchmark::kNanosecond);
BENCHMARK_CAPTURE(BM_Clock_monotonic, monotonic_coarse, CLOCK_MONOTONIC_COARSE)
    ->Name("BM_Clock/monotonic_coarse")
    ->Unit(benchmark::kNanosecond);

}  // namespace

BENCHMARK_MAIN();
