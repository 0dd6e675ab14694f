// jobring — the mapped queue: a ring as this process sees it.
//
// Internal header. `Ring` holds the pointers into the segment and the
// geometry, validated once at open (open.cpp) and never re-read from shared
// memory, with the accessors every operation uses, the time tests on a word's
// aux, and the cursor hints. `ReadView` is the same ring for operations that
// only look (stats, peek): it has no way to write a word. `Queue::Impl` is the
// ring plus what the public Queue needs: its name, options, the mapping
// itself, the key table and the operations (one file per family: push.cpp,
// claim.cpp, lease.cpp, admin.cpp, sweep.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "jobring/queue.hpp"
#include "ring/keys.hpp"
#include "ring/layout.hpp"
#include "ring/liveness.hpp"
#include "ring/segment.hpp"
#include "ring/transitions.hpp"
#include "ring/wait.hpp"

// On the definitions of the helpers that a hot path (push, claim, ack) calls
// once: they are split out to be read, and must be inlined to cost nothing.
#define JOBRING_INLINE [[gnu::always_inline]] inline

namespace jobring {

namespace detail {

// Time tests on a word's aux. jobring never writes a visible-at or a deadline
// more than kMaxLease ahead of its clock, so one more than 2 × kMaxLease ahead
// of ours is corrupt: treat it as passed, so that no forged word can hide a
// slot for decades (layout.hpp).
inline constexpr auto kMaxAhead = 2 * static_cast<std::uint64_t>(kMaxLease.count());
// READY: still delayed at `now`?
[[nodiscard]] constexpr bool delayed(Word w, std::uint64_t now) noexcept {
  return w.aux() > now && w.aux() - now <= kMaxAhead;
}
// LEASED: deadline not yet passed at `now`? (Expiry is strictly after the deadline.)
[[nodiscard]] constexpr bool lease_current(Word w, std::uint64_t now) noexcept {
  return w.aux() >= now && w.aux() - now <= kMaxAhead;
}

// The visible-at of a job delayed by `delay` from now (0: visible at once).
// now_ms() truncates: the true time t is in [now, now + 1), so now + delay
// could come up to 1 ms before t + delay. The job is visible once a reader's
// now_ms() >= the visible-at, i.e. at a true time >= now + delay + 1 > t +
// delay: never early, at most 1 ms late. Leases need no such step: expiry is
// strictly after the deadline (lease_current), which is the same +1.
[[nodiscard]] inline std::uint64_t visible_at_after(milliseconds delay, std::uint64_t now) noexcept {
  return delay.count() > 0 ? now + static_cast<std::uint64_t>(delay.count()) + 1 : 0;
}

// Copies a payload of n bytes: 32 to 64 bytes (a small job, the common
// one) with two overlapping fixed-size copies inline, others with memcpy.
// The library's memcpy is a call and a dispatch on the length, ~18
// instructions for 64 bytes. The copies read and write some bytes twice,
// never outside [0, n): a push writes a slot it holds WRITING; a claim's
// copy out of shared memory is validated afterwards like every read of a
// slot (copy_out), so reading a byte twice changes nothing.
inline void copy_payload(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  if (n >= 32 && n <= 64) [[likely]] {
    std::byte head[32];
    std::byte tail[32];
    __builtin_memcpy(head, src, 32);
    __builtin_memcpy(tail, src + n - 32, 32);
    __builtin_memcpy(dst, head, 32);
    __builtin_memcpy(dst + n - 32, tail, 32);
  } else if (n != 0) {
    __builtin_memcpy(dst, src, n);
  }
}

// The times a push writes: the visible-at of its commit word (T3's aux) and
// the enqueue time in the meta (SlotMeta::pushed_at_ms), from one clock read.
struct PushTimes {
  std::uint64_t visible_at = 0;
  std::uint64_t pushed_at = 0;
};

// 1 .. kMaxLease (0 too when allow_zero): the bound of every duration argument.
[[nodiscard]] constexpr bool valid_duration(milliseconds d, bool allow_zero) noexcept {
  return (allow_zero ? d.count() >= 0 : d.count() >= 1) && d <= kMaxLease;
}

// --- options.cpp
// The key-table size a queue created with `o` gets.
[[nodiscard]] std::uint32_t key_capacity_for(const Options& o) noexcept;
// Options a queue may be created with; else invalid_options, what is wrong in `detail`.
[[nodiscard]] std::error_code check_options(const Options& o, std::string& detail);
// The mode a queue created with `o` gets: Options::mode, or for 0 the
// default, 0600, or 0660 with a group.
[[nodiscard]] unsigned mode_for(const Options& o) noexcept;
// Options::group as a gid (a name looked up, or a decimal gid); kKeepGroup
// if empty. invalid_options, what is wrong in `detail`, for an unknown name.
[[nodiscard]] std::error_code resolve_group(std::string_view group, gid_t& out, std::string& detail);
// Every header field checked against the others and against the mapping's
// real size, from private copies; the options and the incarnation it holds.
// `durable`: layout 7, a file-backed segment with header line 8 (Durable).
[[nodiscard]] std::error_code validate_header(const void* base, std::uint64_t size, Options& out,
                                              std::uint64_t& incarnation, bool& durable, std::string& detail);
// "none", "interval", "always".
[[nodiscard]] const char* sync_name(Options::Sync s) noexcept;
inline constexpr milliseconds kMinSyncInterval{10};
inline constexpr milliseconds kMaxSyncInterval{3'600'000};
// What differs between an existing queue's options and those asked for
// ("capacity 2 exists, 4096 asked"); empty if nothing that counts does.
[[nodiscard]] std::string options_mismatch(const Options& stored, const Options& asked);

// --- durable.cpp
// The key of the boot this process runs in (/proc/sys/kernel/random/boot_id,
// or what set_boot_id_for_testing set); 0 if it cannot be read.
[[nodiscard]] std::uint64_t boot_key() noexcept;
// CLOCK_REALTIME in ms (plus the testing shift).
[[nodiscard]] std::int64_t realtime_ms() noexcept;

// "jobring queue 'NAME': MESSAGE (DETAIL)": every error of an operation on a queue.
[[nodiscard]] std::string describe(std::string_view name, const std::error_code& ec,
                                   const std::string& detail);
[[noreturn]] void throw_error(std::string_view name, std::error_code ec, const std::string& detail);

// --- notes.cpp: a dead job's note (layout.hpp, SlotNote).
// Writes the note of the job that the caller's T8 CAS is about to make the
// DEAD word `dead`: failed at `now`, `text` cut to kMaxNoteBytes on a UTF-8
// boundary. Cold: dead-lettering is rare, and the claim path must not grow.
[[gnu::cold]] void write_note(SlotNote& n, Word dead, std::uint64_t now, std::string_view text) noexcept;
// The same, with the text "WHAT after N attempt(s)".
[[gnu::cold]] void write_note_after(SlotNote& n, Word dead, std::uint64_t now, std::string_view what,
                                    std::uint32_t attempts) noexcept;
// The note of the job whose DEAD word is `w` (read with acquire), if it has
// one: its failure time and text (at most kMaxNoteBytes, maybe garbled by
// racing writers, never read past the area).
[[nodiscard]] bool read_note(const SlotNote& n, Word w, std::uint64_t& failed_at, std::string& text);

// This thread's tally blocks (layout.hpp, Tallies), one per queue handle it
// counted on last (tally.cpp). Trivially constructed and never destroyed
// (constinit, no destructor touches the segment: a handle may be closed
// before the thread exits, and a block of an exited thread is adopted).
// Emptied in the child of a fork (tally.cpp registers the handler before
// it fills an entry): the parent's blocks are the parent's threads'.
struct TallyCache {
  // Entry::handle of a handle for which no block could be had: never equal
  // to a memo_owner (counted from 1, far below 2^63), so the hot path's one
  // compare sends it to the slow path, which counts down `retry`.
  static constexpr std::uint64_t kNoBlock = std::uint64_t{1} << 63;
  struct Entry {
    std::uint64_t handle = 0;     // Impl::memo_owner (| kNoBlock); 0: none
    TallyBlock* block = nullptr;  // non-null unless handle has kNoBlock
    std::uint32_t retry = 0;      // kNoBlock: counts until the next look for a block
  };
  // Sixteen: a worker of several queues (claim_any) or a producer feeding
  // several counts on each of them in turn; a miss on the first entry finds
  // the handle's among these with a scan and a swap, no syscall. Past 16
  // handles in turn a miss looks for the block in the segment again (pass 1
  // of take_tally_block finds it: loads and a CAS).
  static constexpr std::size_t kEntries = 16;
  Entry entries[kEntries];
  std::uint64_t tid = 0;  // this thread's kernel id, once looked up (a fork empties it with the rest)
};
extern constinit thread_local TallyCache tally_cache;
// How many counts a thread with no block makes in the shared totals before
// it looks for a block again (a look may cost a syscall per block).
inline constexpr std::uint32_t kTallyRetry = 1u << 16;

// The segment as mapped in this process.
struct Ring {
  Header* header = nullptr;
  TallyBlock* tallies = nullptr;  // kTallyBlocks of them (layout.hpp, Tallies)
  std::atomic<std::uint64_t>* states = nullptr;
  std::byte* slots = nullptr;
  std::uint32_t capacity = 0;
  std::uint32_t max_payload = 0;
  std::uint64_t stride = 0;
  // This handle's liveness token, and the judge of everyone else's.
  Liveness liveness;
  // A file-backed segment's header line 8 (layout 7), else null.
  Durable* durable = nullptr;
  // Segment time = now_ms() + clock_base (layout.hpp, Durable): 0 in
  // /dev/shm; for a file-backed queue, the boot's base, fixed when this
  // handle entered the boot (durable.cpp, enter_boot) and never re-read.
  std::uint64_t clock_base = 0;

