// Blocking waits between processes (issue 3): claim() with a wait, push()
// with a wait, claim_many(), interrupt_waits() / clear_interrupt().
//
// Every test here runs its waiter in another process than the one that wakes
// it (fork), except the one about interrupting from another thread. Children
// never use gtest assertions: they report through a MAP_SHARED Outcome and
// their exit code, and the parent asserts. Bounds are generous (a wake-up
// expected within milliseconds is allowed seconds); lower bounds are only
// those the semantics guarantee (a claim with a wait of W ms does not give up
// before W ms; a job delayed by D ms is not handed out before D ms, give or
// take the 1 ms granularity of the clock). Latency is measured in
// bench/bench_wake.cpp, not here.
//
// The tests hold with or without a janitor sweeping the queues meanwhile
// (guarantee 8): nothing here depends on who returns an expired lease.
//
// Some tests map the segment themselves (lib/ring/layout.hpp) to look at the event
// words — to know that a waiter has announced itself before waking it — or to
// forge the state a crashed process leaves behind (a transition done, its
// notify never sent; a slot left WRITING by a dead producer).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::State;
using detail::Word;
using test::dead_pid;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;
using test::with_delay;
using test::with_lease;
using test::with_wait;

constexpr int kNotReturned = -1;

using jobring::test::now_ns;
std::int64_t ms_between(std::int64_t from_ns, std::int64_t to_ns) { return (to_ns - from_ns) / 1'000'000; }

// What a child reports. Lives in a MAP_SHARED mapping (test::SharedObject).
struct Outcome {
  std::atomic<int> stage{0};                 // how far the child got (test-specific)
  std::atomic<int> status{kNotReturned};     // ClaimStatus / PushStatus as int, or a count
  std::atomic<std::int64_t> started_ns{0};   // just before the blocking call
  std::atomic<std::int64_t> returned_ns{0};  // just after it returned
  std::atomic<std::uint64_t> job_id{0};
  std::atomic<std::uint32_t> attempt{0};
  std::atomic<std::uint64_t> cpu_ns{0};  // CPU time spent inside the blocking call
  char text[64] = {};                    // read by the parent only after reaping the child
};

std::int64_t elapsed_ms(const Outcome& o) { return ms_between(o.started_ns.load(), o.returned_ns.load()); }
// From `t` (e.g. just before the push that should wake the child) to its return.
std::int64_t ms_after(std::int64_t t, const Outcome& o) { return ms_between(t, o.returned_ns.load()); }

void record_claim(Outcome& o, ClaimStatus st, const Job& job) {
  o.returned_ns.store(now_ns());
  if (st == ClaimStatus::ok) {
    o.job_id.store(job.id);
    o.attempt.store(job.attempt);
    const std::string_view t = job.text();
    const std::size_t n = std::min(t.size(), sizeof o.text - 1);
    std::memcpy(o.text, t.data(), n);
    o.text[n] = '\0';
  }
  o.status.store(static_cast<int>(st));
}

// Forks a child (tied to this process) that opens queue `name`, blocks in
// claim(job, wait) and reports what it got to `out` (record_claim); exit 0.
pid_t spawn_claimer(const std::string& name, Outcome& out, milliseconds wait) {
  return test::spawn_tied([&] {
    auto wq = Queue::open(name);
    Job job;
    out.started_ns.store(now_ns());
    const ClaimStatus st = wq.claim(job, wait);
    record_claim(out, st, job);
    return 0;
  });
}

// Forks a child (tied to this process) that opens queue `name`, pushes
// `payload` with a wait of `wait` and reports the result to `out`; exit 0.
pid_t spawn_pusher(const std::string& name, Outcome& out, const std::string& payload, milliseconds wait) {
  return test::spawn_tied([&] {
    auto pq = Queue::open(name);
    out.started_ns.store(now_ns());
    const PushResult r = pq.push(payload, with_wait(wait));
    out.returned_ns.store(now_ns());
    out.job_id.store(r.id);
    out.status.store(static_cast<int>(r.status));
    return 0;
  });
}

