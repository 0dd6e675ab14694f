// The jobring command-line tool's private header: exit codes, the command
// parser and argument readers (args.cpp), where the queues are (backend.cpp),
// output helpers (output.cpp), and the subcommands (cmd_admin.cpp,
// cmd_jobs.cpp, cmd_work.cpp, cmd_top.cpp).
#pragma once

#include <boost/program_options.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "jobring/any_queue.hpp"
#include "jobring/duration.hpp"
#include "jobring/queue.hpp"

namespace jobring::cli {

namespace po = boost::program_options;

// Exit codes (also in --help).
constexpr int kOk = 0;
constexpr int kError = 1;  // the message names the queue and what to do
constexpr int kUsage = 2;
constexpr int kNothing = 3;  // nothing to claim, timed out, queue full
constexpr int kLeaseLost = 4;

inline constexpr const char* kExitCodes =
    "Exit codes: 0 success; 1 error (message on stderr); 2 usage; 3 nothing to claim / timed out /\n"
    "queue full; 4 lease lost.\n";

// A usage error: exit 2 with the message.
struct UsageError {
  std::string message;
};
// An outcome with its own exit code and message.
struct Exit {
  int code;
  std::string message;
};

[[noreturn]] void usage(const std::string& command, const std::string& message);

// --- args.cpp: one subcommand's options, and readers of their values.

struct Command {
  Command(std::string n, std::string syn, std::string sum)
      : name(std::move(n)), synopsis(std::move(syn)), summary(std::move(sum)) {}
  std::string name;
  std::string synopsis;
  std::string summary;
  po::options_description options{"Options"};
  po::positional_options_description positional;
  po::options_description hidden;
};

// Adds the positional queue NAME (read with name_arg).
void add_name(Command& c);
// Parses `args` for `c`; prints the help and throws Exit{kOk} on --help.
po::variables_map parse(Command& c, const std::vector<std::string>& args);
// The duration of --key, or `fallback` if it was not given.
milliseconds duration_arg(const Command& c, const po::variables_map& vm, const char* key,
                          milliseconds fallback);
// A whole number option, 0 to 4294967295.
std::uint32_t count_arg(const Command& c, const po::variables_map& vm, const char* option);
// The positional queue NAME, checked.
std::string name_arg(const Command& c, const po::variables_map& vm);
// The value of --option, one of `choices`; a usage error ("use HINT") if not.
template <class T>
T choice_arg(const Command& c, const po::variables_map& vm, const char* option,
             const std::map<std::string, T>& choices, const char* hint) {
  const auto it = choices.find(vm[option].as<std::string>());
  if (it == choices.end()) usage(c.name, std::string("bad --") + option + ": use " + hint);
  return it->second;
}
// The positional HANDLE printed by `jobring claim`.
Lease handle_arg(const Command& c, const po::variables_map& vm);
// Everything on `fd` until its end.
std::string read_all(int fd);

// --- backend.cpp: where the queues are. Every subcommand takes --url URL
// (before or after its name); without it $JOBRING_URL; without that "shm:",
// this host's shared memory.

// The --url given on the command line.
void set_url(std::string url);
// The URL in effect, checked at first use (a usage error names the schemes).
const std::string& queue_url();
bool on_redis();
jobring::RedisOptions redis_options();
// The queue `name` on queue_url(), for the subcommands that change it.
AnyQueue open_queue(const std::string& name);
// For an error reaching a Redis server (unavailable, timeout): what to do,
// naming the URL; otherwise "".
std::string unreachable_hint(const std::error_code& ec);
// On Redis: a usage error saying that `option` is for shared memory, and `why`.
void refuse_on_redis(const Command& c, const std::string& option, const std::string& why);

// A queue to look at (stat, peek, ls, top): on shared memory a read-only
// QueueView, which needs read permission on the segment only; on Redis an
// AnyQueue (access is the server's).
class Inspected {
 public:
  [[nodiscard]] static Inspected open(const std::string& name);
  // A queue that cannot be opened: nullopt and `ec` (a bad URL still throws
  // its usage error).
  [[nodiscard]] static std::optional<Inspected> open(const std::string& name, std::error_code& ec,
                                                     milliseconds init_wait = milliseconds{1000});
  [[nodiscard]] const Options& options() const;
  [[nodiscard]] std::uint64_t incarnation() const;
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] Stats stats(std::error_code& ec) const noexcept;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit) const;

 private:
  Inspected() = default;
  std::optional<QueueView> view_;
  std::optional<AnyQueue> queue_;
};

// --- output.cpp

std::span<const std::byte> bytes(std::string_view s);
// Valid UTF-8 without NUL bytes; anything else is shown as base64.
bool is_text(std::string_view s);
// "payload":...,"payload_encoding":... (utf8 or base64).
std::string payload_json(std::span<const std::byte> payload);
std::string state_name(JobState s);
// An incarnation as 16 lower-case hex digits (stat, create).
std::string incarnation_text(std::uint64_t incarnation);

// One queue's name, options and statistics at one moment: what stat, ls and
// top show, the same on every backend.
struct Snapshot {
  std::string name;
  Options options;
  std::uint64_t incarnation = 0;
  Stats stats{};
};
template <class Q>
Snapshot snapshot(const std::string& name, const Q& q) {
  return {name, q.options(), q.incarnation(), q.stats()};
}
// One JSON object: the queue's name, incarnation, options and every statistic.
std::string stats_json(const Snapshot& s);
// The same object's members without the braces: for objects that add
// members of their own (top).
std::string stats_json_members(const Snapshot& s);
// `jobring stat`'s text: options, then the gauges and the counters.
void print_stats(const Snapshot& s);

// A job as `peek` shows it: one JSON object, or one line of text (no newline).
std::string job_json(const JobInfo& j);
std::string job_line(const JobInfo& j);
// A time ago, rounded down to its largest unit: "250ms", "42s", "3m", "5h", "2d".
std::string age_text(std::uint64_t ms);
// `code`, or an error if stdout could not be written.
int checked_exit(int code);

// --- the subcommands: each takes the arguments after its name and returns
// an exit code (or throws UsageError, Exit, or a jobring::error).

using Args = std::vector<std::string>;
int cmd_create(const Args& args);
int cmd_rm(const Args& args);
int cmd_ls(const Args& args);
int cmd_stat(const Args& args);
int cmd_peek(const Args& args);
int cmd_requeue(const Args& args);
int cmd_move(const Args& args);
int cmd_pause(const Args& args);
int cmd_resume(const Args& args);
int cmd_purge(const Args& args);
int cmd_push(const Args& args);
int cmd_claim(const Args& args);
int cmd_ack(const Args& args);
int cmd_release(const Args& args);
int cmd_extend(const Args& args);
int cmd_work(const Args& args);
int cmd_top(const Args& args);

}  // namespace jobring::cli
