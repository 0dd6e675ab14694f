// De-duplication keys (PushOptions::key; lib/keys.hpp): one job per key
// while it is in the queue and for the window after its ack; the table's
// bounds and eviction; and the crash states K1..K7 (forged, and by SIGKILL).
#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/keys.hpp"
#include "ring/layout.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimStatus;
using jobring::errc;
using jobring::Job;
using jobring::JobId;
using jobring::JobState;
using jobring::LeaseStatus;
using jobring::milliseconds;
using jobring::Options;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::PushResult;
using jobring::PushStatus;
using jobring::Queue;
using jobring::detail::KeyState;
using jobring::detail::State;
using jobring::detail::Word;
using jobring::test::dead_pid;
using jobring::test::QueueName;
using jobring::test::SegmentView;
using jobring::test::Watchdog;

Options opts(std::uint32_t capacity = 16, milliseconds window = 60'000ms, std::uint32_t keys = 0) {
  Options o;
  o.capacity = capacity;
  o.max_payload = 64;
  o.default_lease = 60'000ms;
  o.dedup_window = window;
  o.dedup_keys = keys;
  return o;
}

PushResult push_key(Queue& q, const std::string& key, const std::string& payload = "p",
                    milliseconds delay = 0ms) {
  PushOptions p;
  p.key = key;
  p.delay = delay;
  return q.push(payload, p);
}

// ---------------------------------------------------------------------------
// Behaviour

// The same key pushed twice yields one job; the second push returns its id.
TEST(Dedup, SameKeyTwiceIsOneJob) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts());
  const PushResult a = push_key(q, "welcome-email:42", "first");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a.duplicate);
  const PushResult b = push_key(q, "welcome-email:42", "second");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b.duplicate);
  EXPECT_EQ(b.id, a.id);
  const auto s = q.stats();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.pushed, 1u);
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(s.keys_live, 1u);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "first");  // the duplicate's payload never got in
  EXPECT_EQ(q.try_claim(job), ClaimStatus::empty);
}

// Different keys are different jobs; a job without a key is never a duplicate.
TEST(Dedup, DifferentKeysAndUnkeyedAreSeparateJobs) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts());
  std::set<JobId> ids;
  for (const char* k : {"a", "b", "ab", "ba", "a\0"}) ids.insert(push_key(q, k).id);
  ids.insert(push_key(q, std::string("a\0", 2)).id);  // another byte: another key
  ids.insert(q.push("x").id);
  ids.insert(q.push("x").id);
  EXPECT_EQ(ids.size(), 7u);  // "a\0" as a C string is "a": a duplicate of the first
  EXPECT_EQ(q.stats().ready, 7u);
}

// The worker sees the key (Job::key()), and no key for an unkeyed job, also
// when the Job object is reused.
TEST(Dedup, WorkerSeesTheKey) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts());
  const std::string longest(jobring::kMaxKeyLength, 'k');
  ASSERT_TRUE(push_key(q, "invoice:2026-11"));
  ASSERT_TRUE(q.push("plain"));
  ASSERT_TRUE(push_key(q, longest));
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), "invoice:2026-11");
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "plain");
  EXPECT_EQ(job.key(), "");
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), longest);
}

// A key is a duplicate while its job is ready, delayed, leased, released or
// dead — everywhere in the queue.
TEST(Dedup, DuplicateInEveryStateOfTheJob) {
  QueueName name("dedup");
  Options o = opts();
  o.max_attempts = 1;
  Queue q = Queue::create(name, o);
  const JobId delayed = push_key(q, "d", "p", 60'000ms).id;
  EXPECT_TRUE(push_key(q, "d").duplicate);
  const JobId id = push_key(q, "k").id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(job.id, id);
  EXPECT_EQ(push_key(q, "k").id, id);  // leased
  EXPECT_TRUE(push_key(q, "k").duplicate);
  ASSERT_EQ(q.release(job.lease), LeaseStatus::ok);  // attempts used up: dead
  ASSERT_EQ(q.stats().dead, 1u);
  const PushResult r = push_key(q, "k");
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.id, id);
  ASSERT_TRUE(q.requeue(id));
  EXPECT_TRUE(push_key(q, "k").duplicate);
  EXPECT_EQ(push_key(q, "d").id, delayed);
  EXPECT_EQ(q.stats().pushed, 2u);
}

