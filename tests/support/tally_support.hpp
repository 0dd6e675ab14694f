// Helpers of the tally-block tests (tests/stress/test_stress_tally.cpp,
// tests/crash/test_tally_crash.cpp): who holds which block, and a job
// cycle that counts one push, claim and ack per job.
#pragma once

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring::test {

inline std::uint64_t this_tid() { return static_cast<std::uint64_t>(::syscall(SYS_gettid)); }

// The block whose owner names thread (or, for a single-threaded child,
// process) `tid`, or kTallyBlocks if none.
inline std::uint32_t block_of(const SegmentView& v, std::uint64_t tid) {
  for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b) {
    const std::uint64_t w = v.tally(b).owner.load();
    if (w != 0 && detail::tally_tid(w) == tid) return b;
  }
  return detail::kTallyBlocks;
}

inline std::uint32_t owned_blocks(const SegmentView& v) {
  std::uint32_t n = 0;
  for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b) n += v.tally(b).owner.load() != 0 ? 1 : 0;
  return n;
}

// Pushes n jobs and claims and acks n, one at a time, in rounds of at most
// 8 pushes then as many claims (threads or processes doing this at once
// never fill a ring of 8 slots each); false on any failure.
inline bool cycle(Queue& q, std::uint32_t n) {
  using namespace std::chrono_literals;
  for (std::uint32_t done = 0; done < n;) {
    const std::uint32_t round = std::min(8u, n - done);
    for (std::uint32_t i = 0; i < round; ++i)
      if (!q.push("j", with_wait(10s))) return false;
    for (std::uint32_t i = 0; i < round; ++i) {
      Job job;
      if (q.claim(job, 10s) != ClaimStatus::ok || q.ack(job.lease) != LeaseStatus::ok) return false;
    }
    done += round;
  }
  return true;
}

inline void expect_totals(const Stats& s, std::uint64_t n) {
  EXPECT_EQ(s.pushed, n);
  EXPECT_EQ(s.claimed, n);
  EXPECT_EQ(s.acked, n);
}

// Every block but `except` (kTallyBlocks: none) owned by a live-looking
// holder of token `live` (the caller holds it: SegmentView::hold_token),
// thread id 1 + the block's index.
inline void forge_live_owners(SegmentView& v, std::uint64_t live,
                              std::uint32_t except = detail::kTallyBlocks) {
  for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b)
    if (b != except) v.tally(b).owner.store(detail::make_tally_owner(live, 1 + b, 0));
}

}  // namespace jobring::test
