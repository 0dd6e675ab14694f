// A queue's segment mapped by a test itself (a second mapping, as another
// process would have), with the layout of lib/ring/layout.hpp and lib/ring/keys.hpp:
// for forging crash states and hostile segments, and for watching the event
// words a waiter announces itself on (lib/ring/wait.hpp).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>

#include "ring/keys.hpp"
#include "ring/layout.hpp"
#include "ring/liveness.hpp"
#include "ring/transitions.hpp"

namespace jobring::test {

// A liveness token (lib/ring/liveness.hpp) that no process holds: what the
// records of a dead process name.
inline constexpr std::uint64_t kDeadToken = 0x0dead0dead1ull;

// The word that follows `from` in a key-table entry with state s: for
// forging entry states no single transition leaves (a LIVE entry made
// CLAIMED again, as a hostile or half-dead writer might).
[[nodiscard]] constexpr detail::Word key_word(detail::Word from, detail::KeyState s, std::uint64_t aux) {
  return from.next(static_cast<detail::State>(s), aux);
}

class SegmentView {
 public:
  // Throws if the file is missing, shorter than a header, or shorter than its
  // header says (then the accessors below would reach past the mapping).
  explicit SegmentView(const std::string& name) {
    const std::string path = segment_path(name);
    fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || static_cast<std::size_t>(st.st_size) < detail::kHeaderBytes) {
      ::close(fd_);
      throw std::runtime_error("segment too small: " + path);
    }
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      ::close(fd_);
      throw std::runtime_error("mmap " + path + ": " + std::strerror(errno));
    }
    base_ = static_cast<std::byte*>(p);
    if (header().identity.total_bytes > size_) {
      ::munmap(base_, size_);
      ::close(fd_);
      throw std::runtime_error("segment smaller than its header says: " + path);
    }
  }
  ~SegmentView() {
    ::munmap(base_, size_);
    ::close(fd_);
  }
  SegmentView(const SegmentView&) = delete;
  SegmentView& operator=(const SegmentView&) = delete;

  // Takes the liveness lock of token t through this view's own open file
  // description, as a live process's queue handle holds its own
  // (liveness.hpp): records naming t are alive until release_token(t), the
  // view's destruction, or the death of the process that made the view.
  void hold_token(std::uint64_t t) const {
    flock fl = token_lock(F_WRLCK, t);
    if (::fcntl(fd_, F_OFD_SETLK, &fl) != 0)
      throw std::runtime_error(std::string("F_OFD_SETLK: ") + std::strerror(errno));
  }
  void release_token(std::uint64_t t) const {
    flock fl = token_lock(F_UNLCK, t);
    (void)::fcntl(fd_, F_OFD_SETLK, &fl);
  }

  [[nodiscard]] std::byte* base() const { return base_; }
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] detail::Header& header() const { return *reinterpret_cast<detail::Header*>(base_); }
  [[nodiscard]] std::uint32_t capacity() const { return header().identity.capacity; }
  // Slot i's state word and metadata; i must be below capacity() (throws otherwise).
  [[nodiscard]] std::atomic<std::uint64_t>& state(std::uint32_t i) const {
    if (i >= capacity()) throw std::out_of_range("slot");
    return reinterpret_cast<std::atomic<std::uint64_t>*>(base_ + header().identity.states_offset)[i];
  }
  [[nodiscard]] detail::SlotMeta& meta(std::uint32_t i) const {
    if (i >= capacity()) throw std::out_of_range("slot");
    return *reinterpret_cast<detail::SlotMeta*>(base_ + header().identity.slots_offset +
                                                std::uint64_t{i} * header().identity.slot_stride);
  }
  // Slot i's note area (layout.hpp, SlotNote): a dead job's failure time and text.
  [[nodiscard]] detail::SlotNote& note(std::uint32_t i) const {
    return *reinterpret_cast<detail::SlotNote*>(reinterpret_cast<std::byte*>(&meta(i)) +
                                                detail::kSlotMetaBytes + detail::kKeyAreaBytes);
  }
  [[nodiscard]] detail::Word word(std::uint32_t i) const { return detail::Word{state(i).load()}; }
  void set(std::uint32_t i, detail::Word w) const { state(i).store(w.raw); }
  // The next word of slot i, as the transition to (s, aux) would write it.
  void step(std::uint32_t i, detail::State s, std::uint64_t aux) const { set(i, word(i).next(s, aux)); }
  // Forges what transition t (transitions.hpp) leaves in slot i, as if a
  // process had made its CAS and died right after: the word only, no count
  // and no wake-up. Throws if t cannot start from the slot's state.
  void forge(std::uint32_t i, const detail::Transition& t, std::uint64_t aux) const {
    if (!t.starts_from(word(i))) throw std::logic_error(std::string(t.name) + " cannot start from this slot");
    set(i, t.target(word(i), aux));
  }
  // A total as stats() reads it: the shared word plus, for pushed, claimed
  // and acked, every tally block's count (layout.hpp, Tallies).
  [[nodiscard]] std::uint64_t total(detail::Total t) const {
    std::uint64_t sum = header().totals[t].load();
    const unsigned k = detail::tally_of(t);
    if (k < detail::kTallyCount)
      for (std::uint32_t b = 0; b < detail::kTallyBlocks; ++b) sum += tally(b).counts[k].load();
    return sum;
  }
  // Tally block b (layout.hpp, Tallies): right after the header.
  [[nodiscard]] detail::TallyBlock& tally(std::uint32_t b) const {
    if (b >= detail::kTallyBlocks) throw std::out_of_range("tally block");
    const std::uint64_t at = header().identity.header_bytes + std::uint64_t{b} * sizeof(detail::TallyBlock);
    if (at + sizeof(detail::TallyBlock) > size_) throw std::out_of_range("tally block past the mapping");
    return *reinterpret_cast<detail::TallyBlock*>(base_ + at);
  }
  // The event words of lib/ring/wait.hpp: (sequence << 1) | someone-is-waiting.
  [[nodiscard]] std::atomic<std::uint32_t>& work_event() const { return header().work_event; }
  [[nodiscard]] std::atomic<std::uint32_t>& room_event() const { return header().room_event; }
  // Everything after the header: state words, slot metadata and payloads.
  [[nodiscard]] std::span<std::byte> body() const {
    return {base_ + detail::kHeaderBytes, size_ - detail::kHeaderBytes};
  }

  // The first slot in state `s`, or capacity() if none.
  [[nodiscard]] std::uint32_t find(detail::State s) const {
    for (std::uint32_t i = 0; i < capacity(); ++i)
      if (word(i).valid() && word(i).state() == s) return i;
    return capacity();
  }

  // --- Key table (keys.hpp).
  [[nodiscard]] std::uint32_t key_capacity() const { return header().key_capacity; }
  [[nodiscard]] detail::KeyEntry& key(std::uint32_t e) const {
    const auto g =
        detail::geometry(header().identity.capacity, header().identity.max_payload, header().key_capacity);
    return reinterpret_cast<detail::KeyEntry*>(base_ + g.entries_offset)[e];
  }
  [[nodiscard]] detail::Word key_word(std::uint32_t e) const { return detail::Word{key(e).word.load()}; }
  [[nodiscard]] detail::KeyState key_state(std::uint32_t e) const { return detail::key_state(key_word(e)); }
  // Forges what key transition t leaves in entry e (the word only).
  void forge_key(std::uint32_t e, const detail::KeyTransition& t, std::uint64_t aux) const {
    if (!t.starts_from(key_word(e)))
      throw std::logic_error(std::string(t.name) + " cannot start from this entry");
    key(e).word.store(t.target(key_word(e), aux).raw);
  }
  // The entry holding `hash` (any state but empty), or key_capacity() if none.
  [[nodiscard]] std::uint32_t find_key(std::uint64_t hash) const {
    for (std::uint32_t e = 0; e < key_capacity(); ++e)
      if (key_state(e) != detail::KeyState::empty && key(e).hash.load() == hash) return e;
    return key_capacity();
  }

 private:
  static flock token_lock(short type, std::uint64_t t) {
    flock fl{};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = detail::kLockBase + static_cast<std::int64_t>(t);
    fl.l_len = 1;
    return fl;
  }

  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace jobring::test
