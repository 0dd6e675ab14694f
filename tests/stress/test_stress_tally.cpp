// Tally blocks (lib/ring/layout.hpp, "Tallies"; lib/ring/tally.cpp): each
// thread counts its pushes, claims and acks in a block of its own, and
// stats() adds the blocks to the shared totals. Label "concurrency" (the
// TSan stage runs these).
//
// What each test would catch:
//   - ExactAcrossThreads: a count lost or doubled between blocks and the
//     shared totals, or two threads given one block (their plain
//     load-and-store counts would lose increments under load).
//   - MoreThreadsThanBlocks: the fallback to the shared totals miscounting,
//     or a thread without a block taking one still held by a live thread.
//   - AnExitedThreadsBlockIsAdopted: a dead thread's block never reused, or
//     its counts dropped on adoption.
//   - AHandleReopenedByTheSameThreadKeepsItsBlock: a reopened handle taking
//     a new block each time (a program that opens a handle per request would
//     use the blocks up).
//   - OneThreadOnMoreHandlesThanItsCacheHoldsKeepsOneBlockEach: a handle
//     whose cache entry was evicted taking a second block.
//   - TwoHandlesOnOneThreadTakeTwoBlocksAndAViewSumsThem: two handles of one
//     thread sharing a block, or a read-only view missing the blocks.
//   - LiveLookingForgedOwnersDoNotBreakCounting: a forged owner word (a
//     live token) adopted, or making counts go missing.
//   - ADeadForgedOwnersBlockIsAdoptedWithItsCounts: adoption resetting the
//     counters (stats going down).
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
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
using test::owned_blocks;
using test::QueueName;
using test::SegmentView;
using test::this_tid;
using test::Watchdog;

std::uint32_t scaled(std::uint32_t normal) {
  return (test::kThreadSanitizer || test::kAddressSanitizer) ? std::max(1u, normal / 4) : normal;
}

// Producers and workers on their own threads, some through a shared handle
// and some through handles of their own, batches too: stats exact.
TEST(Tally, ExactAcrossThreads) {
  Watchdog dog(240s, "Tally.ExactAcrossThreads");
  QueueName name("tally");
  Queue shared = Queue::create(name, Options{.capacity = 64, .max_payload = 16});
  constexpr std::uint32_t kProducers = 4;
  constexpr std::uint32_t kWorkers = 4;
  const std::uint32_t per = scaled(5000);
  const std::uint64_t total = std::uint64_t{kProducers} * per;
  std::atomic<std::uint64_t> done{0};
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < kProducers; ++p)
    threads.emplace_back([&, p] {
      std::optional<Queue> own;
      if (p % 2 == 1) own.emplace(Queue::open(name));
      Queue& q = own ? *own : shared;
      std::uint32_t i = 0;
      while (i < per) {
        if (p == 3 && per - i >= 4) {
          const std::string_view texts[4] = {"a", "b", "c", "d"};
          std::span<const std::byte> payloads[4];
          for (int k = 0; k < 4; ++k) payloads[k] = std::as_bytes(std::span(texts[k].data(), 1));
          i += static_cast<std::uint32_t>(q.push_many(payloads, {}, test::with_wait(10s)));
        } else {
          ASSERT_TRUE(q.push("x", test::with_wait(10s)));
          ++i;
        }
      }
    });
  for (std::uint32_t w = 0; w < kWorkers; ++w)
    threads.emplace_back([&, w] {
      std::optional<Queue> own;
      if (w % 2 == 0) own.emplace(Queue::open(name));
      Queue& q = own ? *own : shared;
      std::vector<Job> jobs(w == 1 ? 8 : 1);
      while (done.load() < total) {
        const std::size_t n = q.claim_many(jobs, 20ms);
        for (std::size_t k = 0; k < n; ++k) ASSERT_EQ(q.ack(jobs[k].lease), LeaseStatus::ok);
        done.fetch_add(n);
      }
    });
  for (auto& t : threads) t.join();
  expect_totals(shared.stats(), total);
  // Every count went to a block (none ran out), none to the shared totals.
  // (How many blocks: up to one per thread; fewer when a thread that
  // started late adopted the block of one of the shared handle's threads
  // that had already exited.)
  SegmentView v(name);
  EXPECT_EQ(v.header().totals[detail::kPushed].load(), 0u);
  EXPECT_EQ(v.header().totals[detail::kClaimed].load(), 0u);
  EXPECT_EQ(v.header().totals[detail::kAcked].load(), 0u);
  EXPECT_GE(owned_blocks(v), 1u);
  EXPECT_LE(owned_blocks(v), kProducers + kWorkers);
}

