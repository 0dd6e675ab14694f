// Tests of the worker runtime (include/jobring/worker.hpp, issue 7).
//
// Each test names, in the comment above it, the behaviour that would break
// it. Timing: no test asserts that something happened fast; the tests that
// depend on durations use margins of several times the duration (a 1 s lease
// extended every 333 ms, held for 3.5 s) and bounded waits of tens of seconds
// for things expected in milliseconds. Forked children report through shared
// memory and exit codes (never gtest assertions), and die with the test
// process (die_with_parent), so a test aborted by its Watchdog leaves none.
//
// Signals (and some tests) call interrupt_waits(), which stays in force in
// the process until clear_interrupt(): the fixture clears it before and after
// every test. request_stop() stops its own Worker only (WorkerStop below).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { clear_interrupt(); }
  void TearDown() override { clear_interrupt(); }

  // The test's queue: created under a unique name built from `tag`, removed
  // after the test.
  Queue& make_queue(const std::string& tag, const Options& options = {}) {
    name_.emplace(tag);
    return queue_.emplace(Queue::create(*name_, options));
  }
  [[nodiscard]] const std::string& queue_name() const { return name_->str(); }

 private:
  std::optional<QueueName> name_;  // declared first: removed after the queue is closed
  std::optional<Queue> queue_;
};

// ===========================================================================
// Backoff formula
// ===========================================================================

// backoff_delay: d = min(cap, base × 2^(attempt-1)); none = d; full in [0, d];
// equal in [d/2, d]. Fails if the doubling, the cap, the overflow guard or a
// jitter range is wrong.
TEST(Backoff, FormulaDoublesCapsAndJitters) {
  const Backoff none{.base = 100ms, .cap = 1000ms, .jitter = Jitter::none};
  const std::vector<std::pair<std::uint32_t, std::int64_t>> expected = {
      {0, 100},  {1, 100},   {2, 200},
      {3, 400},  {4, 800},   {5, 1000},
      {6, 1000}, {64, 1000}, {4'000'000'000u, 1000}};
  for (const auto& [attempt, ms] : expected)
    EXPECT_EQ(backoff_delay(none, attempt, 12345).count(), ms) << "attempt " << attempt;
  // A base of 0 means no delay.
  EXPECT_EQ(backoff_delay({.base = 0ms, .cap = 10ms, .jitter = Jitter::none}, 5, 1).count(), 0);
  // A huge base and cap do not overflow.
  EXPECT_EQ(backoff_delay({.base = kMaxLease, .cap = kMaxLease, .jitter = Jitter::none}, 40, 7), kMaxLease);

  const Backoff full{.base = 100ms, .cap = 1000ms, .jitter = Jitter::full};
  const Backoff equal{.base = 100ms, .cap = 1000ms, .jitter = Jitter::equal};
  EXPECT_EQ(backoff_delay(full, 3, 0).count(), 0);
  EXPECT_EQ(backoff_delay(full, 3, 400).count(), 400);
  EXPECT_EQ(backoff_delay(equal, 3, 0).count(), 200);
  EXPECT_EQ(backoff_delay(equal, 3, 200).count(), 400);
  std::uint64_t r = 88172645463325252ull;
  std::set<std::int64_t> seen_full;
  for (int i = 0; i < 2000; ++i) {
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    const auto f = backoff_delay(full, 4, r).count();
    const auto e = backoff_delay(equal, 4, r).count();
    ASSERT_GE(f, 0);
    ASSERT_LE(f, 800);
    ASSERT_GE(e, 400);
    ASSERT_LE(e, 800);
    seen_full.insert(f / 100);
  }
  EXPECT_GE(seen_full.size(), 8u) << "full jitter should spread over the whole range";
}

// ===========================================================================
// The ack path, hooks and the summary
// ===========================================================================

// The handler gets every job with its id and attempt (in the Job and the
// context); Outcome::ack acks it; the hooks see each claim and each result;
// run() returns after max_jobs. Fails if a job is not acked, is handled twice,
// or a hook or summary count is off.
TEST_F(WorkerTest, HandlerAckPathAcksEveryJob) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-ack", {.capacity = 8});
  std::set<JobId> pushed;
  for (const char* p : {"a", "b", "c"}) pushed.insert(queue.push(p).id);
  std::vector<std::string> texts;
  std::set<JobId> seen;
  int claims = 0;
  std::vector<JobResult> results;
  bool context_ok = true;
  WorkerOptions o{.max_jobs = 3};
  o.hooks.on_claim = [&](const Job&) { ++claims; };
  o.hooks.on_done = [&](const Job&, const JobReport& r) { results.push_back(r.result); };
  Worker worker(
      queue,
      [&](const Job& job, JobContext& ctx) {
        texts.emplace_back(job.text());
        seen.insert(job.id);
        context_ok &= ctx.id() == job.id && ctx.attempt() == 1 && job.attempt == 1 && !ctx.last_attempt() &&
                      !ctx.stopping() && !ctx.cancelled() && ctx.lease() == job.lease &&
                      ctx.thread_index() == 0 && ctx.key().empty();
        return Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(seen, pushed);
  EXPECT_TRUE(context_ok);
  EXPECT_EQ(claims, 3);
  EXPECT_EQ(results, std::vector<JobResult>(3, JobResult::acked));
  EXPECT_EQ(s.claimed, 3u);
  EXPECT_EQ(s.acked, 3u);
  EXPECT_EQ(s.retried + s.dead + s.lease_lost + s.abandoned + s.errors, 0u);
  EXPECT_FALSE(s.stopped);
  const Stats st = queue.stats();
  EXPECT_EQ(st.acked, 3u);
  EXPECT_EQ(st.free, 8u);
}

// ctx.key() is the job's de-duplication key. Fails if the key does not reach
// the handler.
TEST_F(WorkerTest, HandlerSeesTheJobsKey) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-key");
  ASSERT_TRUE(queue.push("x", {.key = "order-42"}));
  std::string key;
  Worker worker(queue,
                [&](const Job& job, JobContext& ctx) {
                  key = std::string(ctx.key());
                  EXPECT_EQ(job.key(), ctx.key());
                  return Outcome::ack();
                },
                {.max_jobs = 1});
  EXPECT_EQ(worker.run().acked, 1u);
  EXPECT_EQ(key, "order-42");
}

// ===========================================================================
// Retry, backoff, dead-lettering
// ===========================================================================

// Outcome::retry releases the job with the backoff delay (Jitter::none:
// exactly base × 2^(attempt-1)): the job is delayed, not claimable, until
// then. Fails if the release has no delay, the wrong delay, or acks.
TEST_F(WorkerTest, RetryReleasesWithBackoffAndHidesTheJobUntilThen) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-retry");
  const JobId id = queue.push("j").id;
  std::vector<JobReport> reports;
  WorkerOptions o{.backoff = {.base = 1h, .cap = 2h, .jitter = Jitter::none}, .max_jobs = 1};
  o.hooks.on_done = [&](const Job&, const JobReport& r) { reports.push_back(r); };
  Worker worker(
      queue, [](const Job&, JobContext&) { return Outcome::retry(); }, o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.retried, 1u);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result, JobResult::retried);
  EXPECT_EQ(reports[0].delay, 1h);
  EXPECT_EQ(reports[0].outcome, Outcome::retry());
  // Released, delayed by (about) an hour: not claimable now.
  const Stats st = queue.stats();
  EXPECT_EQ(st.released, 1u);
  EXPECT_EQ(st.delayed, 1u);
  EXPECT_EQ(st.ready + st.leased, 0u);
  Job job;
  EXPECT_EQ(queue.try_claim(job), ClaimStatus::empty);
  const auto delayed = queue.peek(JobState::delayed);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_EQ(delayed[0].id, id);
  EXPECT_GT(delayed[0].ms_until, std::chrono::duration_cast<milliseconds>(30min).count());
}

