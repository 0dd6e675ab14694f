// jobring — the de-duplication key table: layout, states and crash analysis.
//
// Internal header. A push with a key (PushOptions::key) adds a job only if
// no job with that key is in the queue, nor was finished within the window.
// The table that remembers keys lives in the segment after the slots
// (layout.hpp); KeyTable below implements the operations (keys.cpp), and
// the entry transitions K1..K7 are constants in transitions.hpp.
//
// ============================================================================
// Table
// ============================================================================
//
//   key_capacity entries in buckets of kKeyWays (16). A key lives in one of
//   two buckets, `hash % buckets` and `second_choice(hash) % buckets`; an
//   insertion goes to the less loaded one ("the power of two choices": with
//   the table at most half full of live keys — the default size — a bucket
//   overflows with negligible odds, where one choice overflows now and then).
//   Each bucket has a version word (separate array). The lower of a key's
//   two buckets is its home: every insertion of the key bumps the home's
//   version, wherever the entry goes.
//
//   Keys are identified by a 64-bit hash (key_hash below). Two different keys
//   with one hash count as one: with n keys in the table the odds are about
//   n² / 2^65 (10^-7 for a million keys), the same trade as content-based
//   de-duplication by digest. The key's bytes travel in the job's slot, for
//   the worker (Job::key()).
//
// Entry word (std::atomic<uint64_t>): state 3 | generation 21 | aux 40, as a
// slot's word (layout.hpp `Word`); every change is a CAS that bumps the
// generation.
//
//   EMPTY       aux 0
//   CLAIMED     aux = the inserting producer's liveness token (make_writer):
//               a push is in progress, or its producer died in it
//   LIVE        aux 0: the job (entry.job_id in slot entry.slot) is in the queue
//   REMEMBERED  aux = forget-at, CLOCK_MONOTONIC ms: the job is finished
//
//   entry.hash / job_id / slot are written by the inserter while it holds the
//   entry CLAIMED and never change until the entry is claimed again. So a
//   LIVE or REMEMBERED entry's fields are whole, and a CLAIMED one's may be
//   half old, half new if its producer died (K7 below).
//
// Invariant: a key's two buckets never hold two live (CLAIMED, LIVE, or
// REMEMBERED within the window) entries with its hash. An insertion (EMPTY
// or REMEMBERED → CLAIMED, then the fields) counts only if the home version
// is unchanged since the inserter read it before its scan of both buckets:
// CAS version v → v+1 (K2). Of two producers inserting one key, both
// scan, both claim a way, and only the first version CAS succeeds; the other
// undoes its way and scans again, now seeing the winner (the version CAS
// publishes the winner's fields: release, and the loser's failed CAS or its
// new load acquires). Removing a key (→ EMPTY) needs no version change: it
// cannot make a key appear twice.
//
// ============================================================================
// Transitions and crash analysis (producer P, finisher F, anyone A)
// ============================================================================
//
//  K1 EMPTY/REMEMBERED → CLAIMED(P) (P, after its slot is WRITING and the
//     payload written). Dies before: nothing. Dies after: the entry names a
//     dead producer; A (a keyed push meeting it, or sweep) resolves it (K7).
//  K2 bucket version v → v+1 (P): the key is now P's. If the CAS fails, P
//     undoes K1 (CLAIMED → EMPTY) and scans again. Dies before/after: as K1;
//     K7 tells from the slot whether the job was ever committed.
//  K3 CLAIMED(P) → LIVE (P, after committing its slot, T3). Dies before: K7
//     finds the committed job in its slot and makes the entry LIVE.
//  K4 LIVE or CLAIMED → REMEMBERED(now + window), or EMPTY for a window of 0
//     (F: ack, purge, remove_dead, right after the slot's own transition,
//     with the job id and entry word it read before that transition; it
//     moves only that word or its K3 successor, so an entry settled by K7
//     meanwhile and claimed again (K1, fields not yet stored: they still
//     name this job) is never taken for its own). Dies before: the
//     entry names a job no longer in its slot; K7 makes it REMEMBERED (or
//     EMPTY), done by the next keyed push of the key or by sweep, so the key
//     is a duplicate for one window at most without a janitor. Dies after:
//     done.
//  K5 CLAIMED(P) → EMPTY (P undoing K1 after a lost K2, or giving up on a
//     duplicate). Dies before: K7 (its slot is still WRITING: drop). The
//     fields stay P's: the next K1 of the entry finds them there (K7).
//  K6 REMEMBERED(past forget-at) → EMPTY, or reuse by K1 (A; the window is over).
//     REMEMBERED(not yet past) → CLAIMED (K1 when neither bucket has other
//     room: the oldest remembered key is evicted and counted; if every entry
//     of both holds a live key the push answers `full` and is counted).
//  K7 resolve (A): CLAIMED by a producer proven dead: if its slot provably
//     holds the entry's job for the entry's key → LIVE; otherwise → EMPTY
//     (the job never got in, or it got in and was finished by a process that
//     also died before K4: then the key is forgotten early, so a retried push
//     adds the job again — a duplicate, never a loss). LIVE whose job is no
//     longer in its slot → REMEMBERED(now + window), or EMPTY with a window
//     of 0 (F died before K4). Dies before/after: the next A looks again; the
//     CAS from the word it judged makes a double K7 impossible. A keyed push
//     that meets its own key LIVE with the job gone does this K7 itself
//     (lookup and insert), then answers as the repaired entry says: so a key
//     whose finisher died is a duplicate for the window at most, with or
//     without a janitor.
//
//     "Provably holds" (slot_holds): the slot is committed (READY, LEASED or
//     DEAD) and its meta, read seqlock-style between two equal loads of its
//     state word, has job_id == entry.job_id, key_hash == entry.hash and
//     key_entry == this entry. The fields of a CLAIMED entry whose producer
//     died are not to be trusted: they are written after K1, three stores,
//     and before them they still hold what the entry last held (K4, K5, K6,
//     K7 leave the fields as they were). A producer dead between K1 and its
//     stores leaves any mix of its own fields and the old ones, e.g. the
//     hash of its key C with the job and slot of job J of key A (K5 left
//     them): job_id alone would make C a duplicate of J; job_id + hash would
//     still make a second LIVE entry of A from the fields of A's producer's
//     own lost K2 (it undid this entry, K5, and inserted J elsewhere). The
//     slot is the proof, because its producer wrote key_entry (only after
//     its K2 into that entry succeeded) before its commit published it, and
//     an entry whose K2 made it J's stays CLAIMED or LIVE while J is in the
//     queue (K4 and K7 move it only once J has left, K5 only before K2).
//     Clearing the fields instead cannot work: only the CLAIMED holder may
//     write them, and it may die between any two stores; K4 and K7 do not
//     own the entry (another resolver or the next K1 may act at once).
//
// A keyed push that finds its key CLAIMED by a live producer waits for it
// (K3 or K5 follow within microseconds; its death is noticed by K7), but at
// most 10 ms per try: a producer stopped between K1 and K3, or an entry
// forged to name a live process, then makes the push answer `full` (counted
// as keys_full), which PushOptions::wait retries until it runs out. It never
// answers "duplicate" for a push in progress, whose job may never exist.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/transitions.hpp"

