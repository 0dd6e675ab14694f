// A creator killed while creating (issue 13 item 9, guarantee 10: "a creator
// killed while creating ... never a wedged name"). What a dead creator can
// leave at /dev/shm/jobring.NAME — nothing, or, from an older jobring that
// built the segment under its real name, a 0-byte file or a segment whose
// header was never published — must not make the name unusable:
// open_or_create replaces what a proven-dead creator left and gives a
// working queue, and never replaces what a live creator is still building.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::dead_pid;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;

// Makes /dev/shm/jobring.NAME a 0-byte file last modified `age` ago: what an
// older jobring left when its creator died between shm_open and ftruncate.
void forge_zero_byte(const std::string& name, std::chrono::seconds age) {
  const std::string path = segment_path(name);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  timespec times[2]{};
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= age.count();
  times[1] = times[0];
  ASSERT_EQ(::futimens(fd, times), 0);
  ::close(fd);
}

// A queue works end to end: push, claim, ack.
void expect_working(Queue& q) {
  ASSERT_TRUE(q.push("after recovery"));
  auto job = q.try_claim();
  ASSERT_TRUE(job);
  EXPECT_EQ(job->text(), "after recovery");
  EXPECT_EQ(q.ack(job->lease), LeaseStatus::ok);
}

// Entries of /dev/shm other than the queue's own file whose name contains
// `name`: private files a creator would have left behind.
std::vector<std::string> leftovers_of(const std::string& name) {
  std::vector<std::string> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const std::string file = e->d_name;
    if (file != "jobring." + name && file.find(name) != std::string::npos) out.push_back(file);
  }
  ::closedir(dir);
  return out;
}

// Issue 13 item 9: a 0-byte segment file left by a creator that died between
// shm_open and ftruncate (an older jobring built segments under their real
// names). It records no creator; once it is older than any creation takes,
// open_or_create replaces it (both forms) and the queue works. A fresh
// 0-byte file may be a live creator at work: it is not replaced, and the
// error says what to do.
// Fails if open_or_create reports incomplete_segment for the stale file (the
// name wedged until someone runs `jobring rm`).
TEST(CreateCrash, Item9_StaleZeroByteFileIsReplaced) {
  Watchdog wd(60s, "CreateCrash.Item9_StaleZeroByteFileIsReplaced");
  {
    QueueName name("zero");
    forge_zero_byte(name, 1h);
    std::error_code ec;
    auto q = Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 64}, ec);
    ASSERT_TRUE(q.has_value()) << ec.message();
    expect_working(*q);
    EXPECT_EQ(Queue::open(name).options().capacity, 4u);
  }
  {
    QueueName name("zero");
    forge_zero_byte(name, 1h);
    Queue q = Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 64});
    expect_working(q);
  }
  {
    QueueName name("zero");
    forge_zero_byte(name, 0s);
    std::error_code ec;
    EXPECT_FALSE(Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 64}, ec).has_value());
    EXPECT_EQ(ec, errc::incomplete_segment) << ec.message();
    try {
      (void)Queue::open_or_create(name, Options{.capacity = 4, .max_payload = 64});
      ADD_FAILURE() << "open_or_create took a fresh 0-byte file";
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find("jobring rm"), std::string::npos) << e.what();
    }
    struct stat st {};
    ASSERT_EQ(::stat(segment_path(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 0) << "a possibly live creator's file was replaced";
  }
}

// Issue 13 item 9: a full-size segment whose header was never published
// (init not done) and whose recorded creator is proven dead is replaced by
// open_or_create; one whose creator is alive (this process) is left alone.
// Fails if open_or_create reports incomplete_segment for the dead creator's
// segment, or replaces the live one's.
TEST(CreateCrash, Item9_UnpublishedSegmentOfDeadCreatorIsReplaced) {
  Watchdog wd(60s, "CreateCrash.Item9_UnpublishedSegmentOfDeadCreatorIsReplaced");
  for (const bool thrown : {false, true}) {
    SCOPED_TRACE(thrown ? "throwing form" : "error_code form");
    QueueName name("unpub");
    (void)Queue::create(name, Options{.capacity = 2, .max_payload = 16});
    {
      SegmentView v(name);
      v.header().init.store(0);
      v.header().creator_pid = dead_pid();
    }
    const Options want{.capacity = 8, .max_payload = 64};
    std::optional<Queue> q;
    if (thrown) {
      q.emplace(Queue::open_or_create(name, want));
    } else {
      std::error_code ec;
      q = Queue::open_or_create(name, want, ec);
      ASSERT_TRUE(q.has_value()) << ec.message();
    }
    EXPECT_EQ(q->options().capacity, 8u) << "the new queue has the options asked for";
    expect_working(*q);
    EXPECT_EQ(Queue::open(name).options().capacity, 8u);
  }
  {
    QueueName name("unpub");
    (void)Queue::create(name, Options{.capacity = 2, .max_payload = 16});
    {
      SegmentView v(name);
      v.header().init.store(0);
      v.header().creator_pid = static_cast<std::uint32_t>(::getpid());
    }
    std::error_code ec;
    EXPECT_FALSE(Queue::open_or_create(name, Options{.capacity = 2, .max_payload = 16}, ec).has_value());
    EXPECT_EQ(ec, errc::incomplete_segment) << ec.message();
    SegmentView v(name);
    EXPECT_EQ(v.header().identity.capacity, 2u) << "a live creator's segment was replaced";
  }
}

// Issue 13 item 9: creators killed (SIGKILL) at random points of creating a
// queue never leave the name unusable: after each kill, open_or_create
// succeeds (no "never fully initialised") and the queue works, and
// no private file of the dead creator stays in /dev/shm.
// Fails if a kill between making the name and publishing the header leaves a
// segment that every open_or_create refuses.
TEST(CreateCrash, Item9_CreatorKilledMidCreateNeverWedgesTheName) {
  Watchdog wd(240s, "CreateCrash.Item9_CreatorKilledMidCreateNeverWedgesTheName");
  const long rounds = test::env_long("JOBRING_CREATE_KILL_ROUNDS", 60);
  // Big enough that sizing and allocating it takes a while (a wide window).
  const Options o{.capacity = 2048, .max_payload = 4000};
  std::mt19937 rng(12345);
  const pid_t parent = ::getpid();
  int killed_while_creating = 0;
  for (long round = 0; round < rounds; ++round) {
    QueueName name("ckill");
    const std::string n = name.str();
    const pid_t kid = test::fork_child([&] {
      test::die_with_parent(parent);
      std::error_code ec;
      auto q = Queue::create(n, o, ec);
      return q ? 0 : 1;
    });
    ASSERT_GT(kid, 0);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 4000));
    ::kill(kid, SIGKILL);
    if (test::wait_child(kid) == 128 + SIGKILL) ++killed_while_creating;
    std::error_code ec;
    auto q = Queue::open_or_create(n, o, ec);
    ASSERT_TRUE(q.has_value()) << "round " << round << ": " << ec.message();
    expect_working(*q);
    EXPECT_TRUE(leftovers_of(n).empty()) << "round " << round << ": " << leftovers_of(n).front();
  }
  std::printf("[ create kills ] rounds=%ld killed-while-creating=%d\n", rounds, killed_while_creating);
}

}  // namespace
}  // namespace jobring