// A failing job comes back after each delay, which doubles per attempt; it is
// claimed again (attempt + 1) only after its delay; once the handler
// succeeds it is acked. Fails if the delay does not grow, a retry comes back
// before its delay (lower bounds only: a slow machine only makes gaps longer),
// or the attempts are miscounted.
TEST_F(WorkerTest, BackoffDoublesPerAttemptAndTheJobComesBackAfterIt) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-double");
  (void)queue.push("j");
  std::vector<std::uint32_t> attempts;
  std::vector<std::chrono::steady_clock::time_point> claimed_at;
  std::vector<milliseconds> delays;
  WorkerOptions o{.backoff = {.base = 40ms, .cap = 1000ms, .jitter = Jitter::none}, .max_jobs = 4};
  o.hooks.on_done = [&](const Job&, const JobReport& r) {
    if (r.result == JobResult::retried) delays.push_back(r.delay);
  };
  Worker worker(
      queue,
      [&](const Job& job, JobContext&) {
        attempts.push_back(job.attempt);
        claimed_at.push_back(std::chrono::steady_clock::now());
        return job.attempt < 4 ? Outcome::retry() : Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(attempts, (std::vector<std::uint32_t>{1, 2, 3, 4}));
  EXPECT_EQ(delays, (std::vector<milliseconds>{40ms, 80ms, 160ms}));
  ASSERT_EQ(claimed_at.size(), 4u);
  for (std::size_t i = 1; i < claimed_at.size(); ++i)
    EXPECT_GE(claimed_at[i] - claimed_at[i - 1], delays[i - 1] - 2ms) << "retry " << i << " came back early";
  EXPECT_EQ(s.retried, 3u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(queue.stats().acked, 1u);
}

// A handler that always throws: each exception counts as a retry (its message
// reaches on_error and on_done), and on the queue's last attempt the release
// dead-letters the job (guarantee: poison jobs end dead). ctx.last_attempt()
// is true exactly then. Fails if exceptions escape run(), the job loops
// for ever, or the dead job is reported as retried.
TEST_F(WorkerTest, PoisonJobEndsDeadAfterTheQueuesMaxAttempts) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-poison", {.max_attempts = 3});
  (void)queue.push("poison");
  std::vector<std::string> errors;
  std::vector<JobResult> results;
  std::vector<bool> last;
  WorkerOptions o{.backoff = {.base = 1ms, .cap = 5ms}, .max_jobs = 3};
  o.hooks.on_error = [&](const Job&, std::string_view what) { errors.emplace_back(what); };
  o.hooks.on_done = [&](const Job&, const JobReport& r) {
    results.push_back(r.result);
    EXPECT_EQ(r.error, "boom");
  };
  Worker worker(
      queue,
      [&](const Job&, JobContext& ctx) -> Outcome {
        last.push_back(ctx.last_attempt());
        throw std::runtime_error("boom");
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(errors, std::vector<std::string>(3, "boom"));
  EXPECT_EQ(results, (std::vector<JobResult>{JobResult::retried, JobResult::retried, JobResult::dead}));
  EXPECT_EQ(last, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(s.errors, 3u);
  EXPECT_EQ(s.retried, 2u);
  EXPECT_EQ(s.dead, 1u);
  const Stats st = queue.stats();
  EXPECT_EQ(st.dead, 1u);
  EXPECT_EQ(st.dead_lettered, 1u);
  EXPECT_EQ(st.acked, 0u);
}

// Captures what this process writes to stderr (fd 2) while alive.
class StderrCapture {
 public:
  StderrCapture() : file_(std::tmpfile()), saved_(::dup(STDERR_FILENO)) {
    std::fflush(stderr);
    ::dup2(::fileno(file_), STDERR_FILENO);
  }
  ~StderrCapture() {
    restore();
    std::fclose(file_);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    for (int c; (c = std::fgetc(file_)) != EOF;) out.push_back(static_cast<char>(c));
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_;
};

// Issue 14 item 9: a handler's exception is never retried in silence: with
// no on_error hook, each one is a line on stderr naming the queue, the job,
// its attempt and the message; with a hook, the hook alone reports it.
TEST_F(WorkerTest, Item9_AnExceptionWithNoHookIsLoggedToStderr) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-log", {.max_attempts = 2});
  const JobId id = queue.push("poison").id;
  auto throwing = [](const Job&, JobContext&) -> Outcome { throw std::runtime_error("disk on fire"); };
  std::string logged;
  {
    StderrCapture capture;
    Worker worker(queue, throwing, WorkerOptions{.backoff = {.base = 1ms, .cap = 5ms}, .max_jobs = 1});
    (void)worker.run();
    logged = capture.text();
  }
  const std::string want = "jobring worker: queue '" + queue.name() + "': job " + std::to_string(id) +
                           " (attempt 1) failed: disk on fire";
  EXPECT_NE(logged.find(want), std::string::npos) << "stderr was: " << logged;
  {
    StderrCapture capture;
    WorkerOptions o{.backoff = {.base = 1ms, .cap = 5ms}, .max_jobs = 1};
    int hooked = 0;
    o.hooks.on_error = [&](const Job&, std::string_view) { ++hooked; };
    Worker worker(queue, throwing, o);
    (void)worker.run();
    logged = capture.text();
    EXPECT_EQ(hooked, 1);
  }
  EXPECT_EQ(logged.find("disk on fire"), std::string::npos) << "logged despite the hook: " << logged;
  EXPECT_EQ(queue.stats().dead, 1u);
}

// Issue 14 item 6: the dead job keeps why it died: the exception's what()
// of its last attempt, or Outcome::retry's reason. Fails if the Worker did
// not pass either to the release (the note would say "released after 1
// attempt").
TEST_F(WorkerTest, Item6_TheDeadJobKeepsTheExceptionOrTheRetryReason) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-why", {.max_attempts = 1});
  ASSERT_TRUE(queue.push("throws"));
  ASSERT_TRUE(queue.push("returns"));
  Worker worker(queue,
                [&](const Job& job, JobContext&) -> Outcome {
                  if (job.text() == "throws") throw std::runtime_error("kaput: disk full");
                  return Outcome::retry("upstream said 503");
                },
                {.backoff = {.base = 1ms, .cap = 5ms}, .max_jobs = 2});
  EXPECT_EQ(worker.run().dead, 2u);
  const auto dead = queue.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 2u);
  for (const JobInfo& j : dead) {
    const std::string_view payload(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
    EXPECT_EQ(j.error, payload == "throws" ? "kaput: disk full" : "upstream said 503");
    EXPECT_TRUE(j.failed_ms_ago.has_value());
  }
  static_assert(Outcome::retry("x").reason() == "x" && Outcome::retry().reason().empty());
  static_assert(Outcome::retry_after(1ms, "y").delay() == 1ms);
}

// retry_after(d) releases with exactly d (no backoff, no jitter); drop acks
// and reports dropped; skip acks and reports skipped. Fails if any is
// handled as another outcome.
TEST_F(WorkerTest, RetryAfterDropAndSkip) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-outcomes");
  const JobId later = queue.push("later").id;
  (void)queue.push("drop");
  (void)queue.push("skip");
  std::vector<JobReport> reports;
  WorkerOptions o{.backoff = {.base = 1ms, .cap = 1ms}, .max_jobs = 3};
  o.hooks.on_done = [&](const Job&, const JobReport& r) { reports.push_back(r); };
  Worker worker(
      queue,
      [](const Job& job, JobContext&) {
        if (job.text() == "later") return Outcome::retry_after(2h);
        return job.text() == "drop" ? Outcome::drop() : Outcome::skip();
      },
      o);
  const WorkerSummary s = worker.run();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].result, JobResult::retried);
  EXPECT_EQ(reports[0].delay, 2h);
  EXPECT_EQ(reports[1].result, JobResult::dropped);
  EXPECT_EQ(reports[2].result, JobResult::skipped);
  EXPECT_EQ(s.retried, 1u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.skipped, 1u);
  const auto delayed = queue.peek(JobState::delayed);
  ASSERT_EQ(delayed.size(), 1u);
  EXPECT_EQ(delayed[0].id, later);
  EXPECT_GT(delayed[0].ms_until, std::chrono::duration_cast<milliseconds>(90min).count());
  EXPECT_EQ(queue.stats().acked, 2u);
}

