// De-duplication keys (PushOptions::key; lib/ring/keys.hpp) after crashes:
// the states K1..K7 leave when a producer or finisher dies (forged in the
// key table, and by SIGKILLs of racing producers). No key is stuck, and
// racing producers make one job per key.
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

namespace jobring {
namespace {

using namespace std::chrono_literals;
using detail::KeyState;
using detail::State;
using detail::Word;
using test::dead_pid;
using test::QueueName;
using test::SegmentView;
using test::Watchdog;
namespace T = detail::T;

// ---------------------------------------------------------------------------
// Forged crash states (keys.hpp K1..K7)

// K1/K2, producer died mid-insert: its entry CLAIMED by a dead PID and its
// slot WRITING by the same dead producer. The key is not stuck: the next push
// of it adds the job, and the dead producer's slot is freed.
TEST(DedupForged, ProducerDiedBeforeCommitLeavesNoStuckKey) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::uint64_t hash = jobring::detail::key_hash("stuck?");
  ASSERT_TRUE(q.push("p", PushOptions{.key = "stuck?"}));
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  const std::uint32_t slot = static_cast<std::uint32_t>(v.key(e).slot.load());
  // Rewrite as the dead producer would have left it: slot WRITING, entry
  // CLAIMED. Both words go back (READY to WRITING, LIVE to CLAIMED), which no
  // transition does, so they are written directly.
  const std::uint64_t writer = jobring::detail::make_writer(jobring::test::kDeadToken);
  v.step(slot, State::writing, writer);
  v.key(e).word.store(jobring::test::key_word(v.key_word(e), KeyState::claimed, writer).raw);
  const PushResult r = q.push("again", PushOptions{.key = "stuck?"});
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
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::uint64_t hash = jobring::detail::key_hash("kept");
  const JobId id = q.push("p", PushOptions{.key = "kept"}).id;
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  EXPECT_EQ(v.key_state(e), KeyState::live);
  v.key(e).word.store(jobring::test::key_word(v.key_word(e), KeyState::claimed,
                                              jobring::detail::make_writer(jobring::test::kDeadToken))
                          .raw);
  const PushResult r = q.push("p", PushOptions{.key = "kept"});
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(v.key_state(e), KeyState::live);
  EXPECT_EQ(q.stats().ready, 1u);
}

// K4 not done: the acker died between its ack and remembering the key. The
// entry is LIVE for a job no longer in its slot; the next push of the key
// settles it (K7: REMEMBERED) and, within the window, is a duplicate; sweep()
// leaves it REMEMBERED.
TEST(DedupForged, AckerDiedBeforeRememberingTheKey) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::uint64_t hash = jobring::detail::key_hash("acked");
  const JobId id = q.push("p", PushOptions{.key = "acked"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  ASSERT_LT(e, v.key_capacity());
  v.forge(job.lease.slot, T::ack, 0);  // the ack's T6, without its K4
  ASSERT_EQ(v.key_state(e), KeyState::live);
  const PushResult r = q.push("p", PushOptions{.key = "acked"});
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
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const std::uint64_t hash = jobring::detail::key_hash("slow");
  ASSERT_TRUE(q.push("p", PushOptions{.key = "slow"}));
  SegmentView v(name);
  const std::uint32_t e = v.find_key(hash);
  const std::uint32_t slot = static_cast<std::uint32_t>(v.key(e).slot.load());
  // A stopped producer: alive, holding the entry and its slot (it holds the
  // liveness token they name).
  constexpr std::uint64_t kToken = 0x51057;
  jobring::test::Pipe held;
  const pid_t stopped = jobring::test::fork_child([&] {
    SegmentView mine(name);
    mine.hold_token(kToken);
    (void)jobring::test::write_all(held.write_fd(), "held\n", 5);
    ::pause();
    return 0;
  });
  held.close_write();
  ASSERT_TRUE(jobring::test::read_line(held.read_fd(), 60s).has_value());
  const std::uint64_t writer = jobring::detail::make_writer(kToken);
  v.step(slot, State::writing, writer);
  v.key(e).word.store(jobring::test::key_word(v.key_word(e), KeyState::claimed, writer).raw);
  // No wait: full, and the slot it took for a moment is given back.
  const PushResult now = q.push("now", PushOptions{.key = "slow"});
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
  Queue q = Queue::create(
      name,
      Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_keys = 16, .dedup_window = 60s});
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
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.push("p", PushOptions{.key = "fresh" + std::to_string(i)}));
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
  ASSERT_TRUE(q.push("p", PushOptions{.key = "garbage-length"}));
  v.meta(v.find(State::ready)).key_length.store(1000);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.key(), "");
}

