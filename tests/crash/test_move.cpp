// Queue::move_dead (lib/ring/move.cpp; issue 14 item 6's way out): dead jobs
// move to a dead-letter queue with their notes, and back as ready jobs (a
// redrive); a mover killed at each point of the crash analysis (a forked
// child, SIGKILL from inside the library: testing.hpp) loses no job, and the
// next move doubles none. Each test says what would fail without it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/testing.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;

// A queue whose jobs die on their first failure.
Queue poison_queue(const std::string& name, std::uint32_t capacity, std::uint32_t max_payload = 64) {
  return Queue::create(name, Options{.capacity = capacity, .max_payload = max_payload, .max_attempts = 1});
}

// Pushes `n` jobs "job-0".. and kills each with the error "boom <i>".
void push_and_kill(Queue& q, int n, const std::string& prefix = "job-") {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(q.push(prefix + std::to_string(i)));
  for (int i = 0; i < n; ++i) {
    auto job = q.try_claim();
    ASSERT_TRUE(job);
    ASSERT_EQ(q.release(job->lease, 0ms, "boom " + std::string(job->text())), LeaseStatus::ok);
  }
  ASSERT_EQ(q.stats().dead, static_cast<std::uint64_t>(n));
}

std::string text_of(const JobInfo& j) {
  return {reinterpret_cast<const char*>(j.payload.data()), j.payload.size()};
}

// Payload → how many jobs of `state` in q carry it.
std::map<std::string, int> payloads(const Queue& q, JobState state) {
  std::map<std::string, int> out;
  for (const auto& j : q.peek(state, 100000)) ++out[text_of(j)];
  return out;
}

// The dead jobs leave the full source (pushes answer ok again) and arrive
// dead in the target with payload, attempts, note and age. Fails without the
// move (the source stays full), or if the note or attempts were not carried.
TEST(MoveDead, DeadJobsMoveWithTheirNoteAndTheSourceHasRoomAgain) {
  QueueName src_name("mv-src"), dst_name("mv-dst");
  Queue src = poison_queue(src_name, 4);
  Queue dst = Queue::create(dst_name, Options{.capacity = 16});
  push_and_kill(src, 4);
  EXPECT_EQ(src.push("more").status, PushStatus::full);
  std::this_thread::sleep_for(20ms);

  const MoveResult r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 4u);
  EXPECT_FALSE(r.target_full);
  EXPECT_EQ(src.stats().dead, 0u);
  EXPECT_EQ(src.stats().free, 4u);
  EXPECT_TRUE(src.push("more"));
  const auto dead = dst.peek(JobState::dead);
  ASSERT_EQ(dead.size(), 4u);
  for (const auto& j : dead) {
    EXPECT_EQ(j.error, "boom " + text_of(j));
    EXPECT_EQ(j.attempts, 1u);
    ASSERT_TRUE(j.failed_ms_ago.has_value());
    EXPECT_GE(*j.failed_ms_ago, 20u);
    EXPECT_GE(j.enqueued_ms_ago, 20u);
  }
  EXPECT_EQ(dst.stats().ready, 0u) << "dead jobs must not become claimable by the move";
  EXPECT_FALSE(dst.try_claim());
  EXPECT_EQ(src.stats().moved_out, 4u);
  EXPECT_EQ(dst.stats().moved_in, 4u);
  EXPECT_EQ(dst.stats().pushed, 0u);
}

// The redrive: back from the dead-letter queue as ready jobs, attempts
// reset, and claimed in the source queue. Fails if they arrived dead or
// with their old attempt count (max_attempts 1 would kill them at once).
TEST(MoveDead, RedriveAsReadyJobsThatRunAgain) {
  QueueName src_name("mv-redrive-src"), dlq_name("mv-redrive-dlq");
  Queue src = poison_queue(src_name, 8);
  Queue dlq = Queue::create(dlq_name, Options{.capacity = 8});
  push_and_kill(src, 3);
  ASSERT_EQ(src.move_dead(dlq).moved, 3u);
  const MoveResult back = dlq.move_dead(src, MoveOptions{.as_ready = true});
  EXPECT_EQ(back.moved, 3u);
  EXPECT_EQ(dlq.stats().dead, 0u);
  EXPECT_EQ(src.stats().ready, 3u);
  EXPECT_EQ(src.stats().moved_in, 3u);
  for (int i = 0; i < 3; ++i) {
    auto job = src.try_claim();
    ASSERT_TRUE(job);
    EXPECT_EQ(job->attempt, 1u);
    EXPECT_EQ(src.ack(job->lease), LeaseStatus::ok);
  }
  EXPECT_EQ(src.stats().dead, 0u);
}

