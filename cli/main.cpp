// jobring — the command-line tool: operators create, inspect and fix queues;
// shell scripts push, claim and ack; `jobring work` turns any command into a
// worker.
//
// Where the queues are: --url URL before or after the command, else
// $JOBRING_URL, else shm: (this host's shared memory); see backend.cpp.
//
// Exit codes (also in --help): 0 success; 1 error (the message names the
// queue and what to do); 2 usage; 3 nothing to claim / timed out / queue
// full; 4 lease lost.

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
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
      {"move", "move dead jobs into another queue (dead-letter queue, redrive)", cmd_move},
      {"pause", "stop handing out jobs (pushes, acks go on)", cmd_pause},
      {"resume", "hand out jobs again", cmd_resume},
      {"purge", "delete jobs not under lease", cmd_purge},
  };
  return table;
}

void main_help(std::FILE* out) {
  std::fprintf(
      out,
      "Usage: jobring [--url URL] COMMAND [ARGS...]   (jobring COMMAND --help for each)\n\n"
      "jobring queues are crash-safe leased job queues in shared memory (/dev/shm/jobring.NAME), or\n"
      "on a Redis 7 server for producers and workers on several hosts. --url URL (before or after\n"
      "the COMMAND), else the environment variable JOBRING_URL, says where; the default is shm:.\n"
      "  shm:                            this host's shared memory\n"
      "  redis://HOST:PORT               a Redis server\n"
      "  redis+unix:///PATH/redis.sock   the same over a unix socket\n"
      "  redis+cluster://H1:P1,H2:P2     a Redis Cluster (seed nodes)\n"
      "Every command works on both (move: shared memory only, for now).\n\n"
      "Commands:\n");
  for (const auto& e : commands()) std::fprintf(out, "  %-9s %s\n", e.name, e.line);
  std::fprintf(out, "\nDurations are written 500ms, 30s, 2m, 1h or 1d.\n%s", kExitCodes);
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
  } catch (const jobring::error& err) {
    const std::string hint = unreachable_hint(err.code());
    std::fprintf(stderr, "jobring %s: %s%s%s%s\n", command.c_str(), err.what(), hint.empty() ? "" : " (",
                 hint.c_str(), hint.empty() ? "" : ")");
    return kError;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "jobring %s: %s\n", command.c_str(), err.what());
    return kError;
  }
}

// Edit distance (insertions, deletions, substitutions, and swaps of two
// neighbours: "pusj" → push, "stta" → stat), for "did you mean".
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The commands within two edits of `typed` (one for names of three letters or
// fewer), or that it is a prefix of, closest first.
std::vector<std::string> similar_commands(const std::string& typed) {
  std::vector<std::pair<std::size_t, std::string>> found;
  for (const auto& e : commands()) {
    const std::string name = e.name;
    const std::size_t dist = edit_distance(typed, name);
    const std::size_t bound = name.size() <= 3 ? 1 : 2;
    if (dist <= bound || (typed.size() >= 2 && name.starts_with(typed))) found.emplace_back(dist, name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  names.reserve(found.size());
  for (auto& f : found) names.push_back(std::move(f.second));
  return names;
}

void unknown_command(const std::string& command) {
  std::fprintf(stderr, "jobring: unknown command '%s'", command.c_str());
  const auto near = similar_commands(command);
  for (std::size_t i = 0; i < near.size(); ++i)
    std::fprintf(stderr, "%s'%s'", i == 0 ? "; did you mean " : (i + 1 == near.size() ? " or " : ", "),
                 near[i].c_str());
  std::fprintf(stderr, "%s\n\n", near.empty() ? "" : "?");
  main_help(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  // --url URL (or --url=URL) before the command; after it, each command's
  // parser takes it.
  int at = 1;
  while (at < argc &&
         (std::string_view(argv[at]) == "--url" || std::string_view(argv[at]).starts_with("--url="))) {
    const std::string_view arg = argv[at];
    if (arg.starts_with("--url=")) {
      set_url(std::string(arg.substr(6)));
      at += 1;
    } else if (arg == "--url" && at + 1 < argc) {
      set_url(argv[at + 1]);
      at += 2;
    } else {
      std::fprintf(stderr, "jobring: %s needs a URL: --url URL, e.g. --url redis://127.0.0.1:6379\n",
                   argv[at]);
      return kUsage;
    }
  }
  if (argc <= at) {
    main_help(stderr);
    return kUsage;
  }
  const std::string command = argv[at];
  if (command == "--help" || command == "-h" || command == "help") {
    main_help(stdout);
    return kOk;
  }
  if (command == "--version" || command == "-V") {
    std::printf("jobring %s\n", jobring::tools::kVersion);
    return kOk;
  }
  const Args args(argv + at + 1, argv + argc);
  for (const auto& e : commands())
    if (command == e.name) return run(command, e, args);
  unknown_command(command);
  return kUsage;
}
