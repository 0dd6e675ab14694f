// Wake latency between processes (issue 3): how long from a push in one
// process until a claim() blocked in another process returns the job —
// measured next to a bare process-shared futex ping-pong, in the same run.
//
// Both benchmarks are ping-pongs between the benchmark process and a forked
// child, one hop in each direction per round trip:
//
//   jobring:  parent ──push(A){t_send}──▶ child blocked in claim(A) returns,
//             records now - t_send, acks, then ──push(B){t_send', lat}──▶
//             parent blocked in claim(B) returns, records now - t_send'.
//   boost_mq: the same over two Boost.Interprocess message_queues, the
//             receiver blocked in receive() (a process-shared mutex and
//             condition variable: the peer's own blocking wait).
//   futex:    the same over two 32-bit futex words in a MAP_SHARED anonymous
//             mapping (no FUTEX_PRIVATE_FLAG, like jobring's event words),
//             with the same announce / re-check / FUTEX_WAIT protocol and a
//             FUTEX_WAKE only when the waiting bit is set: the floor that any
//             cross-process wake-up on this machine pays.
//
// Every hop is a real wake-up of a sleeping receiver: before the receiver
// blocks it sets an "armed" word; the sender waits for it and then spins
// for `settle` µs (argument; default 20) so that the receiver is inside
// FUTEX_WAIT when the push comes. With settle 0 the receiver may still be on
// its way to sleep (shown for comparison). A sample is CLOCK_MONOTONIC at
// the receiver's return minus CLOCK_MONOTONIC just before the send.
//
// Reported per benchmark (counters, and one line on stderr): hops, median,
// p90, p99, p99.9 and max of the per-hop latency, in µs. The target:
// jobring's median under 10 µs. Time per iteration (one round trip) includes
// both settles and is not the figure to read.
//
// Sizing: JOBRING_BENCH_ROUND_TRIPS (default 20000) round trips per benchmark.
// Pinning (pin.hpp), the same for every system: JOBRING_BENCH_WAKE_PIN=1
// runs the benchmark process on the first CPU it may use and the child on
// the second (every hop wakes a sleeper on another CPU); 2 runs both on the
// first (every hop a hand-off on one CPU); 0 (default): the scheduler places
// them, and on 2 vCPUs picks one or the other from run to run. Counter
// `pinned` (the variable's value).
#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "peers.hpp"
#include "pin.hpp"