  // The segment's clock: every time written into or compared with a word
  // of this segment is one of these.
  [[nodiscard]] std::uint64_t now() const noexcept { return now_ms() + clock_base; }
  // The same clock read coarsely (clock.hpp, now_coarse_ms): never later
  // than now(), for times that are advice only (a job's enqueue time).
  [[nodiscard]] std::uint64_t now_coarse() const noexcept { return now_coarse_ms() + clock_base; }
  // A segment time as this host's now_ms() (for sleeps and deadlines handed
  // to users); 0 for a time before this boot.
  [[nodiscard]] std::uint64_t host_time(std::uint64_t segment_time) const noexcept {
    return segment_time > clock_base ? segment_time - clock_base : 0;
  }
  // A due time (a wait's bound) as this host's now_ms(); kNoDue stays.
  [[nodiscard]] std::uint64_t host_due(std::uint64_t due) const noexcept {
    return due == kNoDue ? due : host_time(due);
  }
  // The visible-at of a job delayed by `delay` from now (0: visible at once).
  [[nodiscard]] std::uint64_t visible_at_after(milliseconds delay) const noexcept {
    return delay.count() > 0 ? detail::visible_at_after(delay, now()) : 0;
  }

  // Points into the mapping at `base`, with the geometry of validated options.
  void attach(std::byte* base, const Geometry& g, std::uint32_t cap, std::uint32_t payload_max) noexcept {
    header = reinterpret_cast<Header*>(base);
    capacity = cap;
    max_payload = payload_max;
    stride = g.slot_stride;
    pow2_mask = cap > 1 && (cap & (cap - 1)) == 0 ? cap - 1 : 0;
    tallies = reinterpret_cast<TallyBlock*>(base + g.tallies_offset);
    states = reinterpret_cast<std::atomic<std::uint64_t>*>(base + g.states_offset);
    slots = base + g.slots_offset;
  }

