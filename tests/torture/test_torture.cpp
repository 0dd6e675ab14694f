// Randomized kill torture: producers and workers in separate processes, a
// killer in the parent that SIGKILLs a random child every few milliseconds
// and restarts it, then a clean drain and a full account of every job.
//
// Sizing: JOBRING_TORTURE_SECONDS (default 8) seconds of killing;
// JOBRING_TORTURE_SEED fixes the parent's random choices (child timing still
// varies). The counts are printed at the end.
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
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

constexpr int kProducers = 3;
constexpr int kWorkers = 3;
constexpr std::uint64_t kSeqPerIncarnation = 10'000'000;

// A producer logs one of these AFTER push returned ok.
struct PushRec {
  char text[24];
  JobId id;
};
static_assert(sizeof(PushRec) == 32);

// A worker logs one of these for every job it claims, BEFORE acking it.
struct ClaimRec {
  char text[16];
  std::uint32_t attempt;
  std::uint32_t whole;  // 1 if the payload matched what its producer wrote
  JobId id;
};
static_assert(sizeof(ClaimRec) == 32);

// Steers the children; lives in a MAP_SHARED mapping. busy[k] is 1 while
// child k (producers first, then workers) is inside push / try_claim / ack,
// so that the killer can aim some of its kills into the library.
struct Control {
  std::atomic<int> stop_producers{0};
  std::atomic<int> stop_workers{0};
  std::atomic<int> busy[kProducers + kWorkers] = {};
};

// Payload of job `seq`: a 16-byte NUL-padded header "p<producer>-<seq>",
// then a pattern that depends on seq, of a length that depends on seq (up to
// max_payload), so that a torn or mixed-up payload is detected.
constexpr std::uint32_t kMaxPayload = 4096;
constexpr std::size_t kTextBytes = 16;

std::size_t payload_length(std::uint64_t seq) {
  return kTextBytes + (seq * 7919) % (kMaxPayload - kTextBytes + 1);
}
char pattern(std::uint64_t seq, std::size_t k) { return static_cast<char>('a' + (seq + k) % 26); }

void make_payload(std::string& out, int producer, std::uint64_t seq) {
  out.assign(payload_length(seq), '\0');
  std::snprintf(out.data(), kTextBytes, "p%d-%llu", producer, static_cast<unsigned long long>(seq));
  for (std::size_t k = kTextBytes; k < out.size(); ++k) out[k] = pattern(seq, k);
}

enum class Role { producer, worker };

struct Child {
  Role role;
  int index;
  std::uint64_t incarnation;
  pid_t pid;
};

// Child exit codes (besides 0 and 99 = exception).
constexpr int kExitLogFailed = 3;
constexpr int kExitBadPayload = 4;
constexpr int kExitOpenFailed = 5;

bool parse_text(const char* text, std::size_t cap, int& producer, std::uint64_t& seq);

int producer_main(const std::string& name, const test::TempFile& log, Control& ctl, int index,
                  std::uint64_t incarnation) {
  const int fd = log.open_append_records(sizeof(PushRec));
  if (fd < 0) return kExitLogFailed;
  std::error_code ec;
  auto q = Queue::open(name, ec);
  if (!q) return kExitOpenFailed;
  std::minstd_rand rng(static_cast<unsigned>(::getpid()));
  std::uint64_t seq = incarnation * kSeqPerIncarnation;
  std::atomic<int>& busy = ctl.busy[index];
  std::string payload;
  while (ctl.stop_producers.load(std::memory_order_acquire) == 0) {
    PushRec rec{};
    make_payload(payload, index, seq);
    std::memcpy(rec.text, payload.data(), kTextBytes);
    busy.store(1);
    const PushResult r = q->push(payload);
    busy.store(0);
    if (r.status == PushStatus::full) {
      ::usleep(500);
      continue;
    }
    rec.id = r.id;
    ++seq;
    if (!test::append_record(fd, rec)) return kExitLogFailed;  // after push returned ok
    ::usleep(static_cast<useconds_t>(rng() % 400));            // a modest pace
  }
  return 0;
}

