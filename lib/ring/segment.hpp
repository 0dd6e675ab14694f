// jobring — the named shared-memory segment: the one place that talks to the
// operating system and maps errno to jobring errors. A new segment is built
// with no name (O_TMPFILE) and linked to its name once complete; an existing
// one in /dev/shm is opened through Boost.Interprocess, one in another
// directory (a file-backed queue) with open(2) and mmap(2).
//
// Every function takes the segment file's full path: /dev/shm/jobring.NAME,
// or DIR/jobring.NAME for a file-backed queue.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

namespace jobring::detail {

// What went wrong, for the caller to turn into a message naming the queue.
struct Failure {
  std::error_code code;
  std::string detail;  // e.g. "shm_open: Permission denied"
};

// create_unnamed(): leave the file with the creator's group.
inline constexpr gid_t kKeepGroup = static_cast<gid_t>(-1);

class Segment {
 public:
  Segment() noexcept;
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  // Builds a segment with no name: an O_TMPFILE file in `dir` of group
  // `group` (kKeepGroup: the creator's) and exactly `mode` (no umask), sized
  // to `bytes` (zero-filled and allocated), mapped. Nobody else can see it
  // until link() names it, so a creator killed at any point before that
  // leaves nothing behind (the kernel frees the file with the last
  // descriptor), and the name never shows another group or mode.
  // permission_denied (detail "fchown ...") if the creator may not give the
  // file that group (not a member, not root).
  // A file-backed segment's blocks are allocated too (posix_fallocate), so
  // that a full disk is an error now, never a SIGBUS at a later push.
  [[nodiscard]] static bool create_unnamed(const std::string& dir, std::uint64_t bytes, unsigned mode,
                                           gid_t group, Segment& out, Failure& failure);
  // Writes the whole file and its size to disk (fsync), before link() of a
  // file-backed segment: a queue whose name appeared survives a power cut.
  [[nodiscard]] bool sync_all(Failure& failure) const;
  // Names a segment made by create_unnamed(): `path` appears atomically,
  // complete. already_exists if something is at the name (then nothing
  // changed). Outside /dev/shm the directory is synced too (the new name
  // survives a power cut).
  [[nodiscard]] bool link(const std::string& path, Failure& failure);
  // Replaces `stale` — a segment opened at `path` and judged
  // abandoned by its creator — with this unnamed one. Under an exclusive
  // flock on the stale file (so that two replacers of one stale file take
  // turns, and the second sees the first's segment), checks that the name
  // still holds that file with the size it was judged at, unlinks it and
  // links this one. already_exists if the name holds something else by then
  // (open that); not_found never: the caller retries the whole open.
  [[nodiscard]] bool replace(const std::string& path, const Segment& stale, Failure& failure);
  // After link() or replace(): maps the segment again through its name, if
  // the name still holds this file, and drops the unnamed mapping, so that
  // the creator's mapping shows in /proc/PID/maps (and to lsof) under the
  // queue's path like everyone else's, not as "/dev/shm/#INODE (deleted)".
  // Keeps the unnamed mapping if the name holds something else by then (the
  // queue was removed meanwhile). Returns true if the mapping changed: the
  // caller re-reads data().
  [[nodiscard]] bool map_by_name(const std::string& path);
  // Opens and maps an existing segment, whatever its size (the caller
  // validates the size against the header). `writable` false: opened
  // O_RDONLY and mapped PROT_READ (needs read permission only); nothing may
  // write through data() then.
  [[nodiscard]] static bool open(const std::string& path, Segment& out, Failure& failure,
                                 bool writable = true);
  // When the file was last modified (CLOCK_REALTIME), for judging a file
  // that records no creator; false if fstat failed.
  [[nodiscard]] bool modified_at(timespec& out) const noexcept;
  // These allocate (messages, the Boost objects): std::bad_alloc propagates.
  // Unlinks the name. Returns false with not_found if it did not exist.
  [[nodiscard]] static bool remove(const std::string& path, Failure& failure);

  [[nodiscard]] bool is_open() const noexcept { return impl_ != nullptr; }
  [[nodiscard]] void* data() const noexcept;
  // The descriptor of the segment's file, private to this object and
  // close-on-exec (liveness.hpp locks through it); -1 if none.
  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] std::uint64_t size() const noexcept;
  // msync(MS_SYNC) of the pages that hold [offset, offset + length): they are
  // on disk when it returns (a file-backed segment; a no-op cost in /dev/shm).
  // False if the kernel refused (errno kept).
  bool sync_range(std::uint64_t offset, std::uint64_t length) const noexcept;

  struct Impl;  // the Boost objects; defined in segment.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace jobring::detail
