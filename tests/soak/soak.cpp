// jobring-soak — a long randomized chaos run (issue 8, "Soak"), driven by
// scripts/soak.
//
// One queue (created with Options::max_attempts, 3 unless --max-attempts says
// otherwise); P producer processes, W worker processes and J real
// jobring-janitor processes (the binary from the build). Workers with an even
// index run on jobring::Worker (include/jobring/worker.hpp: heartbeat,
// backoff, graceful stop); those with an odd index run a claim / ack loop of
// their own. A chaos loop in this (parent) process, for the whole run:
//   - SIGKILLs a random producer or worker (half the time aimed while it is
//     inside push / claim / ack) and starts a new one in its place;
//   - SIGTERMs a random jobring::Worker process (a graceful stop: it stops
//     claiming, its jobs in hand get the grace period, then are given back),
//     sometimes twice (the second signal gives the jobs back at once); the
//     process must exit 0, with an outcome logged for every job it claimed,
//     and is then started again (it may also be SIGKILLed or SIGSTOPped while
//     it stops);
//   - SIGKILLs a janitor, or stops it cleanly with SIGTERM, and starts a new one;
//   - SIGSTOPs a random producer, worker or janitor for 5 ms .. 3 s (often
//     longer than a lease), then SIGCONTs it;
//   - every 0.3 .. 3 s looks at the dead-lettered jobs (peek(JobState::dead)),
//     checks their payloads, and requeues them (requeue(id) each, or
//     requeue_dead()), or leaves them dead for a while.
// Own-loop workers claim (try_claim, claim with a wait, try_claim_many), check
// every payload byte, "work" for a random time (sometimes past the lease,
// sometimes extending it as a heartbeat), then ack (ack or ack_many), or
// release with a delay. jobring::Worker handlers check the payload, then
// mostly ack after a short time, but sometimes fail (Outcome::retry,
// retry_after, an exception: released with backoff), sometimes run 1.5 .. 4
// leases (only the heartbeat's extensions keep the job theirs), sometimes
// block past the lease ignoring their JobContext (so that a SIGTERM's grace
// period runs out and the job is given back). A release on the last attempt,
// or a lease that runs out on it, dead-letters the job.
// Producers push (push, push with a delay, push with a wait,
// push_many) at a pace the parent changes every few seconds (so the queue is
// sometimes full, sometimes empty). Half their single pushes carry a
// de-duplication key; some repeat a key pushed a moment ago, and a producer
// restarted after a kill first pushes again, with the same key, whatever
// keyed push the kill cut short (as a real producer retries).
//
// Every process logs what it does to its own append-only file of fixed-size
// records, written with one write(2) each:
//   producer: BEGIN before a push; DONE (with the job id) after push returned
//             ok; NOT_PUSHED after it returned full. A BEGIN with neither is a
//             push cut by SIGKILL: the job may or may not exist ("maybe").
//   worker:   CLAIM after a claim returned the job, before anything else (a
//             jobring::Worker: in on_claim); ACKED after ack returned ok; LOST
//             after an ack / extend / release returned lease_lost; RELEASED
//             after release returned ok; DEAD after a release on the last
//             attempt returned ok (the queue dead-lettered the job);
//             GIVEN_BACK after a jobring::Worker released the job at the end
//             of its grace period (outcomes of a jobring::Worker: in on_done).
//             A CLAIM with no outcome in an incarnation that was killed is an
//             ack that may or may not have happened ("maybe").
//
// At the end: producers stop, workers drain the queue (until every slot is
// free or dead; nobody requeues during the drain), everything stops, the
// jobs still dead are listed (peek) and removed, and the logs are checked.
// Every job must end acked exactly once, or dead at the end. A violation
// (exit status 1) is any of:
//   - LOST: a job whose push returned ok, or that a worker claimed, was
//     neither acked (a logged ack or a maybe-ack) nor dead at the end;
//   - DOUBLE ACK: two successful acks of one job; FENCING: an ack that won
//     with the token of a lease that a later claim of the job had taken over
//     (told by the generation in the token, lib/ring/layout.hpp); a job acked and
//     still dead at the end;
//   - a push that answered duplicate = true with a job of another key, or
//     that answered duplicate and still added its own job;
//   - a claimed or dead-lettered payload that no producer began to push, a
//     torn payload, one payload under two job ids, one job id returned by
//     two pushes;
//   - a slot stuck after the drain (writing, leased, expired, ready, delayed
//     or corrupt > 0, free + dead < capacity, a dead job that peek does not
//     list or remove_dead cannot remove), a dead job the parent saw that
//     requeue could not requeue;
//   - a child that ended by itself (crash, exception, failed log write), a
//     jobring::Worker process that did not exit 0 within 30 s of a SIGTERM, a
//     janitor that did not stop cleanly on SIGTERM or that logged a warning;
//   - totals in Stats that disagree with the logs by more than the kills allow
//     (pushed, acked, duplicates, dead_lettered; requeued and purged exactly).
// Redeliveries (a job claimed again after a lease expired, a janitor
// reclaimed a dead worker's lease, a release or a give-back, a requeue) are
// expected and counted, as are keys that made a second job (allowed after the
// window, an eviction from the key table, or a kill that left the key's entry
// ambiguous).
//
// File-backed queues and reboots (issue 18). With --dir DIR the queue is a
// file in DIR (Options::dir, named DIR/soak.PID), created with --sync as
// given. With --reboot-every S as well, every S seconds (give or take a
// fifth) the parent "reboots" the host:
//   - it SIGKILLs every child at once (producers, workers, janitors; stopped
//     and stopping ones too), reaps them, and counts their incarnations as
//     killed;
//   - with no process of the old boot left, it lists every job in the queue
//     (peek: ready, delayed, leased, dead) and the leased and half-written
//     slots (stats): a job in the queue then was not acked, whatever a log
//     cut short by the kill says;
//   - it closes its own handle, then changes the boot with the testing hooks
//     (ring/testing.hpp): a new boot id, CLOCK_MONOTONIC (as now_ms() reads
//     it) back to 2 .. 8 s, the wall clock on by a random downtime of
//     0 .. 120 s (one time in ten back by up to an hour instead: a host with
//     no real-time clock). The children are forked from the parent, so they
//     inherit the new boot (the hooks are kept across fork);
//   - sometimes (1 in 4) a first opener is killed half-way through the
//     recovery (set_recovery_kill_point_for_testing), and half of those times
//     the host reboots again before anyone finishes it; then it reopens: half
//     the time the parent opens first, half the time the new children race
//     it to open (the recovery must still run exactly once);
//   - checks that Stats::recoveries grew by exactly one, that the recovery
//     returned exactly the leases it found (recovered_leases) and freed
//     exactly the half-written slots (recovered_boot_writes), and restarts
//     every child.
// The janitors of a rebooting soak are not the jobring-janitor binary (an
// exec'd program would report the kernel's boot, not the simulated one, and
// run a recovery of its own): they are forked children that run the same
// janitor code (daemon/janitor.cpp, jobring::janitor::Janitor: a sweep, and
// the msync of Sync::interval) every 10 .. 100 ms and stop on SIGTERM.
// The account then also holds across reboots: a claim whose worker was
// killed by a reboot while its job was still in the queue is known not to
// have been acked (no maybe), so that job must be claimed again and acked
// (or be dead at the end): a lease held across a reboot comes back and is
// redone, and a job lost by a recovery is reported LOST.
//
// Usage: jobring-soak [--janitor PATH] [--seconds N | --minutes N] [--producers P]
//        [--workers W] [--janitors J] [--max-attempts N] [--seed S] [--keep-logs]
//        [--dir DIR [--sync none|interval|always] [--reboot-every S]]
//   --max-attempts N  the queue's Options::max_attempts (default 3; 0 =
//                     unlimited: no job is ever dead-lettered, and any
//                     dead-lettering is a violation)
//   --dir DIR         a file-backed queue in DIR (made if missing)
//   --sync POLICY     its Options::sync (default none; interval: every 1 s)
//   --reboot-every S  "reboot" every S seconds (needs --dir)
// Exit: 0 all good, 1 a violation, 2 bad usage or setup failure, 130 interrupted.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.hpp"  // now_ms(), for the reboot's clock shift
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "ring/layout.hpp"   // the generation in a token, for the fencing check
#include "ring/testing.hpp"  // the simulated reboot (boot id, clocks, a killed recovery)
#include "support/test_support.hpp"
#ifdef JOBRING_SOAK_JANITOR_CODE
#include "janitor.hpp"  // daemon/: the janitor's code, run in a forked child across reboots
#include "log.hpp"
#endif

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::ClaimStatus;
using jobring::Job;
using jobring::JobContext;
using jobring::JobId;
using jobring::JobInfo;
using jobring::JobReport;
using jobring::JobResult;
using jobring::JobState;
using jobring::Lease;
using jobring::LeaseStatus;
using jobring::milliseconds;
using jobring::Outcome;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::Stats;
using jobring::Worker;
using jobring::WorkerOptions;
using jobring::detail::Word;
using jobring::test::append_record;
using jobring::test::describe;
using jobring::test::die_with_parent;
using jobring::test::kill_and_reap;
using jobring::test::open_append_records;
using jobring::test::read_records;
using jobring::test::SharedObject;
using jobring::test::try_wait_child;
using jobring::test::wait_child;
using Clock = std::chrono::steady_clock;

// Generations are modular (kGenBits); the tokens of one job's life lie within
// a few transitions of each other, far less than half the range.
bool after(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t d = (a - b) & jobring::detail::kGenMask;
  return d != 0 && d < (jobring::detail::kGenMask >> 1);
}

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

constexpr std::uint32_t kCapacity = 128;  // small, so that "full" and push waits happen
constexpr std::uint32_t kMaxPayload = 512;
constexpr milliseconds kDefaultLease{200};
constexpr int kMaxProcesses = 16;  // per role
constexpr std::size_t kMaxBatch = 8;

// Workers with an even index run on jobring::Worker, the others on a claim /
// ack loop of their own.
constexpr bool runs_on_worker(int index) { return index % 2 == 0; }

struct Config {
#ifdef JOBRING_JANITOR_BIN
  std::string janitor = JOBRING_JANITOR_BIN;  // the one built beside us
#else
  std::string janitor;
#endif
  std::chrono::seconds duration{600};
  int producers = 3;
  int workers = 3;
  int janitors = 2;
  std::uint32_t max_attempts = 3;  // the queue's Options::max_attempts; 0 = unlimited
  unsigned seed = 0;
  bool seed_given = false;
  bool keep_logs = false;
  std::string dir;  // a file-backed queue in DIR (Options::dir); empty: /dev/shm
  jobring::Options::Sync sync = jobring::Options::Sync::none;
  std::chrono::seconds reboot_every{0};  // 0: no reboots
};

// ---------------------------------------------------------------------------
// Jobs and payloads
// ---------------------------------------------------------------------------

// A job's tag: which producer (8 bits), which incarnation of it (28 bits) and
// the how-manieth push of that incarnation (28 bits). Unique over the run.
using Tag = std::uint64_t;
constexpr Tag make_tag(std::uint32_t producer, std::uint32_t incarnation, std::uint32_t n) {
  return (Tag{producer} << 56) | ((Tag{incarnation} & 0xfffffff) << 28) | (Tag{n} & 0xfffffff);
}

// Payload: tag (8 bytes), key id (8; 0 = pushed without a key), length (4),
// check (4), then bytes that depend on the tag and the position. Its length
// depends on the tag (24 .. kMaxPayload). A keyed job carries the key
// "k<key id>"; the key id is the tag of the first push with that key (a
// producer restarted after a kill retries its cut-short keyed push with the
// same key and a new tag, as a real producer would).
struct PayloadHeader {
  Tag tag;
  std::uint64_t key_id;
  std::uint32_t length;
  std::uint32_t check;
};
static_assert(sizeof(PayloadHeader) == 24);

std::uint32_t check_of(Tag tag) { return static_cast<std::uint32_t>((tag * 0x9e3779b97f4a7c15ull) >> 32); }
std::size_t payload_length(Tag tag) {
  return sizeof(PayloadHeader) + (check_of(tag) % (kMaxPayload - sizeof(PayloadHeader) + 1));
}
char filler(Tag tag, std::size_t k) { return static_cast<char>((tag >> (k % 7)) + k * 31); }
std::string key_of(std::uint64_t key_id) {
  if (key_id == 0) return {};
  // (Not "k" + std::to_string(): g++ 12 -O3 warns -Wrestrict about it, a false positive.)
  std::string key(1, 'k');
  key += std::to_string(key_id);
  return key;
}

