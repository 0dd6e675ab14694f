// jobring — the named shared-memory segment: the one place that talks to the
// operating system (through Boost.Interprocess) and maps errno to jobring
// errors.
#pragma once

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

class Segment {
 public:
  Segment() noexcept;
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  // Creates /dev/shm/<file_name> exclusively with exactly `mode` (no umask),
  // sizes it to `bytes` (zero-filled) and maps it. On any failure after the
  // name was created, the name is removed again.
  [[nodiscard]] static bool create(const std::string& file_name, std::uint64_t bytes, unsigned mode,
                                   Segment& out, Failure& failure);
  // Opens and maps an existing segment, whatever its size (the caller
  // validates the size against the header).
  [[nodiscard]] static bool open(const std::string& file_name, Segment& out, Failure& failure);
  // These allocate (messages, the Boost objects): std::bad_alloc propagates.
  // Unlinks the name. Returns false with not_found if it did not exist.
  [[nodiscard]] static bool remove(const std::string& file_name, Failure& failure);

  [[nodiscard]] void* data() const noexcept;
  // The descriptor of the segment's file, private to this object and
  // close-on-exec (liveness.hpp locks through it); -1 if none.
  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] std::uint64_t size() const noexcept;

  struct Impl;  // the Boost objects; defined in segment.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace jobring::detail