// A claim(job, wait) in another process (spawn_claimer) and its Outcome.
// A claimer still running when the test ends (a failed assertion) is killed.
class Claimer {
 public:
  Claimer(const std::string& name, milliseconds wait) : pid_(spawn_claimer(name, *out_, wait)) {}
  ~Claimer() {
    if (pid_ > 0) test::kill_and_reap(pid_);
  }
  Claimer(const Claimer&) = delete;
  Claimer& operator=(const Claimer&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Waits for it to exit; its exit status (0: it reported).
  int reap() {
    const int st = test::wait_child(pid_);
    pid_ = -1;
    return st;
  }
  const Outcome* operator->() const { return &*out_; }
  const Outcome& operator*() const { return *out_; }

 private:
  test::SharedObject<Outcome> out_;
  pid_t pid_;
};

// The claim got job `id` (its text, as attempt `attempt`).
void expect_claimed(const Outcome& o, JobId id, std::uint32_t attempt, const char* text) {
  EXPECT_EQ(o.status.load(), static_cast<int>(ClaimStatus::ok));
  EXPECT_EQ(o.job_id.load(), id);
  EXPECT_EQ(o.attempt.load(), attempt);
  EXPECT_STREQ(o.text, text);
}
// The claim returned empty after its whole wait of `wait_ms`, and not long after.
void expect_empty_after(const Outcome& o, std::int64_t wait_ms) {
  EXPECT_EQ(o.status.load(), static_cast<int>(ClaimStatus::empty));
  EXPECT_GE(elapsed_ms(o), wait_ms);
  EXPECT_LT(elapsed_ms(o), 10'000);
}

bool waiting_bit(const std::atomic<std::uint32_t>& event) { return (event.load() & 1u) != 0; }

// The state letter of /proc/PID/stat ('S' = sleeping), '?' if unreadable.
char proc_state(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return '?';
  const std::string s = test::read_to_eof(fd);
  ::close(fd);
  const auto p = s.rfind(')');
  return p == std::string::npos || p + 2 >= s.size() ? '?' : s[p + 2];
}

// Waits (up to 10 s) until `pid` has announced itself on `event` and is
// asleep, then a little longer, so that what the test does next has to wake
// a sleeper. Not an assertion: if it never happens the test goes on, and
// its own checks decide.
void wait_until_asleep(pid_t pid, const std::atomic<std::uint32_t>& event) {
  (void)test::poll_until([&] { return waiting_bit(event) && proc_state(pid) == 'S'; }, 10s, 1ms);
  std::this_thread::sleep_for(20ms);
}

// Polls until the child has set `status` (up to `limit`).
bool wait_status(const Outcome& o, std::chrono::milliseconds limit = 20s) {
  return test::poll_until([&] { return o.status.load() != kNotReturned; }, limit, 1ms);
}
bool wait_stage(const Outcome& o, int stage, std::chrono::milliseconds limit = 20s) {
  return test::poll_until([&] { return o.stage.load() >= stage; }, limit, 1ms);
}

std::uint64_t process_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// ===========================================================================
// Worker side: what wakes a blocked claim
// ===========================================================================

// claim(wait) / T3→T4 across processes: a worker process blocked in
// claim(job, 20 s) is woken by a push from another process and gets exactly
// that job, long before its wait would have run out; ten times in a row. The
// push must notify (bump the work event word that the waiter announced
// itself on): without that the waiter would still find the job, but only on
// its bounded re-check (kMaxSleep), so the event word is checked too. The
// wake-up latency is printed, not asserted (bench/bench_wake.cpp measures it).
TEST(WaitClaim, WakesWhenAnotherProcessPushes) {
  constexpr int kRounds = 10;
  Watchdog dog(90s, "WaitClaim.WakesWhenAnotherProcessPushes");
  QueueName name("w-push");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  SegmentView seg(name.str());
  struct Rounds {
    Outcome o[kRounds];
  };
  test::SharedObject<Rounds> out;

  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    Job job;
    for (int i = 0; i < kRounds; ++i) {
      Outcome& o = out->o[i];
      o.started_ns.store(now_ns());
      o.stage.store(1);
      const ClaimStatus st = wq.claim(job, 20s);
      record_claim(o, st, job);
      if (st != ClaimStatus::ok) return 2;
      if (wq.ack(job.lease) != LeaseStatus::ok) return 3;
    }
    return 0;
  });
  ASSERT_GT(worker, 0);

