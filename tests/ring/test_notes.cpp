// Unit tests of a dead job's note (issue 14 item 6): the failure time and
// the error text kept with a dead job (layout.hpp, SlotNote; notes.cpp), as
// peek(JobState::dead) reports them in JobInfo::failed_ms_ago and
// JobInfo::error. Each test names what would fail without the guarantee.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "common/clock.hpp"
#include "jobring/queue.hpp"
#include "ring/core.hpp"
#include "ring/transitions.hpp"
#include "support/segment_view.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::QueueName;
using test::SegmentView;

// The one dead job of queue q.
JobInfo dead_job(const Queue& q) {
  const auto dead = q.peek(JobState::dead);
  if (dead.size() != 1) throw std::logic_error("expected one dead job, found " + std::to_string(dead.size()));
  return dead[0];
}

// Claims the one job of q and releases it with `error`.
LeaseStatus claim_and_release(Queue& q, std::string_view error) {
  auto job = q.try_claim();
  if (!job) throw std::logic_error("nothing to claim");
  return q.release(job->lease, 0ms, error);
}

// Item 6: a release that dead-letters keeps its error text and the time.
// Fails without the note (error empty, failed_ms_ago unset). The age is a
// lower bound only: after 30 ms it is at least 30 ms.
TEST(Notes, ReleaseOnTheLastAttemptKeepsTheErrorAndTheTime) {
  QueueName name("notes");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("poison"));
  ASSERT_EQ(claim_and_release(q, "ValueError: no such user"), LeaseStatus::ok);
  std::this_thread::sleep_for(30ms);
  const JobInfo j = dead_job(q);
  EXPECT_EQ(j.error, "ValueError: no such user");
  ASSERT_TRUE(j.failed_ms_ago.has_value());
  EXPECT_GE(*j.failed_ms_ago, 30u);
}

// Item 6: only the release that dead-letters writes the note (the last
// attempt's error, not the first's); a release with no text says how the job
// died. Fails if a non-final release wrote a note that stuck.
TEST(Notes, TheLastAttemptsErrorIsKeptAndNoTextSaysReleased) {
  QueueName name("notes-last");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 2});
  ASSERT_TRUE(q.push("a"));
  ASSERT_EQ(claim_and_release(q, "first failure"), LeaseStatus::ok);
  EXPECT_EQ(q.stats().dead, 0u);
  ASSERT_EQ(claim_and_release(q, "second failure"), LeaseStatus::ok);
  EXPECT_EQ(dead_job(q).error, "second failure");

  QueueName other("notes-plain");
  Queue p = Queue::create(other, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(p.push("b"));
  ASSERT_EQ(claim_and_release(p, ""), LeaseStatus::ok);
  EXPECT_EQ(dead_job(p).error, "released after 1 attempt");
}

// Item 6: a lease that runs out on the last attempt is dead-lettered by the
// next claim with "lease expired after N attempts". Fails without the note.
TEST(Notes, ExpiryFoundByAClaimSaysTheLeaseExpired) {
  QueueName name("notes-expiry");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("slow"));
  ASSERT_TRUE(q.try_claim({.lease = 1ms}));
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(q.try_claim().has_value());
  const JobInfo j = dead_job(q);
  EXPECT_EQ(j.error, "lease expired after 1 attempt");
  EXPECT_TRUE(j.failed_ms_ago.has_value());
}

