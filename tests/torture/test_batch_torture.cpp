// Randomized kill torture of the batch calls (issue 3): producers that push
// only with push_many and workers that claim only with try_claim_many /
// claim_many and ack with ack_many, SIGKILLed at random; then nothing lost
// and no slot stuck (guarantees 2 and 3). The single calls' torture:
// test_torture.cpp.
//
// Children never use gtest assertions: they report through exit codes,
// MAP_SHARED objects and append-only log files; the parent asserts. The
// test holds with or without a janitor sweeping the queue (guarantee 8).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;
using test::with_delay;
using test::with_lease;
using test::with_wait;

using jobring::test::now_ns;

// Byte views of strings, for push_many. The strings must outlive the views.
struct Payloads {
  std::vector<std::string> text;
  std::vector<std::span<const std::byte>> views;

  explicit Payloads(std::vector<std::string> t) : text(std::move(t)) {
    for (const std::string& s : text)
      views.push_back(std::as_bytes(std::span<const char>(s.data(), s.size())));
  }
  [[nodiscard]] std::span<const std::span<const std::byte>> all() const { return views; }
};

// ===========================================================================
// Random SIGKILLs of processes that use only the batch calls
// ===========================================================================

constexpr int kProducers = 2;
constexpr int kWorkers = 3;
constexpr std::size_t kMaxBatch = 8;
constexpr std::uint32_t kTortureCapacity = 64;
constexpr std::uint32_t kTorturePayload = 512;
constexpr std::size_t kTextBytes = 16;
constexpr std::uint64_t kSeqPerIncarnation = 10'000'000;

// Logged by a producer after push_many returned, one per pushed job.
struct PushRec {
  char text[kTextBytes];
  JobId id;
};
// Logged by a worker for each claimed job, before its batch is acked.
struct ClaimRec {
  char text[kTextBytes];
  JobId id;
  std::uint32_t attempt;
  std::uint32_t whole;  // the payload is exactly what its producer wrote
};

struct Control {
  std::atomic<int> stop_producers{0};
  std::atomic<int> stop_workers{0};
  std::atomic<int> busy[kProducers + kWorkers] = {};  // 1 while inside a batch call
};

std::size_t payload_length(std::uint64_t seq) {
  return kTextBytes + (seq * 7919) % (kTorturePayload - kTextBytes + 1);
}
char pattern(std::uint64_t seq, std::size_t k) { return static_cast<char>('a' + (seq * 31 + k) % 26); }

std::string make_payload(int producer, std::uint64_t seq) {
  std::string out(payload_length(seq), '\0');
  std::snprintf(out.data(), kTextBytes, "p%d-%llu", producer, static_cast<unsigned long long>(seq));
  for (std::size_t k = kTextBytes; k < out.size(); ++k) out[k] = pattern(seq, k);
  return out;
}

bool parse_text(const char* text, int& producer, std::uint64_t& seq) {
  const std::string s(text, strnlen(text, kTextBytes));
  unsigned long long sq = 0;
  int p = -1;
  char tail = 0;
  if (std::sscanf(s.c_str(), "p%d-%llu%c", &p, &sq, &tail) != 2 || p < 0 || p >= kProducers) return false;
  producer = p;
  seq = sq;
  return true;
}

int batch_producer(const std::string& name, const test::TempFile& log, Control& ctl, int index,
                   std::uint64_t incarnation) {
  const int fd = log.open_append_records(sizeof(PushRec));
  if (fd < 0) return 3;
  auto q = Queue::open(name);
  std::minstd_rand rng(static_cast<unsigned>(::getpid()));
  std::uint64_t seq = incarnation * kSeqPerIncarnation;
  std::atomic<int>& busy = ctl.busy[index];
  std::array<JobId, kMaxBatch> ids{};
  while (ctl.stop_producers.load() == 0) {
    std::vector<std::string> batch;
    const std::size_t b = 1 + rng() % kMaxBatch;
    for (std::size_t i = 0; i < b; ++i) batch.push_back(make_payload(index, seq + i));
    const Payloads p(std::move(batch));
    busy.store(1);
    const std::size_t n = q.push_many(p.all(), ids, with_wait(50ms));
    busy.store(0);
    for (std::size_t i = 0; i < n; ++i) {  // after push_many returned
      PushRec rec{};
      std::memcpy(rec.text, p.text[i].data(), kTextBytes);
      rec.id = ids[i];
      if (!test::append_record(fd, rec)) return 3;
    }
    seq += n;  // payloads not pushed are made again, with the same numbers
    ::usleep(static_cast<useconds_t>(rng() % 1500));
  }
  return 0;
}