  std::vector<std::int64_t> latency_us;
  for (int i = 0; i < kRounds; ++i) {
    SCOPED_TRACE("round " + std::to_string(i));
    Outcome& o = out->o[i];
    ASSERT_TRUE(wait_stage(o, 1));
    wait_until_asleep(worker, seg.work_event());
    const std::uint32_t seq_before = seg.work_event().load() >> 1;
    const std::string text = "wake-up-" + std::to_string(i);
    const std::int64_t pushed_at = now_ns();
    const PushResult pushed = q.push(text);
    ASSERT_EQ(pushed.status, PushStatus::ok);
    EXPECT_NE(seg.work_event().load() >> 1, seq_before) << "the push did not notify the announced waiter";
    ASSERT_TRUE(wait_status(o)) << "the blocked claim did not return";
    EXPECT_EQ(o.status.load(), static_cast<int>(ClaimStatus::ok));
    EXPECT_EQ(o.job_id.load(), pushed.id);
    EXPECT_EQ(o.attempt.load(), 1u);
    EXPECT_EQ(std::string(o.text), text);  // written before status (seq_cst store)
    EXPECT_LT(ms_after(pushed_at, o), 10'000) << "the blocked claim was not woken by the push";
    latency_us.push_back((o.returned_ns.load() - pushed_at) / 1000);
  }
  ASSERT_EQ(test::wait_child(worker), 0);
  std::sort(latency_us.begin(), latency_us.end());
  std::printf(
      "[ wake ] push -> blocked claim in another process: median %lld us, max %lld us (%d rounds; info "
      "only)\n",
      static_cast<long long>(latency_us[latency_us.size() / 2]), static_cast<long long>(latency_us.back()),
      kRounds);
  const Stats s = q.stats();
  EXPECT_EQ(s.acked, static_cast<std::uint64_t>(kRounds));
  EXPECT_EQ(s.free, 8u);
}

// claim(wait) / release (T7) across processes: a worker blocked in claim is
// woken when another process releases the job it holds; it gets the job as
// attempt 2. Fails if release does not wake sleepers (checked on the event
// word too: the bounded re-check alone would also find the job).
TEST(WaitClaim, WakesWhenAnotherProcessReleases) {
  Watchdog dog(60s, "WaitClaim.WakesWhenAnotherProcessReleases");
  QueueName name("w-rel");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  SegmentView seg(name.str());
  const PushResult pushed = q.push("retry-me");
  ASSERT_TRUE(pushed);
  auto held = q.try_claim(with_lease(60s));
  ASSERT_TRUE(held.has_value());

  Claimer worker(name.str(), 20s);
  ASSERT_GT(worker.pid(), 0);
  wait_until_asleep(worker.pid(), seg.work_event());
  const std::uint32_t seq_before = seg.work_event().load() >> 1;
  const std::int64_t released_at = now_ns();
  ASSERT_EQ(q.release(held->lease), LeaseStatus::ok);
  EXPECT_NE(seg.work_event().load() >> 1, seq_before) << "release did not notify the announced waiter";
  ASSERT_EQ(worker.reap(), 0);

  expect_claimed(*worker, pushed.id, 2, "retry-me");
  EXPECT_LT(ms_after(released_at, *worker), 10'000) << "the blocked claim was not woken by the release";
}

// Delayed jobs (READY with visible-at > now): a claim blocked for 20 s in
// another process returns the job when it comes due — without anyone pushing
// or notifying at that moment — and not before its delay (lower bound from
// the semantics: 300 ms, minus 1 ms for the millisecond clock, which
// truncates the push time). Fails if the delayed job is handed out early, or
// if nothing wakes the waiter at the due time (it would return at 20 s).
TEST(WaitClaim, WakesWhenDelayedJobComesDue) {
  Watchdog dog(60s, "WaitClaim.WakesWhenDelayedJobComesDue");
  QueueName name("w-due");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  SegmentView seg(name.str());
  Claimer worker(name.str(), 20s);
  ASSERT_GT(worker.pid(), 0);
  wait_until_asleep(worker.pid(), seg.work_event());

  const std::int64_t before_push = now_ns();
  const PushResult pushed = q.push("due-later", with_delay(300ms));
  ASSERT_TRUE(pushed);
  ASSERT_EQ(worker.reap(), 0);

  expect_claimed(*worker, pushed.id, 1, "due-later");
  const std::int64_t after_push_ms = ms_between(before_push, worker->returned_ns.load());
  EXPECT_GE(after_push_ms, 299) << "a job delayed by 300 ms was handed out early";
  EXPECT_LT(after_push_ms, 10'000) << "the waiter was not woken when the delayed job came due";
}

// Lease expiry (T5 takeover) wakes a waiter: this process holds a 300 ms
// lease and never acks; a claim blocked in another process gets the job once
// the lease has run out — attempt 2, a new token — and not before. The
// stale lease is then fenced (guarantee 4). Fails if the waiter is not woken
// at the deadline (returns at 20 s), or gets the job while the lease is valid.
TEST(WaitClaim, WakesWhenLeaseExpires) {
  Watchdog dog(60s, "WaitClaim.WakesWhenLeaseExpires");
  QueueName name("w-exp");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  const PushResult pushed = q.push("abandoned");
  ASSERT_TRUE(pushed);
  const std::int64_t before_claim = now_ns();
  auto held = q.try_claim(with_lease(300ms));
  ASSERT_TRUE(held.has_value());
  ASSERT_EQ(held->attempt, 1u);

  test::SharedObject<Outcome> out;
  test::SharedObject<Lease> taken;
  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    Job job;
    out->started_ns.store(now_ns());
    const ClaimStatus st = wq.claim(job, 20s, with_lease(60s));
    record_claim(*out, st, job);
    if (st == ClaimStatus::ok) *taken = job.lease;
    return 0;
  });
  ASSERT_GT(worker, 0);
  ASSERT_EQ(test::wait_child(worker), 0);

  EXPECT_EQ(out->status.load(), static_cast<int>(ClaimStatus::ok));
  EXPECT_EQ(out->job_id.load(), pushed.id);
  EXPECT_EQ(out->attempt.load(), 2u) << "a takeover counts an attempt";
  EXPECT_STREQ(out->text, "abandoned");
  const std::int64_t since_claim = ms_between(before_claim, out->returned_ns.load());
  EXPECT_GE(since_claim, 299) << "the job was taken over while its 300 ms lease was valid";
  EXPECT_LT(since_claim, 10'000) << "the waiter was not woken when the lease ran out";

  // Guarantee 4: the expired holder is fenced; the new holder's lease works.
  EXPECT_NE(taken->token, held->lease.token);
  EXPECT_EQ(q.ack(held->lease), LeaseStatus::lease_lost);
  EXPECT_EQ(q.ack(*taken), LeaseStatus::ok);
  EXPECT_EQ(q.stats().free, 8u);
}

// claim(wait) timeout: with nothing coming, a claim with a wait of 300 ms
// returns empty, not before 300 ms — also when the ring holds a job under a
// long lease and a job delayed far beyond the wait (their due times must not
// stretch the wait, nor make it return early with them). Also claim_many.
// Fails if the wait returns early, hands out a hidden job, or overstays.
TEST(WaitClaim, ReturnsEmptyAtItsTimeout) {
  Watchdog dog(60s, "WaitClaim.ReturnsEmptyAtItsTimeout");
  QueueName name("w-tmo");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});

  // An empty queue, in another process.
  Claimer worker(name.str(), 300ms);
  ASSERT_GT(worker.pid(), 0);
  ASSERT_EQ(worker.reap(), 0);
  expect_empty_after(*worker, 300);

