// jobring — a crash-safe leased job queue in named shared memory.
//
// A Queue is one named POSIX shared-memory segment (/dev/shm/jobring.NAME)
// holding a fixed ring of job slots. Producers push() jobs; workers
// try_claim() one job at a time. A claim gives the job to one worker and hides
// it from all others in one atomic step (a CAS on the slot's state word); the
// worker then ack()s it (the job is deleted), release()s it (it becomes
// visible again, optionally after a delay) or extend()s its lease. If the
// worker dies, the lease deadline passes and the next claim takes the job
// over, counting an attempt; after max_attempts the job is dead-lettered.
//
// Memory ordering: everything a producer wrote before push() returned —
// including the payload — happens-before whatever the worker does after the
// try_claim() that returns that job. Everything a worker did before ack()
// or release() returned happens-before the next claim of that slot (for
// release) or the next push into it (for ack). Leases are compared with
// CLOCK_MONOTONIC (std::chrono::steady_clock) at millisecond granularity.
//
// Thread safety: a Queue object may be used from many threads at once; Job
// objects may not be shared between threads without synchronisation.
//
// Crash safety: any process using the queue may die at any instruction. No
// operation waits for another process, and no job whose push() returned ok
// is lost: a half-written slot of a dead producer is freed (the push never
// returned), a dead worker's lease runs out and the job is claimed again.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/interrupt.hpp"