  [[nodiscard]] std::atomic<std::uint64_t>& state(std::uint32_t i) noexcept { return states[i]; }
  [[nodiscard]] const std::atomic<std::uint64_t>& state(std::uint32_t i) const noexcept { return states[i]; }
  [[nodiscard]] SlotMeta& meta(std::uint32_t i) noexcept {
    return *reinterpret_cast<SlotMeta*>(slots + i * stride);
  }
  [[nodiscard]] const SlotMeta& meta(std::uint32_t i) const noexcept {
    return *reinterpret_cast<const SlotMeta*>(slots + i * stride);
  }
  [[nodiscard]] std::byte* key_area(std::uint32_t i) noexcept { return slots + i * stride + kSlotMetaBytes; }
  [[nodiscard]] const std::byte* key_area(std::uint32_t i) const noexcept {
    return slots + i * stride + kSlotMetaBytes;
  }
  [[nodiscard]] SlotNote& note(std::uint32_t i) noexcept {
    return *reinterpret_cast<SlotNote*>(slots + i * stride + kSlotMetaBytes + kKeyAreaBytes);
  }
  [[nodiscard]] const SlotNote& note(std::uint32_t i) const noexcept {
    return *reinterpret_cast<const SlotNote*>(slots + i * stride + kSlotMetaBytes + kKeyAreaBytes);
  }
  [[nodiscard]] std::byte* payload(std::uint32_t i) noexcept {
    return slots + i * stride + kSlotMetaBytes + kKeyAreaBytes + kNoteAreaBytes;
  }
  [[nodiscard]] const std::byte* payload(std::uint32_t i) const noexcept {
    return slots + i * stride + kSlotMetaBytes + kKeyAreaBytes + kNoteAreaBytes;
  }
  [[nodiscard]] std::uint32_t next(std::uint32_t i) const noexcept { return i + 1 == capacity ? 0 : i + 1; }
  // The slot of cursor position `pos` (any 64-bit value, a hostile one too):
  // pos % capacity, by a mask when the capacity is a power of two (the
  // default 1024): a 64-bit division costs tens of cycles, and push, claim
  // and ack each take one.
  [[nodiscard]] std::uint32_t slot_at(std::uint64_t pos) const noexcept {
    return static_cast<std::uint32_t>(pow2_mask != 0 ? pos & pow2_mask : pos % capacity);
  }
  // capacity - 1 for a power of two above 1, else 0 (attach).
  std::uint64_t pow2_mask = 0;