void make_payload(std::string& out, Tag tag, std::uint64_t key_id) {
  out.assign(payload_length(tag), '\0');
  const PayloadHeader h{tag, key_id, static_cast<std::uint32_t>(out.size()), check_of(tag)};
  std::memcpy(out.data(), &h, sizeof h);
  for (std::size_t k = sizeof h; k < out.size(); ++k) out[k] = filler(tag, k);
}

// The header of payload `p` if it is a whole, untorn payload of this run.
std::optional<PayloadHeader> check_payload(std::string_view p) {
  if (p.size() < sizeof(PayloadHeader)) return std::nullopt;
  PayloadHeader h{};
  std::memcpy(&h, p.data(), sizeof h);
  if (h.length != p.size() || h.check != check_of(h.tag) || payload_length(h.tag) != p.size())
    return std::nullopt;
  for (std::size_t k = sizeof h; k < p.size(); ++k) {
    if (p[k] != filler(h.tag, k)) return std::nullopt;
  }
  return h;
}

// The header of `job` if its payload is a whole, untorn payload of this run
// and its key is the one the payload names.
std::optional<PayloadHeader> check_job(const Job& job) {
  const auto h = check_payload(job.text());
  if (!h || job.key() != key_of(h->key_id)) return std::nullopt;
  return h;
}

// ---------------------------------------------------------------------------
// Logs: fixed-size records, one write(2) each, O_APPEND.
// ---------------------------------------------------------------------------

enum RecKind : std::uint32_t {
  kBegin = 1,       // producer, before push
  kDone = 2,        // producer, after push returned ok (id)
  kNotPushed = 3,   // producer, after push returned full / interrupted
  kClaim = 11,      // worker, after a claim returned the job (id, attempt, whole)
  kAcked = 12,      // worker, after ack returned ok
  kLost = 13,       // worker, after ack / extend / release returned lease_lost
  kReleased = 14,   // worker, after release returned ok
  kDead = 15,       // worker, after a release on the last attempt returned ok (dead-lettered)
  kGivenBack = 16,  // jobring::Worker, after it gave the job back at the end of the grace period
};

struct Rec {
  std::uint32_t kind;
  std::uint32_t incarnation;
  Tag tag;
  JobId id;
  std::uint32_t attempt;
  // CLAIM: kTornFlag; DONE: kDuplicateFlag; outcomes of a jobring::Worker:
  // kWorkerFlag and what its handler did (kFailedFlag ...).
  std::uint32_t flags;
  // BEGIN, DONE, NOT_PUSHED: the key id (0 = no key). CLAIM: the lease's
  // token, and ACKED, LOST, RELEASED, DEAD: the token used (a jobring::Worker:
  // its claim's token; its heartbeat's later tokens are not visible to us).
  std::uint64_t aux;
};
constexpr std::uint32_t kTornFlag = 1;       // the payload or key is not what a producer pushed
constexpr std::uint32_t kDuplicateFlag = 2;  // push returned ok with duplicate = true
// On the outcome records of a jobring::Worker: what its handler did.
constexpr std::uint32_t kWorkerFlag = 4;     // written by a jobring::Worker (on_done)
constexpr std::uint32_t kFailedFlag = 8;     // returned Outcome::retry or retry_after
constexpr std::uint32_t kThrewFlag = 16;     // threw (the Worker releases it with backoff)
constexpr std::uint32_t kLongFlag = 32;      // ran 1.5 .. 4 leases (ctx.sleep_for)
constexpr std::uint32_t kBlockedFlag = 64;   // blocked past the lease ignoring its JobContext
constexpr std::uint32_t kSawStopFlag = 128;  // saw ctx.stopping() while it ran
static_assert(sizeof(Rec) == 40);

// Opens `path` for appending, dropping a partial record a SIGKILL left at the
// end (test::open_append_records). The event of a dropped record did not
// happen or is a "maybe" either way: BEGIN and CLAIM are written before the
// step they announce; DONE / ACKED after it.
int open_log(const std::string& path) { return open_append_records(path, sizeof(Rec)); }

// The queue, opened by a producer or worker process; nullopt (with a line on
// stderr naming `who`) if it cannot be.
std::optional<Queue> open_queue(const std::string& queue, const char* who) {
  std::error_code ec;
  auto q = Queue::open(queue, ec);
  if (!q) std::fprintf(stderr, "soak %s: open: %s\n", who, ec.message().c_str());
  return q;
}

// ---------------------------------------------------------------------------
// Shared control block (MAP_SHARED, anonymous): the parent steers children.
// ---------------------------------------------------------------------------

struct Control {
  std::atomic<int> stop_producers{0};
  std::atomic<int> stop_workers{0};
  // The producers' pace, changed by the parent every few seconds, so that
  // the queue is sometimes full (pushes wait or fail), sometimes empty
  // (claims wait): the most a producer sleeps between pushes, in µs.
  std::atomic<unsigned> pace_us{3000};
  // 1 while the child is inside the library (push / claim / ack / release /
  // extend), so that the chaos loop can aim kills there.
  std::atomic<int> busy_producer[kMaxProcesses] = {};
  std::atomic<int> busy_worker[kMaxProcesses] = {};
};

// Child exit statuses (besides 0).
constexpr int kExitLog = 3;
constexpr int kExitOpen = 4;
constexpr int kExitException = 5;
constexpr int kExitNotStopped = 6;  // jobring::Worker::run() returned without a stop

class Busy {
 public:
  explicit Busy(std::atomic<int>& flag) : flag_(flag) { flag_.store(1, std::memory_order_relaxed); }
  ~Busy() { flag_.store(0, std::memory_order_relaxed); }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  std::atomic<int>& flag_;
};

void sleep_us(std::uint64_t us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }

// ---------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------

// The keyed pushes the previous incarnation of this producer began and never
// saw the end of (it was killed): their key ids, to push again.
std::vector<std::uint64_t> cut_short_keys(const std::string& log) {
  std::size_t partial = 0;
  const auto recs = read_records<Rec>(log, &partial);
  if (recs.empty()) return {};
  const std::uint32_t last = recs.back().incarnation;
  std::map<Tag, std::uint64_t> open;  // tag -> key id
  for (const Rec& r : recs) {
    if (r.incarnation != last) continue;
    if (r.kind == kBegin && r.aux != 0) open[r.tag] = r.aux;
    if (r.kind == kDone || r.kind == kNotPushed) open.erase(r.tag);
  }
  std::vector<std::uint64_t> keys;
  for (const auto& [tag, key] : open) keys.push_back(key);
  return keys;
}

