// Fuzz target "segment" (guarantee 9, hostile input): the input is the bytes
// of a segment file, followed by a program of operations (format in
// fuzz_support.hpp). The segment is written to /dev/shm/jobring.fuzz.seg.PID
// and opened. Open must either fail with a clean jobring error code
// (not_a_queue, incompatible_version, corrupt_segment, incomplete_segment) or
// give a queue on which every operation of the program — push, claim, ack,
// release and extend with real or forged leases, batches, stats, peek,
// requeue, purge, sweep, a second open, bytes poked into the live mapping,
// and blocking claims and pushes with a 1 ms wait — runs without a crash, a sanitizer report, an exception
// other than the documented jobring::error, or a result outside the queue's bounds (a payload over
// max_payload, a slot index over capacity, stats gauges that do not add up to the capacity).
//
// With the "repair" flag the first 128 bytes of the header (identity,
// geometry, init word, key table fields) are copied from a genuine queue of a
// capacity and max_payload chosen by the fuzzed header, and the file is cut
// or padded to that queue's size: then the fuzzer spends its time on what a
// hostile process can put in the state words, slot metadata, payloads, key
// table and the rest of the header, past open()'s validation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "jobring/error.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::errc;
using jobring::Job;
using jobring::JobState;
using jobring::Lease;
using jobring::milliseconds;
using jobring::Options;
using jobring::Owner;
using jobring::PurgeWhat;
using jobring::PushOptions;
using jobring::Queue;
using jobring::detail::Header;
using jobring::fuzz::Bytes;
using jobring::fuzz::fail;
using jobring::fuzz::SegOp;

std::string g_name;          // the queue this process fuzzes
std::string g_path;          // its file in /dev/shm
int g_fd = -1;               // kept open across inputs
bool g_print_trace = false;  // JOBRING_FUZZ_TRACE=1: say what each input did

void cleanup() {
  if (!g_name.empty()) (void)::unlink(g_path.c_str());
}

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::vector<std::uint8_t> out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    out.resize(done);
  }
  ::close(fd);
  return out;
}