  // Bumps a total that no single transition owns (duplicates, keys_full):
  // a release RMW like the transitions' counts (transitions.hpp).
  void count(Total t, std::uint64_t n = 1) noexcept {
    header->totals[t].fetch_add(n, std::memory_order_release);
  }
  // A total: the shared word, plus for pushed, claimed and acked every
  // tally block's count (layout.hpp, Tallies). Relaxed loads of words only
  // ever increased, each by one writer (bar hostile ones): a reader's
  // successive totals never go back. Wraps like the counters themselves.
  [[nodiscard]] std::uint64_t total(Total t) const noexcept {
    std::uint64_t sum = header->totals[t].load(std::memory_order_relaxed);
    const unsigned k = tally_of(t);
    if (k < kTallyCount)
      for (std::uint32_t b = 0; b < kTallyBlocks; ++b)
        sum += tallies[b].counts[k].load(std::memory_order_relaxed);
    return sum;
  }

  // What changes whenever a job may have become claimable: the id counter,
  // taken by every push before its T3 commit (write_job), and the counts
  // bumped after the other transitions that make a job claimable: T7
  // release (released), T9 requeue (requeued) and sweep's T7 (reclaimed,
  // expired). Monotonic, so any such push or transition changes it.
  // Acquire: pairs with write_job's release RMW of the id (a poller that
  // sees a push's id sees its T1: claim.cpp says why that is enough) and
  // with the counts' release RMWs (it sees the transition). The pushes'
  // own count is not in it: it is in tally blocks (layout.hpp), which the
  // memo does not read.
  [[nodiscard]] std::uint64_t claimable_signature() const noexcept {
    const auto& t = header->totals;
    return header->next_job_id.load(std::memory_order_acquire) +
           t[kRequeued].load(std::memory_order_acquire) + t[kReleased].load(std::memory_order_acquire) +
           t[kReclaimed].load(std::memory_order_acquire) + t[kExpired].load(std::memory_order_acquire);
  }

  // Moves a cursor hint forward to at least `to` (never back).
  static void advance(std::atomic<std::uint64_t>& cursor, std::uint64_t to) noexcept {
    std::uint64_t cur = cursor.load(std::memory_order_relaxed);
    while (cur < to && !cursor.compare_exchange_weak(cur, to, std::memory_order_relaxed)) {
    }
  }