// ===========================================================================
// Automatic lease extension
// ===========================================================================

// A job that runs 3.5 × its lease, with one worker: the heartbeat extends the
// lease, so another process polling try_claim the whole time gets nothing,
// the job is acked once, and no lease ever expires (guarantee 1). Fails
// without the heartbeat (the poller takes the job after 1 s), or if the ack
// used a stale token (lease_lost).
TEST_F(WorkerTest, AutoExtensionKeepsAThreeLeaseJobWithOneWorker) {
  Watchdog wd(90s);
  Queue& queue = make_queue("w-extend");
  (void)queue.push("long");
  struct Shared {
    std::atomic<bool> go{false};  // the handler runs: start polling
    std::atomic<bool> stop{false};
    std::atomic<int> polls{0};
    std::atomic<int> got{0};
  };
  test::SharedObject<Shared> shared;
  const std::string name = queue_name();
  const pid_t poller = test::spawn_tied([&] {
    Queue mine = Queue::open(name);
    Job job;
    while (!shared->go.load() && !shared->stop.load()) std::this_thread::sleep_for(1ms);
    while (!shared->stop.load()) {
      if (mine.try_claim(job, {.lease = 1h}) == ClaimStatus::ok) shared->got.fetch_add(1);
      shared->polls.fetch_add(1);
      std::this_thread::sleep_for(1ms);
    }
    return 0;
  });
  int extensions_seen = 0;
  Worker worker(queue,
                [&](const Job& job, JobContext& ctx) {
                  shared->go.store(true);
                  test::poll_until([&] { return shared->polls.load() > 0; }, 20s, 1ms);
                  const auto until = std::chrono::steady_clock::now() + 3500ms;
                  Lease last = job.lease;
                  while (std::chrono::steady_clock::now() < until && !ctx.cancelled()) {
                    std::this_thread::sleep_for(20ms);
                    const Lease now = ctx.lease();
                    if (now.token != last.token) ++extensions_seen;
                    last = now;
                  }
                  return Outcome::ack();
                },
                {.lease = 1000ms, .max_jobs = 1});
  const WorkerSummary s = worker.run();
  const int polls_during = shared->polls.load();
  shared->stop.store(true);
  EXPECT_EQ(test::wait_child(poller), 0);
  EXPECT_EQ(shared->got.load(), 0) << "another process claimed the job while its handler ran";
  EXPECT_GT(polls_during, 10);
  EXPECT_GE(extensions_seen, 3) << "the lease token should change at every extension";
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.lease_lost, 0u);
  const Stats st = queue.stats();
  EXPECT_EQ(st.claimed, 1u);
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.expired_total, 0u);
}