// Item 6: sweep dead-letters an expired last lease ("lease expired") and the
// last lease of an owner proven dead ("owner died"). Fails without the notes.
TEST(Notes, SweepSaysTheLeaseExpiredOrTheOwnerDied) {
  QueueName expiring("notes-sweep-expiry");
  Queue q = Queue::create(expiring, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("slow"));
  ASSERT_TRUE(q.try_claim({.lease = 1ms}));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(q.sweep().dead_lettered, 1u);
  EXPECT_EQ(dead_job(q).error, "lease expired after 1 attempt");

  QueueName orphaned("notes-sweep-owner");
  Queue p = Queue::create(orphaned, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(p.push("orphan"));
  auto job = p.try_claim({.lease = 1h});
  ASSERT_TRUE(job);
  // The owner record forged to name a process that is gone.
  SegmentView v(orphaned);
  v.meta(job->lease.slot)
      .owner.store(detail::make_owner(detail::Word{job->lease.token}.gen(), test::kDeadToken));
  EXPECT_EQ(p.sweep().dead_lettered, 1u);
  EXPECT_EQ(dead_job(p).error, "owner died after 1 attempt");
}

// Item 6: a text over kMaxErrorLength is cut on a UTF-8 boundary, never
// inside a character. Fails if the note kept a broken sequence or overflowed.
TEST(Notes, ALongErrorIsCutOnAUtf8Boundary) {
  QueueName name("notes-long");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("x"));
  std::string text = "a";
  for (int i = 0; i < 100; ++i) text += "\xc3\xa9";  // é: 2 bytes; 201 in all
  ASSERT_EQ(claim_and_release(q, text), LeaseStatus::ok);
  const std::string kept = dead_job(q).error;
  // 112 bytes would end after the first byte of an é: cut to 111.
  EXPECT_EQ(kept.size(), kMaxErrorLength - 1);
  EXPECT_EQ(kept, text.substr(0, kMaxErrorLength - 1));
  static_assert(utf8_prefix("ab", 5) == "ab");
  static_assert(utf8_prefix("a\xc3\xa9", 2) == "a");
  static_assert(utf8_prefix("\x80\x80\x80\x80\x80", 2).size() == 2, "not UTF-8: cut where asked");
}

// Item 6 (guarantee 9, hostile segment): a forged length is clamped to the
// area; a note tagged for another word is not shown; a failure time in the
// future reads as 0 ms ago. Fails if peek read past the note area (ASan)
// or showed another death's note.
TEST(Notes, ForgedNotesAreClampedOrIgnored) {
  QueueName name("notes-forged");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("x"));
  ASSERT_EQ(claim_and_release(q, "real"), LeaseStatus::ok);
  SegmentView v(name);
  const std::uint32_t i = v.find(detail::State::dead);
  ASSERT_LT(i, v.capacity());
  detail::SlotNote* note = &v.note(i);
  const std::uint64_t gen = v.word(i).gen();
  note->size.store(detail::make_note_word(gen, detail::kAuxMask));
  EXPECT_EQ(dead_job(q).error.size(), kMaxErrorLength);
  note->stamp.store(detail::make_note_word(gen, detail::now_ms() + 3'600'000));
  ASSERT_TRUE(dead_job(q).failed_ms_ago.has_value());
  EXPECT_EQ(*dead_job(q).failed_ms_ago, 0u);
  note->stamp.store(detail::make_note_word(gen + 5, 1));
  EXPECT_FALSE(dead_job(q).failed_ms_ago.has_value());
  EXPECT_TRUE(dead_job(q).error.empty());
}

// Item 6: a requeuer that locked the dead slot (T9 requeue-lock) and died
// leaves the job DEAD one generation past its note: still shown. Fails if
// the reader accepted only the exact generation.
TEST(Notes, ANoteSurvivesARequeuerThatDiedHoldingTheLock) {
  QueueName name("notes-lock");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  ASSERT_TRUE(q.push("x"));
  ASSERT_EQ(claim_and_release(q, "why"), LeaseStatus::ok);
  SegmentView v(name);
  v.forge(v.find(detail::State::dead), detail::T::requeue_lock, 0);
  EXPECT_EQ(dead_job(q).error, "why");
}

// Item 6: a job requeued and dead again shows its new death, not the old.
TEST(Notes, ASecondDeathReplacesTheNote) {
  QueueName name("notes-again");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 1});
  const auto r = q.push("x");
  ASSERT_TRUE(r);
  ASSERT_EQ(claim_and_release(q, "first death"), LeaseStatus::ok);
  ASSERT_TRUE(q.requeue(r.id));
  ASSERT_EQ(claim_and_release(q, "second death"), LeaseStatus::ok);
  EXPECT_EQ(dead_job(q).error, "second death");
}