  // FIFO (guarantee 6) after purge, remove_dead, or an ack at the claim
  // cursor's own slot: moves the claim cursor over the positions, below the
  // push cursor, whose slots hold nothing a claim would take (admin.cpp).
  void skip_unclaimable_positions() noexcept;

  // T2: frees slots left WRITING by producers that are proven dead; returns
  // how many. Never frees a live (even stopped) producer's slot (sweep.cpp).
  std::size_t recover_dead_writers() noexcept;
};

// A read-only view of a ring, for operations that only look.
class ReadView {
 public:
  explicit ReadView(const Ring& ring) noexcept : ring_(&ring) {}
  [[nodiscard]] std::uint32_t capacity() const noexcept { return ring_->capacity; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return ring_->max_payload; }
  [[nodiscard]] Word word(std::uint32_t i, std::memory_order order) const noexcept {
    return Word{ring_->state(i).load(order)};
  }
  [[nodiscard]] const SlotMeta& meta(std::uint32_t i) const noexcept { return ring_->meta(i); }
  [[nodiscard]] const std::byte* payload(std::uint32_t i) const noexcept { return ring_->payload(i); }
  [[nodiscard]] const SlotNote& note(std::uint32_t i) const noexcept { return ring_->note(i); }
  [[nodiscard]] std::uint64_t total(Total t) const noexcept { return ring_->total(t); }

 private:
  const Ring* ring_;
};

// A job moved in from another queue by Queue::move_dead (move.cpp): what
// it brings beside its payload. Dead: it arrives DEAD (T10) with its
// attempts, its enqueue time and its note; not dead: an ordinary READY job.
struct Arrival {
  bool dead = false;
  std::uint32_t attempts = 0;
  std::uint64_t pushed_at = 0;
  std::optional<std::uint64_t> failed_at;  // the note's time; none: no note
  std::string_view error;
};

// The outcome of a keyed push (push.cpp), learnt by the push pass. A move
// is a keyed push that brings an Arrival.
struct KeyedPush {
  std::string_view key;
  std::uint64_t hash = 0;
  KeyInsert outcome = KeyInsert::none;
  const Arrival* arrival = nullptr;
};

// The keys of Queue::move_dead in its target (move.cpp); a push of a key
// with this prefix is refused (push.cpp), so none can pass for a move's.
inline constexpr std::string_view kMoveKeyPrefix = "#moved/";

// The crash points of a move (testing.hpp): raises the signal a test set for `point`.
[[gnu::cold]] void move_kill_point(int point) noexcept;

// Slot i's job, read as peek() lists it; false if the slot changed while it
// was read (admin.cpp).
bool read_job(const ReadView& v, std::uint32_t i, Word w, JobState s, std::uint64_t now, JobInfo& info);

}  // namespace detail

// The names every file of the ring uses.
using detail::SlotMeta;
using detail::State;
using detail::Word;
namespace T = detail::T;

struct Queue::Impl : detail::Ring {
  std::string name;
  std::string dir;            // a file-backed queue's directory (Options::dir points here); empty: /dev/shm
  bool durable_line = false;  // layout 7: the segment has header line 8 (attach() points `durable` at it)
  Options options;            // as stored in the segment, with dedup_keys the real table size
  std::uint64_t incarnation = 0;  // Header::incarnation, cached at open (Job::incarnation)
  detail::Segment segment;
  bool writable = true;  // false: a QueueView's, mapped read-only; only stats() and peek() run on it
  detail::KeyTable keys;
  // Tells this process's empty-ring memos of one handle from another's (claim.cpp).
  const std::uint64_t memo_owner = next_memo_owner();

  // Points the ring and the key table into `segment`, for `options`.
  void attach() noexcept;
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  // The liveness table forgets the descriptor before the segment closes it.
  ~Impl() { liveness.detach(); }