namespace {

using namespace std::chrono_literals;

std::int64_t mono_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Busy-waits `us` microseconds (the receiver gets time to fall asleep).
void settle(std::int64_t us) noexcept {
  if (us <= 0) return;
  const std::int64_t until = mono_ns() + us * 1000;
  while (mono_ns() < until) cpu_relax();
}

// Waits until `word` == `value`; yields after a while (2 shared cores).
void await(const std::atomic<std::uint64_t>& word, std::uint64_t value) noexcept {
  for (unsigned spins = 0; word.load(std::memory_order_acquire) != value; ++spins) {
    if (spins < 4096) {
      cpu_relax();
    } else {
      ::sched_yield();
    }
  }
}

// Words both processes see: "armed" flags (the receiver is about to block
// for hop number N) and, for the bare futex, the futex words and stamps.
struct alignas(64) Shared {
  alignas(64) std::atomic<std::uint64_t> child_armed{0};
  alignas(64) std::atomic<std::uint64_t> parent_armed{0};
  alignas(64) std::atomic<std::uint32_t> to_child{0};  // futex: (seq << 1) | waiting
  alignas(64) std::atomic<std::uint32_t> to_parent{0};
  alignas(64) std::atomic<std::int64_t> stamp_to_child{0};
  std::atomic<std::int64_t> stamp_to_parent{0};
  std::atomic<std::int64_t> child_latency{0};  // the child's measurement of the last parent→child hop
  std::atomic<int> stop{0};
};

Shared* map_shared() {
  void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return new (p) Shared();
}
void unmap_shared(Shared* s) {
  s->~Shared();
  ::munmap(s, sizeof(Shared));
}

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) noexcept {
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

// Receiver: announce (set the waiting bit), re-check, sleep; returns the new sequence.
std::uint32_t futex_wait_for(std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept {
  for (;;) {
    const std::uint32_t v = word.fetch_or(1, std::memory_order_seq_cst) | 1u;
    if ((v >> 1) != seen) return v >> 1;
    (void)futex(&word, FUTEX_WAIT, v);
  }
}
// Sender: bump the sequence and clear the bit; a system call only if someone waits.
void futex_post(std::atomic<std::uint32_t>& word) noexcept {
  std::uint32_t v = word.load(std::memory_order_seq_cst);
  while (!word.compare_exchange_weak(v, (v & ~1u) + 2, std::memory_order_seq_cst)) {
  }
  if ((v & 1u) != 0) (void)futex(&word, FUTEX_WAKE, INT_MAX);
}

void stop_child(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 2000; ++i) {  // up to ~2 s for a clean exit
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
}

void report(benchmark::State& state, const char* what, std::vector<std::int64_t>& ns) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  auto pct = [&](double p) {  // nearest rank
    const auto rank = static_cast<std::size_t>(p * static_cast<double>(ns.size()) + 0.999999);
    return static_cast<double>(ns[std::clamp<std::size_t>(rank, 1, ns.size()) - 1]) / 1000.0;
  };
  const double p50 = pct(0.50), p90 = pct(0.90), p99 = pct(0.99), p999 = pct(0.999);
  const double max = static_cast<double>(ns.back()) / 1000.0;
  state.counters["hops"] = static_cast<double>(ns.size());
  state.counters["p50_us"] = p50;
  state.counters["p90_us"] = p90;
  state.counters["p99_us"] = p99;
  state.counters["p999_us"] = p999;
  state.counters["max_us"] = max;
  const char* pin = std::getenv("JOBRING_BENCH_WAKE_PIN");
  state.counters["pinned"] = pin != nullptr ? static_cast<double>(std::atol(pin)) : 0;
  std::fprintf(stderr,
               "%-34s hops=%zu  median=%.2f us  p90=%.2f us  p99=%.2f us  p99.9=%.2f us  max=%.1f us\n", what,
               ns.size(), p50, p90, p99, p999, max);
}

// Payload of a jobring hop: the send stamp, the receiver's measurement of
// the previous hop (replies only), and a stop flag.
struct Message {
  std::int64_t sent_ns;
  std::int64_t latency_ns;
  std::int64_t stop;
};

std::span<const std::byte> bytes_of(const Message& m) {
  return std::as_bytes(std::span<const Message, 1>(&m, 1));
}
Message message_of(const jobring::Job& job) {
  Message m{};
  std::memcpy(&m, job.payload().data(), std::min(sizeof m, job.payload().size()));
  return m;
}

// A blocking claim from `q`, or (with `idle` queues) from the first of the
// idle ones and then q, sleeping on all of them at once (Queue::claim_any,
// issue 19): the wake-up of a worker of several queues.
jobring::ClaimStatus claim_from(jobring::Queue& q, std::vector<jobring::Queue>& idle, jobring::Job& job) {
  if (idle.empty()) return q.claim(job, 30s);
  std::vector<jobring::Queue*> all;
  for (auto& i : idle) all.push_back(&i);
  all.push_back(&q);
  return jobring::Queue::claim_any(all, job, 30s).status;
}

// `extra` empty queues named base.x0, base.x1, ... (made by the parent).
std::vector<jobring::Queue> open_idle(const std::string& base, std::int64_t extra) {
  std::vector<jobring::Queue> out;
  for (std::int64_t i = 0; i < extra; ++i)
    out.push_back(jobring::Queue::open(base + ".x" + std::to_string(i)));
  return out;
}

int jobring_child(const std::string& a_name, const std::string& b_name, Shared& sh, std::int64_t settle_us,
                  std::vector<jobring::Queue>& idle) {
  auto a = jobring::Queue::open(a_name);
  auto b = jobring::Queue::open(b_name);
  jobring::Job job;
  for (std::uint64_t hop = 1;; ++hop) {
    sh.child_armed.store(hop, std::memory_order_release);
    if (claim_from(a, idle, job) != jobring::ClaimStatus::ok) return 2;
    const std::int64_t received = mono_ns();
    const Message in = message_of(job);
    if (a.ack(job.lease) != jobring::LeaseStatus::ok) return 3;
    if (in.stop != 0) return 0;
    await(sh.parent_armed, hop);
    settle(settle_us);
    const Message out{mono_ns(), received - in.sent_ns, 0};
    if (!b.push(bytes_of(out))) return 4;
  }
}

void BM_JobringWake(benchmark::State& state) {
  const std::int64_t settle_us = state.range(0);
  // Idle queues each side also sleeps on (claim_any over extra + 1 queues).
  const std::int64_t extra = state.range(1);
  const std::string base = "bench.wake." + std::to_string(::getpid());
  const std::string a_name = base + ".a", b_name = base + ".b";
  jobring::Options o;
  o.capacity = 16;
  o.max_payload = 64;
  jobring::Queue::remove(a_name);
  jobring::Queue::remove(b_name);
  auto a = jobring::Queue::create(a_name, o);
  auto b = jobring::Queue::create(b_name, o);
  std::vector<jobring::Queue> idle;
  for (std::int64_t i = 0; i < extra; ++i) {
    jobring::Queue::remove(base + ".x" + std::to_string(i));
    idle.push_back(jobring::Queue::create(base + ".x" + std::to_string(i), o));
  }
  auto remove_idle = [&] {
    for (std::int64_t i = 0; i < extra; ++i) jobring::Queue::remove(base + ".x" + std::to_string(i));
  };
  Shared* sh = map_shared();
  if (sh == nullptr) {
    state.SkipWithError("mmap failed");
    return;
  }
  const bench::PinPair pin("JOBRING_BENCH_WAKE_PIN");
  if (pin.failed()) {
    unmap_shared(sh);
    jobring::Queue::remove(a_name);
    jobring::Queue::remove(b_name);
    remove_idle();
    state.SkipWithError("JOBRING_BENCH_WAKE_PIN set but the CPUs cannot be pinned");
    return;
  }
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!pin.child()) ::_exit(6);
    std::vector<jobring::Queue> child_idle = open_idle(base, extra);
    ::_exit(jobring_child(a_name, b_name, *sh, settle_us, child_idle));
  }

  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations) * 2);
  jobring::Job job;
  std::uint64_t hop = 0;
  bool failed = false;
  for (auto _ : state) {
    ++hop;
    await(sh->child_armed, hop);
    settle(settle_us);
    const Message out{mono_ns(), 0, 0};
    if (!a.push(bytes_of(out))) {
      failed = true;
      break;
    }
    sh->parent_armed.store(hop, std::memory_order_release);
    if (claim_from(b, idle, job) != jobring::ClaimStatus::ok) {
      failed = true;
      break;
    }
    const std::int64_t received = mono_ns();
    const Message in = message_of(job);
    (void)b.ack(job.lease);
    samples.push_back(in.latency_ns);          // parent → child
    samples.push_back(received - in.sent_ns);  // child → parent
  }
  if (!failed) {
    await(sh->child_armed, hop + 1);
    const Message stop{mono_ns(), 0, 1};
    (void)a.push(bytes_of(stop));
  }
  stop_child(child);
  unmap_shared(sh);
  jobring::Queue::remove(a_name);
  jobring::Queue::remove(b_name);
  remove_idle();
  if (failed) {
    state.SkipWithError("the ping-pong child stopped answering");
    return;
  }
  const std::string what =
      std::string(extra == 0 ? "jobring claim"
                             : "jobring claim_any over " + std::to_string(extra + 1) + " queues") +
      " woken by push, settle " + std::to_string(settle_us) + "us";
  report(state, what.c_str(), samples);
}

