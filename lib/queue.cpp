// jobring — the queue: lifecycle, validation and every slot transition.
//
// The state machine, the segment layout and the crash analysis of each
// transition (T1..T9) are in layout.hpp; each CAS below names its transition.

#include "jobring/queue.hpp"

#include <dirent.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "clock.hpp"
#include "keys.hpp"
#include "layout.hpp"
#include "process.hpp"
#include "segment.hpp"
#include "testing.hpp"
#include "wait.hpp"

namespace jobring {

using detail::Header;
using detail::SlotMeta;
using detail::State;
using detail::Word;

namespace {

constexpr const char* kFilePrefix = "jobring.";
constexpr std::size_t kFilePrefixLength = 8;
// How long open() waits for a creator that is still initialising the header.
constexpr milliseconds kInitWait{1000};

std::string file_name_of(std::string_view name) { return std::string(kFilePrefix).append(name); }

[[noreturn]] void throw_error(std::error_code ec, const std::string& what) { throw error(ec, what); }

std::string describe(std::string_view name, const std::error_code& ec, const std::string& detail) {
  std::string s = "jobring queue '";
  s.append(name).append("': ").append(ec.message());
  if (!detail.empty()) s.append(" (").append(detail).append(")");
  return s;
}

bool valid_duration(milliseconds d, bool allow_zero) noexcept {
  return (allow_zero ? d.count() >= 0 : d.count() >= 1) && d <= kMaxLease;
}

// The key-table size a queue created with `o` gets: Options::dedup_keys
// rounded up to whole buckets, or the default for 0.
std::uint32_t key_capacity_for(const Options& o) noexcept {
  if (o.dedup_keys == 0) return detail::default_key_capacity(o.capacity);
  return static_cast<std::uint32_t>(detail::round_up(o.dedup_keys, detail::kKeyWays));
}

std::error_code check_options(const Options& o, std::string& detail) {
  auto bad = [&](std::string why) {
    detail = std::move(why);
    return make_error_code(errc::invalid_options);
  };
  if (o.capacity < 1 || o.capacity > kMaxCapacity)
    return bad("capacity " + std::to_string(o.capacity) + " not in 1.." + std::to_string(kMaxCapacity));
  if (o.max_payload < 1 || o.max_payload > kMaxPayload)
    return bad("max_payload " + std::to_string(o.max_payload) + " not in 1.." + std::to_string(kMaxPayload));
  if (!valid_duration(o.default_lease, false))
    return bad("default_lease " + std::to_string(o.default_lease.count()) + " ms not in 1.." +
               std::to_string(kMaxLease.count()) + " ms");
  if (o.mode > 07777) return bad("mode has bits outside 07777");
  if (o.dedup_keys != 0 && (o.dedup_keys < detail::kKeyWays || o.dedup_keys > kMaxKeyCapacity))
    return bad("dedup_keys " + std::to_string(o.dedup_keys) + " not 0 (automatic) or in " +
               std::to_string(detail::kKeyWays) + ".." + std::to_string(kMaxKeyCapacity));
  if (!valid_duration(o.dedup_window, true))
    return bad("dedup_window " + std::to_string(o.dedup_window.count()) + " ms not in 0.." +
               std::to_string(kMaxLease.count()) + " ms");
  const auto g = detail::geometry(o.capacity, o.max_payload, key_capacity_for(o));
  if (g.total_bytes > kMaxSegmentBytes)
    return bad("segment of " + std::to_string(g.total_bytes) + " bytes exceeds the limit of " +
               std::to_string(kMaxSegmentBytes) +
               " bytes (capacity x (max_payload + 128) + dedup_keys x 33): lower capacity or max_payload");
  return {};
}

// Validates every header field against the others and against the real size
// of the mapping, before any slot is touched. Returns the options it describes.
std::error_code validate_header(const void* base, std::uint64_t size, Options& out, std::string& detail) {
  // Validate a private copy of line 0: another process may be rewriting the
  // shared one, and what we check must be what we keep.
  detail::Identity copy;
  std::memcpy(&copy, base, sizeof copy);
  const detail::Identity* h = &copy;
  auto fail = [&](errc e, std::string why) {
    detail = std::move(why);
    return make_error_code(e);
  };
  if (h->magic != detail::kMagic) return fail(errc::not_a_queue, "bad magic");
  if (h->layout_version != detail::kLayoutVersion)
    return fail(
        errc::incompatible_version,
        "layout version " + std::to_string(h->layout_version) + ", this library reads version " +
            std::to_string(detail::kLayoutVersion) +
            (h->layout_version > detail::kLayoutVersion
                 ? ": made by a newer jobring; use that version's library and tools"
                 : ": made by an older jobring; drain it with that version, then remove and recreate it"));
  if (h->header_bytes != detail::kHeaderBytes) return fail(errc::corrupt_segment, "header size");
  if (h->capacity < 1 || h->capacity > kMaxCapacity) return fail(errc::corrupt_segment, "capacity");
  if (h->max_payload < 1 || h->max_payload > kMaxPayload) return fail(errc::corrupt_segment, "max_payload");
  // Line 1's key-table fields, also from a private copy.
  detail::KeyIdentity keys;
  const auto* line1 = static_cast<const std::byte*>(base);
  std::memcpy(&keys.key_capacity, line1 + offsetof(Header, key_capacity), sizeof keys.key_capacity);
  std::memcpy(&keys.keys_offset, line1 + offsetof(Header, keys_offset), sizeof keys.keys_offset);
  std::memcpy(&keys.dedup_window_ms, line1 + offsetof(Header, dedup_window_ms), sizeof keys.dedup_window_ms);
  if (keys.key_capacity < detail::kKeyWays || keys.key_capacity > kMaxKeyCapacity ||
      keys.key_capacity % detail::kKeyWays != 0)
    return fail(errc::corrupt_segment, "key table size");
  if (keys.dedup_window_ms > static_cast<std::uint64_t>(kMaxLease.count()))
    return fail(errc::corrupt_segment, "de-duplication window");
  const auto g = detail::geometry(h->capacity, h->max_payload, keys.key_capacity);
  if (h->slot_stride != g.slot_stride || h->states_offset != g.states_offset ||
      h->slots_offset != g.slots_offset || h->total_bytes != g.total_bytes ||
      keys.keys_offset != g.keys_offset)
    return fail(errc::corrupt_segment, "geometry fields disagree with capacity and max_payload");
  if (g.total_bytes != size)
    return fail(errc::corrupt_segment, "segment is " + std::to_string(size) + " bytes, header says " +
                                           std::to_string(g.total_bytes));
  if (h->default_lease_ms < 1 || h->default_lease_ms > static_cast<std::uint64_t>(kMaxLease.count()))
    return fail(errc::corrupt_segment, "default lease");
  out.capacity = h->capacity;
  out.max_payload = h->max_payload;
  out.default_lease = milliseconds(static_cast<std::int64_t>(h->default_lease_ms));
  out.max_attempts = h->max_attempts;
  out.dedup_keys = keys.key_capacity;
  out.dedup_window = milliseconds(static_cast<std::int64_t>(keys.dedup_window_ms));
  out.mode = static_cast<const Header*>(base)->mode & 07777;  // informative only: no bound depends on it
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl: the mapping and the geometry, validated once and cached here.
// ---------------------------------------------------------------------------

struct Queue::Impl {
  std::string name;
  Options options;
  detail::Segment segment;
  Header* header = nullptr;
  std::atomic<std::uint64_t>* states = nullptr;
  std::byte* slots = nullptr;
  std::uint32_t capacity = 0;
  std::uint32_t max_payload = 0;
  std::uint64_t stride = 0;
  // De-duplication keys (keys.hpp).
  std::atomic<std::uint64_t>* key_versions = nullptr;  // one per bucket
  detail::KeyEntry* key_entries = nullptr;
  std::uint32_t key_capacity = 0;  // a multiple of kKeyWays
  std::uint64_t dedup_window_ms = 0;

  // `options` holds the validated options, with dedup_keys the real table size.
  void attach() noexcept {
    auto* base = static_cast<std::byte*>(segment.data());
    header = reinterpret_cast<Header*>(base);
    capacity = options.capacity;
    max_payload = options.max_payload;
    key_capacity = options.dedup_keys;
    dedup_window_ms = static_cast<std::uint64_t>(options.dedup_window.count());
    const auto g = detail::geometry(capacity, max_payload, key_capacity);
    stride = g.slot_stride;
    states = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.states_offset);
    slots = base + g.slots_offset;
    key_versions = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.keys_offset);
    key_entries = reinterpret_cast<detail::KeyEntry*>(base + g.entries_offset);
  }
  [[nodiscard]] std::atomic<std::uint64_t>& state(std::uint32_t i) const noexcept { return states[i]; }
  [[nodiscard]] SlotMeta& meta(std::uint32_t i) const noexcept {
    return *reinterpret_cast<SlotMeta*>(slots + i * stride);
  }
  [[nodiscard]] std::byte* key_area(std::uint32_t i) const noexcept {
    return slots + i * stride + detail::kSlotMetaBytes;
  }
  [[nodiscard]] std::byte* payload(std::uint32_t i) const noexcept {
    return slots + i * stride + detail::kSlotMetaBytes + detail::kKeyAreaBytes;
  }
  // Release: every count is bumped after the transition it counts, and the
  // empty-ring memo (claim_pass) reads the counts with acquire loads, so a
  // count it sees carries the transition with it. (On x86 a locked add is
  // the same instruction either way.)
  void count(detail::Total t, std::uint64_t n = 1) const noexcept {
    header->totals[t].fetch_add(n, std::memory_order_release);
  }
  // The sum of the counts bumped after every transition that can make a job
  // claimable: T3 commit (pushed), T7 release (released), requeue
  // (requeued), and the janitor's sweep (reclaimed, expired). Monotonic, so
  // any such transition changes it.
  [[nodiscard]] std::uint64_t claimable_signature() const noexcept {
    const auto& t = header->totals;
    return t[detail::kPushed].load(std::memory_order_acquire) +
           t[detail::kRequeued].load(std::memory_order_acquire) +
           t[detail::kReleased].load(std::memory_order_acquire) +
           t[detail::kReclaimed].load(std::memory_order_acquire) +
           t[detail::kExpired].load(std::memory_order_acquire);
  }
  // Tells this process's memos of one handle from another's (claim_pass).
  const std::uint64_t memo_owner = next_memo_owner();
  static std::uint64_t next_memo_owner() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  [[nodiscard]] std::uint32_t next(std::uint32_t i) const noexcept { return i + 1 == capacity ? 0 : i + 1; }

  // Moves a cursor hint forward to at least `to` (never back).
  static void advance(std::atomic<std::uint64_t>& cursor, std::uint64_t to) noexcept {
    std::uint64_t cur = cursor.load(std::memory_order_relaxed);
    while (cur < to && !cursor.compare_exchange_weak(cur, to, std::memory_order_relaxed)) {
    }
  }