  // --- push.cpp. The public calls check their arguments, then run these.
  PushResult push_checked(std::span<const std::byte> payload, const PushOptions& push) noexcept;
  std::size_t push_many_checked(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                const PushOptions& push) noexcept;
  // Up to two scans of the ring (the second after freeing dead producers'
  // slots). A keyed push passes `key` (one payload only) and learns the
  // outcome in it.
  std::size_t push_pass(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                        detail::PushTimes times, std::memory_order load_order,
                        detail::KeyedPush* key = nullptr) noexcept;
  // push_pass's body, inlined into the one-job push's first pass.
  std::size_t push_pass_inline(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                               detail::PushTimes times, std::memory_order load_order,
                               detail::KeyedPush* key) noexcept;
  bool push_round(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                  detail::PushTimes times, std::memory_order load_order, detail::KeyedPush* key,
                  std::uint64_t writer, std::size_t& done) noexcept;
  // failed: Sync::always could not put the job on disk; the slot is given
  // back and the push fails (take_sync_error).
  enum class SlotPush { pushed, lost, ended, failed };
  SlotPush push_into(std::uint32_t i, detail::Word reserved, std::span<const std::byte> payload,
                     detail::PushTimes times, detail::KeyedPush* key, std::uint64_t writer,
                     std::uint64_t cursor_to, JobId& id) noexcept;
  JobId write_job(std::uint32_t i, detail::Word reserved, std::span<const std::byte> payload,
                  const detail::KeyedPush* key, std::uint64_t pushed_at) noexcept;

  // --- claim.cpp
  // One scan of the ring for claimable jobs. Not noexcept: the first claim
  // into a Job object sizes its buffer.
  std::size_t claim_pass(std::span<Job> jobs, std::uint64_t lease_ms, std::uint64_t owner_token,
                         std::memory_order load_order, std::uint64_t& next_due);
  // claim_pass's body, inlined into try_claim and try_claim_many.
  std::size_t claim_pass_inline(std::span<Job> jobs, std::uint64_t lease_ms, std::uint64_t owner_token,
                                std::memory_order load_order, std::uint64_t& next_due);
  // claim_pass until it claims something, `wait` runs out or the call is
  // interrupted, sleeping in between; says which.
  detail::Progress claim_waiting(std::span<Job> jobs, milliseconds wait, std::uint64_t lease_ms,
                                 const ClaimOptions& claim);
  // Inline: every claim call runs it; only a bad lease leaves the fast path.
  [[nodiscard]] std::uint64_t lease_ms_or_throw(const ClaimOptions& claim) const {
    if (detail::valid_duration(claim.lease, true)) [[likely]]
      return static_cast<std::uint64_t>(claim.lease.count() > 0 ? claim.lease.count()
                                                                : options.default_lease.count());
    throw_bad_lease(claim);
  }
  [[noreturn]] [[gnu::cold]] void throw_bad_lease(const ClaimOptions& claim) const;
  struct ClaimScan;
  bool take(std::uint32_t i, detail::Word& w, std::uint64_t lease_ms, ClaimScan& s, detail::Word& mine,
            bool& takeover) noexcept;
  bool copy_out(std::uint32_t i, detail::Word from, detail::Word mine, std::uint64_t owner_bits, ClaimScan& s,
                Job& job);
  void advance_claim_cursor(std::uint64_t start, std::uint32_t k) noexcept;
  void skip_free(std::uint32_t& i, std::uint32_t& k, std::memory_order load_order) const noexcept;

  // --- admin.cpp: `t` (T9 purge, T11 move-out) on slot i from its word
  // `w`, then K4 for the job's key. False if the CAS failed (`w` then holds
  // the word found; a weak CAS: it may fail spuriously). Counted and woken
  // by the caller (settle_removal).
  bool remove_from(std::uint32_t i, detail::Word& w, const detail::Transition& t) noexcept;
  // After slots were freed by `t`: count them, keep FIFO, wake pushers.
  void settle_removal(const detail::Transition& t, std::size_t n) noexcept;
  // An arrival's meta and note, written while slot i is ours (WRITING as
  // `reserved`), before its commit (move.cpp).
  void write_arrival(std::uint32_t i, detail::Word reserved, const detail::Arrival& a) noexcept;
  void move_dead_to(Impl& to, const MoveOptions& o, MoveResult& r);
  enum class MoveStep { moved, next, stop };
  MoveStep move_one(std::uint32_t i, detail::Word w, Impl& to, const MoveOptions& o, MoveResult& r);