int producer_main(const std::string& queue, const std::string& log, Control& ctl, std::uint32_t index,
                  std::uint32_t incarnation) {
  const int fd = open_log(log);
  if (fd < 0) return kExitLog;
  std::vector<std::uint64_t> retry = cut_short_keys(log);
  auto q = open_queue(queue, "producer");
  if (!q) return kExitOpen;
  std::minstd_rand rng(static_cast<unsigned>(::getpid()) ^ incarnation);
  std::atomic<int>& busy = ctl.busy_producer[index];
  std::uint32_t n = 0;
  std::array<std::string, kMaxBatch> payloads;
  std::array<std::span<const std::byte>, kMaxBatch> spans;
  std::array<JobId, kMaxBatch> ids{};
  std::array<Tag, kMaxBatch> tags{};
  std::array<std::uint64_t, 16> recent{};  // the last keys this incarnation pushed
  std::size_t next_recent = 0;
  while (ctl.stop_producers.load(std::memory_order_acquire) == 0) {
    const auto dice = rng() % 100;
    PushOptions po;
    if (dice < 5) po.delay = milliseconds(1 + rng() % 100);    // a delayed job
    if (dice >= 80) po.wait = milliseconds(10 + rng() % 100);  // wait for room when full
    const std::size_t batch = (dice >= 5 && dice < 15) ? 2 + rng() % (kMaxBatch - 1) : 1;
    std::uint64_t key_id = 0;
    for (std::size_t i = 0; i < batch; ++i) {
      tags[i] = make_tag(index, incarnation, n++);
      if (batch == 1 && !retry.empty()) {
        key_id = retry.back();  // the same key as the push a kill cut short
        retry.pop_back();
      } else if (batch == 1 && dice >= 50 && rng() % 8 == 0 && recent[0] != 0) {
        key_id = recent[rng() % recent.size()];  // a key pushed a moment ago: usually a duplicate
        if (key_id == 0) key_id = recent[0];
      } else if (batch == 1 && dice >= 50) {
        key_id = tags[i];  // half the single pushes carry a key
        recent[next_recent++ % recent.size()] = key_id;
      }
      make_payload(payloads[i], tags[i], key_id);
      spans[i] = std::as_bytes(std::span<const char>(payloads[i]));
      if (!append_record(fd, Rec{kBegin, incarnation, tags[i], 0, 0, 0, key_id}))
        return kExitLog;  // before the push
    }
    std::size_t pushed = 0;
    bool full = false;
    std::uint32_t flags = 0;
    if (batch == 1) {
      const std::string key = key_of(key_id);
      po.key = key;
      PushStatus st = PushStatus::full;
      {
        Busy b(busy);
        const auto r = q->push(spans[0], po);
        st = r.status;
        ids[0] = r.id;
        flags = r.duplicate ? kDuplicateFlag : 0;
      }
      pushed = st == PushStatus::ok ? 1 : 0;
      full = st != PushStatus::ok;
      if (full && key_id != 0 && key_id != tags[0]) retry.push_back(key_id);  // a retry: try it again
    } else {
      {
        Busy b(busy);
        pushed = q->push_many(std::span(spans.data(), batch), std::span(ids.data(), batch), po);
      }
      full = pushed < batch;
    }
    for (std::size_t i = 0; i < batch; ++i) {  // after push returned
      const Rec r = i < pushed ? Rec{kDone, incarnation, tags[i], ids[i], 0, flags, key_id}
                               : Rec{kNotPushed, incarnation, tags[i], 0, 0, 0, key_id};
      if (!append_record(fd, r)) return kExitLog;
    }
    if (full) sleep_us(500 + rng() % 2000);
    sleep_us(rng() % (ctl.pace_us.load(std::memory_order_relaxed) + 1));
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

// A worker with a claim / ack loop of its own.
int loop_worker_main(const std::string& queue, const std::string& log, Control& ctl, std::uint32_t index,
                     std::uint32_t incarnation) {
  const int fd = open_log(log);
  if (fd < 0) return kExitLog;
  auto q = open_queue(queue, "worker");
  if (!q) return kExitOpen;
  std::minstd_rand rng(static_cast<unsigned>(::getpid()) ^ (incarnation << 8));
  std::atomic<int>& busy = ctl.busy_worker[index];
  const std::uint32_t max_attempts = q->options().max_attempts;
  std::array<Job, 4> jobs;
  std::array<Lease, 4> leases;
  std::array<LeaseStatus, 4> results{};
  auto log_outcome = [&](const Job& j, RecKind kind) {
    return append_record(fd, Rec{kind, incarnation, 0, j.id, j.attempt, 0, j.lease.token});
  };
  while (ctl.stop_workers.load(std::memory_order_acquire) == 0) {
    ClaimOptions co;
    co.lease = milliseconds(100 + rng() % 301);
    const auto how = rng() % 100;
    std::size_t n = 0;
    {
      Busy b(busy);
      if (how < 10) {
        n = q->try_claim_many(std::span(jobs.data(), 1 + rng() % jobs.size()), co);
      } else if (how < 30) {
        n = q->try_claim(jobs[0], co) == ClaimStatus::ok ? 1 : 0;
      } else {
        n = q->claim(jobs[0], 50ms, co) == ClaimStatus::ok ? 1 : 0;
      }
    }
    if (n == 0) {
      if (how < 30) sleep_us(300 + rng() % 700);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {  // before anything is done with the jobs
      const auto h = check_job(jobs[i]);
      if (!append_record(fd, Rec{kClaim, incarnation, h ? h->tag : 0, jobs[i].id, jobs[i].attempt,
                                 h ? 0u : kTornFlag, jobs[i].lease.token}))
        return kExitLog;
    }
    if (n > 1) {
      for (std::size_t i = 0; i < n; ++i) leases[i] = jobs[i].lease;
      {
        Busy b(busy);
        (void)q->ack_many(std::span(leases.data(), n), std::span(results.data(), n));
      }
      for (std::size_t i = 0; i < n; ++i) {
        if (!log_outcome(jobs[i], results[i] == LeaseStatus::ok ? kAcked : kLost)) return kExitLog;
      }
      continue;
    }
    Job& job = jobs[0];
    const auto what = rng() % 1000;
    if (what < 30) {
      // A retry: release, sometimes with a delay. On the last attempt the
      // queue dead-letters the job instead (the attempts change only at a
      // claim, and the job is ours: job.attempt is what release sees).
      LeaseStatus st = LeaseStatus::ok;
      {
        Busy b(busy);
        st = q->release(job.lease, milliseconds(rng() % 3 == 0 ? rng() % 50 : 0));
      }
      const bool last = max_attempts != 0 && job.attempt >= max_attempts;
      if (!log_outcome(job, st != LeaseStatus::ok ? kLost : last ? kDead : kReleased)) return kExitLog;
      continue;
    }
    if (what < 40) {
      // Work past the lease without a heartbeat: a takeover may happen, and
      // then the ack must be refused (fencing).
      std::this_thread::sleep_for(co.lease + milliseconds(20 + rng() % 130));
    } else if (what < 45) {
      // A long job with a heartbeat: three extends at a third of the lease.
      bool lost = false;
      for (int k = 0; k < 3 && !lost; ++k) {
        std::this_thread::sleep_for(co.lease / 3);
        Busy b(busy);
        lost = q->extend(job, co.lease) != LeaseStatus::ok;
      }
      if (lost) {
        if (!log_outcome(job, kLost)) return kExitLog;
        continue;
      }
    } else if (what < 100) {
      sleep_us(1000 + rng() % 4000);  // a slow job
    }
    LeaseStatus st = LeaseStatus::ok;
    {
      Busy b(busy);
      st = q->ack(job.lease);
    }
    if (!log_outcome(job, st == LeaseStatus::ok ? kAcked : kLost)) return kExitLog;  // after the ack
  }
  return 0;
}

// A worker on jobring::Worker. Its options are drawn per incarnation: a lease
// of 100 .. 400 ms extended every 1/5 .. 1/2 of it, a backoff of a few ms
// (capped below 80 ms, any jitter), a grace period of 0 .. 1 s, one or two
// handler threads. Its handlers mostly ack after a short time, but some fail
// (Outcome::retry / retry_after, an exception), some run 1.5 .. 4 leases
// (only the heartbeat keeps the job theirs; on a stop they give up, hurry or
// finish anyway) and some block past the lease ignoring their JobContext (a
// stop's grace period runs out and the Worker gives the job back). Every
// handler ends within ~1.6 s, so the soak keeps making progress.
// SIGTERM / SIGINT: the Worker's own handlers, installed by spawn() before
// the signals are unblocked.
//
// The handler, on_claim and on_done of one job run on one thread (worker.hpp,
// "Threads"): t_flags carries what the handler did to the outcome record.
thread_local std::uint32_t t_flags = 0;
thread_local bool t_busy = false;  // this thread counted itself in busy_worker

int worker_main(const std::string& queue, const std::string& log, Control& ctl, std::uint32_t index,
                std::uint32_t incarnation) {
  const int fd = open_log(log);
  if (fd < 0) return kExitLog;
  auto q = open_queue(queue, "worker");
  if (!q) return kExitOpen;
  std::minstd_rand setup(static_cast<unsigned>(::getpid()) ^ (incarnation << 8));
  WorkerOptions o;
  o.lease = milliseconds(100 + setup() % 301);
  static constexpr double kFractions[] = {0.2, 1.0 / 3, 0.5};
  o.extend_fraction = kFractions[setup() % 3];
  static constexpr jobring::Jitter kJitters[] = {jobring::Jitter::none, jobring::Jitter::full,
                                                 jobring::Jitter::equal};
  o.backoff.base = milliseconds(1 + setup() % 10);
  o.backoff.cap = milliseconds(20 + setup() % 60);
  o.backoff.jitter = kJitters[setup() % 3];
  const auto g = setup() % 10;
  o.grace = g == 0 ? milliseconds{0} : milliseconds(g < 5 ? 20 + setup() % 200 : 200 + setup() % 800);
  o.threads = 1 + setup() % 2;
  const milliseconds lease = o.lease;
  std::atomic<int>& busy = ctl.busy_worker[index];
  // A failed log write ends the process (exit kExitLog, a violation): a
  // hook cannot return it.
  auto log_or_die = [fd](const Rec& r) {
    if (!append_record(fd, r)) std::_Exit(kExitLog);
  };
  o.hooks.on_claim = [&](const Job& j) {  // before the handler: nothing done with the job yet
    t_flags = 0;
    const auto h = check_job(j);
    log_or_die(Rec{kClaim, incarnation, h ? h->tag : 0, j.id, j.attempt, h ? 0u : kTornFlag, j.lease.token});
  };
  o.hooks.on_done = [&](const Job& j, const JobReport& r) {  // after the ack / release / give-back
    RecKind kind = kLost;
    switch (r.result) {
      case JobResult::acked:
      case JobResult::skipped:
      case JobResult::dropped:
        kind = kAcked;
        break;
      case JobResult::retried:
        kind = kReleased;
        break;
      case JobResult::dead:
        kind = kDead;
        break;
      case JobResult::lease_lost:
        kind = kLost;
        break;
      case JobResult::abandoned:
        kind = kGivenBack;
        break;
      case JobResult::unconfirmed:  // shared memory never reports it; if it did, as a lost lease
        kind = kLost;
        break;
    }
    if (t_busy) {
      busy.fetch_sub(1, std::memory_order_relaxed);
      t_busy = false;
    }
    log_or_die(Rec{kind, incarnation, 0, j.id, j.attempt, kWorkerFlag | t_flags, j.lease.token});
  };
  std::array<std::minstd_rand, 2> rngs{std::minstd_rand(setup()), std::minstd_rand(setup())};
  auto handler = [&](const Job& job, JobContext& ctx) -> Outcome {
    std::minstd_rand& rng = rngs[ctx.thread_index() % rngs.size()];
    // From here to on_done the Worker acks / releases: an aimed kill lands there.
    auto leaving = [&] {
      if (ctx.stopping()) t_flags |= kSawStopFlag;
      t_busy = true;
      busy.fetch_add(1, std::memory_order_relaxed);
    };
    (void)job;  // its payload was checked in on_claim
    Outcome out = Outcome::ack();
    const auto dice = rng() % 1000;
    if (dice < 90) {
      sleep_us(rng() % 2000);
      t_flags |= kFailedFlag;
      out = Outcome::retry();  // released with the Worker's backoff (dead on the last attempt)
    } else if (dice < 105) {
      t_flags |= kThrewFlag;
      leaving();
      throw std::runtime_error("soak: a failing handler");
    } else if (dice < 120) {
      t_flags |= kFailedFlag;
      out = Outcome::retry_after(milliseconds(rng() % 40));
    } else if (dice < 160) {
      // 1.5 .. 4 leases: the job stays ours only through the heartbeat.
      t_flags |= kLongFlag;
      const milliseconds d = lease * (3 + rng() % 6) / 2;
      const auto until = Clock::now() + d;
      if (!ctx.sleep_for(d) && !ctx.cancelled()) {
        // A stop: give up (counts the attempt), hurry (ack now), or finish
        // anyway (the grace period may run out: the job is given back and
        // our result discarded).
        t_flags |= kSawStopFlag;
        const auto c = rng() % 3;
        if (c == 0) {
          t_flags |= kFailedFlag;
          out = Outcome::retry();
        } else if (c == 1) {
          std::this_thread::sleep_until(until);
        }
      }
    } else if (dice < 170) {
      // Blocks past the lease (the heartbeat keeps it) and past most grace
      // periods, ignoring its JobContext.
      t_flags |= kBlockedFlag;
      std::this_thread::sleep_for(lease + milliseconds(rng() % 600));
    } else if (dice < 175) {
      out = Outcome::skip();
    } else if (dice < 180) {
      out = Outcome::drop();
    } else if (dice < 500) {
      (void)ctx.sleep_for(milliseconds(rng() % 5));
    }
    leaving();
    return out;
  };
  Worker worker(*q, handler, o);
  const jobring::WorkerSummary sum = worker.run();  // until SIGTERM
  if (t_busy) busy.fetch_sub(1, std::memory_order_relaxed);
  return sum.stopped ? 0 : kExitNotStopped;
}

// ---------------------------------------------------------------------------
// Janitor, in a forked child (--reboot-every)
// ---------------------------------------------------------------------------

// The jobring-janitor binary reports the kernel's boot id, not the simulated
// one this process's children inherit: it would take every simulated reboot
// for another boot and recover the queue again under live workers. So a
// rebooting soak runs the janitor's own code (daemon/janitor.cpp) in a forked
// child: a sweep of the queue every `interval` (reclaims, expiries, the
// anchor of the segment's clock, the msync of Sync::interval), logging at
// warn to its log file, until SIGTERM (exit 0).
volatile std::sig_atomic_t g_janitor_stop = 0;
extern "C" void on_janitor_term(int) { g_janitor_stop = 1; }

#ifdef JOBRING_SOAK_JANITOR_CODE
int janitor_main(const std::string& queue, milliseconds interval, const std::string& metrics) {
  namespace jan = jobring::janitor;
  jan::set_log_level(jan::Level::warn);
  if (!jan::install_sigbus_guard()) return kExitException;
  jan::Config config;
  config.queues = {queue};
  config.interval = interval;
  config.level = jan::Level::warn;
  config.metrics_file = metrics;
  jan::Janitor janitor(config);
  while (g_janitor_stop == 0) {
    janitor.sweep_all();
    timespec ts{0, static_cast<long>(interval.count()) * 1'000'000L};
    (void)::nanosleep(&ts, nullptr);  // EINTR at a SIGTERM
  }
  return 0;
}
#endif

// ---------------------------------------------------------------------------
// The parent: processes, chaos, drain, verification
// ---------------------------------------------------------------------------

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_signal(int) { g_interrupted = 1; }

enum class Role { producer, worker, janitor };
const char* role_name(Role r) {
  switch (r) {
    case Role::producer:
      return "producer";
    case Role::worker:
      return "worker";
    case Role::janitor:
      return "janitor";
  }
  return "?";
}

struct Child {
  Role role = Role::producer;
  int index = 0;
  std::uint32_t incarnation = 0;
  pid_t pid = -1;
  bool stopped = false;
  Clock::time_point resume_at{};
  // A jobring::Worker process sent SIGTERM: it must exit 0 by term_deadline.
  bool terminating = false;
  Clock::time_point term_deadline{};
  Clock::time_point second_term = Clock::time_point::max();  // a second SIGTERM (stop_now) then
};

struct Counters {
  long kills[3] = {0, 0, 0};  // by Role
  long aimed_kills = 0;
  long stops[3] = {0, 0, 0};
  long long_stops = 0;  // stops longer than the longest lease a worker asks for (400 ms)
  long janitor_terms = 0;
  long janitor_restarts = 0;
  long sigterms = 0;         // graceful stops asked of jobring::Worker processes
  long second_sigterms = 0;  // ... with a second SIGTERM (the jobs in hand given back at once)
  long graceful_stops = 0;   // ... that exited 0
  long killed_stopping = 0;  // ... SIGKILLed while they stopped
  long dead_seen = 0;        // dead-lettered jobs peek listed (each dead-lettering once)
  long requeued_one = 0;     // by requeue(id)
  long requeued_all = 0;     // by requeue_dead()
  long dead_looks = 0;
  // Reboots (--reboot-every).
  long reboots = 0;
  long reboot_kills[3] = {0, 0, 0};     // by Role, of the kills counted above
  long recoveries_killed = 0;           // first openers killed half-way through the recovery
  long children_opened_first = 0;       // reboots where the new children raced the parent to open
  long reboots_during_recovery = 0;     // ... of the killed ones, followed by another reboot
  long clock_went_back = 0;             // reboots after which the wall clock was behind
  std::uint64_t leases_at_reboots = 0;  // leased slots found with every process of the old boot gone
  std::uint64_t writes_at_reboots = 0;  // half-written slots found then
  std::uint64_t jobs_at_reboots = 0;    // jobs in the queue then (any state)
  std::uint64_t leases_recovered = 0;   // Stats::recovered_leases grew by
  std::uint64_t writes_recovered = 0;   // Stats::recovered_boot_writes grew by
};

class Soak {
 public:
  Soak(Config cfg, std::string queue, std::string dir, Control& ctl)
      : cfg_(std::move(cfg)), queue_(std::move(queue)), dir_(std::move(dir)), ctl_(ctl), rng_(cfg_.seed) {}
  ~Soak() { stop_all_now(); }  // no child outlives the soak, whatever happened
  Soak(const Soak&) = delete;
  Soak& operator=(const Soak&) = delete;

  int run();

 private:
  std::string log_path(Role role, int index) const {
    return dir_ + "/" + role_name(role) + "." + std::to_string(index) + ".log";
  }
  void fail(const std::string& what) {
    if (++violations_ <= 40) {
      std::printf("VIOLATION: %s\n", what.c_str());
      std::fflush(stdout);
    }
  }
  Child spawn(Role role, int index);
  void kill_child(Child& c, bool aimed);
  int wait_bounded(Child& c);
  void term_janitor(Child& c);
  void reap_unexpected();
  void reap_terminating();
  void term_worker(Child& c);
  void tend_dead();
  void note_dead(const JobInfo& d, std::unordered_map<JobId, Tag>& into);
  bool collect_dead_at_end();
  void chaos_tick();
  void resume_due(bool all);
  void stop_all_now();
  bool finish();
  void verify(const Stats& s, const Stats& removed);
  void progress(Clock::time_point start);
  bool reboot(Clock::time_point start);
  void kill_recoverer_half_way();
  [[nodiscard]] bool janitor_in_process() const { return cfg_.reboot_every.count() > 0; }

  Config cfg_;
  std::string queue_;
  std::string dir_;
  Control& ctl_;
  std::mt19937 rng_;
  std::vector<Child> children_;
  std::uint32_t next_incarnation_ = 1;
  std::unordered_set<std::uint32_t> killed_;  // incarnations ended by SIGKILL (or by themselves)
  Counters n_;
  long violations_ = 0;
  std::optional<Queue> q_;
  // Dead-lettered jobs: every job id peek listed as dead (-> its payload's
  // tag, 0 if torn), the ones left dead at the last look, and those still
  // dead at the end (listed, then removed).
  std::unordered_map<JobId, Tag> dead_tags_;
  std::unordered_set<JobId> dead_left_;
  std::unordered_map<JobId, Tag> dead_at_end_;
  long removed_dead_ = 0;
  // Reboots: for each job that was in the queue at a reboot, the first
  // incarnation spawned after the last such reboot. Every incarnation below
  // it had ended by then, with the job still in the queue: none of them
  // acked it (an acked job leaves the queue, and ids are never reused).
  std::unordered_map<JobId, std::uint32_t> in_queue_at_reboot_;
  std::unordered_set<JobId> held_at_reboot_;  // leased at a reboot
};

Child Soak::spawn(Role role, int index) {
  Child c;
  c.role = role;
  c.index = index;
  c.incarnation = next_incarnation_++;
  const std::string log = log_path(role, index);
  std::vector<std::string> args;
  const milliseconds janitor_interval(role == Role::janitor ? 10 + rng_() % 91 : 0);
  const std::string metrics = dir_ + "/metrics." + std::to_string(index) + ".prom";
  if (role == Role::janitor) {
    const std::string conf = dir_ + "/janitor.conf";
    args = {cfg_.janitor,
            "--config",
            conf,
            "--queue",
            queue_,
            "--interval",
            std::to_string(janitor_interval.count()) + "ms",
            "--log-level",
            "warn",
            "--metrics-file",
            metrics};
  }
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  // Signals stay blocked across the fork until the child has reset our
  // handlers: else a SIGTERM for a new janitor could be caught by the
  // parent's handler (copied into the child) before the exec, and lost.
  sigset_t all, old;
  ::sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &old);
  const pid_t pid = ::fork();
  if (pid != 0) ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    std::fprintf(stderr, "soak: fork: %s\n", std::strerror(errno));
    return c;
  }
  if (pid == 0) {
    // Own process group, so that a Ctrl-C reaches the parent only (it cleans
    // up); killed with the parent, so that nothing outlives a killed soak.
    ::setpgid(0, 0);
    die_with_parent(parent);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) std::signal(sig, SIG_DFL);
    // A jobring::Worker process stops gracefully on SIGTERM: its handlers
    // are in place before a SIGTERM can arrive.
    if (role == Role::worker && runs_on_worker(index)) Worker::install_signal_handlers();
    if (role == Role::janitor && janitor_in_process()) {
      struct sigaction sa {};
      sa.sa_handler = on_janitor_term;
      ::sigemptyset(&sa.sa_mask);
      ::sigaction(SIGTERM, &sa, nullptr);
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    if (role == Role::janitor && janitor_in_process()) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(kExitLog);
      int rc = kExitException;
#ifdef JOBRING_SOAK_JANITOR_CODE
      try {
        rc = janitor_main(queue_, janitor_interval, metrics);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "soak janitor %d: exception: %s\n", index, e.what());
      }
#endif
      std::fflush(nullptr);
      ::_exit(rc);
    }
    if (role == Role::janitor) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(kExitLog);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "soak: exec %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    int rc = kExitException;
    try {
      const auto i = static_cast<std::uint32_t>(index);
      rc = role == Role::producer  ? producer_main(queue_, log, ctl_, i, c.incarnation)
           : runs_on_worker(index) ? worker_main(queue_, log, ctl_, i, c.incarnation)
                                   : loop_worker_main(queue_, log, ctl_, i, c.incarnation);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "soak %s %d: exception: %s\n", role_name(role), index, e.what());
    } catch (...) {
      std::fprintf(stderr, "soak %s %d: unknown exception\n", role_name(role), index);
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  c.pid = pid;
  return c;
}

