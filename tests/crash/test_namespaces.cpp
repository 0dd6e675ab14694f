// Guarantee 10 across time namespaces (issue 13, items 1 and 2): processes in
// another time namespace (unshare --time, a container) share a queue with
// this one. Their CLOCK_MONOTONIC and the start times /proc shows them are
// shifted by their namespace's offsets; jobring must still agree on every
// deadline and never prove a live process dead.
//
// Each test runs a grandchild in a new time namespace (unshare(CLONE_NEWTIME)
// applies to the children of the caller), with offsets written to
// /proc/self/timens_offsets before it is forked. Needs CAP_SYS_ADMIN (CI runs
// as root): skipped with a message where time namespaces are not permitted.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "common/process.hpp"
#include "jobring/queue.hpp"
#include "ring/transitions.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::Pipe;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;

constexpr int kNotPermitted = 77;

// Forks a child that enters a new time namespace with these offsets (seconds)
// and forks a grandchild there to run `body`. The child writes the
// grandchild's PID as a line to `report`, then exits with the grandchild's
// status; kNotPermitted if the namespace could not be made.
pid_t spawn_in_time_namespace(long monotonic_s, long boottime_s, int report,
                              const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  return test::fork_child([=] {
    test::die_with_parent(parent);
    if (::unshare(CLONE_NEWTIME) != 0) return kNotPermitted;
    const int fd = ::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return kNotPermitted;
    char offsets[128];
    const int n =
        std::snprintf(offsets, sizeof offsets, "monotonic %ld 0\nboottime %ld 0\n", monotonic_s, boottime_s);
    const bool ok = ::write(fd, offsets, static_cast<std::size_t>(n)) == n;
    ::close(fd);
    if (!ok) return kNotPermitted;
    const pid_t child = ::getpid();
    const pid_t grandchild = test::fork_child([&] {
      test::die_with_parent(child);
      return body();
    });
    const std::string line = std::to_string(grandchild) + "\n";
    (void)test::write_all(report, line.data(), line.size());
    return test::wait_child(grandchild);
  });
}

// The grandchild's PID from `report`, or 0 if the child exited first (then
// `status` holds its exit status).
pid_t grandchild_of(pid_t child, int report, int& status) {
  if (auto line = test::read_line(report, 60s)) return static_cast<pid_t>(std::stol(*line));
  status = test::wait_child(child);
  return 0;
}

#define SKIP_IF_NOT_PERMITTED(status) \
  if ((status) == kNotPermitted)      \
  GTEST_SKIP() << "time namespaces are not permitted here (needs CAP_SYS_ADMIN)"

