// jobring — the shared-memory layout and the slot state machine.
//
// Internal header: the one place that defines what lives in the segment and
// how its words are encoded.
// Everything here is read by processes that may not trust each other's
// segment, so every field read from shared memory is validated before use
// (open.cpp: validate_header(), and the per-slot checks on length and state).
//
// ============================================================================
// Segment
// ============================================================================
//
//  offset 0 ┌──────────────────────────────────────────────────────────────┐
//           │ Header (kHeaderBytes = 512), one field group per cache line:  │
//           │   line 0  identity + geometry (immutable once published)      │
//           │   line 1  init word, creator pid, mode, creation time, keys  │
//           │   line 2  push cursor      (hint, producers)                  │
//           │   line 3  claim cursor     (hint, workers)                    │
//           │   line 4  next job id                                         │
//           │   line 5  event words for blocking waits (work, room)         │
//           │   line 6  producers' totals; line 7 workers' totals           │
//  states   ├──────────────────────────────────────────────────────────────┤
//   offset  │ capacity × std::atomic<uint64_t> state words, dense, so that  │
//           │ a scan for a claimable slot touches 8 slots per cache line    │
//           │ (padded to a multiple of 64 bytes)                           │
//  slots    ├──────────────────────────────────────────────────────────────┤
//   offset  │ capacity × slot_stride bytes:                                 │
//           │   SlotMeta (64) │ key (64) │ payload (max_payload) │ pad to 64│
//  keys     ├──────────────────────────────────────────────────────────────┤
//   offset  │ key table (keys.hpp): key_capacity / 8 bucket versions (u64), │
//           │ padded to 64; then key_capacity × KeyEntry (32 bytes)         │
//  total    └──────────────────────────────────────────────────────────────┘
//
// Offsets, never pointers: every process maps the segment at its own address.
//
// ============================================================================
// State word (one per slot, std::atomic<uint64_t>)
// ============================================================================
//
//   63    61 60                  40 39                                     0
//  ┌────────┬──────────────────────┬────────────────────────────────────────┐
//  │ state  │ generation           │ aux                                    │
//  │ 3 bits │ 21 bits              │ 40 bits                                │
//  └────────┴──────────────────────┴────────────────────────────────────────┘
//
//   aux by state:  FREE     0
//                  WRITING  the writing producer's liveness token (make_writer)
//                  READY    visible-at time, CLOCK_MONOTONIC ms (0 = now)
//                  LEASED   lease deadline, CLOCK_MONOTONIC ms
//                  DEAD     0
//
// 40 bits of milliseconds is 34 years of uptime; a liveness token is 40 bits.
// jobring never writes a visible-at or deadline more than kMaxLease (7 days)
// ahead of its clock; a word more than 2 × kMaxLease ahead of a reader's clock
// is corrupt and is treated as already passed, so that no forged word hides a
// slot for ever. (The factor 2 is slack for a reader whose clock reading is
// older than the writer's.)
//
// Invariant: every change of a state word is a compare-and-swap from the word
// the changer read, and every successful CAS increments the generation. So a
// process acts on a slot only if nothing happened to it since it looked, and
// the word a worker holds as its fencing token (Lease::token) stops matching
// at the first transition after it. A stale token could match again only if
// the slot went through exactly k·2^21 transitions and came back to the same
// state with the same aux; for LEASED the aux is a deadline, and every lease
// granted after an expired one has a later deadline, so a worker whose lease
// was taken over after expiry can never match again. Every modification being
// an RMW also keeps the release sequence headed by a producer's commit intact,
// so a claimer's acquire CAS synchronises with the producer whose payload it
// reads, however many takeovers happened in between.
//
// The slot state machine — every transition, its memory order, what it wakes
// and counts, and its crash analysis — is in transitions.hpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace jobring::detail {

// ---------------------------------------------------------------------------
// State word
// ---------------------------------------------------------------------------

enum class State : std::uint64_t { free = 0, writing = 1, ready = 2, leased = 3, dead = 4 };
inline constexpr std::uint64_t kMaxValidState = 4;