std::string describe_status(int st) {
  if (st == -2) return "no exit within 30 s (killed)";
  if (st >= 128) return "killed by signal " + std::to_string(st - 128);
  return "exit status " + std::to_string(st);
}

// Waits up to 30 s (a bound for a loaded machine) for a child asked to stop;
// -2 if it had to be killed.
int Soak::wait_bounded(Child& c) {
  const auto until = Clock::now() + 30s;
  std::optional<int> st;
  while (!(st = try_wait_child(c.pid)) && Clock::now() < until) std::this_thread::sleep_for(2ms);
  if (!st) {
    kill_and_reap(c.pid);
    c.pid = -1;
    return -2;
  }
  c.pid = -1;
  return *st;
}

void Soak::kill_child(Child& c, bool aimed) {
  if (aimed && c.role != Role::janitor && !c.stopped) {
    // Wait (up to 5 ms) until the victim is inside the library.
    std::atomic<int>& busy =
        c.role == Role::producer ? ctl_.busy_producer[c.index] : ctl_.busy_worker[c.index];
    const auto give_up = Clock::now() + 5ms;
    while (busy.load(std::memory_order_relaxed) == 0 && Clock::now() < give_up) std::this_thread::yield();
    if (busy.load(std::memory_order_relaxed) != 0) ++n_.aimed_kills;
  }
  ::kill(c.pid, SIGKILL);
  const int st = wait_child(c.pid);
  if (st == 0 && c.terminating) {
    ++n_.graceful_stops;  // it had finished its graceful stop just before the kill
  } else {
    if (st != 128 + SIGKILL) {
      fail(std::string(role_name(c.role)) + " " + std::to_string(c.index) +
           " ended by itself before the kill (" + describe_status(st) + "); see " +
           log_path(c.role, c.index));
    }
    killed_.insert(c.incarnation);
    ++n_.kills[static_cast<int>(c.role)];
    if (c.terminating) ++n_.killed_stopping;
  }
  if (c.role == Role::producer) ctl_.busy_producer[c.index].store(0);
  if (c.role == Role::worker) ctl_.busy_worker[c.index].store(0);
  if (c.role == Role::janitor) ++n_.janitor_restarts;
  c = spawn(c.role, c.index);
}

void Soak::term_janitor(Child& c) {
  if (c.stopped) {
    ::kill(c.pid, SIGCONT);
    c.stopped = false;
  }
  ::kill(c.pid, SIGTERM);
  // The janitor acts on SIGTERM at once, even in the middle of a sweep; 20 s
  // is a bound for a loaded machine, not an expectation.
  const auto until = Clock::now() + 20s;
  std::optional<int> st;
  while (!(st = try_wait_child(c.pid)) && Clock::now() < until) std::this_thread::sleep_for(2ms);
  if (!st) {
    fail("janitor " + std::to_string(c.index) + " did not stop within 20 s of SIGTERM");
    kill_and_reap(c.pid);
  } else if (*st != 0 && *st != 128 + SIGTERM) {
    // (Ended by SIGTERM itself: it came before the janitor installed its handlers.)
    fail("janitor " + std::to_string(c.index) + " did not exit 0 on SIGTERM (" + describe_status(*st) + ")");
  }
  ++n_.janitor_terms;
}

// A child that ended without being killed crashed or reported a problem.
void Soak::reap_unexpected() {
  for (Child& c : children_) {
    if (c.terminating) continue;  // reap_terminating()
    const std::optional<int> ended = try_wait_child(c.pid);
    if (!ended || *ended < 0) continue;
    const int st = *ended;
    fail(std::string(role_name(c.role)) + " " + std::to_string(c.index) + " ended by itself (" +
         describe_status(st) + ")");
    killed_.insert(c.incarnation);  // its last claim or push is a maybe, as for a kill
    c = spawn(c.role, c.index);
  }
}

// A graceful stop of a jobring::Worker process: it stops claiming, gives
// its jobs in hand their grace period (then gives them back), logs every
// outcome and exits 0. Sometimes a second SIGTERM follows (the Worker then
// gives its jobs back at once). reap_terminating() checks and restarts it.
void Soak::term_worker(Child& c) {
  const auto now = Clock::now();
  // 30 s: a bound for a loaded machine (grace <= 1 s, handlers <= 1.6 s),
  // plus the time it is still to spend stopped.
  c.term_deadline = now + 30s + (c.stopped ? c.resume_at - now : Clock::duration::zero());
  // (Soon, or the process has usually exited already.)
  c.second_term = rng_() % 3 == 0 ? now + milliseconds(rng_() % 100) : Clock::time_point::max();
  c.terminating = true;
  ::kill(c.pid, SIGTERM);  // (if stopped, it acts on it at its SIGCONT)
  ++n_.sigterms;
}

void Soak::reap_terminating() {
  const auto now = Clock::now();
  for (Child& c : children_) {
    if (!c.terminating) continue;
    const std::optional<int> ended = try_wait_child(c.pid);
    if (ended && *ended >= 0) {
      const int st = *ended;
      if (st == 0) {
        ++n_.graceful_stops;
      } else {
        fail("worker " + std::to_string(c.index) + " did not exit 0 after SIGTERM (" + describe_status(st) +
             ")");
        killed_.insert(c.incarnation);
      }
      c = spawn(c.role, c.index);
    } else if (now >= c.term_deadline) {
      fail("worker " + std::to_string(c.index) + " (jobring::Worker) did not exit within 30 s of SIGTERM");
      ::kill(c.pid, SIGKILL);
      (void)wait_child(c.pid);
      killed_.insert(c.incarnation);
      c = spawn(c.role, c.index);
    } else if (now >= c.second_term) {
      ::kill(c.pid, SIGTERM);
      c.second_term = Clock::time_point::max();
      ++n_.second_sigterms;
    }
  }
}

// Checks a job peek listed as dead, and remembers its payload's tag.
void Soak::note_dead(const JobInfo& d, std::unordered_map<JobId, Tag>& into) {
  const auto h =
      check_payload(std::string_view(reinterpret_cast<const char*>(d.payload.data()), d.payload.size()));
  if (!h) fail("dead job " + std::to_string(d.id) + " has a torn or foreign payload");
  if (d.state != JobState::dead) fail("peek(dead) listed job " + std::to_string(d.id) + " in another state");
  const Tag tag = h ? h->tag : 0;
  const auto [it, added] = into.emplace(d.id, tag);
  if (!added && it->second != tag)
    fail("dead job " + std::to_string(d.id) + " carried two different payloads");
}

