// jobring — a file-backed queue (Options::dir) across reboots: the boot it
// is in, its clock, the recovery the first opener in a new boot runs, and
// the sync policy that decides what of it is on disk.
//
// ============================================================================
// Reboot as a state change
// ============================================================================
//
// A segment in /dev/shm dies with its boot. A file does not, and after a
// reboot three things it holds mean nothing any more:
//   - its times: CLOCK_MONOTONIC restarts at boot, so a deadline or a
//     visible-at read from the old boot's clock is a number on no clock;
//   - its leases and half-written slots: their processes are gone (their
//     liveness locks too: no lock survives a reboot);
//   - its event words' waiting bits: nobody is waiting.
//
// Times: the segment keeps its own clock (layout.hpp, Durable): segment time
// = now_ms() + clock_base. Within a boot the base is fixed. At a reboot the
// first opener sets a new base so that the segment's clock goes on from
// where the wall clock says it should be:
//     segment now = max(CLOCK_REALTIME now − realtime_minus_clock,
//                       clock_seen, now_ms())
// where realtime_minus_clock is the wall clock minus segment time, taken
// at the last refresh in the old boot (every writable open and every sweep),
// and clock_seen the segment time then. So no stored time is rewritten: a
// delayed job comes due at the wall-clock time it was due (at once if the
// host was down past it), a lease's deadline stays a wall-clock time (but
// recovery returns every lease anyway, below), a de-duplication key's window
// ends at the wall-clock time it would have ended. clock_seen keeps the
// segment's clock from going back if the wall clock did (a host with no
// real-time clock boots at 1970 until NTP): then the segment's time stands
// still across the downtime, and delays resume where they stopped.
//
// Recovery: the first writable opener whose boot key differs from the one
// in the segment takes an exclusive flock(2) on the segment file, looks
// again (another opener may have finished meanwhile), sets the new base,
// returns every lease (T7 reclaim, or T8 when its attempts are used up: a
// reboot took the attempt, as a crash would), frees every WRITING slot (T2:
// its writer is of the old boot), moves the job-id counter past every id in
// the slots (a header page older than the slots' after a power cut must not
// hand out an id twice), settles the key table (K7: the old boot's
// producers are gone), and only then stores the new boot key (release).
//   Exactly once: openers take turns on the lock and look at the boot key
//     under it; a process that loads the new key (acquire) sees the whole
//     recovery.
//   Killed half-way: the boot key is still the old one; the flock goes with
//     the process; the next opener runs the recovery again. Each step is a
//     CAS from the word read, so a slot already returned or freed is left
//     alone; the base it chooses continues from the anchor the killed one
//     refreshed (the same clock, give or take the time between).
//   Nobody in the new boot acts on the queue before it is recovered: every
//     writable open goes through this. A read-only look (QueueView) maps the
//     times as the recovery will, and writes nothing.
//
// ============================================================================
// Sync policies (Options::sync)
// ============================================================================
//
//   none      the page cache: survives any process crash and a clean reboot
//             (the kernel writes dirty pages back within about 30 s, and at
//             shutdown); a power cut loses what was not written back yet.
//   interval  the janitor msyncs the whole file every sync_interval: a
//             power cut loses at most that long of work (and what the kernel
//             had not written back).
//   always    a push returns only once its job is on disk: its slot's pages
//             (meta, key, payload) are synced *before* its commit CAS, and
//             the page of its state word after. So whenever a READY word
//             reaches the disk — by our msync or by the kernel writing the
//             page back for someone else — its job's payload is already
//             there: a power cut leaves any mix of old and new pages, and
//             every job whose push returned is found, with its payload. An
//             ack syncs its state word's page (and its key entry's) after
//             its CAS: a power cut after ack returned does not bring the
//             job back. A claim, release or extend is not synced: after a
//             power cut its job is READY or LEASED on disk, and the
//             recovery makes it READY — delivered again (at-least-once).

#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>

#include "common/sys.hpp"
#include "ring/core.hpp"
#include "ring/testing.hpp"

