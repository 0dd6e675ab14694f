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
//           │   line 1  init word, creator pid, mode, creation time, keys,  │
//           │           incarnation                                         │
//           │   line 2  push cursor      (hint, producers)                  │
//           │   line 3  claim cursor     (hint, workers)                    │
//           │   line 4  next job id                                         │
//           │   line 5  event words for blocking waits (work, room)         │
//           │   line 6  producers' totals; line 7 workers' totals           │
//           │   (layout 7: line 8, Durable, below)                          │
//  tallies  ├──────────────────────────────────────────────────────────────┤
//   offset  │ kTallyBlocks (64) × TallyBlock, one cache line each: an owner │
//  (= header│ word (one thread of one handle) and that thread's own counts  │
//   bytes)  │ of pushes, claims and acks (layout 6/7; below, "Tallies")     │
//  states   ├──────────────────────────────────────────────────────────────┤
//   offset  │ capacity × std::atomic<uint64_t> state words, dense, so that  │
//           │ a scan for a claimable slot touches 8 slots per cache line    │
//           │ (padded to a multiple of 64 bytes)                           │
//  slots    ├──────────────────────────────────────────────────────────────┤
//   offset  │ capacity × slot_stride bytes:                                 │
//           │   SlotMeta (64) │ key (64) │ note (128) │ payload       │
//           │   (max_payload) │ pad to 64                                 │
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
// state with the same aux. The residual case, exactly: a lease operation
// also checks the slot's job id, and ids are never reused, so the slot held
// the same job throughout: at least 2^21 (2,097,152) transitions of one job
// that was never acked (claims, takeovers, releases and extends; with
// max_attempts set, claims and releases are bounded by it, so in practice
// extends by its holders); and the lease in force then must have exactly the
// stale token's deadline, to the millisecond. A takeover never does that:
// it judges the old lease expired with the same clock reading its new
// deadline is computed from (claim.cpp, take), so the new deadline is later
// than every earlier one that had expired. What can repeat a deadline: a
// claim after a release granting now + L equal to an earlier deadline that
// had not passed; an extend that shortens a lease; a claim whose clock
// reading is stale (a long scan, or a claimer descheduled between reading
// the clock and its CAS). So a stale token matches only if its holder keeps
// it across two million transitions of its job and uses it in the one
// millisecond that repeats its deadline: jobring does not guard against
// that (README, Limits). Every modification being
// an RMW also keeps the release sequence headed by a producer's commit intact,
// so a claimer's acquire CAS synchronises with the producer whose payload it
// reads, however many takeovers happened in between.
//
// The slot state machine — every transition, its memory order, what it wakes
// and counts, and its crash analysis — is in transitions.hpp.
#pragma once

