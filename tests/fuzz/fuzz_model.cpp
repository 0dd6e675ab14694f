// Fuzz target "model" (guarantees 1, 4, 5, 6, 7 and the API contract): the
// input chooses a small queue (capacity 1..32, max_payload 1..64,
// max_attempts 0..4, de-duplication window and table size) and a program of
// operations (format in fuzz_support.hpp). Each input gets a fresh queue. A
// model of the queue's semantics in plain C++ (the jobs by id with their
// state, payload, key, attempts and current lease; the leases that must be
// stale; the totals) predicts every result, and any disagreement traps with
// an explanation and the program so far:
//
//   push        ok, or full exactly when every slot holds a job; a new id
//               larger than every earlier one; payload_too_large and
//               invalid_argument for bad calls, changing nothing
//   keyed push  duplicate with the holder's id while a job with the key is
//               in the queue; the remembered job's id (or a new job, if the
//               key was evicted for room) after it finished
//   claim       empty exactly when no job is ready; otherwise a ready job
//               with its payload, key and attempt count; with one producer
//               and no retries, the oldest ready job (FIFO, guarantee 6)
//   ack / release / extend
//               ok exactly with the current lease, even an expired one
//               that nobody took over; lease_lost with a stale or forged
//               one (replayed from a list of old leases), changing nothing
//               (fencing, guarantee 4); release dead-letters after
//               max_attempts
//   expiry      a claim takes over an expired lease (attempt + 1) or
//               dead-letters it when its attempts are used up; sweep
//               returns exactly the expired leases
//   stats / peek / requeue / remove_dead / purge / sweep
//               every gauge and total, every listed job, every count
//
// Time: leases and delays are 0 or at least an hour, so that nothing
// expires or comes due by itself while an input runs, except claim_expire:
// a claim with a 1 ms lease, then a wait (a few ms) until the queue shows it
// expired. So the model needs no clock.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/transitions.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::ClaimStatus;
using jobring::errc;
using jobring::Job;
using jobring::JobId;
using jobring::JobInfo;
using jobring::JobState;
using jobring::Lease;
using jobring::LeaseStatus;
using jobring::milliseconds;
using jobring::Options;
using jobring::Owner;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::PushStatus;
using jobring::Queue;
using jobring::detail::Transition;
using jobring::fuzz::Bytes;
using jobring::fuzz::ModelOp;
namespace T = jobring::detail::T;