  // FIFO after purge / remove_dead: jobs removed before any claim passed
  // them leave the claim cursor behind, at positions now FREE; the next lap
  // of pushes refills those slots, and a scan from the stale cursor would
  // meet the newest job first. Move the cursor over the FREE positions that
  // lie in the current lap (between it and the push cursor). Only forward
  // (advance), and a hint only: a producer refilling such a slot meanwhile
  // writes a position of the next lap, which the scan still reaches.
  // FIFO (guarantee 6) after purge, remove_dead, or an ack at the cursor's
  // slot: moves the claim cursor over the positions, below the push cursor,
  // whose slots hold nothing a claim would take: FREE (purged, acked), a
  // delayed job, a lease (current or run out: a retry, which guarantee 6
  // exempts), DEAD. It stops at a visible READY job (the oldest one, which
  // the next scan must meet first) and at WRITING (a producer's job in
  // progress). A claim scan passes the same slots the same way (claim_pass);
  // stopping at a delayed job or a lease instead let the producer's next jobs
  // wrap round into the freed slots before it, where a scan starting at the
  // stop met them out of push order
  // (FuzzRegress.FifoAfterAPartialPurgeWithADelayedJobAtTheClaimCursor).
  // Every scan covers the whole ring from the cursor, so a job passed here
  // (a delayed one coming due, a lease running out) is still claimed, only
  // after newer ones. A hint: a racing move is harmless (advance() never
  // moves it back), and a death anywhere here changes nothing.
  void skip_unclaimable_positions() const noexcept {
    const std::uint64_t from = header->claim_cursor.load(std::memory_order_relaxed);
    const std::uint64_t pushed = header->push_cursor.load(std::memory_order_relaxed);
    std::uint64_t c = from;
    // A cursor more than a lap behind (a delayed or dead job at its slot
    // held it while pushes and purges went round): no position that old
    // holds a job any more; start from one lap behind the push cursor.
    if (c < pushed && pushed - c > capacity) c = pushed - capacity;
    std::uint64_t now = 0;  // read at the first word that needs it
    auto passable = [&](Word w) {
      switch (w.state()) {
        case State::free:
        case State::leased:
        case State::dead:
          return true;
        case State::ready:
          if (w.aux() == 0) return false;  // visible at once
          if (now == 0) now = detail::now_ms();
          return delayed(w, now);
        default:  // WRITING, or an invalid word: stop
          return false;
      }
    };
    while (c < pushed && pushed - c <= capacity &&
           passable(Word{state(static_cast<std::uint32_t>(c % capacity)).load(std::memory_order_relaxed)}))
      ++c;
    if (c != from) advance(header->claim_cursor, c);
  }

  // Time tests on a word's aux. jobring never writes a visible-at or a
  // deadline more than kMaxLease ahead of its clock, so one more than
  // 2 × kMaxLease ahead of ours is corrupt: treat it as passed, so that no
  // forged word can hide a slot for decades (layout.hpp).
  static constexpr auto kMaxAhead = 2 * static_cast<std::uint64_t>(kMaxLease.count());
  // READY: still delayed at `now`?
  [[nodiscard]] static bool delayed(Word w, std::uint64_t now) noexcept {
    return w.aux() > now && w.aux() - now <= kMaxAhead;
  }
  // LEASED: deadline not yet passed at `now`? (Expiry is strictly after the deadline.)
  [[nodiscard]] static bool lease_current(Word w, std::uint64_t now) noexcept {
    return w.aux() >= now && w.aux() - now <= kMaxAhead;
  }

  // One scan of the ring for each; see their definitions. A keyed push
  // passes `key` (one payload only) and learns the outcome in it.
  struct KeyedPush {
    std::string_view key;
    std::uint64_t hash = 0;
    enum class Outcome { none, inserted, duplicate, full, interrupted } outcome = Outcome::none;
  };
  std::size_t push_pass(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                        std::uint64_t visible_at, std::memory_order load_order,
                        KeyedPush* key = nullptr) noexcept;
  // Not noexcept: the first claim into a Job object sizes its buffer.
  std::size_t claim_pass(std::span<Job> jobs, std::uint64_t lease_ms, detail::ProcessIdentity me,
                         std::memory_order load_order, std::uint64_t& next_due);
  [[noreturn]] void throw_push_error(std::error_code ec, std::size_t size, const PushOptions& push) const;
  [[nodiscard]] std::uint64_t lease_ms_for(const ClaimOptions& claim) const;
  LeaseStatus ack_one(const Lease& lease) noexcept;

  // T2: frees slots left WRITING by producers that are proven dead. Returns
  // how many it freed. Never frees a live (even stopped) producer's slot.
  std::size_t recover_dead_writers() const noexcept {
    std::size_t freed = 0;
    for (std::uint32_t i = 0; i < capacity; ++i) {
      Word w{state(i).load(std::memory_order_relaxed)};
      if (w.state() != State::writing) continue;
      const auto pid = static_cast<std::uint32_t>(w.aux() & detail::kPidMask);
      const std::uint64_t start_bits = w.aux() >> detail::kPidBits;
      if (!detail::proven_dead(pid, start_bits, (std::uint64_t{1} << detail::kWriterStartBits) - 1)) continue;
      // Release: pairs with the acquire of the next producer's reserve CAS
      // (T1); seq_cst: before the caller's notify of the room event (wait.hpp).
      if (state(i).compare_exchange_strong(w.raw, w.next(State::free, 0).raw, std::memory_order_seq_cst,
                                           std::memory_order_relaxed)) {
        ++freed;
        count(detail::kRecoveredWrites);
      }
    }
    if (freed > 0) detail::notify(header->room_event);
    return freed;
  }

  // -------------------------------------------------------------------------
  // De-duplication keys: the transitions K1..K7 of keys.hpp.
  // -------------------------------------------------------------------------

  struct KeySnapshot {
    Word w{};
    std::uint64_t hash = 0;
    JobId job_id = 0;
    std::uint64_t slot = 0;
  };

  // Reads entry e's word and fields as one snapshot, seqlock style (the
  // fields change only after a K1 CAS, which bumps the generation, followed
  // by a release fence). False if the entry changed meanwhile.
  [[nodiscard]] bool read_key(std::uint32_t e, KeySnapshot& k) const noexcept {
    const detail::KeyEntry& en = key_entries[e];
    k.w = Word{en.word.load(std::memory_order_acquire)};
    k.hash = en.hash.load(std::memory_order_relaxed);
    k.job_id = en.job_id.load(std::memory_order_relaxed);
    k.slot = en.slot.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return Word{en.word.load(std::memory_order_relaxed)} == k.w;
  }

  // REMEMBERED (or EMPTY for a window of 0) from `from`, as of `now`.
  [[nodiscard]] Word forgotten_at(Word from, std::uint64_t now) const noexcept {
    return dedup_window_ms == 0 ? detail::key_word(from, detail::KeyState::empty, 0)
                                : detail::key_word(from, detail::KeyState::remembered, now + dedup_window_ms);
  }
  // REMEMBERED entry whose window is over (or whose forget-at is corrupt).
  [[nodiscard]] static bool key_expired(Word w, std::uint64_t now) noexcept {
    return w.aux() <= now || w.aux() - now > kMaxAhead;
  }

  // Is job `id` committed in slot `s` (READY, LEASED or DEAD)? Retries while
  // the slot changes under the read; after many changes it answers yes,
  // the answer that makes every caller leave the key alone.
  [[nodiscard]] bool slot_holds(std::uint64_t s, JobId id) const noexcept {
    if (s >= capacity) return false;  // hostile entry: it names no slot of ours
    const auto i = static_cast<std::uint32_t>(s);
    for (int tries = 0; tries < 1000; ++tries) {
      const Word w{state(i).load(std::memory_order_acquire)};
      if (w.state() != State::ready && w.state() != State::leased && w.state() != State::dead) return false;
      const bool same = meta(i).job_id.load(std::memory_order_relaxed) == id;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (Word{state(i).load(std::memory_order_relaxed)} == w) return same;
    }
    return true;
  }

  // K7 (and K6's expiry): settles entry e if its producer or finisher died,
  // or its window is over. True if the entry changed (caller re-scans).
  bool key_resolve(std::uint32_t e, std::uint64_t now) const noexcept {
    KeySnapshot k;
    if (!read_key(e, k)) return true;
    auto& word = key_entries[e].word;
    Word to{};
    switch (detail::key_state(k.w)) {
      case detail::KeyState::empty:
        return false;
      case detail::KeyState::claimed: {
        const auto pid = static_cast<std::uint32_t>(k.w.aux() & detail::kPidMask);
        if (!detail::proven_dead(pid, k.w.aux() >> detail::kPidBits,
                                 (std::uint64_t{1} << detail::kWriterStartBits) - 1))
          return false;
        to = slot_holds(k.slot, k.job_id) ? detail::key_word(k.w, detail::KeyState::live, 0)
                                          : detail::key_word(k.w, detail::KeyState::empty, 0);
        break;
      }
      case detail::KeyState::live:
        if (slot_holds(k.slot, k.job_id)) return false;
        to = forgotten_at(k.w, now);
        break;
      case detail::KeyState::remembered:
        if (!key_expired(k.w, now)) return false;
        to = detail::key_word(k.w, detail::KeyState::empty, 0);
        break;
      default:  // a state no jobring process writes: reset it
        to = detail::key_word(k.w, detail::KeyState::empty, 0);
        break;
    }
    // acq_rel: a later inserter of this entry acquires through it.
    return word.compare_exchange_strong(k.w.raw, to.raw, std::memory_order_acq_rel,
                                        std::memory_order_relaxed);
  }

  // How long a keyed push waits, per try, for another push of its key that
  // is in progress (keys.hpp) before it answers full.
  static constexpr std::uint64_t kKeyInProgressWaitMs = 10;

  // The two buckets a key may live in (keys.hpp), and its home: the one
  // whose version serialises every insertion of this key.
  struct KeyBuckets {
    std::uint32_t first[2];  // first entry of each bucket
    std::uint32_t count;     // 1 when both choices are the same bucket
    std::uint32_t home;      // bucket index whose version K2 bumps
  };
  [[nodiscard]] KeyBuckets buckets_of(std::uint64_t hash) const noexcept {
    const std::uint64_t n = key_capacity / detail::kKeyWays;
    const auto b1 = static_cast<std::uint32_t>(hash % n);
    const auto b2 = static_cast<std::uint32_t>(detail::second_choice(hash) % n);
    KeyBuckets kb{{b1 * detail::kKeyWays, b2 * detail::kKeyWays}, b1 == b2 ? 1u : 2u, std::min(b1, b2)};
    return kb;
  }

