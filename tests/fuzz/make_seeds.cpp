// Writes the seed corpus of the fuzz targets: jobring-fuzz-seeds DIR writes
// DIR/segment/* and DIR/model/* (scripts/fuzz --make-seeds puts them in
// tests/fuzz/corpus/). Run it again when the segment layout changes: the
// segment seeds are the bytes of real queues made by this library, with jobs
// in every state, a few forged crash states, and programs that call every
// operation (the formats are in fuzz_support.hpp).
//
// File-backed segments (layout 7, issue 18) are made in a temporary
// directory under a boot id of their own ("jobring-fuzz-seed-boot", set with
// the testing hook): no host ever runs that boot, so the fuzzer's open of
// such a seed is the first open after a "reboot" and runs the recovery pass
// (durable.cpp) over whatever the fuzzer made of the slots and the durable
// header line.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

#include "fuzz_support.hpp"
#include "jobring/queue.hpp"
#include "ring/layout.hpp"
#include "ring/testing.hpp"  // set_boot_id_for_testing: the file-backed seeds' boot

namespace {

using namespace std::chrono_literals;
using jobring::ClaimOptions;
using jobring::Job;
using jobring::Options;
using jobring::Owner;
using jobring::PushOptions;
using jobring::Queue;
using jobring::detail::Durable;
using jobring::detail::Header;
using jobring::detail::SlotMeta;
using jobring::detail::State;
using jobring::detail::Word;
using jobring::fuzz::ModelOp;
using jobring::fuzz::SegOp;
using Bytes = std::vector<std::uint8_t>;

std::filesystem::path g_dir;

void write_file(const std::string& sub, const std::string& name, const Bytes& bytes) {
  const auto path = g_dir / sub / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::printf("  %-40s %6zu bytes\n", (sub + "/" + name).c_str(), bytes.size());
}

Bytes read_file(const std::string& path) {
  Bytes out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  std::uint8_t buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
  std::fclose(f);
  return out;
}

Bytes read_segment(const std::string& name) { return read_file("/dev/shm/jobring." + name); }

template <class T>
T get(const Bytes& b, std::size_t off) {
  T v{};
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}
template <class T>
void put(Bytes& b, std::size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

// Offsets of slot i's state word and metadata in an image.
std::size_t state_at(const Bytes& img, std::uint32_t i) {
  return static_cast<std::size_t>(get<std::uint64_t>(img, offsetof(Header, identity.states_offset))) +
         std::size_t{i} * 8;
}
std::size_t meta_at(const Bytes& img, std::uint32_t i) {
  return static_cast<std::size_t>(get<std::uint64_t>(img, offsetof(Header, identity.slots_offset)) +
                                  std::uint64_t{i} *
                                      get<std::uint32_t>(img, offsetof(Header, identity.slot_stride)));
}

// A program: opcode bytes and their arguments.
struct Prog {
  Bytes b;
  Prog& op(SegOp o, std::initializer_list<std::uint8_t> args = {}) {
    return raw(static_cast<std::uint8_t>(o), args);
  }
  Prog& op(ModelOp o, std::initializer_list<std::uint8_t> args = {}) {
    return raw(static_cast<std::uint8_t>(o), args);
  }
  Prog& raw(std::uint8_t first, std::initializer_list<std::uint8_t> args) {
    b.push_back(first);
    b.insert(b.end(), args);
    return *this;
  }
};

// segment ‖ program ‖ flags ‖ program length
Bytes segment_input(const Bytes& seg, const Prog& prog, std::uint8_t flags) {
  Bytes out = seg;
  const std::size_t n = std::min<std::size_t>(prog.b.size(), 255);
  out.insert(out.end(), prog.b.begin(), prog.b.begin() + static_cast<std::ptrdiff_t>(n));
  out.push_back(flags);
  out.push_back(static_cast<std::uint8_t>(n));
  return out;
}

// A program that calls every operation of the segment target once or twice.
Prog every_segment_op() {
  Prog p;
  p.op(SegOp::stats)
      .op(SegOp::peek, {0, 10})
      .op(SegOp::push, {3, 'a', 'b', 'c', 0, 0})  // 3 bytes, no delay, no key
      .op(SegOp::push, {2, 'd', 'e', 2, 200})     // delayed 1 h, key "k0"
      .op(SegOp::push_many, {1, 1, 'x', 1, 'y'})  // counts are encoded as n - 1
      .op(SegOp::try_claim, {2})                  // lease 1 h, process-owned
      .op(SegOp::try_claim, {0x82})               // lease 1 h, detached
      .op(SegOp::try_claim_many, {2, 2})
      .op(SegOp::extend, {0, 2})
      .op(SegOp::release, {1, 0})
      .op(SegOp::ack, {0})
      .op(SegOp::ack_many, {2, 0, 1, 2})
      .op(SegOp::forge_lease, {0, 0, 0, 0, 0})  // slot 0, its real word and job id
      .op(SegOp::ack, {5})
      .op(SegOp::requeue_dead)
      .op(SegOp::requeue, {1})
      .op(SegOp::remove_dead, {2})
      .op(SegOp::sweep)
      .op(SegOp::peek, {2, 10})
      .op(SegOp::peek, {3, 10})
      .op(SegOp::poke, {0, 0, 0, 0, 0, 0})  // offset 0, 1 byte 0: the magic (after open)
      .op(SegOp::reopen)
      .op(SegOp::purge, {6})
      .op(SegOp::wait, {0})  // a claim waiting 1 ms
      .op(SegOp::wait, {2})  // a push waiting 1 ms for room
      .op(SegOp::stats);
  return p;
}

// A queue with jobs in every state: ready, delayed, leased (process-owned
// and detached), dead, keyed.
Bytes image_every_state(std::uint32_t capacity, std::uint32_t max_payload) {
  const std::string name = jobring::fuzz::process_name("seeds");
  Queue::remove(name);
  {
    Options o;
    o.capacity = capacity;
    o.max_payload = max_payload;
    o.default_lease = 1h;
    o.max_attempts = 1;
    Queue q = Queue::create(name, o);
    (void)q.push("dead");
    Job j;
    (void)q.try_claim(j);
    (void)q.release(j.lease);  // attempts used up: dead
    (void)q.push("leased-process");
    (void)q.try_claim(j);
    (void)q.push("leased-detached");
    (void)q.try_claim(j, ClaimOptions{.lease = 1h, .owner = Owner::detached});
    (void)q.push("ready");
    (void)q.push("delayed", PushOptions{.delay = 1h});
    (void)q.push("keyed", PushOptions{.key = "order-42"});
  }
  Bytes img = read_segment(name);
  Queue::remove(name);
  return img;
}

Bytes image_plain(std::uint32_t capacity, std::uint32_t max_payload, int jobs) {
  const std::string name = jobring::fuzz::process_name("seeds");
  Queue::remove(name);
  {
    Queue q = Queue::create(name, Options{.capacity = capacity, .max_payload = max_payload});
    for (int i = 0; i < jobs; ++i) (void)q.push("job" + std::to_string(i));
  }
  Bytes img = read_segment(name);
  Queue::remove(name);
  return img;
}

// A file-backed queue (layout 7) with jobs in every state, made under a
// boot of its own (see the top): ready, delayed (an hour), leased
// (process-owned and detached), leased on its last attempt (the recovery
// dead-letters it), dead, keyed (live, and acked: remembered in the window),
// and a slot half-written by a producer of the old boot (forged: the
// recovery frees it).
Bytes image_durable_every_state(std::uint32_t capacity, std::uint32_t max_payload, Options::Sync sync) {
  char tmp[] = "/tmp/jobring-seeds.XXXXXX";
  if (::mkdtemp(tmp) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  const std::string dir = tmp;
  jobring::detail::set_boot_id_for_testing("jobring-fuzz-seed-boot");
  {
    Options o;
    o.capacity = capacity;
    o.max_payload = max_payload;
    o.default_lease = 1h;
    o.max_attempts = 2;
    o.dedup_window = 1h;
    o.dir = dir;
    o.sync = sync;
    Queue q = Queue::create("seeds", o);
    Job j;
    (void)q.push("dead");
    for (int i = 0; i < 2; ++i) {
      (void)q.try_claim(j);
      (void)q.release(j.lease);  // the second release uses the attempts up: dead
    }
    (void)q.push("last-attempt");
    (void)q.try_claim(j);
    (void)q.release(j.lease);
    (void)q.try_claim(j);  // attempt 2 of 2, held over the "reboot"
    (void)q.push("leased-process");
    (void)q.try_claim(j);
    (void)q.push("leased-detached");
    (void)q.try_claim(j, ClaimOptions{.lease = 1h, .owner = Owner::detached});
    (void)q.push("acked-keyed", PushOptions{.key = "order-41"});
    (void)q.try_claim(j);
    (void)q.ack(j.lease);  // its key remembered for the window
    (void)q.push("ready");
    (void)q.push("delayed", PushOptions{.delay = 1h});
    (void)q.push("keyed", PushOptions{.key = "order-42"});
  }
  Bytes img = read_file(dir + "/jobring.seeds");
  jobring::detail::set_boot_id_for_testing({});
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (img.size() <= jobring::detail::kDurableHeaderBytes ||
      get<std::uint32_t>(img, offsetof(Header, identity.layout_version)) !=
          jobring::detail::kDurableLayoutVersion) {
    std::fprintf(stderr, "make_seeds: the file-backed queue is not of layout %u\n",
                 jobring::detail::kDurableLayoutVersion);
    std::exit(1);
  }
  // A producer of the old boot died half-way through a push.
  const std::uint32_t cap = get<std::uint32_t>(img, offsetof(Header, identity.capacity));
  for (std::uint32_t i = 0; i < cap; ++i) {
    const Word w{get<std::uint64_t>(img, state_at(img, i))};
    if (w.state() != State::free) continue;
    put(img, state_at(img, i), Word::make(State::writing, 3, jobring::detail::make_writer(12345)).raw);
    put(img, meta_at(img, i) + offsetof(SlotMeta, job_id), std::uint64_t{77});
    break;
  }
  return img;
}

// Offset of a field of the durable header line (layout 7) in an image.
constexpr std::size_t durable_at(std::size_t field) { return jobring::detail::kHeaderBytes + field; }

void segment_seeds() {
  std::filesystem::create_directories(g_dir / "segment");
  const Prog none;
  const Prog every = every_segment_op();

  write_file("segment", "not-a-queue", segment_input(Bytes{'h', 'e', 'l', 'l', 'o'}, none, 0));
  write_file("segment", "smallest-empty", segment_input(image_plain(1, 1, 0), every, 0));
  write_file("segment", "four-ready", segment_input(image_plain(4, 8, 4), every, 0));

  const Bytes states = image_every_state(8, 32);
  write_file("segment", "every-state", segment_input(states, every, 0));
  write_file("segment", "every-state-repair", segment_input(states, every, jobring::fuzz::kRepairHeader));

  // Crash states forged into the image: a WRITING slot of a dead producer
  // (PID 0 counts as dead), an expired lease whose owner record names
  // PID 1 (alive), a corrupt state word, a length over max_payload.
  Bytes forged = states;
  const std::uint32_t capacity = get<std::uint32_t>(forged, offsetof(Header, identity.capacity));
  for (std::uint32_t i = 0; i < capacity; ++i) {
    const Word w{get<std::uint64_t>(forged, state_at(forged, i))};
    if (w.state() != State::free) continue;
    put(forged, state_at(forged, i), Word::make(State::writing, 3, jobring::detail::make_writer(0)).raw);
    break;
  }
  put(forged, state_at(forged, capacity - 1), Word::make(State::leased, 9, 1).raw);
  put(forged, meta_at(forged, capacity - 1) + offsetof(SlotMeta, owner), jobring::detail::make_owner(9, 1));
  put(forged, state_at(forged, capacity - 2), std::uint64_t{7} << 61);
  put(forged, meta_at(forged, 0) + offsetof(SlotMeta, length), std::uint32_t{0xffffffff});
  write_file("segment", "forged-crash-states", segment_input(forged, every, 0));

  // Header variants that open() must refuse.
  Bytes version = states;
  put(version, offsetof(Header, identity.layout_version), std::uint32_t{99});
  write_file("segment", "other-version", segment_input(version, none, 0));
  Bytes unpublished = states;
  put(unpublished, offsetof(Header, init), std::uint32_t{0});
  put(unpublished, offsetof(Header, creator_pid), std::uint32_t{0});
  write_file("segment", "init-not-done", segment_input(unpublished, none, 0));
  Bytes truncated = states;
  truncated.resize(truncated.size() - 64);
  write_file("segment", "truncated", segment_input(truncated, none, 0));

  // File-backed (layout 7): opened, they are recovered (another boot).
  // Not with the repair flag: it writes a layout-6 header over theirs.
  const Bytes durable = image_durable_every_state(8, 32, Options::Sync::none);
  write_file("segment", "durable-every-state", segment_input(durable, every, 0));
  write_file("segment", "durable-every-state-sync-always",
             segment_input(image_durable_every_state(8, 32, Options::Sync::always), every, 0));
  write_file("segment", "durable-every-state-sync-interval",
             segment_input(image_durable_every_state(16, 16, Options::Sync::interval), every, 0));
  // Hostile clock and counters in the durable line: an anchor and a last-seen
  // time far in the future (the recovery clamps the segment's clock), a
  // forged base, a recovery count about to wrap, a slot id past the trusted
  // bound (the id counter must ignore it) and one just below it (the counter
  // moves past it); and a boot key of 0 (a creator that never wrote it).
  Bytes hostile = durable;
  put(hostile, durable_at(offsetof(Durable, realtime_minus_clock)), std::int64_t{-0x7000000000000000});
  put(hostile, durable_at(offsetof(Durable, clock_seen)), ~std::uint64_t{0});
  put(hostile, durable_at(offsetof(Durable, clock_base)), std::uint64_t{0xfffffffffff});
  put(hostile, durable_at(offsetof(Durable, recoveries)), ~std::uint64_t{0});
  put(hostile, meta_at(hostile, 0) + offsetof(SlotMeta, job_id), ~std::uint64_t{0});
  put(hostile, meta_at(hostile, 1) + offsetof(SlotMeta, job_id), std::uint64_t{1} << 61);
  write_file("segment", "durable-hostile-clock", segment_input(hostile, every, 0));
  Bytes boot_zero = durable;
  put(boot_zero, durable_at(offsetof(Durable, boot)), std::uint64_t{0});
  put(boot_zero, durable_at(offsetof(Durable, realtime_minus_clock)), std::int64_t{0x7fffffffffffffff});
  write_file("segment", "durable-boot-zero", segment_input(boot_zero, every, 0));
  // Refused: a sync policy and an interval out of range; a file cut inside
  // the durable line.
  Bytes bad_sync = durable;
  put(bad_sync, durable_at(offsetof(Durable, sync)), std::uint32_t{7});
  write_file("segment", "durable-bad-sync", segment_input(bad_sync, none, 0));
  Bytes bad_interval = durable;
  put(bad_interval, durable_at(offsetof(Durable, sync_interval_ms)), std::uint32_t{0});
  write_file("segment", "durable-bad-interval", segment_input(bad_interval, none, 0));
  Bytes cut = durable;
  cut.resize(jobring::detail::kHeaderBytes + 32);
  write_file("segment", "durable-cut-in-its-line", segment_input(cut, none, 0));
}

// --- model ---------------------------------------------------------------------

Bytes model_input(std::uint8_t capacity, std::uint8_t max_payload, std::uint8_t max_attempts,
                  std::uint8_t flags, const Prog& p) {
  // The target maps these: capacity % 32 + 1, max_payload % 64 + 1, max_attempts % 5.
  Bytes out{static_cast<std::uint8_t>(capacity - 1), static_cast<std::uint8_t>(max_payload - 1), max_attempts,
            flags};
  out.insert(out.end(), p.b.begin(), p.b.end());
  return out;
}

void model_seeds() {
  std::filesystem::create_directories(g_dir / "model");
  // pick_lease arguments: {0, i} = current lease i, {4, i} = stale lease i, {7, i} = forged.
  {  // FIFO across a wrap-around, full ring, in-order acks.
    Prog p;
    for (int i = 0; i < 6; ++i) p.op(ModelOp::push, {2, 'j', static_cast<std::uint8_t>('0' + i), 0});
    p.op(ModelOp::try_claim, {0})
        .op(ModelOp::try_claim, {0})
        .op(ModelOp::ack, {0, 0})
        .op(ModelOp::ack, {0, 0});
    for (int i = 0; i < 3; ++i) p.op(ModelOp::push, {2, 'k', static_cast<std::uint8_t>('0' + i), 0});
    p.op(ModelOp::try_claim_many, {2, 0}).op(ModelOp::ack_many, {2, 0, 0, 0, 0, 0, 0});  // n - 1
    p.op(ModelOp::try_claim, {0}).op(ModelOp::stats);
    write_file("model", "fifo-wrap", model_input(4, 8, 0, 0, p));
  }
  {  // Retries to the dead state, requeue, fencing with stale and forged leases.
    Prog p;
    p.op(ModelOp::push, {4, 'w', 'o', 'r', 'k', 0})
        .op(ModelOp::try_claim, {0})
        .op(ModelOp::release, {0, 0, 0})
        .op(ModelOp::try_claim, {0x80})
        .op(ModelOp::extend, {0, 0, 3})
        .op(ModelOp::ack, {4, 0})
        .op(ModelOp::ack, {4, 1})
        .op(ModelOp::ack, {7, 1})
        .op(ModelOp::release, {0, 0, 0})
        .op(ModelOp::peek, {3, 10})
        .op(ModelOp::requeue, {0})
        .op(ModelOp::try_claim, {0})
        .op(ModelOp::release, {0, 0, 4})
        .op(ModelOp::peek, {1, 10})
        .op(ModelOp::sweep)
        .op(ModelOp::lease_text, {4, 0, 8, '1', '.', '0', '.', 'f', 'f', 'f', 'f'});
    write_file("model", "retries-dead-fencing", model_input(2, 16, 2, 0, p));
  }
  {  // De-duplication keys: live, finished (remembered), window 0.
    Prog p;
    p.op(ModelOp::push_keyed, {1, 'a', 0, 0})
        .op(ModelOp::push_keyed, {1, 'b', 0, 0})
        .op(ModelOp::push_keyed, {1, 'c', 0, 1})
        .op(ModelOp::try_claim, {0})
        .op(ModelOp::ack, {0, 0})
        .op(ModelOp::push_keyed, {1, 'd', 0, 0})
        .op(ModelOp::purge, {6})  // what - 1: all
        .op(ModelOp::push_keyed, {1, 'e', 0, 1})
        .op(ModelOp::stats);
    write_file("model", "keys", model_input(4, 8, 0, 0, p));
    write_file("model", "keys-window-zero", model_input(4, 8, 0, jobring::fuzz::kModelWindowZero, p));
  }
  {  // A key table smaller than the ring: eviction of remembered keys, then every entry live (keys_full).
    Prog p;
    for (std::uint8_t k = 0; k < 18; ++k) p.op(ModelOp::push_keyed, {1, 'a', 0, k});
    p.op(ModelOp::try_claim_many, {2, 0}).op(ModelOp::ack_many, {2, 0, 0, 0, 0, 0, 0});
    for (std::uint8_t k = 18; k < 24; ++k) p.op(ModelOp::push_keyed, {1, 'b', 0, k});
    p.op(ModelOp::push_keyed, {1, 'c', 0, 0}).op(ModelOp::stats);
    write_file("model", "keys-small-table", model_input(24, 8, 0, jobring::fuzz::kModelSmallKeys, p));
  }
  {  // Batches, delays, purge, the second handle.
    Prog p;
    p.op(ModelOp::push_many, {4, 0, 1, 'a', 1, 'b', 1, 'c', 1, 'd', 1, 'e'})  // n - 1, delay, payloads
        .op(ModelOp::push_many, {1, 4, 1, 'f', 1, 'g'})
        .op(ModelOp::switch_handle)
        .op(ModelOp::try_claim_many, {3, 3})
        .op(ModelOp::ack_many, {3, 0, 0, 0, 0, 4, 0, 0, 1})
        .op(ModelOp::peek, {1, 5})
        .op(ModelOp::purge, {1})                        // what - 1: delayed
        .op(ModelOp::push, {9, 't', 'o', 'o', 'l', 0})  // 9 bytes into max_payload 8: too large
        .op(ModelOp::push, {1, 'x', 6})                 // invalid delay
        .op(ModelOp::try_claim, {6})                    // invalid lease
        .op(ModelOp::switch_handle)
        .op(ModelOp::requeue_dead)
        .op(ModelOp::remove_dead, {0})
        .op(ModelOp::stats);
    write_file("model", "batches-delays-purge", model_input(8, 8, 3, 0, p));
  }
  {  // Lease expiry: acks after the deadline, takeover, dead-lettering, sweep.
    Prog p;
    p.op(ModelOp::push, {1, 'a', 0})
        .op(ModelOp::push, {1, 'b', 0})
        .op(ModelOp::claim_expire, {0})
        .op(ModelOp::extend, {0, 0, 3})  // the expired lease extends: current again
        .op(ModelOp::claim_expire, {1})
        .op(ModelOp::try_claim, {0})  // takes over the expired lease (or claims nothing)
        .op(ModelOp::ack, {4, 0})     // stale
        .op(ModelOp::claim_expire, {0})
        .op(ModelOp::sweep)
        .op(ModelOp::try_claim_many, {3, 0})
        .op(ModelOp::peek, {2, 10})
        .op(ModelOp::stats);
    write_file("model", "expiry-takeover", model_input(4, 8, 2, 0, p));
  }
  {  // One of every operation, on the smallest queue.
    Prog p;
    for (std::uint8_t o = 0; o < static_cast<std::uint8_t>(ModelOp::count); ++o) p.raw(o, {1, 1, 1, 1});
    write_file("model", "every-op-capacity-1", model_input(1, 1, 1, 0, p));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR   (writes DIR/segment/* and DIR/model/*)\n", argv[0]);
    return 2;
  }
  g_dir = argv[1];
  std::printf("writing seeds to %s\n", argv[1]);
  segment_seeds();
  model_seeds();
  return 0;
}