int worker_main(const std::string& name, const test::TempFile& log, Control& ctl, int index) {
  const int fd = log.open_append_records(sizeof(ClaimRec));
  if (fd < 0) return kExitLogFailed;
  std::error_code ec;
  auto q = Queue::open(name, ec);
  if (!q) return kExitOpenFailed;
  std::minstd_rand rng(static_cast<unsigned>(::getpid()));
  Job job;
  std::atomic<int>& busy = ctl.busy[kProducers + index];
  while (ctl.stop_workers.load(std::memory_order_acquire) == 0) {
    ClaimOptions co;
    co.lease = milliseconds(50 + rng() % 151);
    busy.store(1);
    const ClaimStatus cs = q->try_claim(job, co);
    busy.store(0);
    if (cs != ClaimStatus::ok) {
      ::usleep(300);
      continue;
    }
    const std::string_view text = job.text();
    ClaimRec rec{};
    if (text.size() < kTextBytes || text[kTextBytes - 1] != '\0' || text[0] != 'p') return kExitBadPayload;
    std::memcpy(rec.text, text.data(), kTextBytes);
    int producer = 0;
    std::uint64_t seq = 0;
    rec.whole =
        parse_text(rec.text, sizeof rec.text, producer, seq) && text.size() == payload_length(seq) ? 1 : 0;
    for (std::size_t k = kTextBytes; rec.whole != 0 && k < text.size(); ++k) {
      if (text[k] != pattern(seq, k)) rec.whole = 0;
    }
    rec.attempt = job.attempt;
    rec.id = job.id;
    if (!test::append_record(fd, rec)) return kExitLogFailed;  // before the ack
    const auto dice = rng() % 64;
    if (dice == 0) {
      std::this_thread::sleep_for(co.lease + 30ms);  // outlive the lease: a takeover may happen
    } else if (dice < 4) {
      ::usleep(static_cast<useconds_t>(rng() % 5000));  // a slow job
    }
    busy.store(1);
    (void)q->ack(job.lease);  // lease_lost after a takeover is fine: the new holder acks
    busy.store(0);
  }
  return 0;
}

bool parse_text(const char* text, std::size_t cap, int& producer, std::uint64_t& seq) {
  const std::string s(text, strnlen(text, cap));
  unsigned long long sq = 0;
  int p = -1;
  char tail = 0;
  if (std::sscanf(s.c_str(), "p%d-%llu%c", &p, &sq, &tail) != 2) return false;
  if (p < 0 || p >= kProducers) return false;
  producer = p;
  seq = sq;
  return true;
}

