// jobring — the command-line tool: operators create, inspect and fix queues;
// shell scripts push, claim and ack; `jobring work` turns any command into a
// worker.
//
// Exit codes (also in --help): 0 success; 1 error (the message names the
// queue and what to do); 2 usage; 3 nothing to claim / timed out / queue
// full; 4 lease lost.

#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "common/version.hpp"

using namespace jobring::cli;

namespace {

struct Entry {
  const char* name;
  const char* line;
  std::function<int(const Args&)> run;
};

const std::vector<Entry>& commands() {
  static const std::vector<Entry> table = {
      {"create", "create a queue", cmd_create},
      {"rm", "remove a queue", cmd_rm},
      {"ls", "list every queue on this host", cmd_ls},
      {"stat", "options, jobs per state, totals", cmd_stat},
      {"top", "a live view of every queue: states, rates, lease ages", cmd_top},
      {"push", "push a job (DATA or stdin); prints its id", cmd_push},
      {"claim", "claim a job with a detached lease; prints JSON", cmd_claim},
      {"ack", "acknowledge a claimed job", cmd_ack},
      {"release", "give a claimed job back (optionally delayed)", cmd_release},
      {"extend", "extend a lease; prints the new handle", cmd_extend},
      {"work", "run a command for each job (a shell worker)", cmd_work},
      {"peek", "show jobs in a state without claiming", cmd_peek},
      {"requeue", "move dead jobs back to ready", cmd_requeue},
      {"purge", "delete jobs not under lease", cmd_purge},
  };
  return table;
}

void main_help(std::FILE* out) {
  std::fprintf(out,
               "Usage: jobring COMMAND [ARGS...]   (jobring COMMAND --help for each)\n\n"
               "jobring queues are crash-safe leased job queues in shared memory (/dev/shm/jobring.NAME).\n\n"
               "Commands:\n");
  for (const auto& e : commands()) std::fprintf(out, "  %-9s %s\n", e.name, e.line);
  std::fprintf(out, "\nDurations are written 500ms, 30s, 2m or 1h.\n%s", kExitCodes);
}

// Runs one subcommand, turning what it throws into a message and an exit code.
int run(const std::string& command, const Entry& e, const Args& args) {
  try {
    return checked_exit(e.run(args));
  } catch (const UsageError& u) {
    std::fprintf(stderr, "%s\n", u.message.c_str());
    return kUsage;
  } catch (const Exit& x) {
    if (!x.message.empty()) std::fprintf(x.code == kOk ? stdout : stderr, "%s\n", x.message.c_str());
    return checked_exit(x.code);
  } catch (const std::exception& err) {  // jobring::error included
    std::fprintf(stderr, "jobring %s: %s\n", command.c_str(), err.what());
    return kError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    main_help(stderr);
    return kUsage;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    main_help(stdout);
    return kOk;
  }
  if (command == "--version" || command == "-V") {
    std::printf("jobring %s\n", jobring::tools::kVersion);
    return kOk;
  }
  const Args args(argv + 2, argv + argc);
  for (const auto& e : commands())
    if (command == e.name) return run(command, e, args);
  std::fprintf(stderr, "jobring: unknown command '%s'\n\n", command.c_str());
  main_help(stderr);
  return kUsage;
}