namespace jobring {

namespace detail {

// How far the job-id counter jumps at every boot recovery (recover_boot).
constexpr std::uint64_t kBootIdJump = std::uint64_t{1} << 32;

namespace {

// Testing knobs (testing.hpp): a boot id other than the kernel's, and shifts
// of the clocks, for tests that simulate a reboot in one process.
std::atomic<std::uint64_t> g_boot_override{0};
std::atomic<bool> g_boot_unreadable{false};
std::atomic<std::int64_t> g_realtime_shift_ms{0};
std::atomic<int> g_recovery_kill_after{-1};
std::atomic<int> g_recovery_kill_signal{SIGKILL};

// FNV-1a over the boot id's text: a 64-bit key (never 0).
std::uint64_t key_of(const char* text, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n' || c == '\0') break;
    h = (h ^ c) * 0x100000001b3ull;
  }
  return h != 0 ? h : 1;
}

// 0 if /proc/sys/kernel/random/boot_id cannot be read. No stand-in: a key
// made up otherwise (the boot time by the wall clock, say) could differ
// from other processes' within one boot, and every open by such a process
// would "recover" the queue under live workers (issue 18 review).
std::uint64_t kernel_boot_key() noexcept {
  char buf[64] = {};
  const long n = read_small_file("/proc/sys/kernel/random/boot_id", buf, sizeof buf);
  return n > 0 ? key_of(buf, static_cast<std::size_t>(n)) : 0;
}

// The latest segment time a recovery starts from: far below the 40 bits of
// a word's aux (34 years of ms), with room for a lease or delay of kMaxAhead
// after it, whatever a hostile anchor says.
constexpr std::uint64_t kMaxSegmentTime = (std::uint64_t{1} << 40) - 4 * kMaxAhead;

// The segment time of "now" for a boot entering the segment, and the base
// that gives it (above): the wall clock's answer, but never before the
// latest segment time the queue is known to have seen (`seen`: the anchor's
// time, or a later time found in the slots), nor before this host's own
// now_ms() (so that the base is not negative). Reads only.
std::uint64_t planned_base(const Durable& d, std::uint64_t seen_in_slots) noexcept {
  const std::uint64_t host = now_ms();
  const std::int64_t anchor = d.realtime_minus_clock.load(std::memory_order_relaxed);
  const std::uint64_t seen =
      std::min(std::max(d.clock_seen.load(std::memory_order_relaxed), seen_in_slots), kMaxSegmentTime);
  // Saturating: a hostile anchor must not overflow the subtraction.
  std::int64_t by_wall = 0;
  if (__builtin_sub_overflow(realtime_ms(), anchor, &by_wall)) by_wall = anchor > 0 ? 0 : INT64_MAX;
  const std::uint64_t wall =
      by_wall <= 0 ? 0 : std::min(static_cast<std::uint64_t>(by_wall), kMaxSegmentTime);
  return std::max({wall, seen, host}) - host;
}

// The latest time a slot's meta records (an enqueue or a claim), at most
// kMaxSegmentTime: a floor for the new boot's clock when the anchor is
// older than the last push (it is refreshed only at opens and sweeps).
std::uint64_t latest_time_in_slots(const Queue::Impl& q) noexcept {
  std::uint64_t latest = 0;
  for (std::uint32_t i = 0; i < q.capacity; ++i) {
    const SlotMeta& m = q.meta(i);
    for (const std::uint64_t t :
         {m.pushed_at_ms.load(std::memory_order_relaxed), m.claimed_at_ms.load(std::memory_order_relaxed)})
      if (t <= kMaxSegmentTime) latest = std::max(latest, t);
  }
  return latest;
}

}  // namespace

// The anchor of the wall clock to the segment's, and the latest segment
// time seen: what the next boot's recovery maps through.
void refresh_anchor(Ring& q) noexcept {
  const std::uint64_t now = q.now();
  q.durable->realtime_minus_clock.store(realtime_ms() - static_cast<std::int64_t>(now),
                                        std::memory_order_relaxed);
  std::uint64_t seen = q.durable->clock_seen.load(std::memory_order_relaxed);
  while (seen < now && !q.durable->clock_seen.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
  }
}

namespace {

// How long an opener waits for another process's recovery before it gives
// up: 30 s, and 50 µs more per slot (a recovery reads every slot's meta,
// from the disk if it is not in the page cache). A recoverer that is
// stopped holds the lock until it is continued or killed.
std::chrono::milliseconds recovery_wait(std::uint32_t capacity) noexcept {
  return std::chrono::milliseconds(30'000 + std::uint64_t{capacity} / 20);
}

// Takes the exclusive flock on fd within `wait`; errno-style result.
int lock_for_recovery(int fd, std::chrono::milliseconds wait) noexcept {
  const auto give_up = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    const int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) return err;
    if (std::chrono::steady_clock::now() >= give_up) return EWOULDBLOCK;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

std::uint64_t boot_key() noexcept {
  if (g_boot_unreadable.load(std::memory_order_relaxed)) return 0;
  const std::uint64_t forced = g_boot_override.load(std::memory_order_relaxed);
  if (forced != 0) return forced;
  static const std::uint64_t key = kernel_boot_key();
  return key;
}

std::int64_t realtime_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000 +
         g_realtime_shift_ms.load(std::memory_order_relaxed);
}

void set_boot_id_for_testing(std::string_view id) noexcept {
  g_boot_override.store(id.empty() ? 0 : key_of(id.data(), id.size()), std::memory_order_relaxed);
}

void set_boot_id_unreadable_for_testing(bool unreadable) noexcept {
  g_boot_unreadable.store(unreadable, std::memory_order_relaxed);
}

void shift_clocks_for_testing(std::int64_t monotonic_ms, std::int64_t realtime_ms) noexcept {
  shift_monotonic_for_testing(monotonic_ms);
  g_realtime_shift_ms.fetch_add(realtime_ms, std::memory_order_relaxed);
}

void set_recovery_kill_point_for_testing(int after_slots, int signal) noexcept {
  g_recovery_kill_signal.store(signal, std::memory_order_relaxed);
  g_recovery_kill_after.store(after_slots, std::memory_order_relaxed);
}

void init_durable(Queue::Impl& q, const Options& o) noexcept {
  Durable& d = *q.durable;
  d.sync = static_cast<std::uint32_t>(o.sync);
  d.sync_interval_ms = static_cast<std::uint32_t>(o.sync_interval.count());
  d.clock_base.store(0, std::memory_order_relaxed);
  q.clock_base = 0;
  q.sync_always = o.sync == Options::Sync::always;
  refresh_anchor(q);
  // Published with the rest of the header by the creator's release store of
  // `init`: the creator's boot needs no recovery.
  d.boot.store(boot_key(), std::memory_order_relaxed);
}

std::error_code boot_unknown(std::string& detail) {
  detail =
      "cannot read /proc/sys/kernel/random/boot_id, which a file-backed queue needs to tell a reboot "
      "from a restart: mount /proc (in a systemd unit: not ProcSubset=pid)";
  return make_error_code(errc::system_error);
}

std::error_code enter_boot(Queue::Impl& q, std::string& detail) {
  Durable& d = *q.durable;
  const std::uint64_t boot = boot_key();
  if (boot == 0) return boot_unknown(detail);
  // Acquire: pairs with the release store of `boot` by the recovery that
  // entered this boot (or the creator's publication): its base, and every
  // slot it changed, are visible from here on.
  if (d.boot.load(std::memory_order_acquire) == boot) {
    q.clock_base = d.clock_base.load(std::memory_order_relaxed);
    if (q.writable) refresh_anchor(q);
    return {};
  }
  if (!q.writable) {
    // A look (QueueView) at a queue nobody opened in this boot yet: its
    // times as the recovery will map them. Nothing written.
    q.clock_base = planned_base(d, latest_time_in_slots(q));
    return {};
  }
  const int fd = q.segment.fd();
  const auto wait = recovery_wait(q.capacity);
  if (const int err = lock_for_recovery(fd, wait); err != 0) {
    // Not incomplete_segment, whose advice is to remove the queue: this one
    // holds jobs.
    detail = err == EWOULDBLOCK
                 ? "another process has been recovering it after a reboot for " +
                       std::to_string(wait.count() / 1000) +
                       " s: wait, or end that process (is it stopped? "
                       "`fuser -v " +
                       segment_path(q.name) + "` names it); do not remove the queue, it holds jobs"
                 : std::string("flock: ") + errno_text(err);
    return err == EWOULDBLOCK ? std::make_error_code(std::errc::resource_unavailable_try_again)
                              : make_error_code(errc::system_error);
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock{fd};
  if (d.boot.load(std::memory_order_acquire) == boot) {  // recovered while we waited
    q.clock_base = d.clock_base.load(std::memory_order_relaxed);
    refresh_anchor(q);
    return {};
  }
  const std::uint64_t base = planned_base(d, latest_time_in_slots(q));
  d.clock_base.store(base, std::memory_order_relaxed);
  q.clock_base = base;
  refresh_anchor(q);
  q.recover_boot();
  d.recoveries.fetch_add(1, std::memory_order_relaxed);
  // Release: pairs with the acquire load above in every later opener.
  d.boot.store(boot, std::memory_order_release);
  // The recovery itself need not reach the disk: a power cut before it does
  // leaves the old boot key there, and the next boot recovers again.
  return {};
}

}  // namespace detail

void Queue::Impl::recover_boot() noexcept {
  const std::uint64_t now = this->now();
  const std::uint32_t max_attempts = options.max_attempts;
  // Ids above this in a slot are forged: never move the counter that far.
  constexpr JobId kMaxTrustedId = JobId{1} << 62;
  JobId max_id = 0;
  std::uint64_t returned = 0;
  std::uint64_t freed = 0;
  const int kill_after = detail::g_recovery_kill_after.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < capacity; ++i) {
    auto& sw = state(i);
    Word w{sw.load(std::memory_order_acquire)};
    SlotMeta& m = meta(i);
    // Every slot's last id, free ones too: an acked job's id handed out
    // again would be skipped by an idempotent consumer as done.
    if (const JobId id = m.job_id.load(std::memory_order_relaxed); id < kMaxTrustedId)
      max_id = std::max(max_id, id);
    if (!w.valid()) continue;
    if (w.state() == State::writing) {
      // T2: its writer is of the old boot (nobody in this one writes before
      // this recovery ends). Dies before/after: as T2 (transitions.hpp).
      if (detail::move(T::recover, sw, w, T::recover.target(w, 0))) {
        ++freed;
        detail::count(T::recover, *header);
        durable->recovered_writes.fetch_add(1, std::memory_order_relaxed);
      }
    } else if (w.state() == State::leased) {
      // T7 reclaim, or T8 when its attempts are used up: the reboot ended
      // the lease as a crash of its holder would. Dies before/after: as T7
      // and T8; a repeat finds the slot READY or DEAD and leaves it.
      const std::uint32_t used = detail::attempts_of(m, w);
      const bool exhausted = max_attempts != 0 && used >= max_attempts;
      const detail::Transition& t = exhausted ? T::dead_letter : T::reclaim;
      if (exhausted) detail::write_note_after(note(i), t.target(w, 0), now, "lease lost in a reboot", used);
      if (detail::move(t, sw, w, t.target(w, 0))) {
        ++returned;
        detail::count(t, *header);
        durable->recovered_leases.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (kill_after >= 0 && i + 1 == static_cast<std::uint32_t>(kill_after))
      ::raise(detail::g_recovery_kill_signal.load(std::memory_order_relaxed));
  }
  // Past every id in the slots, and then 2^32 further: after a power cut
  // the header and the slots on disk may both be older than ids already
  // handed out (and acked: an idempotent consumer would skip a new job that
  // got one again), whatever the sync policy's slots say. 64-bit ids leave
  // room for 2^30 reboots. A repeat after a kill jumps again: harmless.
  std::uint64_t next = header->next_job_id.load(std::memory_order_relaxed);
  while (!header->next_job_id.compare_exchange_weak(next, std::max(next, max_id + 1) + detail::kBootIdJump,
                                                    std::memory_order_relaxed)) {
  }
  // K7 / K6: keys of the old boot's producers and finishers, and windows over.
  keys.resolve_all(now);
  // Nobody of the old boot waits: clear their waiting bits, so that the
  // first transitions of this boot do not make futex calls for nobody.
  header->work_event.store(0, std::memory_order_relaxed);
  header->room_event.store(0, std::memory_order_relaxed);
  if (returned > 0) detail::wake(T::reclaim, *header);
  if (freed > 0) detail::wake(T::recover, *header);
}

namespace {

// The errno of this thread's last refused msync before a commit (push.cpp
// turns it into the push's error); 0 if none.
thread_local int t_sync_errno = 0;

}  // namespace

int detail::take_sync_error() noexcept { return std::exchange(t_sync_errno, 0); }
bool detail::sync_error_pending() noexcept { return t_sync_errno != 0; }

bool Queue::Impl::synced(bool ok, bool before_commit) noexcept {
  if (ok) return true;
  if (before_commit)
    t_sync_errno = errno != 0 ? errno : EIO;
  else
    count(detail::kSyncErrors);  // committed or acked, maybe not on disk: Stats::sync_errors
  return false;
}

namespace {

// Where `p`, a pointer into q's mapping, is in the segment.
std::uint64_t offset_in(const Queue::Impl& q, const void* p) noexcept {
  return static_cast<std::uint64_t>(static_cast<const std::byte*>(p) -
                                    reinterpret_cast<const std::byte*>(q.header));
}

}  // namespace

bool Queue::Impl::sync_slot(std::uint32_t i, bool before_commit) noexcept {
  return synced(segment.sync_range(offset_in(*this, &meta(i)), stride), before_commit);
}

bool Queue::Impl::sync_state(std::uint32_t i) noexcept {
  return synced(segment.sync_range(offset_in(*this, &state(i)), 8), false);
}

bool Queue::Impl::sync_key_entry(std::uint32_t entry) noexcept {
  if (entry >= options.dedup_keys) return true;  // a hostile meta: nothing of ours there
  return synced(segment.sync_range(entries_offset + std::uint64_t{entry} * detail::kKeyEntryBytes,
                                   detail::kKeyEntryBytes),
                false);
}

bool Queue::Impl::sync_everything() const noexcept { return segment.sync_range(0, segment.size()); }

bool Queue::sync(std::error_code& ec) const noexcept {
  ec.clear();
  if (impl_->durable == nullptr) return true;
  if (impl_->sync_everything()) return true;
  ec = std::error_code(errno, std::system_category());
  return false;
}

}  // namespace jobring
