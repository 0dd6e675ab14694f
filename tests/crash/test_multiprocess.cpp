// Multi-process tests: real processes, real SIGKILLs, every job accounted for.
//
// Children never use gtest assertions (a child's failure would not reach the
// parent's result): they report through exit codes, pipes and files, and the
// parent asserts. Every child calls die_with_parent() so that a test aborted
// by its Watchdog leaves no orphan behind.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

std::string text_of(const Job& job) { return std::string(job.text()); }

// Polls try_claim until a job comes (or `limit` passes).
std::optional<Job> claim_within(Queue& q, const ClaimOptions& opts, std::chrono::milliseconds limit) {
  std::optional<Job> got;
  test::poll_until([&] { return (got = q.try_claim(opts)).has_value(); }, limit, 1ms);
  return got;
}

// Payloads of the killed-producer test: a 32-byte header "m<round>-<i>"
// padded with '.', then a fixed pattern; big enough that a good share of a
// producer's time is spent inside push() copying it.
constexpr std::uint32_t kBigPayload = 8192;
constexpr std::size_t kHeader = 32;

std::string big_payload(long round, std::uint64_t i) {
  std::string p(kBigPayload, '.');
  for (std::size_t k = kHeader; k < p.size(); ++k) p[k] = static_cast<char>('a' + k % 26);
  std::string header = "m" + std::to_string(round) + "-" + std::to_string(i);
  std::copy(header.begin(), header.end(), p.begin());
  return p;
}

void stamp_payload(std::string& p, long round, std::uint64_t i) {
  const std::string header = "m" + std::to_string(round) + "-" + std::to_string(i);
  std::fill(p.begin(), p.begin() + kHeader, '.');
  std::copy(header.begin(), header.end(), p.begin());
}

bool payload_is_whole(const std::string& p) {
  if (p.size() != kBigPayload || p[0] != 'm') return false;
  for (std::size_t k = kHeader; k < p.size(); ++k) {
    if (p[k] != static_cast<char>('a' + k % 26)) return false;
  }
  return true;
}

// Every entry of /dev/shm whose name mentions `name`.
std::vector<std::string> shm_entries_mentioning(const std::string& name) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.find(name) != std::string::npos) out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------
// Guarantees 2 and 3 (worker side), transition T5 takeover, and guarantee 4:
// a worker SIGKILLed while it holds a lease loses nothing — once the lease
// runs out the job is claimed again (same id, attempt 2) — and the dead
// worker's lease, handed to someone else, is fenced: ack, release and extend
// with it all return lease_lost and change nothing, while the new lease works.
// Fails if a dead worker's job stays hidden for ever, if the takeover does not
// count an attempt, or if a stale token is accepted.
TEST(MultiProcess, KilledWorkerLeaseIsTakenOverAndFenced) {
  Watchdog dog(60s, "KilledWorkerLeaseIsTakenOverAndFenced");
  QueueName name("mp-kw");
  Options o;
  o.capacity = 8;
  o.max_payload = 64;
  auto q = Queue::create(name.str(), o);
  const PushResult pushed = q.push("the-job");
  ASSERT_EQ(pushed.status, PushStatus::ok);

  test::Pipe pipe;
  const pid_t parent = ::getpid();
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t child = test::fork_child([&] {
    test::die_with_parent(parent);
    pipe.close_read();
    auto cq = Queue::open(name.str());
    ClaimOptions co;
    co.lease = 300ms;
    co.owner = Owner::process;
    auto job = cq.try_claim(co);
    if (!job) return 2;
    const std::string line = job->lease.to_string() + "\n";
    if (!test::write_all(pipe.write_fd(), line.data(), line.size())) return 3;
    for (;;) ::pause();  // hold the lease until killed
  });
  ASSERT_GT(child, 0);
  pipe.close_write();

  const auto line = test::read_line(pipe.read_fd(), 20s);
  if (!line) {
    test::kill_and_reap(child);
    FAIL() << "the worker child did not report a lease";
  }
  const std::optional<Lease> stale = Lease::parse(*line);
  ASSERT_TRUE(stale.has_value()) << "Lease::parse rejected to_string() output: '" << *line << "'";
  EXPECT_EQ(stale->job, pushed.id);
  EXPECT_EQ(stale->to_string(), *line) << "to_string/parse do not round-trip";

  // Guarantee 1 while the child is alive: the job is hidden as long as its
  // lease certainly runs (the child claimed after t0; 2 ms slack for ms
  // rounding of the deadline). Checked only when the machine was fast enough;
  // on a slow machine the lease may legitimately have run out already, and
  // this claim is then the takeover.
  ClaimOptions co;
  co.lease = 60s;
  std::optional<Job> job = q.try_claim(co);
  const auto t1 = std::chrono::steady_clock::now();
  if (job && t1 + 2ms < t0 + 300ms) {
    ADD_FAILURE() << "job " << job->id << " claimed by a second worker "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()
                  << " ms after a 300 ms lease was granted to a live worker";
  }

  test::kill_and_reap(child);

  // The dead worker's lease runs out (300 ms); a claimer then takes it over.
  if (!job) job = claim_within(q, co, 20s);
  ASSERT_TRUE(job.has_value()) << "the dead worker's job never became claimable again";
  EXPECT_EQ(job->id, pushed.id);
  EXPECT_EQ(job->attempt, 2u) << "a takeover must count an attempt";
  EXPECT_EQ(text_of(*job), "the-job");
  EXPECT_EQ(job->lease.slot, stale->slot);
  EXPECT_NE(job->lease.token, stale->token) << "a takeover must change the fencing token";

  // Guarantee 4: the stale lease is rejected and changes nothing.
  const Stats before = q.stats();
  EXPECT_EQ(q.ack(*stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(*stale), LeaseStatus::lease_lost);
  EXPECT_EQ(q.release(*stale, 10ms), LeaseStatus::lease_lost);
  Lease stale_copy = *stale;
  EXPECT_EQ(q.extend(stale_copy, 60s), LeaseStatus::lease_lost);
  EXPECT_EQ(stale_copy, *stale) << "a failed extend must not change the lease";
  const Stats after = q.stats();
  EXPECT_EQ(after.leased, 1u);
  EXPECT_EQ(after.ready, 0u);
  EXPECT_EQ(after.acked, before.acked);
  EXPECT_EQ(after.released, before.released);
  EXPECT_FALSE(q.try_claim().has_value()) << "a stale release made the job visible again";

  // The new lease works: extend, then ack.
  EXPECT_EQ(q.extend(*job, 60s), LeaseStatus::ok);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::lease_lost) << "a second ack must be rejected";
  EXPECT_EQ(q.ack(*stale), LeaseStatus::lease_lost);
  const Stats end = q.stats();
  EXPECT_EQ(end.free, o.capacity);
  EXPECT_EQ(end.leased + end.expired + end.ready, 0u);
  EXPECT_FALSE(q.try_claim().has_value());
}

