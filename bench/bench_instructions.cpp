// Figures that noise does not move: instructions per job, and shared-memory
// cache lines written per job on each side, for jobring, the bare ring and
// Boost message_queue (peers.hpp). Not a Google Benchmark binary: a plain
// driver that bench/compare runs, in two modes.
//
//   jobring-bench-instructions count SYSTEM N
//     Warms up (two laps of the ring: every slot touched, the Job's buffer
//     allocated), then runs N cycles of one 64-byte job — jobring: push +
//     try_claim + ack; ring: try_push + try_pop; boost_mq: send + receive,
//     as in bench_cycle — inside jobring_bench_measured(), the one function
//     to count. Run it under
//       valgrind --tool=callgrind --collect-atstart=no
//                --toggle-collect=jobring_bench_measured
//     and divide the "totals" line of the callgrind output by N; the
//     inclusive cost of its calls to jobring_bench_push, _claim and _ack
//     (--compress-strings=no makes them easy to read) splits it by step,
//     each including the few instructions of its call. Under
//     valgrind the vDSO is not used: clock_gettime is a system call whose
//     kernel side is not counted (bench_cycle's BM_Clock gives its cost).
//
//   jobring-bench-instructions lines SYSTEM N
//     Runs N cycles natively and, around each step, compares a private copy
//     of the whole shared mapping with the mapping, 64 bytes at a time: the
//     cache lines whose contents a step changed. Prints one line per step
//     and per side (producer: push / send; worker: claim + ack / pop /
//     receive), averaged over the N jobs:
//       lines SYSTEM STEP AVERAGE
//     and the lines written by both sides of the same job ("both"), which
//     move between the producer's and the worker's caches on every job
//     when the two run on different cores; then, for the last job, the
//     byte offsets of the lines each side wrote:
//       where SYSTEM producer|worker OFFSET...
//     A line written with the value
//     it already held is not seen, so this is a lower bound of the lines
//     stored to; bench/README.md has the model it checks.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "jobring/queue.hpp"
#include "peers.hpp"

namespace {

constexpr std::uint32_t kCapacity = 1024;
constexpr std::size_t kPayload = 64;
constexpr std::size_t kLine = 64;

enum class System { jobring, ring, boost_mq };

// The three systems behind one interface: a producer step and a worker step
// (the worker step split in two for jobring: claim, then ack).
class Subject {
 public:
  virtual ~Subject() = default;
  virtual bool push() = 0;
  virtual bool claim() = 0;
  virtual bool ack() = 0;  // no-op for the peers: their pop is claim and ack in one
  // A payload unlike every earlier one (the lines mode: a payload stored
  // over the same bytes would not show as written).
  void vary_payload(std::uint64_t n) noexcept {
    for (std::size_t off = 0; off < kPayload; off += sizeof n)
      std::memcpy(payload_.data() + off, &n, sizeof n);
  }
  // The shared mapping, for the lines mode.
  virtual const std::byte* shared() const = 0;
  virtual std::size_t shared_bytes() const = 0;

 protected:
  std::array<std::byte, kPayload> payload_{};
};

// A read-only second mapping of a /dev/shm file: the same memory the queue
// writes, seen from outside it.
class ShmView {
 public:
  explicit ShmView(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) {
        base_ = static_cast<const std::byte*>(p);
        bytes_ = static_cast<std::size_t>(st.st_size);
      }
    }
    ::close(fd);
  }
  ShmView(const ShmView&) = delete;
  ShmView& operator=(const ShmView&) = delete;
  ~ShmView() {
    if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), bytes_);
  }
  [[nodiscard]] const std::byte* data() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }

 private:
  const std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
};

std::string unique_name(const char* what) {
  return std::string("bench.") + what + "." + std::to_string(::getpid());
}

class JobringSubject final : public Subject {
 public:
  JobringSubject() : name_(unique_name("instr")) {
    jobring::Queue::remove(name_);
    jobring::Options o;
    o.capacity = kCapacity;
    o.max_payload = kPayload;
    q_.emplace(jobring::Queue::create(name_, o));
    view_ = std::make_unique<ShmView>("/dev/shm/jobring." + name_);
  }
  ~JobringSubject() override {
    view_.reset();
    q_.reset();
    jobring::Queue::remove(name_);
  }
  bool push() override { return static_cast<bool>(q_->push(payload_)); }
  bool claim() override { return q_->try_claim(job_) == jobring::ClaimStatus::ok; }
  bool ack() override { return q_->ack(job_.lease) == jobring::LeaseStatus::ok; }
  const std::byte* shared() const override { return view_->data(); }
  std::size_t shared_bytes() const override { return view_->size(); }

 private:
  std::string name_;
  std::optional<jobring::Queue> q_;
  std::unique_ptr<ShmView> view_;
  jobring::Job job_;
};

class RingSubject final : public Subject {
 public:
  RingSubject() : ring_(kCapacity, kPayload) {}
  bool push() override { return ring_.try_push(payload_); }
  bool claim() override { return ring_.try_pop(out_.data()) >= 0; }
  bool ack() override { return true; }
  const std::byte* shared() const override { return ring_.data(); }
  std::size_t shared_bytes() const override { return ring_.bytes(); }

 private:
  bench::ShmRing ring_;
  std::array<std::byte, kPayload> out_{};
};

class BoostSubject final : public Subject {
 public:
  BoostSubject() : mq_(unique_name("instrmq"), kCapacity, kPayload), view_("/dev/shm/" + mq_.name()) {}
  bool push() override {
    mq_.get().send(payload_.data(), payload_.size(), 0);
    return true;
  }
  bool claim() override {
    std::size_t got = 0;
    unsigned priority = 0;
    mq_.get().receive(out_.data(), out_.size(), got, priority);
    return got == kPayload;
  }
  bool ack() override { return true; }
  const std::byte* shared() const override { return view_.data(); }
  std::size_t shared_bytes() const override { return view_.size(); }

