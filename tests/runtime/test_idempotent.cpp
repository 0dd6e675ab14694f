// Tests of the idempotent() handler wrapper (include/jobring/idempotent.hpp,
// issue 7): which key it records as done, and that a job redelivered after
// a lost ack is skipped.
//
// Each test names, in the comment above it, the behaviour that would break
// it. Forked children report through files, shared memory and exit codes,
// never gtest assertions, and die with the test process (die_with_parent).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jobring/idempotent.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::TempFile;
using test::Watchdog;

// A path for a store that does not exist yet (TempFile creates an empty file,
// which a DoneStore accepts as new; remove it to test creation too).
struct StorePath {
  TempFile file{"done"};
  StorePath() { ::unlink(file.path().c_str()); }
  [[nodiscard]] const std::string& str() const { return file.path(); }
};

std::vector<std::pair<std::string, std::string>> records_of(DoneStore& s) {
  std::vector<std::pair<std::string, std::string>> out;
  s.for_each([&](std::string_view k, std::string_view v) { out.emplace_back(k, v); });
  return out;
}

// ===========================================================================
// idempotent()
// ===========================================================================

// A default key as done_key() writes it: "#" + incarnation in 16 hex digits + "." + id.
std::string default_key(std::uint64_t incarnation, JobId id) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "#%016llx.%llu", static_cast<unsigned long long>(incarnation),
                static_cast<unsigned long long>(id));
  return buf;
}

// done_key: the job's key, or "#<incarnation>.<id>" when it has none; the
// Job carries the incarnation of the queue it was claimed from.
TEST(Idempotent, DoneKeyIsTheKeyOrTheIncarnationAndId) {
  QueueName q("i-key");
  Queue queue = Queue::create(q, {});
  EXPECT_NE(queue.incarnation(), 0u);
  const JobId id = queue.push("x").id;
  Job job;
  ASSERT_EQ(queue.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.incarnation, queue.incarnation());
  DoneKeyBuffer buf{};
  EXPECT_EQ(done_key(job, buf), default_key(queue.incarnation(), id));
  job.id = ~JobId{0};
  job.incarnation = ~std::uint64_t{0};
  EXPECT_EQ(done_key(job, buf), "#ffffffffffffffff.18446744073709551615");
  job.incarnation = 0x1a;
  job.id = 7;
  EXPECT_EQ(done_key(job, buf), "#000000000000001a.7");
  (void)queue.push("y", {.key = "mine"});
  ASSERT_EQ(queue.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(done_key(job, buf), "mine");
}

// Issue 13 item 6 (guarantee 10: default idempotency keys are unique across
// incarnations of a name): a job acked through idempotent() in a queue that
// is then removed and created again under the same name must not make a
// brand-new job of the new queue look "done before". Job ids restart at 1 in
// every incarnation, so a default key of "#<id>" alone would skip it.
// Fails if the new queue's first job is skipped instead of run.
TEST(Idempotent, Item6_NewJobAfterRecreateIsNotSkipped) {
  Watchdog wd(60s);
  QueueName q("i-recreate");
  StorePath path;
  DoneStore store(path.str());
  int runs = 0;
  auto handler = [&](const Job&, JobContext&) {
    ++runs;
    return Outcome::ack();
  };
  JobId first_id = 0;
  std::uint64_t first_incarnation = 0;
  {
    Queue queue = Queue::create(q, {});
    first_incarnation = queue.incarnation();
    first_id = queue.push("old").id;
    Worker worker(queue, idempotent(store, handler), {.max_jobs = 1});
    const WorkerSummary s = worker.run();
    EXPECT_EQ(s.acked, 1u);
  }
  ASSERT_TRUE(Queue::remove(q));
  Queue queue = Queue::create(q, {});
  const JobId second_id = queue.push("new").id;
  EXPECT_NE(queue.incarnation(), first_incarnation);
  EXPECT_EQ(second_id, first_id) << "ids restart in a new incarnation: the test relies on it";
  Worker worker(queue, idempotent(store, handler), {.max_jobs = 1});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.skipped, 0u) << "a brand-new job was taken for one done before";
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(store.size(), 2u);
}

// A DoneRecordStore wrapper that crashes the process right after mark_done
// returns — before the Worker's ack: the "lost ack" of a worker that died.
struct CrashAfterMark {
  DoneStore& store;
  bool contains(std::string_view k) { return store.contains(k); }
  void mark_done(std::string_view k) {
    store.mark_done(k);
    ::_exit(42);
  }
};

