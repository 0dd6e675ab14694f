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

// Relaxed stores, all of them: the caller's T8 CAS (acq_rel) right after
// publishes them to every reader that acquires the DEAD word it writes.
// Dies between any two stores, or before the CAS: the job is not DEAD (the
// CAS never ran), and a note tagged with a generation that is not a DEAD
// word's is never shown. The tags go last, so that a reader (which checks
// them) meets a half-written text only under racing writers — the garbled
// case layout.hpp allows.
void write_note(SlotNote& n, Word dead, std::uint64_t now, std::string_view text) noexcept {
  const std::string_view cut = utf8_prefix(text, kMaxNoteBytes);
  char buf[kMaxNoteBytes] = {};
  std::memcpy(buf, cut.data(), cut.size());
  for (std::size_t w = 0; w < std::size(n.text); ++w) {
    std::uint64_t word = 0;
    std::memcpy(&word, buf + w * 8, 8);
    n.text[w].store(word, std::memory_order_relaxed);
  }
  n.size.store(make_note_word(dead.gen(), cut.size()), std::memory_order_relaxed);
  n.stamp.store(make_note_word(dead.gen(), now), std::memory_order_relaxed);
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
  const std::uint64_t stamp = n.stamp.load(std::memory_order_relaxed);
  const std::uint64_t size = n.size.load(std::memory_order_relaxed);
  // The note of this death, or of this job's death before a requeuer locked
  // the word and died (layout.hpp); both words tagged alike.
  const std::uint64_t gen = note_gen(stamp);
  const bool ours = gen == w.gen() || ((gen + 1) & kGenMask) == w.gen();
  if (!ours || note_gen(size) != gen) return false;
  char buf[kMaxNoteBytes];
  for (std::size_t i = 0; i < std::size(n.text); ++i) {
    const std::uint64_t word = n.text[i].load(std::memory_order_relaxed);
    std::memcpy(buf + i * 8, &word, 8);
  }
  // Clamped: a hostile or garbled length never reads past the area.
  text.assign(buf, std::min<std::uint64_t>(note_value(size), kMaxNoteBytes));
  failed_at = note_value(stamp);
  return true;
}

}  // namespace jobring::detail
