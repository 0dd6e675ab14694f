// Deterministic reproduction of the FIFO inversion seen once by
// StressThreadsFifo.OneProducerOneConsumerIsStrictlyFifo under TSan (capacity
// 256, claim order 1065@41 1066@42 1067@43 1072@44 [1068@45]).
//
// One thread, no timing. The race needs the worker to act between two loads
// of the producer's scan (push_pass): the producer loads the slot at its
// cursor (still holding the previous lap's job), then — before it loads the
// next slot — the worker claims and acks that job and the next one, in order.
// The producer then finds the next slot FREE and fills it, skipping the older
// position, which the following push refills: two jobs in ring order opposite
// to push order, with one producer, one worker, in-order acks and no retries.
//
// The test puts the worker's moves at exactly that point: the next slot's
// state word is the first word of a memory page, which the test protects in
// the producer's mapping; the producer's load of it faults, and the SIGSEGV
// handler (unprotect, then claim + ack twice through the worker's own mapping)
// runs between the two loads. The load is then retried and sees FREE.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::Watchdog;

PushResult push_seq(Queue& q, std::uint64_t seq) { return q.push(std::as_bytes(std::span(&seq, 1))); }

std::uint64_t seq_of(const Job& job) {
  std::uint64_t seq = ~std::uint64_t{0};
  if (job.payload().size() == sizeof seq) std::memcpy(&seq, job.payload().data(), sizeof seq);
  return seq;
}

// The start of the one mapping of /dev/shm/jobring.<name> in this process.
std::byte* mapping_of(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  const std::string file = "/dev/shm/jobring." + name;
  std::byte* found = nullptr;
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.size() < file.size() || line.compare(line.size() - file.size(), file.size(), file) != 0)
      continue;
    found = reinterpret_cast<std::byte*>(std::strtoull(line.c_str(), nullptr, 16));
    ++count;
  }
  return count == 1 ? found : nullptr;
}

// What the SIGSEGV handler does and saw. Plain globals: a signal handler
// cannot take arguments. The handler allocates nothing (the Job's buffer is
// sized by earlier claims) and takes no lock.
struct Interleave {
  std::byte* page = nullptr;  // the protected page while armed, else nullptr
  std::size_t page_size = 0;
  Queue* worker = nullptr;
  Job* job = nullptr;
  int faults = 0;
  int acks = 0;
  std::uint64_t claimed[2] = {};
  std::uint32_t slots[2] = {};
  struct sigaction previous {};
};
Interleave g_interleave;

void on_fault(int, siginfo_t* info, void*) {
  Interleave& g = g_interleave;
  auto* addr = static_cast<std::byte*>(info->si_addr);
  if (g.page == nullptr || addr < g.page || addr >= g.page + g.page_size) {
    // Not our page: a real crash. Put the previous action back; the access
    // faults again on return and is handled as it would have been.
    ::sigaction(SIGSEGV, &g.previous, nullptr);
    return;
  }
  ::mprotect(g.page, g.page_size, PROT_READ | PROT_WRITE);
  g.page = nullptr;
  ++g.faults;
  // The worker: claim, ack, claim, ack — in order, one lease at a time, as
  // the stress test's consumer does.
  for (int n = 0; n < 2; ++n) {
    if (g.worker->try_claim(*g.job) != ClaimStatus::ok) return;
    g.claimed[n] = seq_of(*g.job);
    g.slots[n] = g.job->lease.slot;
    if (g.worker->ack(g.job->lease) == LeaseStatus::ok) ++g.acks;
  }
}

