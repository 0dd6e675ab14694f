// Tally blocks across processes (lib/ring/layout.hpp, "Tallies"): the
// counts of a process that is SIGKILLed survive it, its block is adopted by
// a later process (the totals keep rising, never drop), a forked child
// never writes its parent's block, and processes counting at once give
// exact stats.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/tally_support.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::block_of;
using test::cycle;
using test::expect_totals;
using test::QueueName;
using test::SegmentView;
using test::this_tid;
using test::Watchdog;

// A child counts in a block of its own, reports, and is SIGKILLed while it
// holds it: its counts stay in the stats. The block is then adopted by the
// next thread that needs one and finds none free (the live-looking owners
// of every other block are the test's), counts kept: the totals go on
// rising from where the child left them.
TEST(TallyCrash, AKilledProcessesCountsSurviveAndItsBlockIsAdopted) {
  Watchdog dog(120s, "TallyCrash.AKilledProcessesCountsSurviveAndItsBlockIsAdopted");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  test::Pipe report, hold;
  const pid_t child = test::spawn_tied([&] {
    Queue mine = Queue::open(name);
    if (!cycle(mine, 7)) return 10;
    (void)test::write_all(report.write_fd(), "counted\n", 8);
    char c;
    while (::read(hold.read_fd(), &c, 1) != 0) {
    }
    return 0;
  });
  report.close_write();
  hold.close_read();
  ASSERT_TRUE(test::read_line(report.read_fd(), 60s).has_value());
  SegmentView v(name);
  const std::uint32_t b = block_of(v, static_cast<std::uint64_t>(child));
  ASSERT_LT(b, detail::kTallyBlocks);
  EXPECT_EQ(v.tally(b).counts[detail::kTallyPushed].load(), 7u);
  test::kill_and_reap(child);
  expect_totals(q.stats(), 7);
  // Every other block held by someone who looks alive.
  constexpr std::uint64_t kLive = 0x0beef0beef1ull;
  v.hold_token(kLive);
  test::forge_live_owners(v, kLive, b);
  ASSERT_TRUE(cycle(q, 3));
  EXPECT_EQ(block_of(v, this_tid()), b) << "the dead child's block was not adopted";
  EXPECT_EQ(v.tally(b).counts[detail::kTallyPushed].load(), 10u);
  expect_totals(q.stats(), 10);
  EXPECT_EQ(v.header().totals[detail::kPushed].load(), 0u);
  v.release_token(kLive);
}

// A child forked from a thread that holds a block takes a block of its own
// (its token and thread id are new): the parent's block counts only the
// parent's jobs.
TEST(TallyCrash, AForkedChildNeverWritesItsParentsBlock) {
  Watchdog dog(120s, "TallyCrash.AForkedChildNeverWritesItsParentsBlock");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  ASSERT_TRUE(cycle(q, 2));
  SegmentView v(name);
  const std::uint32_t mine = block_of(v, this_tid());
  ASSERT_LT(mine, detail::kTallyBlocks);
  const pid_t child = test::spawn_tied([&] { return cycle(q, 5) ? 0 : 10; });
  ASSERT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(v.tally(mine).counts[detail::kTallyPushed].load(), 2u);
  const std::uint32_t theirs = block_of(v, static_cast<std::uint64_t>(child));
  ASSERT_LT(theirs, detail::kTallyBlocks);
  EXPECT_NE(theirs, mine);
  EXPECT_EQ(v.tally(theirs).counts[detail::kTallyPushed].load(), 5u);
  ASSERT_TRUE(cycle(q, 1));
  expect_totals(q.stats(), 8);
}

// Processes counting at once, each in its own block: exact stats.
TEST(TallyCrash, ProcessesCountingAtOnceGiveExactStats) {
  Watchdog dog(240s, "TallyCrash.ProcessesCountingAtOnceGiveExactStats");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 64, .max_payload = 16});
  constexpr int kProcesses = 4;
  const std::uint32_t per = test::kAddressSanitizer || test::kThreadSanitizer ? 500 : 3000;
  test::ForkBarrier start;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p)
    children.push_back(test::spawn_tied([&] {
      start.wait();
      Queue mine = Queue::open(name);
      return cycle(mine, per) ? 0 : 10;
    }));
  start.release();
  for (pid_t c : children) EXPECT_EQ(test::wait_child(c), 0);
  expect_totals(q.stats(), std::uint64_t{kProcesses} * per);
}

// Processes SIGKILLed at random moments while they push, claim and ack in
// a loop: a kill between a transition (T3, T4, T6) and its tally store
// loses that one count, never more and never a job, and the totals never
// go down (a victim's block keeps its counts). After k kills and a sweep
// (which frees a slot a victim left WRITING): with c = ids taken - writes
// recovered, the jobs committed are c .. c + k (a victim killed between
// its T1 and taking an id left a WRITING slot that took no id), so
// c - k <= pushed <= c + k; and the jobs acked are the committed ones not
// still in the queue (READY, or LEASED by a victim that died before its
// owner record: the lease runs out by its deadline).
TEST(TallyCrash, RandomKillsLoseAtMostOneCountEach) {
  Watchdog dog(240s, "TallyCrash.RandomKillsLoseAtMostOneCountEach");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 64, .max_payload = 16});
  constexpr int kKills = 12;
  Stats last{};
  std::uint32_t seed = static_cast<std::uint32_t>(::getpid());
  for (int k = 0; k < kKills; ++k) {
    test::Pipe report;
    const pid_t child = test::spawn_tied([&] {
      Queue mine = Queue::open(name);
      (void)test::write_all(report.write_fd(), "go\n", 3);
      for (;;) {
        if (!mine.push("j")) return 10;
        Job job;
        if (mine.try_claim(job) == ClaimStatus::ok) (void)mine.ack(job.lease);
      }
    });
    report.close_write();
    ASSERT_TRUE(test::read_line(report.read_fd(), 60s).has_value());
    seed = seed * 1103515245u + 12345u;
    std::this_thread::sleep_for(std::chrono::microseconds(100 + (seed >> 8) % 3000));
    test::kill_and_reap(child);
    const Stats now = q.stats();
    EXPECT_GE(now.pushed, last.pushed) << "kill " << k;
    EXPECT_GE(now.claimed, last.claimed) << "kill " << k;
    EXPECT_GE(now.acked, last.acked) << "kill " << k;
    last = now;
  }
  (void)q.sweep();
  const Stats s = q.stats();
  SegmentView v(name);
  const std::uint64_t c = v.header().next_job_id.load() - 1 - s.recovered_writes;
  const std::uint64_t queued = s.ready + s.delayed + s.leased + s.expired + s.dead;
  EXPECT_EQ(s.writing, 0u);
  EXPECT_LE(s.leased + s.expired, std::uint64_t{kKills});
  ASSERT_GT(c, queued + kKills);
  EXPECT_LE(s.pushed, c + kKills);
  EXPECT_GE(s.pushed + kKills, c);
  EXPECT_LE(s.acked, c - queued + kKills);
  EXPECT_GE(s.acked + kKills, c - queued);
  EXPECT_LE(s.acked, s.pushed + kKills);
}

}  // namespace
}  // namespace jobring