  // A leased job and a delayed job, both hidden for longer than the wait.
  ASSERT_TRUE(q.push("leased"));
  auto held = q.try_claim(with_lease(60s));
  ASSERT_TRUE(held.has_value());
  ASSERT_TRUE(q.push("delayed", with_delay(60s)));
  Job job;
  auto t0 = now_ns();
  EXPECT_EQ(q.claim(job, 300ms), ClaimStatus::empty);
  std::int64_t ms = ms_between(t0, now_ns());
  EXPECT_GE(ms, 300);
  EXPECT_LT(ms, 10'000);

  std::array<Job, 4> jobs;
  t0 = now_ns();
  EXPECT_EQ(q.claim_many(jobs, 300ms), 0u);
  ms = ms_between(t0, now_ns());
  EXPECT_GE(ms, 300);
  EXPECT_LT(ms, 10'000);

  // A wait of 0 is try_claim: returns at once.
  EXPECT_EQ(q.claim(job, 0ms), ClaimStatus::empty);
  const Stats s = q.stats();
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.claimed, 1u);
}

// "Idle waiters use no CPU": eight processes blocked in claim() for two
// seconds on an empty queue. Each measures the CPU time it spent inside the
// call (CLOCK_PROCESS_CPUTIME_ID), and the parent reads all of it again with
// getrusage(RUSAGE_CHILDREN) after reaping them. Generous bounds (0.3 s in
// the calls, 1 s in all, for 16 s of waiting): a waiter that polls or spins
// would burn whole cores (two cores here: up to ~4 s).
TEST(WaitClaim, EightIdleWaitersUseAlmostNoCpu) {
  constexpr int kWaiters = 8;
  Watchdog dog(60s, "WaitClaim.EightIdleWaitersUseAlmostNoCpu");
  QueueName name("w-cpu");
  auto q = Queue::create(name.str(), Options{.capacity = 64, .max_payload = 64});
  struct Outcomes {
    Outcome o[kWaiters];
  };
  test::SharedObject<Outcomes> out;

  rusage before{};
  ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &before), 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < kWaiters; ++i) {
    Outcome& o = out->o[i];
    pids.push_back(test::spawn_tied([&o, &name] {
      auto wq = Queue::open(name.str());
      Job job;
      const std::uint64_t cpu0 = process_cpu_ns();
      o.started_ns.store(now_ns());
      const ClaimStatus st = wq.claim(job, 2s);
      record_claim(o, st, job);
      o.cpu_ns.store(process_cpu_ns() - cpu0);
      return 0;
    }));
    ASSERT_GT(pids.back(), 0);
  }
  for (const pid_t pid : pids) EXPECT_EQ(test::wait_child(pid), 0);
  rusage after{};
  ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &after), 0);

  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  const double children_cpu = (seconds(after.ru_utime) + seconds(after.ru_stime)) -
                              (seconds(before.ru_utime) + seconds(before.ru_stime));
  double in_claim = 0;
  for (int i = 0; i < kWaiters; ++i) {
    const Outcome& o = out->o[i];
    EXPECT_EQ(o.status.load(), static_cast<int>(ClaimStatus::empty)) << "waiter " << i;
    EXPECT_GE(elapsed_ms(o), 2000) << "waiter " << i << " returned before its wait";
    in_claim += static_cast<double>(o.cpu_ns.load()) / 1e9;
  }
  std::printf("[ cpu ] %d waiters x 2 s: %.4f s CPU inside claim(), %.4f s CPU in all (rusage)\n", kWaiters,
              in_claim, children_cpu);
  EXPECT_LT(in_claim, 0.3) << "idle waiters burn CPU inside claim()";
  EXPECT_LT(children_cpu, 1.0) << "idle waiter processes burn CPU";
}

// ===========================================================================
// Producer side: push with a wait (backpressure)
// ===========================================================================

// push(wait) / T6: a producer process blocked on a full queue is woken when
// a worker in a third process acks, and its job goes in; the queue then
// holds exactly the unacked job and the new one. Fails if ack does not wake
// producers waiting for room (checked on the room event word too: the
// producer's bounded re-check alone would also find the free slot).
TEST(WaitPush, BlockedProducerWakesWhenAnotherProcessAcks) {
  Watchdog dog(60s, "WaitPush.BlockedProducerWakesWhenAnotherProcessAcks");
  QueueName name("w-room");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  SegmentView seg(name.str());
  const PushResult a = q.push("A");
  const PushResult b = q.push("B");
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  ASSERT_EQ(q.push("X").status, PushStatus::full);

  test::SharedObject<Outcome> out;
  const pid_t producer = spawn_pusher(name.str(), *out, "C", 20s);
  ASSERT_GT(producer, 0);
  wait_until_asleep(producer, seg.room_event());
  EXPECT_EQ(out->status.load(), kNotReturned) << "push with a wait returned while the queue was full";

  const std::uint32_t seq_before = seg.room_event().load() >> 1;
  const std::int64_t acked_at = now_ns();
  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    auto job = wq.try_claim();
    if (!job || job->text() != "A") return 2;
    return wq.ack(job->lease) == LeaseStatus::ok ? 0 : 3;
  });
  ASSERT_GT(worker, 0);
  EXPECT_EQ(test::wait_child(worker), 0);
  EXPECT_NE(seg.room_event().load() >> 1, seq_before) << "the ack did not notify the announced producer";
  ASSERT_EQ(test::wait_child(producer), 0);

  EXPECT_EQ(out->status.load(), static_cast<int>(PushStatus::ok));
  EXPECT_LT(ms_after(acked_at, *out), 10'000) << "the blocked producer was not woken by the ack";
  auto j1 = q.try_claim();
  auto j2 = q.try_claim();
  ASSERT_TRUE(j1.has_value());
  ASSERT_TRUE(j2.has_value());
  EXPECT_EQ(j1->text(), "B");
  EXPECT_EQ(j2->text(), "C");
  EXPECT_EQ(j2->id, out->job_id.load());
  EXPECT_FALSE(q.try_claim().has_value());
}