int boost_child(bench::BoostMq& a_mq, bench::BoostMq& b_mq, Shared& sh, std::int64_t settle_us) {
  auto a = a_mq.open();
  auto b = b_mq.open();
  for (std::uint64_t hop = 1;; ++hop) {
    sh.child_armed.store(hop, std::memory_order_release);
    Message in{};
    std::size_t got = 0;
    unsigned priority = 0;
    a->receive(&in, sizeof in, got, priority);
    const std::int64_t received = mono_ns();
    if (got != sizeof in) return 2;
    if (in.stop != 0) return 0;
    await(sh.parent_armed, hop);
    settle(settle_us);
    const Message out{mono_ns(), received - in.sent_ns, 0};
    b->send(&out, sizeof out, 0);
  }
}

void BM_BoostMqWake(benchmark::State& state) {
  const std::int64_t settle_us = state.range(0);
  const std::string base = "bench.wakemq." + std::to_string(::getpid());
  bench::BoostMq a(base + ".a", 16, sizeof(Message));
  bench::BoostMq b(base + ".b", 16, sizeof(Message));
  Shared* sh = map_shared();
  if (sh == nullptr) {
    state.SkipWithError("mmap failed");
    return;
  }
  const bench::PinPair pin("JOBRING_BENCH_WAKE_PIN");
  if (pin.failed()) {
    unmap_shared(sh);
    state.SkipWithError("JOBRING_BENCH_WAKE_PIN set but the CPUs cannot be pinned");
    return;
  }
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!pin.child()) ::_exit(6);
    int rc = 5;
    try {
      rc = boost_child(a, b, *sh, settle_us);
    } catch (...) {
    }
    ::_exit(rc);
  }
  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations) * 2);
  std::uint64_t hop = 0;
  for (auto _ : state) {
    ++hop;
    await(sh->child_armed, hop);
    settle(settle_us);
    const Message out{mono_ns(), 0, 0};
    a.get().send(&out, sizeof out, 0);
    sh->parent_armed.store(hop, std::memory_order_release);
    Message in{};
    std::size_t got = 0;
    unsigned priority = 0;
    b.get().receive(&in, sizeof in, got, priority);
    const std::int64_t received = mono_ns();
    samples.push_back(in.latency_ns);
    samples.push_back(received - in.sent_ns);
  }
  await(sh->child_armed, hop + 1);
  const Message stop{mono_ns(), 0, 1};
  a.get().send(&stop, sizeof stop, 0);
  stop_child(child);
  unmap_shared(sh);
  const std::string what = "boost mq receive woken by send, settle " + std::to_string(settle_us) + "us";
  report(state, what.c_str(), samples);
}