  // --- lease.cpp: T6 on one lease, without the count and the wake-up.
  LeaseStatus ack_one(const Lease& lease) noexcept;

  // --- tally.cpp: counts n moves of a transition that counts kTallyTotal[k]
  // (T3 pushed, T4 claimed, T6 acked) in this thread's tally block, with a
  // plain load and store; in the shared total (a release RMW) if the thread
  // has none. Inline: the hot path is one compare and a store.
  void tally(detail::Tally k, std::uint64_t n) noexcept;
  // This thread's block for this handle: the cache's, or one found, taken
  // or adopted (tally.cpp); null if none can be had.
  [[gnu::noinline]] detail::TallyBlock* tally_block() noexcept;
  detail::TallyBlock* take_tally_block() noexcept;

  // --- durable.cpp: a file-backed queue across reboots, and its sync policy.
  // The first opener in a new boot: returns the old boot's leases and frees
  // its half-written slots (T7 / T8 / T2 from the words read), moves the id
  // counter past every id in the slots.
  void recover_boot() noexcept;
  // Sync::always (callers check sync_always): the pages of slot i (its
  // meta, key, note and payload) on disk; of its state word; of key entry
  // `entry`. False if the kernel refused: before a commit, the errno is
  // kept for the push to report (take_sync_error); after one, counted
  // (Stats::sync_errors).
  bool sync_slot(std::uint32_t i, bool before_commit) noexcept;
  bool sync_state(std::uint32_t i) noexcept;
  bool sync_key_entry(std::uint32_t entry) noexcept;
  bool synced(bool ok, bool before_commit) noexcept;
  // Sync::interval (the janitor): the whole segment.
  bool sync_everything() const noexcept;
  bool sync_always = false;          // Options::sync == always, cached at attach
  std::uint64_t entries_offset = 0;  // the key table's entries, from the geometry (attach)

 private:
  static std::uint64_t next_memo_owner() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n.fetch_add(1, std::memory_order_relaxed) + 1;
  }
};

namespace detail {
// --- durable.cpp
// A new file-backed segment's header line 8 (do_create, before `init` is
// published): its sync policy, its clock (this boot's, base 0), its boot.
void init_durable(Queue::Impl& q, const Options& o) noexcept;
// At every open of a file-backed segment: this boot's clock base, after the
// recovery if this is the first writable open since a reboot (durable.cpp).
// incomplete_segment if another process's recovery holds it too long.
[[nodiscard]] std::error_code enter_boot(Queue::Impl& q, std::string& detail);
// system_error with what to do, for a process that cannot read the boot id.
[[nodiscard]] std::error_code boot_unknown(std::string& detail);
// The errno of this thread's last msync refused before a commit, cleared;
// 0 if none (durable.cpp, Impl::synced).
[[nodiscard]] int take_sync_error() noexcept;
[[nodiscard]] bool sync_error_pending() noexcept;
// The wall clock's anchor and the latest segment time (layout.hpp,
// Durable): at every writable open and every sweep.
void refresh_anchor(Ring& q) noexcept;
}  // namespace detail

JOBRING_INLINE void Queue::Impl::tally(detail::Tally k, std::uint64_t n) noexcept {
  if (n == 0) return;
  const detail::TallyCache::Entry& e = detail::tally_cache.entries[0];
  detail::TallyBlock* b = e.block;
  if (e.handle != memo_owner) [[unlikely]] {
    b = tally_block();
    if (b == nullptr) {
      // Release, as every count in the shared totals (transitions.hpp).
      header->totals[detail::kTallyTotal[k]].fetch_add(n, std::memory_order_release);
      return;
    }
  }
  // The only writer of the word (layout.hpp, Tallies): no locked RMW. Dies
  // between the load and the store: this count is lost, nothing else.
  // Relaxed: statistics, which no decision reads.
  std::atomic<std::uint64_t>& c = b->counts[k];
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// The token a claim's owner record names: this handle's, or nobody's for a
// detached lease (it ends by its deadline only).
inline std::uint64_t owner_of(Queue::Impl& q, const ClaimOptions& o) noexcept {
  return o.owner == Owner::process ? q.liveness.token() : 0;
}

}  // namespace jobring
