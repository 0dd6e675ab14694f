// Guarantee 10: proof of death that holds on a real host (issue 13, items 3
// and 8). A process is named in the segment by its liveness token
// (lib/ring/liveness.hpp), which it holds a lock on until it dies, execs, or
// closes its queue handle:
//   - a worker or producer in another PID namespace is never proven dead
//     while it lives (its PID means nothing outside its namespace), and is
//     proven dead once it is killed;
//   - a producer or worker that execs is gone the moment the exec succeeds:
//     its half-written slot and its lease come back, although its PID and
//     start time live on in the new program;
//   - a forked child holds none of its parent's locks: the parent's death is
//     proven while the child lives.
// The PID namespace tests need CAP_SYS_ADMIN (CI runs as root): skipped with
// a message where they are not permitted.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

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

// Waits for one line from `fd`; false on EOF or after 60 s.
bool line_from(int fd) { return test::read_line(fd, 60s).has_value(); }

// Blocks until `fd` reaches EOF or the process is killed.
void hold_until_killed(int fd) {
  char c;
  while (::read(fd, &c, 1) < 0 && errno == EINTR) {
  }
  for (;;) ::pause();
}

// The liveness token in the owner record of the one leased job of `name`.
std::uint64_t owner_token_of_lease(const std::string& name) {
  SegmentView v(name);
  const std::uint32_t slot = v.find(detail::State::leased);
  if (slot == v.capacity()) return 0;
  return detail::owner_token(v.meta(slot).owner.load());
}

// A worker in a new PID namespace, with a PID there that names no process
// here, holds a lease and stays alive. A sweep here must not take the lease from it, nor free a slot it is
// writing (forged with the worker's own token, as its push leaves it); once
// it is killed, both come back at once.
TEST(PidNamespaces, Item3_ALiveProcessInAnotherPidNamespaceIsNeverProvenDead) {
  Watchdog dog(120s);
  QueueName name("pidns");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("job"));
  Pipe report, hold;
  const pid_t parent = ::getpid();
  pid_t unused_pid = 20000;  // a PID that no process has here
  while (::kill(unused_pid, 0) == 0 || errno != ESRCH) ++unused_pid;
  const pid_t child = test::fork_child([&] {
    test::die_with_parent(parent);
    if (::unshare(CLONE_NEWPID) != 0) return kNotPermitted;
    const pid_t init = test::fork_child([&] {  // PID 1 of the new namespace
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);      // dies with the child (its parent is outside the namespace)
      // The worker gets, in its namespace, a PID that no process has here, as
      // a container's processes do: a judge that took it for a PID of its own
      // namespace would find nobody and call the worker dead.
      const std::string last = std::to_string(unused_pid - 1);
      const int fd = ::open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        (void)::write(fd, last.data(), last.size());
        ::close(fd);
      }
      const pid_t worker = test::fork_child([&] {
        Queue mine = Queue::open(name);
        Job job;
        if (mine.try_claim(job, ClaimOptions{.lease = 600s}) != ClaimStatus::ok) return 10;
        (void)test::write_all(report.write_fd(), "claimed\n", 8);
        hold_until_killed(hold.read_fd());
        return 0;
      });
      return test::wait_child(worker);  // the namespace's processes die with its init
    });
    return test::wait_child(init);
  });
  report.close_write();
  hold.close_read();
  if (!line_from(report.read_fd())) {
    const int status = test::wait_child(child);
    if (status == kNotPermitted)
      GTEST_SKIP() << "PID namespaces are not permitted here (needs CAP_SYS_ADMIN)";
    FAIL() << "the worker did not claim (exit status " << status << ")";
  }
  const std::uint64_t token = owner_token_of_lease(name);
  ASSERT_NE(token, 0u);
  SegmentView v(name);
  v.forge(1, detail::T::reserve, detail::make_writer(token));  // its push in progress

  const SweepResult alive = q.sweep();
  EXPECT_EQ(alive.reclaimed, 0u) << "a live worker in another PID namespace lost its lease";
  EXPECT_EQ(alive.recovered_writes, 0u) << "a live producer in another PID namespace lost its slot";
  EXPECT_EQ(q.stats().leased, 1u);
  EXPECT_EQ(q.stats().writing, 1u);

  ASSERT_EQ(::kill(child, SIGKILL), 0);  // the namespace's init: its PID 1 dies with it
  test::wait_child(child);
  // The worker dies with the child (PDEATHSIG); the kernel drops its lock
  // when its files are closed: look until then (generous bound).
  bool back = false;
  for (int i = 0; i < 600 && !back; ++i) {
    (void)q.sweep();
    back = q.stats().ready == 1 && q.stats().writing == 0;
    if (!back) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(back) << "the dead worker's lease or slot did not come back";
}