// Every 0.3 .. 3 s of the chaos: the dead-lettered jobs are listed, checked
// and requeued (one by one, or all at once), or left dead for now. Only this
// process moves jobs out of the dead state (the janitors never do), so each
// one listed must still be there to requeue.
void Soak::tend_dead() {
  ++n_.dead_looks;
  const std::vector<JobInfo> dead = q_->peek(JobState::dead, kCapacity);
  std::unordered_set<JobId> now;
  for (const JobInfo& d : dead) {
    note_dead(d, dead_tags_);
    now.insert(d.id);
    if (!dead_left_.contains(d.id)) ++n_.dead_seen;
  }
  const auto how = rng_() % 10;
  if (how < 6) {
    for (const JobId id : now) {
      if (q_->requeue(id)) {
        ++n_.requeued_one;
      } else {
        fail("dead job " + std::to_string(id) + ", listed by peek, could not be requeued");
      }
    }
    dead_left_.clear();
  } else if (how < 8) {
    const std::size_t n = q_->requeue_dead();  // and any dead-lettered since the peek
    n_.requeued_all += static_cast<long>(n);
    if (n < now.size())
      fail("requeue_dead() requeued " + std::to_string(n) + " jobs, but peek had listed " +
           std::to_string(now.size()) + " dead ones");
    dead_left_.clear();
  } else {
    dead_left_ = std::move(now);
  }
}

// After the drain, with every process stopped: lists the jobs still dead
// (they count as accounted for), then removes them. False on a failure.
bool Soak::collect_dead_at_end() {
  bool ok = true;
  for (const JobInfo& d : q_->peek(JobState::dead, kCapacity)) {
    note_dead(d, dead_at_end_);
    note_dead(d, dead_tags_);
    if (q_->remove_dead(d.id)) {
      ++removed_dead_;
    } else {
      fail("dead job " + std::to_string(d.id) + ", listed by peek, could not be removed");
      ok = false;
    }
  }
  return ok;
}

void Soak::resume_due(bool all) {
  const auto now = Clock::now();
  for (Child& c : children_) {
    if (c.stopped && (all || c.resume_at <= now)) {
      ::kill(c.pid, SIGCONT);
      c.stopped = false;
    }
  }
}

void Soak::chaos_tick() {
  const auto dice = rng_() % 1000;
  std::vector<std::size_t> pw, jan;
  for (std::size_t i = 0; i < children_.size(); ++i)
    (children_[i].role == Role::janitor ? jan : pw).push_back(i);
  if (dice < 400) {
    Child& c = children_[pw[rng_() % pw.size()]];
    kill_child(c, rng_() % 2 == 0);
  } else if (dice < 430 && !jan.empty()) {
    Child& c = children_[jan[rng_() % jan.size()]];
    kill_child(c, false);
  } else if (dice < 440 && !jan.empty()) {
    Child& c = children_[jan[rng_() % jan.size()]];
    term_janitor(c);
    ++n_.janitor_restarts;
    c = spawn(Role::janitor, c.index);
  } else if (dice < 600) {
    Child& c = children_[rng_() % children_.size()];
    if (c.stopped) return;
    const auto d = rng_() % 100;
    const auto ms = d < 70 ? 5 + rng_() % 95 : d < 95 ? 100 + rng_() % 900 : 1000 + rng_() % 2000;
    if (ms > 400) ++n_.long_stops;
    ::kill(c.pid, SIGSTOP);
    c.stopped = true;
    c.resume_at = Clock::now() + milliseconds(ms);
    if (c.terminating) c.term_deadline += milliseconds(ms);
    ++n_.stops[static_cast<int>(c.role)];
  } else if (dice < 650) {
    // A graceful stop of a jobring::Worker process.
    std::vector<std::size_t> ws;
    for (std::size_t i = 0; i < children_.size(); ++i) {
      const Child& c = children_[i];
      if (c.role == Role::worker && runs_on_worker(c.index) && !c.terminating) ws.push_back(i);
    }
    if (!ws.empty()) term_worker(children_[ws[rng_() % ws.size()]]);
  }
}

void Soak::stop_all_now() {
  resume_due(true);
  for (Child& c : children_) {
    if (c.pid > 0) {
      ::kill(c.pid, SIGKILL);
      (void)wait_child(c.pid);
      c.pid = -1;
    }
  }
}

void Soak::progress(Clock::time_point start) {
  const Stats s = q_->stats();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
  std::printf(
      "[soak %4llds] acked=%llu claimed=%llu kills=%ld/%ld/%ld stops=%ld sigterms=%ld  ready=%llu "
      "leased=%llu expired=%llu writing=%llu dead=%llu free=%llu dead_lettered=%llu requeued=%llu\n",
      static_cast<long long>(secs), static_cast<unsigned long long>(s.acked),
      static_cast<unsigned long long>(s.claimed), n_.kills[0], n_.kills[1], n_.kills[2],
      n_.stops[0] + n_.stops[1] + n_.stops[2], n_.sigterms, static_cast<unsigned long long>(s.ready),
      static_cast<unsigned long long>(s.leased), static_cast<unsigned long long>(s.expired),
      static_cast<unsigned long long>(s.writing), static_cast<unsigned long long>(s.dead),
      static_cast<unsigned long long>(s.free), static_cast<unsigned long long>(s.dead_lettered),
      static_cast<unsigned long long>(s.requeued));
  std::fflush(stdout);
}

// A first opener of the new boot killed half-way through its recovery (after
// a random number of slots): the boot id in the segment stays the old one,
// and the next opener runs the recovery again.
void Soak::kill_recoverer_half_way() {
  const int after_slots = 1 + static_cast<int>(rng_() % (kCapacity - 1));
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    fail(std::string("fork of a recoverer: ") + std::strerror(errno));
    return;
  }
  if (pid == 0) {
    die_with_parent(parent);
    jobring::detail::set_recovery_kill_point_for_testing(after_slots, SIGKILL);
    std::error_code ec;
    (void)Queue::open(queue_, ec);
    ::_exit(ec ? 1 : 0);  // not reached: the recovery raises SIGKILL at slot after_slots
  }
  const int st = wait_child(pid);
  if (st != 128 + SIGKILL)
    fail("a recoverer set to die at slot " + std::to_string(after_slots) + " of the recovery ended with " +
         describe_status(st) + " (did no recovery run?)");
  ++n_.recoveries_killed;
}