inline constexpr unsigned kAuxBits = 40;
inline constexpr unsigned kGenBits = 21;
inline constexpr unsigned kGenShift = kAuxBits;
inline constexpr unsigned kStateShift = kAuxBits + kGenBits;
inline constexpr std::uint64_t kAuxMask = (std::uint64_t{1} << kAuxBits) - 1;
inline constexpr std::uint64_t kGenMask = (std::uint64_t{1} << kGenBits) - 1;
static_assert(kStateShift + 3 == 64, "state word fields must fill 64 bits");

struct Word {
  std::uint64_t raw;

  [[nodiscard]] constexpr std::uint64_t state_bits() const noexcept { return raw >> kStateShift; }
  [[nodiscard]] constexpr State state() const noexcept { return static_cast<State>(state_bits()); }
  [[nodiscard]] constexpr bool valid() const noexcept { return state_bits() <= kMaxValidState; }
  [[nodiscard]] constexpr std::uint64_t gen() const noexcept { return (raw >> kGenShift) & kGenMask; }
  [[nodiscard]] constexpr std::uint64_t aux() const noexcept { return raw & kAuxMask; }

  // The word that follows this one: new state and aux, generation + 1.
  [[nodiscard]] constexpr Word next(State s, std::uint64_t aux) const noexcept {
    return make(s, (gen() + 1) & kGenMask, aux);
  }
  [[nodiscard]] static constexpr Word make(State s, std::uint64_t gen, std::uint64_t aux) noexcept {
    return Word{(static_cast<std::uint64_t>(s) << kStateShift) | ((gen & kGenMask) << kGenShift) |
                (aux & kAuxMask)};
  }
  friend constexpr bool operator==(Word, Word) = default;
};

static_assert(Word::make(State::dead, kGenMask, kAuxMask).state() == State::dead);
static_assert(Word::make(State::leased, 5, 123).next(State::free, 0).gen() == 6);
static_assert(Word::make(State::leased, kGenMask, 1).next(State::ready, 0).gen() == 0, "generation wraps");

// ---------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------

inline constexpr std::uint64_t kMagic = 0x474e4952424f4a00ull;  // "\0JOBRING" little-endian
// 2: de-duplication keys (key area in each slot, key table after the slots).
// 3: processes named by liveness tokens instead of PIDs and start times.
inline constexpr std::uint32_t kLayoutVersion = 3;
inline constexpr std::uint32_t kInitDone = 0x52454459u;  // "READY": header fully written
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kHeaderBytes = 512;
inline constexpr std::size_t kSlotMetaBytes = 64;

// Indices into Header::totals: the first eight on line 6, counted by
// producers (and operators); the rest on line 7, counted by workers, so that
// producers and workers in different processes do not bounce one cache line
// between them on every job.
enum Total : unsigned {
  // line 6: producers
  kPushed = 0,
  kRecoveredWrites,
  kDuplicates,
  kKeysEvicted,
  kKeysFull,
  kPurged,
  kRequeued,
  // line 7: workers (and the janitor)
  kClaimed = 8,
  kAcked,
  kReleased,
  kExpired,
  kDeadLettered,
  kReclaimed,
  kTotalCount
};

// Line 0 of the header: identity and geometry. Written by the creator before
// `init` is published with a release store; read by openers after an
// acquire load of `init`, validated once from a private copy (open.cpp), and
// cached in the process (never re-read, so a process that scribbles on the
// header later cannot change our bounds).
struct Identity {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_bytes;
  std::uint32_t capacity;
  std::uint32_t max_payload;
  std::uint32_t slot_stride;
  std::uint32_t max_attempts;
  std::uint64_t default_lease_ms;
  std::uint64_t states_offset;
  std::uint64_t slots_offset;
  std::uint64_t total_bytes;
};
static_assert(sizeof(Identity) == kCacheLine && std::is_trivially_copyable_v<Identity>);

struct alignas(kCacheLine) Header {
  // line 0: identity and geometry (immutable once published).
  Identity identity;

  // line 1: written by the creator before `init` is published, like line 0.
  // The key-table fields are validated from a private copy too.
  alignas(kCacheLine) std::atomic<std::uint32_t> init;  // kInitDone once lines 0-1 are complete
  std::uint32_t creator_pid;
  std::uint32_t mode;
  std::uint32_t key_capacity;  // de-duplication table entries, a multiple of kKeyWays
  std::uint64_t created_realtime_ns;
  std::uint64_t keys_offset;      // bucket versions, then the entries (KeyEntry)
  std::uint64_t dedup_window_ms;  // how long a finished job's key is remembered