// push(wait) timeout: a full queue whose jobs nobody acks — one ready, one
// under a long lease — makes push with a 300 ms wait return full, not before
// 300 ms, and changes nothing. Fails if the wait returns early or pushes
// into an occupied slot.
TEST(WaitPush, ReturnsFullAfterItsWaitWhenNobodyAcks) {
  Watchdog dog(60s, "WaitPush.ReturnsFullAfterItsWaitWhenNobodyAcks");
  QueueName name("w-full");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  ASSERT_TRUE(q.push("A"));
  ASSERT_TRUE(q.push("B"));
  auto held = q.try_claim(with_lease(60s));
  ASSERT_TRUE(held.has_value());

  test::SharedObject<Outcome> out;
  const pid_t producer = spawn_pusher(name.str(), *out, "C", 300ms);
  ASSERT_GT(producer, 0);
  ASSERT_EQ(test::wait_child(producer), 0);
  EXPECT_EQ(out->status.load(), static_cast<int>(PushStatus::full));
  EXPECT_GE(elapsed_ms(*out), 300);
  EXPECT_LT(elapsed_ms(*out), 10'000);
  const Stats s = q.stats();
  EXPECT_EQ(s.pushed, 2u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.leased, 1u);
}

// push(wait) woken by the operator transitions that free a slot (T9):
// remove_dead() of a dead job and purge() of a ready one, each from another
// process than the blocked producer. Fails if either does not notify room.
TEST(WaitPush, BlockedProducerWakesOnRemoveDeadAndPurge) {
  Watchdog dog(60s, "WaitPush.BlockedProducerWakesOnRemoveDeadAndPurge");
  QueueName name("w-ops");
  Options o{.capacity = 1, .max_payload = 64, .max_attempts = 1};
  auto q = Queue::create(name.str(), o);
  SegmentView seg(name.str());
  const PushResult doomed = q.push("doomed");
  ASSERT_TRUE(doomed);
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  ASSERT_EQ(q.release(job->lease), LeaseStatus::ok);  // attempts used up: dead
  ASSERT_EQ(q.stats().dead, 1u);

  for (const bool by_purge : {false, true}) {
    SCOPED_TRACE(by_purge ? "purge" : "remove_dead");
    test::SharedObject<Outcome> out;
    const pid_t producer = spawn_pusher(name.str(), *out, by_purge ? "second" : "first", 20s);
    ASSERT_GT(producer, 0);
    wait_until_asleep(producer, seg.room_event());
    EXPECT_EQ(out->status.load(), kNotReturned);
    const std::uint32_t seq_before = seg.room_event().load() >> 1;
    const std::int64_t freed_at = now_ns();
    if (by_purge) {
      EXPECT_EQ(q.purge(PurgeWhat::ready), 1u);  // removes "first"
    } else {
      EXPECT_TRUE(q.remove_dead(doomed.id));
    }
    EXPECT_NE(seg.room_event().load() >> 1, seq_before)
        << "the freeing operation did not notify the producer";
    ASSERT_EQ(test::wait_child(producer), 0);
    EXPECT_EQ(out->status.load(), static_cast<int>(PushStatus::ok));
    EXPECT_LT(ms_after(freed_at, *out), 10'000);
  }
  auto last = q.try_claim();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->text(), "second");
}

// ===========================================================================
// Crashes: no waiter waits on a dead process (guarantee 3)
// ===========================================================================

// A notifier that dies between its transition and its notify: forged by
// doing a release (T7, LEASED→READY) with a CAS on the mapped state word and
// never notifying. A claim blocked in another process must still find the
// job — its sleeps are bounded and followed by a re-check — long before its
// 20 s wait ends. Fails if a waiter relies on the notify alone.
TEST(WaitCrash, WaiterFindsJobWhoseNotifierDiedBeforeNotifying) {
  Watchdog dog(60s, "WaitCrash.WaiterFindsJobWhoseNotifierDiedBeforeNotifying");
  QueueName name("w-nonotify");
  auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
  SegmentView seg(name.str());
  const PushResult pushed = q.push("silent");
  ASSERT_TRUE(pushed);
  auto held = q.try_claim(with_lease(60s));
  ASSERT_TRUE(held.has_value());

  Claimer worker(name.str(), 20s);
  ASSERT_GT(worker.pid(), 0);
  wait_until_asleep(worker.pid(), seg.work_event());
  const std::uint32_t event_before = seg.work_event().load();

  std::uint64_t expected = held->lease.token;
  const std::int64_t forged_at = now_ns();
  ASSERT_TRUE(
      seg.state(held->lease.slot)
          .compare_exchange_strong(expected, detail::T::release.target(Word{held->lease.token}, 0).raw));
  ASSERT_EQ(worker.reap(), 0);

  expect_claimed(*worker, pushed.id, 2, "silent");
  EXPECT_LT(ms_after(forged_at, *worker), 10'000) << "a waiter hung on a notify that never came";
  // Nobody notified: the waiter found the job on a bounded re-check.
  EXPECT_EQ(seg.work_event().load() >> 1, event_before >> 1);
}

// A slot left WRITING by a dead producer (T1 done, T3 never) is not a reason
// to wait: a push with a 20 s wait on a ring that is "full" only because of
// it recovers it (T2) and goes in at once, and a blocked claim that finds
// only such a slot returns at its timeout and frees it. Fails if either
// waits for the dead producer.
TEST(WaitCrash, SlotOfDeadWriterNeitherBlocksPushNorHangsClaim) {
  Watchdog dog(60s, "WaitCrash.SlotOfDeadWriterNeitherBlocksPushNorHangsClaim");
  QueueName name("w-deadw");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  SegmentView seg(name.str());
  auto forge_writing = [&] {
    for (std::uint32_t i = 0; i < 2; ++i) {
      std::uint64_t w = seg.state(i).load();
      if (Word{w}.state() != State::free) continue;
      const std::uint64_t writer = detail::make_writer(test::kDeadToken);
      if (seg.state(i).compare_exchange_strong(w, detail::T::reserve.target(Word{w}, writer).raw))
        return true;
    }
    return false;
  };

  ASSERT_TRUE(q.push("A"));
  ASSERT_TRUE(forge_writing());
  const std::int64_t t0 = now_ns();
  const PushResult r = q.push("B", with_wait(20s));
  EXPECT_EQ(r.status, PushStatus::ok);
  EXPECT_LT(ms_between(t0, now_ns()), 10'000);
  EXPECT_EQ(q.stats().recovered_writes, 1u);

  // Empty the ring, leave one dead writer's slot, and block a claim on it.
  for (int i = 0; i < 2; ++i) {
    auto job = q.try_claim();
    ASSERT_TRUE(job.has_value());
    ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);
  }
  ASSERT_TRUE(forge_writing());
  Claimer worker(name.str(), 300ms);
  ASSERT_GT(worker.pid(), 0);
  ASSERT_EQ(worker.reap(), 0);
  expect_empty_after(*worker, 300);
  const Stats s = q.stats();
  EXPECT_EQ(s.writing, 0u) << "the dead writer's slot was not recovered";
  EXPECT_EQ(s.free, 2u);
  EXPECT_EQ(s.recovered_writes, 2u);
}

// A producer SIGKILLed at random points of its push loop (before, inside or
// after push, possibly between its commit and its notify) while a worker in
// another process sleeps in claim(3 s) for each job: the worker never hangs —
// it gets every job that was committed and returns empty at its timeout once
// the producers are gone — and no slot is left WRITING. Guarantees 2 and 3.
TEST(WaitCrash, WaiterNeverHangsWhenProducersAreKilled) {
  constexpr int kRounds = 6;
  Watchdog dog(90s, "WaitCrash.WaiterNeverHangsWhenProducersAreKilled");
  QueueName name("w-kill");
  auto q = Queue::create(name.str(), Options{.capacity = 16, .max_payload = 64});
  struct Shared {
    std::atomic<std::uint64_t> logged{0};   // pushes that returned ok (counted after)
    std::atomic<std::uint64_t> claimed{0};  // claims of the worker
    std::atomic<int> bad{0};
  };
  test::SharedObject<Shared> sh;
  test::SharedObject<Outcome> out;

  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    Job job;
    for (;;) {
      out->started_ns.store(now_ns());
      const ClaimStatus st = wq.claim(job, 3s);
      out->returned_ns.store(now_ns());
      if (st != ClaimStatus::ok) break;
      if (job.text().substr(0, 4) != "job-") sh->bad.fetch_add(1);
      sh->claimed.fetch_add(1);
      if (wq.ack(job.lease) != LeaseStatus::ok) sh->bad.fetch_add(1);
    }
    return 0;
  });
  ASSERT_GT(worker, 0);

  std::mt19937 rng(12345);
  for (int round = 0; round < kRounds; ++round) {
    const pid_t producer = test::spawn_tied([&]() -> int {
      auto pq = Queue::open(name.str());
      std::minstd_rand r(static_cast<unsigned>(::getpid()));
      for (std::uint64_t i = 0;; ++i) {
        if (pq.push("job-" + std::to_string(i), with_wait(1s))) sh->logged.fetch_add(1);
        ::usleep(static_cast<useconds_t>(r() % 2000));
      }
    });
    ASSERT_GT(producer, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 60));
    test::kill_and_reap(producer);
  }

  // The worker returns empty 3 s after the last job; it must not hang.
  std::optional<int> st;
  test::poll_until([&] { return (st = test::try_wait_child(worker)).has_value(); }, 30s, 5ms);
  if (!st) test::kill_and_reap(worker);
  ASSERT_TRUE(st.has_value()) << "the waiter hung after its producers were killed";
  EXPECT_EQ(*st, 0);
  EXPECT_EQ(sh->bad.load(), 0);
  const std::uint64_t logged = sh->logged.load();
  const std::uint64_t claimed = sh->claimed.load();
  EXPECT_GE(claimed, logged) << "a job whose push returned ok was never claimed";
  EXPECT_LE(claimed, logged + kRounds) << "more unlogged jobs than producer kills";
  EXPECT_GT(logged, 0u);
  const Stats s = q.stats();
  EXPECT_EQ(s.writing, 0u);
  EXPECT_EQ(s.free, 16u);
  std::printf("[ kill ] %d producers killed: %llu pushes logged, %llu claimed, %llu writes recovered\n",
              kRounds, static_cast<unsigned long long>(logged), static_cast<unsigned long long>(claimed),
              static_cast<unsigned long long>(s.recovered_writes));
}