// Guarantees 2 and 3 under random SIGKILLs of producers and workers at any
// instruction (T1..T6 all interrupted), guarantee 4/at-least-once accounting:
//  - every payload a producer logged as pushed (after push returned ok) is
//    claimed at least once, under the job id push returned (nothing lost);
//  - every claimed payload is well formed and maps to one job id (no torn
//    or mixed-up payloads, ids unique);
//  - after a clean drain the ring is empty: no slot stuck in WRITING or
//    LEASED, free == capacity (no slot leaked for ever);
//  - the totals agree with the logs within one per kill (each kill can cut
//    one operation between its transition and its counter / log write).
TEST(Torture, RandomKillsLoseNothingAndLeakNoSlot) {
  const long seconds = std::max(1L, test::env_long("JOBRING_TORTURE_SECONDS", 8));
  const auto seed = static_cast<unsigned>(test::env_long("JOBRING_TORTURE_SEED", std::random_device{}()));
  Watchdog dog(120s + std::chrono::seconds(seconds), "Torture");
  std::printf("[ torture ] seconds=%ld seed=%u (JOBRING_TORTURE_SEED to repeat)\n", seconds, seed);
  std::fflush(stdout);  // or every forked child flushes a copy of it again
  std::mt19937 rng(seed);

  QueueName name("torture");
  Options o;
  o.capacity = 256;
  o.max_payload = kMaxPayload;
  o.default_lease = 100ms;
  auto q = Queue::create(name.str(), o);

  test::SharedObject<Control> ctl;
  std::vector<std::unique_ptr<test::TempFile>> plogs, wlogs;
  for (int i = 0; i < kProducers; ++i) plogs.push_back(std::make_unique<test::TempFile>("tp"));
  for (int i = 0; i < kWorkers; ++i) wlogs.push_back(std::make_unique<test::TempFile>("tw"));

  const pid_t parent = ::getpid();
  std::array<std::uint64_t, kProducers> next_incarnation{};
  auto spawn = [&](Role role, int index) -> Child {
    Child c{role, index, 0, -1};
    if (role == Role::producer) c.incarnation = next_incarnation[static_cast<std::size_t>(index)]++;
    c.pid = test::fork_child([&, c] {
      test::die_with_parent(parent);
      return c.role == Role::producer
                 ? producer_main(name.str(), *plogs[static_cast<std::size_t>(c.index)], *ctl, c.index,
                                 c.incarnation)
                 : worker_main(name.str(), *wlogs[static_cast<std::size_t>(c.index)], *ctl, c.index);
    });
    return c;
  };

  std::vector<Child> children;
  for (int i = 0; i < kProducers; ++i) children.push_back(spawn(Role::producer, i));
  for (int i = 0; i < kWorkers; ++i) children.push_back(spawn(Role::worker, i));
  for (const Child& c : children) ASSERT_GT(c.pid, 0);

  // --- Kill phase.
  long producer_kills = 0, worker_kills = 0;
  std::vector<std::string> child_failures;
  auto role_name = [](Role r) { return r == Role::producer ? "producer" : "worker"; };
  const auto kill_until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < kill_until) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 28000));
    // A child that ended on its own crashed or reported a problem.
    for (Child& c : children) {
      if (const auto st = test::try_wait_child(c.pid)) {
        child_failures.push_back(std::string(role_name(c.role)) + " " + std::to_string(c.index) +
                                 " ended by itself with status " + std::to_string(*st));
        c = spawn(c.role, c.index);
      }
    }
    const std::size_t v = rng() % children.size();
    Child& victim = children[v];
    if (rng() % 2 == 0) {
      // Aim: wait (up to 5 ms) until the victim is inside the library.
      std::atomic<int>& busy =
          ctl->busy[victim.role == Role::producer ? victim.index : kProducers + victim.index];
      const auto give_up = std::chrono::steady_clock::now() + 5ms;
      while (busy.load(std::memory_order_relaxed) == 0 && std::chrono::steady_clock::now() < give_up) {
      }
    }
    ::kill(victim.pid, SIGKILL);
    const int st = test::wait_child(victim.pid);
    if (st != 128 + SIGKILL) {
      child_failures.push_back(std::string(role_name(victim.role)) + " " + std::to_string(victim.index) +
                               " ended with status " + std::to_string(st) + " before it was killed");
    }
    (victim.role == Role::producer ? producer_kills : worker_kills)++;
    ctl->busy[victim.role == Role::producer ? victim.index : kProducers + victim.index].store(0);
    victim = spawn(victim.role, victim.index);
    if (victim.pid <= 0) break;
  }

  // --- Stop the producers (cleanly), let the workers drain, stop them.
  ctl->stop_producers.store(1, std::memory_order_release);
  for (Child& c : children) {
    if (c.role != Role::producer) continue;
    const int st = test::wait_child(c.pid);
    if (st != 0)
      child_failures.push_back("producer " + std::to_string(c.index) + " exited with " + std::to_string(st));
  }
  const bool drained = test::poll_until(
      [&] {
        const Stats s = q.stats();
        return s.free == o.capacity && s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead == 0;
      },
      60s, 10ms);
  ctl->stop_workers.store(1, std::memory_order_release);
  for (Child& c : children) {
    if (c.role != Role::worker) continue;
    const int st = test::wait_child(c.pid);
    if (st != 0)
      child_failures.push_back("worker " + std::to_string(c.index) + " exited with " + std::to_string(st));
  }
  for (const std::string& f : child_failures) ADD_FAILURE() << f;

  const Stats s = q.stats();
  EXPECT_TRUE(drained) << "the queue did not drain within 60 s: " << test::describe(s);
  EXPECT_EQ(s.free, o.capacity) << test::describe(s);
  EXPECT_EQ(s.writing, 0u) << test::describe(s);
  EXPECT_EQ(s.ready, 0u) << test::describe(s);
  EXPECT_EQ(s.delayed, 0u) << test::describe(s);
  EXPECT_EQ(s.leased, 0u) << test::describe(s);
  EXPECT_EQ(s.expired, 0u) << test::describe(s);
  EXPECT_EQ(s.dead, 0u) << test::describe(s);
  EXPECT_EQ(s.corrupt, 0u) << test::describe(s);
  EXPECT_FALSE(q.try_claim().has_value());

  // --- Account for every job.
  struct Claimed {
    JobId id = 0;
    std::uint32_t times = 0;
  };
  std::unordered_map<std::string, Claimed> claimed;  // payload -> job id, claim count
  std::unordered_set<JobId> claimed_ids;
  std::uint64_t claim_records = 0;
  long bad = 0;
  for (const auto& log : wlogs) {
    std::size_t partial = 0;
    const auto recs = log->records<ClaimRec>(&partial);
    EXPECT_EQ(partial, 0u) << "a worker log ends in a partial record";
    for (const ClaimRec& r : recs) {
      ++claim_records;
      int p = 0;
      std::uint64_t seq = 0;
      const std::string text(r.text, strnlen(r.text, sizeof r.text));
      if (!parse_text(r.text, sizeof r.text, p, seq) ||
          seq / kSeqPerIncarnation >= next_incarnation[static_cast<std::size_t>(p)]) {
        if (++bad <= 10) ADD_FAILURE() << "a worker claimed a payload no producer wrote: '" << text << "'";
        continue;
      }
      EXPECT_GE(r.attempt, 1u);
      if (r.whole == 0 && ++bad <= 10)
        ADD_FAILURE() << "'" << text << "' (job " << r.id << ") was claimed torn";
      auto [it, fresh] = claimed.try_emplace(text);
      if (fresh) {
        it->second.id = r.id;
        if (!claimed_ids.insert(r.id).second && ++bad <= 10) {
          ADD_FAILURE() << "job id " << r.id << " carries two different payloads";
        }
      } else if (it->second.id != r.id && ++bad <= 10) {
        ADD_FAILURE() << "payload '" << text << "' claimed under job ids " << it->second.id << " and "
                      << r.id;
      }
      ++it->second.times;
    }
  }

  std::uint64_t logged_pushes = 0;
  long lost = 0;
  std::unordered_set<JobId> pushed_ids;
  for (const auto& log : plogs) {
    std::size_t partial = 0;
    const auto recs = log->records<PushRec>(&partial);
    EXPECT_EQ(partial, 0u) << "a producer log ends in a partial record";
    for (const PushRec& r : recs) {
      ++logged_pushes;
      const std::string text(r.text, strnlen(r.text, sizeof r.text));
      if (!pushed_ids.insert(r.id).second && ++bad <= 10)
        ADD_FAILURE() << "push returned id " << r.id << " twice";
      const auto it = claimed.find(text);
      if (it == claimed.end()) {
        if (++lost <= 10)
          ADD_FAILURE() << "LOST: '" << text << "' (job " << r.id << ") was pushed but never claimed";
      } else if (it->second.id != r.id && ++bad <= 10) {
        ADD_FAILURE() << "'" << text << "': push returned id " << r.id << " but it was claimed as "
                      << it->second.id;
      }
    }
  }
  EXPECT_EQ(lost, 0) << "jobs whose push returned ok were lost (guarantee 2)";

  // Every committed job was acked in the end (nothing is left, nothing was
  // purged or dead-lettered) and logged by its acker before the ack, so the
  // distinct claimed payloads are exactly the committed jobs.
  const std::uint64_t distinct = claimed.size();
  const std::uint64_t redeliveries = claim_records - distinct;
  EXPECT_GE(distinct, logged_pushes);
  EXPECT_LE(distinct - std::min(distinct, logged_pushes), static_cast<std::uint64_t>(producer_kills))
      << "more unlogged jobs than producer kills";
  EXPECT_LE(s.pushed, distinct);
  EXPECT_GE(s.pushed + static_cast<std::uint64_t>(producer_kills), distinct);
  EXPECT_LE(s.acked, distinct);
  EXPECT_GE(s.acked + static_cast<std::uint64_t>(worker_kills), distinct);
  EXPECT_LE(s.claimed, claim_records + static_cast<std::uint64_t>(worker_kills));
  EXPECT_GE(s.claimed + static_cast<std::uint64_t>(worker_kills), claim_records);
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(s.purged, 0u);

  std::printf(
      "[ torture ] kills=%ld (producers %ld, workers %ld) jobs pushed: logged=%llu committed=%llu "
      "stats.pushed=%llu; claims=%llu (stats.claimed=%llu) redeliveries=%llu stats.expired_total=%llu "
      "stats.acked=%llu stats.recovered_writes=%llu\n",
      producer_kills + worker_kills, producer_kills, worker_kills,
      static_cast<unsigned long long>(logged_pushes), static_cast<unsigned long long>(distinct),
      static_cast<unsigned long long>(s.pushed), static_cast<unsigned long long>(claim_records),
      static_cast<unsigned long long>(s.claimed), static_cast<unsigned long long>(redeliveries),
      static_cast<unsigned long long>(s.expired_total), static_cast<unsigned long long>(s.acked),
      static_cast<unsigned long long>(s.recovered_writes));
  EXPECT_GT(producer_kills + worker_kills, 0);
  EXPECT_GT(logged_pushes, 0u);
}

}  // namespace
}  // namespace jobring
