// A queue larger than the room left in /dev/shm is refused at creation with
// a message that says what to do, and leaves no file behind — instead of
// being created sparse and killing its users with SIGBUS at a later push
// (lib/ring/segment.cpp: posix_fallocate). Needs root: the test mounts a 1 MiB
// tmpfs over /dev/shm in a private mount namespace of a forked child.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "jobring/queue.hpp"
#include "support/test_support.hpp"

namespace {

using jobring::errc;
using jobring::Options;
using jobring::Queue;

TEST(ShmRoom, TooLargeForDevShmIsAClearErrorNotALaterSigbus) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small /dev/shm";
  const pid_t child = jobring::test::fork_child([] {
    if (::unshare(CLONE_NEWNS) != 0) return 77;
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 77;
    if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") != 0) return 77;
    Options o;
    o.capacity = 64;
    o.max_payload = 64 * 1024;  // 4 MiB of slots: more than the 1 MiB tmpfs
    std::error_code ec;
    auto q = Queue::create("room.big", o, ec);
    if (q) return 1;  // created: the room was not checked
    if (ec != errc::system_error) return 2;
    try {
      (void)Queue::create("room.big", o);
      return 3;
    } catch (const jobring::error& e) {
      const std::string what = e.what();
      std::fprintf(stderr, "message: %s\n", what.c_str());
      if (what.find("/dev/shm") == std::string::npos || what.find("smaller") == std::string::npos) return 4;
    }
    if (std::filesystem::exists("/dev/shm/jobring.room.big")) return 5;  // a half-made segment left
    // A queue that fits is still fine.
    o.max_payload = 1024;
    Queue small = Queue::create("room.small", o);
    if (!small.push("x")) return 6;
    Queue::remove("room.small");
    return 0;
  });
  const int rc = jobring::test::wait_child(child);
  if (rc == 77) GTEST_SKIP() << "cannot make a private mount namespace here";
  EXPECT_EQ(rc, 0) << "1 created, 2 wrong code, 3 no throw, 4 message, 5 file left, 6 small queue";
}

}  // namespace