#include <algorithm>
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
// 3: the incarnation id in header line 1; SlotMeta::attempts a 64-bit word
//    tagged with a generation; processes named by liveness tokens.
// 4: SlotMeta::pushed_at_ms (the job's enqueue time) in the former
//    reserved word; a note area (SlotNote: when and why a job died) between
//    the key area and the payload.
// 5: a file-backed (durable) segment (README, "Queues that survive a
//    reboot"): layout 4 with one more header line (Durable, below), so
//    that a library that reads only layout 4 refuses it instead of using it
//    without its boot recovery. Segments in /dev/shm keep layout 4.
// 6: tally blocks (issue 16: per-thread totals for the hot path's three
//    counts, so that push, claim and ack take no shared locked RMW for
//    them) between the header and the state words: states_offset moves by
//    kTallyBytes. Memory segments.
// 7: layout 6 with the durable header line, for file-backed segments (as
//    5 is 4 with it). Both new numbers are above 5, so a library that reads
//    4 and 5 calls a layout 6 or 7 segment newer and refuses it; this one
//    calls 4 and 5 older and refuses them (options.cpp, validate_header).
inline constexpr std::uint32_t kLayoutVersion = 6;
inline constexpr std::uint32_t kDurableLayoutVersion = 7;
inline constexpr std::uint32_t kInitDone = 0x52454459u;  // "READY": header fully written
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kHeaderBytes = 512;
inline constexpr std::size_t kDurableHeaderBytes = kHeaderBytes + 64;  // layout 7: + Durable
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
  kMovedOut,  // dead jobs moved to another queue (move.cpp)
  // line 7: workers (and the janitor)
  kClaimed = 8,
  kAcked,
  kReleased,
  kExpired,
  kDeadLettered,
  kReclaimed,
  kMovedIn,     // jobs moved in from another queue (move.cpp)
  kSyncErrors,  // msyncs the kernel refused (Sync::always, durable.cpp)
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
  // Random, never 0, drawn (getrandom) by the creator: tells this queue from
  // every other one that had or will have its name (Queue::incarnation()).
  std::uint64_t incarnation;
  // The one word of line 1 that changes after creation: nonzero while the
  // queue is paused (Queue::pause; 0 at creation, as the zero-filled
  // segment has it). Read by every claim pass, written only by pause() and
  // resume(), so the line stays shared-clean in every core's cache. Any
  // nonzero value (a hostile writer's too) means paused: claims hand out
  // nothing, which loses no job. Not part of the validated private copy.
  std::atomic<std::uint32_t> paused;

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
  // kPushed, kClaimed and kAcked are counted here only by a thread that
  // has no tally block (Tallies, below); a total is this word plus the
  // blocks' counts (Ring::total).
  alignas(kCacheLine) std::atomic<std::uint64_t> totals[16];
};

// Header line 8, layout 7 only (a file-backed segment, durable.cpp): what
// a segment that outlives a boot needs to make sense of its own times.
//
// Segment time. Every time written into a slot, a key entry or a note is
// on the segment's clock: the host's CLOCK_MONOTONIC in ms (now_ms) plus
// `clock_base`. In /dev/shm the base is 0 (the segment dies with the boot).
// A file outlives the boot whose CLOCK_MONOTONIC its times were read from:
// the first opener in a new boot (recovery) chooses a new base so that the
// segment's clock goes on from where it was, as CLOCK_REALTIME says, and
// no time stored in the file needs rewriting: a delayed job comes due at the
// same wall-clock time, a key's window ends at the same wall-clock time.
struct alignas(kCacheLine) Durable {
  // A 64-bit key of the boot (/proc/sys/kernel/random/boot_id) whose
  // CLOCK_MONOTONIC `clock_base` applies to: 0 until the creator writes it.
  // Written last by a recovery, with release: an opener that loads its own
  // boot's key (acquire) reads that recovery's base and everything it did.
  std::atomic<std::uint64_t> boot;
  std::atomic<std::uint64_t> clock_base;  // segment time = now_ms() + clock_base
  // CLOCK_REALTIME ms minus segment time, and the segment time then: the
  // anchor a recovery maps the reboot through. Refreshed at every writable
  // open and every sweep (a janitor's: every interval), so that a step of
  // the wall clock (NTP, an operator) moves it at most that long.
  std::atomic<std::int64_t> realtime_minus_clock;
  std::atomic<std::uint64_t> clock_seen;
  // The sync policy (Options::sync) and its interval: written by the
  // creator before `init`, immutable, validated from a private copy.
  std::uint32_t sync;
  std::uint32_t sync_interval_ms;
  std::atomic<std::uint64_t> recoveries;        // boots this queue was recovered in
  std::atomic<std::uint64_t> recovered_leases;  // leases those recoveries returned
  std::atomic<std::uint64_t> recovered_writes;  // half-written slots they freed
};
static_assert(sizeof(Durable) == kCacheLine && std::is_standard_layout_v<Durable>);

static_assert(std::is_standard_layout_v<Header>);
static_assert(offsetof(Header, identity) == 0);
static_assert(sizeof(Header) == kHeaderBytes);
static_assert(offsetof(Header, init) == 1 * kCacheLine);
static_assert(offsetof(Header, dedup_window_ms) == 1 * kCacheLine + 32);
static_assert(offsetof(Header, incarnation) == 1 * kCacheLine + 40);
static_assert(offsetof(Header, paused) == 1 * kCacheLine + 48);
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

