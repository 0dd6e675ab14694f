// The C API (jobring.h) on the Redis backend: jobring_*_url open a queue on
// the backend a URL names, and every other call works on the handle as on a
// shared-memory one; network failures are JOBRING_E_UNAVAILABLE with a
// message, never an exception crossing into C or a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>

#include "jobring/jobring.h"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;

jobring::test::RedisServer& server() {
  static jobring::test::RedisServer s;
  return s;
}

std::string unique(const char* what) {
  static int counter = 0;
  return std::string("capi.") + what + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

class CapiRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = jobring::test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    url_ = server().url();
  }
  std::string url_;
};

TEST_F(CapiRedis, TheWholeCycleOnAUrl) {
  const std::string name = unique("cycle");
  jobring_options o;
  ASSERT_EQ(jobring_options_init(&o, sizeof o), JOBRING_OK);
  o.capacity = 8;
  o.max_attempts = 2;
  jobring_queue* q = nullptr;
  ASSERT_EQ(jobring_create_url(url_.c_str(), name.c_str(), &o, &q), JOBRING_OK) << jobring_last_error();
  EXPECT_EQ(jobring_queue_is_remote(q), 1);
  EXPECT_STREQ(jobring_queue_name(q), name.c_str());
  jobring_queue* again = nullptr;
  EXPECT_EQ(jobring_create_url(url_.c_str(), name.c_str(), &o, &again), JOBRING_E_ALREADY_EXISTS);
  EXPECT_EQ(again, nullptr);

  uint64_t id = 0;
  ASSERT_EQ(jobring_push(q, "hello", 5, nullptr, &id, nullptr), JOBRING_OK) << jobring_last_error();
  jobring_job* job = nullptr;
  ASSERT_EQ(jobring_job_new(&job), JOBRING_OK);
  ASSERT_EQ(jobring_claim(q, job, nullptr), JOBRING_OK) << jobring_last_error();
  EXPECT_EQ(jobring_job_id(job), id);
  size_t len = 0;
  const void* p = jobring_job_payload(job, &len);
  EXPECT_EQ(std::string(static_cast<const char*>(p), len), "hello");
  EXPECT_EQ(jobring_job_attempt(job), 1u);
  EXPECT_EQ(jobring_extend(q, job, 60'000), JOBRING_OK);
  jobring_lease stale{};
  ASSERT_EQ(jobring_job_lease(job, &stale), JOBRING_OK);

  // Released on its last-but-one attempt, claimed again: the old lease is stale.
  ASSERT_EQ(jobring_release(q, job, 0, "try again"), JOBRING_OK);
  EXPECT_EQ(jobring_ack_lease(q, &stale), JOBRING_LEASE_LOST);
  ASSERT_EQ(jobring_claim(q, job, nullptr), JOBRING_OK);
  EXPECT_EQ(jobring_job_attempt(job), 2u);
  ASSERT_EQ(jobring_release(q, job, 0, "broken"), JOBRING_OK);  // the second attempt: dead

  jobring_stats s;
  std::memset(&s, 0, sizeof s);
  s.size = sizeof s;
  ASSERT_EQ(jobring_get_stats(q, &s), JOBRING_OK);
  EXPECT_EQ(s.dead, 1u);
  jobring_job_info info[2];
  std::memset(info, 0, sizeof info);
  size_t n = 0;
  char payloads[64];
  ASSERT_EQ(jobring_peek(q, JOBRING_STATE_DEAD, info, sizeof info[0], 2, payloads, sizeof payloads, &n),
            JOBRING_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(info[0].id, id);
  ASSERT_EQ(jobring_requeue(q, id), JOBRING_OK);

  int changed = 0;
  ASSERT_EQ(jobring_pause(q, &changed), JOBRING_OK);
  EXPECT_EQ(changed, 1);
  EXPECT_EQ(jobring_is_paused(q), 1);
  EXPECT_EQ(jobring_claim(q, job, nullptr), JOBRING_EMPTY);
  ASSERT_EQ(jobring_resume(q, &changed), JOBRING_OK);
  ASSERT_EQ(jobring_claim(q, job, nullptr), JOBRING_OK);
  EXPECT_EQ(jobring_ack(q, job), JOBRING_OK);
  EXPECT_EQ(jobring_ack(q, job), JOBRING_LEASE_LOST);

  // claim_any over two Redis queues.
  const std::string other = unique("other");
  jobring_queue* q2 = nullptr;
  ASSERT_EQ(jobring_open_or_create_url(url_.c_str(), other.c_str(), nullptr, &q2), JOBRING_OK);
  ASSERT_EQ(jobring_push(q2, "second", 6, nullptr, nullptr, nullptr), JOBRING_OK);
  jobring_queue* both[] = {q, q2};
  size_t index = 9;
  ASSERT_EQ(jobring_claim_any(both, 2, job, nullptr, &index), JOBRING_OK) << jobring_last_error();
  EXPECT_EQ(index, 1u);
  EXPECT_EQ(jobring_ack(q2, job), JOBRING_OK);

  // move_dead between two Redis queues (nothing is dead now: 0 moved);
  // across backends it is not supported, and says so.
  uint64_t moved = 7;
  EXPECT_EQ(jobring_move_dead(q, q2, 0, 0, &moved, nullptr, nullptr), JOBRING_OK) << jobring_last_error();
  EXPECT_EQ(moved, 0u);
  const std::string local_name = unique("local");
  jobring_queue* local = nullptr;
  ASSERT_EQ(jobring_open_or_create_url(nullptr, local_name.c_str(), nullptr, &local), JOBRING_OK);
  EXPECT_EQ(jobring_move_dead(q, local, 0, 0, &moved, nullptr, nullptr), JOBRING_E_NOT_SUPPORTED);
  EXPECT_NE(std::strstr(jobring_last_error(), "one backend"), nullptr) << jobring_last_error();
  jobring_close(local);
  EXPECT_EQ(jobring_remove(local_name.c_str()), JOBRING_OK);

  uint64_t purged = 0;
  EXPECT_EQ(jobring_purge(q, JOBRING_PURGE_ALL, &purged), JOBRING_OK);
  jobring_job_free(job);
  jobring_close(q);
  jobring_close(q2);
  EXPECT_EQ(jobring_remove_url(url_.c_str(), name.c_str()), JOBRING_OK);
  EXPECT_EQ(jobring_remove_url(url_.c_str(), name.c_str()), JOBRING_E_NOT_FOUND);
  EXPECT_EQ(jobring_remove_url(url_.c_str(), other.c_str()), JOBRING_OK);
}

TEST_F(CapiRedis, NullOrShmUrlIsSharedMemory) {
  const std::string name = unique("shm");
  jobring_queue* q = nullptr;
  ASSERT_EQ(jobring_open_or_create_url(nullptr, name.c_str(), nullptr, &q), JOBRING_OK)
      << jobring_last_error();
  EXPECT_EQ(jobring_queue_is_remote(q), 0);
  jobring_close(q);
  ASSERT_EQ(jobring_open_url("shm:", name.c_str(), &q), JOBRING_OK);
  EXPECT_EQ(jobring_queue_is_remote(q), 0);
  jobring_close(q);
  EXPECT_EQ(jobring_remove(name.c_str()), JOBRING_OK);
}

TEST_F(CapiRedis, BadUrlsAndADownServer) {
  jobring::test::Watchdog watchdog(60s);
  jobring_queue* q = nullptr;
  EXPECT_EQ(jobring_open_url("amqp://x", "q", &q), JOBRING_E_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(jobring_last_error(), "redis://"), nullptr) << jobring_last_error();
  EXPECT_EQ(q, nullptr);

  // A server that goes away under an open handle: calls fail with
  // JOBRING_E_UNAVAILABLE, in bounded time.
  jobring::test::RedisServer own;
  const std::string name = unique("down");
  ASSERT_EQ(jobring_open_or_create_url(own.url().c_str(), name.c_str(), nullptr, &q), JOBRING_OK);
  ASSERT_EQ(jobring_push(q, "x", 1, nullptr, nullptr, nullptr), JOBRING_OK);
  own.stop();
  uint64_t id = 0;
  const int rc = jobring_push(q, "y", 1, nullptr, &id, nullptr);
  EXPECT_EQ(rc, JOBRING_E_UNAVAILABLE) << jobring_last_error();
  jobring_stats s;
  std::memset(&s, 0, sizeof s);
  s.size = sizeof s;
  EXPECT_EQ(jobring_get_stats(q, &s), JOBRING_E_UNAVAILABLE);
  EXPECT_NE(std::strlen(jobring_last_error()), 0u);
  int changed = 0;
  EXPECT_EQ(jobring_pause(q, &changed), JOBRING_E_UNAVAILABLE);
  EXPECT_EQ(jobring_is_paused(q), -1);
  jobring_close(q);
  jobring_queue* q2 = nullptr;
  EXPECT_EQ(jobring_open_url(own.url().c_str(), name.c_str(), &q2), JOBRING_E_UNAVAILABLE);
}

}  // namespace