int futex_child(Shared& sh, std::int64_t settle_us) {
  std::uint32_t seen = 0;
  for (std::uint64_t hop = 1;; ++hop) {
    sh.child_armed.store(hop, std::memory_order_release);
    seen = futex_wait_for(sh.to_child, seen);
    const std::int64_t received = mono_ns();
    if (sh.stop.load() != 0) return 0;
    const std::int64_t latency = received - sh.stamp_to_child.load();
    await(sh.parent_armed, hop);
    settle(settle_us);
    sh.child_latency.store(latency);
    sh.stamp_to_parent.store(mono_ns());
    futex_post(sh.to_parent);
  }
}

void BM_FutexWake(benchmark::State& state) {
  const std::int64_t settle_us = state.range(0);
  Shared* sh = map_shared();
  if (sh == nullptr) {
    state.SkipWithError("mmap failed");
    return;
  }
  const bench::PinPair pin("JOBRING_BENCH_WAKE_PIN");
  if (pin.failed()) {
    unmap_shared(sh);
    state.SkipWithError("JOBRING_BENCH_WAKE_PIN set but the CPUs cannot be pinned");
    return;
  }
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!pin.child()) ::_exit(6);
    ::_exit(futex_child(*sh, settle_us));
  }

  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations) * 2);
  std::uint32_t seen = 0;
  std::uint64_t hop = 0;
  for (auto _ : state) {
    ++hop;
    await(sh->child_armed, hop);
    settle(settle_us);
    sh->stamp_to_child.store(mono_ns());
    futex_post(sh->to_child);
    sh->parent_armed.store(hop, std::memory_order_release);
    seen = futex_wait_for(sh->to_parent, seen);
    const std::int64_t received = mono_ns();
    samples.push_back(sh->child_latency.load());
    samples.push_back(received - sh->stamp_to_parent.load());
  }
  await(sh->child_armed, hop + 1);
  sh->stop.store(1);
  futex_post(sh->to_child);
  stop_child(child);
  unmap_shared(sh);
  const std::string what = "bare futex ping-pong, settle " + std::to_string(settle_us) + "us";
  report(state, what.c_str(), samples);
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("JOBRING_BENCH_ROUND_TRIPS");
  const long round_trips = env != nullptr && std::atol(env) > 0 ? std::atol(env) : 20000;
  for (const std::int64_t settle_us : {20, 0}) {
    // 0 idle queues: claim(); 2: claim_any over three queues (issue 19).
    benchmark::RegisterBenchmark("BM_JobringWake", BM_JobringWake)
        ->ArgsProduct({{settle_us}, {0, 2}})
        ->ArgNames({"settle_us", "idle_queues"})
        ->Iterations(round_trips)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_BoostMqWake", BM_BoostMqWake)
        ->Arg(settle_us)
        ->ArgName("settle_us")
        ->Iterations(round_trips)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_FutexWake", BM_FutexWake)
        ->Arg(settle_us)
        ->ArgName("settle_us")
        ->Iterations(round_trips)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
