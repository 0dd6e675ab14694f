// jobring — tally blocks: where a thread counts its pushes, claims and acks
// without a locked RMW (layout.hpp, Tallies: the encoding, who writes
// what, the crash analysis).
//
// The hot path (Impl::tally, core.hpp) finds this thread's block for the
// handle in the first entry of a thread-local cache: one compare. Everything
// else is here, run once per (thread, handle), and again after a fork or
// when the cache's few entries are taken by other handles.

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <mutex>

#include "ring/core.hpp"

namespace jobring {

namespace detail {

constinit thread_local TallyCache tally_cache{};

namespace {

// This thread's kernel id (gettid: a syscall; once per thread, kept in
// the cache, which a fork empties).
std::uint64_t this_tid() noexcept { return static_cast<std::uint64_t>(::syscall(SYS_gettid)); }

// A thread of this process with id `tid` has exited (or never was): the
// kernel says so. Used only for blocks named by our own handle's token,
// whose writers were threads of this process (layout.hpp; not so in a
// child forked without the atfork handler, which layout.hpp covers).
bool thread_gone(std::uint64_t tid) noexcept {
  return ::syscall(SYS_tgkill, ::getpid(), static_cast<pid_t>(tid), 0) != 0 && errno == ESRCH;
}

// In the child of a fork (pthread_atfork; it runs in the one thread the
// child has, the one that forked, before fork returns there): forget every
// block, so that the child takes blocks of its own (its handles take new
// tokens too, liveness.hpp) and never writes its parent's. A plain store
// to this thread's memory: async-signal-safe.
void forget_blocks_in_child() noexcept { tally_cache = TallyCache{}; }
std::once_flag g_atfork_once;

}  // namespace

}  // namespace detail

// The cache's entry for this handle, swapped to the front (the hot path
// compares the first entry only); its block looked for if the entry is new,
// or has none and its retry count ran out. A new entry goes to the front
// and the one it displaces to the first free place, else over the last.
detail::TallyBlock* Queue::Impl::tally_block() noexcept {
  using detail::TallyCache;
  auto& entries = detail::tally_cache.entries;
  std::size_t i = 0;
  while (i < TallyCache::kEntries && (entries[i].handle & ~TallyCache::kNoBlock) != memo_owner) ++i;
  TallyCache::Entry e{};
  if (i < TallyCache::kEntries) {
    e = entries[i];
    if (e.block == nullptr && e.retry > 0) {
      --e.retry;
    } else if (e.block == nullptr) {
      e.block = take_tally_block();
      e.retry = detail::kTallyRetry;
    }
  } else {
    i = 0;
    while (i + 1 < TallyCache::kEntries && entries[i].handle != 0) ++i;
    e.block = take_tally_block();
    e.retry = detail::kTallyRetry;
  }
  e.handle = memo_owner | (e.block == nullptr ? TallyCache::kNoBlock : 0);
  entries[i] = entries[0];
  entries[0] = e;
  return e.block;
}

// Finds, takes or adopts a block for this (handle, thread), in this order:
//   1. one this (handle, thread) holds already (the cache lost it);
//   2. one held by this thread id for a handle proven gone: a handle closed
//      and opened again by the same thread keeps its block;
//   3. one held by this handle for a thread of ours that has exited;
//   4. a free one;
//   5. one held by any handle proven gone (another process, or a closed
//      handle of ours).
// 2, 3 and 5 ask the kernel (one fcntl or tgkill per candidate), which is
// why 4 is not first: a process that keeps starting threads, or opening
// handles, reuses its own blocks before it takes free ones. Null if none:
// a QueueView, no liveness token, an impossible thread id, or every block
// held by a live (or live-looking) thread.
detail::TallyBlock* Queue::Impl::take_tally_block() noexcept {
  if (!writable || tallies == nullptr) return nullptr;
  const std::uint64_t token = liveness.token();
  if (token == 0) return nullptr;
  // Before the cache holds a block or a thread id: the hot path does not
  // check for a fork, and a child must not name its parent's thread.
  std::call_once(detail::g_atfork_once,
                 [] { ::pthread_atfork(nullptr, nullptr, detail::forget_blocks_in_child); });
  std::uint64_t& cached_tid = detail::tally_cache.tid;
  if (cached_tid == 0) cached_tid = detail::this_tid();
  const std::uint64_t tid = cached_tid;
  if (tid == 0 || tid > detail::kTallyTidMask) return nullptr;
  const std::uint64_t me = detail::make_tally_owner(token, tid, 0);
  // CAS from the word read: acq_rel (layout.hpp). A failure means someone
  // else took it meanwhile: look at the next block.
  auto take = [&](detail::TallyBlock& b, std::uint64_t seen) {
    const std::uint64_t mine = detail::make_tally_owner(token, tid, detail::tally_epoch(seen) + 1);
    return b.owner.compare_exchange_strong(seen, mine, std::memory_order_acq_rel, std::memory_order_relaxed);
  };
  for (int pass = 1; pass <= 5; ++pass) {
    for (std::uint32_t i = 0; i < detail::kTallyBlocks; ++i) {
      detail::TallyBlock& b = tallies[i];
      const std::uint64_t w = b.owner.load(std::memory_order_acquire);
      const std::uint64_t t = detail::tally_token(w);
      bool candidate = false;
      switch (pass) {
        case 1:
          candidate = w != 0 && detail::same_holder(w, me);
          break;
        case 2:
          candidate = w != 0 && t != token && detail::tally_tid(w) == tid && liveness.proven_gone(t);
          break;
        case 3:
          candidate = w != 0 && t == token && detail::tally_tid(w) != tid &&
                      detail::thread_gone(detail::tally_tid(w));
          break;
        case 4:
          candidate = w == 0;
          break;
        case 5:
          candidate = w != 0 && t != token && liveness.proven_gone(t);
          break;
      }
      if (candidate && take(b, w)) return &b;
    }
  }
  return nullptr;
}

}  // namespace jobring