// A simulated reboot (--reboot-every; the header comment says what it does
// and checks). False if the queue cannot be opened again (then the run ends).
bool Soak::reboot(Clock::time_point start) {
  // Every process of the old boot dies at once: all SIGKILLed before any is
  // reaped. Half the time the kill is aimed at a moment when a push is
  // half-written: every process is frozen (SIGSTOP, and waited for until it
  // is stopped), and killed if the queue has a WRITING slot, else let go
  // (SIGCONT, but not those the chaos stopped) and tried again, 50 times at
  // most, so that reboots find half-written slots to free too.
  if (rng_() % 2 == 0) {
    for (int round = 0; round < 50; ++round) {
      // A producer inside push first (waited for up to 5 ms), then the rest.
      const auto give_up = Clock::now() + 5ms;
      const Child* busy = nullptr;
      while (busy == nullptr && Clock::now() < give_up) {
        for (const Child& c : children_)
          if (c.role == Role::producer && c.pid > 0 && !c.stopped &&
              ctl_.busy_producer[c.index].load(std::memory_order_relaxed) != 0)
            busy = &c;
      }
      if (busy != nullptr) ::kill(busy->pid, SIGSTOP);
      for (const Child& c : children_)
        if (c.pid > 0) ::kill(c.pid, SIGSTOP);
      for (const Child& c : children_) {
        siginfo_t info{};
        // WNOWAIT: an exit stays to be reaped below.
        while (c.pid > 0 &&
               ::waitid(P_PID, static_cast<id_t>(c.pid), &info, WSTOPPED | WEXITED | WNOWAIT) != 0 &&
               errno == EINTR) {
        }
      }
      if (q_->stats().writing > 0) break;
      for (const Child& c : children_)
        if (c.pid > 0 && !c.stopped) ::kill(c.pid, SIGCONT);
      sleep_us(rng_() % 3000);
    }
  }
  for (const Child& c : children_)
    if (c.pid > 0) ::kill(c.pid, SIGKILL);
  for (Child& c : children_) {
    if (c.pid <= 0) continue;
    const int st = wait_child(c.pid);
    if (st == 0 && c.terminating) {
      ++n_.graceful_stops;  // it had finished its graceful stop just before the kill
    } else {
      if (st != 128 + SIGKILL)
        fail(std::string(role_name(c.role)) + " " + std::to_string(c.index) +
             " ended by itself before the reboot (" + describe_status(st) + "); see " +
             log_path(c.role, c.index));
      killed_.insert(c.incarnation);
      ++n_.kills[static_cast<int>(c.role)];
      ++n_.reboot_kills[static_cast<int>(c.role)];
      if (c.terminating) ++n_.killed_stopping;
    }
    c.pid = -1;
    c.stopped = false;
    c.terminating = false;
    c.second_term = Clock::time_point::max();
  }
  for (int i = 0; i < kMaxProcesses; ++i) {
    ctl_.busy_producer[i].store(0);
    ctl_.busy_worker[i].store(0);
  }
  // Nobody of the old boot is left: what the queue holds now is what the
  // recovery will find.
  const Stats before = q_->stats();
  std::size_t listed = 0;
  for (const JobState st : {JobState::ready, JobState::delayed, JobState::leased, JobState::dead}) {
    for (const JobInfo& j : q_->peek(st, kCapacity)) {
      in_queue_at_reboot_[j.id] = next_incarnation_;
      if (st == JobState::leased) held_at_reboot_.insert(j.id);
      ++listed;
    }
  }
  const std::uint64_t held = before.leased + before.expired;
  const std::uint64_t writing = before.writing;
  if (listed != before.ready + before.delayed + held + before.dead)
    fail("reboot " + std::to_string(n_.reboots + 1) + ": peek listed " + std::to_string(listed) +
         " jobs, stats counted " + describe(before));
  n_.leases_at_reboots += held;
  n_.writes_at_reboots += writing;
  n_.jobs_at_reboots += listed;
  q_.reset();  // the parent's own handle: of the old boot too

  // The new boot: another boot id, CLOCK_MONOTONIC back to a few seconds,
  // the wall clock on by the downtime. Kept across fork: every child spawned
  // from here on is of the new boot.
  // One time in ten the wall clock went back instead, by up to an hour (a
  // host with no real-time clock until NTP): the segment's clock must stand
  // still, not go back.
  ++n_.reboots;
  auto new_boot = [&](const std::string& tag) {
    jobring::detail::set_boot_id_for_testing("soak-" + std::to_string(::getpid()) + "-boot-" +
                                             std::to_string(n_.reboots) + tag);
    const auto uptime = static_cast<std::int64_t>(2000 + rng_() % 6001);
    const auto down = rng_() % 10 == 0 ? -static_cast<std::int64_t>(rng_() % 3'600'001)
                                       : static_cast<std::int64_t>(rng_() % 120'001);
    jobring::detail::shift_clocks_for_testing(uptime - static_cast<std::int64_t>(jobring::detail::now_ms()),
                                              down);
    if (down < 0) ++n_.clock_went_back;
    return down;
  };
  std::int64_t downtime = new_boot("");
  // Sometimes the first opener is killed half-way through the recovery, and
  // sometimes the host then reboots again before anyone finishes it.
  const bool killed_recovery = rng_() % 4 == 0;
  bool rebooted_again = false;
  if (killed_recovery) {
    kill_recoverer_half_way();
    if ((rebooted_again = rng_() % 2 == 0)) {
      downtime = new_boot("-again");
      ++n_.reboots_during_recovery;
    }
  }
  // Half the time the new children race the parent to open (and recover).
  const bool children_first = rng_() % 2 == 0;
  auto restart = [&] {
    for (Child& c : children_) c = spawn(c.role, c.index);
  };
  if (children_first) {
    ++n_.children_opened_first;
    restart();
  }
  std::error_code ec;
  q_ = Queue::open(queue_, ec);
  if (!q_) {
    fail("reboot " + std::to_string(n_.reboots) + ": cannot open the queue again: " + ec.message());
    return false;
  }
  if (!children_first) restart();
  const Stats after = q_->stats();
  const std::uint64_t leases = after.recovered_leases - before.recovered_leases;
  const std::uint64_t writes = after.recovered_boot_writes - before.recovered_boot_writes;
  n_.leases_recovered += leases;
  n_.writes_recovered += writes;
  const std::string which = "reboot " + std::to_string(n_.reboots) + ": ";
  if (after.recoveries != before.recoveries + 1)
    fail(which + "Stats::recoveries went from " + std::to_string(before.recoveries) + " to " +
         std::to_string(after.recoveries) + " (exactly one recovery per boot)");
  if (after.recoveries != static_cast<std::uint64_t>(n_.reboots))
    fail(which + "Stats::recoveries is " + std::to_string(after.recoveries) + " after " +
         std::to_string(n_.reboots) + " reboots");
  if (leases != held)
    fail(which + std::to_string(held) + " leases were held at the reboot, the recovery returned " +
         std::to_string(leases));
  if (writes != writing)
    fail(which + std::to_string(writing) + " slots were half-written at the reboot, the recovery freed " +
         std::to_string(writes));
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
  std::printf(
      "[soak %4llds] reboot %ld: down %.1f s; %zu jobs in the queue, %llu leased, %llu half-written; "
      "recovered by %s%s: %llu leases returned, %llu slots freed\n",
      static_cast<long long>(secs), n_.reboots, static_cast<double>(downtime) / 1000.0, listed,
      static_cast<unsigned long long>(held), static_cast<unsigned long long>(writing),
      children_first ? "the first of the new processes to open" : "the parent",
      killed_recovery ? (rebooted_again ? " (after a first recoverer was killed half-way, and another reboot)"
                                        : " (after a first recoverer was killed half-way)")
                      : "",
      static_cast<unsigned long long>(leases), static_cast<unsigned long long>(writes));
  std::fflush(stdout);
  return true;
}

// Stops producers, lets the workers drain, stops everything. False if interrupted.
bool Soak::finish() {
  resume_due(true);
  ctl_.stop_producers.store(1, std::memory_order_release);
  for (Child& c : children_) {
    if (c.role != Role::producer) continue;
    const int st = wait_bounded(c);  // a producer's pace and push waits are bounded (< 1 s)
    if (st != 0) fail("producer " + std::to_string(c.index) + " ended with " + describe_status(st));
    c.pid = -1;
  }
  // Drain, until every slot is free or dead (nobody requeues now): delayed
  // jobs (< 100 ms), backoffs (< 80 ms), leases (< 400 ms), handlers (< 2 s)
  // and releases are over within seconds; 120 s is a bound for a loaded
  // machine. A jobring::Worker process still stopping from a chaos SIGTERM
  // is checked and restarted meanwhile.
  const auto until = Clock::now() + 120s;
  bool drained = false;
  while (!drained && Clock::now() < until && g_interrupted == 0) {
    reap_terminating();
    const Stats s = q_->stats();
    drained = s.free + s.dead == kCapacity && s.writing + s.ready + s.delayed + s.leased + s.expired == 0;
    if (!drained) std::this_thread::sleep_for(20ms);
  }
  if (g_interrupted != 0) return false;
  if (!drained) fail("the queue did not drain within 120 s: " + describe(q_->stats()));
  // Own-loop workers stop at the flag; jobring::Worker processes at a
  // SIGTERM (a graceful stop, with nothing in hand now).
  ctl_.stop_workers.store(1, std::memory_order_release);
  for (Child& c : children_) {
    if (c.role == Role::worker && runs_on_worker(c.index) && !c.terminating) ::kill(c.pid, SIGTERM);
  }
  for (Child& c : children_) {
    if (c.role != Role::worker) continue;
    const int st = wait_bounded(c);  // a worker finishes its job in hand: < 2 s
    if (st != 0) fail("worker " + std::to_string(c.index) + " ended with " + describe_status(st));
    c.pid = -1;
  }
  for (Child& c : children_) {
    if (c.role != Role::janitor) continue;
    term_janitor(c);
    c.pid = -1;
  }
  return true;
}

int Soak::run() {
  {
    std::ofstream conf(dir_ + "/janitor.conf");  // empty: everything on the command line
  }
  jobring::Options o;
  o.capacity = kCapacity;
  o.max_payload = kMaxPayload;
  o.default_lease = kDefaultLease;
  o.dedup_window = 2s;  // short, so that remembered keys are forgotten by time as well as evicted for room
  o.max_attempts = cfg_.max_attempts;  // kills, expiries and failing handlers use attempts up
  o.dir = cfg_.dir;                    // empty: /dev/shm
  o.sync = cfg_.sync;
  std::error_code ec;
  q_ = Queue::create(queue_, o, ec);
  if (!q_) {
    std::fprintf(stderr, "soak: cannot create queue '%s': %s\n", queue_.c_str(), ec.message().c_str());
    return 2;
  }
  int on_worker = 0;
  for (int i = 0; i < cfg_.workers; ++i) on_worker += runs_on_worker(i) ? 1 : 0;
  std::printf(
      "soak: queue %s, %d producers, %d workers (%d on jobring::Worker), %d janitors, max_attempts %u, %lld "
      "s, "
      "seed %u, logs in %s\n",
      queue_.c_str(), cfg_.producers, cfg_.workers, on_worker, cfg_.janitors, cfg_.max_attempts,
      static_cast<long long>(cfg_.duration.count()), cfg_.seed, dir_.c_str());
  if (!cfg_.dir.empty()) {
    static constexpr const char* kSync[] = {"none", "interval", "always"};
    std::printf("soak: file-backed in %s, sync %s; %s\n", cfg_.dir.c_str(),
                kSync[static_cast<int>(cfg_.sync)],
                janitor_in_process() ? ("a reboot every " + std::to_string(cfg_.reboot_every.count()) +
                                        " s (janitors: the janitor's code in forked children)")
                                           .c_str()
                                     : "no reboots");
  }
  std::fflush(stdout);
  for (int i = 0; i < cfg_.producers; ++i) children_.push_back(spawn(Role::producer, i));
  for (int i = 0; i < cfg_.workers; ++i) children_.push_back(spawn(Role::worker, i));
  for (int i = 0; i < cfg_.janitors; ++i) children_.push_back(spawn(Role::janitor, i));
  for (const Child& c : children_) {
    if (c.pid <= 0) {
      stop_all_now();
      return 2;
    }
  }

  const auto start = Clock::now();
  const auto end = start + cfg_.duration;
  auto next_progress = start + std::chrono::seconds(30);
  auto next_pace = start;
  auto next_dead_look = start + milliseconds(300 + rng_() % 2700);
  // Reboots: every reboot_every, give or take a fifth.
  auto next_reboot_after = [&] {
    const auto every = std::chrono::duration_cast<milliseconds>(cfg_.reboot_every);
    return Clock::now() + every * 4 / 5 + milliseconds(rng_() % (every.count() * 2 / 5 + 1));
  };
  auto next_reboot = janitor_in_process() ? next_reboot_after() : Clock::time_point::max();
  bool reopened = true;
  while (Clock::now() < end && g_interrupted == 0) {
    if (Clock::now() >= next_reboot) {
      if (!(reopened = reboot(start))) break;
      next_reboot = next_reboot_after();
    }
    auto sleep = std::chrono::microseconds(3000 + rng_() % 37000);  // ~50 ticks a second
    for (const Child& c : children_) {
      if (c.stopped) {
        sleep = std::min(sleep, std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::max(Clock::duration::zero(), c.resume_at - Clock::now())));
      }
    }
    std::this_thread::sleep_for(sleep);
    resume_due(false);
    reap_unexpected();
    reap_terminating();
    chaos_tick();
    if (Clock::now() >= next_dead_look) {
      tend_dead();
      next_dead_look = Clock::now() + milliseconds(300 + rng_() % 2700);
    }
    if (Clock::now() >= next_pace) {
      // Fast: the queue fills up; slow: the workers wait for jobs.
      static constexpr unsigned kPaces[] = {300, 3000, 30000};
      ctl_.pace_us.store(kPaces[rng_() % 3], std::memory_order_relaxed);
      next_pace = Clock::now() + std::chrono::milliseconds(3000 + rng_() % 12000);
    }
    if (Clock::now() >= next_progress) {
      progress(start);
      next_progress += std::chrono::seconds(30);
    }
  }
  if (!reopened) {
    std::printf("soak: the queue could not be opened after a reboot; stopping every child\n");
    stop_all_now();
    return 1;
  }
  if (g_interrupted != 0 || !finish()) {
    std::printf("soak: interrupted; stopping every child and removing the queue\n");
    stop_all_now();
    Queue::remove(queue_);
    return 130;
  }
  const auto minutes = std::chrono::duration<double>(Clock::now() - start).count() / 60.0;
  const Stats s = q_->stats();        // every slot free or dead
  (void)collect_dead_at_end();        // (a failure is a violation, reported)
  const Stats removed = q_->stats();  // every slot free
  std::printf("soak: ran %.1f minutes (chaos %lld s, then the drain)\n", minutes,
              static_cast<long long>(cfg_.duration.count()));
  verify(s, removed);
  Queue::remove(queue_);
  return violations_ == 0 ? 0 : 1;
}