// ---------------------------------------------------------------------------
// Guarantees 2 and 3 (producer side), transitions T1/T2/T3: a producer
// SIGKILLed at random instructions while it pushes in a loop never loses a
// job whose push() returned ok (the child logs the id to a pipe only after
// push returns), never leaves a slot stuck in WRITING (after the reap, the
// scan of an empty claim frees it), and never produces a half-written job.
// Repeated many times (JOBRING_MP_KILL_ROUNDS, default 200) at random delays.
TEST(MultiProcess, KilledProducerLosesNoReturnedPushAndLeaksNoSlot) {
  const long rounds = test::env_long("JOBRING_MP_KILL_ROUNDS", 200);
  Watchdog dog(120s, "KilledProducerLosesNoReturnedPushAndLeaksNoSlot");
  QueueName name("mp-kp");
  Options o;
  o.capacity = 32;              // small: the ring wraps and fills, so full-ring recovery runs too
  o.max_payload = kBigPayload;  // big: the copy makes a kill inside push() likely
  auto q = Queue::create(name.str(), o);

  std::mt19937 rng(std::random_device{}());
  std::set<JobId> logged;                // push returned ok (child's word)
  std::map<JobId, std::string> claimed;  // id -> payload header, every job the parent got
  std::size_t torn = 0;                  // claimed payloads that were not whole
  long unlogged_total = 0;
  const pid_t parent = ::getpid();
  ClaimOptions co;
  co.lease = 60s;

  auto drain_once = [&](Job& job) -> bool {
    if (q.try_claim(job, co) != ClaimStatus::ok) return false;
    const std::string payload = text_of(job);
    if (!payload_is_whole(payload) && ++torn <= 5) {
      ADD_FAILURE() << "job " << job.id << " has a torn or malformed payload starting '"
                    << payload.substr(0, kHeader) << "' (" << payload.size() << " bytes)";
    }
    const bool fresh = claimed.emplace(job.id, payload.substr(0, kHeader)).second;
    EXPECT_TRUE(fresh) << "job " << job.id << " claimed twice (it was acked)";
    EXPECT_EQ(job.attempt, 1u);
    EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
    return true;
  };

  Job job;
  for (long round = 0; round < rounds; ++round) {
    test::Pipe pipe;
    const pid_t child = test::fork_child([&] {
      test::die_with_parent(parent);
      pipe.close_read();
      auto cq = Queue::open(name.str());
      std::string payload = big_payload(round, 0);
      for (std::uint64_t i = 0;; ++i) {
        stamp_payload(payload, round, i);
        const PushResult r = cq.push(payload);
        if (r.status == PushStatus::full) {
          ::usleep(200);
          continue;
        }
        // Only now, after push returned ok: one atomic 8-byte pipe write.
        if (!test::write_all(pipe.write_fd(), &r.id, sizeof r.id)) return 3;
      }
    });
    ASSERT_GT(child, 0);
    pipe.close_write();

    // Drain concurrently for a random 0..4 ms, then kill at a random point.
    const auto kill_at = std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 4000);
    while (std::chrono::steady_clock::now() < kill_at) {
      if (!drain_once(job)) std::this_thread::yield();
    }
    ::kill(child, SIGKILL);
    const int status = test::wait_child(child);
    ASSERT_EQ(status, 128 + SIGKILL) << "producer child exited by itself (status " << status << ")";

    const std::string ids = test::read_to_eof(pipe.read_fd());
    ASSERT_EQ(ids.size() % sizeof(JobId), 0u);
    for (std::size_t i = 0; i < ids.size(); i += sizeof(JobId)) {
      JobId id = 0;
      std::memcpy(&id, ids.data() + i, sizeof id);
      EXPECT_TRUE(logged.insert(id).second) << "push returned the same id twice: " << id;
    }

    // Drain what is left. The producer is reaped, so the empty claim's
    // recovery scan may free its half-written slot (T2).
    while (drain_once(job)) {
    }
    const bool clean = test::poll_until(
        [&] {
          while (drain_once(job)) {
          }
          const Stats s = q.stats();
          return s.free == o.capacity && s.writing == 0;
        },
        20s, 1ms);
    const Stats s = q.stats();
    ASSERT_TRUE(clean) << "round " << round << ": a slot is stuck after the producer died: free=" << s.free
                       << " writing=" << s.writing << " ready=" << s.ready << " leased=" << s.leased
                       << " corrupt=" << s.corrupt;
    if (::testing::Test::HasFailure()) break;

    // At most one job per kill can be in the queue without having been logged
    // (committed, but the push never returned or the id never reached the pipe).
    long unlogged = 0;
    for (const auto& [id, payload] : claimed) {
      if (!logged.count(id)) ++unlogged;
    }
    EXPECT_LE(unlogged - unlogged_total, 1) << "round " << round;
    unlogged_total = unlogged;
  }

  // Guarantee 2: every returned push was claimed.
  std::size_t missing = 0;
  for (JobId id : logged) {
    if (!claimed.count(id)) {
      if (++missing <= 10)
        ADD_FAILURE() << "job " << id << " was pushed (push returned ok) but never claimed";
    }
  }
  EXPECT_EQ(missing, 0u);
  // No half-written job reached a worker: every payload was whole.
  EXPECT_EQ(torn, 0u);
  const Stats s = q.stats();
  EXPECT_EQ(s.free, o.capacity);
  EXPECT_EQ(s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead + s.corrupt, 0u);
  std::printf(
      "[ killed producers ] rounds=%ld pushes-returned=%zu jobs-claimed=%zu unlogged=%ld "
      "recovered_writes=%llu\n",
      rounds, logged.size(), claimed.size(), unlogged_total,
      static_cast<unsigned long long>(s.recovered_writes));
}