int batch_worker(const std::string& name, const test::TempFile& log, Control& ctl, int index) {
  const int fd = log.open_append_records(sizeof(ClaimRec));
  if (fd < 0) return 3;
  auto q = Queue::open(name);
  std::minstd_rand rng(static_cast<unsigned>(::getpid()));
  std::atomic<int>& busy = ctl.busy[kProducers + index];
  std::array<Job, kMaxBatch> jobs;
  std::array<Lease, kMaxBatch> leases;
  while (ctl.stop_workers.load() == 0) {
    const std::size_t b = 1 + rng() % kMaxBatch;
    const ClaimOptions co = with_lease(milliseconds(50 + rng() % 151));
    busy.store(1);
    const std::size_t n = q.claim_many(std::span<Job>(jobs).first(b), 100ms, co);
    busy.store(0);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string_view text = jobs[i].text();
      if (text.size() < kTextBytes || text[kTextBytes - 1] != '\0') return 4;
      ClaimRec rec{};
      std::memcpy(rec.text, text.data(), kTextBytes);
      int producer = 0;
      std::uint64_t seq = 0;
      rec.whole = parse_text(rec.text, producer, seq) && text.size() == payload_length(seq) ? 1 : 0;
      for (std::size_t k = kTextBytes; rec.whole != 0 && k < text.size(); ++k) {
        if (text[k] != pattern(seq, k)) rec.whole = 0;
      }
      rec.id = jobs[i].id;
      rec.attempt = jobs[i].attempt;
      if (!test::append_record(fd, rec)) return 3;  // before the ack
      leases[i] = jobs[i].lease;
    }
    if (n == 0) continue;
    if (rng() % 32 == 0) std::this_thread::sleep_for(co.lease + 30ms);  // outlive the lease
    busy.store(1);
    (void)q.ack_many(std::span<const Lease>(leases).first(n));  // lease_lost after a takeover is fine
    busy.store(0);
  }
  return 0;
}

