// Kill torture on the Redis backend (G1, G2, G3, G4): worker and producer
// processes are SIGKILLed at random instructions while the producers push N
// jobs (each under a de-duplication key, so that a producer started again
// after a kill pushes its share again without doubling a job).
// At the end every job was acked exactly once: by one ack that returned ok
// in a surviving worker, or — for a worker killed between sending its ack
// and recording the answer — by that ack, which the server counted. No job
// is lost, none is acked twice, none is left.
//
// Accounting, in shared memory (MAP_SHARED, before the forks):
// - acked_ok[i]: acks of job i that returned ok (recorded after the ack);
// - acking[w]: the job worker slot w is acking right now (set before the
//   ack is sent, cleared after its answer is recorded). When worker w is
//   killed, acking[w] names the only job whose ack may have gone through
//   unrecorded.
// The server's own total (Stats::acked, counted by the same function call
// that deletes the job) must be N.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/redis_server.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;

constexpr int kJobs = 2000;
constexpr int kProducers = 2;
constexpr int kWorkers = 4;
constexpr std::uint64_t kNone = ~std::uint64_t{0};

struct Shared {
  std::atomic<std::uint32_t> acked_ok[kJobs];
  std::atomic<std::uint64_t> acking[kWorkers];
  std::atomic<bool> stop;
};

int worker(const std::string& url, const std::string& name, Shared& shared, int slot) {
  auto q = RedisQueue::open(url, name);
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::atomic<bool>* stop = &shared.stop;
  ClaimOptions options;
  options.lease = 300ms;  // short: a killed worker's jobs come back soon
  options.stop = stop;
  Job job;
  while (!shared.stop.load()) {
    std::error_code ec;
    if (q.claim(job, 500ms, options, ec) != ClaimStatus::ok) continue;
    const int index = std::stoi(std::string(job.text()));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));  // the work: killed inside it, too
    shared.acking[slot].store(static_cast<std::uint64_t>(index));
    if (q.ack(job.lease, ec) == LeaseStatus::ok) shared.acked_ok[index].fetch_add(1);
    shared.acking[slot].store(kNone);
  }
  return 0;
}

TEST(RedisTorture, WorkersKilledAtRandomLoseNothingAndAckNothingTwice) {
  if (const std::string why = test::redis_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  test::Watchdog dog(120s);
  test::RedisServer server;
  const std::string url = server.url(), name = "torture." + std::to_string(::getpid());
  auto q = RedisQueue::create(url, name, {.capacity = 64, .default_lease = 300ms});

  auto* shared = static_cast<Shared*>(
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  new (shared) Shared{};
  for (auto& a : shared->acking) a.store(kNone);

  std::vector<pid_t> workers(kWorkers);
  auto spawn = [&](int slot) {
    shared->acking[slot].store(kNone);
    workers[slot] = test::fork_child([&, slot] { return worker(url, name, *shared, slot); });
  };
  for (int w = 0; w < kWorkers; ++w) spawn(w);
  // Producers: each pushes its share, waiting for room (capacity 64 < N),
  // each job under the key of its number: a producer killed and started
  // again pushes its whole share again, and the keys make the repeats
  // duplicates (the window is the default 300 s).
  std::vector<pid_t> producers(kProducers);
  auto produce = [&](int p) {
    producers[p] = test::fork_child([&, p] {
      auto mine = RedisQueue::open(url, name);
      for (int i = p; i < kJobs; i += kProducers) {
        const std::string text = std::to_string(i);
        if (mine.push(text, PushOptions{.wait = 60s, .key = text}).status != PushStatus::ok) return 1;
      }
      return 0;
    });
  };
  for (int p = 0; p < kProducers; ++p) produce(p);

  // Kill a random worker every 5..25 ms, and now and then a producer (then
  // start it again), until the producers are done; note the job each killed
  // worker was acking.
  std::mt19937 rng(12345);
  std::set<std::uint64_t> unrecorded;  // jobs whose ack a killed worker may have sent
  int kills = 0, producer_kills = 0;
  auto producers_done = [&] {
    for (auto& p : producers)
      if (p > 0) {
        int status = 0;
        if (::waitpid(p, &status, WNOHANG) == p) {
          EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a producer failed";
          p = -1;
        }
      }
    return std::all_of(producers.begin(), producers.end(), [](pid_t p) { return p < 0; });
  };
  while (!producers_done()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 20));
    if (const int p = static_cast<int>(rng() % (4 * kProducers)); p < kProducers && producers[p] > 0) {
      test::kill_and_reap(producers[p]);
      ++producer_kills;
      produce(p);
      continue;
    }
    const int slot = static_cast<int>(rng() % kWorkers);
    test::kill_and_reap(workers[slot]);
    ++kills;
    if (const std::uint64_t j = shared->acking[slot].load(); j != kNone) unrecorded.insert(j);
    spawn(slot);
  }
  // Let the survivors finish: every job gone from the queue.
  for (;;) {
    const Stats s = q.stats();
    if (s.ready + s.delayed + s.leased + s.expired + s.dead == 0) break;
    std::this_thread::sleep_for(50ms);
  }
  shared->stop.store(true);
  for (const pid_t w : workers) EXPECT_EQ(test::wait_child(w), 0);

  const Stats s = q.stats();
  EXPECT_EQ(s.pushed, static_cast<std::uint64_t>(kJobs));
  EXPECT_EQ(s.acked, static_cast<std::uint64_t>(kJobs)) << "the server counted every job acked exactly once";
  int recorded = 0;
  for (int i = 0; i < kJobs; ++i) {
    const std::uint32_t n = shared->acked_ok[i].load();
    EXPECT_LE(n, 1u) << "job " << i << " acked twice";
    if (n == 0) {
      EXPECT_TRUE(unrecorded.count(static_cast<std::uint64_t>(i)))
          << "job " << i << " never acked, and no killed worker was acking it";
    }
    recorded += static_cast<int>(n);
  }
  EXPECT_GT(kills, 0);
  RecordProperty("kills", kills);
  RecordProperty("acks_recorded", recorded);
  std::printf(
      "torture: %d worker kills, %d producer kills, %d of %d acks recorded, %zu in flight at a kill\n", kills,
      producer_kills, recorded, kJobs, unrecorded.size());
  ::munmap(shared, sizeof(Shared));
}

}  // namespace
}  // namespace jobring
