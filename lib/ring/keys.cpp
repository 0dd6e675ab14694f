// jobring — the de-duplication key table's operations. The table's layout,
// states and crash analysis are in keys.hpp; its transitions in
// transitions.hpp (K1..K7).

#include "ring/keys.hpp"

#include <algorithm>
#include <thread>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "ring/core.hpp"
#include "ring/wait.hpp"

namespace jobring::detail {

namespace {
constexpr std::uint32_t kNone = ~0u;
}  // namespace

void KeyTable::attach(std::byte* base, const Geometry& g, std::uint32_t capacity, std::uint64_t window_ms,
                      Ring& ring) noexcept {
  versions_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.keys_offset);
  entries_ = reinterpret_cast<KeyEntry*>(base + g.entries_offset);
  capacity_ = capacity;
  window_ms_ = window_ms;
  ring_ = &ring;
}

// Reads entry e's word and fields as one snapshot, seqlock style (the fields
// change only after a K1 CAS, which bumps the generation, followed by a
// release fence). False if the entry changed meanwhile.
bool KeyTable::read(std::uint32_t e, Snapshot& k) const noexcept {
  const KeyEntry& en = entries_[e];
  // seq_cst (an acquire on x86 and ARMv8 alike): in a keyed push's re-check
  // before it sleeps for room, this load and K4's seq_cst CAS are in one
  // total order with the sleeper's announce and the notifier's load of the
  // event word (wait.hpp), so a K4 it misses is followed by its wake-up.
  k.w = Word{en.word.load(std::memory_order_seq_cst)};
  k.hash = en.hash.load(std::memory_order_relaxed);
  k.job_id = en.job_id.load(std::memory_order_relaxed);
  k.slot = en.slot.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  return Word{en.word.load(std::memory_order_relaxed)} == k.w;
}

// K4's target from `from` at `now`: REMEMBERED until now + window, or EMPTY
// for a window of 0.
Word KeyTable::forgotten_at(Word from, std::uint64_t now) const noexcept {
  return window_ms_ == 0 ? K::forget.target(from, 0) : K::remember.target(from, now + window_ms_);
}

// A REMEMBERED entry whose window is over (or whose forget-at is corrupt).
bool KeyTable::expired(Word w, std::uint64_t now) noexcept {
  return w.aux() <= now || w.aux() - now > kMaxAhead;
}

// Does entry e's slot hold, committed (READY, LEASED or DEAD), the entry's
// job for the entry's key: job_id, key_hash and key_entry all as the entry
// says (keys.hpp K7: why all three)? The meta is read between two loads of
// the state word: the first acquire pairs with the commit (T3, release) of
// the producer that wrote it, through the release sequence every later RMW
// of the word continues; the acquire fence before the second load pairs with
// write_job()'s release fence, so a reused slot's new meta is never taken for
// the old job's when the word has not changed. While the slot changes under
// the read it retries; after many changes it answers `unknown`, and every
// caller then leaves the entry as it is.
KeyTable::Held KeyTable::slot_holds(std::uint32_t e, const Snapshot& k) const noexcept {
  const Ring& ring = *ring_;
  if (k.slot >= ring.capacity || k.hash == 0) return Held::no;  // hostile entry: no slot or key of ours
  const auto i = static_cast<std::uint32_t>(k.slot);
  const SlotMeta& m = ring.meta(i);
  for (int tries = 0; tries < 1000; ++tries) {
    const Word w{ring.state(i).load(std::memory_order_acquire)};
    if (w.state() != State::ready && w.state() != State::leased && w.state() != State::dead) return Held::no;
    const bool same = m.job_id.load(std::memory_order_relaxed) == k.job_id &&
                      m.key_hash.load(std::memory_order_relaxed) == k.hash &&
                      m.key_entry.load(std::memory_order_relaxed) == e;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (Word{ring.state(i).load(std::memory_order_relaxed)} == w) return same ? Held::yes : Held::no;
  }
  return Held::unknown;
}

// K7 on a LIVE entry (the word `live`, as the caller judged it) whose job has
// left its slot: what the finisher that died before K4 would have done,
// REMEMBERED(now + window) or EMPTY with a window of 0. The window runs from
// now: when the job left is not recorded anywhere. Fails if the entry changed
// since `live` (a finisher's K4 or another K7 came first: the same outcome).
bool KeyTable::finish_for(std::uint32_t e, Word live, std::uint64_t now) noexcept {
  const KeyTransition& t = window_ms_ == 0 ? K::forget_for : K::remember_for;
  return move(t, entries_[e].word, live, forgotten_at(live, now));
}