namespace jobring::detail {

struct alignas(kKeyEntryBytes) KeyEntry {
  std::atomic<std::uint64_t> word;    // KeyState in Word's state bits (layout.hpp)
  std::atomic<std::uint64_t> hash;    // key_hash(); never 0 in a non-EMPTY entry
  std::atomic<std::uint64_t> job_id;  // the job that holds the key
  std::atomic<std::uint64_t> slot;    // its slot (bounds-checked before use)
};
static_assert(std::is_standard_layout_v<KeyEntry>);
static_assert(sizeof(KeyEntry) == kKeyEntryBytes);

// 64-bit hash of a key: 8-byte little-endian words folded with multiply and
// rotate, then a full avalanche (the splitmix64 finaliser), seeded with the
// length so that "a" and "a\0" differ. Never 0 (0 marks "no key").
[[nodiscard]] inline std::uint64_t key_hash(std::string_view key) noexcept {
  constexpr std::uint64_t k1 = 0x9e3779b97f4a7c15ull;
  constexpr std::uint64_t k2 = 0xc2b2ae3d27d4eb4full;
  auto mix = [](std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
  };
  std::uint64_t h = mix(key.size() * k1 + k2);
  std::size_t i = 0;
  for (; i + 8 <= key.size(); i += 8) {
    std::uint64_t v;
    std::memcpy(&v, key.data() + i, 8);
    h = ((h ^ mix(v + i)) * k1);
    h = (h << 27) | (h >> 37);
  }
  if (i < key.size()) {
    std::uint64_t v = 0;
    std::memcpy(&v, key.data() + i, key.size() - i);
    h = ((h ^ mix(v + i + 1)) * k2);
  }
  h = mix(h);
  return h == 0 ? 1 : h;
}

// The second bucket choice: another full mix of the hash, so that two keys
// sharing one bucket rarely share the other.
[[nodiscard]] constexpr std::uint64_t second_choice(std::uint64_t hash) noexcept {
  std::uint64_t x = (hash << 32 | hash >> 32) * 0xd6e8feb86659fd93ull;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ull;
  return x ^ (x >> 32);
}

struct Ring;

// What a keyed push's insertion came to.
enum class KeyInsert { none, inserted, duplicate, full, interrupted };

// The key table of one mapped queue.
class KeyTable {
 public:
  // How long a keyed push waits, per try, for another push of its key that
  // is in progress before it answers full.
  static constexpr std::uint64_t kInProgressWaitMs = 10;