// Steals the job from its worker, as a takeover after expiry would: releases
// the worker's current lease (retrying while the heartbeat replaces the
// token) and claims the job with a lease of an hour. Returns the thief's job.
Job steal(Queue& queue, const JobContext& ctx) {
  for (;;) {
    if (queue.release(ctx.lease()) == LeaseStatus::ok) break;
  }
  Job thief;
  if (queue.try_claim(thief, {.lease = 1h}) != ClaimStatus::ok) throw std::runtime_error("steal failed");
  return thief;
}

// Lease lost while the handler runs: the heartbeat's extension fails, the
// handler sees ctx.lease_lost() (and sleep_for returns early), on_lease_lost
// is called once, and the handler's ack is NOT made — the job stays with its
// new owner. Fails if the worker acks or releases a job it no longer holds,
// or never tells the handler.
TEST_F(WorkerTest, LeaseLostDuringTheHandlerIsSeenAndNotAcked) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-lost");
  (void)queue.push("j");
  std::atomic<int> lost_hooks{0};
  Job thief;
  bool saw_lost = false;
  std::vector<JobResult> results;
  WorkerOptions o{.lease = 300ms, .max_jobs = 1};
  o.hooks.on_lease_lost = [&](const Job&) { lost_hooks.fetch_add(1); };
  o.hooks.on_done = [&](const Job&, const JobReport& r) { results.push_back(r.result); };
  Worker worker(
      queue,
      [&](const Job&, JobContext& ctx) {
        thief = steal(queue, ctx);
        // The next extension (within 100 ms) finds the token changed.
        const bool slept = ctx.sleep_for(20s);
        saw_lost = !slept && ctx.lease_lost() && ctx.cancelled();
        return Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_TRUE(saw_lost);
  EXPECT_EQ(lost_hooks.load(), 1);
  EXPECT_EQ(results, std::vector<JobResult>{JobResult::lease_lost});
  EXPECT_EQ(s.lease_lost, 1u);
  EXPECT_EQ(s.acked, 0u);
  Stats st = queue.stats();
  EXPECT_EQ(st.acked, 0u);
  EXPECT_EQ(st.leased, 1u) << "the job must still be the thief's";
  EXPECT_EQ(queue.ack(thief.lease), LeaseStatus::ok) << "the worker must not have touched the thief's lease";
}

// Lease lost between the last extension and the ack: the ack is rejected,
// the result is lease_lost, and on_lease_lost is called (on the handler's
// thread). Fails if a rejected ack is reported as acked.
TEST_F(WorkerTest, LeaseLostAtTheAckIsReported) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-lostack");
  (void)queue.push("j");
  int lost_hooks = 0;
  Job thief;
  WorkerOptions o{.lease = 1h, .max_jobs = 1};
  o.hooks.on_lease_lost = [&](const Job&) { ++lost_hooks; };
  Worker worker(
      queue,
      [&](const Job&, JobContext& ctx) {
        thief = steal(queue, ctx);
        return Outcome::ack();
      },
      o);
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.lease_lost, 1u);
  EXPECT_EQ(s.acked, 0u);
  EXPECT_EQ(lost_hooks, 1);
  EXPECT_EQ(queue.ack(thief.lease), LeaseStatus::ok);
}