  // lines 2-4: hints and the id counter, each on its own line (written often).
  alignas(kCacheLine) std::atomic<std::uint64_t> push_cursor;   // hint: where producers start looking
  alignas(kCacheLine) std::atomic<std::uint64_t> claim_cursor;  // hint: where workers start looking
  alignas(kCacheLine) std::atomic<std::uint64_t> next_job_id;   // fetch_add; ids start at 1

  // line 5: event words for blocking waits (wait.hpp): (sequence << 1) |
  // someone-is-waiting bit. Futex words, shared between processes.
  alignas(kCacheLine) std::atomic<std::uint32_t> work_event;  // a job may have become claimable
  std::atomic<std::uint32_t> room_event;                      // a slot may have become free

  // lines 6-7: totals. Statistics, and the claimable signature of the
  // empty-ring memo (claim.cpp): bumped with release RMWs after the
  // transition they count. A hostile write here can make a poller answer
  // "empty" for at most the memo's age bound (2 ms), never lose a job.
  alignas(kCacheLine) std::atomic<std::uint64_t> totals[16];
};

static_assert(std::is_standard_layout_v<Header>);
static_assert(offsetof(Header, identity) == 0);
static_assert(sizeof(Header) == kHeaderBytes);
static_assert(offsetof(Header, init) == 1 * kCacheLine);
static_assert(offsetof(Header, push_cursor) == 2 * kCacheLine);
static_assert(offsetof(Header, claim_cursor) == 3 * kCacheLine);
static_assert(offsetof(Header, next_job_id) == 4 * kCacheLine);
static_assert(offsetof(Header, work_event) == 5 * kCacheLine);
static_assert(offsetof(Header, totals) == 6 * kCacheLine);
static_assert(kTotalCount <= 16);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && alignof(std::atomic<std::uint64_t>) == 8);

// ---------------------------------------------------------------------------
// Process names in records
// ---------------------------------------------------------------------------

// A process is named by its liveness token (liveness.hpp): a random 40-bit
// number that it holds a lock on for as long as it lives and has not exec'd.
// 0 names nobody (a detached lease; a process that could not take a token).
inline constexpr unsigned kTokenBitsInRecords = 40;
inline constexpr std::uint64_t kRecordTokenMask = (std::uint64_t{1} << kTokenBitsInRecords) - 1;
static_assert(kTokenBitsInRecords <= kAuxBits, "a WRITING word's aux holds the writer's token");

// WRITING aux and a CLAIMED key entry's aux: the writer's token.
[[nodiscard]] constexpr std::uint64_t make_writer(std::uint64_t token) noexcept {
  return token & kRecordTokenMask;
}
[[nodiscard]] constexpr std::uint64_t writer_token(std::uint64_t aux) noexcept {
  return aux & kRecordTokenMask;
}

// Lease owner record (SlotMeta::owner), one word written with one store:
//
//   63             43 42   40 39                                  0
//  ┌─────────────────┬───────┬──────────────────────────────────────┐
//  │ generation (21) │ 0 (3) │ owner's token (40); 0 = detached     │
//  └─────────────────┴───────┴──────────────────────────────────────┘
//
// The generation tag names the lease (the state word's generation) the
// record belongs to: a record with another tag is a previous owner's, or one
// that a claimer died before writing, and is never trusted.
inline constexpr unsigned kOwnerGenShift = 43;
static_assert(kOwnerGenShift + kGenBits == 64 && kOwnerGenShift >= kTokenBitsInRecords);
[[nodiscard]] constexpr std::uint64_t make_owner(std::uint64_t gen, std::uint64_t token) noexcept {
  return ((gen & kGenMask) << kOwnerGenShift) | (token & kRecordTokenMask);
}
[[nodiscard]] constexpr std::uint64_t owner_gen(std::uint64_t owner) noexcept {
  return owner >> kOwnerGenShift;
}
[[nodiscard]] constexpr std::uint64_t owner_token(std::uint64_t owner) noexcept {
  return owner & kRecordTokenMask;
}
static_assert(owner_gen(make_owner(kGenMask, 1)) == kGenMask);
static_assert(owner_token(make_owner(3, kRecordTokenMask)) == kRecordTokenMask);

// ---------------------------------------------------------------------------
// Slot
// ---------------------------------------------------------------------------