// Guarantee 6 (with one producer and no retries, jobs are claimed in push
// order), for the interleaving described at the top of this file: a worker
// acking in order while the producer scans a full ring. Fails if the
// producer, having seen the slot at its cursor occupied, fills a later slot
// that was freed after it, while the slot at its cursor was freed before it.
TEST(FifoRepro, InOrderAckDuringTheProducersScanKeepsPushOrder) {
  Watchdog dog(60s, "InOrderAckDuringTheProducersScanKeepsPushOrder");
  // The first state word on a page of its own, after the first state word's
  // page (the state words start after the header and the tally blocks,
  // whatever size those are): slot `b`, at `boundary`.
  const auto page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t states = detail::geometry(1, 8).states_offset;
  const std::uint64_t boundary = (states / page_size + 1) * page_size;
  const std::uint32_t b = static_cast<std::uint32_t>((boundary - states) / 8);
  const std::uint32_t capacity = b + 64;
  const std::uint32_t h = b - 1;  // the producer's cursor slot when the race happens
  ASSERT_GE(b, 2u);
  ASSERT_EQ(detail::geometry(capacity, 8).states_offset + std::uint64_t{b} * 8, boundary)
      << "layout changed: slot " << b << " no longer starts a page";

  QueueName name("fifo-repro");
  Options o;
  o.capacity = capacity;
  o.max_payload = 8;
  auto producer = Queue::create(name.str(), o);
  std::byte* const base = mapping_of(name.str());  // the producer's mapping (the only one so far)
  ASSERT_NE(base, nullptr);
  auto worker = Queue::open(name.str());  // the worker's own mapping, never protected

  // Fill the ring: seq s in slot s.
  std::uint64_t next_seq = 0;
  for (; next_seq < capacity; ++next_seq) ASSERT_EQ(push_seq(producer, next_seq).status, PushStatus::ok);
  ASSERT_EQ(push_seq(producer, next_seq).status, PushStatus::full);
  // The stress test's rhythm on a full ring: the worker claims and acks one
  // job, the producer refills the slot. After h rounds the producer's cursor
  // is at slot h, which holds seq h, and the ring is full.
  Job job;
  for (std::uint32_t s = 0; s < h; ++s) {
    ASSERT_EQ(worker.try_claim(job), ClaimStatus::ok);
    ASSERT_EQ(seq_of(job), s);
    ASSERT_EQ(worker.ack(job.lease), LeaseStatus::ok);
    ASSERT_EQ(push_seq(producer, next_seq++).status, PushStatus::ok);
  }
  ASSERT_EQ(push_seq(producer, next_seq).status, PushStatus::full);

  // Arm: the producer's next load of slot b (= h + 1) runs the worker first.
  g_interleave = Interleave{};
  g_interleave.page = base + boundary;
  g_interleave.page_size = page_size;
  g_interleave.worker = &worker;
  g_interleave.job = &job;
  struct sigaction action {};
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(::sigaction(SIGSEGV, &action, &g_interleave.previous), 0);
  ASSERT_EQ(::mprotect(g_interleave.page, page_size, PROT_NONE), 0);

  const std::uint64_t first = next_seq;  // pushed during the race
  const PushResult r1 = push_seq(producer, next_seq++);
  // Disarm whatever happened.
  if (g_interleave.page != nullptr) ::mprotect(g_interleave.page, page_size, PROT_READ | PROT_WRITE);
  g_interleave.page = nullptr;
  ::sigaction(SIGSEGV, &g_interleave.previous, nullptr);

  ASSERT_EQ(r1.status, PushStatus::ok);
  ASSERT_EQ(g_interleave.faults, 1) << "the producer's scan did not load slot " << b << " after slot " << h;
  ASSERT_EQ(g_interleave.acks, 2);
  EXPECT_EQ(g_interleave.claimed[0], h);
  EXPECT_EQ(g_interleave.claimed[1], h + 1);
  ASSERT_EQ(push_seq(producer, next_seq++).status,
            PushStatus::ok);  // the stress test's next push

  // Drain: every job once, in push order.
  std::vector<std::uint64_t> seen;
  std::string order;  // seq@slot, for the failure message
  while (worker.try_claim(job) == ClaimStatus::ok) {
    seen.push_back(seq_of(job));
    if (seen.back() >= first)
      order += " " + std::to_string(seen.back()) + "@" + std::to_string(job.lease.slot);
    ASSERT_EQ(worker.ack(job.lease), LeaseStatus::ok);
  }
  ASSERT_EQ(seen.size(), std::size_t{capacity});
  std::size_t inversions = 0;
  for (std::size_t i = 1; i < seen.size(); ++i) inversions += seen[i] < seen[i - 1] ? 1 : 0;
  EXPECT_EQ(inversions, 0u) << "one producer, one worker acking in order, no "
                               "retries: the jobs pushed at "
                               "and after the race were claimed as (seq@slot):"
                            << order << " (push order: " << first << "@" << h << " " << first + 1 << "@" << b
                            << ")";
}

}  // namespace
}  // namespace jobring