bool KeyTable::resolve(std::uint32_t e, std::uint64_t now) noexcept {
  Snapshot k;
  if (!read(e, k)) return true;
  auto& word = entries_[e].word;
  Word to{};
  const KeyTransition* t = nullptr;
  switch (key_state(k.w)) {
    case KeyState::empty:
      return false;
    case KeyState::claimed: {
      if (!ring_->liveness.writer_gone(writer_token(k.w.aux()))) return false;
      // The producer is dead, so its fields may be half written (keys.hpp
      // K7): only its slot can prove its job got in under this key.
      const Held held = slot_holds(e, k);
      if (held == Held::unknown) return false;
      t = held == Held::yes ? &K::keep : &K::drop;
      to = t->target(k.w, 0);
      break;
    }
    case KeyState::live:
      if (slot_holds(e, k) != Held::no) return false;
      return finish_for(e, k.w, now);
    case KeyState::remembered:
      if (!expired(k.w, now)) return false;
      t = &K::expire;
      to = t->target(k.w, 0);
      break;
    default:  // a state no jobring process writes: reset it
      t = &K::drop;
      to = t->target(k.w, 0);
      break;
  }
  return move(*t, word, k.w, to);
}

void KeyTable::resolve_all(std::uint64_t now) noexcept {
  for (std::uint32_t e = 0; e < capacity_; ++e)
    if (key_state(Word{entries_[e].word.load(std::memory_order_relaxed)}) != KeyState::empty) resolve(e, now);
}

// The two buckets a key may live in (keys.hpp), and its home: the one whose
// version serialises every insertion of this key.
KeyTable::Buckets KeyTable::buckets_of(std::uint64_t hash) const noexcept {
  const std::uint64_t n = capacity_ / kKeyWays;
  const auto b1 = static_cast<std::uint32_t>(hash % n);
  const auto b2 = static_cast<std::uint32_t>(second_choice(hash) % n);
  return Buckets{{b1 * kKeyWays, b2 * kKeyWays}, b1 == b2 ? 1u : 2u, std::min(b1, b2)};
}

bool KeyTable::lookup(std::uint64_t hash, JobId& existing) noexcept {
  const Buckets kb = buckets_of(hash);
  const std::uint64_t now = ring_->now();
  for (std::uint32_t b = 0; b < kb.count; ++b) {
    for (std::uint32_t e = kb.first[b]; e < kb.first[b] + kKeyWays; ++e) {
      // Two looks at an entry: the second after settling it (K7).
      for (int look = 0; look < 2; ++look) {
        Snapshot k;
        if (!read(e, k) || k.hash != hash) break;
        const auto st = key_state(k.w);
        if (st == KeyState::live && slot_holds(e, k) == Held::no) {
          // Its finisher died before K4 (guarantee 8: no janitor needed).
          (void)finish_for(e, k.w, now);
          continue;
        }
        if (st == KeyState::live || (st == KeyState::remembered && !expired(k.w, now))) {
          existing = k.job_id;
          return true;
        }
        break;
      }
    }
  }
  return false;
}

// Candidates for K1 that one look at a key's buckets found, each with the
// word the scan saw (K1 CASes from exactly that word): this key's own expired
// entry; an EMPTY way of each bucket; any expired or corrupt entry; the
// oldest remembered one.
struct KeyTable::Scan {
  std::uint32_t own = kNone, empty[2] = {kNone, kNone}, expired = kNone, oldest = kNone;
  Word own_w{}, empty_w[2]{}, expired_w{}, oldest_w{};
  std::uint32_t used[2] = {0, 0};
  std::uint64_t oldest_at = ~std::uint64_t{0};
  bool same_in_progress = false;  // another push of this key is between K1 and K3/K5
  bool unsettled = false;         // entries of other keys that K7 might free
  bool duplicate = false;         // a job holds the key (LIVE, or REMEMBERED within the window)
};