// ---------------------------------------------------------------------------
// open_or_create is safe when many processes race (queue.hpp: "Safe when many
// processes race to do it"; guarantee 3 for the creation path): 8 children
// released at once by a barrier all call open_or_create on a fresh name and
// push one job. None may get an error (not even incomplete_segment), all 8
// jobs must land in one queue, and exactly one segment exists afterwards (no
// leftover temporary files). Repeated on several names to hit the window.
TEST(MultiProcess, OpenOrCreateRaceMakesOneQueue) {
  Watchdog dog(120s, "OpenOrCreateRaceMakesOneQueue");
  constexpr int kChildren = 8;
  const long rounds = test::env_long("JOBRING_MP_RACE_ROUNDS", 10);
  const pid_t parent = ::getpid();
  for (long round = 0; round < rounds; ++round) {
    QueueName name("mp-race");
    Options o;
    o.capacity = 16;
    o.max_payload = 32;
    test::ForkBarrier barrier;
    test::Pipe errors;
    std::vector<pid_t> kids;
    for (int i = 0; i < kChildren; ++i) {
      kids.push_back(test::fork_child([&, i] {
        test::die_with_parent(parent);
        errors.close_read();
        barrier.wait();
        std::error_code ec;
        auto cq = Queue::open_or_create(name.str(), o, ec);
        if (!cq) {
          const std::string msg = "child " + std::to_string(i) + ": open_or_create: " + ec.message() + "\n";
          (void)test::write_all(errors.write_fd(), msg.data(), msg.size());
          return 2;
        }
        const std::string payload = "c" + std::to_string(i);
        if (cq->push(payload).status != PushStatus::ok) return 3;
        return 0;
      }));
      ASSERT_GT(kids.back(), 0);
    }
    errors.close_write();
    barrier.release();
    for (pid_t k : kids) EXPECT_EQ(test::wait_child(k), 0) << "round " << round;
    const std::string err = test::read_to_eof(errors.read_fd());
    EXPECT_TRUE(err.empty()) << err;

    auto q = Queue::open(name.str());
    EXPECT_EQ(q.options().capacity, o.capacity);
    EXPECT_EQ(q.options().max_payload, o.max_payload);
    std::set<std::string> got;
    while (auto job = q.try_claim()) {
      EXPECT_TRUE(got.insert(text_of(*job)).second) << "payload claimed twice: " << job->text();
      EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
    }
    EXPECT_EQ(got.size(), static_cast<std::size_t>(kChildren)) << "round " << round;
    EXPECT_EQ(q.stats().pushed, static_cast<std::uint64_t>(kChildren));
    const auto entries = shm_entries_mentioning(name.str());
    ASSERT_EQ(entries.size(), 1u) << "round " << round << ": segments: " << ::testing::PrintToString(entries);
    EXPECT_EQ(entries[0], "jobring." + name.str());
    const auto all = Queue::list();
    EXPECT_EQ(std::count(all.begin(), all.end(), name.str()), 1);
    if (::testing::Test::HasFailure()) break;
  }
}