// ===========================================================================
// Stopping
// ===========================================================================

// request_stop() while the worker is idle in claim(): run() returns, nothing
// claimed. Fails if the blocked claim is not interrupted.
TEST_F(WorkerTest, RequestStopWhileIdleReturns) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-idle-stop");
  Worker worker(queue, [](const Job&, JobContext&) { return Outcome::ack(); });
  WorkerSummary s;
  std::thread t([&] { s = worker.run(); });
  std::this_thread::sleep_for(50ms);  // usually in claim() by now; either way run() must return
  worker.request_stop();
  t.join();
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.claimed, 0u);
  EXPECT_TRUE(worker.stop_requested());
}

// A stop requested while a job runs: the job finishes within the (default)
// grace and is acked; ctx.stopping() turns true; no other job is claimed.
// Fails if the runtime releases a job that finishes in time, or claims after
// the stop.
TEST_F(WorkerTest, StopDuringAJobLetsItFinishAndClaimsNoMore) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-stop-mid");
  (void)queue.push("first");
  (void)queue.push("second");
  Worker* self = nullptr;
  bool saw_stopping = false;
  int handled = 0;
  Worker worker(queue, [&](const Job&, JobContext& ctx) {
    ++handled;
    self->request_stop();
    saw_stopping = ctx.stopping() && !ctx.sleep_for(10s);  // sleep_for returns at once: stopping
    return Outcome::ack();
  });
  self = &worker;
  const WorkerSummary s = worker.run();
  EXPECT_EQ(handled, 1);
  EXPECT_TRUE(saw_stopping);
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.acked, 1u);
  const Stats st = queue.stats();
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.ready, 1u);
  EXPECT_EQ(st.claimed, 1u);
}