// Attempt count (SlotMeta::attempts), one word tagged like the owner record:
//
//   63             43 42        32 31                                  0
//  ┌─────────────────┬────────────┬─────────────────────────────────────┐
//  │ generation (21) │   0 (11)   │ count (32): claims of this job      │
//  └─────────────────┴────────────┴─────────────────────────────────────┘
//
// The tag is the generation of the state word its writer made or held when
// it wrote: a producer the slot's WRITING word, a claimer its new lease, an
// extend the lease's new word, a requeuer its DEAD lock word.
inline constexpr unsigned kAttemptsGenShift = kOwnerGenShift;
[[nodiscard]] constexpr std::uint64_t make_attempts(std::uint64_t gen, std::uint32_t count) noexcept {
  return ((gen & kGenMask) << kAttemptsGenShift) | count;
}
[[nodiscard]] constexpr std::uint64_t attempts_gen(std::uint64_t a) noexcept {
  return a >> kAttemptsGenShift;
}
[[nodiscard]] constexpr std::uint32_t attempts_count(std::uint64_t a) noexcept {
  return static_cast<std::uint32_t>(a);
}
static_assert(attempts_gen(make_attempts(kGenMask, 0xffffffffu)) == kGenMask);
static_assert(attempts_count(make_attempts(kGenMask, 0xffffffffu)) == 0xffffffffu);

// Is generation a later than b? Generations wrap at 2^21, so "later" means
// less than half the cycle ahead. Every tag in a slot's meta lies a few
// generations behind the state word at most (see count_claim below), so
// this is exact unless a process stalls across 2^20 transitions of one slot
// — the same bound as a stale token's (the invariant at the top).
[[nodiscard]] constexpr bool gen_after(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t d = (a - b) & kGenMask;
  return d != 0 && d <= kGenMask / 2;
}
static_assert(gen_after(1, 0) && !gen_after(0, 1) && !gen_after(5, 5));
static_assert(gen_after(0, kGenMask), "generations wrap");

// ---------------------------------------------------------------------------
// Slot
// ---------------------------------------------------------------------------

struct alignas(kCacheLine) SlotMeta {
  // Written by the producer while the slot is WRITING (it is the only writer
  // then), published by its commit CAS (release), read by claimers after their
  // CAS (acquire). Relaxed atomics, so that a reader that lost a race reads a
  // stale value instead of a torn one; readers validate before use.
  std::atomic<std::uint64_t> job_id;
  // Claims of this job so far, tagged (make_attempts above): set by push
  // (WRITING), counted by each claimer after its CAS (count_claim), moved
  // along by extend, lowered by give_back, reset by requeue (while DEAD).
  std::atomic<std::uint64_t> attempts;
  // Lease owner record (make_owner above), written by the claimer right
  // after its CAS (record_owner); trusted only when its generation tag
  // matches the state word's.
  std::atomic<std::uint64_t> owner;
  std::atomic<std::uint64_t> claimed_at_ms;  // CLOCK_MONOTONIC ms of the current lease's claim
  // De-duplication key (keys.hpp), written by the producer while WRITING like
  // job_id: its hash (0 = pushed without a key), its length (the bytes are in
  // the slot's key area) and the key-table entry that holds it.
  std::atomic<std::uint64_t> key_hash;
  std::atomic<std::uint32_t> length;
  std::atomic<std::uint32_t> key_length;
  std::atomic<std::uint32_t> key_entry;
  // The owner's PID as the owner saw it, for display only (peek): written
  // with the owner record, shown when that record's tag matches.
  std::atomic<std::uint32_t> owner_pid;
  // When the job was enqueued, CLOCK_MONOTONIC ms: stored by the producer
  // while WRITING like job_id (published by its commit), and again by a
  // requeuer while it holds the slot DEAD (T9 requeue-lock; published by its
  // requeue CAS), since a requeue is a new enqueue. Read only for display
  // and for Stats::oldest_ready_ms, as advice: a value in the future or 0
  // (never written by jobring) reads as age 0 (age_ms below).
  std::atomic<std::uint64_t> pushed_at_ms;
};
static_assert(std::is_standard_layout_v<SlotMeta>);
static_assert(sizeof(SlotMeta) == kSlotMetaBytes);
static_assert(offsetof(SlotMeta, job_id) == 0 && offsetof(SlotMeta, attempts) == 8 &&
              offsetof(SlotMeta, owner) == 16 && offsetof(SlotMeta, claimed_at_ms) == 24 &&
              offsetof(SlotMeta, key_hash) == 32 && offsetof(SlotMeta, length) == 40 &&
              offsetof(SlotMeta, key_length) == 44 && offsetof(SlotMeta, key_entry) == 48 &&
              offsetof(SlotMeta, pushed_at_ms) == 56);