// After the ack the key is remembered for the window: a push within it is a
// duplicate (of the acked job), a push after it adds the job again.
TEST(Dedup, RememberedForTheWindowAfterAck) {
  Watchdog wd(60s, "Dedup.RememberedForTheWindowAfterAck");
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(16, 300ms));
  const JobId first = push_key(q, "charge:7").id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  const std::uint64_t before_ack = jobring::detail::now_ms();
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const PushResult again = push_key(q, "charge:7");
  // Within the window it must be a duplicate; only a machine stalled for
  // 300 ms between the two calls may see it accepted (then nothing to check).
  if (jobring::detail::now_ms() - before_ack < 300) {
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.id, first);
    EXPECT_EQ(q.stats().ready, 0u);
  }
  // After the window: accepted (poll; the window is 300 ms).
  PushResult later;
  ASSERT_TRUE(jobring::test::poll_until(
      [&] {
        later = push_key(q, "charge:7");
        return !later.duplicate;
      },
      20s));
  EXPECT_NE(later.id, first);
  EXPECT_EQ(q.stats().ready, 1u);
  EXPECT_TRUE(push_key(q, "charge:7").duplicate);  // the new job holds the key
}

// The window is checked, not timed: with the default-sized window a push
// right after the ack is a duplicate for certain.
TEST(Dedup, RejectedWithinTheWindow) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(16, 3'600'000ms));
  const JobId first = push_key(q, "k").id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  for (int i = 0; i < 3; ++i) {
    const PushResult r = push_key(q, "k");
    EXPECT_TRUE(r.duplicate);
    EXPECT_EQ(r.id, first);
  }
  EXPECT_EQ(q.stats().ready, 0u);
  EXPECT_EQ(q.stats().keys_remembered, 1u);
  EXPECT_EQ(q.stats().keys_live, 0u);
}

// A window of 0 forgets the key at the ack.
TEST(Dedup, ZeroWindowForgetsAtAck) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(16, 0ms));
  const JobId first = push_key(q, "k").id;
  EXPECT_TRUE(push_key(q, "k").duplicate);  // still in the queue
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  const PushResult r = push_key(q, "k");
  EXPECT_FALSE(r.duplicate);
  EXPECT_NE(r.id, first);
}

// Purge and remove_dead finish a job like an ack: its key is remembered.
TEST(Dedup, PurgeAndRemoveDeadRememberTheKey) {
  QueueName name("dedup");
  Options o = opts();
  o.max_attempts = 1;
  Queue q = Queue::create(name, o);
  ASSERT_TRUE(push_key(q, "purged"));
  EXPECT_EQ(q.purge(PurgeWhat::ready), 1u);
  EXPECT_TRUE(push_key(q, "purged").duplicate);
  EXPECT_EQ(q.stats().ready, 0u);
  const JobId id = push_key(q, "dead").id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.release(job.lease), LeaseStatus::ok);
  ASSERT_TRUE(q.remove_dead(id));
  EXPECT_TRUE(push_key(q, "dead").duplicate);
  EXPECT_EQ(q.stats().keys_remembered, 2u);
}

// Bad calls: a key over kMaxKeyLength (the message names the limit), a key
// with push_many (keys are per job).
TEST(Dedup, BadKeysAreRefused) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts());
  const std::string too_long(jobring::kMaxKeyLength + 1, 'x');
  try {
    (void)push_key(q, too_long);
    FAIL() << "no error";
  } catch (const jobring::error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("64"), std::string::npos) << e.what();
  }
  std::error_code ec;
  PushOptions p;
  p.key = too_long;
  const std::string payload = "x";
  (void)q.push(std::as_bytes(std::span(payload)), p, ec);
  EXPECT_EQ(ec, errc::invalid_argument);
  const std::span<const std::byte> one[1] = {std::as_bytes(std::span(payload))};
  PushOptions keyed;
  keyed.key = "k";
  EXPECT_THROW((void)q.push_many(one, {}, keyed), jobring::error);
  EXPECT_EQ(q.stats().ready, 0u);
}