// Grace period ran out (in-process): the heartbeat releases the job with no
// delay (claimable at once by another worker), the handler sees
// ctx.abandoned(), on_abandon is called, the handler's late "ack" is
// discarded, and run() returns. Fails if the job stays leased past the grace
// period, or the discarded result is acked.
TEST_F(WorkerTest, GraceExpiryReleasesTheJobAndDiscardsTheResult) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-grace");
  (void)queue.push("stubborn");
  std::atomic<int> abandon_hooks{0};
  std::optional<Job> other;
  WorkerOptions o{.lease = 1h, .grace = 100ms};
  o.hooks.on_abandon = [&](const Job&) { abandon_hooks.fetch_add(1); };
  Worker* self = nullptr;
  Worker worker(
      queue,
      [&](const Job&, JobContext& ctx) {
        self->request_stop();
        // Ignore the stop; wait to be abandoned, then see another worker get the job.
        test::poll_until([&] { return ctx.abandoned(); }, 20s, 1ms);
        Job job;
        if (queue.try_claim(job, {.lease = 1h}) == ClaimStatus::ok) other = job;
        return Outcome::ack();
      },
      o);
  self = &worker;
  const WorkerSummary s = worker.run();
  EXPECT_EQ(abandon_hooks.load(), 1);
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(s.acked, 0u);
  ASSERT_TRUE(other.has_value()) << "the abandoned job was not claimable at once";
  EXPECT_EQ(other->attempt, 2u);  // the abandoned attempt counts
  const Stats st = queue.stats();
  EXPECT_EQ(st.released, 1u);
  EXPECT_EQ(st.acked, 0u);
  EXPECT_EQ(queue.ack(other->lease), LeaseStatus::ok);
}

// A job abandoned on a stop uses up its attempt: on a queue with
// max_attempts = 1 it is dead-lettered after the grace period. A job that
// hangs its handler is abandoned on every restart; if that did not count, it
// would cycle through restarts for ever instead of ending dead. Fails if the
// heartbeat gives it back with give_back() (which does not count).
TEST_F(WorkerTest, AJobAbandonedOnItsLastAttemptIsDeadLettered) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-last", {.max_attempts = 1});
  (void)queue.push("hangs its handler");
  Worker* self = nullptr;
  Worker worker(queue,
                [&](const Job&, JobContext& ctx) {
                  self->request_stop();
                  test::poll_until([&] { return ctx.abandoned(); }, 20s, 1ms);
                  return Outcome::ack();
                },
                {.lease = 1h, .grace = 50ms});
  self = &worker;
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.abandoned, 1u);
  const Stats st = queue.stats();
  EXPECT_EQ(st.dead, 1u);
  EXPECT_EQ(st.ready, 0u);
}

// stop_now() releases the job in hand at once, even with an unlimited grace.
// Fails if stop_now waits for the handler.
TEST_F(WorkerTest, StopNowReleasesAtOnce) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-stopnow");
  (void)queue.push("j");
  Worker* self = nullptr;
  bool abandoned = false;
  Worker worker(queue,
                [&](const Job&, JobContext& ctx) {
                  self->stop_now();
                  abandoned = test::poll_until([&] { return ctx.abandoned(); }, 20s, 1ms);
                  return Outcome::ack();
                },
                {.lease = 1h, .grace = kForever});
  self = &worker;
  const WorkerSummary s = worker.run();
  EXPECT_TRUE(abandoned);
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(queue.stats().ready, 1u);
}

// What a forked worker reports to the test.
struct ChildReport {
  std::atomic<int> started{0};   // handler entered
  std::atomic<int> finished{0};  // handler returned
  std::atomic<int> stopping_seen{0};
  std::atomic<int> abandoned_seen{0};
  std::atomic<int> acked{-1};  // the summary, when run() returned
  std::atomic<int> abandoned{-1};
  std::atomic<int> claimed{-1};
  std::atomic<int> stopped{-1};
};