// A target with room for two of four: two move, the rest stay dead in the
// source, and target_full says why. A job larger than the target's
// max_payload stays (too_large) and does not stop the others. Fails if a job
// was dropped instead of kept.
TEST(MoveDead, AFullOrSmallTargetKeepsTheRestInTheSource) {
  QueueName src_name("mv-full-src"), dst_name("mv-full-dst"), small_name("mv-small");
  Queue src = poison_queue(src_name, 8);
  Queue dst = Queue::create(dst_name, Options{.capacity = 2});
  push_and_kill(src, 4);
  MoveResult r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 2u);
  EXPECT_TRUE(r.target_full);
  EXPECT_EQ(src.stats().dead, 2u);
  EXPECT_EQ(dst.stats().dead, 2u);

  Queue small = Queue::create(small_name, Options{.capacity = 8, .max_payload = 8});
  ASSERT_TRUE(src.push("a payload longer than eight bytes"));
  auto job = src.try_claim();
  ASSERT_TRUE(job);
  ASSERT_EQ(src.release(job->lease, 0ms, "x"), LeaseStatus::ok);
  r = src.move_dead(small);
  EXPECT_EQ(r.moved, 2u);
  EXPECT_EQ(r.too_large, 1u);
  EXPECT_FALSE(r.target_full);
  EXPECT_EQ(payloads(src, JobState::dead),
            (std::map<std::string, int>{{"a payload longer than eight bytes", 1}}));
}

// A dead job quarantined with a corrupt length (forged here) has no payload
// to move: it stays (left), the others move. And no producer can push a key
// that passes for a move's. Fails if the quarantined job were moved as an
// empty job and removed, or a producer's "#moved/" key accepted.
TEST(MoveDead, AQuarantinedJobStaysAndMoveKeysAreReserved) {
  QueueName src_name("mv-q-src"), dst_name("mv-q-dst");
  Queue src = poison_queue(src_name, 4);
  Queue dst = Queue::create(dst_name, Options{.capacity = 4});
  push_and_kill(src, 2);
  test::SegmentView f(src_name);
  const std::uint32_t slot = f.find(detail::State::dead);
  f.meta(slot).length.store(1u << 30);
  const MoveResult r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 1u);
  EXPECT_EQ(r.left, 1u);
  EXPECT_EQ(src.stats().dead, 1u);
  EXPECT_EQ(dst.stats().dead, 1u);
  std::error_code ec;
  (void)dst.push(std::as_bytes(std::span<const char>("x", 1)), PushOptions{.key = "#moved/0/1.2"}, ec);
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
}

// limit, and a move into the queue itself (another handle of it too) is
// refused. Fails if the self-move were allowed (it would double every job).
TEST(MoveDead, LimitAndSelfMove) {
  QueueName src_name("mv-limit-src"), dst_name("mv-limit-dst");
  Queue src = poison_queue(src_name, 8);
  Queue dst = Queue::create(dst_name, Options{.capacity = 8});
  push_and_kill(src, 5);
  EXPECT_EQ(src.move_dead(dst, MoveOptions{.limit = 2}).moved, 2u);
  EXPECT_EQ(src.stats().dead, 3u);
  Queue again = Queue::open(src_name);
  EXPECT_THROW((void)src.move_dead(again), jobring::error);
  std::error_code ec;
  (void)src.move_dead(src, {}, ec);
  EXPECT_EQ(ec, make_error_code(errc::invalid_argument));
  EXPECT_EQ(src.stats().dead, 3u);
}