  // Points the table into the mapping at `base`; `ring` is the queue's ring
  // (to tell whether a slot still holds a job).
  void attach(std::byte* base, const Geometry& g, std::uint32_t capacity, std::uint64_t window_ms,
              Ring& ring) noexcept;
  [[nodiscard]] std::uint32_t capacity() const noexcept { return capacity_; }

  // The id of a job that holds the key (LIVE, or REMEMBERED within the
  // window), if any. A LIVE entry of the key whose job has left its slot is
  // settled first (K7). CLAIMED entries are left to insert().
  [[nodiscard]] bool lookup(std::uint64_t hash, JobId& existing) noexcept;
  // True if an insert of `hash` would answer full now: every way of its
  // buckets holds a key whose job is in the queue (entries of dead finishers
  // are settled first, K7). Touches no slot: a keyed push waiting for room
  // in the table re-checks with it instead of reserving a slot and giving it
  // back, which bumps the room event it sleeps on and made it spin.
  [[nodiscard]] bool full_for(std::uint64_t hash) noexcept;
  // K1 + K2 for job `id`, which this producer (`writer`) holds WRITING in
  // `slot`. On `inserted`, `entry`/`claimed` name the entry and its CLAIMED
  // word (for make_live); on `duplicate`, `existing` is the job that holds it.
  KeyInsert insert(std::uint64_t hash, JobId id, std::uint32_t slot, std::uint64_t writer,
                   std::uint32_t& entry, Word& claimed, JobId& existing) noexcept;
  // K3, after the job's commit. Fails harmlessly if a finisher came first.
  void make_live(std::uint32_t entry, Word claimed) noexcept;
  // Entry e's word while job `id` is still in its slot: a finisher reads it
  // before the slot's own transition (ack, purge), as it reads `hash` and
  // `e` from the slot. Word{} (EMPTY) for no key or a hostile index.
  [[nodiscard]] Word held_word(std::uint64_t e, std::uint64_t hash) const noexcept;
  // K4: job `id`, which held entry `e` with `hash` as the word `held`, has
  // left the queue (ack, purge, remove_dead): remember the key for the
  // window. Moves the entry only from `held` or its K3 successor, never
  // from a later incarnation of the entry.
  void finish(std::uint64_t e, std::uint64_t hash, JobId id, Word held) noexcept;
  // K7 (and K6's expiry) on entry e: settles it if its producer or finisher
  // died, or its window is over. True if the entry changed.
  bool resolve(std::uint32_t e, std::uint64_t now) noexcept;
  // resolve() on every entry in use (sweep).
  void resolve_all(std::uint64_t now) noexcept;
  // Entries holding keys of jobs in the queue (CLAIMED, LIVE), and keys of
  // finished jobs still inside their window (stats).
  void count(std::uint64_t now, std::uint64_t& live, std::uint64_t& remembered) const noexcept;

 private:
  struct Snapshot {
    Word w{};
    std::uint64_t hash = 0;
    JobId job_id = 0;
    std::uint64_t slot = 0;
  };
  struct Buckets {
    std::uint32_t first[2];  // first entry of each bucket
    std::uint32_t count;     // 1 when both choices are the same bucket
    std::uint32_t home;      // bucket index whose version K2 bumps
  };
  struct Scan;  // what one look at a key's buckets found (keys.cpp)

  [[nodiscard]] bool read(std::uint32_t e, Snapshot& k) const noexcept;
  [[nodiscard]] Buckets buckets_of(std::uint64_t hash) const noexcept;
  [[nodiscard]] Word forgotten_at(Word from, std::uint64_t now) const noexcept;
  [[nodiscard]] static bool expired(Word w, std::uint64_t now) noexcept;
  enum class Held { no, yes, unknown };
  [[nodiscard]] Held slot_holds(std::uint32_t e, const Snapshot& k) const noexcept;
  bool finish_for(std::uint32_t e, Word live, std::uint64_t now) noexcept;
  bool scan(std::uint64_t hash, const Buckets& kb, std::uint64_t now, Scan& found, JobId& existing) noexcept;
  bool settle_unsettled(const Buckets& kb, std::uint64_t now) noexcept;

  std::atomic<std::uint64_t>* versions_ = nullptr;  // one per bucket
  KeyEntry* entries_ = nullptr;
  std::uint32_t capacity_ = 0;  // a multiple of kKeyWays
  std::uint64_t window_ms_ = 0;
  Ring* ring_ = nullptr;
};

}  // namespace jobring::detail