// Runs a Worker in a forked child with signal handlers installed. The
// handler reports "started", then (mode "finish") waits for the stop and
// works 200 ms more before acking, or (mode "stubborn") ignores the stop and
// waits until it is abandoned.
pid_t fork_worker(const std::string& name, ChildReport& report, milliseconds grace, bool stubborn) {
  return test::spawn_tied([&report, name, grace, stubborn] {
    Worker::install_signal_handlers();
    Queue queue = Queue::open(name);
    Worker worker(queue,
                  [&](const Job&, JobContext& ctx) {
                    report.started.fetch_add(1);
                    if (!stubborn) {
                      (void)ctx.sleep_for(30s);  // returns when the stop comes
                      if (ctx.stopping()) report.stopping_seen.fetch_add(1);
                      std::this_thread::sleep_for(200ms);  // finishing up, within the grace period
                    } else {
                      const auto until = std::chrono::steady_clock::now() + 30s;
                      while (!ctx.abandoned() && std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(2ms);
                      if (ctx.abandoned()) report.abandoned_seen.fetch_add(1);
                    }
                    report.finished.fetch_add(1);
                    return Outcome::ack();
                  },
                  {.lease = 1h, .grace = grace});
    const WorkerSummary s = worker.run();
    report.acked.store(static_cast<int>(s.acked));
    report.abandoned.store(static_cast<int>(s.abandoned));
    report.claimed.store(static_cast<int>(s.claimed));
    report.stopped.store(s.stopped ? 1 : 0);
    return 0;
  });
}

// A worker process (fork_worker) on queue `name`, sent SIGTERM once its
// handler has started a job; -1 (the child killed) if it never starts one.
pid_t sigterm_mid_job(const std::string& name, ChildReport& report, milliseconds grace, bool stubborn) {
  const pid_t child = fork_worker(name, report, grace, stubborn);
  if (!test::poll_until([&] { return report.started.load() == 1; }, 20s) || ::kill(child, SIGTERM) != 0) {
    test::kill_and_reap(child);
    return -1;
  }
  return child;
}

// SIGTERM to a worker process mid-job, with a grace period long enough: the
// job finishes and is acked, the worker claims nothing more and exits 0. The
// other job stays ready: nothing lost. Fails if the signal kills the job,
// the worker claims after the signal, or the job is released instead.
TEST_F(WorkerTest, SigtermMidJobWithLongGraceFinishesAndAcks) {
  Watchdog wd(90s);
  Queue& queue = make_queue("w-term-long");
  (void)queue.push("one");
  (void)queue.push("two");
  test::SharedObject<ChildReport> report;
  const pid_t child = sigterm_mid_job(queue_name(), *report, 20s, false);
  ASSERT_GT(child, 0) << "the worker did not start the job";
  EXPECT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(report->stopping_seen.load(), 1);
  EXPECT_EQ(report->finished.load(), 1);
  EXPECT_EQ(report->acked.load(), 1);
  EXPECT_EQ(report->claimed.load(), 1);
  EXPECT_EQ(report->abandoned.load(), 0);
  EXPECT_EQ(report->stopped.load(), 1);
  const Stats st = queue.stats();
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.claimed, 1u);
  EXPECT_EQ(st.ready, 1u);
  EXPECT_EQ(st.leased + st.delayed + st.dead + st.released, 0u);
}

// SIGTERM mid-job with a short grace period and a handler that does not
// stop: when the grace runs out the job is released (not left leased for its
// 1 h lease), a second worker claims it and acks it, the first worker's
// result is discarded. Nothing lost, nothing done twice by the queue's
// count. Fails if the job waits for its lease or the late result is acked.
TEST_F(WorkerTest, SigtermMidJobWithShortGraceReleasesForAnotherWorker) {
  Watchdog wd(90s);
  Queue& queue = make_queue("w-term-short");
  (void)queue.push("only");
  test::SharedObject<ChildReport> report;
  const pid_t child = sigterm_mid_job(queue_name(), *report, 300ms, true);
  ASSERT_GT(child, 0) << "the worker did not start the job";
  Job job;
  ASSERT_EQ(queue.claim(job, 20s), ClaimStatus::ok) << "the job was not released after the grace period";
  EXPECT_EQ(job.attempt, 2u);  // the abandoned attempt counts
  EXPECT_EQ(queue.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(report->abandoned_seen.load(), 1);
  EXPECT_EQ(report->abandoned.load(), 1);
  EXPECT_EQ(report->acked.load(), 0);
  const Stats st = queue.stats();
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.released, 1u);
  EXPECT_EQ(st.ready + st.leased + st.delayed + st.dead, 0u);
}