// How long ago `since` (CLOCK_MONOTONIC ms, read from the segment) was at
// `now`: 0 for a time in the future or 0 (a forged or never-written value),
// so that no value of a hostile segment makes an age wrap or overflow.
[[nodiscard]] constexpr std::uint64_t age_ms(std::uint64_t since, std::uint64_t now) noexcept {
  return since != 0 && since <= now ? now - since : 0;
}
// The waiting age of a READY job with visible-at `visible_at` (0 = at once)
// pushed at `pushed_at`: it waits from when it became claimable, the later
// of the two (a delayed job waits from when it came due).
[[nodiscard]] constexpr std::uint64_t waiting_ms(std::uint64_t pushed_at, std::uint64_t visible_at,
                                                 std::uint64_t now) noexcept {
  return age_ms(pushed_at == 0 ? 0 : std::max(pushed_at, visible_at), now);
}
static_assert(age_ms(5, 3) == 0 && age_ms(0, 3) == 0 && age_ms(3, 5) == 2);
static_assert(waiting_ms(10, 15, 20) == 5 && waiting_ms(10, 0, 20) == 10 && waiting_ms(10, 25, 20) == 0);

// The writers of the tagged words. Only a producer (while WRITING) stores;
// everyone else CASes from the value it read, and only if that value's tag is
// not later than the state word it acted from. Invariant: the tags of a
// slot's `attempts` and `owner` lie between the generation of its current
// job's WRITING word and its state word's (modulo the wrap, gen_after):
//   - the producer stores tag = its WRITING word's generation (push.cpp);
//   - every other writer writes a generation it made itself (a claimer's
//     lease, an extend's new word, a requeuer's lock) or keeps the tag read;
//   - a writer whose state word has moved on — a claimer stalled after its
//     CAS (issue 13 item 7), an extender or a requeuer stalled after theirs —
//     finds a tag later than its own word once anyone after it wrote (a
//     takeover, the next job's producer, a rival requeue): its CAS is not
//     tried, or fails on the changed value and is not retried. So no stale
//     write lands on another job, or on a later lease of the same job.
// So a count is always the current job's: readers (the attempts-used-up
// checks, peek) take it as it is, except a tag later than the word (only a
// forged or wrapped value), read as 0. What a count may miss: the claim of
// a claimer that died (or stalled past its lease until someone else counted)
// between its CAS and count_claim — the job then gets one attempt more, the
// harmless direction. A count may include a claim that stalled past its
// lease and counted on resuming without anyone counting in between: that
// claim did take the job, though it delivers nothing (copy_out sees the lost
// lease), like a claimer whose lease ran out.

// The count of the job in a slot whose state word is `w`.
[[nodiscard]] inline std::uint32_t attempts_of(const SlotMeta& m, Word w) noexcept {
  const std::uint64_t a = m.attempts.load(std::memory_order_relaxed);
  return gen_after(attempts_gen(a), w.gen()) ? 0 : attempts_count(a);
}

