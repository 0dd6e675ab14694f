// jobring — DoneStore: a file-backed record of done keys, the store that
// idempotent() (jobring/idempotent.hpp) uses by default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

namespace jobring {

// A file-backed record of done keys (each with an optional value), for
// idempotent consumers. Several processes (and threads) may use one file at
// once; each sees the others' records.
//
// The file is an append-only log: an 8-byte header ("JRDONE1\n"), then one
// record per key, each written with one pwrite at the end of the file and
// fdatasync'd before mark_done returns (the directory is fsync'd when the
// file is created). Writers hold an exclusive flock(2) while they append, so
// appends never interleave, and a writer killed mid-append leaves at worst a
// partial last record, which the next writer (or the next open) cuts off
// before appending (the kernel drops the flock of a dead process). Readers
// take a shared flock. Records carry a checksum; a bad record anywhere but at
// the end (or a non-zero tail that is not a record) is reported as
// corruption instead of silently cut off.
//
// Memory and growth: every key is kept in memory (a hash set) and on disk
// (about 9 + key + value bytes); nothing is ever removed. A million 20-byte
// keys take about 30 MB on disk and 60-80 MB of memory. For unbounded streams
// of jobs, start a new file now and then (e.g. one per day) and keep the old
// one only for as long as a job can still be redelivered (the lease, plus the
// retries of a job that is still in the queue; de-duplication keys are
// refused by the queue for Options::dedup_window after the ack). Use a local
// file system: flock and fdatasync over NFS are not to be trusted.
//
// Errors are thrown as jobring::error: a std::system_error code for I/O
// failures, errc::corrupt_file for a corrupt record or a file that is not
// a done store (what() names the file and says what to do).
class DoneStore {
 public:
  static constexpr std::size_t kMaxKey = 255;      // bytes; keys are 1 .. kMaxKey bytes of anything
  static constexpr std::size_t kMaxValue = 65535;  // bytes

  // Opens the file, creating it (with `mode`) if it does not exist, and loads
  // every key. Cuts off a partial last record left by a killed writer.
  explicit DoneStore(const std::filesystem::path& file, unsigned mode = 0600);
  ~DoneStore();
  DoneStore(DoneStore&&) noexcept;
  DoneStore& operator=(DoneStore&&) noexcept;

  // Whether `key` is recorded, by this or (read from the file on a miss)
  // any other process.
  [[nodiscard]] bool contains(std::string_view key);
  // Records `key` (with `value`) durably, unless it is recorded already:
  // returns true if this call recorded it, false if it was there. The check
  // and the append are one step under the file's exclusive lock, so of two
  // processes marking one key, exactly one gets true. Throws
  // error(invalid_argument) for a key of 0 or more than kMaxKey bytes or a
  // value over kMaxValue, and on I/O failure (the record may or may not be
  // there then).
  bool mark_done(std::string_view key, std::string_view value = {});
  // Keys recorded (after reading what other processes appended).
  [[nodiscard]] std::size_t size();
  // Every record in the file, in order (read from disk; for audits and
  // ledgers). mark_done never records a key twice.
  void for_each(const std::function<void(std::string_view key, std::string_view value)>& fn);
  [[nodiscard]] const std::filesystem::path& path() const noexcept;
  // Bytes of partial last records cut off so far (by this object).
  [[nodiscard]] std::uint64_t torn_bytes_dropped() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace jobring