// `s`: after the drain (every slot free or dead); `removed`: once the dead
// jobs were listed (dead_at_end_) and removed.
void Soak::verify(const Stats& s, const Stats& removed) {
  // --- The ring after the drain: no stuck or leaked slot; the dead jobs are
  // all listed by peek, and removable.
  if (s.free + s.dead != kCapacity || s.writing != 0 || s.ready != 0 || s.delayed != 0 || s.leased != 0 ||
      s.expired != 0 || s.corrupt != 0)
    fail("slots stuck after the drain: " + describe(s));
  if (s.dead != dead_at_end_.size())
    fail("stats counted " + std::to_string(s.dead) + " dead jobs after the drain, peek listed " +
         std::to_string(dead_at_end_.size()));
  if (removed.free != kCapacity || removed.dead != 0)
    fail("slots not free once the dead jobs were removed: " + describe(removed));
  if (cfg_.max_attempts == 0 && s.dead_lettered != 0)
    fail("jobs dead-lettered, but max_attempts is unlimited");
  if (removed.purged != static_cast<std::uint64_t>(removed_dead_))
    fail("stats.purged=" + std::to_string(removed.purged) + ", but only the " +
         std::to_string(removed_dead_) + " remove_dead calls of the end removed jobs");
  const long requeued = n_.requeued_one + n_.requeued_all;
  if (removed.requeued != static_cast<std::uint64_t>(requeued))
    fail("stats.requeued=" + std::to_string(removed.requeued) + " disagrees with the " +
         std::to_string(requeued) + " requeues made");
  if (removed.keys_live != 0)
    fail("keys of live jobs left after the drain: " + std::to_string(removed.keys_live));
  {
    Job j;
    if (q_->try_claim(j) == ClaimStatus::ok) fail("a job was claimable after the drain");
  }

  // --- Producer logs.
  struct Pushed {
    JobId id = 0;  // from DONE
    std::uint64_t key_id = 0;
    std::uint32_t incarnation = 0;
    std::uint8_t state = 0;  // 1 begun, 2 done, 3 not pushed
    bool duplicate = false;  // DONE with duplicate = true: `id` is the job pushed before with the key
  };
  std::unordered_map<Tag, Pushed> pushes;
  std::unordered_set<JobId> new_ids;  // ids of pushes that added a job
  long partial_logs = 0, maybe_pushes = 0, done_pushes = 0, dup_pushes = 0, not_pushed = 0, keyed = 0;
  for (int i = 0; i < cfg_.producers; ++i) {
    std::size_t partial = 0;
    for (const Rec& r : read_records<Rec>(log_path(Role::producer, i), &partial)) {
      Pushed& p = pushes[r.tag];
      if (r.kind == kBegin) {
        if (p.state != 0) fail("tag " + std::to_string(r.tag) + " begun twice");
        p.state = 1;
        p.incarnation = r.incarnation;
        p.key_id = r.aux;
        keyed += r.aux != 0 ? 1 : 0;
      } else if (r.kind == kDone || r.kind == kNotPushed) {
        if (p.state != 1) fail("a push outcome without its BEGIN, tag " + std::to_string(r.tag));
        p.state = r.kind == kDone ? 2 : 3;
        if (r.kind == kNotPushed) {
          ++not_pushed;
        } else if ((r.flags & kDuplicateFlag) != 0) {
          p.id = r.id;
          p.duplicate = true;
          ++dup_pushes;
          if (p.key_id == 0)
            fail("a push without a key returned duplicate = true (tag " + std::to_string(r.tag) + ")");
        } else {
          p.id = r.id;
          ++done_pushes;
          if (!new_ids.insert(r.id).second) fail("push returned job id " + std::to_string(r.id) + " twice");
        }
      } else {
        fail("producer log " + std::to_string(i) + ": unknown record kind " + std::to_string(r.kind));
      }
    }
    if (partial != 0) ++partial_logs;
  }
  for (const auto& [tag, p] : pushes) {
    if (p.state != 1) continue;
    ++maybe_pushes;
    if (!killed_.contains(p.incarnation))
      fail("a push with no outcome in a producer that was not killed (tag " + std::to_string(tag) + ")");
  }

  // --- Worker logs.
  struct Claimed {
    Tag tag = 0;
    std::uint32_t claims = 0;
    std::uint32_t acked = 0;  // successful acks logged
    bool maybe_acked = false;
    std::uint64_t last_claim_gen = 0;  // the latest generation of a claim of the job
    std::uint64_t ack_gen = 0;         // the generation of the token of its successful ack
  };
  std::unordered_map<JobId, Claimed> jobs;
  long claim_records = 0, acked_records = 0, lost_records = 0, released_records = 0, maybe_acks = 0, torn = 0,
       double_acks = 0, dead_records = 0, given_back_records = 0, past_max = 0;
  long not_acked_by_reboot = 0;  // claims cut short by a kill whose job was still in the queue at a reboot
  // Of the jobring::Worker processes: claims, and what their handlers did.
  struct {
    long claims = 0, acked = 0, failed = 0, threw = 0, long_jobs = 0, long_acked = 0, blocked = 0,
         saw_stop = 0, lost = 0;
  } w;
  // A payload's tag names the push that made job `id`.
  auto check_tag = [&](JobId id, Tag tag, const char* what) {
    const auto it = pushes.find(tag);
    if (it == pushes.end() || it->second.state == 0) {
      fail(std::string(what) + " job " + std::to_string(id) + " carries a payload no producer began to push");
    } else if (it->second.state == 2 && it->second.duplicate) {
      fail("tag " + std::to_string(tag) + ": push returned duplicate = true (job " +
           std::to_string(it->second.id) + "), but it added job " + std::to_string(id) + " too");
    } else if (it->second.state == 2 && it->second.id != id) {
      fail("tag " + std::to_string(tag) + " was pushed as job " + std::to_string(it->second.id) + " but " +
           what + " as job " + std::to_string(id));
    } else if (it->second.state == 3) {
      fail("tag " + std::to_string(tag) + ": push returned full, but the job was " + what);
    }
  };
  for (int i = 0; i < cfg_.workers; ++i) {
    std::size_t partial = 0;
    const auto recs = read_records<Rec>(log_path(Role::worker, i), &partial);
    if (partial != 0) ++partial_logs;
    // Claims of the current incarnation that have no outcome yet: how many
    // (a jobring::Worker with two handler threads can claim a job again
    // while its other thread still holds the expired lease).
    std::uint32_t current = 0;
    std::map<JobId, int> pending;
    auto close_incarnation = [&] {
      for (const auto& entry : pending) {
        const JobId id = entry.first;
        const auto seen = in_queue_at_reboot_.find(id);
        if (killed_.contains(current) && seen != in_queue_at_reboot_.end() && current < seen->second) {
          // Killed with the job in hand, and the job was still in the queue
          // at a later reboot: this claim did not end in an ack.
          ++not_acked_by_reboot;
        } else if (killed_.contains(current)) {
          jobs[id].maybe_acked = true;
          ++maybe_acks;
        } else {
          fail("worker " + std::to_string(i) + ": job " + std::to_string(id) +
               " claimed with no outcome by a worker that was not killed");
        }
      }
      pending.clear();
    };
    for (const Rec& r : recs) {
      if (r.incarnation != current) {
        close_incarnation();
        current = r.incarnation;
      }
      if (r.kind == kClaim) {
        ++claim_records;
        Claimed& c = jobs[r.id];
        ++c.claims;
        const std::uint64_t gen = Word{r.aux}.gen();
        if (c.claims == 1 || after(gen, c.last_claim_gen)) c.last_claim_gen = gen;
        if (r.attempt < 1) fail("job " + std::to_string(r.id) + " claimed with attempt 0");
        // Counted, not a violation: the attempt count is a plain load + store
        // after the claim's CAS (lib/ring/claim.cpp), so a claimer stopped there
        // can store it after a takeover, a dead-lettering and a requeue.
        if (cfg_.max_attempts != 0 && r.attempt > cfg_.max_attempts) ++past_max;
        if ((r.flags & kTornFlag) != 0) {
          if (++torn <= 10)
            fail("job " + std::to_string(r.id) + " was claimed with a torn or foreign payload or key");
        } else if (c.tag == 0) {
          c.tag = r.tag;
          check_tag(r.id, r.tag, "claimed");
        } else if (c.tag != r.tag) {
          fail("job " + std::to_string(r.id) + " carried two different payloads");
        }
        if (runs_on_worker(i)) ++w.claims;
        ++pending[r.id];
        continue;
      }
      const auto it = pending.find(r.id);
      if (it == pending.end()) {
        fail("worker " + std::to_string(i) + ": an outcome for job " + std::to_string(r.id) +
             " it did not claim");
        continue;
      }
      if (--it->second == 0) pending.erase(it);
      if ((r.flags & kWorkerFlag) != 0) {
        w.failed += (r.flags & kFailedFlag) != 0 ? 1 : 0;
        w.threw += (r.flags & kThrewFlag) != 0 ? 1 : 0;
        w.long_jobs += (r.flags & kLongFlag) != 0 ? 1 : 0;
        w.long_acked += (r.flags & kLongFlag) != 0 && r.kind == kAcked ? 1 : 0;
        w.blocked += (r.flags & kBlockedFlag) != 0 ? 1 : 0;
        w.saw_stop += (r.flags & kSawStopFlag) != 0 ? 1 : 0;
        w.acked += r.kind == kAcked ? 1 : 0;
        w.lost += r.kind == kLost ? 1 : 0;
      }
      if (r.kind == kAcked) {
        ++acked_records;
        jobs[r.id].ack_gen = Word{r.aux}.gen();
        if (++jobs[r.id].acked == 2 && ++double_acks <= 10)
          fail("DOUBLE ACK: job " + std::to_string(r.id) + " was acked successfully twice (fencing)");
      } else if (r.kind == kLost) {
        ++lost_records;
      } else if (r.kind == kReleased) {
        ++released_records;
      } else if (r.kind == kDead) {
        ++dead_records;
      } else if (r.kind == kGivenBack) {
        ++given_back_records;
      } else {
        fail("worker log " + std::to_string(i) + ": unknown record kind " + std::to_string(r.kind));
      }
    }
    close_incarnation();
  }
  if (partial_logs != 0) fail(std::to_string(partial_logs) + " logs end in a partial record");

  // --- Dead-lettered jobs: each payload names the push that made the job.
  for (const auto& [id, tag] : dead_tags_) {
    if (tag == 0) continue;  // torn: reported when seen
    check_tag(id, tag, "dead-lettered");
    const auto it = jobs.find(id);
    if (it != jobs.end() && it->second.tag != 0 && it->second.tag != tag)
      fail("job " + std::to_string(id) + " was claimed and dead-lettered with two different payloads");
  }

  // --- Nothing lost: every job whose push returned ok (a new job, or the
  // job a duplicate push named), and every job anyone claimed, was acked (a
  // logged ack, or an ack cut short by a kill) or is dead at the end; not
  // both: a job acked for sure cannot be dead.
  long lost = 0, done = 0, wrong_dup = 0, acked_and_dead = 0;
  auto was_acked = [&](JobId id) {
    const auto it = jobs.find(id);
    return it != jobs.end() && (it->second.acked > 0 || it->second.maybe_acked);
  };
  for (const auto& [id, tag] : dead_at_end_) {
    const auto it = jobs.find(id);
    if (it != jobs.end() && it->second.acked > 0 && ++acked_and_dead <= 10)
      fail("job " + std::to_string(id) + " was acked, and is dead at the end");
  }
  for (const auto& [tag, p] : pushes) {
    if (p.state != 2) continue;
    if (!was_acked(p.id) && !dead_at_end_.contains(p.id) && ++lost <= 10)
      fail("LOST: job " + std::to_string(p.id) + " (tag " + std::to_string(tag) +
           (p.duplicate ? ", duplicate" : "") + ") was pushed but never acked, and is not dead");
    // A duplicate push names the job pushed with the same key.
    if (p.duplicate) {
      const auto it = jobs.find(p.id);
      const auto named = it == jobs.end() ? pushes.end() : pushes.find(it->second.tag);
      if ((named == pushes.end() || named->second.key_id != p.key_id) && ++wrong_dup <= 10)
        fail("a push with key " + key_of(p.key_id) + " returned duplicate = true with job " +
             std::to_string(p.id) + ", which was not pushed with that key");
    }
  }
  long dead_claimed = 0;  // claimed, then dead at the end (its ack, if a maybe, did not happen)
  for (const auto& [id, c] : jobs) {
    if (dead_at_end_.contains(id)) {
      ++dead_claimed;
    } else if (c.acked > 0 || c.maybe_acked) {
      ++done;
    } else if (++lost <= 10) {
      fail("LOST: job " + std::to_string(id) + " was claimed but never acked, and is not dead");
    }
  }
  if (lost > 10) fail(std::to_string(lost) + " jobs lost in all");

  // --- Fencing (guarantees 1 and 4): a successful ack used the token of the
  // latest claim of its job. Every transition of a slot increments the
  // generation in its state word (lib/ring/layout.hpp), and a token is the word
  // of a grant or extend; an ack succeeds only if the word is still its
  // token. So a claim of the job with a later generation than the acked
  // token means that a lease was taken over and its old holder still acked.
  long fencing = 0;
  for (const auto& [id, c] : jobs) {
    if (c.acked > 0 && after(c.last_claim_gen, c.ack_gen) && ++fencing <= 10)
      fail("FENCING: job " + std::to_string(id) + " was acked with an old token (generation " +
           std::to_string(c.ack_gen) + ") after a later claim (generation " +
           std::to_string(c.last_claim_gen) + ")");
  }

  // --- Reboots: every job leased at a reboot came back and was redone
  // (acked by a claim after the reboot), or is dead at the end (its last
  // attempt was the one the reboot took, or later ones failed). The LOST
  // check above already holds them to it; here they are counted.
  long held_redone = 0, held_dead = 0;
  for (const JobId id : held_at_reboot_) {
    const auto it = jobs.find(id);
    if (dead_at_end_.contains(id)) {
      ++held_dead;
    } else if (it != jobs.end() && (it->second.acked > 0 || it->second.maybe_acked)) {
      ++held_redone;
    } else if (it == jobs.end() && ++lost <= 10) {  // (one claimed is reported by the check above)
      fail("LOST: job " + std::to_string(id) +
           " was leased at a reboot and never acked after it, and is not dead");
    }
  }

  // --- De-duplication under kills: how many keys made more than one job.
  // Allowed (queue.hpp, lib/ring/keys.hpp): a key whose job was acked and whose
  // entry was evicted for room, or forgotten early where a kill left it
  // ambiguous, makes a new job. Counted, not a violation.
  std::unordered_map<std::uint64_t, std::uint32_t> jobs_per_key;
  for (const auto& [id, c] : jobs) {
    const auto it = pushes.find(c.tag);
    if (it != pushes.end() && it->second.key_id != 0) ++jobs_per_key[it->second.key_id];
  }
  long keys_twice = 0;
  for (const auto& [key, count] : jobs_per_key) keys_twice += count > 1 ? 1 : 0;

  // --- The totals agree with the logs, within what the kills can cut short
  // (a kill between a transition and its counter; a batch counts once).
  const long worker_kills = n_.kills[static_cast<int>(Role::worker)];
  const long producer_kills = n_.kills[static_cast<int>(Role::producer)];
  const auto acked = static_cast<long>(s.acked);
  if (acked > acked_records + maybe_acks || acked + worker_kills * 4 < acked_records)
    fail("stats.acked=" + std::to_string(acked) + " disagrees with " + std::to_string(acked_records) +
         " logged acks (+" + std::to_string(maybe_acks) + " maybe)");
  const auto pushed = static_cast<long>(s.pushed);
  if (pushed > done_pushes + maybe_pushes ||
      pushed + producer_kills * static_cast<long>(kMaxBatch) < done_pushes)
    fail("stats.pushed=" + std::to_string(pushed) + " disagrees with " + std::to_string(done_pushes) +
         " logged pushes (+" + std::to_string(maybe_pushes) + " maybe)");
  const auto duplicates = static_cast<long>(s.duplicates);
  if (duplicates > dup_pushes + maybe_pushes || duplicates + producer_kills < dup_pushes)
    fail("stats.duplicates=" + std::to_string(duplicates) + " disagrees with " + std::to_string(dup_pushes) +
         " logged duplicate pushes");
  // Every dead-lettering ends in one requeue by this process, or in a job
  // still dead at the end (nothing else moves a dead job). The counter is
  // added just after each transition (once per job even in a sweep), so a
  // kill of a worker or janitor leaves it short by one at most.
  const long dead_lettered = static_cast<long>(s.dead_lettered);
  const long dead_events = requeued + static_cast<long>(dead_at_end_.size());
  if (dead_lettered > dead_events ||
      dead_lettered + worker_kills + n_.kills[static_cast<int>(Role::janitor)] < dead_events)
    fail("stats.dead_lettered=" + std::to_string(dead_lettered) + " disagrees with the " +
         std::to_string(requeued) + " requeues and " + std::to_string(dead_at_end_.size()) +
         " jobs dead at the end");
  if (dead_records > dead_events)
    fail(std::to_string(dead_records) + " releases logged a dead-lettering, more than the " +
         std::to_string(dead_events) + " jobs requeued or dead at the end");

  std::unordered_set<Tag> claimed_tags;
  for (const auto& [id, c] : jobs) claimed_tags.insert(c.tag);
  long maybe_delivered = 0;
  for (const auto& [tag, p] : pushes) maybe_delivered += p.state == 1 && claimed_tags.contains(tag) ? 1 : 0;
  const long redeliveries = claim_records - static_cast<long>(jobs.size());
  const long kills = n_.kills[0] + n_.kills[1] + n_.kills[2];
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "soak: jobs pushed %ld (push returned ok) + %ld cut by a kill (%ld of them had landed), push found the "
      "queue full %ld times\n"
      "soak: keyed pushes %ld: %ld answered duplicate (repeats, and retries after a kill); %ld keys made "
      "two or more jobs (allowed after the window, an eviction or a kill); keys evicted %llu\n"
      "soak: jobs done %ld (acks logged %ld, acks cut by a kill %ld); lost %ld; acked twice %ld; stale acks "
      "that won %ld; torn %ld; wrong duplicates %ld\n"
      "soak: claims %ld, redeliveries %ld (expired leases taken over %llu, dead owners' leases reclaimed "
      "by janitors %llu, releases %ld); late ack/extend/release refused with lease_lost %ld\n"
      "soak: kills %ld (producers %ld, workers %ld, janitors %ld; %ld landed inside a library call); "
      "stops %ld (producers %ld, workers %ld, janitors %ld; %ld longer than any lease); janitor restarts %ld "
      "(%ld after a clean SIGTERM)\n"
      "soak: half-written slots of killed producers recovered %llu; totals: pushed %llu claimed %llu "
      "acked %llu released %llu\n"
      "soak: jobring::Worker processes: claims %ld, acked %ld; handlers that failed %ld (Outcome::retry or "
      "retry_after) and threw %ld, released with backoff; ran longer than the lease %ld (%ld acked: the "
      "heartbeat kept the lease); blocked past the lease %ld; saw a stop %ld; lease lost %ld; given back at "
      "the end of the grace %ld\n"
      "soak: SIGTERMs %ld (%ld followed by a second one: stop_now), graceful stops %ld (exit 0, every claim "
      "with an outcome), killed while stopping %ld\n"
      "soak: dead-lettered %llu (%ld by a release on the last attempt), listed dead by peek %ld (in %ld "
      "looks), requeued %ld (%ld by requeue(id), %ld by requeue_dead()), dead at the end %ld (%ld of them "
      "claimed; removed); claims past max_attempts %ld\n",
      done_pushes, maybe_pushes, maybe_delivered, not_pushed, keyed, dup_pushes, keys_twice,
      u(s.keys_evicted), done, acked_records, maybe_acks, lost, double_acks, fencing, torn, wrong_dup,
      claim_records, redeliveries, u(s.expired_total), u(s.reclaimed), released_records, lost_records, kills,
      n_.kills[0], n_.kills[1], n_.kills[2], n_.aimed_kills, n_.stops[0] + n_.stops[1] + n_.stops[2],
      n_.stops[0], n_.stops[1], n_.stops[2], n_.long_stops, n_.janitor_restarts, n_.janitor_terms,
      u(s.recovered_writes), u(s.pushed), u(s.claimed), u(s.acked), u(s.released), w.claims, w.acked,
      w.failed, w.threw, w.long_jobs, w.long_acked, w.blocked, w.saw_stop, w.lost, given_back_records,
      n_.sigterms, n_.second_sigterms, n_.graceful_stops, n_.killed_stopping, u(s.dead_lettered),
      dead_records, n_.dead_seen, n_.dead_looks, requeued, n_.requeued_one, n_.requeued_all,
      static_cast<long>(dead_at_end_.size()), dead_claimed, past_max);

  if (!cfg_.dir.empty()) {
    std::printf(
        "soak: reboots %ld (every process killed: producers %ld, workers %ld, janitors %ld; %ld first "
        "recoverers killed half-way, %ld of them followed by another reboot; the wall clock went back %ld "
        "times; the new processes raced the parent to open %ld times); recoveries %llu; "
        "leases recovered %llu (of %llu held at the reboots; %ld redone, %ld dead at the end); half-written "
        "slots freed %llu (of %llu); jobs in the queue at the reboots %llu; killed claims known not acked "
        "%ld\n",
        n_.reboots, n_.reboot_kills[0], n_.reboot_kills[1], n_.reboot_kills[2], n_.recoveries_killed,
        n_.reboots_during_recovery, n_.clock_went_back, n_.children_opened_first, u(s.recoveries),
        u(n_.leases_recovered), u(n_.leases_at_reboots), held_redone, held_dead, u(n_.writes_recovered),
        u(n_.writes_at_reboots), u(n_.jobs_at_reboots), not_acked_by_reboot);
    if (s.recoveries != static_cast<std::uint64_t>(n_.reboots))
      fail("Stats::recoveries=" + std::to_string(s.recoveries) + " after " + std::to_string(n_.reboots) +
           " reboots");
    if (s.recovered_leases != n_.leases_recovered)
      fail("Stats::recovered_leases=" + std::to_string(s.recovered_leases) + ", the reboots saw " +
           std::to_string(n_.leases_recovered));
  }

  // --- Janitor logs: at --log-level warn a healthy janitor writes nothing.
  for (int i = 0; i < cfg_.janitors; ++i) {
    std::ifstream in(log_path(Role::janitor, i));
    std::string line;
    int shown = 0;
    while (std::getline(in, line)) {
      if (++shown <= 5) fail("janitor " + std::to_string(i) + " logged: " + line);
    }
  }
  std::printf("soak: %ld violations\n", violations_);
}

