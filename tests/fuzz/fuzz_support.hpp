// Helpers shared by the fuzz targets (fuzz_segment.cpp, fuzz_model.cpp) and
// the seed generator (make_seeds.cpp): the byte reader that turns a fuzz
// input into decisions, the operation codes of both input formats, and
// per-process queue names. See tests/fuzz/README.md for the formats.
#pragma once

#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace jobring::fuzz {

// Reads decisions from a fuzz input. Past the end every read gives 0 and
// take() an empty span, so that every byte string is a valid program.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  [[nodiscard]] bool empty() const { return pos_ >= size_; }
  [[nodiscard]] std::size_t left() const { return size_ - pos_; }

  std::uint8_t u8() { return empty() ? 0 : data_[pos_++]; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint32_t u32() {
    return static_cast<std::uint32_t>(u16()) | (static_cast<std::uint32_t>(u16()) << 16);
  }
  std::uint64_t u64() {
    return static_cast<std::uint64_t>(u32()) | (static_cast<std::uint64_t>(u32()) << 32);
  }
  // Up to n bytes (fewer at the end of the input).
  std::span<const std::uint8_t> take(std::size_t n) {
    if (n > left()) n = left();
    const std::span<const std::uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// A finding: prints the explanation and traps, so that libFuzzer saves the
// input as a crash file and CI fails.
[[noreturn]] inline void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] inline void fail(const char* format, ...) {
  std::fprintf(stderr, "\n==== jobring fuzz finding: ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  __builtin_trap();
}

#define JOBRING_FUZZ_CHECK(cond, ...)                                                     \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "\n==== check failed: %s (%s:%d)", #cond, __FILE__, __LINE__); \
      ::jobring::fuzz::fail(__VA_ARGS__);                                                 \
    }                                                                                     \
  } while (false)

// A queue name unique to this process (libFuzzer's -fork / -jobs run many).
inline std::string process_name(std::string_view tag) {
  return "fuzz." + std::string(tag) + "." + std::to_string(::getpid());
}

// --- Target "segment" (fuzz_segment.cpp) -------------------------------------
//
//   input   = segment ‖ program ‖ flags (1 byte) ‖ program length (1 byte)
//
// The last byte says how many bytes before the flags byte are the program
// (clamped to what there is); everything before the program is the segment
// file's bytes. An input of fewer than 2 bytes is all segment.
inline constexpr std::uint8_t kRepairHeader = 1;  // flags: make lines 0-1 of the header consistent

// Operations after a successful open. Each is one opcode byte (taken modulo
// the count) followed by its arguments, documented in fuzz_segment.cpp.
enum class SegOp : std::uint8_t {
  push,
  push_many,
  try_claim,
  try_claim_many,
  ack,
  release,
  extend,
  ack_many,
  stats,
  peek,
  requeue,
  requeue_dead,
  remove_dead,
  purge,
  sweep,
  poke,
  reopen,
  forge_lease,
  wait,
  count
};

// --- Target "model" (fuzz_model.cpp) -------------------------------------------
//
//   input = capacity ‖ max_payload ‖ max_attempts ‖ flags ‖ program
inline constexpr std::uint8_t kModelWindowZero = 1;  // flags: dedup_window = 0 (else 1 h)
inline constexpr std::uint8_t kModelSmallKeys = 2;   // flags: the smallest key table (else the default)

enum class ModelOp : std::uint8_t {
  push,
  push_keyed,
  push_many,
  try_claim,
  try_claim_many,
  ack,
  release,
  extend,
  ack_many,
  stats,
  peek,
  requeue,
  requeue_dead,
  remove_dead,
  purge,
  sweep,
  switch_handle,
  lease_text,
  claim_expire,
  count
};

}  // namespace jobring::fuzz
