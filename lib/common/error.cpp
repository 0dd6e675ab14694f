#include "jobring/error.hpp"

namespace jobring {
namespace {

class Category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "jobring"; }
  [[nodiscard]] std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::invalid_name:
        return "invalid queue name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'";
      case errc::invalid_options:
        return "invalid queue options (capacity, max_payload, default_lease or the segment size out of "
               "range, or an unknown group)";
      case errc::invalid_argument:
        return "invalid argument (a lease or delay out of range, or a malformed lease handle)";
      case errc::not_found:
        return "no such queue: create it first (jobring create NAME, or Queue::open_or_create)";
      case errc::already_exists:
        return "a queue with this name already exists: open it, or remove it first";
      case errc::permission_denied:
        return "permission denied: the queue's owner, group and mode keep this user out (share a queue "
               "through a group: jobring create --group G, Options::group)";
      case errc::not_a_queue:
        return "the segment is not a jobring queue (wrong magic): check the name";
      case errc::incompatible_version:
        return "the queue was created by an incompatible jobring version: drain it with that version, "
               "then remove and recreate it";
      case errc::corrupt_segment:
        return "the queue's segment is corrupt or truncated: remove and recreate it";
      case errc::incomplete_segment:
        return "the queue's segment was never fully initialised (its creator is still at work or died): "
               "retry, or remove and recreate it";
      case errc::payload_too_large:
        return "payload larger than the queue's max_payload: split the job, or recreate the queue with a "
               "larger max_payload";
      case errc::system_error:
        return "operating system error";
      case errc::corrupt_file:
        return "a jobring file is corrupt or of another kind: the message names the file and the byte; "
               "restore it from a backup, or truncate it there";
      case errc::options_mismatch:
        return "the queue exists with other options than those asked for: open it as it is, or remove it "
               "and create it again";
      case errc::unavailable:
        return "the queue's server is unavailable (connection refused, reset or closed): start it or check "
               "the URL, then retry; a call cut off this way may or may not have taken effect";
      case errc::timeout:
        return "the queue's server did not answer in time (stopped, overloaded or unreachable): check it; "
               "the call may or may not have taken effect";
      case errc::protocol_error:
        return "the server's answer is not what jobring expects: check that the URL names a Redis 7 (or "
               "Valkey) server";
      case errc::server_error:
        return "the server refused the call (out of memory, a read-only replica, or another error it "
               "names): fix the server, or point the URL at the primary";
      case errc::unsafe_server_config:
        return "the server's configuration could lose jobs: set maxmemory-policy noeviction (CONFIG SET "
               "and redis.conf)";
      case errc::not_supported:
        return "not supported (yet): the message says what to use instead";
    }
    return "unknown jobring error";
  }
};

}  // namespace

const std::error_category& category() noexcept {
  static const Category instance;
  return instance;
}

}  // namespace jobring