 private:
  bench::BoostMq mq_;
  ShmView view_;
  std::array<std::byte, kPayload> out_{};
};

bool cycles(Subject& s, long n) {
  for (long i = 0; i < n; ++i)
    if (!s.push() || !s.claim() || !s.ack()) return false;
  return true;
}

}  // namespace

// The functions callgrind sees: extern "C" for names that need no
// demangling, called through volatile pointers so that the compiler neither
// inlines nor clones them. jobring_bench_measured is the one counted
// (--toggle-collect); the steps it calls are separate functions so that
// callgrind's inclusive cost of each call splits the total by step.
extern "C" {
[[gnu::noinline]] bool jobring_bench_push(Subject* s) { return s->push(); }
[[gnu::noinline]] bool jobring_bench_claim(Subject* s) { return s->claim(); }
[[gnu::noinline]] bool jobring_bench_ack(Subject* s) { return s->ack(); }
}

namespace {

bool (*volatile g_push)(Subject*) = &jobring_bench_push;
bool (*volatile g_claim)(Subject*) = &jobring_bench_claim;
bool (*volatile g_ack)(Subject*) = &jobring_bench_ack;

}  // namespace

extern "C" [[gnu::noinline]] int jobring_bench_measured(Subject* s, long n) {
  for (long i = 0; i < n; ++i)
    if (!g_push(s) || !g_claim(s) || !g_ack(s)) return 1;
  return 0;
}

namespace {

int (*volatile g_measured)(Subject*, long) = &jobring_bench_measured;

// Lines of `now` that differ from `before`, as line indices.
std::set<std::size_t> changed(const std::vector<std::byte>& before, const std::byte* now, std::size_t bytes) {
  std::set<std::size_t> out;
  for (std::size_t off = 0; off < bytes; off += kLine)
    if (std::memcmp(before.data() + off, now + off, std::min(kLine, bytes - off)) != 0)
      out.insert(off / kLine);
  return out;
}

int lines(Subject& s, const char* system, long n) {
  const std::byte* mem = s.shared();
  const std::size_t bytes = s.shared_bytes();
  if (mem == nullptr || bytes == 0) {
    std::fprintf(stderr, "cannot map the shared memory of %s\n", system);
    return 1;
  }
  std::vector<std::byte> snap(bytes);
  double push = 0, claim = 0, ack = 0, worker = 0, both = 0;
  for (long i = 0; i < n; ++i) {
    s.vary_payload(static_cast<std::uint64_t>(i) + 1);
    std::memcpy(snap.data(), mem, bytes);
    if (!s.push()) return 1;
    const auto p = changed(snap, mem, bytes);
    std::memcpy(snap.data(), mem, bytes);
    if (!s.claim()) return 1;
    auto w = changed(snap, mem, bytes);
    const std::size_t c = w.size();
    std::memcpy(snap.data(), mem, bytes);
    if (!s.ack()) return 1;
    const auto a = changed(snap, mem, bytes);
    w.insert(a.begin(), a.end());
    push += static_cast<double>(p.size());
    claim += static_cast<double>(c);
    ack += static_cast<double>(a.size());
    worker += static_cast<double>(w.size());
    for (const std::size_t line : p) both += w.count(line) != 0 ? 1 : 0;
    if (i + 1 == n) {
      // Which lines, for the last job: byte offsets in the mapping.
      auto show = [&](const char* step, const std::set<std::size_t>& set) {
        std::printf("where %s %s", system, step);
        for (const std::size_t line : set) std::printf(" %zu", line * kLine);
        std::printf("\n");
      };
      show("producer", p);
      show("worker", w);
    }
  }
  const auto dn = static_cast<double>(n);
  std::printf("lines %s push %.3f\n", system, push / dn);
  std::printf("lines %s claim %.3f\n", system, claim / dn);
  std::printf("lines %s ack %.3f\n", system, ack / dn);
  std::printf("lines %s producer %.3f\n", system, push / dn);
  std::printf("lines %s worker %.3f\n", system, worker / dn);
  std::printf("lines %s both %.3f\n", system, both / dn);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s count|lines jobring|ring|boost_mq N\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::string system = argv[2];
  const long n = std::atol(argv[3]);
  std::unique_ptr<Subject> s;
  if (system == "jobring") {
    s = std::make_unique<JobringSubject>();
  } else if (system == "ring") {
    s = std::make_unique<RingSubject>();
  } else if (system == "boost_mq") {
    s = std::make_unique<BoostSubject>();
  } else {
    std::fprintf(stderr, "unknown system %s\n", system.c_str());
    return 2;
  }
  if (n <= 0 || (mode != "count" && mode != "lines")) {
    std::fprintf(stderr, "usage: %s count|lines jobring|ring|boost_mq N\n", argv[0]);
    return 2;
  }
  // Warm-up: two laps, so that every slot, every page and the Job's buffer
  // have been touched before anything is counted.
  if (!cycles(*s, 2 * static_cast<long>(kCapacity))) {
    std::fprintf(stderr, "%s: a warm-up cycle failed\n", system.c_str());
    return 1;
  }
  if (mode == "lines") return lines(*s, system.c_str(), n);
  const int rc = g_measured(s.get(), n);
  if (rc != 0) std::fprintf(stderr, "%s: a measured cycle failed\n", system.c_str());
  std::printf("cycles %s %ld\n", system.c_str(), n);
  return rc;
}