// The idempotent consumer's point: a worker does the side effect, records
// the job done, and dies before its ack; the job comes back when the lease
// runs out (attempt 2), and the wrapper skips it (reported as skipped) and
// acks it. The side effect happened once. Fails if the redelivered job is
// run again, or not acked.
TEST(Idempotent, SkipsAJobRedeliveredAfterALostAck) {
  Watchdog wd(90s);
  QueueName q("i-lost-ack");
  Queue queue = Queue::create(q, {});
  ASSERT_TRUE(queue.push("charge 42", {.key = "payment-42"}));
  StorePath path;
  TempFile effects("effects");
  const std::string name = q.str();
  const pid_t child = test::spawn_tied([&] {
    Queue mine = Queue::open(name);
    DoneStore store(path.str());
    CrashAfterMark crashing{store};
    const int fd = effects.open_append();
    Worker worker(mine,
                  idempotent(crashing,
                             [&](const Job& job, JobContext&) {
                               (void)test::append_record(fd, job.id);  // the side effect
                               return Outcome::ack();
                             }),
                  {.lease = 300ms});
    (void)worker.run();
    return 1;  // not reached: mark_done exits
  });
  EXPECT_EQ(test::wait_child(child), 42);
  EXPECT_EQ(queue.stats().acked, 0u) << "the ack must have been lost";

  DoneStore store(path.str());
  const std::string key = "payment-42";  // the job's key, not its id
  EXPECT_TRUE(store.contains(key)) << key;
  std::vector<JobReport> reports;
  std::uint32_t attempt = 0;
  WorkerOptions o{.lease = 300ms, .max_jobs = 1};
  o.hooks.on_done = [&](const Job& job, const JobReport& r) {
    reports.push_back(r);
    attempt = job.attempt;
  };
  int runs = 0;
  Worker worker(queue,
                idempotent(store,
                           [&](const Job&, JobContext&) {
                             ++runs;
                             return Outcome::ack();
                           }),
                o);
  const WorkerSummary s = worker.run();  // waits for the dead worker's lease to run out
  EXPECT_EQ(runs, 0) << "the redelivered job ran again";
  EXPECT_EQ(s.skipped, 1u);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result, JobResult::skipped);
  EXPECT_EQ(attempt, 2u);
  EXPECT_EQ(effects.records<JobId>().size(), 1u) << "the side effect ran more than once";
  const Stats st = queue.stats();
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.ready + st.leased + st.expired + st.delayed + st.dead, 0u);
}

// Only an ack records the key: retry and drop record nothing (the job is not
// done), and an exception records nothing; a skip of a done key runs nothing.
// Fails if a failed job is recorded as done (it would then never be retried).
TEST(Idempotent, OnlyAnAckRecordsTheKey) {
  Watchdog wd(60s);
  QueueName q("i-only-ack");
  Queue queue = Queue::create(q, {});
  StorePath path;
  DoneStore store(path.str());
  std::map<std::string, JobId> ids;
  for (const char* t : {"retry", "drop", "throw", "ack"}) ids[t] = queue.push(t).id;
  Worker worker(queue,
                idempotent(store,
                           [](const Job& job, JobContext&) -> Outcome {
                             if (job.text() == "retry") return Outcome::retry_after(1h);
                             if (job.text() == "drop") return Outcome::drop();
                             if (job.text() == "throw") throw std::runtime_error("no");
                             return Outcome::ack();
                           }),
                {.backoff = {.base = 1h, .cap = 1h}, .max_jobs = 4});
  const WorkerSummary s = worker.run();
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.retried, 2u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_TRUE(store.contains(default_key(queue.incarnation(), ids["ack"])));
}

// The ledger pattern (idempotent.hpp): the side effect IS the done-record,
// one durable append under the file lock, so even two workers running the
// same job at once (a lease lost mid-job) record the charge once. Here: the
// job is claimed by two workers in turn while the first still "runs" it.
// Fails if a ledger entry can be written twice for one key.
TEST(Idempotent, LedgerAsTheStoreChargesOnce) {
  Watchdog wd(60s);
  QueueName q("i-ledger");
  Queue queue = Queue::create(q, {});
  (void)queue.push("alice 42.00", {.key = "pay-1"});
  StorePath path;
  DoneStore ledger(path.str());
  DoneStore ledger2(path.str());  // another process's view of the ledger
  auto charge = [](DoneStore& l, const Job& job) {
    DoneKeyBuffer buf{};
    return l.mark_done(done_key(job, buf), job.text()) ? Outcome::ack() : Outcome::skip();
  };
  Job first;
  ASSERT_EQ(queue.try_claim(first, {.lease = 1h}), ClaimStatus::ok);
  // The first worker's lease is lost (forged: released); a second worker takes the job.
  ASSERT_EQ(queue.release(first.lease), LeaseStatus::ok);
  Job second;
  ASSERT_EQ(queue.try_claim(second, {.lease = 1h}), ClaimStatus::ok);
  // Both now run the handler.
  EXPECT_EQ(charge(ledger2, second), Outcome::ack());
  EXPECT_EQ(charge(ledger, first), Outcome::skip());
  EXPECT_EQ(queue.ack(second.lease), LeaseStatus::ok);
  EXPECT_EQ(queue.ack(first.lease), LeaseStatus::lease_lost);
  EXPECT_EQ(records_of(ledger).size(), 1u);
  EXPECT_EQ(records_of(ledger)[0].second, "alice 42.00");
}

}  // namespace
}  // namespace jobring