// An EMPTY entry of the first bucket `hash` may live in (keys.hpp), where an
// insertion of that key could have claimed a way; key_capacity() if none.
std::uint32_t empty_way_for(const SegmentView& v, std::uint64_t hash) {
  const std::uint32_t first =
      static_cast<std::uint32_t>(hash % (v.key_capacity() / detail::kKeyWays)) * detail::kKeyWays;
  for (std::uint32_t e = first; e < first + detail::kKeyWays; ++e)
    if (v.key_state(e) == KeyState::empty) return e;
  return v.key_capacity();
}

// Entries not EMPTY whose hash is `hash`.
int entries_holding(const SegmentView& v, std::uint64_t hash) {
  int n = 0;
  for (std::uint32_t e = 0; e < v.key_capacity(); ++e)
    if (v.key_state(e) != KeyState::empty && v.key(e).hash.load() == hash) ++n;
  return n;
}

// Issue 13 item 4. K5 (and K4 forget, K6, K7 drop) leave an EMPTY entry's
// fields naming the job it last held. A producer of key "c" that takes such
// an entry (K1), stores the hash and dies before storing job_id and slot
// leaves an entry CLAIMED by a dead PID whose fields name job J of key "a",
// still in the queue. K7 must not read that as "c's job got in": a push of
// "c" adds a new job, not a duplicate of J.
TEST(KeyTableCrash, Item4_HalfWrittenClaimedEntryIsNotAnotherKeysJob) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 60s});
  const PushResult j = q.push("a-job", PushOptions{.key = "a"});
  ASSERT_TRUE(j);
  SegmentView v(name);
  const std::uint32_t ea = v.find_key(detail::key_hash("a"));
  ASSERT_LT(ea, v.key_capacity());
  const std::uint64_t hash_c = detail::key_hash("c");
  const std::uint32_t ec = empty_way_for(v, hash_c);
  ASSERT_LT(ec, v.key_capacity());
  // What the entry held before (J's fields, as K5 leaves them), then K1 by
  // a producer of "c" that stored the hash and died.
  v.key(ec).job_id.store(v.key(ea).job_id.load());
  v.key(ec).slot.store(v.key(ea).slot.load());
  v.forge_key(ec, detail::K::claim, detail::make_writer(test::kDeadToken));
  v.key(ec).hash.store(hash_c);
  const PushResult c = q.push("c-job", PushOptions{.key = "c"});
  ASSERT_TRUE(c);
  EXPECT_FALSE(c.duplicate) << "key c answered as a duplicate of job " << c.id << " (key a's job is " << j.id
                            << ")";
  EXPECT_NE(c.id, j.id);
  std::set<std::string> claimed;
  Job job;
  while (q.try_claim(job) == ClaimStatus::ok) claimed.insert(std::string(job.text()));
  EXPECT_EQ(claimed, (std::set<std::string>{"a-job", "c-job"}));
}

// Issue 13 item 4, the other half-written state: the producer died after K1
// and before any field store, on an entry whose fields name job J *with J's
// own key* (J's producer lost K2 there, undid it, K5, and inserted J into
// another way). K7 must drop it, not make a second LIVE entry for "a" (which
// would outlive J's ack as a duplicate).
TEST(KeyTableCrash, Item4_ClaimedEntryWithNoFieldsWrittenIsNotASecondLiveEntry) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 0ms});
  ASSERT_TRUE(q.push("a-job", PushOptions{.key = "a"}));
  SegmentView v(name);
  const std::uint64_t hash_a = detail::key_hash("a");
  const std::uint32_t ea = v.find_key(hash_a);
  ASSERT_LT(ea, v.key_capacity());
  const std::uint32_t stale = empty_way_for(v, hash_a);
  ASSERT_LT(stale, v.key_capacity());
  v.key(stale).hash.store(hash_a);
  v.key(stale).job_id.store(v.key(ea).job_id.load());
  v.key(stale).slot.store(v.key(ea).slot.load());
  v.forge_key(stale, detail::K::claim, detail::make_writer(test::kDeadToken));
  q.sweep();
  EXPECT_EQ(entries_holding(v, hash_a), 1) << "two entries hold key a";
  EXPECT_EQ(q.stats().keys_live, 1u);
  // And the key is a's job's alone: once acked (window 0), it is free.
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(q.ack(job.lease), LeaseStatus::ok);
  EXPECT_EQ(entries_holding(v, hash_a), 0);
}

