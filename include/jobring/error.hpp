// jobring — errors.
//
// Ordinary outcomes of queue operations (full, empty, lease lost) are values
// (see queue.hpp). Environment failures — a missing or corrupt segment, a bad
// name, a payload over the limit — are reported as a std::error_code in the
// jobring category: thrown as jobring::error by the plain overloads, written
// to a std::error_code& by the noexcept overloads (the std::filesystem
// convention).
#pragma once

#include <string>
#include <system_error>

namespace jobring {

enum class errc : int {
  invalid_name = 1,      // name empty, too long, or with characters outside [A-Za-z0-9._-]
  invalid_options,       // an option out of range, or sizes that overflow
  invalid_argument,      // a lease or delay out of range, a malformed handle
  not_found,             // no queue with that name
  already_exists,        // create() of a name that exists
  permission_denied,     // the segment's mode does not let this user in
  not_a_queue,           // the segment is not a jobring queue (wrong magic)
  incompatible_version,  // a jobring queue of another layout version
  corrupt_segment,       // header fields inconsistent with each other or the size
  incomplete_segment,    // creator still initializing, or died while it did
  payload_too_large,     // push of more than max_payload bytes
  system_error,          // any other failure of the operating system
  corrupt_file,          // a DoneStore file (idempotent.hpp) that is corrupt or not a done store
  options_mismatch,      // open_or_create() of a queue that exists with other options
  // The Redis backend (redis_queue.hpp). Values are ABI (jobring.h): append only.
  unavailable,           // the server refused the connection, or it dropped (the call's outcome unknown)
  timeout,               // no answer within the timeout: a stopped, overloaded or unreachable server
  protocol_error,        // the server's answer is not what a Redis 7 server with jobring's library sends
  server_error,          // the server answered with an error (out of memory, a read-only replica, ...)
  unsafe_server_config,  // the server could lose jobs (maxmemory-policy evicts keys): fix its configuration
  not_supported,         // a URL or feature this build or backend does not support (yet)
};

const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

// Thrown by the throwing overloads. what() names the queue, says what went
// wrong and what to do (it is the whole message; code() is the errc).
class error : public std::system_error {
 public:
  error(std::error_code ec, const std::string& what) : std::system_error(ec, what), what_(what) {}
  [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

}  // namespace jobring

template <>
struct std::is_error_code_enum<jobring::errc> : std::true_type {};