// A waiter SIGKILLed while asleep leaves at most the waiting bit set on the
// event word (wait.hpp: there is no waiter count to leak). The next notify
// clears it; later pushes, claims and blocking waits behave. Both events:
// a killed claimer (work) and a killed blocked producer (room).
TEST(WaitCrash, KilledSleeperDoesNotDisturbLaterWaits) {
  Watchdog dog(60s, "WaitCrash.KilledSleeperDoesNotDisturbLaterWaits");
  QueueName name("w-heal");
  auto q = Queue::create(name.str(), Options{.capacity = 2, .max_payload = 64});
  SegmentView seg(name.str());

  // --- work event: a claimer killed in its sleep.
  const pid_t sleeper = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    Job job;
    (void)wq.claim(job, 30s);
    return 0;
  });
  ASSERT_GT(sleeper, 0);
  wait_until_asleep(sleeper, seg.work_event());
  test::kill_and_reap(sleeper);
  ASSERT_TRUE(waiting_bit(seg.work_event())) << "precondition: the killed waiter had announced itself";
  const std::uint32_t seq_before = seg.work_event().load() >> 1;

  ASSERT_TRUE(q.push("one"));
  EXPECT_FALSE(waiting_bit(seg.work_event())) << "the next push did not clear the dead waiter's bit";
  EXPECT_NE(seg.work_event().load() >> 1, seq_before);
  auto job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->text(), "one");
  ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);
  // With no waiter, a push leaves the word alone (no system call, wait.hpp).
  const std::uint32_t idle = seg.work_event().load();
  ASSERT_TRUE(q.push("quiet"));
  EXPECT_EQ(seg.work_event().load(), idle);
  job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);

  // A new waiter in another process is woken by a push as usual.
  test::SharedObject<Outcome> out;
  const pid_t worker = test::spawn_tied([&] {
    auto wq = Queue::open(name.str());
    Job j;
    out->started_ns.store(now_ns());
    const ClaimStatus st = wq.claim(j, 20s);
    record_claim(*out, st, j);
    if (st == ClaimStatus::ok) (void)wq.ack(j.lease);
    return 0;
  });
  ASSERT_GT(worker, 0);
  wait_until_asleep(worker, seg.work_event());
  const std::int64_t pushed_at = now_ns();
  ASSERT_TRUE(q.push("two"));
  ASSERT_EQ(test::wait_child(worker), 0);
  EXPECT_EQ(out->status.load(), static_cast<int>(ClaimStatus::ok));
  EXPECT_STREQ(out->text, "two");
  EXPECT_LT(ms_after(pushed_at, *out), 10'000);

  // --- room event: a producer killed while blocked on a full queue.
  ASSERT_TRUE(q.push("A"));
  ASSERT_TRUE(q.push("B"));
  const pid_t blocked = test::spawn_tied([&] {
    auto pq = Queue::open(name.str());
    (void)pq.push("never", with_wait(30s));
    return 0;
  });
  ASSERT_GT(blocked, 0);
  wait_until_asleep(blocked, seg.room_event());
  test::kill_and_reap(blocked);
  ASSERT_TRUE(waiting_bit(seg.room_event()));
  job = q.try_claim();
  ASSERT_TRUE(job.has_value());
  ASSERT_EQ(q.ack(job->lease), LeaseStatus::ok);
  EXPECT_FALSE(waiting_bit(seg.room_event())) << "the next ack did not clear the dead producer's bit";
  EXPECT_TRUE(q.push("C"));
  EXPECT_EQ(q.push("D").status, PushStatus::full);
  const Stats s = q.stats();
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.writing, 0u);
}