// Issue 13 item 5. The acker died between its T6 and K4 (or a purge died
// mid-way): the entry stays LIVE for a job no longer in its slot. Without a
// janitor, a keyed push meeting it repairs it (K7) and answers from the
// repaired state. Window 0: the key is free, the push adds a job.
TEST(KeyTableCrash, Item5_FinisherDiedZeroWindowPushAddsTheJob) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 0ms});
  const JobId first = q.push("first", PushOptions{.key = "k"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  SegmentView v(name);
  const std::uint32_t e = v.find_key(detail::key_hash("k"));
  ASSERT_LT(e, v.key_capacity());
  v.forge(job.lease.slot, T::ack, 0);  // the ack's T6, without its K4
  ASSERT_EQ(v.key_state(e), KeyState::live);
  const PushResult r = q.push("second", PushOptions{.key = "k"});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r.duplicate) << "a finished job's key stuck as a duplicate of job " << r.id;
  EXPECT_NE(r.id, first);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "second");
  EXPECT_EQ(q.stats().keys_live, 1u);
}

// Issue 13 item 5, window > 0: the repaired key is remembered for the window
// (from the repair: the ack's time is unknown), so a push is a duplicate of
// the finished job until the window ends, then adds a new job.
TEST(KeyTableCrash, Item5_FinisherDiedWindowEndsWithoutJanitor) {
  Watchdog wd(60s, "KeyTableCrash.Item5_FinisherDiedWindowEndsWithoutJanitor");
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 4, .max_payload = 64, .default_lease = 60s, .dedup_window = 50ms});
  const JobId first = q.push("first", PushOptions{.key = "k"}).id;
  Job job;
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  SegmentView v(name);
  v.forge(job.lease.slot, T::ack, 0);  // the ack's T6, without its K4
  const PushResult dup = q.push("p", PushOptions{.key = "k"});
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.id, first);
  PushResult later;
  ASSERT_TRUE(jobring::test::poll_until(
      [&] {
        later = q.push("later", PushOptions{.key = "k"});
        return !later.duplicate;
      },
      20s))
      << "the key of a job whose acker died is a duplicate for ever";
  EXPECT_TRUE(later);
  EXPECT_NE(later.id, first);
  ASSERT_EQ(q.try_claim(job), ClaimStatus::ok);
  EXPECT_EQ(job.text(), "later");
}

// Issue 13 item 5, the purge variant with a full ring: the push answers
// from the key table alone (no slot is free), so the repair is lookup()'s.
TEST(KeyTableCrash, Item5_PurgeDiedFullRingPushIsNotAStaleDuplicate) {
  QueueName name("dedup");
  Queue q = Queue::create(
      name, Options{.capacity = 2, .max_payload = 64, .default_lease = 60s, .dedup_window = 0ms});
  const JobId first = q.push("first", PushOptions{.key = "k"}).id;
  ASSERT_TRUE(q.push("filler"));
  SegmentView v(name);
  const std::uint32_t slot = static_cast<std::uint32_t>(v.key(v.find_key(detail::key_hash("k"))).slot.load());
  v.forge(slot, T::purge, 0);       // the purge's T9, without its K4
  ASSERT_TRUE(q.push("filler 2"));  // the ring is full again
  const PushResult r = q.push("second", PushOptions{.key = "k"});
  EXPECT_FALSE(r.duplicate) << "stale duplicate of job " << r.id << " (first " << first << ")";
  EXPECT_EQ(r.status, PushStatus::full);
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
  Queue q = Queue::create(
      name, Options{.capacity = 4096, .max_payload = 64, .default_lease = 60s, .dedup_window = 3'600'000ms});
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
  Queue q = Queue::create(
      name, Options{.capacity = 128, .max_payload = 64, .default_lease = 60s, .dedup_window = 3'600'000ms});
  std::mt19937 rng(12345);
  for (int round = 0; round < 30; ++round) {
    const pid_t kid = jobring::test::fork_child([&]() -> int {
      Queue mine = Queue::open(name);
      std::mt19937 r(static_cast<unsigned>(::getpid()));
      for (;;) (void)mine.push("p", PushOptions{.key = "key-" + std::to_string(r() % kKeys)});
    });
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    jobring::test::kill_and_reap(kid);
  }
  std::set<JobId> present;
  for (const auto& info : q.peek(JobState::ready, 1000)) present.insert(info.id);
  q.sweep();
  for (int k = 0; k < kKeys; ++k) {
    const PushResult r = q.push("p", PushOptions{.key = "key-" + std::to_string(k)});
    ASSERT_TRUE(r) << "key-" << k;
    if (r.duplicate) {
      EXPECT_EQ(present.count(r.id), 1u) << "key-" << k << " stuck on job " << r.id;
    }
  }
  EXPECT_EQ(q.stats().ready, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(q.stats().writing, 0u);
}

}  // namespace
}  // namespace jobring