// ---------------------------------------------------------------------------
// Guarantee 1 across processes (T4 is one CAS, and a current lease is never
// claimable): 4 worker processes released together claim with long leases
// (no takeover is legitimate) from a small ring that the parent keeps
// refilling with a few thousand jobs, hold each job a little (so that the
// others' scans keep running over leased slots), log its id to their own
// file, and ack it. Every job must be claimed exactly once, on attempt 1,
// and every ack must succeed.
TEST(MultiProcess, NoDoubleClaimAcrossProcesses) {
  Watchdog dog(120s, "NoDoubleClaimAcrossProcesses");
  constexpr int kWorkers = 4;
  const auto jobs = static_cast<std::uint32_t>(test::env_long("JOBRING_MP_JOBS", 4000));
  QueueName name("mp-dc");
  Options o;
  o.capacity = 16;  // small: claim scans wrap over the other workers' leases all the time
  o.max_payload = 32;
  auto q = Queue::create(name.str(), o);

  struct Rec {
    JobId id;
    std::uint32_t attempt;
    std::uint32_t ack_ok;
  };
  std::vector<std::unique_ptr<test::TempFile>> logs;
  for (int w = 0; w < kWorkers; ++w) logs.push_back(std::make_unique<test::TempFile>("dc"));
  test::SharedObject<std::atomic<int>> all_pushed;
  test::ForkBarrier barrier;
  const pid_t parent = ::getpid();
  std::vector<pid_t> kids;
  for (int w = 0; w < kWorkers; ++w) {
    kids.push_back(test::fork_child([&, w] {
      test::die_with_parent(parent);
      const int fd = logs[static_cast<std::size_t>(w)]->open_append();
      if (fd < 0) return 2;
      auto cq = Queue::open(name.str());  // opened before the barrier: claims start together
      barrier.wait();
      ClaimOptions co;
      co.lease = std::chrono::minutes(10);
      Job job;
      for (;;) {
        if (cq.try_claim(job, co) != ClaimStatus::ok) {
          if (all_pushed->load() == 0) {
            std::this_thread::yield();
            continue;
          }
          // Everything is pushed: one more look, then nothing is left to claim.
          if (cq.try_claim(job, co) != ClaimStatus::ok) return 0;
        }
        // Hold the job a little (sleeping, so the others get the CPU and scan past it).
        std::this_thread::sleep_for(50us);
        Rec r{job.id, job.attempt, 0};
        r.ack_ok = cq.ack(job.lease) == LeaseStatus::ok ? 1u : 0u;
        if (!test::append_record(fd, r)) return 3;
      }
    }));
    ASSERT_GT(kids.back(), 0);
  }
  barrier.release();
  std::set<JobId> pushed;
  for (std::uint32_t i = 0; i < jobs;) {
    const PushResult r = q.push("j" + std::to_string(i));
    if (r.status == PushStatus::ok) {
      pushed.insert(r.id);
      ++i;
    } else {
      std::this_thread::yield();
    }
  }
  all_pushed->store(1);
  for (pid_t k : kids) EXPECT_EQ(test::wait_child(k), 0);
  ASSERT_EQ(pushed.size(), jobs);

  std::map<JobId, int> times;
  std::string per_worker;
  for (const auto& log : logs) {
    std::size_t partial = 0;
    const auto recs = log->records<Rec>(&partial);
    EXPECT_EQ(partial, 0u);
    per_worker += " " + std::to_string(recs.size());
    for (const Rec& r : recs) {
      ++times[r.id];
      EXPECT_EQ(r.attempt, 1u) << "job " << r.id;
      EXPECT_EQ(r.ack_ok, 1u) << "ack of job " << r.id << " failed";
      EXPECT_TRUE(pushed.count(r.id)) << "claimed a job id that was never pushed: " << r.id;
    }
  }
  std::size_t doubles = 0;
  for (const auto& [id, n] : times) {
    if (n != 1 && ++doubles <= 10) ADD_FAILURE() << "job " << id << " claimed " << n << " times";
  }
  EXPECT_EQ(doubles, 0u) << "jobs claimed by two workers while a lease was valid (guarantee 1)";
  EXPECT_EQ(times.size(), pushed.size()) << "some jobs were never claimed";
  const Stats s = q.stats();
  EXPECT_EQ(s.free, o.capacity);
  EXPECT_EQ(s.claimed, jobs);
  EXPECT_EQ(s.acked, jobs);
  std::printf("[ no double claim ] jobs=%u workers=%d claims per worker:%s\n", jobs, kWorkers,
              per_worker.c_str());
}