// Guarantees 1-3 with batches under random SIGKILLs (inside push_many,
// claim_many and ack_many, between a batch's commits, between a claim and
// its ack): producers push_many (wait 50 ms) and workers claim_many (wait
// 100 ms, short leases) and ack_many, while the parent kills one of them
// every few milliseconds and restarts it. Then a clean drain, and:
//  - every job whose push_many returned (logged after it returned) was
//    claimed, under the id push_many gave it, with its payload intact;
//  - no payload maps to two ids, no id to two payloads;
//  - at most kMaxBatch unlogged jobs per producer kill;
//  - the ring is empty and free: nothing stuck in WRITING or LEASED.
// Sizing: JOBRING_BATCH_TORTURE_SECONDS (default 4).
TEST(BatchTorture, RandomKillsLoseNothingAndLeakNoSlot) {
  const long seconds = std::max(1L, test::env_long("JOBRING_BATCH_TORTURE_SECONDS", 4));
  const auto seed =
      static_cast<unsigned>(test::env_long("JOBRING_BATCH_TORTURE_SEED", std::random_device{}()));
  Watchdog dog(120s + std::chrono::seconds(seconds), "BatchTorture");
  std::printf("[ batch torture ] seconds=%ld seed=%u\n", seconds, seed);
  std::fflush(stdout);
  std::mt19937 rng(seed);

  QueueName name("b-torture");
  Options o;
  o.capacity = kTortureCapacity;
  o.max_payload = kTorturePayload;
  o.default_lease = 100ms;
  auto q = Queue::create(name.str(), o);
  test::SharedObject<Control> ctl;
  std::vector<std::unique_ptr<test::TempFile>> plogs, wlogs;
  for (int i = 0; i < kProducers; ++i) plogs.push_back(std::make_unique<test::TempFile>("bp"));
  for (int i = 0; i < kWorkers; ++i) wlogs.push_back(std::make_unique<test::TempFile>("bw"));

  struct Child {
    bool producer;
    int index;
    pid_t pid;
  };
  std::array<std::uint64_t, kProducers> incarnations{};
  const pid_t parent = ::getpid();
  auto start = [&](bool producer, int index) -> Child {
    const std::uint64_t inc = producer ? incarnations[static_cast<std::size_t>(index)]++ : 0;
    const pid_t pid = test::fork_child([&, producer, index, inc] {
      test::die_with_parent(parent);
      return producer ? batch_producer(name.str(), *plogs[static_cast<std::size_t>(index)], *ctl, index, inc)
                      : batch_worker(name.str(), *wlogs[static_cast<std::size_t>(index)], *ctl, index);
    });
    return Child{producer, index, pid};
  };
  auto busy_of = [&](const Child& c) -> std::atomic<int>& {
    return ctl->busy[c.producer ? c.index : kProducers + c.index];
  };

  std::vector<Child> children;
  for (int i = 0; i < kProducers; ++i) children.push_back(start(true, i));
  for (int i = 0; i < kWorkers; ++i) children.push_back(start(false, i));
  for (const Child& c : children) ASSERT_GT(c.pid, 0);

  long producer_kills = 0, worker_kills = 0;
  std::vector<std::string> failures;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 25000));
    for (Child& c : children) {
      if (const auto st = test::try_wait_child(c.pid)) {
        failures.push_back(std::string(c.producer ? "producer " : "worker ") + std::to_string(c.index) +
                           " ended by itself with status " + std::to_string(*st));
        c = start(c.producer, c.index);
      }
    }
    Child& victim = children[rng() % children.size()];
    if (rng() % 2 == 0) {  // aim into a batch call (up to 5 ms)
      const auto give_up = std::chrono::steady_clock::now() + 5ms;
      while (busy_of(victim).load() == 0 && std::chrono::steady_clock::now() < give_up) {
      }
    }
    ::kill(victim.pid, SIGKILL);
    const int st = test::wait_child(victim.pid);
    if (st != 128 + SIGKILL)
      failures.push_back("a child ended with status " + std::to_string(st) + " before its kill");
    (victim.producer ? producer_kills : worker_kills)++;
    busy_of(victim).store(0);
    victim = start(victim.producer, victim.index);
    ASSERT_GT(victim.pid, 0);
  }

  ctl->stop_producers.store(1);
  for (const Child& c : children) {
    if (c.producer && test::wait_child(c.pid) != 0) failures.push_back("a producer failed at the end");
  }
  const bool drained = test::poll_until(
      [&] {
        const Stats s = q.stats();
        return s.free == kTortureCapacity;
      },
      60s, 10ms);
  ctl->stop_workers.store(1);
  for (const Child& c : children) {
    if (!c.producer && test::wait_child(c.pid) != 0) failures.push_back("a worker failed at the end");
  }
  for (const std::string& f : failures) ADD_FAILURE() << f;

  const Stats s = q.stats();
  EXPECT_TRUE(drained) << "not drained within 60 s: " << test::describe(s);
  EXPECT_EQ(s.free, kTortureCapacity) << test::describe(s);
  EXPECT_EQ(s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead + s.corrupt, 0u)
      << test::describe(s);

  // Claims: payload text -> id, and the reverse.
  std::unordered_map<std::string, JobId> id_of;
  std::unordered_set<JobId> ids_claimed;
  std::uint64_t claims = 0;
  long bad = 0;
  for (const auto& log : wlogs) {
    std::size_t partial = 0;
    for (const ClaimRec& r : log->records<ClaimRec>(&partial)) {
      ++claims;
      const std::string text(r.text, strnlen(r.text, kTextBytes));
      int p = 0;
      std::uint64_t seq = 0;
      if (!parse_text(r.text, p, seq) ||
          seq / kSeqPerIncarnation >= incarnations[static_cast<std::size_t>(p)]) {
        if (++bad <= 10) ADD_FAILURE() << "claimed a payload no producer wrote: '" << text << "'";
        continue;
      }
      if (r.whole == 0 && ++bad <= 10) ADD_FAILURE() << "'" << text << "' was claimed torn";
      if (r.attempt < 1 && ++bad <= 10) ADD_FAILURE() << "attempt 0 for '" << text << "'";
      const auto [it, fresh] = id_of.try_emplace(text, r.id);
      if (fresh && !ids_claimed.insert(r.id).second && ++bad <= 10)
        ADD_FAILURE() << "job id " << r.id << " carries two payloads";
      if (!fresh && it->second != r.id && ++bad <= 10)
        ADD_FAILURE() << "'" << text << "' claimed under ids " << it->second << " and " << r.id;
    }
    EXPECT_EQ(partial, 0u);
  }
  std::uint64_t logged = 0;
  long lost = 0;
  for (const auto& log : plogs) {
    std::size_t partial = 0;
    for (const PushRec& r : log->records<PushRec>(&partial)) {
      ++logged;
      const std::string text(r.text, strnlen(r.text, kTextBytes));
      const auto it = id_of.find(text);
      if (it == id_of.end()) {
        if (++lost <= 10)
          ADD_FAILURE() << "LOST: '" << text << "' (job " << r.id << ") pushed, never claimed";
      } else if (it->second != r.id && ++bad <= 10) {
        ADD_FAILURE() << "'" << text << "': push_many said id " << r.id << ", claimed as " << it->second;
      }
    }
    EXPECT_EQ(partial, 0u);
  }
  EXPECT_EQ(lost, 0) << "jobs whose push_many returned were lost (guarantee 2)";
  const std::uint64_t distinct = id_of.size();
  EXPECT_GE(distinct, logged);
  EXPECT_LE(distinct - std::min(distinct, logged), static_cast<std::uint64_t>(producer_kills) * kMaxBatch)
      << "more unlogged jobs than producer kills can explain";
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_GT(logged, 0u);
  EXPECT_GT(producer_kills + worker_kills, 0);
  std::printf(
      "[ batch torture ] kills=%ld (producers %ld, workers %ld); pushed: logged=%llu committed=%llu "
      "stats.pushed=%llu; claims=%llu stats.claimed=%llu expired_total=%llu recovered_writes=%llu\n",
      producer_kills + worker_kills, producer_kills, worker_kills, static_cast<unsigned long long>(logged),
      static_cast<unsigned long long>(distinct), static_cast<unsigned long long>(s.pushed),
      static_cast<unsigned long long>(claims), static_cast<unsigned long long>(s.claimed),
      static_cast<unsigned long long>(s.expired_total), static_cast<unsigned long long>(s.recovered_writes));
}

}  // namespace
}  // namespace jobring