std::string fmtstr(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmtstr(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

std::string g_name;
bool g_dedup = false;        // PushOptions::key is implemented (probed at start-up)
bool g_print_trace = false;  // JOBRING_FUZZ_TRACE=1: print every input's program

// The program so far, printed with a finding.
std::string g_trace;

[[noreturn]] void disagree(const std::string& what) {
  std::fprintf(stderr, "\n==== program so far:\n%s", g_trace.c_str());
  jobring::fuzz::fail("model disagreement: %s", what.c_str());
}
#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) disagree(std::string(#cond " — ") + fmtstr(__VA_ARGS__)); \
  } while (false)

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

void trace(const char* format, ...) __attribute__((format(printf, 1, 2)));
void trace(const char* format, ...) {
  char buf[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  g_trace.append("  ").append(buf).append("\n");
}

// expired: leased, the deadline has passed, nobody has taken it over yet.
enum class St { ready, delayed, leased, expired, dead };
const char* st_name(St s) {
  switch (s) {
    case St::ready:
      return "ready";
    case St::delayed:
      return "delayed";
    case St::leased:
      return "leased";
    case St::expired:
      return "expired";
    case St::dead:
      return "dead";
  }
  return "?";
}

struct MJob {
  JobId id = 0;
  std::uint64_t seq = 0;  // push order
  std::string payload;
  std::string key;
  St st = St::ready;
  std::uint32_t attempts = 0;         // claims so far (reset by requeue)
  Lease lease{};                      // the current lease, when leased
  bool owned = false;                 // the lease is owned by this process
  std::optional<std::uint32_t> slot;  // once learnt (claim, peek): never changes while in the queue
};

struct Totals {
  std::uint64_t pushed = 0, claimed = 0, acked = 0, released = 0, dead_lettered = 0, requeued = 0, purged = 0,
                duplicates = 0, expired_total = 0;
};

milliseconds delay_for(std::uint8_t sel) {
  switch (sel % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
      return 0ms;
    case 4:
      return 1h;
    case 5:
      return jobring::kMaxLease;
    case 6:
      return -1ms;  // invalid
    default:
      return jobring::kMaxLease + 1ms;  // invalid
  }
}
bool valid_delay(milliseconds d) { return d >= 0ms && d <= jobring::kMaxLease; }

milliseconds lease_for(std::uint8_t sel) {
  switch (sel % 8) {
    case 0:
    case 1:
    case 2:
      return 0ms;  // the queue's default lease (at least an hour)
    case 3:
    case 4:
      return 1h;
    case 5:
      return jobring::kMaxLease;
    case 6:
      return -1ms;  // invalid
    default:
      return jobring::kMaxLease + 1ms;  // invalid
  }
}

class Harness {
 public:
  Harness(Queue a, Queue b, const Options& o) : a_(std::move(a)), b_(std::move(b)), q_(&a_), opt_(o) {}

  void run(Bytes& in) {
    for (int ops = 0; ops < 128 && !in.empty(); ++ops) {
      const auto op = static_cast<ModelOp>(in.u8() % static_cast<std::uint8_t>(ModelOp::count));
      step(op, in);
      check_all();
    }
  }

 private:
  // --- the model ---------------------------------------------------------------
  [[nodiscard]] std::size_t count(St s) const {
    return static_cast<std::size_t>(
        std::count_if(jobs_.begin(), jobs_.end(), [s](const auto& kv) { return kv.second.st == s; }));
  }
  // Leased, expired or not: until someone takes it over, an expired lease
  // still acks, releases and extends.
  static bool holds_lease(const MJob& j) { return j.st == St::leased || j.st == St::expired; }
  [[nodiscard]] bool exhausted(const MJob& j) const {
    return opt_.max_attempts != 0 && j.attempts >= opt_.max_attempts;
  }
  [[nodiscard]] MJob* current(const Lease& l) {
    auto it = jobs_.find(l.job);
    if (it == jobs_.end() || !holds_lease(it->second) || !(it->second.lease == l)) return nullptr;
    return &it->second;
  }
  [[nodiscard]] MJob* live_key(const std::string& key) {
    for (auto& [id, j] : jobs_)
      if (!key.empty() && j.key == key) return &j;
    return nullptr;
  }
  void make_stale(const Lease& l) {
    if (stale_.size() >= 32) stale_.erase(stale_.begin());
    stale_.push_back(l);
  }
  // A model job moves as the library's slot does: by a transition of the
  // table (ring/transitions.hpp), which must start from the slot state the
  // job is in and end in the one it goes to. Delayed is READY with its
  // visible-at ahead; expired is LEASED with its deadline passed.
  static jobring::detail::State slot_state(St s) {
    using jobring::detail::State;
    switch (s) {
      case St::ready:
      case St::delayed:
        return State::ready;
      case St::leased:
      case St::expired:
        return State::leased;
      case St::dead:
        return State::dead;
    }
    return State::free;
  }
  static bool table_allows(const Transition& t, St from, jobring::detail::State to) {
    return t.starts_from(jobring::detail::Word::make(slot_state(from), 0, 0)) && t.to == to;
  }
  void move(MJob& j, const Transition& t, St to) {
    EXPECT(table_allows(t, j.st, slot_state(to)), "the model moves job %llu from %s to %s, which %s does not",
           ull(j.id), st_name(j.st), st_name(to), t.name);
    j.st = to;
  }
  // The job leaves the queue by t: its slot becomes FREE.
  void leave(JobId id, const Transition& t) {
    const MJob& j = jobs_.at(id);
    EXPECT(table_allows(t, j.st, jobring::detail::State::free),
           "the model frees job %llu, %s, which %s does not", ull(id), st_name(j.st), t.name);
    finish(id);
  }

  // A job leaves the queue (ack, purge, remove_dead): its key is remembered.
  void finish(JobId id) {
    auto it = jobs_.find(id);
    if (!it->second.key.empty() && opt_.dedup_window > 0ms) remembered_[it->second.key] = id;
    std::erase(claim_order_, id);
    jobs_.erase(it);
    if (jobs_.empty()) {
      // An empty ring is FIFO again: the next jobs are pushed into free
      // slots in ring order and claimed from the claim cursor in that order.
      fifo_ = true;
      claim_order_.clear();
    }
  }
  [[nodiscard]] std::size_t free_slots() const { return opt_.capacity - jobs_.size(); }

  // --- picking arguments ------------------------------------------------------
  std::string payload_from(Bytes& in) {
    const std::size_t len = in.u8() % (opt_.max_payload + 2);  // max_payload + 1: too large
    std::string p(len, 'p');
    const auto bytes = in.take(std::min<std::size_t>(len, 4));
    if (!bytes.empty()) std::memcpy(p.data(), bytes.data(), bytes.size());
    p += std::to_string(next_seq_);  // distinct payloads: a mix-up shows
    if (p.size() > len) p.resize(len);
    return p;
  }
  static std::string key_from(Bytes& in) {
    const std::uint8_t sel = in.u8();
    // Few keys, so that they repeat; more than the smallest table holds.
    if (sel < 240) return "k" + std::to_string(sel % 24);
    if (sel < 250)
      return std::string(sel % 3 == 0 ? jobring::kMaxKeyLength : 1, static_cast<char>('a' + sel % 3));
    return std::string(jobring::kMaxKeyLength + 1, 'x');  // too long
  }
  // A lease: one of the current ones, a stale one, or a forged one.
  Lease pick_lease(Bytes& in) {
    const std::uint8_t sel = in.u8();
    const std::uint8_t idx = in.u8();
    std::vector<Lease> cur;
    for (const auto& [id, j] : jobs_)
      if (holds_lease(j)) cur.push_back(j.lease);
    switch (sel % 8) {
      case 0:
      case 1:
      case 2:
      case 3:
        if (!cur.empty()) return cur[idx % cur.size()];
        [[fallthrough]];
      case 4:
      case 5:
        if (!stale_.empty()) return stale_[idx % stale_.size()];
        [[fallthrough]];
      default: {
        // Forged from a current or stale one with one field changed, or from nothing.
        Lease l = !cur.empty()      ? cur[idx % cur.size()]
                  : !stale_.empty() ? stale_[idx % stale_.size()]
                                    : Lease{};
        switch (idx % 4) {
          case 0:
            l.slot += 1 + sel / 8;
            break;
          case 1:
            l.token ^= std::uint64_t{1} << (sel % 64);
            break;
          case 2:
            l.job += 1 + sel / 8;
            break;
          default:
            l.slot = sel % (opt_.capacity + 1);
            break;
        }
        return l;
      }
    }
  }
  std::optional<JobId> pick_id(Bytes& in) {
    const std::uint8_t sel = in.u8();
    if (jobs_.empty() || sel >= 224) return JobId{sel} + 1000;  // no such job
    auto it = jobs_.begin();
    std::advance(it, sel % jobs_.size());
    return it->first;
  }

  // --- operations -----------------------------------------------------------
  void step(ModelOp op, Bytes& in) {
    switch (op) {
      case ModelOp::push:
        do_push(payload_from(in), delay_for(in.u8()), std::string());
        break;
      case ModelOp::push_keyed: {
        std::string payload = payload_from(in);
        const milliseconds delay = delay_for(in.u8());
        std::string key = key_from(in);
        if (!g_dedup) key.clear();  // not implemented yet: a plain push
        do_push(std::move(payload), delay, key);
        break;
      }
      case ModelOp::push_many:
        do_push_many(in);
        break;
      case ModelOp::try_claim: {
        const ClaimOptions co = claim_options(in);
        trace("try_claim lease=%lld owner=%s", static_cast<long long>(co.lease.count()),
              co.owner == Owner::process ? "process" : "detached");
        do_claim(1, co);
        break;
      }
      case ModelOp::try_claim_many: {
        const std::size_t n = in.u8() % 4 + 1;
        const ClaimOptions co = claim_options(in);
        trace("try_claim_many n=%zu lease=%lld", n, static_cast<long long>(co.lease.count()));
        do_claim(n, co);
        break;
      }
      case ModelOp::claim_expire: {
        // A claim with a 1 ms lease, then a wait until peek() shows it
        // expired. Its deadline is at most the claim's clock + 1 ms, and it
        // expires strictly after: a peek that starts 3 ms after the claim
        // returned must see it expired. At most 2 per input (they sleep).
        ClaimOptions co;
        co.owner = (in.u8() & 1) != 0 ? Owner::detached : Owner::process;
        co.lease = ++expiries_ <= 2 ? 1ms : 1h;
        trace("claim with lease=%lld, then wait for it to expire", static_cast<long long>(co.lease.count()));
        if (do_claim(1, co) == 1 && co.lease == 1ms) {
          const auto claimed = std::chrono::steady_clock::now();
          const JobId id = job_.id;
          for (;;) {
            std::this_thread::sleep_for(500us);
            const auto peeked = std::chrono::steady_clock::now();
            const auto infos = q_->peek(JobState::leased, 1000);
            const auto it =
                std::find_if(infos.begin(), infos.end(), [id](const JobInfo& info) { return info.id == id; });
            EXPECT(it != infos.end(), "job %llu, just claimed, is not leased", ull(id));
            if (it->ms_until < 0) break;
            EXPECT(peeked - claimed <= 3ms, "a 1 ms lease of job %llu still current %lld us after the claim",
                   ull(id),
                   static_cast<long long>(
                       std::chrono::duration_cast<std::chrono::microseconds>(peeked - claimed).count()));
          }
          jobs_.at(id).st = St::expired;
          fifo_ = false;  // it will be retried
        }
        break;
      }
      case ModelOp::ack: {
        const Lease l = pick_lease(in);
        trace("ack %s", l.to_string().c_str());
        expect_ack(l, q_->ack(l));
        break;
      }
      case ModelOp::release: {
        const Lease l = pick_lease(in);
        const milliseconds delay = delay_for(in.u8());
        trace("release %s delay=%lld", l.to_string().c_str(), static_cast<long long>(delay.count()));
        const LeaseStatus s = q_->release(l, delay);
        MJob* j = current(l);
        EXPECT((s == LeaseStatus::ok) == (j != nullptr), "release returned %s for a %s lease",
               s == LeaseStatus::ok ? "ok" : "lease_lost", j ? "current" : "stale or forged");
        if (j == nullptr) break;
        make_stale(l);
        std::erase(claim_order_, j->id);
        fifo_ = false;  // a retry
        if (exhausted(*j)) {
          move(*j, T::dead_letter, St::dead);
          ++totals_.dead_lettered;
        } else {
          move(*j, T::release,
               delay > 0ms ? St::delayed : St::ready);  // release clamps the delay to 0..kMaxLease
          ++totals_.released;
        }
        break;
      }
      case ModelOp::extend: {
        Lease l = pick_lease(in);
        const milliseconds t = lease_for(in.u8());
        trace("extend %s lease=%lld", l.to_string().c_str(), static_cast<long long>(t.count()));
        if (t == 0ms || !valid_lease(t)) {
          expect_invalid_argument([&] { (void)q_->extend(l, t); }, "extend");
          break;
        }
        const Lease before = l;
        const LeaseStatus s = q_->extend(l, t);
        MJob* j = current(before);
        EXPECT((s == LeaseStatus::ok) == (j != nullptr), "extend returned %s for a %s lease",
               s == LeaseStatus::ok ? "ok" : "lease_lost", j ? "current" : "stale or forged");
        if (j == nullptr) {
          EXPECT(l == before, "a failed extend changed the lease");
          break;
        }
        EXPECT(l.slot == before.slot && l.job == before.job && l.token != before.token,
               "extend gave %s from %s", l.to_string().c_str(), before.to_string().c_str());
        j->lease = l;
        move(*j, T::extend, St::leased);  // a new deadline, an hour or more ahead
        make_stale(before);
        break;
      }
      case ModelOp::ack_many: {
        const std::size_t n = in.u8() % 4 + 1;
        std::vector<Lease> ls;
        for (std::size_t i = 0; i < n; ++i) ls.push_back(pick_lease(in));
        trace("ack_many n=%zu", n);
        std::vector<LeaseStatus> results(n, LeaseStatus::ok);
        const std::size_t acked = q_->ack_many(ls, results);
        std::size_t expected = 0;
        for (std::size_t i = 0; i < n; ++i) {
          expected += current(ls[i]) != nullptr ? 1 : 0;
          expect_ack(ls[i], results[i]);  // in order: a lease twice in one batch is lost the second time
        }
        EXPECT(acked == expected, "ack_many acked %zu, model %zu", acked, expected);
        break;
      }
      case ModelOp::stats:
        trace("stats");
        break;  // check_all() runs after every operation
      case ModelOp::peek: {
        const auto s = static_cast<JobState>(in.u8() % 4);
        const std::size_t limit = in.u8() % 20;
        trace("peek state=%d limit=%zu", static_cast<int>(s), limit);
        check_peek(s, limit);
        break;
      }
      case ModelOp::requeue: {
        const JobId id = *pick_id(in);
        trace("requeue %llu", ull(id));
        const bool ok = q_->requeue(id);
        auto it = jobs_.find(id);
        const bool dead = it != jobs_.end() && it->second.st == St::dead;
        EXPECT(ok == dead, "requeue(%llu) returned %d, the job is %s", ull(id), ok,
               it == jobs_.end() ? "not in the queue" : st_name(it->second.st));
        if (ok) {
          move(it->second, T::requeue, St::ready);
          it->second.attempts = 0;
          ++totals_.requeued;
          fifo_ = false;
        }
        break;
      }
      case ModelOp::requeue_dead: {
        trace("requeue_dead");
        const std::size_t n = q_->requeue_dead();
        EXPECT(n == count(St::dead), "requeue_dead requeued %zu of %zu dead", n, count(St::dead));
        for (auto& [id, j] : jobs_) {
          if (j.st != St::dead) continue;
          move(j, T::requeue, St::ready);
          j.attempts = 0;
          fifo_ = false;
        }
        totals_.requeued += n;
        break;
      }
      case ModelOp::remove_dead: {
        const JobId id = *pick_id(in);
        trace("remove_dead %llu", ull(id));
        const bool ok = q_->remove_dead(id);
        auto it = jobs_.find(id);
        const bool dead = it != jobs_.end() && it->second.st == St::dead;
        EXPECT(ok == dead, "remove_dead(%llu) returned %d, the job is %s", ull(id), ok,
               it == jobs_.end() ? "not in the queue" : st_name(it->second.st));
        if (ok) {
          ++totals_.purged;
          fifo_ = false;
          leave(id, T::purge);
        }
        break;
      }
      case ModelOp::purge: {
        const unsigned bits = in.u8() % 7 + 1;
        trace("purge what=%u", bits);
        const std::size_t n = q_->purge(static_cast<PurgeWhat>(bits));
        std::vector<JobId> gone;
        for (const auto& [id, j] : jobs_) {
          const bool hit = (j.st == St::ready && (bits & 1)) || (j.st == St::delayed && (bits & 2)) ||
                           (j.st == St::dead && (bits & 4));
          if (hit) gone.push_back(id);
        }
        EXPECT(n == gone.size(), "purge(%u) removed %zu, model %zu", bits, n, gone.size());
        for (JobId id : gone) leave(id, T::purge);
        // A purge frees slots out of order. It keeps FIFO only if nothing
        // that stays can be claimed or acked in this regime: only delayed
        // jobs (never due here) and dead ones (they leave only by requeue or
        // remove_dead, which end the regime). The claim cursor passes them up
        // to the push cursor (skip_unclaimable_positions in lib/ring/admin.cpp)
        // and the producer skips their slots, so the next jobs are claimed
        // in push order (FuzzRegress.FifoAfterAPartialPurge...). A ready
        // job left behind may sit after a freed slot in ring order, and a
        // leased one frees its slot behind later jobs when it is acked (CI
        // found that one: capacity 4, job 9 refilled into the slot of an
        // acked lease before job 7); the producer refills such slots when
        // its next ones are occupied, and those jobs come first: a slot
        // freed out of order, refilled out of order, the documented
        // exception to guarantee 6.
        if (!gone.empty() && count(St::ready) + count(St::leased) + count(St::expired) > 0) fifo_ = false;
        totals_.purged += n;
        break;
      }
      case ModelOp::sweep: {
        trace("sweep");
        const auto r = q_->sweep();
        // Every owner (this process) is alive and no slot is half-written:
        // sweep returns exactly the expired leases, to ready or (attempts
        // used up) to dead.
        std::size_t expired = 0, doomed = 0;
        for (auto& [id, j] : jobs_) {
          if (j.st != St::expired) continue;
          ++expired;
          make_stale(j.lease);
          std::erase(claim_order_, id);
          if (exhausted(j)) {
            ++doomed;
            move(j, T::dead_letter, St::dead);
          } else {
            move(j, T::expire, St::ready);
          }
        }
        EXPECT(
            r.reclaimed == 0 && r.expired == expired && r.dead_lettered == doomed && r.recovered_writes == 0,
            "sweep: reclaimed %zu expired %zu dead %zu recovered %zu; model: expired %zu, dead %zu",
            r.reclaimed, r.expired, r.dead_lettered, r.recovered_writes, expired, doomed);
        totals_.expired_total += expired;
        totals_.dead_lettered += doomed;
        break;
      }
      case ModelOp::switch_handle:
        trace("switch handle");
        q_ = q_ == &a_ ? &b_ : &a_;  // the other Queue object on the same segment
        break;
      case ModelOp::lease_text: {
        const Lease l = pick_lease(in);
        const auto parsed = Lease::parse(l.to_string());
        EXPECT(parsed && *parsed == l, "lease %s does not parse back", l.to_string().c_str());
        const auto bytes = in.take(in.u8() % 24);
        const std::string text(bytes.begin(), bytes.end());
        if (const auto p = Lease::parse(text)) {
          const auto again = Lease::parse(p->to_string());
          EXPECT(again && *again == *p, "lease text '%s' parses, but its to_string() %s does not parse back",
                 text.c_str(), p->to_string().c_str());
        }
        break;
      }
      case ModelOp::count:
        break;
    }
  }

  static bool valid_lease(milliseconds t) { return t >= 0ms && t <= jobring::kMaxLease; }
  static ClaimOptions claim_options(Bytes& in) {
    const std::uint8_t sel = in.u8();
    ClaimOptions co;
    co.lease = lease_for(sel);
    co.owner = (sel & 0x80) != 0 ? Owner::detached : Owner::process;
    return co;
  }
  template <class F>
  static void expect_invalid_argument(F&& f, const char* what) {
    try {
      f();
    } catch (const jobring::error& e) {
      EXPECT(e.code() == errc::invalid_argument, "%s threw %s", what, e.what());
      return;
    }
    disagree(std::string(what) + " with an out-of-range argument did not throw invalid_argument");
  }

  void do_push(std::string payload, milliseconds delay, const std::string& key) {
    trace("push %zu bytes delay=%lld key='%s'", payload.size(), static_cast<long long>(delay.count()),
          key.c_str());
    PushOptions po;
    po.delay = delay;
    po.key = key;
    std::error_code ec;
    const jobring::Stats before = q_->stats();
    const auto r = q_->push(std::as_bytes(std::span<const char>(payload.data(), payload.size())), po, ec);
    if (payload.size() > opt_.max_payload) {
      EXPECT(ec == errc::payload_too_large, "push of %zu bytes: %s", payload.size(), ec.message().c_str());
      return;
    }
    if (!valid_delay(delay) || key.size() > jobring::kMaxKeyLength) {
      EXPECT(ec == errc::invalid_argument, "push with delay %lld, key of %zu bytes: %s",
             static_cast<long long>(delay.count()), key.size(), ec.message().c_str());
      return;
    }
    EXPECT(!ec, "push: %s", ec.message().c_str());
    if (!key.empty()) {
      if (MJob* holder = live_key(key)) {
        // The key's job is in the queue: nothing is added (a full ring too:
        // a duplicate needs no slot).
        EXPECT(r.status == PushStatus::ok && r.duplicate && r.id == holder->id,
               "push with the key of job %llu in the queue: status %d duplicate %d id %llu", ull(holder->id),
               static_cast<int>(r.status), r.duplicate, ull(r.id));
        ++totals_.duplicates;
        return;
      }
      if (auto it = remembered_.find(key); it != remembered_.end()) {
        if (r.status == PushStatus::ok && r.duplicate) {
          EXPECT(r.id == it->second, "duplicate of a finished job: id %llu, model %llu", ull(r.id),
                 ull(it->second));
          ++totals_.duplicates;
          return;
        }
        // Not a duplicate: the key must have been evicted for room.
        EXPECT(q_->stats().keys_evicted > 0, "key '%s' of finished job %llu forgotten inside its window",
               key.c_str(), ull(it->second));
        remembered_.erase(it);
      }
      EXPECT(!r.duplicate, "push with a new key '%s' said duplicate (id %llu)", key.c_str(), ull(r.id));
    } else {
      EXPECT(!r.duplicate, "push without a key said duplicate");
    }
    if (free_slots() == 0) {
      EXPECT(r.status == PushStatus::full, "push into a full ring: status %d", static_cast<int>(r.status));
      return;
    }
    if (r.status == PushStatus::full && !key.empty()) {
      // Refused for want of key-table room: only if the bucket is all live keys.
      EXPECT(q_->stats().keys_full == before.keys_full + 1, "keyed push full with %zu free slots",
             free_slots());
      ++keys_full_;
      return;
    }
    EXPECT(r.status == PushStatus::ok, "push with %zu free slots: status %d", free_slots(),
           static_cast<int>(r.status));
    added(r.id, std::move(payload), key, delay > 0ms ? St::delayed : St::ready);
  }

  void added(JobId id, std::string payload, const std::string& key, St st) {
    EXPECT(id > last_id_, "new job id %llu not above %llu", ull(id), ull(last_id_));
    EXPECT(!jobs_.contains(id), "job id %llu given twice", ull(id));
    last_id_ = id;
    MJob j;
    j.id = id;
    j.seq = next_seq_++;
    j.payload = std::move(payload);
    j.key = key;
    j.st = st;
    jobs_.emplace(id, std::move(j));
    ++totals_.pushed;
  }

  void do_push_many(Bytes& in) {
    const std::uint8_t sel = in.u8();
    const std::size_t n = sel % 5 + 1;
    const bool keyed = g_dedup && sel >= 250;  // push_many takes no key: invalid_argument
    const milliseconds delay = delay_for(in.u8());
    std::vector<std::string> payloads;
    for (std::size_t i = 0; i < n; ++i) payloads.push_back(payload_from(in));
    trace("push_many n=%zu delay=%lld%s", n, static_cast<long long>(delay.count()), keyed ? " key=k0" : "");
    std::vector<std::span<const std::byte>> spans;
    bool too_large = false;
    for (const auto& p : payloads) {
      spans.push_back(std::as_bytes(std::span<const char>(p.data(), p.size())));
      too_large |= p.size() > opt_.max_payload;
    }
    std::vector<JobId> ids(n, 0);
    PushOptions po;
    po.delay = delay;
    if (keyed) po.key = "k0";
    if (too_large || !valid_delay(delay) || keyed) {
      try {
        (void)q_->push_many(spans, ids, po);
      } catch (const jobring::error& e) {
        EXPECT(e.code() == (too_large ? errc::payload_too_large : errc::invalid_argument),
               "push_many threw %s", e.what());
        return;
      }
      disagree("push_many with a bad payload, delay or a key did not throw");
    }
    const std::size_t expected = std::min(n, free_slots());
    const std::size_t pushed = q_->push_many(spans, ids, po);
    EXPECT(pushed == expected, "push_many pushed %zu of %zu with %zu free slots", pushed, n, free_slots());
    for (std::size_t i = 0; i < pushed; ++i)
      added(ids[i], payloads[i], std::string(), delay > 0ms ? St::delayed : St::ready);
  }

  // try_claim (n == 1) or try_claim_many. Claimable: ready jobs and expired
  // leases with attempts left. An expired lease whose attempts are used up is
  // dead-lettered by a claim that meets it in its scan: by every claim that
  // claims less than it asked for (it scanned every slot); by another one if
  // the job lies before the claimed ones, which the model learns from peek.
  std::size_t do_claim(std::size_t n, const ClaimOptions& co) {
    Job* const out = n == 1 ? &job_ : jobs4_.data();
    if (!valid_lease(co.lease)) {
      expect_invalid_argument([&] { (void)q_->try_claim_many(std::span<Job>(out, n), co); }, "try_claim");
      return 0;
    }
    std::size_t claimable = 0;
    std::vector<JobId> doomed;  // expired, attempts used up
    for (const auto& [id, j] : jobs_) {
      if (j.st == St::ready || (j.st == St::expired && !exhausted(j))) ++claimable;
      if (j.st == St::expired && exhausted(j)) doomed.push_back(id);
    }
    const std::size_t got = n == 1 ? (q_->try_claim(job_, co) == ClaimStatus::ok ? 1 : 0)
                                   : q_->try_claim_many(std::span<Job>(jobs4_).first(n), co);
    EXPECT(got == std::min(n, claimable), "claim of %zu got %zu with %zu claimable", n, got, claimable);
    for (std::size_t i = 0; i < got; ++i) claimed(out[i], co);
    if (!doomed.empty()) {
      std::set<JobId> dead;
      if (got == n)
        for (const auto& info : q_->peek(JobState::dead, 1000)) dead.insert(info.id);
      for (JobId id : doomed) {
        if (got == n && !dead.contains(id)) continue;  // not met by the scan
        MJob& j = jobs_.at(id);
        make_stale(j.lease);
        std::erase(claim_order_, id);
        move(j, T::dead_letter, St::dead);
        ++totals_.dead_lettered;
      }
    }
    return got;
  }

  void claimed(const Job& job, const ClaimOptions& co) {
    auto it = jobs_.find(job.id);
    EXPECT(it != jobs_.end(), "claimed job %llu, which is not in the queue", ull(job.id));
    MJob& j = it->second;
    const bool takeover = j.st == St::expired;
    EXPECT(j.st == St::ready || (takeover && !exhausted(j)), "claimed job %llu, which is %s (attempts %u)",
           ull(job.id), st_name(j.st), j.attempts);
    EXPECT(job.text() == j.payload, "job %llu payload '%.*s', pushed '%s'", ull(job.id),
           static_cast<int>(job.text().size()), job.text().data(), j.payload.c_str());
    EXPECT(job.key() == j.key, "job %llu key '%.*s', pushed '%s'", ull(job.id),
           static_cast<int>(job.key().size()), job.key().data(), j.key.c_str());
    EXPECT(job.attempt == j.attempts + 1, "job %llu attempt %u, model %u", ull(job.id), job.attempt,
           j.attempts + 1);
    EXPECT(job.lease.job == job.id && job.lease.slot < opt_.capacity, "lease %s for job %llu",
           job.lease.to_string().c_str(), ull(job.id));
    learn_slot(j, job.lease.slot);
    if (fifo_) {
      // One producer, no retries: the oldest ready job (guarantee 6).
      const MJob* oldest = nullptr;
      for (const auto& [id, o] : jobs_)
        if (o.st == St::ready && (oldest == nullptr || o.seq < oldest->seq)) oldest = &o;
      EXPECT(oldest->id == job.id, "FIFO: claimed job %llu, the oldest ready job is %llu", ull(job.id),
             ull(oldest->id));
    }
    trace("  -> job %llu slot %u attempt %u", ull(job.id), job.lease.slot, job.attempt);
    if (takeover) {
      make_stale(j.lease);  // fenced from now on (guarantee 4)
      std::erase(claim_order_, j.id);
      ++totals_.expired_total;
    }
    move(j, takeover ? T::takeover : T::claim, St::leased);
    j.attempts += 1;
    j.lease = job.lease;
    j.owned = co.owner == Owner::process;
    claim_order_.push_back(j.id);
    ++totals_.claimed;
  }

  void learn_slot(MJob& j, std::uint32_t slot) {
    if (j.slot) {
      EXPECT(*j.slot == slot, "job %llu moved from slot %u to slot %u", ull(j.id), *j.slot, slot);
      return;
    }
    for (const auto& [id, o] : jobs_)
      EXPECT(!(o.slot && *o.slot == slot), "jobs %llu and %llu both in slot %u", ull(id), ull(j.id), slot);
    j.slot = slot;
  }

  void expect_ack(const Lease& l, LeaseStatus s) {
    MJob* j = current(l);
    EXPECT((s == LeaseStatus::ok) == (j != nullptr), "ack of %s returned %s for a %s lease",
           l.to_string().c_str(), s == LeaseStatus::ok ? "ok" : "lease_lost",
           j ? "current" : "stale or forged");
    if (j == nullptr) return;
    if (claim_order_.empty() || claim_order_.front() != j->id) fifo_ = false;  // acked out of claim order
    make_stale(l);
    ++totals_.acked;
    leave(j->id, T::ack);
  }

  void check_peek(JobState state, std::size_t limit) {
    const St st = state == JobState::ready     ? St::ready
                  : state == JobState::delayed ? St::delayed
                  : state == JobState::leased  ? St::leased
                                               : St::dead;
    // peek lists expired leases as leased (with a negative ms_until).
    auto in_state = [&](const MJob& j) { return j.st == st || (st == St::leased && j.st == St::expired); };
    const std::size_t expected = static_cast<std::size_t>(
        std::count_if(jobs_.begin(), jobs_.end(), [&](const auto& kv) { return in_state(kv.second); }));
    const auto infos = q_->peek(state, limit);
    EXPECT(infos.size() == std::min(limit, expected), "peek(%s, %zu) listed %zu, model has %zu", st_name(st),
           limit, infos.size(), expected);
    std::set<JobId> seen;
    for (const JobInfo& info : infos) {
      auto it = jobs_.find(info.id);
      EXPECT(it != jobs_.end() && in_state(it->second), "peek(%s) listed job %llu, which is %s", st_name(st),
             ull(info.id), it == jobs_.end() ? "not in the queue" : st_name(it->second.st));
      EXPECT(seen.insert(info.id).second, "peek listed job %llu twice", ull(info.id));
      MJob& j = it->second;
      EXPECT(info.state == state && info.slot < opt_.capacity, "peek info of job %llu: state %d slot %u",
             ull(info.id), static_cast<int>(info.state), info.slot);
      EXPECT(info.attempts == j.attempts, "peek: job %llu attempts %u, model %u", ull(j.id), info.attempts,
             j.attempts);
      const std::string payload(reinterpret_cast<const char*>(info.payload.data()), info.payload.size());
      EXPECT(payload == j.payload, "peek: job %llu payload differs", ull(j.id));
      // A delay of D ends at now + D + 1 ms (now_ms() truncates; a delay is never
      // shorter than asked), so a delay of kMaxLease shows kMaxLease + 1.
      if (j.st == St::delayed || j.st == St::leased)
        EXPECT(info.ms_until > 0 && info.ms_until <= jobring::kMaxLease.count() + 1,
               "peek: %s job %llu ms_until %lld", st_name(j.st), ull(j.id),
               static_cast<long long>(info.ms_until));
      if (j.st == St::expired)
        EXPECT(info.ms_until < 0, "peek: expired job %llu ms_until %lld", ull(j.id),
               static_cast<long long>(info.ms_until));
      if (holds_lease(j))
        EXPECT(info.owner_pid == (j.owned ? ::getpid() : 0), "peek: job %llu owner pid %d, owned %d",
               ull(j.id), info.owner_pid, j.owned);
      else
        EXPECT(info.owner_pid == 0, "peek: %s job %llu has owner pid %d", st_name(st), ull(j.id),
               info.owner_pid);
      learn_slot(j, info.slot);
    }
  }

  void check_all() {
    const jobring::Stats s = q_->stats();
    auto eq = [](const char* what, std::uint64_t got, std::uint64_t want) {
      EXPECT(got == want, "stats.%s = %llu, model %llu", what, ull(got), ull(want));
    };
    eq("free", s.free, free_slots());
    eq("writing", s.writing, 0);
    eq("ready", s.ready, count(St::ready));
    eq("delayed", s.delayed, count(St::delayed));
    eq("leased", s.leased, count(St::leased));
    eq("expired", s.expired, count(St::expired));
    eq("dead", s.dead, count(St::dead));
    eq("corrupt", s.corrupt, 0);
    eq("pushed", s.pushed, totals_.pushed);
    eq("claimed", s.claimed, totals_.claimed);
    eq("acked", s.acked, totals_.acked);
    eq("released", s.released, totals_.released);
    eq("expired_total", s.expired_total, totals_.expired_total);
    eq("dead_lettered", s.dead_lettered, totals_.dead_lettered);
    eq("requeued", s.requeued, totals_.requeued);
    eq("purged", s.purged, totals_.purged);
    eq("recovered_writes", s.recovered_writes, 0);
    eq("reclaimed", s.reclaimed, 0);
    if (g_dedup) {
      std::uint64_t live = 0;
      for (const auto& [id, j] : jobs_) live += j.key.empty() ? 0 : 1;
      eq("keys_live", s.keys_live, live);
      eq("duplicates", s.duplicates, totals_.duplicates);
      eq("keys_full", s.keys_full, keys_full_);
      eq("keys_capacity", s.keys_capacity, q_->options().dedup_keys);
      if (opt_.dedup_window == 0ms) eq("keys_remembered", s.keys_remembered, 0);
      EXPECT(s.keys_remembered <= remembered_.size(), "stats.keys_remembered = %llu, model at most %zu",
             ull(s.keys_remembered), remembered_.size());
      if (s.keys_evicted == 0) eq("keys_remembered", s.keys_remembered, remembered_.size());
    }
    if ((++checks_ & 7) == 0)
      for (JobState st : {JobState::ready, JobState::delayed, JobState::leased, JobState::dead})
        check_peek(st, 100);
  }

  Queue a_, b_;
  Queue* q_;
  Options opt_;
  std::map<JobId, MJob> jobs_;
  std::vector<Lease> stale_;
  std::map<std::string, JobId> remembered_;  // keys of finished jobs (window > 0), unless evicted
  std::deque<JobId> claim_order_;            // leased jobs in claim order
  // One producer and no retries (release, expiry, requeue, purge,
  // remove_dead, an ack out of claim order) since the queue was last empty:
  // claims are FIFO.
  bool fifo_ = true;
  Totals totals_;
  std::uint64_t keys_full_ = 0;
  std::uint64_t next_seq_ = 0;
  JobId last_id_ = 0;
  unsigned checks_ = 0;
  int expiries_ = 0;  // claim_expire operations so far
  Job job_;
  std::vector<Job> jobs4_ = std::vector<Job>(4);
};

void cleanup() {
  if (!g_name.empty()) Queue::remove(g_name);
}

// Whether PushOptions::key is implemented in the library under test (until
// it is, a keyed push is a plain push, and the model does not use keys).
bool probe_dedup() {
  const std::string name = g_name + ".probe";
  Queue::remove(name);
  bool dedup = false;
  {
    Queue q = Queue::create(name, Options{.capacity = 4, .max_payload = 8});
    PushOptions po;
    po.key = "probe";
    (void)q.push("a", po);
    dedup = q.push("b", po).duplicate;
  }
  Queue::remove(name);
  return dedup;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_name = jobring::fuzz::process_name("model");
  std::atexit(cleanup);
  g_dedup = probe_dedup();
  g_print_trace = std::getenv("JOBRING_FUZZ_TRACE") != nullptr;
  std::fprintf(
      stderr, "fuzz_model: de-duplication keys %s\n",
      g_dedup ? "implemented: keyed pushes are modelled" : "not implemented: keyed pushes are plain");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  Options o;
  o.capacity = in.u8() % 32 + 1;
  o.max_payload = in.u8() % 64 + 1;
  o.max_attempts = in.u8() % 5;
  const std::uint8_t flags = in.u8();
  o.dedup_window = (flags & jobring::fuzz::kModelWindowZero) != 0 ? 0ms : 1h;
  // The smallest table: one bucket, fewer entries than slots when the
  // capacity is over 16, so that keyed pushes can find every entry live.
  o.dedup_keys = (flags & jobring::fuzz::kModelSmallKeys) != 0 ? jobring::detail::kKeyWays : 0;
  o.default_lease = 1h + milliseconds(flags >> 2);
  g_trace =
      fmtstr("queue capacity=%u max_payload=%u max_attempts=%u dedup_window=%lld dedup_keys=%u\n", o.capacity,
             o.max_payload, o.max_attempts, static_cast<long long>(o.dedup_window.count()), o.dedup_keys);
  Queue::remove(g_name);
  Queue a = Queue::create(g_name, o);
  Queue b = Queue::open(g_name);
  Queue::remove(g_name);  // both handles keep the segment
  Harness h(std::move(a), std::move(b), o);
  h.run(in);
  if (g_print_trace) std::fprintf(stderr, "%s", g_trace.c_str());
  return 0;
}