// ---------------------------------------------------------------------------

[[noreturn]] void usage(int rc) {
  std::fprintf(
      rc == 0 ? stdout : stderr,
      "Usage: jobring-soak [--janitor PATH] [--seconds N | --minutes N] [--producers P] [--workers W]\n"
      "                    [--janitors J] [--max-attempts N] [--seed S] [--keep-logs]\n"
      "                    [--dir DIR [--sync none|interval|always] [--reboot-every S]]\n"
      "Runs producers, workers (those with an even index on jobring::Worker) and janitors under\n"
      "random SIGKILL, SIGSTOP/SIGCONT, SIGTERM (graceful stops of jobring::Worker processes) and\n"
      "restarts, requeueing dead-lettered jobs now and then; then drains the queue and checks that\n"
      "every job was acked exactly once or is dead at the end, and that no slot is stuck.\n"
      "  --max-attempts N  the queue's max_attempts (0 = unlimited: no job may be dead-lettered)\n"
      "  --dir DIR         a file-backed queue in DIR (made if missing), DIR/soak.PID\n"
      "  --sync POLICY     its sync policy: none (default), interval (1 s), always\n"
      "  --reboot-every S  every S s (+-20%%) kill every process, change the boot id and the\n"
      "                    clocks (monotonic back to 2-8 s, wall clock on by 0-120 s), reopen\n"
      "                    (one recovery), restart; needs --dir. Janitors are then the janitor's\n"
      "                    code in forked children, not the --janitor binary\n"
      "Defaults: 10 minutes, 3 producers, 3 workers, 2 janitors, max_attempts 3. Exit: 0 ok,\n"
      "1 violation, 2 usage, 130 interrupted.\n");
  std::exit(rc);
}

Config parse(int argc, char** argv) {
  Config c;
  bool sync_given = false;
  auto number = [&](int& i, long lo, long hi) {
    if (i + 1 >= argc) usage(2);
    char* end = nullptr;
    const long v = std::strtol(argv[++i], &end, 10);
    if (end == argv[i] || *end != '\0' || v < lo || v > hi) {
      std::fprintf(stderr, "jobring-soak: %s: expected a number in %ld..%ld\n", argv[i - 1], lo, hi);
      std::exit(2);
    }
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--janitor" && i + 1 < argc) {
      c.janitor = argv[++i];
    } else if (a == "--seconds") {
      c.duration = std::chrono::seconds(number(i, 1, 7 * 24 * 3600));
    } else if (a == "--minutes") {
      c.duration = std::chrono::minutes(number(i, 1, 7 * 24 * 60));
    } else if (a == "--producers") {
      c.producers = static_cast<int>(number(i, 1, kMaxProcesses));
    } else if (a == "--workers") {
      c.workers = static_cast<int>(number(i, 1, kMaxProcesses));
    } else if (a == "--janitors") {
      c.janitors = static_cast<int>(number(i, 0, kMaxProcesses));
    } else if (a == "--max-attempts") {
      c.max_attempts = static_cast<std::uint32_t>(number(i, 0, 1000));
    } else if (a == "--seed") {
      c.seed = static_cast<unsigned>(number(i, 0, 0xffffffffL));
      c.seed_given = true;
    } else if (a == "--keep-logs") {
      c.keep_logs = true;
    } else if (a == "--dir" && i + 1 < argc) {
      c.dir = argv[++i];
    } else if (a == "--sync" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      if (v == "none") {
        c.sync = jobring::Options::Sync::none;
      } else if (v == "interval") {
        c.sync = jobring::Options::Sync::interval;
      } else if (v == "always") {
        c.sync = jobring::Options::Sync::always;
      } else {
        std::fprintf(stderr, "jobring-soak: --sync: none, interval or always\n");
        std::exit(2);
      }
      sync_given = true;
    } else if (a == "--reboot-every") {
      c.reboot_every = std::chrono::seconds(number(i, 1, 24 * 3600));
    } else if (a == "--help" || a == "-h") {
      usage(0);
    } else {
      std::fprintf(stderr, "jobring-soak: unknown argument '%s'\n", argv[i]);
      usage(2);
    }
  }
  if (!c.dir.empty()) {
    // Absolute, no trailing slash: the queue is named DIR/soak.PID.
    std::error_code ec;
    std::filesystem::create_directories(c.dir, ec);
    const auto abs = std::filesystem::absolute(c.dir, ec).lexically_normal();
    c.dir = abs.string();
    while (c.dir.size() > 1 && c.dir.back() == '/') c.dir.pop_back();
  }
  if ((sync_given || c.reboot_every.count() > 0) && c.dir.empty()) {
    std::fprintf(stderr, "jobring-soak: --sync and --reboot-every need --dir DIR\n");
    std::exit(2);
  }
#ifndef JOBRING_SOAK_JANITOR_CODE
  if (c.reboot_every.count() > 0 && c.janitors > 0) {
    std::fprintf(stderr,
                 "jobring-soak: --reboot-every runs the janitor's code, which this build lacks "
                 "(JOBRING_BUILD_DAEMON=ON); or --janitors 0\n");
    std::exit(2);
  }
#endif
  if (c.janitors > 0 && c.janitor.empty() && c.reboot_every.count() == 0) {
    std::fprintf(stderr, "jobring-soak: --janitor PATH is required (or --janitors 0)\n");
    std::exit(2);
  }
  if (!c.seed_given) c.seed = std::random_device{}();
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const Config cfg = parse(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/jobring-soak.XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    std::fprintf(stderr, "jobring-soak: mkdtemp %s: %s\n", dir.c_str(), std::strerror(errno));
    return 2;
  }
  std::optional<SharedObject<Control>> ctl;
  try {
    ctl.emplace();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jobring-soak: %s\n", e.what());
    return 2;
  }
  const std::string queue = (cfg.dir.empty() ? "" : cfg.dir + "/") + "soak." + std::to_string(::getpid());
  Queue::remove(queue);
  int rc = 2;
  try {
    Soak soak(cfg, queue, dir, **ctl);
    rc = soak.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jobring-soak: %s\n", e.what());
    Queue::remove(queue);
  }
  if ((rc == 0 || rc == 130) && !cfg.keep_logs) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } else {
    std::printf("soak: logs kept in %s\n", dir.c_str());
  }
  return rc;
}