  // Looks the key up without changing anything: the id of a job that holds
  // it (LIVE, or REMEMBERED within the window), if any. CLAIMED entries
  // (pushes in progress) are left to key_insert.
  [[nodiscard]] bool key_lookup(std::uint64_t hash, JobId& existing) const noexcept {
    const KeyBuckets kb = buckets_of(hash);
    const std::uint64_t now = detail::now_ms();
    for (std::uint32_t b = 0; b < kb.count; ++b) {
      for (std::uint32_t e = kb.first[b]; e < kb.first[b] + detail::kKeyWays; ++e) {
        KeySnapshot k;
        if (!read_key(e, k) || k.hash != hash) continue;
        const auto st = detail::key_state(k.w);
        if (st == detail::KeyState::live || (st == detail::KeyState::remembered && !key_expired(k.w, now))) {
          existing = k.job_id;
          return true;
        }
      }
    }
    return false;
  }

  // K1 + K2 for job `id`, which this producer (`writer`) holds WRITING in
  // `slot`. On `inserted`, `entry`/`claimed` name the entry and its CLAIMED
  // word (for K3); on `duplicate`, `existing` is the job that holds the key.
  KeyedPush::Outcome key_insert(std::uint64_t hash, JobId id, std::uint32_t slot, std::uint64_t writer,
                                std::uint32_t& entry, Word& claimed, JobId& existing) const noexcept {
    using detail::KeyState;
    const KeyBuckets kb = buckets_of(hash);
    auto& version = key_versions[kb.home];
    constexpr std::uint32_t kNone = ~0u;
    std::uint64_t give_up = 0;  // when to stop waiting for a push of this key in progress
    for (unsigned round = 0;; ++round) {
      // Acquire: pairs with the release of every earlier K2 of this home, so
      // the fields of every entry of this key inserted so far are visible.
      std::uint64_t v = version.load(std::memory_order_acquire);
      const std::uint64_t now = detail::now_ms();
      // Candidates: this key's own expired entry; an EMPTY way of the less
      // loaded bucket; any expired or corrupt entry; the oldest remembered.
      // Each with the word the scan saw: K1 CASes from exactly that word.
      std::uint32_t own = kNone, empty[2] = {kNone, kNone}, expired = kNone, oldest = kNone;
      Word own_w{}, empty_w[2]{}, expired_w{}, oldest_w{};
      std::uint32_t used[2] = {0, 0};
      std::uint64_t oldest_at = ~std::uint64_t{0};
      bool same_in_progress = false, changed = false, unsettled = false;
      for (std::uint32_t b = 0; b < kb.count && !changed; ++b) {
        for (std::uint32_t e = kb.first[b]; e < kb.first[b] + detail::kKeyWays && !changed; ++e) {
          KeySnapshot k;
          if (!read_key(e, k)) {
            changed = true;
            break;
          }
          const KeyState st = detail::key_state(k.w);
          if (st != KeyState::empty) ++used[b];
          switch (st) {
            case KeyState::empty:
              if (empty[b] == kNone) empty[b] = e, empty_w[b] = k.w;
              break;
            case KeyState::claimed:
              if (k.hash == hash) {
                // Another push of this key is in progress, or its producer died.
                if (key_resolve(e, now))
                  changed = true;
                else
                  same_in_progress = true;
              } else {
                unsettled = true;
              }
              break;
            case KeyState::live:
              if (k.hash == hash) {
                existing = k.job_id;
                return KeyedPush::Outcome::duplicate;
              }
              unsettled = true;
              break;
            case KeyState::remembered:
              if (key_expired(k.w, now)) {
                if (k.hash == hash)
                  own = e, own_w = k.w;
                else if (expired == kNone)
                  expired = e, expired_w = k.w;
              } else if (k.hash == hash) {
                existing = k.job_id;
                return KeyedPush::Outcome::duplicate;
              } else if (k.w.aux() < oldest_at) {
                oldest = e, oldest_w = k.w, oldest_at = k.w.aux();
              }
              break;
            default:  // corrupt: reusable
              if (expired == kNone) expired = e, expired_w = k.w;
              break;
          }
        }
      }
      if (changed) continue;
      if (same_in_progress) {
        // Another push of this key is between K1 and K3/K5: a few µs, unless
        // its producer is stopped, descheduled, or the entry is forged. Wait
        // briefly for it to finish or be proven dead (K7), then answer full
        // (the caller's PushOptions::wait retries): never wait on another
        // process without a bound, and never report a job that may never be.
        if (detail::interrupt_requested()) return KeyedPush::Outcome::interrupted;
        if (give_up == 0) give_up = detail::now_ms() + kKeyInProgressWaitMs;
        if (detail::now_ms() >= give_up) return KeyedPush::Outcome::full;
        if (round < 64)
          std::this_thread::yield();
        else
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      std::uint32_t pick = own;
      Word from = own_w;
      if (pick == kNone) {
        const std::uint32_t less = kb.count == 2 && used[1] < used[0] ? 1 : 0;
        if (empty[less] != kNone)
          pick = empty[less], from = empty_w[less];
        else if (empty[1 - less] != kNone)
          pick = empty[1 - less], from = empty_w[1 - less];
        else
          pick = expired, from = expired_w;
      }
      bool evict = false;
      if (pick == kNone) {
        // No free way: settle entries of dead producers and finishers first.
        bool freed = false;
        if (unsettled)
          for (std::uint32_t b = 0; b < kb.count; ++b)
            for (std::uint32_t e = kb.first[b]; e < kb.first[b] + detail::kKeyWays; ++e)
              freed |= key_resolve(e, now);
        if (freed) continue;
        if (oldest == kNone) return KeyedPush::Outcome::full;  // every way holds a job in the queue
        pick = oldest, from = oldest_w;
        evict = true;
      }
      // K1, from the very word the scan judged (the generation makes any
      // change since then fail the CAS). Acquire: pairs with the release of
      // whoever emptied or finished the entry; nobody else writes its fields
      // while it is ours.
      const Word mine = detail::key_word(from, KeyState::claimed, writer);
      if (!key_entries[pick].word.compare_exchange_strong(from.raw, mine.raw, std::memory_order_acquire,
                                                          std::memory_order_relaxed))
        continue;
      // Pairs with the acquire fence of a reader validating a snapshot (read_key).
      std::atomic_thread_fence(std::memory_order_release);
      detail::KeyEntry& en = key_entries[pick];
      en.hash.store(hash, std::memory_order_relaxed);
      en.job_id.store(id, std::memory_order_relaxed);
      en.slot.store(slot, std::memory_order_relaxed);
      // K2. Release: publishes the fields to every later scan for this key.
      if (version.compare_exchange_strong(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        if (evict) count(detail::kKeysEvicted);
        entry = pick;
        claimed = mine;
        return KeyedPush::Outcome::inserted;
      }
      // K5: another insertion of this home came first; undo and look again.
      Word undo = mine;
      key_entries[pick].word.compare_exchange_strong(undo.raw, detail::key_word(mine, KeyState::empty, 0).raw,
                                                     std::memory_order_release, std::memory_order_relaxed);
    }
  }

  // K4: the job `id` that held key entry `e` has left the queue (ack, purge,
  // remove_dead): remember the key for the window. `hash` and `e` were read
  // from the slot before the transition that freed it.
  void key_finish(std::uint64_t e, std::uint64_t hash, JobId id) const noexcept {
    if (hash == 0 || e >= key_capacity) return;  // no key (or a hostile index)
    const auto ei = static_cast<std::uint32_t>(e);
    KeySnapshot k;
    for (int tries = 0; tries < 100; ++tries) {
      if (!read_key(ei, k)) continue;
      const auto st = detail::key_state(k.w);
      if ((st != detail::KeyState::live && st != detail::KeyState::claimed) || k.hash != hash ||
          k.job_id != id)
        return;  // already finished or resolved
      Word from = k.w;
      if (key_entries[ei].word.compare_exchange_strong(from.raw, forgotten_at(k.w, detail::now_ms()).raw,
                                                       std::memory_order_release, std::memory_order_relaxed))
        return;
    }
  }
};

// ---------------------------------------------------------------------------
// Names and lifecycle
// ---------------------------------------------------------------------------

std::error_code check_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength || name.front() == '.')
    return make_error_code(errc::invalid_name);
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return make_error_code(errc::invalid_name);
  }
  return {};
}

void validate_name(std::string_view name) {
  if (auto ec = check_name(name)) throw_error(ec, describe(name, ec, ""));
}

