// The in-process peers jobring is measured against, in the same binaries:
//
//  - ShmRing: a bare bounded MPMC ring in shared memory with a sequence
//    number per cell (the scheme D. Vyukov published for bounded MPMC
//    queues, written here from its description). No leases, no ids, no
//    crash safety: a process that dies between claiming a position and
//    publishing its cell wedges the ring for every later position. It is
//    the lower bound: what moving a payload through shared memory costs
//    when nothing else is promised.
//  - BoostMq: boost::interprocess::message_queue (a mutex and two condition
//    variables in shared memory; a process that dies holding the mutex
//    poisons the queue for everyone).
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>

namespace bench {

class ShmRing {
 public:
  // capacity: a power of two. The ring lives in a MAP_SHARED anonymous
  // mapping, so it is shared with children forked after this call.
  ShmRing(std::uint32_t capacity, std::uint32_t max_payload)
      : capacity_(capacity), mask_(capacity - 1), max_payload_(max_payload) {
    stride_ = (sizeof(CellHead) + max_payload + 63) / 64 * 64;
    bytes_ = sizeof(Header) + std::size_t{capacity} * stride_;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<std::byte*>(p);
    header_ = new (base_) Header();
    for (std::uint32_t i = 0; i < capacity; ++i) new (cell(i)) CellHead{{i}, 0};
  }
  ShmRing(const ShmRing&) = delete;
  ShmRing& operator=(const ShmRing&) = delete;
  ~ShmRing() { ::munmap(base_, bytes_); }

  // Returns false when the ring is full.
  bool try_push(std::span<const std::byte> payload) noexcept {
    std::uint64_t pos = header_->enqueue.load(std::memory_order_relaxed);
    CellHead* c;
    for (;;) {
      c = cell(static_cast<std::uint32_t>(pos & mask_));
      // Acquire: the consumer that freed this cell has finished reading it.
      const std::uint64_t seq = c->seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        if (header_->enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;  // the cell still holds the item from one lap ago: full
      } else {
        pos = header_->enqueue.load(std::memory_order_relaxed);
      }
    }
    c->length = static_cast<std::uint32_t>(payload.size());
    std::memcpy(payload_of(c), payload.data(), payload.size());
    c->seq.store(pos + 1, std::memory_order_release);  // publish
    return true;
  }

  // Copies the oldest item into `out` (at least max_payload bytes); returns
  // its length, or -1 when the ring is empty.
  long try_pop(std::byte* out) noexcept {
    std::uint64_t pos = header_->dequeue.load(std::memory_order_relaxed);
    CellHead* c;
    for (;;) {
      c = cell(static_cast<std::uint32_t>(pos & mask_));
      const std::uint64_t seq = c->seq.load(std::memory_order_acquire);  // the producer's publish
      const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (header_->dequeue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return -1;  // not yet published: empty
      } else {
        pos = header_->dequeue.load(std::memory_order_relaxed);
      }
    }
    const std::uint32_t length = c->length;
    std::memcpy(out, payload_of(c), length);
    c->seq.store(pos + capacity_, std::memory_order_release);  // free for the next lap
    return static_cast<long>(length);
  }

  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
  // The whole mapping (header, cells), for bench_instructions' count of the
  // cache lines each step writes.
  [[nodiscard]] const std::byte* data() const noexcept { return base_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  struct alignas(64) Header {
    alignas(64) std::atomic<std::uint64_t> enqueue{0};
    alignas(64) std::atomic<std::uint64_t> dequeue{0};
  };
  struct CellHead {
    std::atomic<std::uint64_t> seq;  // pos: free for position pos; pos+1: holds position pos's item
    std::uint32_t length;
  };
  CellHead* cell(std::uint32_t i) const noexcept {
    return reinterpret_cast<CellHead*>(base_ + sizeof(Header) + std::size_t{i} * stride_);
  }
  static std::byte* payload_of(CellHead* c) noexcept {
    return reinterpret_cast<std::byte*>(c) + sizeof(CellHead);
  }

  std::uint32_t capacity_;
  std::uint64_t mask_;
  std::uint32_t max_payload_;
  std::size_t stride_ = 0;
  std::size_t bytes_ = 0;
  std::byte* base_ = nullptr;
  Header* header_ = nullptr;
};

// A named Boost message_queue that removes its name when the creator is done.
class BoostMq {
 public:
  using mq = boost::interprocess::message_queue;

  BoostMq(std::string name, std::size_t capacity, std::size_t max_payload) : name_(std::move(name)) {
    mq::remove(name_.c_str());
    q_ = std::make_unique<mq>(boost::interprocess::create_only, name_.c_str(), capacity, max_payload);
  }
  BoostMq(const BoostMq&) = delete;
  BoostMq& operator=(const BoostMq&) = delete;
  ~BoostMq() {
    q_.reset();
    mq::remove(name_.c_str());
  }

  // A fresh handle for a forked child (it maps the queue by name).
  [[nodiscard]] std::unique_ptr<mq> open() const {
    return std::make_unique<mq>(boost::interprocess::open_only, name_.c_str());
  }
  mq& get() noexcept { return *q_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::unique_ptr<mq> q_;
};

}  // namespace bench
