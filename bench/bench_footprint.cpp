// Footprint: what a queue costs in memory beyond its payloads, and proof
// that the hot path never allocates.
//
//   BM_Footprint/<system>/<bytes>: a queue of 1024 slots for jobs of
//     <bytes>; the segment's real size (the /dev/shm file for jobring and
//     Boost message_queue, the mapping for the bare ring) over the capacity,
//     minus the payload: counter overhead_bytes_per_slot. Computed from the
//     segment, never assumed, so a layout change shows up here.
//   BM_Allocations/<path>: this binary replaces the global operator new and
//     counts calls. After a warm-up (a Job's buffer is sized by its first
//     claim, by design), N operations of the path run and the counter
//     allocs_per_op must be 0 (Guarantee 7: the hot path does not allocate).
//     Paths: cycle (push + try_claim + ack), keyed (push with a
//     de-duplication key + try_claim + ack), batch32 (push_many +
//     try_claim_many + ack_many), blocking (push + claim with a wait +
//     ack), release (push + try_claim + release + try_claim + ack),
//     extend (try_claim + extend + ack), empty (try_claim on an empty
//     queue).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "peers.hpp"
#include "procs.hpp"

// --- Counting operator new (the whole binary) -------------------------------
// Every replacement below allocates with malloc / posix_memalign and frees
// with free, which is a matched pair; GCC cannot see that the replaced
// operator new is ours and warns at each inlined delete.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<std::uint64_t> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (::posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kCapacity = 1024;

std::string unique_name(const char* what) {
  return std::string("bench.") + what + "." + std::to_string(::getpid());
}

// --- Bytes per slot ----------------------------------------------------------

void BM_Footprint_jobring(benchmark::State& state) {
  const auto payload = static_cast<std::uint32_t>(state.range(0));
  const std::string name = unique_name("footprint");
  long long bytes = -1;
  for (auto _ : state) {
    jobring::Queue::remove(name);
    jobring::Options o;
    o.capacity = kCapacity;
    o.max_payload = payload;
    auto q = jobring::Queue::create(name, o);
    bytes = bench::file_size("/dev/shm/jobring." + name);
    jobring::Queue::remove(name);
  }
  if (bytes < 0) {
    state.SkipWithError("cannot stat the segment in /dev/shm");
    return;
  }
  state.counters["segment_bytes"] = static_cast<double>(bytes);
  state.counters["overhead_bytes_per_slot"] =
      static_cast<double>(bytes) / kCapacity - static_cast<double>(payload);
}

void BM_Footprint_ring(benchmark::State& state) {
  const auto payload = static_cast<std::uint32_t>(state.range(0));
  std::size_t bytes = 0;
  for (auto _ : state) {
    bench::ShmRing ring(kCapacity, payload);
    bytes = ring.bytes();
  }
  state.counters["segment_bytes"] = static_cast<double>(bytes);
  state.counters["overhead_bytes_per_slot"] =
      static_cast<double>(bytes) / kCapacity - static_cast<double>(payload);
}

void BM_Footprint_boost_mq(benchmark::State& state) {
  const auto payload = static_cast<std::uint32_t>(state.range(0));
  long long bytes = -1;
  for (auto _ : state) {
    bench::BoostMq q(unique_name("footprintmq"), kCapacity, payload);
    bytes = bench::file_size("/dev/shm/" + q.name());
  }
  if (bytes < 0) {
    state.SkipWithError("cannot stat the queue in /dev/shm");
    return;
  }
  state.counters["segment_bytes"] = static_cast<double>(bytes);
  state.counters["overhead_bytes_per_slot"] =
      static_cast<double>(bytes) / kCapacity - static_cast<double>(payload);
}

void payload_sizes(benchmark::internal::Benchmark* b) {
  for (const long s : {8, 64, 256, 1024}) b->Arg(s);
  b->ArgName("bytes")->Iterations(1);
}
BENCHMARK(BM_Footprint_jobring)->Apply(payload_sizes);
BENCHMARK(BM_Footprint_ring)->Apply(payload_sizes);
BENCHMARK(BM_Footprint_boost_mq)->Apply(payload_sizes);