// Options: dedup_keys rounds up to whole buckets of 16 and survives open();
// out-of-range sizes and windows are refused.
TEST(Dedup, TableSizeOptions) {
  QueueName name("dedup");
  {
    Queue q = Queue::create(name, opts(16, 1'000ms, 17));
    EXPECT_EQ(q.options().dedup_keys, 32u);
    EXPECT_EQ(q.stats().keys_capacity, 32u);
    Queue other = Queue::open(name);
    EXPECT_EQ(other.options().dedup_keys, 32u);
    EXPECT_EQ(other.options().dedup_window, 1'000ms);
  }
  Queue::remove(name);
  {
    Queue q = Queue::create(name, opts(100));
    EXPECT_EQ(q.options().dedup_keys, 208u);  // default: 2 x capacity, rounded up to 16
  }
  Queue::remove(name);
  std::error_code ec;
  EXPECT_FALSE(Queue::create(name, opts(16, 1'000ms, 15), ec));
  EXPECT_EQ(ec, errc::invalid_options);
  EXPECT_FALSE(Queue::create(name, opts(16, 1'000ms, jobring::kMaxKeyCapacity + 1), ec));
  EXPECT_EQ(ec, errc::invalid_options);
  EXPECT_FALSE(Queue::create(name, opts(16, jobring::kMaxLease + 1ms), ec));
  EXPECT_EQ(ec, errc::invalid_options);
}

// A full table: with one bucket (16 entries) whose every key is live, a 17th
// key is refused as full (counted), nothing is lost, and the ring is not
// changed; once a job is acked its remembered key is the one evicted.
TEST(Dedup, FullTableRefusesThenEvictsTheOldestRemembered) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(32, 3'600'000ms, 16));
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(push_key(q, "k" + std::to_string(i)));
  const PushResult r = push_key(q, "k16");
  EXPECT_EQ(r.status, PushStatus::full);
  auto s = q.stats();
  EXPECT_EQ(s.keys_full, 1u);
  EXPECT_EQ(s.ready, 16u);
  EXPECT_EQ(s.free, 16u);  // the slot taken for the refused push was given back
  // Ack k0 then k1 (distinct milliseconds, so the order is known).
  Job job;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    ASSERT_EQ(job.key(), "k" + std::to_string(i));
    ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
    std::this_thread::sleep_for(3ms);
  }
  const PushResult k16 = push_key(q, "k16");
  ASSERT_TRUE(k16);
  EXPECT_FALSE(k16.duplicate);
  s = q.stats();
  EXPECT_EQ(s.keys_evicted, 1u);
  // k0 (the oldest remembered) was evicted: it is accepted again; k1 is still remembered.
  EXPECT_TRUE(push_key(q, "k1").duplicate);
  const PushResult k0 = push_key(q, "k0");
  EXPECT_FALSE(k0.duplicate);
  EXPECT_EQ(q.stats().keys_evicted, 2u);  // k1 went for k0
  // k1 was evicted, and every entry holds a live key now: the table is full.
  EXPECT_EQ(push_key(q, "k1").status, PushStatus::full);
  EXPECT_EQ(q.stats().keys_full, 2u);
}

// A keyed push waits for room like any push (PushOptions::wait), and a
// duplicate is answered at once even when the ring is full.
TEST(Dedup, DuplicateAnsweredWhenTheRingIsFull) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(2));
  const JobId a = push_key(q, "a").id;
  ASSERT_TRUE(push_key(q, "b"));
  EXPECT_EQ(push_key(q, "c").status, PushStatus::full);
  const PushResult dup = push_key(q, "a");
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.id, a);
}

// ---------------------------------------------------------------------------
// Forged crash states (keys.hpp K1..K7)

// K1/K2, producer died mid-insert: its entry CLAIMED by a dead PID and its
// slot WRITING by the same dead producer. The key is not stuck: the next push
// of it adds the job, and the dead producer's slot is freed.
TEST(DedupForged, ProducerDiedBeforeCommitLeavesNoStuckKey) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(4));
  const std::uint64_t hash = jobring::detail::key_hash("stuck?");
  ASSERT_TRUE(push_key(q, "stuck?"));
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  const std::uint32_t slot = static_cast<std::uint32_t>(v.key(e).slot.load());
  // Rewrite as the dead producer would have left it: slot WRITING, entry CLAIMED.
  const std::uint64_t writer = jobring::detail::make_writer(dead_pid(), 0);
  v.step(slot, State::writing, writer);
  v.key(e).word.store(jobring::test::key_word(v.key_word(e), KeyState::claimed, writer).raw);
  const PushResult r = push_key(q, "stuck?", "again");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r.duplicate);
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "again");
  q.sweep();  // frees the half-written slot (T2)
  EXPECT_EQ(q.stats().writing, 0u);
}

// K3 not done, producer died after its commit: entry CLAIMED by a dead PID
// while its job is READY. The key stays the job's: a push is a duplicate, and
// the entry becomes LIVE.
TEST(DedupForged, ProducerDiedAfterCommitKeepsTheKey) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(4));
  const std::uint64_t hash = jobring::detail::key_hash("kept");
  const JobId id = push_key(q, "kept").id;
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  EXPECT_EQ(v.key_state(e), KeyState::live);
  v.key(e).word.store(
      jobring::test::key_word(v.key_word(e), KeyState::claimed, jobring::detail::make_writer(dead_pid(), 0))
          .raw);
  const PushResult r = push_key(q, "kept");
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(v.key_state(e), KeyState::live);
  EXPECT_EQ(q.stats().ready, 1u);
}