// ---------------------------------------------------------------------------
// Owner::detached (queue.hpp): a lease handed from a process that exits
// normally to another one. The child claims, prints Lease::to_string() and
// exits; the job stays hidden (the lease is not the child's to lose) and the
// parent acks it with the parsed lease. Fails if parse/to_string do not round
// trip across processes or if the lease dies with its claimer.
TEST(MultiProcess, DetachedLeaseIsAckedByAnotherProcess) {
  Watchdog dog(60s, "DetachedLeaseIsAckedByAnotherProcess");
  QueueName name("mp-det");
  Options o;
  o.capacity = 4;
  o.max_payload = 32;
  auto q = Queue::create(name.str(), o);
  const PushResult pushed = q.push("detached-job");
  ASSERT_EQ(pushed.status, PushStatus::ok);

  test::Pipe pipe;
  const pid_t parent = ::getpid();
  const pid_t child = test::fork_child([&] {
    test::die_with_parent(parent);
    pipe.close_read();
    auto cq = Queue::open(name.str());
    ClaimOptions co;
    co.lease = std::chrono::minutes(10);
    co.owner = Owner::detached;
    auto job = cq.try_claim(co);
    if (!job) return 2;
    const std::string line = job->lease.to_string() + "\n";
    return test::write_all(pipe.write_fd(), line.data(), line.size()) ? 0 : 3;
  });
  ASSERT_GT(child, 0);
  pipe.close_write();
  ASSERT_EQ(test::wait_child(child), 0);
  const auto line = test::read_line(pipe.read_fd(), 20s);
  ASSERT_TRUE(line.has_value());
  const auto lease = Lease::parse(*line);
  ASSERT_TRUE(lease.has_value()) << "cannot parse '" << *line << "'";
  EXPECT_EQ(lease->job, pushed.id);

  const Stats mid = q.stats();
  EXPECT_EQ(mid.leased, 1u);
  EXPECT_FALSE(q.try_claim().has_value()) << "the detached lease died with the process that took it";
  const auto infos = q.peek(JobState::leased);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].owner_pid, 0) << "a detached lease must not record an owner";

  EXPECT_EQ(q.ack(*lease), LeaseStatus::ok);
  const Stats end = q.stats();
  EXPECT_EQ(end.free, o.capacity);
  EXPECT_EQ(end.acked, 1u);
}

}  // namespace
}  // namespace jobring