// ===========================================================================
// interrupt_waits() / clear_interrupt()
// ===========================================================================

void interrupt_handler(int) { interrupt_waits(); }

void install_interrupt_handler(bool restart) {
  struct sigaction sa {};
  sa.sa_handler = interrupt_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = restart ? SA_RESTART : 0;
  ::sigaction(SIGUSR1, &sa, nullptr);
}

// interrupt_waits() from a signal handler (async-signal-safe; the graceful
// shutdown path): a child blocked in claim(30 s) gets SIGUSR1, whose handler
// calls interrupt_waits(); claim returns `interrupted` promptly; the next
// blocking call returns `interrupted` at once (the flag stays until
// cleared); after clear_interrupt() claim works again. A bystander process
// blocked on the same queue is not interrupted (the flag is per process).
// With and without SA_RESTART. Fails if the handler cannot wake the sleeper
// (claim would return at 30 s), if the flag does not persist or clear, or
// if the interruption leaks into another process.
TEST(WaitInterrupt, SignalHandlerInterruptsBlockedClaim) {
  Watchdog dog(90s, "WaitInterrupt.SignalHandlerInterruptsBlockedClaim");
  for (const bool restart : {true, false}) {
    SCOPED_TRACE(restart ? "SA_RESTART" : "no SA_RESTART");
    QueueName name("w-sig");
    auto q = Queue::create(name.str(), Options{.capacity = 8, .max_payload = 64});
    SegmentView seg(name.str());
    test::SharedObject<Outcome> out;
    test::SharedObject<Outcome> by;

    const pid_t bystander = spawn_claimer(name.str(), *by, 30s);
    ASSERT_GT(bystander, 0);
    wait_until_asleep(bystander, seg.work_event());

    const pid_t child = test::spawn_tied([&]() -> int {
      install_interrupt_handler(restart);
      auto wq = Queue::open(name.str());
      Job job;
      out->stage.store(1);
      out->started_ns.store(now_ns());
      const ClaimStatus st = wq.claim(job, 30s);
      record_claim(*out, st, job);
      if (st != ClaimStatus::interrupted) return 10;
      // Still interrupted: every blocking call returns at once.
      const std::int64_t t0 = now_ns();
      if (wq.claim(job, 30s) != ClaimStatus::interrupted) return 11;
      std::array<Job, 2> jobs;
      if (wq.claim_many(jobs, 30s) != 0) return 12;
      if (ms_between(t0, now_ns()) > 5000) return 13;
      clear_interrupt();
      out->stage.store(2);
      if (wq.claim(job, 20s) != ClaimStatus::ok) return 14;
      if (job.text() != "after") return 15;
      return wq.ack(job.lease) == LeaseStatus::ok ? 0 : 16;
    });
    ASSERT_GT(child, 0);
    ASSERT_TRUE(wait_stage(*out, 1));
    // Both children now sleep on the same word; wait until this one does too.
    (void)test::poll_until([&] { return proc_state(child) == 'S'; }, 10s, 1ms);
    std::this_thread::sleep_for(50ms);

    const std::int64_t signalled = now_ns();
    ASSERT_EQ(::kill(child, SIGUSR1), 0);
    ASSERT_TRUE(wait_status(*out)) << "the interrupted claim did not return";
    EXPECT_EQ(out->status.load(), static_cast<int>(ClaimStatus::interrupted));
    const std::int64_t latency_ms = ms_between(signalled, out->returned_ns.load());
    EXPECT_LT(latency_ms, 5000) << "interrupt_waits() from a handler did not end the wait promptly";
    std::printf("[ interrupt ] %s: claim returned %lld ms after SIGUSR1\n",
                restart ? "SA_RESTART" : "no SA_RESTART", static_cast<long long>(latency_ms));

    ASSERT_TRUE(wait_stage(*out, 2));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(by->status.load(), kNotReturned) << "another process's claim was interrupted";
    // Two jobs: one for the (cleared) child, one for the bystander.
    ASSERT_TRUE(q.push("after"));
    ASSERT_TRUE(q.push("after"));
    EXPECT_EQ(test::wait_child(child), 0);
    EXPECT_EQ(test::wait_child(bystander), 0);
    EXPECT_EQ(by->status.load(), static_cast<int>(ClaimStatus::ok));
    EXPECT_STREQ(by->text, "after");
  }
}