// A claimer that CASed the state word from `from` to `mine` counts its
// attempt; returns it. Relaxed: one word, whose every change is an RMW (but
// push's store), so the CAS compares with the latest value; readers take the
// count as advice for a decision that their own state CAS validates. Dies
// before: the attempt is not counted (above). Dies after: counted.
inline std::uint32_t count_claim(SlotMeta& m, Word from, Word mine) noexcept {
  std::uint64_t a = m.attempts.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint32_t attempt = attempts_count(a) + 1;
    // A later tag: the slot moved on since our CAS; our lease is lost (the
    // caller finds the word changed) and this count is not ours to touch.
    if (gen_after(attempts_gen(a), from.gen())) return attempt;
    if (m.attempts.compare_exchange_weak(a, make_attempts(mine.gen(), attempt), std::memory_order_relaxed))
      return attempt;
  }
}

// The claimer's owner record (owner_bits: PID and start time), by CAS from
// a record not later than `from`, for the same reason. Dies before it: the
// record names an earlier lease (untrusted: the lease runs out by its
// deadline). Dies after: the janitor can prove the owner dead.
inline bool record_owner(SlotMeta& m, Word from, Word mine, std::uint64_t owner_bits) noexcept {
  std::uint64_t o = m.owner.load(std::memory_order_relaxed);
  const std::uint64_t want = owner_bits | make_owner(mine.gen(), 0);
  while (!gen_after(owner_gen(o), from.gen()))
    if (m.owner.compare_exchange_weak(o, want, std::memory_order_relaxed)) return true;
  return false;
}

// A requeuer that holds the slot DEAD as `locked` (T9 requeue-lock) resets
// the count, by CAS for the same reason: a requeuer stalled after its lock
// must not reset the count of the claim that followed a rival's requeue.
// Dies before: the job is requeued with its old count (requeue the job again).
inline void reset_attempts(SlotMeta& m, Word locked) noexcept {
  std::uint64_t a = m.attempts.load(std::memory_order_relaxed);
  while (!gen_after(attempts_gen(a), locked.gen()))
    if (m.attempts.compare_exchange_weak(a, make_attempts(locked.gen(), 0), std::memory_order_relaxed))
      return;
}

// ---------------------------------------------------------------------------
// Note: when and why a job died
// ---------------------------------------------------------------------------
//
// Each slot has a note area after its key area, for its job's last failure:
//
//   word 0  stamp  generation (21) │ 0 (3) │ failed-at, CLOCK_MONOTONIC ms (40)
//   word 1  size   generation (21) │ 0 (3) │ length of the text in bytes (40)
//   2..15   text   kMaxNoteBytes bytes, eight per word
//
// Written only by a process about to dead-letter the job (T8: a release on
// the last attempt, a claimer or sweep finding its last lease expired or its
// owner dead, a claimer quarantining a corrupt slot), *before* its T8 CAS,
// or by a mover bringing a dead job in from another queue (move.cpp, while
// the slot is its WRITING, before its T10 CAS), tagged with the generation
// of the DEAD word that CAS writes: the CAS
// (acq_rel) publishes the note with the job's death, so a reader that
// acquires the DEAD word (peek) reads the note of that death. Dies before
// the CAS: the job is not dead, and the note's tag names no DEAD word (the
// next dead-letterer writes its own). Dies after: dead with its note. A
// writer whose CAS fails leaves a note tagged with a word that is not DEAD
// (or is a later death of the same job, see below), which no reader shows.
//
// The stamp is also a small seqlock (notes.cpp): a writer claims it (CAS to
// the value kNoteBusy), writes, and publishes it by a release store; a
// writer whose death is older than the note's (stalled since it read an
// older word of the slot) leaves the note alone; a reader shows a note only
// if the stamp is not busy and did not change while it read. Every word is
// a relaxed atomic, so writers of the same death racing (a release and a
// claimer both dead-lettering the same expired lease) produce at worst a
// note whose text mixes theirs, never a data race; the reader checks both
// tags and clamps the length to the area, so a garbled or hostile note is
// never read past its end. A reader shows a note tagged with the DEAD word's generation, or
// the one before: a requeuer that locked the slot (T9 requeue-lock, DEAD →
// DEAD) and died leaves the job DEAD one generation past its note, and a
// word one generation after a LEASED word it was written from is the same
// job's (only T8 makes DEAD from LEASED). A note is never cleared: a push
// or a requeue leaves it, untagged for the new word, until the next death.
struct SlotNote {
  std::atomic<std::uint64_t> stamp;
  std::atomic<std::uint64_t> size;
  std::atomic<std::uint64_t> text[14];
};
inline constexpr std::size_t kNoteAreaBytes = 128;
inline constexpr std::size_t kMaxNoteBytes = sizeof(SlotNote::text);
static_assert(sizeof(SlotNote) == kNoteAreaBytes && std::is_standard_layout_v<SlotNote>);
static_assert(kMaxNoteBytes == 112);