// K4 not done: the acker died between its ack and remembering the key. The
// entry is LIVE for a job no longer in its slot; it still counts as a
// duplicate, and sweep() makes it REMEMBERED.
TEST(DedupForged, AckerDiedBeforeRememberingTheKey) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(4));
  const std::uint64_t hash = jobring::detail::key_hash("acked");
  const JobId id = push_key(q, "acked").id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  v.step(job.lease.slot, State::free, 0);  // the ack's T6, without its K4
  ASSERT_EQ(v.key_state(e), KeyState::live);
  const PushResult r = push_key(q, "acked");
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.id, id);
  q.sweep();
  EXPECT_EQ(v.key_state(e), KeyState::remembered);
  EXPECT_EQ(q.stats().keys_remembered, 1u);
}

// A CLAIMED entry of a LIVE producer (a push in progress; here one that is
// stopped) makes a push of the same key wait a little, then answer full —
// never "duplicate" of a job that may never exist, never a wait without
// bound (keys.hpp). With PushOptions::wait the push retries until the
// producer is gone, then adds the job.
TEST(DedupForged, PushOfAKeyInProgressWaitsBoundedThenFull) {
  Watchdog wd(60s, "DedupForged.PushOfAKeyInProgressWaitsBoundedThenFull");
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(4));
  const std::uint64_t hash = jobring::detail::key_hash("slow");
  ASSERT_TRUE(push_key(q, "slow"));
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  const std::uint32_t slot = static_cast<std::uint32_t>(v.key(e).slot.load());
  // A stopped producer: alive, holding the entry and its slot.
  const pid_t stopped = jobring::test::fork_child([&] {
    ::pause();
    return 0;
  });
  const std::uint64_t writer = jobring::detail::make_writer(static_cast<std::uint32_t>(stopped), 0);
  v.step(slot, State::writing, writer);
  v.key(e).word.store(jobring::test::key_word(v.key_word(e), KeyState::claimed, writer).raw);
  // No wait: full, and the slot it took for a moment is given back.
  const PushResult now = push_key(q, "slow", "now");
  EXPECT_EQ(now.status, PushStatus::full);
  EXPECT_FALSE(now.duplicate);
  EXPECT_EQ(q.stats().keys_full, 1u);
  EXPECT_EQ(q.stats().free, 3u);
  // With a wait: it keeps trying while the producer lives, then pushes.
  std::atomic<bool> returned{false};
  std::thread pusher([&] {
    PushOptions p;
    p.key = "slow";
    p.wait = 60s;
    const PushResult r = q.push("second", p);
    EXPECT_TRUE(r);
    EXPECT_FALSE(r.duplicate);
    returned = true;
  });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(returned.load()) << "pushed while another push of the key was in progress";
  jobring::test::kill_and_reap(stopped);
  pusher.join();
  EXPECT_TRUE(returned.load());
}

// A hostile entry naming a slot out of range, or in an unknown state, is
// never trusted beyond its bounds: it is settled, and pushes go on.
TEST(DedupForged, HostileEntriesAreBoundsChecked) {
  QueueName name("dedup");
  Queue q = Queue::create(name, opts(4, 60'000ms, 16));
  SegmentView v(name);
  for (std::uint32_t e = 0; e < 16; ++e) {
    auto& en = v.key(e);
    en.hash.store(jobring::detail::key_hash("k" + std::to_string(e)));
    en.slot.store(e % 2 == 0 ? 0xffffffffffffull : 3);
    en.job_id.store(1000 + e);
    en.word.store(
        Word::make(static_cast<State>(e < 8 ? KeyState::live : static_cast<KeyState>(7)), 0, 0).raw);
  }
  q.sweep();
  for (std::uint32_t e = 0; e < 16; ++e) EXPECT_NE(v.key_state(e), KeyState::live) << e;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(push_key(q, "fresh" + std::to_string(i)));
  Job job;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
    if (i == 0) {
      // A slot whose key fields are garbage: no key for the worker, and the
      // ack does not follow the bad entry index.
      v.meta(job.lease.slot).key_entry.store(0xffffffffu);
      v.meta(job.lease.slot).key_length.store(1000);
    }
    EXPECT_EQ(q.ack(job.lease), LeaseStatus::ok);
  }
  ASSERT_TRUE(push_key(q, "garbage-length"));
  v.meta(v.find(State::ready)).key_length.store(1000);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), "");
}