// interrupt_waits() from a signal handler ends a push blocked on a full
// queue (PushStatus::interrupted, nothing pushed) and a claim_many blocked on
// an empty one (returns 0). Fails if either waits out its 30 s.
TEST(WaitInterrupt, SignalHandlerInterruptsBlockedPushAndClaimMany) {
  Watchdog dog(60s, "WaitInterrupt.SignalHandlerInterruptsBlockedPushAndClaimMany");
  QueueName full_name("w-sigp");
  QueueName empty_name("w-sigc");
  auto full = Queue::create(full_name.str(), Options{.capacity = 1, .max_payload = 64});
  auto empty = Queue::create(empty_name.str(), Options{.capacity = 4, .max_payload = 64});
  ASSERT_TRUE(full.push("occupant"));
  SegmentView full_seg(full_name.str());
  SegmentView empty_seg(empty_name.str());

  for (const bool push_side : {true, false}) {
    SCOPED_TRACE(push_side ? "push" : "claim_many");
    test::SharedObject<Outcome> out;
    const pid_t child = test::spawn_tied([&]() -> int {
      install_interrupt_handler(false);
      auto fq = Queue::open(full_name.str());
      auto eq = Queue::open(empty_name.str());
      out->started_ns.store(now_ns());
      if (push_side) {
        const PushResult r = fq.push("blocked", with_wait(30s));
        out->returned_ns.store(now_ns());
        out->status.store(static_cast<int>(r.status));
      } else {
        std::array<Job, 3> jobs;
        const std::size_t n = eq.claim_many(jobs, 30s);
        out->returned_ns.store(now_ns());
        out->status.store(static_cast<int>(n));
      }
      return 0;
    });
    ASSERT_GT(child, 0);
    wait_until_asleep(child, push_side ? full_seg.room_event() : empty_seg.work_event());
    const std::int64_t signalled = now_ns();
    ASSERT_EQ(::kill(child, SIGUSR1), 0);
    ASSERT_EQ(test::wait_child(child), 0);
    EXPECT_EQ(out->status.load(), push_side ? static_cast<int>(PushStatus::interrupted) : 0);
    EXPECT_LT(ms_between(signalled, out->returned_ns.load()), 5000);
  }
  const Stats s = full.stats();
  EXPECT_EQ(s.pushed, 1u);
  EXPECT_EQ(s.ready, 1u);
}

// Clears the interrupt flag of this process when a test ends, however it ends.
struct ClearInterruptOnExit {
  ~ClearInterruptOnExit() { clear_interrupt(); }
};

// interrupt_waits() from another thread of the same process wakes every
// blocked call of the process: a thread in claim(30 s) and a thread in
// push(30 s) on a full queue both return `interrupted` promptly. After
// clear_interrupt() both kinds of call work (and time out) normally. Runs
// in the test process itself (threads; also run under TSan).
TEST(WaitInterrupt, AnotherThreadInterruptsBlockedCalls) {
  Watchdog dog(60s, "WaitInterrupt.AnotherThreadInterruptsBlockedCalls");
  ClearInterruptOnExit clear_at_end;
  QueueName work_name("w-thr-c");
  QueueName room_name("w-thr-p");
  auto wq = Queue::create(work_name.str(), Options{.capacity = 4, .max_payload = 64});
  auto rq = Queue::create(room_name.str(), Options{.capacity = 1, .max_payload = 64});
  ASSERT_TRUE(rq.push("occupant"));
  SegmentView wseg(work_name.str());
  SegmentView rseg(room_name.str());

  std::atomic<int> claim_status{kNotReturned};
  std::atomic<int> push_status{kNotReturned};
  std::atomic<std::int64_t> claim_returned{0};
  std::atomic<std::int64_t> push_returned{0};
  std::thread claimer([&] {
    Job job;
    const ClaimStatus st = wq.claim(job, 30s);
    claim_returned.store(now_ns());
    claim_status.store(static_cast<int>(st));
  });
  std::thread pusher([&] {
    const PushResult r = rq.push("blocked", with_wait(30s));
    push_returned.store(now_ns());
    push_status.store(static_cast<int>(r.status));
  });
  (void)test::poll_until([&] { return waiting_bit(wseg.work_event()) && waiting_bit(rseg.room_event()); },
                         10s, 1ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(claim_status.load(), kNotReturned);
  EXPECT_EQ(push_status.load(), kNotReturned);

  const std::int64_t interrupted_at = now_ns();
  interrupt_waits();
  claimer.join();
  pusher.join();
  EXPECT_EQ(claim_status.load(), static_cast<int>(ClaimStatus::interrupted));
  EXPECT_EQ(push_status.load(), static_cast<int>(PushStatus::interrupted));
  EXPECT_LT(ms_between(interrupted_at, claim_returned.load()), 5000);
  EXPECT_LT(ms_between(interrupted_at, push_returned.load()), 5000);

  // Until cleared, blocking calls return at once.
  Job job;
  EXPECT_EQ(wq.claim(job, 30s), ClaimStatus::interrupted);
  EXPECT_EQ(rq.push("x", with_wait(30s)).status, PushStatus::interrupted);

  clear_interrupt();
  ASSERT_TRUE(wq.push("after"));
  EXPECT_EQ(wq.claim(job, 5s), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "after");
  EXPECT_EQ(wq.claim(job, 200ms), ClaimStatus::empty) << "a cleared interrupt must give ordinary timeouts";
  EXPECT_EQ(rq.push("x", with_wait(200ms)).status, PushStatus::full);
  EXPECT_EQ(rq.stats().pushed, 1u);
}

}  // namespace
}  // namespace jobring