// Item 2: a lease granted in one time namespace lasts as long, read from
// another. A worker whose CLOCK_MONOTONIC runs 1000 s ahead must not take
// over a 60 s lease granted a moment ago; its own 60 s lease must read as
// 60 s here, not 1060 s.
TEST(TimeNamespaces, Item2_LeasesMeanTheSameInstantInEveryTimeNamespace) {
  Watchdog dog(120s);
  QueueName name("timens");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("held"));
  Job held;
  ASSERT_EQ(q.try_claim(held, ClaimOptions{.lease = 60s}), ClaimStatus::ok);
  ASSERT_TRUE(q.push("theirs"));

  Pipe report;
  const pid_t child = spawn_in_time_namespace(1000, 0, report.write_fd(), [&] {
    Queue mine = Queue::open(name);
    Job a, b;
    // One job is claimable ("theirs"); the held lease must not be taken over.
    if (mine.try_claim(a, ClaimOptions{.lease = 60s, .owner = Owner::detached}) != ClaimStatus::ok) return 10;
    if (a.text() != "theirs") return 11;
    if (mine.try_claim(b, ClaimOptions{.lease = 60s}) != ClaimStatus::empty) return 12;  // took over "held"
    // The deadline it was handed is 60 s from now on its own steady_clock.
    const auto left = a.deadline - std::chrono::steady_clock::now();
    if (left < 50s || left > 61s) return 13;
    return 0;
  });
  report.close_write();
  int status = 0;
  if (grandchild_of(child, report.read_fd(), status) != 0) status = test::wait_child(child);
  SKIP_IF_NOT_PERMITTED(status);
  ASSERT_EQ(status, 0) << "10: nothing claimed, 11: the held job was taken over, 12: a second claim, "
                          "13: the lease's deadline is not 60 s away in the claimer's own clock";
  for (const JobInfo& j : q.peek(JobState::leased)) {
    EXPECT_GT(j.ms_until, 50'000) << "job " << j.id;
    EXPECT_LE(j.ms_until, 61'000) << "job " << j.id << ": the deadline is on another clock";
  }
  EXPECT_EQ(q.stats().leased, 2u);
  EXPECT_EQ(q.ack(held.lease), LeaseStatus::ok);
}

// Item 1: a live worker in a time namespace whose CLOCK_BOOTTIME is 100000 s
// ahead is alive to a sweep here (its start time, read through /proc, differs
// by the offset); once it is killed, the sweep proves it dead and returns its
// job at once.
TEST(TimeNamespaces, Item1_ALiveWorkerInAnotherTimeNamespaceIsNeverProvenDead) {
  Watchdog dog(120s);
  QueueName name("timens");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("job"));
  Pipe report, ready, hold;
  const pid_t child = spawn_in_time_namespace(0, 100000, report.write_fd(), [&] {
    Queue mine = Queue::open(name);
    Job job;
    if (mine.try_claim(job, ClaimOptions{.lease = 600s}) != ClaimStatus::ok) return 10;
    (void)test::write_all(ready.write_fd(), "claimed\n", 8);
    char c;
    while (::read(hold.read_fd(), &c, 1) < 0 && errno == EINTR) {
    }
    return 0;
  });
  report.close_write();
  ready.close_write();
  int status = 0;
  const pid_t worker = grandchild_of(child, report.read_fd(), status);
  SKIP_IF_NOT_PERMITTED(status);
  ASSERT_NE(worker, 0) << "exit status " << status;
  ASSERT_TRUE(test::read_line(ready.read_fd(), 60s).has_value());

  const SweepResult alive = q.sweep();
  EXPECT_EQ(alive.reclaimed, 0u) << "a live worker's lease was taken from it";
  EXPECT_EQ(q.stats().leased, 1u);

  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  test::wait_child(child);
  const SweepResult dead = q.sweep();
  EXPECT_EQ(dead.reclaimed, 1u) << "the dead worker's lease was not returned";
  EXPECT_EQ(q.stats().ready, 1u);
}

// Item 1, for producers: a slot a live producer in another time namespace is
// writing (forged: WRITING with its identity, as T1 leaves it) is not freed
// under it; once it is killed, it is.
TEST(TimeNamespaces, Item1_ALiveProducerInAnotherTimeNamespaceKeepsItsSlot) {
  Watchdog dog(120s);
  QueueName name("timens");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  Pipe report, ready, hold;
  const pid_t child = spawn_in_time_namespace(0, 100000, report.write_fd(), [&] {
    Queue mine = Queue::open(name);
    SegmentView v(name);
    constexpr std::uint64_t kToken = 0x7133;
    v.hold_token(kToken);  // as the producer's handle holds its own
    v.forge(0, detail::T::reserve, detail::make_writer(kToken));
    (void)test::write_all(ready.write_fd(), "writing\n", 8);
    char c;
    while (::read(hold.read_fd(), &c, 1) < 0 && errno == EINTR) {
    }
    return 0;
  });
  report.close_write();
  ready.close_write();
  int status = 0;
  const pid_t producer = grandchild_of(child, report.read_fd(), status);
  SKIP_IF_NOT_PERMITTED(status);
  ASSERT_NE(producer, 0) << "exit status " << status;
  ASSERT_TRUE(test::read_line(ready.read_fd(), 60s).has_value());

  EXPECT_EQ(q.sweep().recovered_writes, 0u) << "a live producer's slot was freed under it";
  EXPECT_EQ(q.stats().writing, 1u);

  ASSERT_EQ(::kill(producer, SIGKILL), 0);
  test::wait_child(child);
  EXPECT_EQ(q.sweep().recovered_writes, 1u);
  EXPECT_EQ(q.stats().writing, 0u);
}

}  // namespace
}  // namespace jobring