// ---------------------------------------------------------------------------
// Processes

// Producers in four processes push the same keys at once, in the same order
// (so that they collide on every key): exactly one job per key, and every
// push of a key got that job's id (K2: the bucket version decides).
TEST(DedupProcesses, RacingProducersMakeOneJobPerKey) {
  Watchdog wd(120s, "DedupProcesses.RacingProducersMakeOneJobPerKey");
  QueueName name("dedup");
  constexpr int kKeys = 3000;
  constexpr int kProcs = 4;
  Queue q = Queue::create(name, opts(4096, 3'600'000ms));
  jobring::test::TempFile log("dedup");
  struct Rec {
    std::int32_t key;
    std::uint64_t id;
  };
  jobring::test::ForkBarrier start;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(jobring::test::fork_child([&] {
      Queue mine = Queue::open(name);
      const int fd = log.open_append_records(sizeof(Rec));
      std::vector<Rec> recs;
      recs.reserve(kKeys);
      start.wait();
      PushOptions po;
      po.wait = 30s;  // a rival descheduled mid-insert makes a try answer full: retry
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = "key-" + std::to_string(k);
        po.key = key;
        const PushResult r = mine.push("p", po);
        if (!r) return 1;
        recs.push_back(Rec{k, r.id});
      }
      for (const Rec& r : recs)
        if (!jobring::test::append_record(fd, r)) return 2;
      return 0;
    }));
  }
  start.release();
  for (pid_t k : kids) ASSERT_EQ(jobring::test::wait_child(k), 0);
  std::map<int, std::set<std::uint64_t>> ids_of;
  for (const Rec& r : log.records<Rec>()) ids_of[r.key].insert(r.id);
  ASSERT_EQ(ids_of.size(), static_cast<std::size_t>(kKeys));
  int doubled = 0;
  for (const auto& [k, ids] : ids_of) {
    if (ids.size() == 1) continue;
    ++doubled;
    SegmentView v(name);
    const std::uint64_t h = jobring::detail::key_hash("key-" + std::to_string(k));
    std::string where;
    for (std::uint32_t e = 0; e < v.key_capacity(); ++e)
      if (v.key(e).hash.load() == h)
        where += " e" + std::to_string(e) + ":" + std::to_string(static_cast<int>(v.key_state(e))) + ":" +
                 std::to_string(v.key(e).job_id.load());
    ADD_FAILURE() << "key-" << k << " ids " << *ids.begin() << "," << *ids.rbegin() << " entries" << where
                  << " buckets " << h % (v.key_capacity() / 16) << ","
                  << jobring::detail::second_choice(h) % (v.key_capacity() / 16);
  }
  EXPECT_EQ(doubled, 0) << "keys pushed as more than one job";
  const auto s = q.stats();
  EXPECT_EQ(s.ready, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(s.duplicates, static_cast<std::uint64_t>(kKeys * (kProcs - 1)));
}

// Producers SIGKILLed at random instructions while pushing keyed jobs leave
// no stuck key: afterwards every key either adds a job or is a duplicate of a
// job that really is in the queue (nothing was acked, so nothing may be
// remembered).
TEST(DedupProcesses, KilledProducersLeaveNoStuckKey) {
  Watchdog wd(120s, "DedupProcesses.KilledProducersLeaveNoStuckKey");
  QueueName name("dedup");
  constexpr int kKeys = 64;
  Queue q = Queue::create(name, opts(128, 3'600'000ms));
  std::mt19937 rng(12345);
  for (int round = 0; round < 30; ++round) {
    const pid_t kid = jobring::test::fork_child([&]() -> int {
      Queue mine = Queue::open(name);
      std::mt19937 r(static_cast<unsigned>(::getpid()));
      for (;;) (void)push_key(mine, "key-" + std::to_string(r() % kKeys));
    });
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    jobring::test::kill_and_reap(kid);
  }
  std::set<JobId> present;
  for (const auto& info : q.peek(JobState::ready, 1000)) present.insert(info.id);
  q.sweep();
  for (int k = 0; k < kKeys; ++k) {
    const PushResult r = push_key(q, "key-" + std::to_string(k));
    ASSERT_TRUE(r) << "key-" << k;
    if (r.duplicate) {
      EXPECT_EQ(present.count(r.id), 1u) << "key-" << k << " stuck on job " << r.id;
    }
  }
  EXPECT_EQ(q.stats().ready, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(q.stats().writing, 0u);
}

}  // namespace