// 80 threads alive at once, each counting through its own handle: 64 get a
// block, the rest count in the shared totals; stats exact.
TEST(Tally, MoreThreadsThanBlocks) {
  Watchdog dog(240s, "Tally.MoreThreadsThanBlocks");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 1024, .max_payload = 16});
  constexpr std::uint32_t kThreads = detail::kTallyBlocks + 16;
  const std::uint32_t per = scaled(40);
  std::barrier all_counted(kThreads + 1);
  std::barrier may_exit(kThreads + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      EXPECT_TRUE(cycle(q, 1));  // every thread holds its block (or has none) before any exits
      all_counted.arrive_and_wait();
      EXPECT_TRUE(cycle(q, per));
      may_exit.arrive_and_wait();
    });
  all_counted.arrive_and_wait();
  SegmentView v(name);
  EXPECT_EQ(owned_blocks(v), detail::kTallyBlocks);
  may_exit.arrive_and_wait();
  for (auto& t : threads) t.join();
  expect_totals(q.stats(), std::uint64_t{kThreads} * (per + 1));
  // The 16 without a block counted in the shared totals.
  EXPECT_GE(v.header().totals[detail::kPushed].load(), 16u * (per + 1));
}

// A thread that exited leaves its block; the next thread of the process
// that needs one adopts it (before taking a free one), counts and all.
TEST(Tally, AnExitedThreadsBlockIsAdopted) {
  Watchdog dog(120s, "Tally.AnExitedThreadsBlockIsAdopted");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  SegmentView v(name);
  std::uint64_t first_tid = 0;
  std::thread([&] {
    first_tid = this_tid();
    EXPECT_TRUE(cycle(q, 5));
  }).join();
  const std::uint32_t b = block_of(v, first_tid);
  ASSERT_LT(b, detail::kTallyBlocks);
  EXPECT_EQ(v.tally(b).counts[detail::kTallyPushed].load(), 5u);
  std::uint64_t second_tid = 0;
  std::thread([&] {
    second_tid = this_tid();
    EXPECT_TRUE(cycle(q, 3));
  }).join();
  ASSERT_NE(second_tid, first_tid) << "the kernel reused the thread id at once; rerun";
  EXPECT_EQ(block_of(v, second_tid), b) << "the exited thread's block was not adopted";
  EXPECT_EQ(v.tally(b).counts[detail::kTallyPushed].load(), 8u);
  EXPECT_EQ(owned_blocks(v), 1u);
  expect_totals(q.stats(), 8);
}

// A handle closed and opened again by the same thread: the new handle has a
// new liveness token, the old one is gone, and the thread takes its old
// block back rather than a free one.
TEST(Tally, AHandleReopenedByTheSameThreadKeepsItsBlock) {
  Watchdog dog(120s, "Tally.AHandleReopenedByTheSameThreadKeepsItsBlock");
  QueueName name("tally");
  std::optional<Queue> keep(Queue::create(name, Options{.capacity = 16, .max_payload = 16}));
  SegmentView v(name);
  std::uint32_t b = detail::kTallyBlocks;
  for (int round = 0; round < 20; ++round) {
    {
      Queue q = Queue::open(name);
      EXPECT_TRUE(cycle(q, 2));
    }
    if (round == 0) b = block_of(v, this_tid());
    ASSERT_LT(b, detail::kTallyBlocks);
    EXPECT_EQ(block_of(v, this_tid()), b) << "round " << round;
  }
  EXPECT_EQ(owned_blocks(v), 1u);
  expect_totals(keep->stats(), 40);
}

// One thread counting on more handles in turn than its cache holds (20 >
// TallyCache::kEntries = 16): each handle (its own liveness token) has one
// block, found again after its entry was evicted rather than a second one
// taken, and the totals are exact.
TEST(Tally, OneThreadOnMoreHandlesThanItsCacheHoldsKeepsOneBlockEach) {
  Watchdog dog(120s, "Tally.OneThreadOnMoreHandlesThanItsCacheHoldsKeepsOneBlockEach");
  QueueName name("tally");
  Queue keep = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  SegmentView v(name);
  constexpr int kHandles = 20;
  std::vector<Queue> handles;
  for (int h = 0; h < kHandles; ++h) handles.push_back(Queue::open(name));
  for (int round = 0; round < 5; ++round)
    for (auto& q : handles) EXPECT_TRUE(cycle(q, 1));
  EXPECT_EQ(owned_blocks(v), static_cast<std::uint32_t>(kHandles));
  std::uint32_t mine = 0;
  for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b) {
    const std::uint64_t w = v.tally(b).owner.load();
    mine += w != 0 && detail::tally_tid(w) == this_tid() ? 1 : 0;
  }
  EXPECT_EQ(mine, static_cast<std::uint32_t>(kHandles));
  expect_totals(keep.stats(), 5 * kHandles);
}