inline constexpr unsigned kNoteGenShift = kOwnerGenShift;
[[nodiscard]] constexpr std::uint64_t make_note_word(std::uint64_t gen, std::uint64_t value) noexcept {
  return ((gen & kGenMask) << kNoteGenShift) | (value & kAuxMask);
}
[[nodiscard]] constexpr std::uint64_t note_gen(std::uint64_t w) noexcept { return w >> kNoteGenShift; }
[[nodiscard]] constexpr std::uint64_t note_value(std::uint64_t w) noexcept { return w & kAuxMask; }
// The stamp's value while a writer holds the note (notes.cpp, a seqlock).
inline constexpr std::uint64_t kNoteBusy = kAuxMask;
static_assert(note_gen(make_note_word(kGenMask, kAuxMask)) == kGenMask);
static_assert(note_value(make_note_word(kGenMask, kAuxMask)) == kAuxMask);

// ---------------------------------------------------------------------------
// Tallies: per-thread totals for the hot path (layout 6 and 7)
// ---------------------------------------------------------------------------
//
// Every job is pushed (T3), claimed (T4) and acked (T6) once; counting each
// in Header::totals took a locked RMW on a line every producer (or every
// worker) writes: three of the ten locked RMWs of a job, ~25 ns of a
// 135-ns cycle (issue 16). Instead a thread counts them in a block of its
// own, with a plain load and store (no lock prefix: it is the block's only
// writer), and a total is Header::totals[t] plus the sum over the blocks.
//
//   block (64 bytes, one line):  owner │ pushed │ claimed │ acked │ 4 spare
//
//   owner  63 62 61                      40 39                          0
//         ┌─────┬──────────────────────────┬─────────────────────────────┐
//         │ ep 2│ thread id (22)           │ handle's liveness token (40)│
//         └─────┴──────────────────────────┴─────────────────────────────┘
//   0 = free. The token names the queue handle (liveness.hpp: one token
//   per handle, held for as long as the handle is open in its process); the
//   thread id (gettid, below 2^22 = PID_MAX_LIMIT on every Linux, checked:
//   a larger one takes no block) names the thread within that process.
//   `ep` (epoch) changes at every CAS that takes the block, so that a CAS
//   from an owner word read earlier fails if anyone took it since.
//
// Who writes what (tally.cpp):
//   - the owner word, only by CAS from the value read: 0 → ours (a free
//     block), dead owner → ours (adoption), ours → ours with the epoch
//     bumped (a thread that finds its own block again without its cache).
//     Acq_rel: see the counters.
//   - a counter, only by the owner thread: load, add, store (relaxed:
//     statistics, which no decision reads). The owner never gives the
//     block back: no thread exit hook touches the segment (the handle may
//     be closed first); an exited thread's or a closed handle's block is
//     adopted by the next thread that needs one, counters and all (totals
//     are sums).
//   - readers (stats): relaxed loads, bounds from the validated geometry.
//
// Proof of death, for adoption: the owner's token is proven gone
// (Liveness::proven_gone: the handle was closed, or its process died or
// exec'd), or the token is the adopter's own handle's (so the writer was a
// thread of the adopter's process) and tgkill(getpid(), tid, 0) says
// ESRCH (that thread has exited). A thread of another live process is
// never judged: its block waits for its handle to go.
//
// Crash analysis:
//   - A thread killed between its transition (T3, T4, T6) and its counter
//     store: that call's counts are lost (one; a batch's n), as they were
//     between the transition and the shared fetch_add; the jobs are not. Killed between the counter's
//     load and its store: the same (the store never happens).
//   - Killed just before a CAS that takes a block: nothing changed. Just
//     after: the block is owned by a dead thread, and is adopted later.
//   - Two adopters of one dead block: both CAS from the same dead word; one
//     wins, the other re-reads and moves on.
//   - An adopter continues the dead owner's counters. It read them after
//     the kernel proved the owner gone (the owner's stores were complete
//     when the kernel took the thread down; the C++ model does not speak of
//     death, this is the argument every dead-process record in jobring
//     makes), and our CAS is acq_rel on the word the owner took with one.
//   - A thread id reused by a new thread of the same process while an
//     adopter is between its tgkill and its CAS: the new thread takes the
//     block "again" by CAS (epoch + 1), so the adopter's CAS fails. (Four
//     such takes inside that window would bring the epoch back: then the
//     block has two writers and its counts may lose increments — stats
//     only, never a job.)
//   - fork: a child has one thread, the one that forked, whose cache still
//     names its parent's blocks; a pthread_atfork child handler empties it
//     before fork returns (tally.cpp), and the child's handles take new
//     tokens (liveness.hpp), so the child takes blocks of its own. vfork
//     is safe (the child shares the parent's memory, cache included, while
//     the parent waits), and posix_spawn runs no jobring code. A child made
//     without the handler (a raw clone without CLONE_VM, _Fork(),
//     syscall(SYS_fork)) that runs jobring code keeps its parent's tokens
//     and cache: it writes its parent's block, and its tgkill finds every
//     parent thread "gone", so it may adopt their live blocks too: two
//     writers, lost increments, stats only.
//   - Hostile words: an owner word naming a live token leaks its block
//     (nobody adopts it; when no block is left, counts go to the shared
//     totals, still exact); an owner word naming the caller's own (token,
//     thread) makes it count into that block too (harmless); a forged
//     counter skews the stats it is summed into, and nothing else reads
//     it (the empty-ring memo does not: claim.cpp).
//
// Stats stay monotonic while every block has one writer: each counter is
// only ever increased, by that writer, from the latest value (adoption
// included), and a reader's successive relaxed loads of one word never go
// back (read-read coherence). In the two-writer cases above a counter can
// also step back (A loads 100, B stores 101 .. 150, A stores 101): stats
// only, and only there.
inline constexpr std::uint32_t kTallyBlocks = 64;
inline constexpr unsigned kTallyTidBits = 22;
inline constexpr unsigned kTallyTidShift = kTokenBitsInRecords;
inline constexpr unsigned kTallyEpochShift = kTallyTidShift + kTallyTidBits;
inline constexpr std::uint64_t kTallyTidMask = (std::uint64_t{1} << kTallyTidBits) - 1;
inline constexpr std::uint64_t kTallyHolderMask = (std::uint64_t{1} << kTallyEpochShift) - 1;
static_assert(kTallyEpochShift + 2 == 64, "owner word: token 40 | tid 22 | epoch 2");