struct alignas(kCacheLine) SlotMeta {
  // Written by the producer while the slot is WRITING (it is the only writer
  // then), published by its commit CAS (release), read by claimers after their
  // CAS (acquire). Relaxed atomics, so that a reader that lost a race reads a
  // stale value instead of a torn one; readers validate before use.
  std::atomic<std::uint64_t> job_id;
  std::atomic<std::uint32_t> length;
  // Claims of this job so far: the claimer increments it right after its CAS;
  // reset by push (WRITING) and by requeue (while DEAD).
  std::atomic<std::uint32_t> attempts;
  // Lease owner record (make_owner above), written by the claimer with one
  // store right after its CAS; trusted only when its generation tag matches
  // the state word's.
  std::atomic<std::uint64_t> owner;
  std::atomic<std::uint64_t> claimed_at_ms;  // CLOCK_MONOTONIC ms of the current lease's claim
  // De-duplication key (keys.hpp), written by the producer while WRITING like
  // job_id: its hash (0 = pushed without a key), its length (the bytes are in
  // the slot's key area) and the key-table entry that holds it.
  std::atomic<std::uint64_t> key_hash;
  std::atomic<std::uint32_t> key_length;
  std::atomic<std::uint32_t> key_entry;
  // The owner's PID as the owner saw it, for display only (peek): written
  // with the owner record, shown when that record's tag matches.
  std::atomic<std::uint32_t> owner_pid;
  std::uint32_t reserved32;
  std::uint64_t reserved;
};
static_assert(std::is_standard_layout_v<SlotMeta>);
static_assert(sizeof(SlotMeta) == kSlotMetaBytes);

// ---------------------------------------------------------------------------
// Geometry: the only place sizes and offsets are computed.
// ---------------------------------------------------------------------------

[[nodiscard]] constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t to) noexcept {
  return (n + to - 1) / to * to;
}

inline constexpr std::size_t kKeyAreaBytes = 64;  // == kMaxKeyLength (queue.hpp)
inline constexpr std::uint32_t kKeyWays = 16;     // entries per key-table bucket (keys.hpp)
inline constexpr std::size_t kKeyEntryBytes = 32;

// Options::dedup_keys = 0: two entries per slot, so that a table whose every
// job holds a key is half full of live keys at most (keys.hpp: with two
// bucket choices a bucket then overflows with negligible odds).
[[nodiscard]] constexpr std::uint32_t default_key_capacity(std::uint32_t capacity) noexcept {
  return static_cast<std::uint32_t>(round_up(std::uint64_t{capacity} * 2, kKeyWays));
}

struct Geometry {
  std::uint64_t slot_stride;
  std::uint64_t states_offset;
  std::uint64_t slots_offset;
  std::uint64_t keys_offset;     // key-table bucket versions (8 bytes per bucket)
  std::uint64_t entries_offset;  // key-table entries
  std::uint64_t total_bytes;
};

// Callers bound capacity, max_payload and key_capacity first (kMaxCapacity,
// kMaxPayload, kMaxKeyCapacity), so none of these products can overflow 64
// bits: 2^24 × (2^26 + 192) + 2^25 × 33 < 2^51.
//
//   slot:  SlotMeta (64) │ key area (64) │ payload (max_payload) │ pad to 64
[[nodiscard]] constexpr Geometry geometry(std::uint32_t capacity, std::uint32_t max_payload,
                                          std::uint32_t key_capacity) noexcept {
  Geometry g{};
  g.slot_stride = round_up(kSlotMetaBytes + kKeyAreaBytes + std::uint64_t{max_payload}, kCacheLine);
  g.states_offset = kHeaderBytes;
  g.slots_offset = g.states_offset + round_up(std::uint64_t{capacity} * 8, kCacheLine);
  g.keys_offset = g.slots_offset + std::uint64_t{capacity} * g.slot_stride;
  g.entries_offset = g.keys_offset + round_up(std::uint64_t{key_capacity / kKeyWays} * 8, kCacheLine);
  g.total_bytes = g.entries_offset + std::uint64_t{key_capacity} * kKeyEntryBytes;
  return g;
}
[[nodiscard]] constexpr Geometry geometry(std::uint32_t capacity, std::uint32_t max_payload) noexcept {
  return geometry(capacity, max_payload, default_key_capacity(capacity));
}

}  // namespace jobring::detail