// One look at the key's buckets. Returns false if an entry changed under it
// (the caller looks again). A job holding the key ends the look at once:
// f.duplicate, with its id in `existing`.
bool KeyTable::scan(std::uint64_t hash, const Buckets& kb, std::uint64_t now, Scan& f,
                    JobId& existing) noexcept {
  for (std::uint32_t b = 0; b < kb.count; ++b) {
    for (std::uint32_t e = kb.first[b]; e < kb.first[b] + kKeyWays; ++e) {
      Snapshot k;
      if (!read(e, k)) return false;
      const KeyState st = key_state(k.w);
      if (st != KeyState::empty) ++f.used[b];
      switch (st) {
        case KeyState::empty:
          if (f.empty[b] == kNone) f.empty[b] = e, f.empty_w[b] = k.w;
          break;
        case KeyState::claimed:
          if (k.hash == hash) {
            // Another push of this key is in progress, or its producer died.
            if (resolve(e, now)) return false;
            f.same_in_progress = true;
          } else {
            f.unsettled = true;
          }
          break;
        case KeyState::live:
          if (k.hash == hash) {
            if (slot_holds(e, k) == Held::no) {
              // Its job left the queue and its finisher died before K4:
              // settle it (K7) and look again, which answers from the
              // settled entry (REMEMBERED within the window: duplicate).
              (void)finish_for(e, k.w, now);
              return false;
            }
            existing = k.job_id;
            f.duplicate = true;
            return true;
          }
          f.unsettled = true;
          break;
        case KeyState::remembered:
          if (expired(k.w, now)) {
            if (k.hash == hash)
              f.own = e, f.own_w = k.w;
            else if (f.expired == kNone)
              f.expired = e, f.expired_w = k.w;
          } else if (k.hash == hash) {
            existing = k.job_id;
            f.duplicate = true;
            return true;
          } else if (k.w.aux() < f.oldest_at) {
            f.oldest = e, f.oldest_w = k.w, f.oldest_at = k.w.aux();
          }
          break;
        default:  // corrupt: reusable
          if (f.expired == kNone) f.expired = e, f.expired_w = k.w;
          break;
      }
    }
  }
  return true;
}

// No free way: K7 on both buckets. True if an entry changed.
bool KeyTable::settle_unsettled(const Buckets& kb, std::uint64_t now) noexcept {
  bool freed = false;
  for (std::uint32_t b = 0; b < kb.count; ++b)
    for (std::uint32_t e = kb.first[b]; e < kb.first[b] + kKeyWays; ++e) freed |= resolve(e, now);
  return freed;
}

bool KeyTable::full_for(std::uint64_t hash) noexcept {
  const Buckets kb = buckets_of(hash);
  for (;;) {
    const std::uint64_t now = ring_->now();
    Scan f;
    JobId existing = 0;
    if (!scan(hash, kb, now, f, existing)) continue;
    // Anything insert() could use or would wait for: not full.
    if (f.duplicate || f.same_in_progress || f.own != kNone || f.empty[0] != kNone || f.empty[1] != kNone ||
        f.expired != kNone || f.oldest != kNone)
      return false;
    if (f.unsettled && settle_unsettled(kb, now)) continue;
    return true;
  }
}