namespace {

// Both report through (ec, detail); the public overloads format or throw.
std::unique_ptr<Queue::Impl> do_create(std::string_view name, const Options& options, std::error_code& ec,
                                       std::string& detail) {
  if ((ec = check_name(name))) return nullptr;
  if ((ec = check_options(options, detail))) return nullptr;
  const std::uint32_t key_capacity = key_capacity_for(options);
  const auto g = detail::geometry(options.capacity, options.max_payload, key_capacity);
  auto impl = std::make_unique<Queue::Impl>();
  detail::Failure failure;
  if (!detail::Segment::create(file_name_of(name), g.total_bytes, options.mode, impl->segment, failure)) {
    ec = failure.code;
    detail = failure.detail;
    return nullptr;
  }
  impl->name = std::string(name);
  impl->options = options;
  impl->options.dedup_keys = key_capacity;
  impl->attach();
  // The segment is zero-filled by ftruncate: every state word is FREE with
  // generation 0, every counter 0. Write line 0, then publish it.
  Header& h = *impl->header;
  h.magic = detail::kMagic;
  h.layout_version = detail::kLayoutVersion;
  h.header_bytes = detail::kHeaderBytes;
  h.capacity = options.capacity;
  h.max_payload = options.max_payload;
  h.slot_stride = static_cast<std::uint32_t>(g.slot_stride);
  h.max_attempts = options.max_attempts;
  h.default_lease_ms = static_cast<std::uint64_t>(options.default_lease.count());
  h.states_offset = g.states_offset;
  h.slots_offset = g.slots_offset;
  h.total_bytes = g.total_bytes;
  h.creator_pid = static_cast<std::uint32_t>(::getpid());
  h.mode = options.mode;
  h.key_capacity = key_capacity;
  h.keys_offset = g.keys_offset;
  h.dedup_window_ms = static_cast<std::uint64_t>(options.dedup_window.count());
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  h.created_realtime_ns =
      static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  h.next_job_id.store(1, std::memory_order_relaxed);
  // Release: pairs with the acquire load of `init` in do_open(); everything
  // above happens-before any opener reads the header. If the creator dies
  // before this store, openers report incomplete_segment.
  h.init.store(detail::kInitDone, std::memory_order_release);
  return impl;
}

std::unique_ptr<Queue::Impl> do_open(std::string_view name, std::error_code& ec, std::string& detail,
                                     milliseconds init_wait = kInitWait) {
  if ((ec = check_name(name))) return nullptr;
  const auto give_up_at = std::chrono::steady_clock::now() + init_wait;
  for (;;) {
    auto impl = std::make_unique<Queue::Impl>();
    detail::Failure failure;
    if (!detail::Segment::open(file_name_of(name), impl->segment, failure)) {
      ec = failure.code;
      detail = failure.detail;
      return nullptr;
    }
    const std::uint64_t size = impl->segment.size();
    bool in_progress = false;  // a creator may be between shm_open and publishing the header
    if (size == 0) {
      in_progress = true;
    } else if (size < detail::kHeaderBytes) {
      ec = make_error_code(errc::corrupt_segment);
      detail = "segment of " + std::to_string(size) + " bytes is smaller than a jobring header";
      return nullptr;
    } else {
      const auto* h = static_cast<const Header*>(impl->segment.data());
      // Acquire: pairs with the creator's release store of kInitDone.
      const std::uint32_t init = h->init.load(std::memory_order_acquire);
      if (init != detail::kInitDone) {
        if (h->magic != 0 && h->magic != detail::kMagic) {
          ec = make_error_code(errc::not_a_queue);
          detail = "bad magic";
          return nullptr;
        }
        in_progress = true;
        if (h->creator_pid != 0 && detail::proven_dead(h->creator_pid)) {
          ec = make_error_code(errc::incomplete_segment);
          detail = "creator pid " + std::to_string(h->creator_pid) + " died before finishing";
          return nullptr;
        }
      } else {
        Options options;
        if ((ec = validate_header(h, size, options, detail))) return nullptr;
        impl->name = std::string(name);
        impl->options = options;
        impl->attach();
        return impl;
      }
    }
    if (in_progress && std::chrono::steady_clock::now() >= give_up_at) {
      ec = make_error_code(errc::incomplete_segment);
      detail = "header not published after " + std::to_string(init_wait.count()) + " ms";
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::unique_ptr<Queue::Impl> do_open_or_create(std::string_view name, const Options& options,
                                               std::error_code& ec, std::string& detail) {
  // create (O_EXCL) and open race with other processes doing the same and
  // with remove(): EEXIST means open, ENOENT on that open means try again.
  for (int round = 0; round < 100; ++round) {
    auto impl = do_create(name, options, ec, detail);
    if (impl || ec != make_error_code(errc::already_exists)) return impl;
    impl = do_open(name, ec, detail);
    if (impl || ec != make_error_code(errc::not_found)) return impl;
  }
  return nullptr;
}

template <typename F>
Queue::Impl* throwing(std::string_view name, F&& f) {
  std::error_code ec;
  std::string detail;
  auto impl = f(ec, detail);
  if (!impl) throw_error(ec, describe(name, ec, detail));
  return impl.release();
}

}  // namespace

Queue::Queue(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Queue::Queue(Queue&&) noexcept = default;
Queue& Queue::operator=(Queue&&) noexcept = default;
Queue::~Queue() = default;

Queue Queue::create(std::string_view name, const Options& options) {
  return Queue(std::unique_ptr<Impl>(
      throwing(name, [&](std::error_code& ec, std::string& d) { return do_create(name, options, ec, d); })));
}
Queue Queue::open(std::string_view name) {
  return Queue(std::unique_ptr<Impl>(
      throwing(name, [&](std::error_code& ec, std::string& d) { return do_open(name, ec, d); })));
}
Queue Queue::open_or_create(std::string_view name, const Options& options) {
  return Queue(std::unique_ptr<Impl>(throwing(
      name, [&](std::error_code& ec, std::string& d) { return do_open_or_create(name, options, ec, d); })));
}

std::optional<Queue> Queue::create(std::string_view name, const Options& options,
                                   std::error_code& ec) noexcept {
  try {
    std::string detail;
    if (auto impl = do_create(name, options, ec, detail)) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}
std::optional<Queue> Queue::open(std::string_view name, std::error_code& ec) noexcept {
  return open(name, ec, kInitWait);
}
std::optional<Queue> Queue::open(std::string_view name, std::error_code& ec,
                                 milliseconds init_wait) noexcept {
  try {
    std::string detail;
    if (auto impl = do_open(name, ec, detail, std::max(init_wait, milliseconds{0}))) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}
std::optional<Queue> Queue::open_or_create(std::string_view name, const Options& options,
                                           std::error_code& ec) noexcept {
  try {
    std::string detail;
    if (auto impl = do_open_or_create(name, options, ec, detail)) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}

bool Queue::remove(std::string_view name, std::error_code& ec) noexcept {
  if ((ec = check_name(name))) return false;
  try {
    detail::Failure failure;
    if (detail::Segment::remove(file_name_of(name), failure)) {
      ec.clear();
      return true;
    }
    ec = failure.code;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return false;
}

bool Queue::remove(std::string_view name) {
  std::error_code ec;
  if (remove(name, ec)) return true;
  if (ec == make_error_code(errc::not_found)) return false;
  throw_error(ec, describe(name, ec, "shm_unlink"));
}

std::vector<std::string> Queue::list() {
  std::vector<std::string> names;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return names;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view file(entry->d_name);
    if (file.size() <= kFilePrefixLength || file.substr(0, kFilePrefixLength) != kFilePrefix) continue;
    const std::string_view name = file.substr(kFilePrefixLength);
    if (!check_name(name)) names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

const std::string& Queue::name() const noexcept { return impl_->name; }
const Options& Queue::options() const noexcept { return impl_->options; }

// ---------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------

namespace {

constexpr std::uint64_t kNoDue = ~std::uint64_t{0};

// Runs `attempt(load_order, next_due)` until it makes progress, the wait runs
// out, or the process is interrupted; sleeps on `event` in between (wait.hpp
// explains why no wake-up is lost). `attempt` returns how much it did.
template <typename Attempt>
std::size_t wait_until_progress(std::atomic<std::uint32_t>& event, milliseconds wait, std::uint32_t capacity,
                                const std::atomic<bool>* stop, bool& interrupted, Attempt attempt) {
  interrupted = false;
  std::uint64_t due = kNoDue;
  if (const std::size_t n = attempt(std::memory_order_relaxed, due)) return n;
  if (wait.count() <= 0) return 0;
  // +1: now_ms() truncates, so this never returns before `wait` has passed.
  const std::uint64_t deadline = detail::now_ms() + static_cast<std::uint64_t>(wait.count()) + 1;
  for (;;) {
    if (detail::interrupt_requested() || (stop != nullptr && stop->load(std::memory_order_relaxed))) {
      interrupted = true;
      return 0;
    }
    const std::uint32_t expected = detail::prepare_wait(event);
    due = kNoDue;
    // The re-check after announcing ourselves, with seq_cst loads.
    if (const std::size_t n = attempt(std::memory_order_seq_cst, due)) return n;
    const std::uint64_t now = detail::now_ms();
    if (now >= deadline) return 0;
    const std::uint64_t until = std::min(deadline, std::max(due, now + 1));
    detail::sleep_on(event, expected, milliseconds(static_cast<std::int64_t>(until - now)),
                     detail::safety_sleep(capacity), stop);
  }
}

}  // namespace

std::size_t Queue::Impl::push_pass(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                   std::uint64_t visible_at, std::memory_order load_order,
                                   KeyedPush* key) noexcept {
  if (payloads.empty()) return 0;
  if (key != nullptr) {
    key->outcome = KeyedPush::Outcome::none;
    // A duplicate needs no slot: answer it before looking for room.
    JobId existing = 0;
    if (key_lookup(key->hash, existing)) {
      key->outcome = KeyedPush::Outcome::duplicate;
      if (!ids.empty()) ids[0] = existing;
      return 1;
    }
  }
  const detail::ProcessIdentity me = detail::self();
  const std::uint64_t writer = detail::make_writer(me.pid, me.start_ticks);
  std::size_t done = 0;
  for (int round = 0; round < 2 && done < payloads.size(); ++round) {
    const std::uint64_t start = header->push_cursor.load(std::memory_order_relaxed);
    std::uint32_t i = static_cast<std::uint32_t>(start % capacity);
    std::uint32_t k = 0;
    // FIFO (guarantee 6): the k of the first slot this pass passed because it
    // was not FREE (kNotPassed: none yet), and whether we looked again.
    constexpr std::uint32_t kNotPassed = ~std::uint32_t{0};
    std::uint32_t passed = kNotPassed;
    bool rescanned = false;
    for (; k < capacity && done < payloads.size(); ++k, i = next(i)) {
      auto& sw = state(i);
      Word w{sw.load(load_order)};
      if (w.state() != State::free) {
        if (passed == kNotPassed) passed = k;
        continue;
      }
      if (passed != kNotPassed && !rescanned) {
        // We passed an occupied slot and now see a free one after it. A worker
        // may have freed the older slot after we looked (a worker acking in
        // order frees it first): look once more from there, so that the older
        // position is refilled first. Acquire: if this FREE was written by an
        // ack (a release CAS), that worker's earlier acks happen-before the
        // loads below, which therefore see those slots FREE. Never waits: a
        // slot still occupied is passed again (guarantee 5). Nothing is
        // reserved yet, so a death here leaves nothing behind.
        std::atomic_thread_fence(std::memory_order_acquire);
        rescanned = true;
        const auto back = static_cast<std::uint32_t>((start + passed) % capacity);
        k = passed - 1;                           // ++k: passed (~0u + 1 = 0)
        i = back == 0 ? capacity - 1 : back - 1;  // next(i): back
        passed = kNotPassed;
        continue;
      }
      // T1 reserve. Acquire: pairs with the release CAS that freed the slot
      // (ack, purge, recover), so the previous holder's reads of the payload
      // happen-before our writes. On failure another producer took it: move on.
      const Word reserved = w.next(State::writing, writer);
      if (!sw.compare_exchange_strong(w.raw, reserved.raw, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        continue;
      // Pairs with the acquire fence of a claimer validating its copy of this
      // slot's old payload (claim_pass, peek): if that claimer's re-check
      // reads a word older than ours, our writes below are not visible to its
      // copy; if newer, it discards the copy.
      std::atomic_thread_fence(std::memory_order_release);
      const std::span<const std::byte> payload = payloads[done];
      SlotMeta& m = meta(i);
      const JobId id = header->next_job_id.fetch_add(1, std::memory_order_relaxed);
      m.job_id.store(id, std::memory_order_relaxed);
      m.length.store(static_cast<std::uint32_t>(payload.size()), std::memory_order_relaxed);
      m.attempts.store(0, std::memory_order_relaxed);
      m.owner.store(0, std::memory_order_relaxed);
      m.key_hash.store(key != nullptr ? key->hash : 0, std::memory_order_relaxed);
      m.key_length.store(key != nullptr ? static_cast<std::uint32_t>(key->key.size()) : 0,
                         std::memory_order_relaxed);
      if (key != nullptr) std::memcpy(key_area(i), key->key.data(), key->key.size());
      if (!payload.empty()) std::memcpy(this->payload(i), payload.data(), payload.size());
      std::uint32_t entry = 0;
      Word claimed_key{};
      if (key != nullptr) {
        // K1 + K2 (keys.hpp): the key becomes this job's, or the push ends
        // here. Dies before: T2 frees the slot. Dies after: K7 tells from
        // this slot whether the job got in.
        JobId existing = 0;
        key->outcome = key_insert(key->hash, id, i, writer, entry, claimed_key, existing);
        if (key->outcome != KeyedPush::Outcome::inserted) {
          // Not pushing after all: give the slot back (T2 by its own writer).
          Word ours = reserved;
          if (sw.compare_exchange_strong(ours.raw, reserved.next(State::free, 0).raw,
                                         std::memory_order_seq_cst, std::memory_order_relaxed))
            detail::notify(header->room_event);
          if (key->outcome != KeyedPush::Outcome::duplicate) return 0;
          if (!ids.empty()) ids[0] = existing;
          return 1;
        }
        m.key_entry.store(entry, std::memory_order_relaxed);
      }
      // Advance the push cursor past this slot before the commit: a claimer
      // that acquires our commit then sees the cursor at least here, so it
      // may move the claim cursor past this job (claim_pass).
      advance(header->push_cursor, start + k + 1);
      // T3 commit. Release: publishes the meta and the payload to the claimer
      // whose acquire CAS reads this word (or any later word of the slot:
      // every later change is an RMW, so the release sequence is unbroken).
      // seq_cst: orders it before our load of the work event (wait.hpp).
      Word expected = reserved;
      if (!sw.compare_exchange_strong(expected.raw, reserved.next(State::ready, visible_at).raw,
                                      std::memory_order_seq_cst, std::memory_order_relaxed)) {
        // Someone judged us dead and recovered the slot (possible only if it
        // sees another PID namespace). It is not ours any more: do not touch
        // it; this push has not happened, so try another slot.
        continue;
      }
      if (key != nullptr) {
        // K3. Fails if a finisher already made it REMEMBERED (K4): fine.
        Word expected_key = claimed_key;
        key_entries[entry].word.compare_exchange_strong(
            expected_key.raw, detail::key_word(claimed_key, detail::KeyState::live, 0).raw,
            std::memory_order_release, std::memory_order_relaxed);
      }
      if (done < ids.size()) ids[done] = id;
      ++done;
    }
    // Full. A slot left WRITING by a dead producer is not full: free those and look once more.
    if (done < payloads.size() && (round > 0 || recover_dead_writers() == 0)) break;
  }
  if (done > 0) {
    count(detail::kPushed, done);
    detail::notify(header->work_event);
  }
  return done;
}

PushResult Queue::push(std::span<const std::byte> payload, const PushOptions& options,
                       std::error_code& ec) noexcept {
  Impl& q = *impl_;
  if (payload.size() > q.max_payload) {
    ec = make_error_code(errc::payload_too_large);
    return {};
  }
  if (!valid_duration(options.delay, true) || !valid_duration(options.wait, true)) {
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  if (options.key.size() > kMaxKeyLength) {
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  ec.clear();
  const std::uint64_t visible_at =
      options.delay.count() > 0 ? detail::now_ms() + static_cast<std::uint64_t>(options.delay.count()) : 0;
  JobId id = 0;
  bool interrupted = false;
  const std::span<const std::byte> one[1] = {payload};
  Impl::KeyedPush keyed{options.key, options.key.empty() ? 0 : detail::key_hash(options.key)};
  Impl::KeyedPush* key = options.key.empty() ? nullptr : &keyed;
  const std::size_t n =
      wait_until_progress(q.header->room_event, options.wait, q.capacity, options.stop, interrupted,
                          [&](std::memory_order order, std::uint64_t&) {
                            if (key != nullptr && key->outcome == Impl::KeyedPush::Outcome::interrupted)
                              return std::size_t{1};
                            return q.push_pass(one, {&id, 1}, visible_at, order, key);
                          });
  if (key != nullptr) {
    if (key->outcome == Impl::KeyedPush::Outcome::interrupted) return {PushStatus::interrupted, 0};
    if (key->outcome == Impl::KeyedPush::Outcome::full) q.count(detail::kKeysFull);
    if (key->outcome == Impl::KeyedPush::Outcome::duplicate) {
      q.count(detail::kDuplicates);
      return {PushStatus::ok, id, true};
    }
  }
  if (n == 1) return {PushStatus::ok, id};
  return {interrupted ? PushStatus::interrupted : PushStatus::full, 0};
}

PushResult Queue::push(std::span<const std::byte> payload, const PushOptions& options) {
  std::error_code ec;
  const PushResult r = push(payload, options, ec);
  if (ec) impl_->throw_push_error(ec, payload.size(), options);
  return r;
}

PushResult Queue::push(std::string_view payload, const PushOptions& options) {
  return push(std::as_bytes(std::span<const char>(payload.data(), payload.size())), options);
}

std::size_t Queue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                             const PushOptions& options) {
  Impl& q = *impl_;
  for (const auto& p : payloads) {
    if (p.size() > q.max_payload)
      q.throw_push_error(make_error_code(errc::payload_too_large), p.size(), options);
  }
  if (!valid_duration(options.delay, true) || !valid_duration(options.wait, true))
    q.throw_push_error(make_error_code(errc::invalid_argument), 0, options);
  if (!options.key.empty()) q.throw_push_error(make_error_code(errc::invalid_argument), 0, options);
  const std::uint64_t visible_at =
      options.delay.count() > 0 ? detail::now_ms() + static_cast<std::uint64_t>(options.delay.count()) : 0;
  std::size_t done = 0;
  // One wait for the whole batch, not one per bit of progress.
  const auto give_up_at = std::chrono::steady_clock::now() + options.wait;
  while (done < payloads.size()) {
    bool interrupted = false;
    const auto left = std::max(
        milliseconds{0}, std::chrono::ceil<milliseconds>(give_up_at - std::chrono::steady_clock::now()));
    const std::size_t n = wait_until_progress(
        q.header->room_event, left, q.capacity, options.stop, interrupted,
        [&](std::memory_order order, std::uint64_t&) {
          return q.push_pass(payloads.subspan(done),
                             ids.size() > done ? ids.subspan(done) : std::span<JobId>{}, visible_at, order);
        });
    if (n == 0) break;
    done += n;
  }
  return done;
}

void Queue::Impl::throw_push_error(std::error_code ec, std::size_t size, const PushOptions& push) const {
  std::string detail;
  if (ec == make_error_code(errc::payload_too_large))
    detail = "payload of " + std::to_string(size) + " bytes, max_payload is " + std::to_string(max_payload);
  else if (!push.key.empty() && push.key.size() > kMaxKeyLength)
    detail =
        "key of " + std::to_string(push.key.size()) + " bytes, the limit is " + std::to_string(kMaxKeyLength);
  else if (!push.key.empty())
    detail = "push_many takes no key: push keyed jobs one at a time with push()";
  else
    detail = "delay " + std::to_string(push.delay.count()) + " ms or wait " +
             std::to_string(push.wait.count()) + " ms not in 0.." + std::to_string(kMaxLease.count()) + " ms";
  throw_error(ec, describe(name, ec, detail));
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

namespace {

// The empty-ring memo. A claim pass that finds nothing scans the whole ring
// (capacity loads); a worker polling an empty queue would do that on every
// poll. Instead, each thread remembers, per queue handle, that its last pass
// found nothing claimable: the claimable signature (Impl::claimable_signature)
// read before that scan, and the earliest time a delayed job or a current
// lease it saw becomes due. While the signature is unchanged and that time
// has not come, nothing has become claimable since, and the pass answers
// empty after five acquire loads of the totals instead of a scan:
//   - every transition to a claimable state (T3 commit, T7 release, requeue,
//     the janitor's T7) bumps a count in the signature after the transition,
//     with release order; our acquire load that sees the bump sees the job;
//   - a delayed job or a lease we saw becomes claimable only at its due time;
//     the one state a scan cannot see coming, a lease granted by another
//     claimer after our scan passed the slot, is granted on a job pushed,
//     released or requeued after we read the signature (else we would have
//     claimed it ourselves), so the signature has changed.
// What it cannot see: a process killed between such a transition and its
// count, a count bumped at the end of a push_many or requeue_dead rather
// than after each job, a slot we claimed and lost again within the pass
// (taken over, or quarantined by someone else: we do not know the new
// deadline, so such a pass does not set a memo), or a hostile writer of
// state words or totals. So a memo is also never older than kEmptyMemoMs:
// at worst such a job is claimed that much later, never lost. Only a pass
// that scanned the whole ring sets one. Only relaxed passes use it (try_claim and a claim's first pass); the
// seq_cst re-check before a sleep always scans (wait.hpp's argument needs it).
// The check is five acquire loads on the two totals lines. Only a pass that
// follows an empty pass reads them, so a busy worker never touches the
// producers' cache line for it. One memo per thread: a thread polling two
// queues in turn scans each time.
struct EmptyMemo {
  std::uint64_t owner = 0;  // Impl::memo_owner of the handle, 0 for none
  bool armed = false;       // the last pass of this thread on `owner` found nothing
  bool valid = false;       // and it read the signature first: the fields below hold
  std::uint64_t signature = 0;
  std::uint64_t until_ms = 0;  // the memo holds while now < until_ms
  std::uint64_t due = 0;       // the pass's next_due
};
thread_local EmptyMemo empty_memo;
constexpr std::uint64_t kEmptyMemoMs = 2;
// Tests lengthen it (detail::set_empty_memo_ms_for_testing) so that what
// the due time and the wait path's re-check do is seen, not hidden by it.
std::atomic<std::uint64_t> empty_memo_ms{kEmptyMemoMs};

}  // namespace

namespace detail {
std::uint64_t set_empty_memo_ms_for_testing(std::uint64_t ms) noexcept {
  return empty_memo_ms.exchange(ms, std::memory_order_relaxed);
}
}  // namespace detail

std::size_t Queue::Impl::claim_pass(std::span<Job> jobs, std::uint64_t lease_ms, detail::ProcessIdentity me,
                                    std::memory_order load_order, std::uint64_t& next_due) {
  // The clock: CLOCK_MONOTONIC, read once per pass (and every 256 slots).
  // CLOCK_MONOTONIC_COARSE was tried (~3 ns instead of ~35 on kvm-clock), but
  // with tickless idle it can lag by more than a tick, so a lease granted on
  // it was shorter than asked and an expired lease looked current
  // (FuzzRegress.ALeaseIsNeverShorterThanAsked,
  // FuzzRegress.AnExpiredLeaseIsTakenOverByTheNextClaim).
  if (jobs.empty()) return 0;  // no scan, so no memo either
  auto clock = [] { return detail::now_ms(); };
  std::uint64_t now = clock();
  const std::uint64_t began = now;
  EmptyMemo& memo = empty_memo;
  const bool follows_empty = memo.owner == memo_owner && memo.armed;
  const std::uint64_t signature = follows_empty ? claimable_signature() : 0;
  if (follows_empty && memo.valid && load_order == std::memory_order_relaxed && memo.signature == signature &&
      now < memo.until_ms) {
    next_due = std::min(next_due, memo.due);
    return 0;
  }
  std::uint64_t due = ~std::uint64_t{0};  // this pass's own next_due
  const std::uint32_t max_attempts = options.max_attempts;
  // FIFO: scan from the claim cursor, the oldest position not yet passed by
  // a claim, in ring order, which is the order producers fill slots in. The
  // cursor never moves past the push cursor, so that jobs pushed after this
  // scan began are never left behind it.
  const std::uint64_t start = header->claim_cursor.load(std::memory_order_relaxed);
  const std::uint32_t first = static_cast<std::uint32_t>(start % capacity);
  std::uint32_t i = first;
  bool saw_writing = false;
  bool lost = false;          // claimed a slot and lost it again in this pass: no memo
  bool passed_empty = false;  // passed a FREE or WRITING slot in this pass
  bool rescanned = false;
  std::size_t got = 0;
  std::size_t takeovers = 0;
  std::uint32_t k = 0;
  const std::uint64_t owner_bits = detail::make_owner(0, me.pid, me.start_ticks);
  for (; k < capacity && got < jobs.size(); ++k, i = next(i)) {
    // Fast path over FREE slots, most of an idle or draining ring: nothing
    // to decide for them but that we passed an empty slot. A tight loop of
    // loads (seq_cst when re-checking before a sleep, as below) that stops at
    // the first other word, which the full logic below then looks at. An
    // empty 1024-slot ring: ~10,000 instructions instead of ~33,000.
    {
      const std::uint32_t k0 = k;
      if (load_order == std::memory_order_seq_cst) {
        while (k < capacity && Word{states[i].load(std::memory_order_seq_cst)}.state() == State::free) {
          ++k;
          i = next(i);
        }
      } else {
        while (k < capacity && Word{states[i].load(std::memory_order_relaxed)}.state() == State::free) {
          ++k;
          i = next(i);
        }
      }
      if (k != k0) {
        passed_empty = true;
        if (k == capacity) break;
        if ((k & ~255u) != (k0 & ~255u)) now = clock();  // passed a multiple of 256: as below
      }
    }
    // A long scan re-reads the clock, so that a lease granted at its end
    // gets its full length (and expiry is judged against a fresh clock).
    if ((k & 255) == 255) now = clock();
    auto& sw = state(i);
    SlotMeta& m = meta(i);
    Word w{sw.load(load_order)};
    if (w.state() == State::ready && passed_empty && !rescanned && got == 0) {
      // We passed an empty slot and now see a job: a producer may have
      // filled the empty one (an older position) after we passed it. Look
      // once more from the start, so that the older job goes first.
      rescanned = true;
      passed_empty = false;
      k = ~std::uint32_t{0};                      // ++k: 0
      i = first == 0 ? capacity - 1 : first - 1;  // next(i): first
      continue;
    }
    passed_empty |= w.state() == State::free || w.state() == State::writing;
    bool takeover = false;
    bool claimed = false;
    Word mine{};
    // CAS loop on this slot. Cases: READY and visible → T4; READY but delayed
    // → skip; LEASED and expired → T8 (attempts used up) or T5 takeover;
    // LEASED and current → skip; WRITING → skip (remember it for T2); FREE,
    // DEAD, invalid → skip. A failed CAS reloads w and re-decides; ABA is
    // excluded by the generation (layout.hpp).
    for (;;) {
      if (w.state() == State::ready) {
        if (delayed(w, now)) {  // aux 0 = visible at once
          due = std::min(due, w.aux());
          break;
        }
        takeover = false;
      } else if (w.state() == State::leased) {
        if (lease_current(w, now)) {
          due = std::min(due, w.aux() + 1);  // expiry is strictly after the deadline
          break;
        }
        if (max_attempts != 0 && m.attempts.load(std::memory_order_relaxed) >= max_attempts) {
          // T8: the expired job has used up its attempts: dead-letter it.
          if (sw.compare_exchange_weak(w.raw, w.next(State::dead, 0).raw, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
            count(detail::kDeadLettered);
            break;
          }
          continue;
        }
        takeover = true;
      } else {
        saw_writing |= w.state() == State::writing;
        break;
      }
      // T4 claim / T5 takeover. Acquire: synchronises with the producer's
      // commit (T3) through the release sequence, so meta and payload below
      // are the producer's.
      mine = w.next(State::leased, now + lease_ms);
      if (sw.compare_exchange_weak(w.raw, mine.raw, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        claimed = true;
        break;
      }
    }
    if (!claimed) continue;

    // --- We hold the lease `mine` on slot i.
    // While we hold the lease nobody else writes the count — push and
    // requeue reset it only while the slot is WRITING or DEAD — unless our
    // deadline passes between our CAS and this line: then a claimer may take
    // the lease over (the count may end up one short, as when a claimer dies
    // right after its CAS, T4), and if we were paused that long (SIGSTOP),
    // the slot may even hold another job by now (acked, pushed again,
    // claimed). A plain store would then write our count onto that job and
    // give it fewer attempts than max_attempts promises (found in review).
    // A CAS from the value we read fails in that case (unless that job's
    // count happens to equal ours); it costs one locked RMW per claim.
    std::uint32_t seen = m.attempts.load(std::memory_order_relaxed);
    const std::uint32_t attempt = seen + 1;
    (void)m.attempts.compare_exchange_strong(seen, attempt, std::memory_order_relaxed);
    // Owner record for the janitor, one word tagged with our generation.
    m.claimed_at_ms.store(now, std::memory_order_relaxed);
    m.owner.store(owner_bits | detail::make_owner(mine.gen(), 0), std::memory_order_relaxed);
    const JobId id = m.job_id.load(std::memory_order_relaxed);
    const std::uint32_t length = m.length.load(std::memory_order_relaxed);
    if (length > max_payload) {
      // Hostile or corrupt slot: never read past the payload area. Quarantine
      // the job in DEAD, where an operator can see and remove it.
      Word expected = mine;
      if (sw.compare_exchange_strong(expected.raw, mine.next(State::dead, 0).raw, std::memory_order_acq_rel,
                                     std::memory_order_relaxed))
        count(detail::kDeadLettered);
      else
        lost = true;
      continue;
    }
    Job& job = jobs[got];
    if (job.buffer_.size() < max_payload) job.buffer_.resize(max_payload);  // once per Job object
    std::memcpy(job.buffer_.data(), payload(i), length);
    // The key's length is bounded like the payload's: a corrupt one reads as no key.
    const std::uint32_t key_length = m.key_length.load(std::memory_order_relaxed);
    job.key_size_ = key_length <= kMaxKeyLength ? key_length : 0;
    if (job.key_size_ > 0) std::memcpy(job.key_.data(), key_area(i), job.key_size_);
    // Validate like a seqlock reader: if the word changed while we copied, our
    // lease was taken over (it expired within this call) and the copy may be
    // torn: the job is someone else's now.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (Word{sw.load(std::memory_order_relaxed)} != mine) {
      lost = true;
      continue;
    }

    job.id = id;
    job.attempt = attempt;
    job.size_ = length;
    job.lease = Lease{i, mine.raw, id};
    job.deadline = detail::to_time_point(mine.aux());
    ++got;
    takeovers += takeover ? 1 : 0;
  }
  if (got > 0) {
    std::uint64_t to = start + k;
    // Read after our claims: their acquire CASes synchronised with the
    // commits, which the producers sequenced after advancing the push cursor,
    // so every job we claimed in push order lies below this value.
    const std::uint64_t pushed = header->push_cursor.load(std::memory_order_relaxed);
    const std::uint64_t ahead = pushed - start;  // positions pushed but not yet passed (if <= capacity)
    if (ahead <= capacity && k > ahead) to = start + ahead;
    // A hint, written with a load and a store instead of a CAS (one locked
    // RMW fewer per claim). Only a claimer that found the cursor where its
    // scan began moves it. A rival that moves it between our load and store
    // is overwritten: if our `to` is behind its value the cursor goes back
    // (the next scans pass a few slots more, and may rescan once); if ahead,
    // every position below `to` was passed by our own scan and lies below the
    // push cursor we read: the same bound the CAS gave. Never a job left
    // behind, only extra scanning.
    if (to != start && header->claim_cursor.load(std::memory_order_relaxed) == start)
      header->claim_cursor.store(to, std::memory_order_relaxed);
    count(detail::kClaimed, got);
    if (takeovers > 0) count(detail::kExpired, takeovers);
  } else if (saw_writing) {
    // Nothing claimable, and a slot left WRITING by a dead producer never
    // becomes claimable: free it (T2) so that the ring keeps its capacity.
    recover_dead_writers();
  }
  next_due = std::min(next_due, due);
  // The memo (above). Not after a pass that saw a WRITING slot: the next
  // passes scan, so that T2 keeps running while a dead producer's slot is
  // there.
  memo.owner = memo_owner;
  memo.armed = got == 0;
  memo.valid = got == 0 && follows_empty && !saw_writing && !lost;
  memo.signature = signature;
  memo.until_ms = std::min(due, began + empty_memo_ms.load(std::memory_order_relaxed));
  memo.due = due;
  return got;
}

std::uint64_t Queue::Impl::lease_ms_for(const ClaimOptions& claim) const {
  if (!valid_duration(claim.lease, true)) {
    const auto ec = make_error_code(errc::invalid_argument);
    throw_error(ec, describe(name, ec,
                             "lease of " + std::to_string(claim.lease.count()) + " ms not in 1.." +
                                 std::to_string(kMaxLease.count()) + " ms"));
  }
  return static_cast<std::uint64_t>(claim.lease.count() > 0 ? claim.lease.count()
                                                            : options.default_lease.count());
}

std::size_t Queue::try_claim_many(std::span<Job> jobs, const ClaimOptions& options) {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = q.lease_ms_for(options);
  const auto me = options.owner == Owner::process ? detail::self() : detail::ProcessIdentity{0, 0};
  std::uint64_t due = kNoDue;
  return q.claim_pass(jobs, lease_ms, me, std::memory_order_relaxed, due);
}

ClaimStatus Queue::try_claim(Job& job, const ClaimOptions& options) {
  return try_claim_many({&job, 1}, options) == 1 ? ClaimStatus::ok : ClaimStatus::empty;
}

std::optional<Job> Queue::try_claim(const ClaimOptions& options) {
  Job job;
  if (try_claim(job, options) == ClaimStatus::ok) return job;
  return std::nullopt;
}

std::size_t Queue::claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options) {
  Impl& q = *impl_;
  const std::uint64_t lease_ms = q.lease_ms_for(options);
  if (!valid_duration(wait, true)) {
    const auto ec = make_error_code(errc::invalid_argument);
    throw_error(ec, describe(q.name, ec,
                             "wait of " + std::to_string(wait.count()) + " ms not in 0.." +
                                 std::to_string(kMaxLease.count()) + " ms"));
  }
  if (jobs.empty()) return 0;
  const auto me = options.owner == Owner::process ? detail::self() : detail::ProcessIdentity{0, 0};
  bool interrupted = false;
  return wait_until_progress(q.header->work_event, wait, q.capacity, options.stop, interrupted,
                             [&](std::memory_order order, std::uint64_t& due) {
                               return q.claim_pass(jobs, lease_ms, me, order, due);
                             });
}

ClaimStatus Queue::claim(Job& job, milliseconds wait, const ClaimOptions& options) {
  if (claim_many({&job, 1}, wait, options) == 1) return ClaimStatus::ok;
  // claim_many gives up early only when interrupted.
  const bool stopped = detail::interrupt_requested() ||
                       (options.stop != nullptr && options.stop->load(std::memory_order_relaxed));
  return wait.count() > 0 && stopped ? ClaimStatus::interrupted : ClaimStatus::empty;
}

namespace {

// The slot word a lease refers to, if the lease is well-formed for this queue.
std::atomic<std::uint64_t>* leased_word(const Queue::Impl& q, const Lease& lease) noexcept {
  if (lease.slot >= q.capacity || Word{lease.token}.state() != State::leased) return nullptr;
  // The job id is a second check beside the generation (layout.hpp): a token
  // from another job of this slot never matches, whatever the generation.
  if (q.meta(lease.slot).job_id.load(std::memory_order_relaxed) != lease.job) return nullptr;
  return &q.state(lease.slot);
}

// T7 / T8 from a holder's side (release, give_back): the lease's word
// becomes `to` (READY, or DEAD when the attempts are used up), counted as
// `counted`; claimers are woken when the job is READY. Release: our use of
// the job happens-before the next claimer's acquire. seq_cst: before our
// notify of the work event (wait.hpp). Dies before the CAS: the lease runs
// out (or the janitor returns it). Dies after it: the job is READY (or
// DEAD); a missed count or notify only delays a poller (the empty-ring
// memo's age bound) or a sleeper (its bounded sleep).
LeaseStatus end_lease(const Queue::Impl& q, std::atomic<std::uint64_t>& sw, const Lease& lease, Word to,
                      detail::Total counted) noexcept {
  std::uint64_t expected = lease.token;
  if (!sw.compare_exchange_strong(expected, to.raw, std::memory_order_seq_cst, std::memory_order_relaxed))
    return LeaseStatus::lease_lost;
  q.count(counted);
  if (to.state() == State::ready) detail::notify(q.header->work_event);
  return LeaseStatus::ok;
}

}  // namespace

LeaseStatus Queue::Impl::ack_one(const Lease& lease) noexcept {
  auto* sw = leased_word(*this, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // The key fields, read while we hold the lease (the slot may be reused the
  // moment it is free); if the lease is not ours, the CAS below fails.
  const SlotMeta& m = meta(lease.slot);
  const std::uint64_t hash = m.key_hash.load(std::memory_order_relaxed);
  const std::uint32_t entry = m.key_entry.load(std::memory_order_relaxed);
  // T6. Succeeds only if the word is still exactly our token. Release: our
  // reads of the payload happen-before the next producer's writes (T1
  // acquire). seq_cst: before our notify of the room event (wait.hpp).
  std::uint64_t expected = lease.token;
  if (!sw->compare_exchange_strong(expected, Word{lease.token}.next(State::free, 0).raw,
                                   std::memory_order_seq_cst, std::memory_order_relaxed))
    return LeaseStatus::lease_lost;
  // K4. Dies before it: K7 remembers the key when it next looks.
  key_finish(entry, hash, lease.job);
  // FIFO: a job acked at the claim cursor's own slot (the cursor stopped
  // there, e.g. capped at the push cursor) leaves a FREE position the next
  // lap refills; move the cursor over it as purge does. Rare: in the steady
  // state claims have moved the cursor past the slot long before.
  if (lease.slot == header->claim_cursor.load(std::memory_order_relaxed) % capacity)
    skip_unclaimable_positions();
  return LeaseStatus::ok;
}

LeaseStatus Queue::ack(const Lease& lease) noexcept {
  Impl& q = *impl_;
  const LeaseStatus s = q.ack_one(lease);
  if (s == LeaseStatus::ok) {
    q.count(detail::kAcked);
    detail::notify(q.header->room_event);
  }
  return s;
}

std::size_t Queue::ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results) noexcept {
  Impl& q = *impl_;
  std::size_t acked = 0;
  for (std::size_t i = 0; i < leases.size(); ++i) {
    const LeaseStatus s = q.ack_one(leases[i]);
    if (i < results.size()) results[i] = s;
    acked += s == LeaseStatus::ok ? 1 : 0;
  }
  if (acked > 0) {
    q.count(detail::kAcked, acked);
    detail::notify(q.header->room_event);
  }
  return acked;
}

LeaseStatus Queue::release(const Lease& lease, milliseconds delay) noexcept {
  Impl& q = *impl_;
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  delay = std::clamp(delay, milliseconds{0}, kMaxLease);
  const std::uint32_t max_attempts = q.options.max_attempts;
  const bool exhausted =
      max_attempts != 0 && q.meta(lease.slot).attempts.load(std::memory_order_relaxed) >= max_attempts;
  const Word from{lease.token};
  const Word to =
      exhausted
          ? from.next(State::dead, 0)
          : from.next(State::ready,
                      delay.count() > 0 ? detail::now_ms() + static_cast<std::uint64_t>(delay.count()) : 0);
  // T7 (or T8 when the attempts are used up).
  return end_lease(q, *sw, lease, to, exhausted ? detail::kDeadLettered : detail::kReleased);
}

LeaseStatus Queue::give_back(const Lease& lease) noexcept {
  Impl& q = *impl_;
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // Only a current holder may touch the count. While we hold the lease
  // nobody else writes it (claim_pass), unless the lease runs out and is
  // taken over between this check and the CAS below; then the taker's
  // load + store may read our lowered value, the count ends one short and
  // the job gets one extra attempt: the harmless direction.
  if (sw->load(std::memory_order_acquire) != lease.token) return LeaseStatus::lease_lost;
  SlotMeta& m = q.meta(lease.slot);
  std::uint32_t attempts = m.attempts.load(std::memory_order_relaxed);
  // Undo our claim's count. A CAS, not a store: if we are paused here past
  // our lease, the slot may meanwhile hold another job (taken over, acked,
  // pushed again, claimed), and a store would write our old count onto it,
  // giving it fewer attempts; the CAS then fails, or at worst lowers that
  // count (an extra attempt, the harmless direction). Dies right after: the
  // slot is still LEASED with the count one lower; when the lease runs out
  // the next claim counts again, so the attempt that died is not counted.
  if (attempts > 0)
    (void)m.attempts.compare_exchange_strong(attempts, attempts - 1, std::memory_order_relaxed);
  // T7 without the count (the count CAS above is published by its release).
  return end_lease(q, *sw, lease, Word{lease.token}.next(State::ready, 0), detail::kReleased);
}

LeaseStatus Queue::extend(Lease& lease, milliseconds lease_time) {
  Impl& q = *impl_;
  if (!valid_duration(lease_time, false)) {
    const auto ec = make_error_code(errc::invalid_argument);
    throw_error(ec, describe(q.name, ec,
                             "lease of " + std::to_string(lease_time.count()) + " ms not in 1.." +
                                 std::to_string(kMaxLease.count()) + " ms"));
  }
  auto* sw = leased_word(q, lease);
  if (sw == nullptr) return LeaseStatus::lease_lost;
  // T5 extend: same state, new deadline, generation + 1. Works after the
  // deadline too, as long as nobody has taken the lease over.
  const Word to = Word{lease.token}.next(State::leased,
                                         detail::now_ms() + static_cast<std::uint64_t>(lease_time.count()));
  std::uint64_t expected = lease.token;
  if (!sw->compare_exchange_strong(expected, to.raw, std::memory_order_relaxed, std::memory_order_relaxed))
    return LeaseStatus::lease_lost;
  // The owner record is tagged with the generation: move the tag along, so
  // the janitor still recognises the owner. By CAS from a record tagged with
  // our old generation: one that did not name our lease (a claimer that died
  // before writing it, or a forged one) stays untrusted, and a record a later
  // claimer wrote after our new lease expired is not overwritten.
  SlotMeta& m = q.meta(lease.slot);
  std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
  if (detail::owner_gen(owner) == Word{lease.token}.gen())
    m.owner.compare_exchange_strong(
        owner, (owner & ~(detail::kGenMask << detail::kOwnerGenShift)) | detail::make_owner(to.gen(), 0),
        std::memory_order_relaxed);
  lease.token = to.raw;
  return LeaseStatus::ok;
}

LeaseStatus Queue::extend(Job& job, milliseconds lease_time) {
  const LeaseStatus s = extend(job.lease, lease_time);
  if (s == LeaseStatus::ok) job.deadline = detail::to_time_point(Word{job.lease.token}.aux());
  return s;
}

// ---------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------

Stats Queue::stats() const noexcept {
  const Impl& q = *impl_;
  Stats s;
  const std::uint64_t now = detail::now_ms();
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    const Word w{q.state(i).load(std::memory_order_relaxed)};
    if (!w.valid()) {
      ++s.corrupt;
      continue;
    }
    switch (w.state()) {
      case State::free:
        ++s.free;
        break;
      case State::writing:
        ++s.writing;
        break;
      case State::ready:
        ++(Impl::delayed(w, now) ? s.delayed : s.ready);
        break;
      case State::leased:
        if (Impl::lease_current(w, now)) {
          ++s.leased;
          const std::uint64_t at = q.meta(i).claimed_at_ms.load(std::memory_order_relaxed);
          if (at <= now) s.oldest_lease_ms = std::max(s.oldest_lease_ms, now - at);
        } else {
          ++s.expired;
        }
        break;
      case State::dead:
        ++s.dead;
        break;
    }
  }
  for (std::uint32_t e = 0; e < q.key_capacity; ++e) {
    const Word w{q.key_entries[e].word.load(std::memory_order_relaxed)};
    switch (detail::key_state(w)) {
      case detail::KeyState::claimed:
      case detail::KeyState::live:
        ++s.keys_live;
        break;
      case detail::KeyState::remembered:
        s.keys_remembered += Impl::key_expired(w, now) ? 0 : 1;
        break;
      default:
        break;
    }
  }
  s.keys_capacity = q.key_capacity;
  auto total = [&](detail::Total t) { return q.header->totals[t].load(std::memory_order_relaxed); };
  s.pushed = total(detail::kPushed);
  s.claimed = total(detail::kClaimed);
  s.acked = total(detail::kAcked);
  s.released = total(detail::kReleased);
  s.expired_total = total(detail::kExpired);
  s.dead_lettered = total(detail::kDeadLettered);
  s.requeued = total(detail::kRequeued);
  s.purged = total(detail::kPurged);
  s.recovered_writes = total(detail::kRecoveredWrites);
  s.reclaimed = total(detail::kReclaimed);
  s.duplicates = total(detail::kDuplicates);
  s.keys_evicted = total(detail::kKeysEvicted);
  s.keys_full = total(detail::kKeysFull);
  return s;
}

std::vector<JobInfo> Queue::peek(JobState state, std::size_t limit) const {
  const Impl& q = *impl_;
  std::vector<JobInfo> out;
  const std::uint64_t now = detail::now_ms();
  for (std::uint32_t i = 0; i < q.capacity && out.size() < limit; ++i) {
    auto& sw = q.state(i);
    // Acquire: pairs with the commit (T3) or any later RMW, as for a claim.
    const Word w{sw.load(std::memory_order_acquire)};
    JobState s;
    switch (w.state()) {
      case State::ready:
        s = Impl::delayed(w, now) ? JobState::delayed : JobState::ready;
        break;
      case State::leased:
        s = JobState::leased;
        break;
      case State::dead:
        s = JobState::dead;
        break;
      default:
        continue;
    }
    if (s != state) continue;
    const SlotMeta& m = q.meta(i);
    JobInfo info;
    info.id = m.job_id.load(std::memory_order_relaxed);
    info.state = s;
    info.slot = i;
    info.attempts = m.attempts.load(std::memory_order_relaxed);
    if (s == JobState::delayed || s == JobState::leased)
      info.ms_until = static_cast<std::int64_t>(w.aux()) - static_cast<std::int64_t>(now);
    if (s == JobState::leased) {
      const std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
      if (detail::owner_gen(owner) == w.gen()) info.owner_pid = static_cast<int>(detail::owner_pid(owner));
    }
    const std::uint32_t length = m.length.load(std::memory_order_relaxed);
    // A corrupt length (a job quarantined in DEAD by a claim) is listed with
    // no payload, so that an operator can still see and remove it; the
    // payload area is never read past its end.
    info.payload.resize(length <= q.max_payload ? length : 0);
    if (!info.payload.empty()) std::memcpy(info.payload.data(), q.payload(i), info.payload.size());
    // Seqlock-style validation: skip the job if the slot changed meanwhile.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (Word{sw.load(std::memory_order_relaxed)} != w) continue;
    out.push_back(std::move(info));
  }
  return out;
}

namespace {

// Applies `to(word)` by CAS to every slot for which `pick(word, meta)` holds
// (re-checked after a failed CAS); returns how many changed. Stops after
// `limit` changes.
template <typename Pick, typename To>
std::size_t transform_slots(const Queue::Impl& q, Pick pick, To to, std::size_t limit) noexcept {
  std::size_t changed = 0;
  for (std::uint32_t i = 0; i < q.capacity && changed < limit; ++i) {
    auto& sw = q.state(i);
    SlotMeta& m = q.meta(i);
    Word w{sw.load(std::memory_order_acquire)};
    while (pick(w, m)) {
      // The job's key, read before the CAS (the slot may be reused right
      // after it); the CAS from `w` proves they were this job's.
      const JobId id = m.job_id.load(std::memory_order_relaxed);
      const std::uint64_t hash = m.key_hash.load(std::memory_order_relaxed);
      const std::uint32_t entry = m.key_entry.load(std::memory_order_relaxed);
      // Acquire what the previous holder published (a requeued job is read by
      // its next claimer through this RMW), release our changes; seq_cst:
      // before the caller's notify (wait.hpp).
      const Word next = to(w);
      if (sw.compare_exchange_weak(w.raw, next.raw, std::memory_order_seq_cst, std::memory_order_acquire)) {
        // K4 when the job left the queue (purge, remove_dead).
        if (next.state() == State::free && w.valid()) q.key_finish(entry, hash, id);
        ++changed;
        break;
      }
    }
  }
  return changed;
}

}  // namespace

namespace {

// T9 DEAD → READY in two steps, so that resetting the attempts cannot race a
// claim: first DEAD → DEAD (generation + 1) makes us the only requeuer of the
// slot (a rival requeue, purge or remove_dead from the old word fails); then
// the attempts are reset while nobody can claim the job; then DEAD → READY.
// Dies between the steps: the job is still DEAD, with its attempts reset or
// not; consistent either way.
bool requeue_slot(const Queue::Impl& q, std::uint32_t i, Word w) noexcept {
  auto& sw = q.state(i);
  const Word mine = w.next(State::dead, 0);
  if (!sw.compare_exchange_strong(w.raw, mine.raw, std::memory_order_acq_rel, std::memory_order_relaxed))
    return false;
  q.meta(i).attempts.store(0, std::memory_order_relaxed);
  Word expected = mine;
  // seq_cst: before the caller's notify of the work event (wait.hpp).
  return sw.compare_exchange_strong(expected.raw, mine.next(State::ready, 0).raw, std::memory_order_seq_cst,
                                    std::memory_order_relaxed);
}

std::size_t requeue_where(const Queue::Impl& q, std::optional<JobId> only) noexcept {
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    const Word w{q.state(i).load(std::memory_order_acquire)};
    if (w.state() != State::dead) continue;
    if (only && q.meta(i).job_id.load(std::memory_order_relaxed) != *only) continue;
    if (requeue_slot(q, i, w)) {
      ++n;
      if (only) break;
    }
  }
  q.count(detail::kRequeued, n);
  if (n > 0) detail::notify(q.header->work_event);
  return n;
}

}  // namespace

bool Queue::requeue(JobId dead_job) noexcept { return requeue_where(*impl_, dead_job) == 1; }

std::size_t Queue::requeue_dead() noexcept { return requeue_where(*impl_, std::nullopt); }

bool Queue::remove_dead(JobId dead_job) noexcept {
  const Impl& q = *impl_;
  const std::size_t n = transform_slots(
      q,
      [&](Word w, SlotMeta& m) {
        return w.state() == State::dead && m.job_id.load(std::memory_order_relaxed) == dead_job;
      },
      [](Word w) { return w.next(State::free, 0); }, 1);
  q.count(detail::kPurged, n);
  if (n > 0) {
    q.skip_unclaimable_positions();
    detail::notify(q.header->room_event);
  }
  return n == 1;
}

std::size_t Queue::purge(PurgeWhat what) noexcept {
  const Impl& q = *impl_;
  const auto bits = static_cast<unsigned>(what);
  const bool all = what == PurgeWhat::all;
  const std::uint64_t now = detail::now_ms();
  const std::size_t n = transform_slots(
      q,
      [&](Word w, SlotMeta&) {
        if (!w.valid()) return all;  // counted separately below
        switch (w.state()) {
          case State::ready:
            return (bits & static_cast<unsigned>(Impl::delayed(w, now) ? PurgeWhat::delayed
                                                                       : PurgeWhat::ready)) != 0;
          case State::dead:
            return (bits & static_cast<unsigned>(PurgeWhat::dead)) != 0;
          default:
            return false;
        }
      },
      [](Word w) { return Word::make(State::free, w.gen() + 1, 0); }, q.capacity);
  q.count(detail::kPurged, n);
  if (n > 0) {
    q.skip_unclaimable_positions();
    detail::notify(q.header->room_event);
  }
  return n;
}

SweepResult Queue::sweep() noexcept {
  const Impl& q = *impl_;
  SweepResult r;
  const std::uint64_t now = detail::now_ms();
  const std::uint32_t max_attempts = q.options.max_attempts;
  // Verdicts of this pass, so that many leases of one owner cost one check.
  struct Verdict {
    std::uint32_t pid;
    std::uint64_t start;
    bool dead;
  };
  // The last 16 owners judged (a ring: a pass over many owners keeps the
  // recent ones, and leases of one owner tend to be judged together).
  Verdict verdicts[16];
  std::size_t judged = 0;
  auto owner_dead = [&](std::uint32_t pid, std::uint64_t start) {
    for (std::size_t v = 0; v < std::min(judged, std::size(verdicts)); ++v)
      if (verdicts[v].pid == pid && verdicts[v].start == start) return verdicts[v].dead;
    const bool dead = detail::proven_dead(pid, start, (std::uint64_t{1} << detail::kOwnerStartBits) - 1);
    verdicts[judged++ % std::size(verdicts)] = {pid, start, dead};
    return dead;
  };
  bool returned = false;
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    auto& sw = q.state(i);
    Word w{sw.load(std::memory_order_acquire)};
    if (w.state() != State::leased) continue;
    SlotMeta& m = q.meta(i);
    const bool expired = !Impl::lease_current(w, now);
    bool dead_owner = false;
    if (!expired) {
      // One word: PID and start time are the same claimer's. The tag must
      // name this very lease (generation), else the record is a previous
      // owner's, or the claimer died before writing it: then only the
      // deadline frees the slot.
      const std::uint64_t owner = m.owner.load(std::memory_order_relaxed);
      const std::uint32_t pid = detail::owner_pid(owner);
      if (detail::owner_gen(owner) != w.gen() || pid == 0) continue;
      dead_owner = owner_dead(pid, detail::owner_start_bits(owner));
      if (!dead_owner) continue;
    }
    const bool exhausted = max_attempts != 0 && m.attempts.load(std::memory_order_relaxed) >= max_attempts;
    // T7 (or T8). From the word we judged: if the owner acked, extended or
    // the lease was taken over meanwhile, the CAS fails and we do nothing.
    // seq_cst: before our notify of the work event (wait.hpp).
    if (!sw.compare_exchange_strong(w.raw,
                                    exhausted ? w.next(State::dead, 0).raw : w.next(State::ready, 0).raw,
                                    std::memory_order_seq_cst, std::memory_order_relaxed))
      continue;
    if (exhausted) {
      ++r.dead_lettered;
      q.count(detail::kDeadLettered);
    } else {
      returned = true;
    }
    if (dead_owner) {
      ++r.reclaimed;
      q.count(detail::kReclaimed);
    } else {
      ++r.expired;
      q.count(detail::kExpired);
    }
  }
  r.recovered_writes = q.recover_dead_writers();
  // K7 / K6 over the key table: keys of dead producers and finishers, and
  // windows that are over.
  for (std::uint32_t e = 0; e < q.key_capacity; ++e)
    if (detail::key_state(Word{q.key_entries[e].word.load(std::memory_order_relaxed)}) !=
        detail::KeyState::empty)
      q.key_resolve(e, now);
  if (returned) detail::notify(q.header->work_event);
  return r;
}

// ---------------------------------------------------------------------------
// Lease handles
// ---------------------------------------------------------------------------

std::string Lease::to_string() const {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%llu.%u.%llx", static_cast<unsigned long long>(job), slot,
                              static_cast<unsigned long long>(token));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<Lease> Lease::parse(std::string_view text) noexcept {
  Lease l;
  const char* p = text.data();
  const char* const end = text.data() + text.size();
  auto field = [&](auto& value, int base, bool last) {
    auto [next, err] = std::from_chars(p, end, value, base);
    if (err != std::errc{} || next == p) return false;
    p = next;
    if (last) return p == end;
    if (p == end || *p != '.') return false;
    ++p;
    return true;
  };
  if (text.empty() || !field(l.job, 10, false) || !field(l.slot, 10, false) || !field(l.token, 16, true))
    return std::nullopt;
  return l;
}

}  // namespace jobring
