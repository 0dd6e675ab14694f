// The C API (jobring.h) from C++, for what C cannot check: that push / claim
// / ack and the other lease calls allocate nothing after a job buffer's
// first claim (guarantee 7 through the C API; this binary replaces the
// global operator new and counts), that an allocation failure comes back as
// JOBRING_E_NO_MEMORY instead of an exception, that the last error is per
// thread, and that the JOBRING_E_* codes cover every jobring::errc.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include "jobring/error.hpp"
#include "jobring/jobring.h"
#include "support/test_support.hpp"

// Every replacement below allocates with malloc / posix_memalign and frees
// with free, a matched pair; GCC cannot see that the replaced operator new is
// ours and warns at each inlined delete (as bench/bench_footprint.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {

std::atomic<long> g_allocations{0};
std::atomic<bool> g_fail_allocations{false};  // every operator new fails while set

void* counted_alloc(std::size_t n, std::size_t align) noexcept {
  if (g_fail_allocations.load(std::memory_order_relaxed)) return nullptr;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (::posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  return p;
}

}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace jobring {
namespace {

struct CQueue {
  explicit CQueue(const std::string& name, std::uint32_t capacity = 64) {
    jobring_options o;
    jobring_options_init(&o, sizeof o);
    o.capacity = capacity;
    o.max_payload = 256;
    EXPECT_EQ(jobring_create(name.c_str(), &o, &q), JOBRING_OK) << jobring_last_error();
    EXPECT_EQ(jobring_job_new(&job), JOBRING_OK);
  }
  ~CQueue() {
    jobring_job_free(job);
    jobring_close(q);
  }
  CQueue(const CQueue&) = delete;
  CQueue& operator=(const CQueue&) = delete;
  jobring_queue* q = nullptr;
  jobring_job* job = nullptr;
};

// One round of every hot call: push (plain and keyed), claim, extend,
// release, give_back, ack, and the outcomes empty and lease lost.
void hot_round(CQueue& c, int i) {
  const char payload[] = "sixty-four bytes of job payload, more or less, for the hot path.";
  jobring_push_options p;
  jobring_push_options_init(&p, sizeof p);
  char key[16];
  const int key_len = std::snprintf(key, sizeof key, "k%d", i);
  p.key = key;
  p.key_len = static_cast<std::size_t>(key_len);
  std::uint64_t id = 0;
  int dup = 0;
  ASSERT_EQ(jobring_push(c.q, payload, sizeof payload, nullptr, &id, &dup), JOBRING_OK);
  ASSERT_EQ(jobring_push(c.q, payload, 10, &p, &id, &dup), JOBRING_OK);
  jobring_claim_options co;
  jobring_claim_options_init(&co, sizeof co);
  co.lease_ms = 5000;
  for (int n = 0; n < 2; ++n) {
    ASSERT_EQ(jobring_claim(c.q, c.job, &co), JOBRING_OK);
    ASSERT_EQ(jobring_extend(c.q, c.job, 10000), JOBRING_OK);
    ASSERT_EQ(jobring_give_back(c.q, c.job), JOBRING_OK);
    ASSERT_EQ(jobring_claim(c.q, c.job, &co), JOBRING_OK);
    ASSERT_EQ(jobring_release(c.q, c.job, 0, "retry"), JOBRING_OK);
    ASSERT_EQ(jobring_claim(c.q, c.job, &co), JOBRING_OK);
    ASSERT_EQ(jobring_ack(c.q, c.job), JOBRING_OK);
    ASSERT_EQ(jobring_ack(c.q, c.job), JOBRING_LEASE_LOST);
  }
  ASSERT_EQ(jobring_claim(c.q, c.job, &co), JOBRING_EMPTY);
}

// Guarantee 7 through the C API: after the job buffer's first claim, the
// hot calls allocate nothing — and the buffer stays where it was.
TEST(CApiAllocation, HotPathAllocatesNothingAfterWarmUp) {
  test::QueueName name("capi");
  CQueue c(name);
  hot_round(c, 0);  // warm-up: the job buffer grows to max_payload once
  const void* buffer = jobring_job_payload(c.job, nullptr);
  const long before = g_allocations.load();
  for (int i = 1; i <= 500; ++i) hot_round(c, i);
  EXPECT_EQ(g_allocations.load() - before, 0) << "allocations in 500 rounds of push/claim/extend/release/ack";
  EXPECT_EQ(jobring_job_payload(c.job, nullptr), buffer);
  jobring_stats s{};
  s.size = sizeof s;
  ASSERT_EQ(jobring_get_stats(c.q, &s), JOBRING_OK);
  EXPECT_EQ(s.acked, 501u * 2);
}

// The outcome FULL, on every later push to a full queue, allocates nothing either.
TEST(CApiAllocation, FullAndEmptyAllocateNothing) {
  test::QueueName name("capi");
  CQueue c(name, 1);
  ASSERT_EQ(jobring_push(c.q, "x", 1, nullptr, nullptr, nullptr), JOBRING_OK);
  ASSERT_EQ(jobring_push(c.q, "x", 1, nullptr, nullptr, nullptr), JOBRING_FULL);
  const long before = g_allocations.load();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(jobring_push(c.q, "x", 1, nullptr, nullptr, nullptr), JOBRING_FULL);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

// No exception crosses the C API: a failed allocation is a status.
TEST(CApiErrors, AllocationFailureIsNoMemory) {
  test::QueueName name("capi");
  jobring_queue* q = nullptr;
  jobring_job* job = nullptr;
  jobring_stop* stop = nullptr;
  g_fail_allocations = true;
  const int created = jobring_create(name.str().c_str(), nullptr, &q);
  const int job_made = jobring_job_new(&job);
  const int stop_made = jobring_stop_new(&stop);
  g_fail_allocations = false;
  EXPECT_EQ(created, JOBRING_E_NO_MEMORY) << jobring_last_error();
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(job_made, JOBRING_E_NO_MEMORY);
  EXPECT_EQ(job, nullptr);
  EXPECT_EQ(stop_made, JOBRING_E_NO_MEMORY);
  EXPECT_STREQ(jobring_last_error(), jobring_strerror(JOBRING_E_NO_MEMORY));
  // The first claim into a new buffer allocates it: that failure is a status too.
  CQueue c(name);
  ASSERT_EQ(jobring_push(c.q, "x", 1, nullptr, nullptr, nullptr), JOBRING_OK);
  g_fail_allocations = true;
  const int claimed = jobring_claim(c.q, c.job, nullptr);
  g_fail_allocations = false;
  EXPECT_EQ(claimed, JOBRING_E_NO_MEMORY) << jobring_last_error();
}

TEST(CApiErrors, LastErrorIsPerThread) {
  jobring_queue* q = nullptr;
  ASSERT_EQ(jobring_open("capi-no-such-queue", &q), JOBRING_E_NOT_FOUND);
  const std::string mine = jobring_last_error();
  EXPECT_NE(mine.find("capi-no-such-queue"), std::string::npos) << mine;
  std::thread([] {
    EXPECT_STREQ(jobring_last_error(), "success");  // nothing called on this thread yet
    jobring_options o;
    EXPECT_EQ(jobring_options_init(&o, sizeof o), JOBRING_OK);
  }).join();
  EXPECT_EQ(mine, jobring_last_error());
}

// jobring.h mirrors jobring::errc value for value (a static_assert in
// lib/capi/capi.cpp checks the table); here: the category knows no value
// beyond the last code, so a new errc cannot go without its JOBRING_E_.
TEST(CApiErrors, EveryErrcHasACode) {
  const std::string unknown = jobring::category().message(0);
  for (int v = 1; v <= JOBRING_E_NOT_SUPPORTED - 100; ++v) {
    EXPECT_NE(jobring::category().message(v), unknown) << v;
    EXPECT_EQ(std::string(jobring_strerror(100 + v)).find("unknown"), std::string::npos) << v;
  }
  EXPECT_EQ(jobring::category().message(JOBRING_E_NOT_SUPPORTED - 100 + 1), unknown)
      << "jobring::errc has a value after not_supported: give it a JOBRING_E_ code in jobring.h and "
         "capi.cpp";
}

}  // namespace
}  // namespace jobring