// One thread on two handles of one queue: two liveness tokens, so two
// blocks, each counting only its own handle's work; a read-only QueueView
// (what `jobring stat` and the janitor's metrics read through) sums the
// blocks like the writer's stats().
TEST(Tally, TwoHandlesOnOneThreadTakeTwoBlocksAndAViewSumsThem) {
  Watchdog dog(120s, "Tally.TwoHandlesOnOneThreadTakeTwoBlocksAndAViewSumsThem");
  QueueName name("tally");
  Queue a = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  Queue b = Queue::open(name);
  SegmentView v(name);
  EXPECT_TRUE(cycle(a, 3));
  EXPECT_TRUE(cycle(b, 5));
  EXPECT_EQ(owned_blocks(v), 2u);
  std::uint64_t per_block[2] = {0, 0};
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < detail::kTallyBlocks && n < 2; ++i)
    if (v.tally(i).owner.load() != 0) per_block[n++] = v.tally(i).counts[detail::kTallyPushed].load();
  EXPECT_EQ(std::min(per_block[0], per_block[1]), 3u);
  EXPECT_EQ(std::max(per_block[0], per_block[1]), 5u);
  expect_totals(a.stats(), 8);
  expect_totals(QueueView::open(name).stats(), 8);
}

// Every block but two forged with an owner that looks alive (a token whose
// liveness lock the test holds) and garbage counts: never adopted, the
// threads share the two free blocks' worth and the shared totals, and
// stats move by exactly what was done.
TEST(Tally, LiveLookingForgedOwnersDoNotBreakCounting) {
  Watchdog dog(240s, "Tally.LiveLookingForgedOwnersDoNotBreakCounting");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 64, .max_payload = 16});
  SegmentView v(name);
  constexpr std::uint64_t kLive = 0x0beef0beef1ull;
  v.hold_token(kLive);
  for (std::uint32_t b = 2; b < detail::kTallyBlocks; ++b) {
    v.tally(b).owner.store(detail::make_tally_owner(kLive, 1 + b, 0));
    for (unsigned k = 0; k < detail::kTallyCount; ++k) v.tally(b).counts[k].store(1000u * b + k);
  }
  const Stats before = q.stats();
  constexpr std::uint32_t kThreads = 6;
  const std::uint32_t per = scaled(2000);
  std::vector<std::thread> threads;
  for (std::uint32_t t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      Queue own = Queue::open(name);
      EXPECT_TRUE(cycle(own, per));
    });
  for (auto& t : threads) t.join();
  const Stats after = q.stats();
  EXPECT_EQ(after.pushed - before.pushed, std::uint64_t{kThreads} * per);
  EXPECT_EQ(after.claimed - before.claimed, std::uint64_t{kThreads} * per);
  EXPECT_EQ(after.acked - before.acked, std::uint64_t{kThreads} * per);
  for (std::uint32_t b = 2; b < detail::kTallyBlocks; ++b) {
    EXPECT_EQ(v.tally(b).owner.load(), detail::make_tally_owner(kLive, 1 + b, 0)) << "block " << b;
    EXPECT_EQ(v.tally(b).counts[detail::kTallyPushed].load(), 1000u * b) << "block " << b;
  }
  v.release_token(kLive);
}

// A block forged with an owner that is proven dead (nobody holds its token)
// and counts: adopted when no block is free, counts kept.
TEST(Tally, ADeadForgedOwnersBlockIsAdoptedWithItsCounts) {
  Watchdog dog(120s, "Tally.ADeadForgedOwnersBlockIsAdoptedWithItsCounts");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  SegmentView v(name);
  constexpr std::uint64_t kLive = 0x0beef0beef1ull;
  v.hold_token(kLive);
  for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b)
    v.tally(b).owner.store(detail::make_tally_owner(b == 7 ? test::kDeadToken : kLive, 1 + b, 0));
  v.tally(7).counts[detail::kTallyPushed].store(100);
  v.tally(7).counts[detail::kTallyClaimed].store(100);
  v.tally(7).counts[detail::kTallyAcked].store(100);
  expect_totals(q.stats(), 100);
  EXPECT_TRUE(cycle(q, 4));
  EXPECT_EQ(block_of(v, this_tid()), 7u);
  EXPECT_EQ(v.tally(7).counts[detail::kTallyPushed].load(), 104u);
  expect_totals(q.stats(), 104);
  EXPECT_EQ(v.header().totals[detail::kPushed].load(), 0u);
  v.release_token(kLive);
}

// Every block held by a live-looking owner: the thread counts in the
// shared totals, exactly.
TEST(Tally, NoBlockToBeHadCountsInTheSharedTotals) {
  Watchdog dog(120s, "Tally.NoBlockToBeHadCountsInTheSharedTotals");
  QueueName name("tally");
  Queue q = Queue::create(name, Options{.capacity = 16, .max_payload = 16});
  SegmentView v(name);
  constexpr std::uint64_t kLive = 0x0beef0beef1ull;
  v.hold_token(kLive);
  test::forge_live_owners(v, kLive);
  EXPECT_TRUE(cycle(q, 10));
  expect_totals(q.stats(), 10);
  EXPECT_EQ(v.header().totals[detail::kPushed].load(), 10u);
  EXPECT_EQ(v.header().totals[detail::kClaimed].load(), 10u);
  EXPECT_EQ(v.header().totals[detail::kAcked].load(), 10u);
  v.release_token(kLive);
}

}  // namespace
}  // namespace jobring