// Item 6 (guarantee 4, fencing): a holder whose lease was taken over writes
// no note — its release is lease_lost before touching the slot. Fails if a
// stale release scribbled its text over the dead job's note (the stale
// note's tag is one generation behind the DEAD word, which readers accept).
TEST(Notes, AStaleReleaseWritesNoNote) {
  QueueName name("notes-stale");
  Queue q = Queue::create(name, {.capacity = 4, .max_attempts = 2});
  ASSERT_TRUE(q.push("x"));
  auto stale = q.try_claim({.lease = 1ms});
  ASSERT_TRUE(stale);
  std::this_thread::sleep_for(20ms);
  auto fresh = q.try_claim({.lease = 1h});  // takes the expired lease over: attempt 2
  ASSERT_TRUE(fresh);
  ASSERT_EQ(fresh->attempt, 2u);
  ASSERT_EQ(q.release(fresh->lease, 0ms, "fresh"), LeaseStatus::ok);
  EXPECT_EQ(q.release(stale->lease, 0ms, "stale"), LeaseStatus::lease_lost);
  EXPECT_EQ(dead_job(q).error, "fresh");
}

// Review of item 6: a writer stalled since it read an older word of the
// slot (a sweep or a claimer about to dead-letter job A, paused while A was
// acked and job B died in the slot) must neither garble nor hide B's note.
// It is played here by calling write_note with A's DEAD word, as the stalled
// writer would on resuming. Fails without the stamp claim (the note showed
// A's text, then, once A's tags landed, nothing at all). Also: a note whose
// stamp is busy (a writer died holding it) is not shown, and the next
// writer of that death takes it over.
TEST(Notes, AStaleWriterLeavesALaterDeathsNoteAlone) {
  QueueName name("notes-stale-writer");
  Queue q = Queue::create(name, {.capacity = 1, .max_attempts = 1});
  ASSERT_TRUE(q.push("A"));
  auto a = q.try_claim();
  ASSERT_TRUE(a);
  SegmentView v(name);
  const std::uint32_t i = a->lease.slot;
  // The word the stalled writer read: A's lease; it would write A's death.
  const detail::Word stale_dead = detail::T::dead_letter.target(v.word(i), 0);
  ASSERT_EQ(q.ack(a->lease), LeaseStatus::ok);
  ASSERT_TRUE(q.push("B"));
  ASSERT_EQ(claim_and_release(q, "B's own reason"), LeaseStatus::ok);
  ASSERT_EQ(v.find(detail::State::dead), i) << "B reuses A's slot (capacity 1)";
  detail::write_note(v.note(i), stale_dead, detail::now_ms(), "A's stale reason");
  EXPECT_EQ(dead_job(q).error, "B's own reason");
  // A writer of B's death that died holding the note: not shown...
  const detail::Word dead = v.word(i);
  v.note(i).stamp.store(detail::make_note_word(dead.gen(), detail::kNoteBusy));
  EXPECT_FALSE(dead_job(q).failed_ms_ago.has_value());
  // ...until another writer of that death writes it.
  detail::write_note(v.note(i), dead, detail::now_ms(), "rewritten");
  EXPECT_EQ(dead_job(q).error, "rewritten");
}

// Item 6: a claim that quarantines a slot with a corrupt payload length says
// so in the note. Fails without the note.
TEST(Notes, AQuarantinedSlotSaysWhy) {
  QueueName name("notes-quarantine");
  Queue q = Queue::create(name, {.capacity = 4, .max_payload = 16});
  ASSERT_TRUE(q.push("x"));
  SegmentView v(name);
  v.meta(v.find(detail::State::ready)).length.store(1000);
  EXPECT_FALSE(q.try_claim().has_value());
  EXPECT_EQ(dead_job(q).error, "quarantined: payload length 1000 over max_payload 16");
}

}  // namespace
}  // namespace jobring