// Every one of the `n` jobs that push_and_kill made arrived dead in `dst`
// exactly once, and none is left in `src`.
void expect_each_arrived_once(const Queue& src, const Queue& dst, int n) {
  const auto arrived = payloads(dst, JobState::dead);
  EXPECT_EQ(arrived.size(), static_cast<std::size_t>(n));
  for (const auto& [payload, count] : arrived) EXPECT_EQ(count, 1) << payload;
  EXPECT_EQ(src.stats().dead, 0u);
}

// A mover that raises SIGKILL on itself at crash point `point`
// (testing.hpp) while moving every dead job of src (as_ready or not);
// returns its wait status.
int killed_mover(const std::string& src_name, const std::string& dst_name, int point, bool as_ready) {
  const pid_t kid = test::fork_child([&] {
    Queue s = Queue::open(src_name);
    Queue d = Queue::open(dst_name);
    detail::set_move_kill_point_for_testing(point, SIGKILL);
    (void)s.move_dead(d, MoveOptions{.as_ready = as_ready});
    return 0;
  });
  return test::wait_child(kid);
}

// A mover killed at crash point `point`, after the first job's commit in
// the target: the job is in both queues. The next move finds the job's key
// in the target and only removes it from the source; every job arrives
// once, dead or (as_ready) ready.
void expect_next_move_doubles_nothing(int point) {
  for (const bool as_ready : {false, true}) {
    SCOPED_TRACE(as_ready ? "as ready" : "as dead");
    QueueName src_name("mvc-src"), dst_name("mvc-dst");
    Queue src = poison_queue(src_name, 8);
    Queue dst = Queue::create(dst_name, Options{.capacity = 8});
    push_and_kill(src, 3);
    EXPECT_EQ(killed_mover(src_name, dst_name, point, as_ready), 128 + SIGKILL);
    const JobState arrived = as_ready ? JobState::ready : JobState::dead;
    EXPECT_EQ(src.stats().dead, 3u) << "nothing was removed from the source yet";
    EXPECT_EQ(payloads(dst, arrived).size(), 1u) << "the first job was committed in the target";
    const MoveResult r = src.move_dead(dst, MoveOptions{.as_ready = as_ready});
    EXPECT_EQ(r.moved, 3u);
    EXPECT_EQ(src.stats().dead, 0u);
    EXPECT_EQ(payloads(dst, arrived), (std::map<std::string, int>{{"job-0", 1}, {"job-1", 1}, {"job-2", 1}}));
  }
}

// Crash point 2: killed after the commit and K3, before the source's T11.
// Fails without the move's key (the job would arrive twice), or if the
// killed move had lost the job.
TEST(MoveCrash, KilledAfterTheCommitTheNextMoveDoublesNothing) {
  test::Watchdog dog(120s);
  expect_next_move_doubles_nothing(2);
}

// Crash point 3: killed after the commit in the target but before K3 (its
// key entry still CLAIMED by the dead mover). The next move's insert proves
// the mover dead, K7 finds the job committed (DEAD counts as committed) and
// keeps the key. Fails if K7 dropped the key of a committed DEAD job (the
// job would arrive twice).
TEST(MoveCrash, KilledBetweenTheCommitAndK3TheNextMoveDoublesNothing) {
  test::Watchdog dog(120s);
  expect_next_move_doubles_nothing(3);
}

// A rival mover stalled (SIGSTOP) with a job's key claimed in the target:
// the move leaves that job (MoveResult::left) and moves the others, instead
// of stopping at it as if the target were full; once the rival is dead, the
// next move takes the last job. Fails if a stalled mover blocked the move.
TEST(MoveCrash, AStalledRivalMoverHoldsUpOnlyItsOwnJob) {
  test::Watchdog dog(120s);
  QueueName src_name("mvs-src"), dst_name("mvs-dst");
  Queue src = poison_queue(src_name, 8);
  Queue dst = Queue::create(dst_name, Options{.capacity = 8});
  push_and_kill(src, 3);
  const pid_t rival = test::fork_child([&] {
    Queue s = Queue::open(src_name);
    Queue d = Queue::open(dst_name);
    detail::set_move_kill_point_for_testing(1, SIGSTOP);
    (void)s.move_dead(d);
    return 0;
  });
  ASSERT_TRUE(test::poll_until([&] { return dst.stats().writing == 1; }, 30s));
  MoveResult r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 2u);
  EXPECT_EQ(r.left, 1u);
  EXPECT_FALSE(r.target_full);
  test::kill_and_reap(rival);
  r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 1u);
  (void)dst.sweep();
  EXPECT_EQ(payloads(dst, JobState::dead),
            (std::map<std::string, int>{{"job-0", 1}, {"job-1", 1}, {"job-2", 1}}));
  EXPECT_EQ(src.stats().dead, 0u);
}