// A process that execs keeps its PID and start time, but not its queue
// handle: its token's lock goes with the close-on-exec descriptor. Its lease
// and the slot it was writing come back at the next sweep, while the new
// program still runs.
TEST(Exec, Item8_AProcessThatExecsIsGoneAtOnce) {
  Watchdog dog(120s);
  QueueName name("exec");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("job"));
  Pipe report, go;
  const pid_t parent = ::getpid();
  const pid_t child = test::fork_child([&] {
    test::die_with_parent(parent);
    Queue mine = Queue::open(name);
    Job job;
    if (mine.try_claim(job, ClaimOptions{.lease = 600s}) != ClaimStatus::ok) return 10;
    (void)test::write_all(report.write_fd(), "claimed\n", 8);
    go.close_write();
    char c;
    while (::read(go.read_fd(), &c, 1) < 0 && errno == EINTR) {
    }
    // A daemon re-exec'ing itself to upgrade: same PID, same start time.
    ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    return 11;
  });
  report.close_write();
  go.close_read();
  ASSERT_TRUE(line_from(report.read_fd()));
  const std::uint64_t token = owner_token_of_lease(name);
  ASSERT_NE(token, 0u);
  SegmentView v(name);
  v.forge(1, detail::T::reserve, detail::make_writer(token));  // its push in progress
  EXPECT_EQ(q.sweep().reclaimed, 0u);

  ASSERT_TRUE(test::write_all(go.write_fd(), "x", 1));  // exec now
  bool back = false;
  for (int i = 0; i < 600 && !back; ++i) {
    (void)q.sweep();
    back = q.stats().ready == 1 && q.stats().writing == 0;
    if (!back) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(back) << "the lease and the slot of a process that exec'd stayed";
  EXPECT_EQ(::kill(child, 0), 0) << "the exec'd program should still run (same PID)";
  test::kill_and_reap(child);
}

// fork: a child shares its parent's open file descriptions, so without care
// it would hold the parent's lock and keep the parent "alive" after the
// parent's death. The child of a process with a queue open holds none of it:
// the parent's lease comes back while the child lives.
TEST(Fork, Item8_AChildDoesNotKeepItsParentAlive) {
  Watchdog dog(120s);
  QueueName name("fork");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("job"));
  Pipe report, hold;
  const pid_t test_process = ::getpid();
  const pid_t worker = test::fork_child([&] {
    test::die_with_parent(test_process);
    Queue mine = Queue::open(name);
    Job job;
    if (mine.try_claim(job, ClaimOptions{.lease = 600s}) != ClaimStatus::ok) return 10;
    // A child of the worker that outlives it, with the worker's descriptors.
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      std::string line = std::to_string(::getpid()) + "\n";
      (void)test::write_all(report.write_fd(), line.data(), line.size());
      hold_until_killed(hold.read_fd());
    }
    (void)test::write_all(report.write_fd(), "claimed\n", 8);
    hold_until_killed(hold.read_fd());
    return 0;
  });
  report.close_write();
  hold.close_read();
  const auto first = test::read_line(report.read_fd(), 60s);
  const auto second = test::read_line(report.read_fd(), 60s);
  ASSERT_TRUE(first && second);
  const pid_t grandchild = static_cast<pid_t>(std::stol(*first == "claimed" ? *second : *first));
  EXPECT_EQ(q.sweep().reclaimed, 0u);
  test::kill_and_reap(worker);
  EXPECT_EQ(q.sweep().reclaimed, 1u) << "the worker's child kept the dead worker alive";
  ::kill(grandchild, SIGKILL);
}

// fork at the descriptor limit: the fork handler cannot open a fresh
// description for the handle's lock descriptor, which then still shares
// the parent's. Through a shared description the kernel reports no
// conflict with the parent's own lock, so the child must not take that as
// proof that the parent is gone: its sweep leaves the parent's live lease
// alone (before the fix it took the lease back at once).
TEST(Fork, AChildAtItsDescriptorLimitJudgesNobodyGone) {
  Watchdog dog(120s);
  QueueName name("fork");
  Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("job"));
  Job job;
  ASSERT_EQ(q.try_claim(job, ClaimOptions{.lease = 600s}), ClaimStatus::ok);  // owned by this handle

  // The lowest free descriptor number as the soft limit: every open fails
  // with EMFILE until it is raised again, the fork handler's too.
  const int lowest_free = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  const pid_t child = test::fork_child([&] {
    if (::setrlimit(RLIMIT_NOFILE, &saved) != 0) return 20;
    const SweepResult r = q.sweep();  // through the handle inherited from the parent
    if (r.reclaimed != 0) return 21;
    return q.stats().leased == 1 ? 0 : 22;
  });
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GT(child, 0);
  EXPECT_EQ(test::wait_child(child), 0) << "21: the child judged its live parent gone and took its lease";
  EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
}

}  // namespace
}  // namespace jobring