// The counts a tally block holds, and the Total each one adds to.
enum Tally : unsigned { kTallyPushed = 0, kTallyClaimed, kTallyAcked, kTallyCount };
inline constexpr Total kTallyTotal[kTallyCount] = {kPushed, kClaimed, kAcked};
// The tally counting total t, or kTallyCount if it has none.
[[nodiscard]] constexpr unsigned tally_of(unsigned t) noexcept {
  for (unsigned k = 0; k < kTallyCount; ++k)
    if (kTallyTotal[k] == t) return k;
  return kTallyCount;
}
static_assert(tally_of(kPushed) == kTallyPushed && tally_of(kAcked) == kTallyAcked &&
              tally_of(kRequeued) == kTallyCount);

struct alignas(kCacheLine) TallyBlock {
  std::atomic<std::uint64_t> owner;      // 0 = free; else make_tally_owner()
  std::atomic<std::uint64_t> counts[7];  // kTallyCount used; the rest 0, spare
};
static_assert(sizeof(TallyBlock) == kCacheLine && std::is_standard_layout_v<TallyBlock>);
static_assert(kTallyCount <= 7);
inline constexpr std::uint64_t kTallyBytes = std::uint64_t{kTallyBlocks} * sizeof(TallyBlock);

[[nodiscard]] constexpr std::uint64_t make_tally_owner(std::uint64_t token, std::uint64_t tid,
                                                       std::uint64_t epoch) noexcept {
  return (token & kRecordTokenMask) | ((tid & kTallyTidMask) << kTallyTidShift) |
         ((epoch & 3) << kTallyEpochShift);
}
[[nodiscard]] constexpr std::uint64_t tally_token(std::uint64_t owner) noexcept {
  return owner & kRecordTokenMask;
}
[[nodiscard]] constexpr std::uint64_t tally_tid(std::uint64_t owner) noexcept {
  return (owner >> kTallyTidShift) & kTallyTidMask;
}
[[nodiscard]] constexpr std::uint64_t tally_epoch(std::uint64_t owner) noexcept {
  return owner >> kTallyEpochShift;
}
// The same holder (token and thread), whatever the epoch.
[[nodiscard]] constexpr bool same_holder(std::uint64_t a, std::uint64_t b) noexcept {
  return ((a ^ b) & kTallyHolderMask) == 0;
}
static_assert(tally_token(make_tally_owner(kRecordTokenMask, 5, 3)) == kRecordTokenMask);
static_assert(tally_tid(make_tally_owner(1, kTallyTidMask, 3)) == kTallyTidMask);
static_assert(tally_epoch(make_tally_owner(1, kTallyTidMask, 3)) == 3);
static_assert(same_holder(make_tally_owner(7, 9, 0), make_tally_owner(7, 9, 2)));
static_assert(!same_holder(make_tally_owner(7, 9, 0), make_tally_owner(7, 8, 0)));

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
  std::uint64_t tallies_offset;  // kTallyBlocks × TallyBlock, right after the header
  std::uint64_t states_offset;
  std::uint64_t slots_offset;
  std::uint64_t keys_offset;     // key-table bucket versions (8 bytes per bucket)
  std::uint64_t entries_offset;  // key-table entries
  std::uint64_t total_bytes;
};

// Callers bound capacity, max_payload and key_capacity first (kMaxCapacity,
// kMaxPayload, kMaxKeyCapacity), so none of these products can overflow 64
// bits: 2^24 × (2^26 + 320) + 2^25 × 33 + 4096 < 2^51.
//
//   slot:  SlotMeta (64) │ key area (64) │ note (128) │ payload (max_payload) │ pad to 64
//   segment: header │ tallies (kTallyBytes) │ states │ slots │ key table
// `header_bytes`: kHeaderBytes (layout 6), or kDurableHeaderBytes (layout 7).
// The header sizes are multiples of 64, so every area starts on a line.
[[nodiscard]] constexpr Geometry geometry(std::uint32_t capacity, std::uint32_t max_payload,
                                          std::uint32_t key_capacity,
                                          std::uint64_t header_bytes = kHeaderBytes) noexcept {
  Geometry g{};
  g.slot_stride =
      round_up(kSlotMetaBytes + kKeyAreaBytes + kNoteAreaBytes + std::uint64_t{max_payload}, kCacheLine);
  g.tallies_offset = header_bytes;
  g.states_offset = g.tallies_offset + kTallyBytes;
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