// --- Allocations on the hot path -------------------------------------------

enum class Path { cycle, keyed, batch, blocking, release, extend, empty };

// One operation of `path`; false on an unexpected outcome.
struct Runner {
  jobring::Queue& q;
  jobring::Job job;
  std::array<jobring::Job, 32> jobs;
  std::array<jobring::Lease, 32> leases;
  std::array<std::byte, 64> payload{};
  std::array<std::span<const std::byte>, 32> payloads;
  std::uint64_t serial = 0;
  char key[32] = {};

  explicit Runner(jobring::Queue& queue) : q(queue) { payloads.fill(payload); }

  bool once(Path path) {
    switch (path) {
      case Path::cycle:
        return q.push(payload) && q.try_claim(job) == jobring::ClaimStatus::ok &&
               q.ack(job.lease) == jobring::LeaseStatus::ok;
      case Path::keyed: {
        const int n = std::snprintf(key, sizeof key, "key-%llu", static_cast<unsigned long long>(++serial));
        jobring::PushOptions o;
        o.key = std::string_view(key, static_cast<std::size_t>(n));
        return q.push(payload, o) && q.try_claim(job) == jobring::ClaimStatus::ok &&
               q.ack(job.lease) == jobring::LeaseStatus::ok;
      }
      case Path::batch: {
        if (q.push_many(payloads) != payloads.size()) return false;
        const std::size_t n = q.try_claim_many(jobs);
        for (std::size_t i = 0; i < n; ++i) leases[i] = jobs[i].lease;
        return n == jobs.size() && q.ack_many(leases) == n;
      }
      case Path::blocking:
        return q.push(payload) && q.claim(job, 10ms) == jobring::ClaimStatus::ok &&
               q.ack(job.lease) == jobring::LeaseStatus::ok;
      case Path::release:
        return q.push(payload) && q.try_claim(job) == jobring::ClaimStatus::ok &&
               q.release(job.lease) == jobring::LeaseStatus::ok &&
               q.try_claim(job) == jobring::ClaimStatus::ok && q.ack(job.lease) == jobring::LeaseStatus::ok;
      case Path::extend:
        return q.push(payload) && q.try_claim(job) == jobring::ClaimStatus::ok &&
               q.extend(job, 5000ms) == jobring::LeaseStatus::ok &&
               q.ack(job.lease) == jobring::LeaseStatus::ok;
      case Path::empty:
        return q.try_claim(job) == jobring::ClaimStatus::empty;
    }
    return false;
  }
};

void BM_Allocations(benchmark::State& state, Path path) {
  const long ops = bench::env_long("JOBRING_BENCH_ALLOC_OPS", 20000);
  const std::string name = unique_name("alloc");
  jobring::Queue::remove(name);
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = 64;
  auto q = jobring::Queue::create(name, o);
  Runner r(q);
  std::uint64_t allocations = 0;
  bool ok = true;
  for (auto _ : state) {
    for (int i = 0; i < 100 && ok; ++i) ok = r.once(path);  // warm-up: Job buffers sized once
    const std::uint64_t before = g_allocations.load();
    for (long i = 0; i < ops && ok; ++i) ok = r.once(path);
    allocations = g_allocations.load() - before;
  }
  jobring::Queue::remove(name);
  if (!ok) {
    state.SkipWithError("an operation had an unexpected outcome");
    return;
  }
  state.counters["ops"] = static_cast<double>(ops);
  state.counters["allocations"] = static_cast<double>(allocations);
  state.counters["allocs_per_op"] = static_cast<double>(allocations) / static_cast<double>(ops);
}

BENCHMARK_CAPTURE(BM_Allocations, cycle, Path::cycle)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, keyed, Path::keyed)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, batch32, Path::batch)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, blocking, Path::blocking)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, release, Path::release)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, extend, Path::extend)->Iterations(1);
BENCHMARK_CAPTURE(BM_Allocations, empty, Path::empty)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