// Crash point 1: killed with the target slot written and the key claimed,
// before the commit. The job is only in the source; the next move takes it
// (the dead mover's key entry is resolved, its slot freed by a sweep).
// Fails if the dead mover's claimed key made the job a "duplicate" (it would
// be removed from the source and lost).
TEST(MoveCrash, KilledBeforeTheCommitTheJobIsStillInTheSource) {
  test::Watchdog dog(120s);
  QueueName src_name("mvw-src"), dst_name("mvw-dst");
  Queue src = poison_queue(src_name, 8);
  Queue dst = Queue::create(dst_name, Options{.capacity = 8});
  push_and_kill(src, 2);
  EXPECT_EQ(killed_mover(src_name, dst_name, 1, false), 128 + SIGKILL);
  EXPECT_EQ(src.stats().dead, 2u);
  EXPECT_EQ(dst.stats().writing, 1u);
  EXPECT_EQ(dst.stats().dead, 0u);
  const MoveResult r = src.move_dead(dst);
  EXPECT_EQ(r.moved, 2u);
  (void)dst.sweep();
  EXPECT_EQ(dst.stats().writing, 0u);
  EXPECT_EQ(payloads(dst, JobState::dead), (std::map<std::string, int>{{"job-0", 1}, {"job-1", 1}}));
  EXPECT_EQ(src.stats().dead, 0u);
}

// Two movers racing over the same dead jobs (threads, each with its own
// handles): every job arrives exactly once and the two `moved` add up.
// Fails if both could push a job (no key) or both counted it.
TEST(MoveDead, RacingMoversMoveEachJobOnce) {
  test::Watchdog dog(120s);
  QueueName src_name("mvr-src"), dst_name("mvr-dst");
  constexpr int kJobs = 200;
  Queue src = poison_queue(src_name, kJobs);
  Queue dst = Queue::create(dst_name, Options{.capacity = kJobs});
  push_and_kill(src, kJobs);
  std::size_t moved[2] = {0, 0};
  std::vector<std::thread> movers;
  for (int t = 0; t < 2; ++t)
    movers.emplace_back([&, t] {
      Queue s = Queue::open(src_name);
      Queue d = Queue::open(dst_name);
      moved[t] = s.move_dead(d).moved;
    });
  for (auto& m : movers) m.join();
  EXPECT_EQ(moved[0] + moved[1], static_cast<std::size_t>(kJobs));
  expect_each_arrived_once(src, dst, kJobs);
}

// Movers SIGKILLed at random moments, again and again, until every job has
// moved: none lost, none doubled. Fails without either half of the crash
// analysis.
TEST(MoveCrash, RandomKillsLoseAndDoubleNothing) {
  test::Watchdog dog(240s);
  QueueName src_name("mvk-src"), dst_name("mvk-dst");
  constexpr int kJobs = 300;
  Queue src = poison_queue(src_name, kJobs);
  Queue dst = Queue::create(dst_name, Options{.capacity = kJobs});
  push_and_kill(src, kJobs);
  unsigned seed = 7;
  for (int round = 0; round < 200 && src.stats().dead > 0; ++round) {
    const pid_t kid = test::fork_child([&] {
      Queue s = Queue::open(src_name);
      Queue d = Queue::open(dst_name);
      (void)s.move_dead(d, MoveOptions{.limit = 5});
      ::pause();
      return 0;
    });
    seed = seed * 1103515245u + 12345u;
    std::this_thread::sleep_for(std::chrono::microseconds(seed % 2000));
    test::kill_and_reap(kid);
  }
  (void)src.move_dead(dst);
  (void)dst.sweep();
  expect_each_arrived_once(src, dst, kJobs);
}

}  // namespace
}  // namespace jobring
