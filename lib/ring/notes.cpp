// jobring — a dead job's note: when and why it died (layout.hpp, SlotNote).
// Written by whoever dead-letters a job (lease.cpp release, claim.cpp,
// sweep.cpp), before its T8 CAS; read by peek (admin.cpp).

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "ring/core.hpp"

namespace jobring::detail {

static_assert(kMaxNoteBytes == kMaxErrorLength, "queue.hpp's limit is the note area's text");

// A small seqlock on the stamp word (review of issue 14 item 6): a writer
// claims the note by a CAS of the stamp to (its DEAD word's generation,
// kNoteBusy), writes the text and the size, and publishes the stamp with the
// failure time by a release store. The caller's T8 CAS (acq_rel) right after
// publishes the note with the job's death.
//  - A stale writer (stalled since it read an older word of this slot) finds
//    a note of a later death and leaves it alone: it can no longer garble or
//    hide another job's note (gen_after, as count_claim).
//  - Dies after the claim: the stamp stays busy, the reader shows nothing,
//    and the next writer (same or later generation) claims it over.
//  - Dies before the CAS of T8: the job is not DEAD, and a note tagged with a
//    generation that is no DEAD word's is never shown.
// Writers of the same death (a claimer and the old holder's release) may
// still interleave: the text may then mix theirs, bounded (layout.hpp).
void write_note(SlotNote& n, Word dead, std::uint64_t now, std::string_view text) noexcept {
  const std::uint64_t busy = make_note_word(dead.gen(), kNoteBusy);
  std::uint64_t stamp = n.stamp.load(std::memory_order_relaxed);
  do {
    if (gen_after(note_gen(stamp), dead.gen())) return;  // a later death's note
  } while (!n.stamp.compare_exchange_weak(stamp, busy, std::memory_order_relaxed, std::memory_order_relaxed));
  // Pairs with the reader's acquire fence: a reader that sees any store
  // below then sees the stamp busy (or later) on its second look.
  std::atomic_thread_fence(std::memory_order_release);
  const std::string_view cut = utf8_prefix(text, kMaxNoteBytes);
  char buf[kMaxNoteBytes] = {};
  std::memcpy(buf, cut.data(), cut.size());
  for (std::size_t w = 0; w < std::size(n.text); ++w) {
    std::uint64_t word = 0;
    std::memcpy(&word, buf + w * 8, 8);
    n.text[w].store(word, std::memory_order_relaxed);
  }
  n.size.store(make_note_word(dead.gen(), cut.size()), std::memory_order_relaxed);
  // Release: pairs with the reader's acquire load of the stamp. A failure
  // time of kNoteBusy (34 years of uptime) is stored one less.
  n.stamp.store(make_note_word(dead.gen(), std::min(now, kNoteBusy - 1)), std::memory_order_release);
}

void write_note_after(SlotNote& n, Word dead, std::uint64_t now, std::string_view what,
                      std::uint32_t attempts) noexcept {
  char buf[kMaxNoteBytes];
  const int len = std::snprintf(buf, sizeof buf, "%.*s after %u attempt%s", static_cast<int>(what.size()),
                                what.data(), attempts, attempts == 1 ? "" : "s");
  const std::size_t size = len < 0 ? 0 : std::min(static_cast<std::size_t>(len), sizeof buf - 1);
  write_note(n, dead, now, std::string_view(buf, size));
}

bool read_note(const SlotNote& n, Word w, std::uint64_t& failed_at, std::string& text) {
  // Acquire: pairs with the writer's release store of the stamp.
  const std::uint64_t stamp = n.stamp.load(std::memory_order_acquire);
  const std::uint64_t size = n.size.load(std::memory_order_relaxed);
  // The note of this death, or of this job's death before a requeuer locked
  // the word and died (layout.hpp); both words tagged alike, and not busy.
  const std::uint64_t gen = note_gen(stamp);
  const bool ours = gen == w.gen() || ((gen + 1) & kGenMask) == w.gen();
  if (!ours || note_gen(size) != gen || note_value(stamp) == kNoteBusy) return false;
  char buf[kMaxNoteBytes];
  for (std::size_t i = 0; i < std::size(n.text); ++i) {
    const std::uint64_t word = n.text[i].load(std::memory_order_relaxed);
    std::memcpy(buf + i * 8, &word, 8);
  }
  // Pairs with the writer's release fence after its claim: if a writer's
  // text store was read above, its busy stamp is seen here.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (n.stamp.load(std::memory_order_relaxed) != stamp) return false;  // rewritten while read
  // Clamped: a hostile or garbled length never reads past the area.
  text.assign(buf, std::min<std::uint64_t>(note_value(size), kMaxNoteBytes));
  failed_at = note_value(stamp);
  return true;
}

}  // namespace jobring::detail