namespace jobring {

using JobId = std::uint64_t;
using std::chrono::milliseconds;

// Limits that every queue obeys; checked by create(). open() checks capacity
// and max_payload against them, and every size against the segment's real size.
inline constexpr std::size_t kMaxNameLength = 64;
inline constexpr std::uint32_t kMaxCapacity = 1u << 24;               // job slots
inline constexpr std::uint32_t kMaxPayload = 64u << 20;               // bytes per job
inline constexpr std::uint64_t kMaxSegmentBytes = 1ull << 36;         // 64 GiB
inline constexpr milliseconds kMaxLease{std::chrono::hours(24 * 7)};  // also max delay
inline constexpr std::size_t kMaxKeyLength = 64;                      // de-duplication key bytes
inline constexpr std::uint32_t kMaxKeyCapacity = 1u << 25;            // de-duplication table entries
inline constexpr std::size_t kMaxErrorLength = 112;                   // bytes of a dead job's error text

// The longest prefix of `text` of at most `max` bytes that does not end
// inside a UTF-8 sequence (text that is not UTF-8 is cut at most 3 bytes
// short of `max`): how error texts are cut to kMaxErrorLength.
[[nodiscard]] constexpr std::string_view utf8_prefix(std::string_view text, std::size_t max) noexcept {
  if (text.size() <= max) return text;
  std::size_t cut = max;
  // text[cut] is the first byte left out: while it continues a sequence,
  // that sequence started inside the prefix; drop its start too.
  for (int back = 0; back < 3 && cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80; ++back)
    --cut;
  if ((static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) cut = max;  // not UTF-8: cut where asked
  return text.substr(0, cut);
}

struct Options {
  std::uint32_t capacity = 1024;       // job slots, 1 .. kMaxCapacity
  std::uint32_t max_payload = 1024;    // bytes per job, 1 .. kMaxPayload
  milliseconds default_lease{30'000};  // used when a claim asks for 0 ms; 1 ms .. kMaxLease
  std::uint32_t max_attempts = 0;      // claims before a job is dead-lettered; 0 = unlimited
  // Who may open the queue (README, "Access model"). `mode`: the segment's
  // permission bits, exactly (no umask applied); 0 = the default, 0600
  // (the creator's user only), or 0660 when `group` is given. Opening a
  // queue (Queue) needs read and write permission; looking at it
  // (QueueView: stats, peek) needs read permission only.
  unsigned mode = 0;
  // The segment file's group: a group name or a decimal gid; empty = the
  // creator's (effective) group. Set on the file before its name appears,
  // so the queue is never visible with another group. The creator must be a
  // member (or root), else permission_denied. E.g. "jobring": the janitor's
  // group, so that it sweeps the queue. Read by create only: options() of a
  // Queue reports it empty (the file's group is stat(segment_path(name))).
  // A queue has no other file: liveness locks are taken on the segment.
  std::string_view group{};
  // De-duplication (PushOptions::key). The table remembers every key whose
  // job is in the queue, and for `dedup_window` after its job is acked,
  // purged or removed; when it has no room the oldest remembered keys go
  // first. 0 = 2 × capacity; else 16 .. kMaxKeyCapacity. Rounded up to a multiple of 16.
  std::uint32_t dedup_keys = 0;
  milliseconds dedup_window{300'000};  // 0 .. kMaxLease; 0 = forget a key at its ack
  // A file-backed queue (README, "Queues that survive a reboot"): the
  // directory, absolute, on a local file system, that holds its segment
  // file DIR/jobring.NAME. Empty (or /dev/shm) = a queue in memory, gone at
  // reboot. The same as creating the queue by the name "DIR/NAME", which is
  // also how it is opened and what name() reports. Its jobs survive a
  // process crash and a reboot; what they survive of a power cut is `sync`.
  // Read by create: options() reports the directory of the queue's name.
  std::string_view dir{};
  // What a file-backed queue's push and ack leave on disk before they
  // return (README, "Sync policies"): none, the page cache only (survives
  // any process crash and a clean reboot; a power cut loses what the kernel
  // had not written back, up to about 30 s); interval, the janitor writes
  // the queue back every `sync_interval` (a power cut loses at most that
  // much); always, push and ack return only once their job's pages are on
  // disk (a power cut loses no job whose push returned). Only for a
  // file-backed queue: invalid_options with an empty `dir`.
  enum class Sync : std::uint32_t { none = 0, interval = 1, always = 2 };
  Sync sync = Sync::none;
  milliseconds sync_interval{1000};  // for Sync::interval: 10 ms .. 1 h
};

// A queue's name is either a plain name, 1..kMaxNameLength characters of
// [A-Za-z0-9._-] not starting with '.' (a queue in memory, /dev/shm), or
// "DIR/NAME": an absolute directory and a plain name (a file-backed queue,
// Options::dir). Throws jobring::error(errc::invalid_name) for anything else.
void validate_name(std::string_view name);
[[nodiscard]] std::error_code check_name(std::string_view name) noexcept;

// The file that holds queue `name`'s segment: /dev/shm/jobring.NAME, or
// DIR/jobring.NAME for "DIR/NAME". For tools that look at the file itself
// (its owner, mode or inode).
[[nodiscard]] std::string segment_path(std::string_view name);

// --- Outcomes: ordinary results are values, never exceptions. ---------------

// full: no free slot (after waiting, if PushOptions::wait asked to wait).
// interrupted: interrupt_waits() was called in this process, or the
// PushOptions::stop flag is set.
enum class [[nodiscard]] PushStatus{ok, full, interrupted};
struct [[nodiscard]] PushResult {
  PushStatus status = PushStatus::full;
  JobId id = 0;  // valid when status == ok
  // ok, but no new job: PushOptions::key named a job that is in the queue or
  // was acked within the de-duplication window; `id` is that job's id.
  bool duplicate = false;
  explicit operator bool() const noexcept { return status == PushStatus::ok; }
};

// empty: nothing claimable (after waiting, for claim()).
// interrupted: interrupt_waits() was called in this process, or the
// ClaimOptions::stop flag is set.
enum class [[nodiscard]] ClaimStatus{ok, empty, interrupted};
enum class [[nodiscard]] LeaseStatus{ok, lease_lost};

struct PushOptions {
  // The job is invisible for this long (0 .. kMaxLease), counted from the
  // push call: never claimed sooner, usually within 1 ms more (whole ms).
  milliseconds delay{0};
  milliseconds wait{0};  // when the queue is full, wait up to this long for room (0 .. kMaxLease)
  // De-duplication key, 1 .. kMaxKeyLength bytes (empty = none). While a job
  // pushed with the same key is in the queue (ready, delayed, leased or
  // dead), and for Options::dedup_window after it is acked, a push with the
  // key adds nothing and returns that job's id with duplicate = true. Keys
  // are compared by a 64-bit hash (two different keys collide with odds of
  // about n² / 2^65 for n keys in the table). A push of a key that another
  // push is inserting right now waits for it, up to 10 ms per try (then
  // full, retried within `wait`). If the process that acked (purged,
  // removed) the key's job died before recording it, the next push of the
  // key records it then, janitor or not: the window runs from that push.
  std::string_view key{};
  // A stop flag for this call alone (nullptr = none): while waiting for room,
  // once *stop is true the push returns `interrupted`. Set the flag, then
  // call wake_waits() so that a push already asleep sees it at once (a wake
  // that races with the push going to sleep is made good within 200 ms). Unlike interrupt_waits(), it stops
  // only the calls that were given this flag: one per Worker, say.
  const std::atomic<bool>* stop = nullptr;
};

// Who owns a lease. A process-owned lease records the claiming Queue handle's
// liveness token (a lock the handle holds on the segment file; the kernel
// drops it when the process dies or execs, or the handle is destroyed), so
// that the janitor can reclaim it at once when its owner is proven gone — in
// any PID or time namespace. Keep the Queue object alive while you hold its
// process-owned leases. A detached lease has no owner and lives until its
// deadline: use it when the claiming process exits before the ack (a shell
// script and the CLI).
enum class Owner { process, detached };

struct ClaimOptions {
  milliseconds lease{0};  // 0 = the queue's default_lease; else 1 ms .. kMaxLease
  Owner owner = Owner::process;
  // A stop flag for this call alone (nullptr = none): once *stop is true, a
  // claim waiting for a job returns `interrupted`. Set the flag, then call
  // wake_waits() (see PushOptions::stop).
  const std::atomic<bool>* stop = nullptr;
};

// What ack / release / extend need. Plain data: it can be written down and
// handed to another process (to_string / parse). The token is the fencing
// value: it is the slot's state word when the lease was granted or last
// extended, so it changes on every transition of the slot, and any operation
// with a token that is no longer current is rejected with lease_lost.
struct Lease {
  std::uint32_t slot = 0;
  std::uint64_t token = 0;
  JobId job = 0;

  [[nodiscard]] std::string to_string() const;  // "job.slot.token" (decimal.decimal.hex)
  [[nodiscard]] static std::optional<Lease> parse(std::string_view text) noexcept;
  friend bool operator==(const Lease&, const Lease&) = default;
};

namespace detail {
struct JobAccess;
}  // namespace detail

// A claimed job. Reuse one Job object across claims: its buffer grows to the
// queue's max_payload once and is not reallocated afterwards.
class Job {
 public:
  JobId id = 0;
  // The queue's incarnation (Queue::incarnation()) it was claimed from: ids
  // restart at 1 when a name is removed and created again, (incarnation, id)
  // never repeats.
  std::uint64_t incarnation = 0;
  std::uint32_t attempt = 0;  // 1 on the first claim, +1 on every later one
  Lease lease;
  std::chrono::steady_clock::time_point deadline;  // the lease is held until then

  [[nodiscard]] std::span<const std::byte> payload() const noexcept { return {buffer_.data(), size_}; }
  [[nodiscard]] std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(buffer_.data()), size_};
  }
  // The de-duplication key it was pushed with (empty if none).
  [[nodiscard]] std::string_view key() const noexcept { return {key_.data(), key_size_}; }

 private:
  friend class Queue;
  friend struct detail::JobAccess;  // the Redis backend fills a Job (lib/redis/)
  std::vector<std::byte> buffer_;
  std::size_t size_ = 0;
  std::array<char, kMaxKeyLength> key_{};
  std::size_t key_size_ = 0;
};

// The user-visible state of a job; see lib/ring/transitions.hpp for the state machine.
enum class JobState { ready, delayed, leased, dead };

struct JobInfo {
  JobId id = 0;
  JobState state = JobState::ready;
  std::uint32_t slot = 0;
  std::uint32_t attempts = 0;
  std::int64_t ms_until = 0;  // delayed: until visible; leased: until the deadline (negative: expired)
  int owner_pid = 0;          // leased and owned by a process: its PID (in its own PID namespace); else 0
  // How long ago the job was pushed (or last requeued from dead), ms. A
  // ready job that was delayed has waited to be claimed only since it came
  // due (Stats::oldest_ready_ms counts that); this counts from the push.
  // The push of a job visible at once reads the kernel's coarse clock (a
  // quarter of the cost), so an age may read one clock tick (1-10 ms) long.
  std::uint64_t enqueued_ms_ago = 0;
  // Dead jobs: how long ago the job died, and why — the error text its last
  // release gave (the Worker passes the exception's what() or
  // Outcome::retry's reason), or what dead-lettered it ("lease expired after
  // 3 attempts", "owner died after 3 attempts"); at most kMaxErrorLength
  // bytes. Unset / empty when the slot holds no note for this death (a
  // segment written by hand, or a note garbled by racing writers that
  // failed its checks). Not necessarily UTF-8: racing writers can mix texts.
  std::optional<std::uint64_t> failed_ms_ago;
  std::string error;
  std::vector<std::byte> payload;
};

struct Stats {
  // Gauges: one pass over the slots (a snapshot, not atomic as a whole).
  std::uint64_t free = 0;
  std::uint64_t writing = 0;          // a producer is writing the payload
  std::uint64_t ready = 0;            // claimable now
  std::uint64_t delayed = 0;          // ready, but not before its delay has passed
  std::uint64_t leased = 0;           // claimed, deadline not yet passed
  std::uint64_t expired = 0;          // claimed, deadline passed: the next claim takes it over
  std::uint64_t dead = 0;             // dead-lettered; requeue or remove them
  std::uint64_t corrupt = 0;          // state words no jobring process writes; purge() resets them
  std::uint64_t oldest_lease_ms = 0;  // age of the oldest lease still held (0 if none)
  // Age of the oldest claimable job (ready, visible), 0 if none: how long it
  // has waited since it was pushed or requeued, or since it came due if it
  // was delayed. The queue's main alerting signal: it grows when workers
  // fall behind or stop, whatever the depth.
  std::uint64_t oldest_ready_ms = 0;
  std::uint64_t keys_live = 0;        // de-duplication keys of jobs in the queue
  std::uint64_t keys_remembered = 0;  // keys of finished jobs, inside their window
  std::uint64_t keys_capacity = 0;    // table entries (Options::dedup_keys)
  // Totals since creation. Each is added just after the transitions it
  // counts (once per batch for the batch calls), so a process killed between
  // the two leaves a total short by one (by up to a batch).
  std::uint64_t pushed = 0;
  std::uint64_t claimed = 0;  // including takeovers of expired leases
  std::uint64_t acked = 0;
  std::uint64_t released = 0;
  std::uint64_t expired_total = 0;  // leases taken over after their deadline
  std::uint64_t dead_lettered = 0;
  std::uint64_t requeued = 0;
  std::uint64_t purged = 0;            // slots reset by purge() (corrupt ones included) or remove_dead()
  std::uint64_t recovered_writes = 0;  // half-written slots of dead producers freed
  std::uint64_t reclaimed = 0;         // leases of proven-dead owners returned by sweep()
  std::uint64_t duplicates = 0;        // keyed pushes that found their key and added nothing
  std::uint64_t keys_evicted = 0;      // remembered keys dropped before their window ended, for room
  std::uint64_t keys_full = 0;         // keyed pushes refused (full) because every entry was live
  std::uint64_t moved_out = 0;         // dead jobs moved to another queue by move_dead()
  std::uint64_t moved_in = 0;  // jobs moved in from another queue by move_dead() (as ready: also pushed)
  std::uint64_t paused = 0;    // a gauge: 1 while the queue is paused (Queue::pause), else 0
  // A file-backed queue (Options::dir): the boots it was recovered in (the
  // first open after each reboot), and the leases those recoveries returned
  // to ready (or dead, attempts used up) and half-written slots they freed.
  std::uint64_t recoveries = 0;
  std::uint64_t recovered_leases = 0;
  std::uint64_t recovered_boot_writes = 0;
  // Sync::always: msyncs the kernel refused (EIO: the disk failed; ENOSPC)
  // after a job was committed or acked, which so may not be on disk (a push
  // whose slot could not be synced is not pushed: it fails instead). Alert
  // on any: the queue is no longer safe against a power cut.
  std::uint64_t sync_errors = 0;
};

// Queue::move_dead's options and result.
struct MoveOptions {
  bool as_ready = false;  // arrive as ready jobs (a redrive), not as dead ones
  std::size_t limit = std::numeric_limits<std::size_t>::max();  // at most this many (0: none)
};

struct MoveResult {
  std::size_t moved = 0;      // jobs now in the target and gone from here
  std::size_t too_large = 0;  // jobs left here: larger than the target's max_payload
  // Jobs left here for now: another mover holds the job's key (it is being
  // moved), or the job was quarantined with a corrupt length (no payload to
  // move; purge it).
  std::size_t left = 0;
  bool target_full = false;  // the move stopped: the target had no room (ring or key table)
  bool interrupted = false;  // the move stopped: interrupt_waits() was called
};

struct SweepResult {
  std::size_t reclaimed = 0;         // leases whose owner is proven dead, returned to ready
  std::size_t expired = 0;           // leases past their deadline, returned to ready
  std::size_t dead_lettered = 0;     // of both, jobs whose attempts were used up: dead instead
  std::size_t recovered_writes = 0;  // slots left half-written by dead producers, freed
};

enum class PurgeWhat : unsigned {
  ready = 1,    // claimable now
  delayed = 2,  // ready but not yet visible
  dead = 4,
  all = 7,  // every job not under lease (leases are never purged: they end in ack or expiry)
};

class Queue {
 public:
  // --- Lifecycle. The throwing overloads throw jobring::error; the others
  // report through `ec` and return std::nullopt / false.
  // Access: a Queue needs read and write permission on the segment file
  // (segment_path(name)); a user who may only read it looks at it through
  // QueueView. permission_denied names the file's owner, group and mode and
  // the way in (README, "Access model"). create() takes Options::group and
  // Options::mode; open_or_create() uses them only when it creates.
  [[nodiscard]] static Queue create(std::string_view name, const Options& options = {});
  [[nodiscard]] static Queue open(std::string_view name);
  // Opens the queue if it exists, else creates it with `options`. Safe when
  // many processes race to do it: one creates, the others open its queue.
  // An existing queue must have the options asked for, else
  // errc::options_mismatch with a message naming each field that differs
  // ("capacity 2 exists, 4096 asked"). Compared: capacity, max_payload and
  // the de-duplication table's size (dedup_keys rounded as create() rounds
  // it; 0 means the automatic size for `capacity`), which fix the segment's
  // geometry, and max_attempts, default_lease and dedup_window, which fix
  // what a job's life is. `mode` is not compared (read options().mode).
  // Creation is all or nothing: a queue's name appears only once its
  // segment is complete, so a creator killed at any point leaves either no
  // queue or a whole one. A half-made segment left at the name by an older
  // jobring (which built it in place) is replaced when its creator is proven
  // dead, or, if it records no creator (0 bytes), once it has been untouched
  // for 10 s; until then it is incomplete_segment.
  [[nodiscard]] static Queue open_or_create(std::string_view name, const Options& options = {});
  // Removes the name; processes that have the queue open keep using it until
  // they close it. Returns false if there was no such queue.
  static bool remove(std::string_view name);

  [[nodiscard]] static std::optional<Queue> create(std::string_view name, const Options& options,
                                                   std::error_code& ec) noexcept;
  [[nodiscard]] static std::optional<Queue> open(std::string_view name, std::error_code& ec) noexcept;
  // As open, but waits at most `init_wait` (instead of 1 s) for a creator
  // that has not published the header yet: a monitor that must not stall on
  // a half-made segment passes 0 and looks again later.
  [[nodiscard]] static std::optional<Queue> open(std::string_view name, std::error_code& ec,
                                                 milliseconds init_wait) noexcept;
  [[nodiscard]] static std::optional<Queue> open_or_create(std::string_view name, const Options& options,
                                                           std::error_code& ec) noexcept;
  static bool remove(std::string_view name, std::error_code& ec) noexcept;

  // Names of every jobring queue on this host (sorted); none if /dev/shm
  // cannot be read, which the error_code form reports.
  [[nodiscard]] static std::vector<std::string> list();
  [[nodiscard]] static std::vector<std::string> list(std::error_code& ec) noexcept;
  // Names ("DIR/NAME") of the file-backed queues in directory `dir` (sorted);
  // `dir` /dev/shm lists the queues in memory, as list() does.
  [[nodiscard]] static std::vector<std::string> list(std::string_view dir, std::error_code& ec) noexcept;

  Queue(Queue&&) noexcept;
  Queue& operator=(Queue&&) noexcept;
  ~Queue();

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] const Options& options() const noexcept;  // as stored in the segment
  // A random 64-bit id (never 0) drawn when the queue was created: a queue
  // removed and created again under the same name has another one. Job ids
  // restart at 1 in every incarnation; (incarnation, job id) is unique
  // across them (the default key of idempotent() uses it).
  [[nodiscard]] std::uint64_t incarnation() const noexcept;

  // A file-backed queue (Options::dir): writes its whole segment to disk
  // (msync MS_SYNC) and returns once it is there — what the janitor does
  // every sync_interval for Sync::interval, and what any process may do
  // before a planned power-off. True at once for a queue in memory. False,
  // with the errno in `ec`, if the kernel refused (EIO: the disk failed).
  bool sync(std::error_code& ec) const noexcept;

  // --- Producer. Blocks only when PushOptions::wait asks it to wait for
  // room; a full queue is PushStatus::full. Throws
  // error(payload_too_large) / error(invalid_argument) for a bad call.
  PushResult push(std::span<const std::byte> payload, const PushOptions& options = {});
  PushResult push(std::string_view payload, const PushOptions& options = {});
  PushResult push(std::span<const std::byte> payload, const PushOptions& options,
                  std::error_code& ec) noexcept;
  // Pushes payloads in order until the queue is full (and the wait, if any,
  // runs out); returns how many were pushed, their ids in ids[0..n) when
  // `ids` is large enough. One scan, one wake-up and one counter update for
  // the batch. Throws before pushing anything if any payload is too large.
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids = {},
                        const PushOptions& options = {});
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                        const PushOptions& options, std::error_code& ec) noexcept;

  // --- Worker. Claims one job that is ready (or whose lease has expired),
  // oldest first as far as the ring allows. ClaimStatus::empty when none.
  // Throws error(invalid_argument) only for a lease out of range.
  ClaimStatus try_claim(Job& job, const ClaimOptions& options = {});
  [[nodiscard]] std::optional<Job> try_claim(const ClaimOptions& options = {});
  // Like try_claim, but sleeps (no CPU, across processes) up to `wait` until a
  // job can be claimed: woken by a push or a release in any process, and on
  // its own when a delayed job comes due or a lease runs out. Never waits on
  // a process that died: every sleep is bounded and followed by a re-check.
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options = {});
  // Batches: claim up to jobs.size() jobs in one scan; claim_many waits (as
  // claim) until at least one can be claimed. Return how many were claimed,
  // in jobs[0..n).
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options = {});
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options = {});
  // The same, reporting a lease or wait out of range (invalid_argument) or a
  // failed allocation of a Job's buffer (not_enough_memory) in `ec`.
  // One job from the first of `queues` (tried in the order given) that has
  // one; `index` says which queue it came from (ack it there). When none
  // has, sleeps up to `wait` until any of them may have one: one futex_waitv
  // on all their event words (Linux 5.16+; on older kernels it wakes every
  // 10 ms to look at the others), woken by a push or release in any process,
  // and by a lease running out or a delayed job coming due in any of them.
  // The order is the caller's: the same order every time is strict priority,
  // a fresh weighted draw each time is weighted fair (Worker does both).
  // Throws error(invalid_argument) for no queues, more than kMaxClaimAny, a
  // null one, or a lease or wait out of range.
  struct ClaimAnyResult {
    ClaimStatus status = ClaimStatus::empty;
    std::size_t index = 0;  // of the queue the job came from (when ok)
  };
  static constexpr std::size_t kMaxClaimAny = 64;
  static ClaimAnyResult claim_any(std::span<Queue* const> queues, Job& job, milliseconds wait,
                                  const ClaimOptions& options = {});
  ClaimStatus try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept;
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                         std::error_code& ec) noexcept;

  // Each succeeds only while `lease` is current; else lease_lost, nothing changed.
  LeaseStatus ack(const Lease& lease) noexcept;
  // Back to ready after `delay` (never sooner, usually within 1 ms more);
  // dead-lettered instead if max_attempts is used up. `error` says why the
  // attempt failed: kept with the job (cut to kMaxErrorLength bytes on a
  // UTF-8 boundary, with the time) if this release dead-letters it, for
  // peek(JobState::dead) and `jobring peek --state dead`; else unused.
  LeaseStatus release(const Lease& lease, milliseconds delay = milliseconds{0}) noexcept;
  LeaseStatus release(const Lease& lease, milliseconds delay, std::string_view error) noexcept;
  // Back to ready at once without counting the attempt: the next claim gets
  // the attempt number this claim got, and max_attempts never dead-letters
  // it here. For a worker that gives a job back untried because it is
  // shutting down (jobring::Worker does for a job claimed as stop_now()
  // came). Not for a job that ran and hung: counted, such a job ends dead
  // after max_attempts instead of cycling through restarts. If the lease ran
  // out and was taken over during the call, or the caller dies inside it,
  // the job may get one extra attempt, never one fewer.
  LeaseStatus give_back(const Lease& lease) noexcept;
  // New deadline = now + `lease_time`. Updates lease.token on success.
  // Throws error(invalid_argument) unless 1 ms <= lease_time <= kMaxLease.
  LeaseStatus extend(Lease& lease, milliseconds lease_time);
  LeaseStatus extend(Job& job, milliseconds lease_time);  // also updates job.deadline
  LeaseStatus extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept;
  // Acks every lease; results[i] says how leases[i] went (when given).
  // Returns how many were acked. One wake-up for the batch.
  std::size_t ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results = {}) noexcept;

  // --- Operators.
  [[nodiscard]] Stats stats() const noexcept;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit = 100) const;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit,
                                          std::error_code& ec) const noexcept;
  bool requeue(JobId dead_job) noexcept;      // dead → ready (attempts reset); false if not dead
  std::size_t requeue_dead() noexcept;        // every dead job
  bool remove_dead(JobId dead_job) noexcept;  // dead → gone
  std::size_t purge(PurgeWhat what = PurgeWhat::all) noexcept;  // `all` also resets corrupt slots

  // Pausing (an incident: stop handing out the jobs that break something
  // while it is fixed). A paused queue accepts pushes and keeps its leases
  // running (ack, release, extend, and expiry — a sweep returns expired
  // leases to ready), but every claim finds nothing: try_claim answers
  // empty, and a blocked claim (a Worker's) sleeps until resume() wakes it
  // or its wait runs out. A claim that starts after pause() returned hands
  // out nothing; one already inside its scan may still take one more job (a
  // batch stops after the job it is taking; a long scan looks at the flag
  // every 256 slots).
  // The flag is a word in the segment: the queue stays paused across every
  // process's death until someone resumes it. Both return whether the
  // state changed (false: it was already so).
  bool pause() noexcept;
  bool resume() noexcept;
  [[nodiscard]] bool paused() const noexcept;

  // Moves this queue's dead jobs into `to` (another queue: a dead-letter
  // queue), at most `options.limit` of them: as dead jobs there, with their
  // payload, attempts, age and note (when and why they died), so the ring
  // they filled has room again; or, with `options.as_ready`, as new ready
  // jobs (attempts 0, age from now): a redrive, e.g. from the dead-letter
  // queue back to the queue its workers serve. Each job is pushed into `to`
  // under the key "#moved/<this queue's incarnation>/<id>.<n>", then removed
  // here: a mover that dies between the two leaves the job in both, and the
  // next move_dead of this queue finds the key in `to` and only removes it
  // here — no job is lost, and none doubled while `to` still holds the copy
  // or remembers its key (Options::dedup_window). A job's own key stays
  // behind (its window runs here; the moved job has the move's key).
  // A job larger than `to`'s max_payload stays (counted in too_large);
  // a full `to` (ring or key table) ends the move (target_full). Never
  // waits. Throws error(invalid_argument) if `to` is this queue.
  MoveResult move_dead(Queue& to, const MoveOptions& options = {});
  MoveResult move_dead(Queue& to, const MoveOptions& options, std::error_code& ec) noexcept;

  // One recovery pass, as the janitor runs it: leases whose owner is proven
  // gone (nobody holds its liveness token: the process died, exec'd or
  // destroyed its Queue) and leases past their deadline go back to ready (or dead, if
  // their attempts are used up); half-written slots of dead producers are
  // freed; waiters are woken. A live owner's lease — even a stopped one's — is
  // never touched before its deadline. Every change is a CAS from the word
  // read, so sweeps racing each other or a worker's ack lose and double
  // nothing. Queues work without it: claims do the same lazily.
  SweepResult sweep() noexcept;

  struct Impl;

 private:
  friend class QueueView;
  explicit Queue(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

// A read-only handle on a queue: its options, stats() and peek(), for
// operators and monitors (jobring stat / peek / ls use it). It needs read
// permission on the segment only, where a Queue needs read and write: a
// queue of mode 0640 can be looked at by its group, one of 0644 by anyone.
// The segment is opened O_RDONLY and mapped PROT_READ, and no liveness
// token is taken. Nothing here writes: the operations that change a queue
// (push, claim, ack, release, extend, requeue, purge, sweep) are Queue's
// alone, so calling one on a read-only handle does not compile — there is no
// run-time refusal to forget and no status (ack's LeaseStatus, purge's count)
// that would have to stand for "read-only". Errors as Queue::open's; a
// segment the user may not even read is permission_denied.
class QueueView {
 public:
  [[nodiscard]] static QueueView open(std::string_view name);
  // `init_wait` as for Queue::open.
  [[nodiscard]] static std::optional<QueueView> open(std::string_view name, std::error_code& ec,
                                                     milliseconds init_wait = milliseconds{1000}) noexcept;

  [[nodiscard]] const std::string& name() const noexcept { return queue_.name(); }
  [[nodiscard]] const Options& options() const noexcept { return queue_.options(); }
  [[nodiscard]] std::uint64_t incarnation() const noexcept { return queue_.incarnation(); }
  [[nodiscard]] Stats stats() const noexcept { return queue_.stats(); }
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit = 100) const {
    return queue_.peek(state, limit);
  }
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit,
                                          std::error_code& ec) const noexcept {
    return queue_.peek(state, limit, ec);
  }

 private:
  explicit QueueView(Queue queue) noexcept : queue_(std::move(queue)) {}
  Queue queue_;  // opened read-only: only its const members are ever called
};

inline PurgeWhat operator|(PurgeWhat a, PurgeWhat b) {
  return static_cast<PurgeWhat>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}

}  // namespace jobring
