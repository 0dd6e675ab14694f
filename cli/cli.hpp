// The jobring command-line tool's private header: exit codes, the command
// parser and argument readers (args.cpp), output helpers (output.cpp), and
// the subcommands (cmd_admin.cpp, cmd_jobs.cpp, cmd_work.cpp, cmd_top.cpp).
#pragma once

#include <boost/program_options.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// --- output.cpp

std::span<const std::byte> bytes(std::string_view s);
// Valid UTF-8 without NUL bytes; anything else is shown as base64.
bool is_text(std::string_view s);
// "payload":...,"payload_encoding":... (utf8 or base64).
std::string payload_json(std::span<const std::byte> payload);
std::string state_name(JobState s);
// Queue::incarnation() as 16 lower-case hex digits (stat, create).
std::string incarnation_text(const Queue& q);
std::string incarnation_text(const QueueView& q);
// One JSON object: the queue's name, incarnation, options and every statistic.
std::string stats_json(const std::string& name, const Queue& q);
std::string stats_json(const std::string& name, const QueueView& q);

// A job as `peek` shows it: one JSON object, or one line of text (no newline).
std::string job_json(const JobInfo& j);
std::string job_line(const JobInfo& j);
// A time ago, rounded down to its largest unit: "250ms", "42s", "3m", "5h", "2d".
std::string age_text(std::uint64_t ms);
// The same object's members without the braces, for the statistics `s` (one
// snapshot of q.stats()): for objects that add members of their own (top).
std::string stats_json_members(const std::string& name, const Queue& q, const Stats& s);
std::string stats_json_members(const std::string& name, const QueueView& q, const Stats& s);
// `jobring stat`'s text: options, then the gauges and the counters.
void print_stats(const std::string& name, const Queue& q);
void print_stats(const std::string& name, const QueueView& q);
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