KeyInsert KeyTable::insert(std::uint64_t hash, JobId id, std::uint32_t slot, std::uint64_t writer,
                           std::uint32_t& entry, Word& claimed, JobId& existing) noexcept {
  const Buckets kb = buckets_of(hash);
  auto& version = versions_[kb.home];
  std::uint64_t give_up = 0;  // when to stop waiting for a push of this key in progress
  for (unsigned round = 0;; ++round) {
    // Acquire: pairs with the release of every earlier K2 of this home, so
    // the fields of every entry of this key inserted so far are visible.
    std::uint64_t v = version.load(std::memory_order_acquire);
    const std::uint64_t now = ring_->now();
    Scan f;
    if (!scan(hash, kb, now, f, existing)) continue;
    if (f.duplicate) return KeyInsert::duplicate;
    if (f.same_in_progress) {
      // Another push of this key is between K1 and K3/K5: a few µs, unless
      // its producer is stopped, descheduled, or the entry is forged. Wait
      // briefly for it to finish or be proven dead (K7), then answer full
      // (the caller's PushOptions::wait retries): never wait on another
      // process without a bound, and never report a job that may never be.
      if (interrupt_requested()) return KeyInsert::interrupted;
      if (give_up == 0) give_up = now_ms() + kInProgressWaitMs;
      if (now_ms() >= give_up) return KeyInsert::full;
      if (round < 64)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    std::uint32_t pick = f.own;
    Word from = f.own_w;
    if (pick == kNone) {
      const std::uint32_t less = kb.count == 2 && f.used[1] < f.used[0] ? 1 : 0;
      if (f.empty[less] != kNone)
        pick = f.empty[less], from = f.empty_w[less];
      else if (f.empty[1 - less] != kNone)
        pick = f.empty[1 - less], from = f.empty_w[1 - less];
      else
        pick = f.expired, from = f.expired_w;
    }
    bool evict = false;
    if (pick == kNone) {
      // No free way: settle entries of dead producers and finishers first.
      if (f.unsettled && settle_unsettled(kb, now)) continue;
      if (f.oldest == kNone) return KeyInsert::full;  // every way holds a job in the queue
      pick = f.oldest, from = f.oldest_w;
      evict = true;
    }
    // K1, from the very word the scan judged (the generation makes any
    // change since then fail the CAS). Nobody else writes the entry's fields
    // while it is ours.
    const Word mine = K::claim.target(from, writer);
    if (!move(K::claim, entries_[pick].word, from, mine)) continue;
    // Pairs with the acquire fence of a reader validating a snapshot (read).
    std::atomic_thread_fence(std::memory_order_release);
    KeyEntry& en = entries_[pick];
    en.hash.store(hash, std::memory_order_relaxed);
    en.job_id.store(id, std::memory_order_relaxed);
    en.slot.store(slot, std::memory_order_relaxed);
    // K2. Release: publishes the fields to every later scan for this key.
    if (version.compare_exchange_strong(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      if (evict) ring_->count(kKeysEvicted);
      entry = pick;
      claimed = mine;
      return KeyInsert::inserted;
    }
    // K5: another insertion of this home came first; undo and look again.
    Word undo = mine;
    (void)move(K::undo, entries_[pick].word, undo, K::undo.target(mine, 0));
  }
}

void KeyTable::make_live(std::uint32_t entry, Word claimed) noexcept {
  Word expected = claimed;
  (void)move(K::live, entries_[entry].word, expected, K::live.target(claimed, 0));
}

Word KeyTable::held_word(std::uint64_t e, std::uint64_t hash) const noexcept {
  if (hash == 0 || e >= capacity_) return Word{};  // no key (or a hostile index)
  // Relaxed: the word is only compared (finish's CAS), never used to read
  // the entry's fields. It is this job's K1 word or a later one: the
  // caller's acquire of the slot's word (its claim, purge's load)
  // synchronises with the producer's commit, which followed its K1.
  return Word{entries_[e].word.load(std::memory_order_relaxed)};
}

// While job `id` is in its slot, its entry is CLAIMED by its producer or
// LIVE (keys.hpp K7), so `held` names this job's incarnation of the entry.
// Once the job has left, K7 (a keyed push, sweep) may settle the entry and a
// new K1 claim it again before its producer stores the fields, which then
// still say `hash` and `id`: comparing fields alone would K4 that producer's
// entry and lose its key. Comparing words (the generation) cannot.
void KeyTable::finish(std::uint64_t e, std::uint64_t hash, JobId id, Word held) noexcept {
  if (hash == 0 || e >= capacity_) return;  // no key (or a hostile index)
  const KeyState held_st = key_state(held);
  if (held_st != KeyState::live && held_st != KeyState::claimed) return;
  const Word lived = held_st == KeyState::claimed ? K::live.target(held, 0) : held;  // after K3 (or K7 keep)
  const auto ei = static_cast<std::uint32_t>(e);
  const KeyTransition& t = window_ms_ == 0 ? K::forget : K::remember;
  Snapshot k;
  for (int tries = 0; tries < 100; ++tries) {
    if (!read(ei, k)) continue;
    if ((k.w != held && k.w != lived) || k.hash != hash || k.job_id != id)
      return;  // already finished or resolved
    Word from = k.w;
    if (move(t, entries_[ei].word, from, forgotten_at(k.w, ring_->now()))) return;
  }
}

void KeyTable::count(std::uint64_t now, std::uint64_t& live, std::uint64_t& remembered) const noexcept {
  for (std::uint32_t e = 0; e < capacity_; ++e) {
    const Word w{entries_[e].word.load(std::memory_order_relaxed)};
    switch (key_state(w)) {
      case KeyState::claimed:
      case KeyState::live:
        ++live;
        break;
      case KeyState::remembered:
        remembered += expired(w, now) ? 0 : 1;
        break;
      default:
        break;
    }
  }
}

}  // namespace jobring::detail