// Replaces the whole file with `bytes` (the previous input's queue is closed).
void write_segment(const std::vector<std::uint8_t>& bytes) {
  if (g_fd < 0) {
    g_fd = ::open(g_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (g_fd < 0) fail("cannot create %s: %s", g_path.c_str(), std::strerror(errno));
  }
  if (::ftruncate(g_fd, 0) != 0 || ::ftruncate(g_fd, static_cast<off_t>(bytes.size())) != 0)
    fail("ftruncate %s: %s", g_path.c_str(), std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(g_fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n <= 0) fail("write %s: %s", g_path.c_str(), std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
}

template <class T>
T load(const std::vector<std::uint8_t>& bytes, std::size_t offset) {
  T value{};
  if (offset + sizeof value <= bytes.size()) std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

// The first 128 bytes and the size of a genuine queue, per (capacity, max_payload).
struct Genuine {
  std::vector<std::uint8_t> head;
  std::size_t size = 0;
};

const Genuine& genuine(std::uint32_t capacity, std::uint32_t max_payload) {
  static std::map<std::pair<std::uint32_t, std::uint32_t>, Genuine> cache;
  auto [it, inserted] = cache.try_emplace({capacity, max_payload});
  if (inserted) {
    const std::string name = g_name + ".g";
    Queue::remove(name);
    Options o;
    o.capacity = capacity;
    o.max_payload = max_payload;
    o.default_lease = 1h;
    { (void)Queue::create(name, o); }
    auto bytes = read_file("/dev/shm/jobring." + name);
    Queue::remove(name);
    if (bytes.size() < 2 * jobring::detail::kCacheLine) fail("genuine queue of %zu bytes", bytes.size());
    it->second.size = bytes.size();
    bytes.resize(2 * jobring::detail::kCacheLine);
    it->second.head = std::move(bytes);
  }
  return it->second;
}

// kRepairHeader: lines 0-1 from a genuine queue, the file cut or padded to
// its size. The capacity (1..16), max_payload (1..128) and max_attempts
// (0..7; open() does not bound it) come from the fuzzed header.
void repair(std::vector<std::uint8_t>& seg) {
  const auto capacity = load<std::uint32_t>(seg, offsetof(Header, identity.capacity)) % 16 + 1;
  const auto max_payload = load<std::uint32_t>(seg, offsetof(Header, identity.max_payload)) % 128 + 1;
  const auto max_attempts = load<std::uint32_t>(seg, offsetof(Header, identity.max_attempts)) % 8;
  const Genuine& g = genuine(capacity, max_payload);
  seg.resize(g.size, 0);
  std::memcpy(seg.data(), g.head.data(), g.head.size());
  std::memcpy(seg.data() + offsetof(Header, identity.max_attempts), &max_attempts, sizeof max_attempts);
}

bool acceptable_open_error(const std::error_code& ec) {
  return ec == errc::not_a_queue || ec == errc::incompatible_version || ec == errc::corrupt_segment ||
         ec == errc::incomplete_segment;
}

milliseconds duration_for(std::uint8_t sel) {
  switch (sel % 6) {
    case 0:
      return 0ms;
    case 1:
      return 1ms;
    case 2:
      return 1h;
    case 3:
      return jobring::kMaxLease;
    case 4:
      return -1ms;  // invalid
    default:
      return jobring::kMaxLease + 1ms;  // invalid
  }
}

class Runner {
 public:
  Runner(Queue queue, const std::vector<std::uint8_t>& seg) : primary_(std::move(queue)), q_(&primary_) {
    capacity_ = q_->options().capacity;
    max_payload_ = q_->options().max_payload;
    JOBRING_FUZZ_CHECK(capacity_ >= 1 && capacity_ <= jobring::kMaxCapacity, "capacity %u", capacity_);
    JOBRING_FUZZ_CHECK(max_payload_ >= 1 && max_payload_ <= jobring::kMaxPayload, "max_payload %u",
                       max_payload_);
    size_ = seg.size();
    states_offset_ = load<std::uint64_t>(seg, offsetof(Header, identity.states_offset));
    slots_offset_ = load<std::uint64_t>(seg, offsetof(Header, identity.slots_offset));
    stride_ = load<std::uint32_t>(seg, offsetof(Header, identity.slot_stride));
  }

  [[nodiscard]] std::uint32_t capacity() const { return capacity_; }

  // Returns how many operations ran.
  int run(Bytes& in) {
    int ops = 0;
    for (; ops < 64 && !in.empty(); ++ops) {
      const auto op = static_cast<SegOp>(in.u8() % static_cast<std::uint8_t>(SegOp::count));
      try {
        step(op, in);
      } catch (const jobring::error& e) {
        // Documented throws: a lease, delay or wait out of range, or a
        // payload over max_payload (push_many).
        JOBRING_FUZZ_CHECK(e.code() == errc::invalid_argument || e.code() == errc::payload_too_large,
                           "op %d threw %s", static_cast<int>(op), e.what());
      }
    }
    check_stats();
    for (JobState s : {JobState::ready, JobState::delayed, JobState::leased, JobState::dead})
      check_peek(s, 1000);
    return ops;
  }

 private:
  void step(SegOp op, Bytes& in) {
    switch (op) {
      case SegOp::push: {  // len, delay, key, payload bytes
        const auto payload = payload_from(in);
        PushOptions po;
        po.delay = duration_for(in.u8());
        std::string key = key_from(in);
        po.key = key;
        std::error_code ec;
        const auto r = q_->push(as_bytes(payload), po, ec);
        // (The job id comes from the segment's counter: any value is possible.)
        (void)r;
        if (ec)
          JOBRING_FUZZ_CHECK(ec == errc::invalid_argument || ec == errc::payload_too_large, "push: %s",
                             ec.message().c_str());
        break;
      }
      case SegOp::push_many: {  // n, then n × (len, payload bytes)
        const std::size_t n = in.u8() % 4 + 1;
        std::vector<std::vector<std::uint8_t>> payloads;
        std::vector<std::span<const std::byte>> spans;
        for (std::size_t i = 0; i < n; ++i) payloads.push_back(payload_from(in));
        for (const auto& p : payloads) spans.push_back(as_bytes(p));
        std::vector<jobring::JobId> ids(n);
        const std::size_t pushed = q_->push_many(spans, ids);
        JOBRING_FUZZ_CHECK(pushed <= n, "push_many pushed %zu of %zu", pushed, n);
        break;
      }
      case SegOp::try_claim: {  // lease, owner
        ClaimOptions co = claim_options(in);
        if (q_->try_claim(job_, co) == jobring::ClaimStatus::ok) took(job_);
        break;
      }
      case SegOp::try_claim_many: {  // n, lease, owner
        const std::size_t n = in.u8() % 4 + 1;
        ClaimOptions co = claim_options(in);
        const std::size_t got = q_->try_claim_many(std::span<Job>(jobs_).first(n), co);
        JOBRING_FUZZ_CHECK(got <= n, "try_claim_many claimed %zu of %zu", got, n);
        for (std::size_t i = 0; i < got; ++i) took(jobs_[i]);
        break;
      }
      case SegOp::ack:  // lease index
        (void)q_->ack(pick_lease(in));
        break;
      case SegOp::release: {  // lease index, delay
        const Lease l = pick_lease(in);
        (void)q_->release(l, duration_for(in.u8()));
        break;
      }
      case SegOp::extend: {  // lease index, lease time
        Lease l = pick_lease(in);
        (void)q_->extend(l, duration_for(in.u8()));
        break;
      }
      case SegOp::ack_many: {  // n, n × lease index
        const std::size_t n = in.u8() % 4 + 1;
        std::vector<Lease> ls;
        for (std::size_t i = 0; i < n; ++i) ls.push_back(pick_lease(in));
        std::vector<jobring::LeaseStatus> results(n);
        const std::size_t acked = q_->ack_many(ls, results);
        JOBRING_FUZZ_CHECK(acked <= n, "ack_many acked %zu of %zu", acked, n);
        break;
      }
      case SegOp::stats:
        check_stats();
        break;
      case SegOp::peek: {  // state, limit
        const auto s = static_cast<JobState>(in.u8() % 4);
        check_peek(s, in.u8());
        break;
      }
      case SegOp::requeue:  // id
        (void)q_->requeue(job_id_from(in));
        break;
      case SegOp::requeue_dead:
        (void)q_->requeue_dead();
        break;
      case SegOp::remove_dead:  // id
        (void)q_->remove_dead(job_id_from(in));
        break;
      case SegOp::purge:  // what
        (void)q_->purge(static_cast<PurgeWhat>(in.u8() % 7 + 1));
        break;
      case SegOp::sweep: {
        const auto r = q_->sweep();
        JOBRING_FUZZ_CHECK(r.reclaimed + r.expired <= capacity_ && r.recovered_writes <= capacity_,
                           "sweep counted more slots than the queue has");
        break;
      }
      case SegOp::poke: {  // offset (u32), length (1..8), bytes: a hostile process writes into the mapping
        const std::uint64_t offset = in.u32() % size_;
        const std::size_t n = std::min<std::size_t>(in.u8() % 8 + 1, size_ - offset);
        const auto bytes = in.take(n);
        if (!bytes.empty() && ::pwrite(g_fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) !=
                                  static_cast<ssize_t>(bytes.size()))
          fail("poke: %s", std::strerror(errno));
        break;
      }
      case SegOp::reopen: {  // a second handle, opened now (after any pokes)
        std::error_code ec;
        auto q = Queue::open(g_name, ec, 0ms);
        if (!q) {
          JOBRING_FUZZ_CHECK(acceptable_open_error(ec), "reopen: %s", ec.message().c_str());
          break;
        }
        // The header's line 0 is validated again: it may have been poked.
        if (q->options().capacity != capacity_ || q->options().max_payload != max_payload_) break;
        second_.emplace(std::move(*q));
        q_ = &*second_;
        break;
      }
      case SegOp::forge_lease: {  // slot (u32), kind; kind 1: token (u64), job (u64)
        Lease l;
        l.slot = in.u32() % (capacity_ + 1);
        if (in.u8() % 2 == 0 && l.slot < capacity_) {
          // The slot's real word and job id, as a process that reads the
          // segment could forge them.
          l.token = read_u64(states_offset_ + std::uint64_t{l.slot} * 8);
          l.job = read_u64(slots_offset_ + std::uint64_t{l.slot} * stride_ +
                           offsetof(jobring::detail::SlotMeta, job_id));
        } else {
          l.token = in.u64();
          l.job = in.u64();
        }
        remember(l);
        break;
      }
      case SegOp::wait: {  // kind: blocking claim, claim_many or push, for 1 ms (at most 2 per input)
        if (++waits_ > 2) break;
        const std::uint8_t sel = in.u8();
        if (sel % 3 == 0) {
          if (q_->claim(job_, 1ms) == jobring::ClaimStatus::ok) took(job_);
        } else if (sel % 3 == 1) {
          const std::size_t got = q_->claim_many(jobs_, 1ms);
          JOBRING_FUZZ_CHECK(got <= jobs_.size(), "claim_many claimed %zu", got);
          for (std::size_t i = 0; i < got; ++i) took(jobs_[i]);
        } else {
          PushOptions po;
          po.wait = 1ms;
          (void)q_->push("w", po);
        }
        break;
      }
      case SegOp::count:
        break;
    }
  }

  std::vector<std::uint8_t> payload_from(Bytes& in) {
    const std::size_t len = in.u8() % (std::min<std::uint32_t>(max_payload_, 250) + 2);
    std::vector<std::uint8_t> p(len, 0x5a);
    const auto bytes = in.take(std::min<std::size_t>(len, 8));
    if (!bytes.empty()) std::memcpy(p.data(), bytes.data(), bytes.size());
    if (len > max_payload_) p.resize(static_cast<std::size_t>(max_payload_) + 1);  // too large
    return p;
  }
  static std::span<const std::byte> as_bytes(const std::vector<std::uint8_t>& p) {
    return std::as_bytes(std::span<const std::uint8_t>(p));
  }
  static std::string key_from(Bytes& in) {
    const std::uint8_t sel = in.u8();
    if (sel < 128) return {};
    if (sel < 250) return "k" + std::to_string(sel % 8);
    if (sel == 250) return std::string(jobring::kMaxKeyLength + 1, 'x');  // invalid: too long
    const auto bytes = in.take(in.u8() % jobring::kMaxKeyLength + 1);
    return std::string(bytes.begin(), bytes.end());
  }
  static ClaimOptions claim_options(Bytes& in) {
    ClaimOptions co;
    const std::uint8_t sel = in.u8();
    co.lease = duration_for(sel);
    co.owner = (sel & 0x80) != 0 ? Owner::detached : Owner::process;
    return co;
  }
  static jobring::JobId job_id_from(Bytes& in) {
    const std::uint8_t sel = in.u8();
    return sel == 255 ? in.u64() : sel;
  }
  Lease pick_lease(Bytes& in) {
    const std::uint8_t sel = in.u8();
    if (leases_.empty()) return Lease{};
    return leases_[sel % leases_.size()];
  }
  void remember(const Lease& l) {
    if (leases_.size() >= 16) leases_.erase(leases_.begin());
    leases_.push_back(l);
  }
  std::uint64_t read_u64(std::uint64_t offset) const {
    std::uint64_t v = 0;
    if (offset + sizeof v <= size_) (void)::pread(g_fd, &v, sizeof v, static_cast<off_t>(offset));
    return v;
  }

  void took(const Job& job) {
    JOBRING_FUZZ_CHECK(job.payload().size() <= max_payload_, "claimed a payload of %zu bytes, max_payload %u",
                       job.payload().size(), max_payload_);
    JOBRING_FUZZ_CHECK(job.lease.slot < capacity_, "lease slot %u, capacity %u", job.lease.slot, capacity_);
    JOBRING_FUZZ_CHECK(job.lease.job == job.id, "lease names job %llu, job is %llu",
                       static_cast<unsigned long long>(job.lease.job),
                       static_cast<unsigned long long>(job.id));
    JOBRING_FUZZ_CHECK(job.key().size() <= jobring::kMaxKeyLength, "key of %zu bytes", job.key().size());
    const auto parsed = Lease::parse(job.lease.to_string());
    JOBRING_FUZZ_CHECK(parsed && *parsed == job.lease, "lease %s does not parse back",
                       job.lease.to_string().c_str());
    remember(job.lease);
  }

  void check_stats() const {
    const jobring::Stats s = q_->stats();
    // One pass over the slots, and nobody else changes them: every slot is
    // counted exactly once.
    const std::uint64_t sum =
        s.free + s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead + s.corrupt;
    JOBRING_FUZZ_CHECK(sum == capacity_, "stats gauges add up to %llu, capacity %u",
                       static_cast<unsigned long long>(sum), capacity_);
  }

  void check_peek(JobState state, std::size_t limit) const {
    const auto infos = q_->peek(state, limit);
    JOBRING_FUZZ_CHECK(infos.size() <= limit && infos.size() <= capacity_, "peek returned %zu jobs",
                       infos.size());
    for (const auto& info : infos) {
      JOBRING_FUZZ_CHECK(info.state == state, "peek of one state returned another");
      JOBRING_FUZZ_CHECK(info.slot < capacity_, "peek slot %u, capacity %u", info.slot, capacity_);
      JOBRING_FUZZ_CHECK(info.payload.size() <= max_payload_, "peek payload of %zu bytes",
                         info.payload.size());
      // A dead job's note, however forged, is clamped to its area; other
      // states have none.
      JOBRING_FUZZ_CHECK(info.error.size() <= jobring::kMaxErrorLength, "peek error of %zu bytes",
                         info.error.size());
      JOBRING_FUZZ_CHECK(state == JobState::dead || (info.error.empty() && !info.failed_ms_ago),
                         "a %s job with a note", state == JobState::ready ? "ready" : "non-dead");
    }
  }

  Queue primary_;
  std::optional<Queue> second_;
  Queue* q_;
  std::uint32_t capacity_ = 0;
  std::uint32_t max_payload_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t states_offset_ = 0;
  std::uint64_t slots_offset_ = 0;
  std::uint64_t stride_ = 0;
  std::vector<Lease> leases_;
  int waits_ = 0;
  Job job_;
  std::vector<Job> jobs_ = std::vector<Job>(4);
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_name = jobring::fuzz::process_name("seg");
  g_path = "/dev/shm/jobring." + g_name;
  std::atexit(cleanup);
  g_print_trace = std::getenv("JOBRING_FUZZ_TRACE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::size_t seg_size = size;
  std::size_t prog_size = 0;
  std::uint8_t flags = 0;
  if (size >= 2) {
    prog_size = std::min<std::size_t>(data[size - 1], size - 2);
    flags = data[size - 2];
    seg_size = size - 2 - prog_size;
  }
  std::vector<std::uint8_t> seg(data, data + seg_size);
  if ((flags & jobring::fuzz::kRepairHeader) != 0) repair(seg);
  write_segment(seg);

  std::error_code ec;
  // init_wait 0: a segment whose init word is not published fails at once
  // (incomplete_segment) instead of after a second.
  auto q = Queue::open(g_name, ec, 0ms);
  if (!q) {
    JOBRING_FUZZ_CHECK(acceptable_open_error(ec), "open failed with %s", ec.message().c_str());
    if (g_print_trace)
      std::fprintf(stderr, "segment of %zu bytes: open: %s\n", seg.size(), ec.message().c_str());
    return 0;
  }
  Bytes program(data + seg_size, prog_size);
  Runner runner(std::move(*q), seg);
  const int ops = runner.run(program);
  if (g_print_trace)
    std::fprintf(stderr, "segment of %zu bytes: opened (capacity %u), %d operations\n", seg.size(),
                 runner.capacity(), ops);
  return 0;
}