// A second signal releases the job in hand at once, even with an unlimited
// grace period (as `jobring work` does). Fails if the second signal is
// ignored.
TEST_F(WorkerTest, SecondSignalReleasesTheJobAtOnce) {
  Watchdog wd(90s);
  Queue& queue = make_queue("w-term-twice");
  (void)queue.push("only");
  test::SharedObject<ChildReport> report;
  const pid_t child = sigterm_mid_job(queue_name(), *report, kForever, true);
  ASSERT_GT(child, 0) << "the worker did not start the job";
  // The first signal is graceful: the job stays leased while the handler runs.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(queue.stats().leased, 1u);
  ASSERT_EQ(::kill(child, SIGINT), 0);
  Job job;
  ASSERT_EQ(queue.claim(job, 20s), ClaimStatus::ok);
  EXPECT_EQ(queue.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(report->abandoned.load(), 1);
}

// ===========================================================================
// Threads, max_jobs, idle_exit, options
// ===========================================================================

// threads = 2 runs two handlers at once: each waits until both have started.
// One heartbeat extends both leases. Fails if the jobs run one after another.
TEST_F(WorkerTest, ThreadsRunJobsAtOnce) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-threads");
  (void)queue.push("a");
  (void)queue.push("b");
  std::atomic<int> started{0};
  std::mutex mu;
  std::set<unsigned> indexes;
  Worker worker(queue,
                [&](const Job&, JobContext& ctx) {
                  {
                    std::lock_guard lock(mu);
                    indexes.insert(ctx.thread_index());
                  }
                  started.fetch_add(1);
                  const bool both = test::poll_until([&] { return started.load() == 2; }, 10s, 1ms);
                  return both ? Outcome::ack() : Outcome::retry_after(1h);
                },
                {.lease = 300ms, .threads = 2, .max_jobs = 2});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 2u) << "the two handlers never ran at the same time";
  EXPECT_EQ(indexes, (std::set<unsigned>{0, 1}));
  EXPECT_EQ(queue.stats().acked, 2u);
}

// idle_exit: run() returns once no job was in hand for that long, after
// doing the jobs there were. Fails if it returns before the job, or never.
TEST_F(WorkerTest, IdleExitReturnsWhenNoJobCame) {
  Watchdog wd(60s);
  Queue& queue = make_queue("w-idle");
  (void)queue.push("j");
  Worker worker(queue, [](const Job&, JobContext&) { return Outcome::ack(); }, {.idle_exit = 200ms});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 1u);
  EXPECT_FALSE(s.stopped);
}

// Options out of range are refused with invalid_argument naming the problem.
TEST_F(WorkerTest, InvalidOptionsAreRefused) {
  Queue& queue = make_queue("w-opts");
  auto h = [](const Job&, JobContext&) { return Outcome::ack(); };
  const std::vector<WorkerOptions> bad = {
      {.lease = -1ms},
      {.lease = kMaxLease + 1ms},
      {.extend_fraction = 0.0},
      {.extend_fraction = 1.0},
      {.backoff = {.base = 10ms, .cap = 5ms}},
      {.backoff = {.base = -1ms}},
      {.grace = -1ms},
      {.threads = 0},
      {.threads = 5000},
  };
  for (const auto& o : bad) {
    try {
      Worker w(queue, h, o);
      ADD_FAILURE() << "accepted";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), make_error_code(errc::invalid_argument));
      EXPECT_NE(std::string(e.what()).find(queue_name()), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Worker(queue, nullptr), error);
}

// Worker::request_stop() stops that Worker only. Two Workers of one process
// on two queues; stopping A must leave B handling jobs (before, request_stop
// called interrupt_waits() and stopped both).
TEST(WorkerStop, RequestStopStopsOnlyThatWorker) {
  Watchdog dog(120s, "WorkerStop.RequestStopStopsOnlyThatWorker");
  QueueName a("stop-a");
  QueueName b("stop-b");
  Queue qa = Queue::create(a, Options{.capacity = 8, .max_payload = 32});
  Queue qb = Queue::create(b, Options{.capacity = 8, .max_payload = 32});
  std::promise<std::string> handled_by_b;
  auto handled = handled_by_b.get_future();
  Worker wa(qa, [](const Job&, JobContext&) { return Outcome::ack(); });
  Worker wb(qb, [&](const Job& job, JobContext&) {
    handled_by_b.set_value(std::string(job.text()));
    return Outcome::ack();
  });
  auto run_a = std::async(std::launch::async, [&] { return wa.run(); });
  auto run_b = std::async(std::launch::async, [&] { return wb.run(); });
  std::this_thread::sleep_for(100ms);  // both asleep in claim (not needed for the outcome)
  wa.request_stop();
  ASSERT_EQ(run_a.wait_for(20s), std::future_status::ready) << "Worker A did not stop";
  EXPECT_TRUE(run_a.get().stopped);
  EXPECT_FALSE(wb.stop_requested());
  ASSERT_TRUE(qb.push("after A stopped"));
  ASSERT_EQ(handled.wait_for(20s), std::future_status::ready) << "Worker B stopped with A";
  EXPECT_EQ(handled.get(), "after A stopped");
  wb.request_stop();
  ASSERT_EQ(run_b.wait_for(20s), std::future_status::ready) << "Worker B did not stop";
  EXPECT_EQ(run_b.get().acked, 1u);
  EXPECT_EQ(qb.stats().ready + qb.stats().leased, 0u);
}

}  // namespace
}  // namespace jobring
