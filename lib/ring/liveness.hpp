// jobring — proof of life that holds across PID namespaces, time namespaces
// and exec.
//
// A record that names a process — a WRITING slot's writer, a lease's owner, a
// CLAIMED key entry's producer — names it by a token: a random 40-bit number
// t that the process's queue handle holds an open file description lock on
// (fcntl F_OFD_SETLK, a write lock on the one byte kLockBase + t of the
// segment file), through a descriptor of that file that the handle opens for
// this alone: close-on-exec, and never mapped (a mapping holds its open file
// description, and with it the lock, for as long as the mapping lives — in a
// forked child too). The kernel drops the lock when that open file
// description is released: when the process dies (whatever killed it), when
// it execs, and when the handle is destroyed. A judge asks the kernel
// (F_OFD_GETLK) whether anyone holds that byte: nobody → the holder is gone.
// No PID, no start time, no /proc: a judge in another PID or time namespace,
// or under hidepid, gets the same answer, and a process that execs in the
// middle of a push is gone the moment the exec succeeds.
//
// Choosing a token: a random t, kept only if F_OFD_SETLK on its byte succeeds
// (nobody holds it). A dead holder's token picked again by a new process
// (2^-40 per pair) makes the old records look alive: the safe direction (a
// lease then waits for its deadline, a half-written slot for the new holder's
// death), never a live process judged gone.
//
// fork: a child shares its parent's open file descriptions, so it would hold
// the parent's lock — and keep the parent "alive" after the parent's death —
// and answer to the parent's token. A pthread_atfork child handler gives every
// handle's lock descriptor a fresh open file description (open
// /proc/self/fd/N, dup3 over N); the child takes a token of its own at its
// first push or claim. A child made without the handler (vfork,
// posix_spawn, a raw clone) shares the lock until it execs or exits: the
// parent's records then look alive that long (the safe direction). If the
// handler cannot open a description (the child is at its descriptor limit),
// the handle keeps sharing the parent's, through which the kernel would
// report neither side's locks to the other: in that child the handle judges
// nobody gone and takes no token (shares_parents), so its records name
// nobody, as with no /proc.
#pragma once

#include <atomic>
#include <cstdint>

namespace jobring::detail {

inline constexpr unsigned kTokenBits = 40;
inline constexpr std::uint64_t kTokenMask = (std::uint64_t{1} << kTokenBits) - 1;
// Where the lock bytes start: far beyond any segment (locks past the end of a
// file are allowed and touch no data).
inline constexpr std::int64_t kLockBase = std::int64_t{1} << 62;

class Liveness {
 public:
  Liveness() = default;
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;
  ~Liveness();

  // Opens the lock descriptor: a new open file description of the file that
  // the segment's descriptor `segment_fd` names.
  void attach(int segment_fd) noexcept;
  // Closes it (after taking it out of the fork handler's table, which must
  // never touch a descriptor number that may already name another file).
  void detach() noexcept;

  // This handle's token: taken at the first call, and again at the first
  // call after a fork. 0 if none could be taken (no descriptor, or the kernel
  // refused every try): records then name nobody, which no judge proves gone.
  [[nodiscard]] std::uint64_t token() noexcept {
    const std::uint64_t s = state_.load(std::memory_order_relaxed);
    if (current(s)) return s & kTokenMask;
    return take_token();
  }

  // True only if no process holds token t: no live process, in any namespace,
  // wrote a record naming t (or it has since exec'd or closed its handle).
  // Token 0 (nobody: a detached lease) is never gone.
  [[nodiscard]] bool proven_gone(std::uint64_t t) const noexcept;
  // For a WRITING slot or a CLAIMED key entry: its writer is gone, or the
  // word names nobody (0: no live process writes that, so it is a hostile or
  // corrupt word, and must not hide a slot for ever).
  [[nodiscard]] bool writer_gone(std::uint64_t t) const noexcept {
    return (t & kTokenMask) == 0 || proven_gone(t);
  }

  // Bumped in the child of every fork (atfork handler).
  static std::atomic<std::uint64_t> g_fork_generation;

 private:
  std::uint64_t take_token() noexcept;
  // In a child forked since attach, this handle's descriptor still shares
  // the parent's open file description (the fork handler could not give it
  // one of its own, or it is not in the handler's table).
  [[nodiscard]] bool shares_parents() const noexcept;
  // A state word holds a token taken in this process (since the last fork).
  [[nodiscard]] static bool current(std::uint64_t s) noexcept {
    return (s & kTokenMask) != 0 &&
           (s >> kTokenBits) == (g_fork_generation.load(std::memory_order_relaxed) & kGenerationMask);
  }
  static constexpr std::uint64_t kGenerationMask = (std::uint64_t{1} << (64 - kTokenBits)) - 1;

  int fd_ = -1;
  int registered_ = -1;                    // index in the atfork table, or -1
  std::uint64_t attached_generation_ = 0;  // g_fork_generation when fd_ was opened
  // The token and the fork generation it was taken in, in one word, so that
  // no thread sees one without the other: (generation << 40) | token. Every
  // thread of a handle uses the one token that won the CAS into it.
  std::atomic<std::uint64_t> state_{0};
};

}  // namespace jobring::detail
