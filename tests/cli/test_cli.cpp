// Tests of the `jobring` command-line tool (cli/, issue 5).
//
// They run the REAL binary (JOBRING_CLI_BIN) with pipes on stdin, stdout and
// stderr, and check arguments -> exit code, stdout, stderr, and the queue's
// state afterwards (read back through the library). The exit codes under test
// are the documented ones: 0 success; 1 error (stderr names the queue and what
// to do); 2 usage; 3 nothing to claim / timed out / queue full; 4 lease lost.
//
// Every child runs in its own process group and gets SIGKILL if this test
// process dies, so a test aborted by its Watchdog leaves no `jobring work`
// behind. Waits are bounded generously (seconds for things expected within
// milliseconds), and the tests that need an order of events (a signal
// delivered before a command ends, two commands running at once, a handler
// installed before a signal) establish it with files and /proc/PID/status,
// not with sleeps. Two tests are about durations themselves and keep wide
// margins: the lease extension check (a 900 ms lease, extended every 300 ms)
// and the --wait idle check (a push 300 ms into a 2 s idle wait).
//
// JOBRING_TEST_CLI=/path/to/jobring runs the tests against another binary
// (an installed one, or a deliberately broken build to see the tests fail).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "jobring/duration.hpp"
#include "jobring/queue.hpp"
#include "support/cli_harness.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using namespace test;  // support/cli_harness.hpp: Proc, jr, Json, ...
using test::QueueName;
using test::Watchdog;
namespace fs = std::filesystem;

// examples/shell-worker.sh, found from this file's own path (CMake passes absolute paths).
fs::path example_script() {
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "examples" / "shell-worker.sh";
}

// Whether any of the signal masks `fields` of /proc/PID/status has `sig`.
bool status_has_signal(pid_t pid, int sig, std::initializer_list<std::string_view> fields) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  const std::uint64_t bit = std::uint64_t{1} << (sig - 1);
  std::string line;
  while (std::getline(f, line)) {
    for (const auto field : fields) {
      if (line.size() > field.size() + 1 && line.compare(0, field.size(), field) == 0 &&
          line[field.size()] == ':' && (std::stoull(line.substr(field.size() + 1), nullptr, 16) & bit) != 0)
        return true;
    }
  }
  return false;
}

// Whether signal `sig` is still pending for process `pid` (not yet delivered
// to its handler). Used to know that a process has seen a signal.
bool signal_pending(pid_t pid, int sig) { return status_has_signal(pid, sig, {"SigPnd", "ShdPnd"}); }

// Waits until `p` has installed a handler for `sig` (so the signal will not
// kill it with the default action).
void wait_for_handler(Proc& p, int sig) {
  ASSERT_TRUE(test::poll_until([&] { return status_has_signal(p.pid(), sig, {"SigCgt"}) || !p.running(); },
                               20s, 1ms));
  ASSERT_TRUE(p.running()) << "exited before it caught signal " << sig
                           << show(p.argv(), {-1, p.out(), p.err()});
}

void send_and_wait_delivered(Proc& p, int sig) {
  p.signal(sig);
  ASSERT_TRUE(test::poll_until([&] { return !signal_pending(p.pid(), sig); }, 10s, 1ms))
      << "signal " << sig << " to pid " << p.pid() << " was not delivered within 10 s";
}

using test::TempDir;  // tests/support/temp_dir.hpp

// ---------------------------------------------------------------------------
// Helpers over the queue, through the library.
// ---------------------------------------------------------------------------

Stats stats_of(const std::string& name) { return Queue::open(name).stats(); }

bool segment_exists(const std::string& name) { return fs::exists("/dev/shm/jobring." + name); }

std::vector<std::string> expand(std::vector<std::string> args,
                                const std::map<std::string, std::string>& vars) {
  for (auto& a : args) {
    const auto it = vars.find(a);
    if (it != vars.end()) a = it->second;
  }
  return args;
}

const std::vector<std::string> kSubcommands = {"create",  "rm",   "ls",      "stat",   "top",   "push",
                                               "claim",   "ack",  "release", "extend", "work",  "peek",
                                               "requeue", "move", "purge",   "pause",  "resume"};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kCli == nullptr) GTEST_SKIP() << "the jobring CLI is not built (JOBRING_BUILD_CLI=OFF)";
    // These tests are about queues in shared memory (the children inherit
    // this environment): a JOBRING_URL of the user's would send them to Redis.
    ::unsetenv("JOBRING_URL");
  }
};

// ===========================================================================
// Help and usage
// ===========================================================================

// --help (and -h, help) on the tool and on every subcommand: exit 0, the usage
// on stdout, nothing on stderr, and the exit codes documented.
TEST_F(Cli, HelpOnTheToolAndOnEverySubcommand) {
  Watchdog wd(120s);
  std::vector<std::vector<std::string>> rows = {{"--help"}, {"-h"}, {"help"}, {"push", "-h"}};
  for (const auto& sub : kSubcommands) rows.push_back({sub, "--help"});
  const auto results = jr_batch(rows);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& args = rows[i];
    const Result& r = results[i];
    EXPECT_RUN(args, r, 0);
    EXPECT_TRUE(contains(r.out, "Usage")) << show(cli(args), r);
    EXPECT_TRUE(contains(r.out, "Exit codes")) << show(cli(args), r);
    EXPECT_EQ(r.err, "") << show(cli(args), r);
    if (args.size() == 2) {
      EXPECT_TRUE(contains(r.out, "jobring " + args[0])) << show(cli(args), r);
    }
  }
  // The tool's help lists every subcommand.
  const Result r = jr({"--help"});
  for (const auto& sub : kSubcommands)
    EXPECT_TRUE(contains(r.out, "  " + sub + " ")) << sub << show(cli({"--help"}), r);
  const Result v = jr({"--version"});
  EXPECT_RUN((std::vector<std::string>{"--version"}), v, 0);
  EXPECT_TRUE(contains(v.out, "jobring ")) << v.out;
}

// --help wins over the rest of the command line and does nothing else: no
// queue created, no job pushed, no command run.
TEST_F(Cli, HelpDoesNothingElse) {
  Watchdog wd(60s);
  QueueName q("cli-help"), fresh("cli-help-new");
  (void)Queue::create(q, {});
  const std::vector<std::vector<std::string>> rows = {
      {"create", fresh, "--capacity", "4", "--help"},
      {"push", q, "data", "--help"},
      {"claim", q, "--help"},
      {"purge", q, "--help"},
      {"rm", q, "--help"},
      {"work", q, "--help", "--", "/bin/sh", "-c", "exit 7"},
  };
  (void)Queue::open(q).push("job");
  for (const auto& args : rows) {
    const Result r = jr(args);
    EXPECT_RUN(args, r, 0);
    EXPECT_TRUE(contains(r.out, "Usage")) << show(cli(args), r);
  }
  EXPECT_FALSE(segment_exists(fresh));
  ASSERT_TRUE(segment_exists(q));
  const Stats s = stats_of(q);
  EXPECT_EQ(s.pushed, 1u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.claimed, 0u);
}

// Exit 2 (usage) for every malformed command line: unknown command or option,
// a missing or extra argument, a bad value. Nothing on stdout, the problem on
// stderr, and the queue untouched.
TEST_F(Cli, UsageErrorsExitTwo) {
  Watchdog wd(240s);
  QueueName q("cli-usage"), fresh("cli-usage-new");
  (void)Queue::create(q, {});
  struct Row {
    std::vector<std::string> args;
    std::string err_has;  // stderr must contain this
  };
  const std::vector<Row> rows = {
      {{}, "Usage"},
      {{"frob"}, "unknown command 'frob'"},
      {{"--frob"}, "unknown command"},
      {{"Push", "Q", "x"}, "unknown command"},
      // An unknown option, for every subcommand.
      {{"create", "NEW", "--bogus"}, "--bogus"},
      {{"rm", "Q", "--bogus"}, "--bogus"},
      {{"ls", "--bogus"}, "--bogus"},
      {{"stat", "Q", "--bogus"}, "--bogus"},
      {{"push", "Q", "x", "--bogus"}, "--bogus"},
      {{"claim", "Q", "--bogus"}, "--bogus"},
      {{"ack", "Q", "1.0.1", "--bogus"}, "--bogus"},
      {{"release", "Q", "1.0.1", "--bogus"}, "--bogus"},
      {{"extend", "Q", "1.0.1", "--lease", "1s", "--bogus"}, "--bogus"},
      {{"work", "Q", "--bogus", "--", "true"}, "--bogus"},
      {{"peek", "Q", "--bogus"}, "--bogus"},
      {{"requeue", "Q", "--dead", "--bogus"}, "--bogus"},
      {{"purge", "Q", "--bogus"}, "--bogus"},
      // A missing queue NAME, for every subcommand that takes one.
      {{"create"}, "NAME"},
      {{"rm"}, "NAME"},
      {{"stat"}, "NAME"},
      {{"push"}, "NAME"},
      {{"claim"}, "NAME"},
      {{"ack"}, "NAME"},
      {{"release"}, "NAME"},
      {{"extend"}, "NAME"},
      {{"work", "--", "true"}, "NAME"},
      {{"peek"}, "NAME"},
      {{"requeue"}, "NAME"},
      {{"purge"}, "NAME"},
      // A missing HANDLE, or --lease missing / zero for extend.
      {{"ack", "Q"}, "HANDLE"},
      {{"release", "Q"}, "HANDLE"},
      {{"extend", "Q", "--lease", "1s"}, "HANDLE"},
      {{"extend", "Q", "1.0.1"}, "--lease"},
      {{"extend", "Q", "1.0.1", "--lease", "0ms"}, "--lease"},
      // Extra positional arguments.
      {{"push", "Q", "a", "b"}, "push"},
      {{"stat", "Q", "extra"}, "stat"},
      {{"claim", "Q", "extra"}, "claim"},
      {{"ack", "Q", "1.0.1", "extra"}, "ack"},
      {{"ls", "extra"}, "ls"},
      {{"rm", "Q", "extra"}, "rm"},
      // requeue takes --dead or ids, not both, not neither.
      {{"requeue", "Q"}, "--dead"},
      {{"requeue", "Q", "--dead", "7"}, "--dead"},
      {{"requeue", "Q", "seven"}, "seven"},
      // Bad --state / --limit.
      {{"peek", "Q", "--state", "sleeping"}, "--state"},
      {{"peek", "Q", "--limit", "many"}, "many"},
      {{"peek", "Q", "--limit", "-1"}, "--limit"},  // Boost would read it as 2^64 - 1
      {{"purge", "Q", "--state", "leased"}, "--state"},
      {{"purge", "Q", "--state", "x"}, "--state"},
      // work: the command, --concurrency, --lease.
      {{"work", "Q"}, "CMD"},
      {{"work", "Q", "--"}, "CMD"},
      {{"work", "Q", "--concurrency", "0", "--", "true"}, "--concurrency"},
      {{"work", "Q", "--concurrency", "5000", "--", "true"}, "--concurrency"},
      {{"work", "Q", "--concurrency", "two", "--", "true"}, "two"},
      {{"work", "Q", "--max-jobs", "lots", "--", "true"}, "lots"},
      {{"work", "Q", "--max-jobs", "-1", "--", "true"}, "--max-jobs"},
      {{"work", "Q", "--concurrency", "-1", "--", "true"}, "--concurrency"},
      {{"work", "Q", "--lease", "2ms", "--", "true"}, "--lease"},
      // create: --mode and the numbers.
      {{"create", "NEW", "--mode", "999"}, "--mode"},
      {{"create", "NEW", "--mode", "rw"}, "--mode"},
      {{"create", "NEW", "--mode", ""}, "--mode"},
      {{"create", "NEW", "--capacity", "lots"}, "lots"},
      {{"create", "NEW", "--max-attempts", "x"}, "x"},
  };
  const std::map<std::string, std::string> vars{{"Q", q.str()}, {"NEW", fresh.str()}};
  std::vector<std::vector<std::string>> all;
  std::vector<std::string> err_has;
  for (const auto& row : rows) {
    all.push_back(expand(row.args, vars));
    err_has.push_back(row.err_has);
  }
  expect_usage_errors(all, err_has, 10s);
  EXPECT_FALSE(segment_exists(fresh));
  const Stats s = stats_of(q);
  EXPECT_EQ(s.pushed, 0u);
  EXPECT_EQ(s.claimed, 0u);
}

// Bad queue names (guarantee 9: names are validated — no '/', no "..", no
// leading '.', bounded length) are usage errors for every subcommand, and
// nothing is created. Every subcommand with one bad name, and every bad name
// with two subcommands.
TEST_F(Cli, BadQueueNamesExitTwoForEverySubcommand) {
  Watchdog wd(240s);
  const std::vector<std::string> bad = {"a/b", "..", ".hidden", std::string(65, 'a'), "", "caf\xc3\xa9 *"};
  const std::vector<std::vector<std::string>> templates = {
      {"create", "N"},
      {"rm", "N"},
      {"stat", "N"},
      {"push", "N", "x"},
      {"claim", "N"},
      {"ack", "N", "1.0.1"},
      {"release", "N", "1.0.1"},
      {"extend", "N", "1.0.1", "--lease", "1s"},
      {"work", "N", "--wait", "100ms", "--", "true"},
      {"peek", "N"},
      {"requeue", "N", "--dead"},
      {"purge", "N"},
      {"top", "--once", "N"},
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : templates) rows.push_back(expand(t, {{"N", "a/b"}}));
  for (const auto& name : bad) {
    rows.push_back(expand(templates[0], {{"N", name}}));  // create
    rows.push_back(expand(templates[3], {{"N", name}}));  // push
  }
  expect_usage_errors(rows, std::vector<std::string>(rows.size(), "bad queue name"), 10s);
  for (const auto& name : bad) {
    if (name.find('/') == std::string::npos) {
      EXPECT_FALSE(segment_exists(name)) << name;
    }
  }
  // The longest valid name works.
  QueueName q("x");
  const std::string longest(kMaxNameLength, 'n');
  Queue::remove(longest);
  const Result c = jr({"create", longest});
  EXPECT_RUN((std::vector<std::string>{"create", longest}), c, 0);
  EXPECT_RUN((std::vector<std::string>{"rm", longest}), jr({"rm", longest}), 0);
  Queue::remove(longest);
}

// Durations that do not parse ("5x", "1.5s", negative, overflowing, empty) are
// usage errors on every option that takes one; the option is named. Every
// option with one bad duration, and every bad duration with two options.
TEST_F(Cli, BadDurationsExitTwoOnEveryOption) {
  Watchdog wd(240s);
  QueueName q("cli-dur"), fresh("cli-dur-new");
  (void)Queue::create(q, {});
  const std::vector<std::string> bad = {"5x", "1.5s", "-1s", "", "10 s", "99999999999999999999h"};
  struct Template {
    std::vector<std::string> args;  // "D" is replaced by the bad duration
    std::string option;
  };
  const std::vector<Template> templates = {
      {{"push", "Q", "x", "--delay", "D"}, "--delay"},
      {{"push", "Q", "x", "--wait", "D"}, "--wait"},
      {{"claim", "Q", "--lease", "D"}, "--lease"},
      {{"claim", "Q", "--wait", "D"}, "--wait"},
      {{"release", "Q", "1.0.1", "--delay", "D"}, "--delay"},
      {{"extend", "Q", "1.0.1", "--lease", "D"}, "--lease"},
      {{"work", "Q", "--lease", "D", "--", "true"}, "--lease"},
      {{"work", "Q", "--wait", "D", "--", "true"}, "--wait"},
      {{"work", "Q", "--backoff", "D", "--wait", "100ms", "--", "true"}, "--backoff"},
      {{"work", "Q", "--max-backoff", "D", "--wait", "100ms", "--", "true"}, "--max-backoff"},
      {{"work", "Q", "--grace", "D", "--wait", "100ms", "--", "true"}, "--grace"},
      {{"stat", "Q", "--watch", "D"}, "--watch"},
      {{"create", "NEW", "--lease", "D"}, "--lease"},
  };
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> options;
  auto add = [&](const Template& t, const std::string& d) {
    rows.push_back(expand(t.args, {{"Q", q.str()}, {"NEW", fresh.str()}, {"D", d}}));
    options.push_back(t.option);
  };
  for (const auto& t : templates) add(t, "5x");
  for (const auto& d : bad) {
    add(templates[0], d);  // push --delay
    add(templates[2], d);  // claim --lease
  }
  expect_usage_errors(rows, options, 10s);  // the bad option is named
  EXPECT_FALSE(segment_exists(fresh));
  EXPECT_EQ(stats_of(q).pushed, 0u);
}

// Days are a unit ("7d"), up to the 7-day limit; beyond it the message says
// what the limit is and how to wait longer. (Issue 14 item 9: `--delay 10d`
// used to be "bad duration", as if days were not a thing.)
TEST_F(Cli, Item9_DaysAreAUnitAndTheLimitIsExplained) {
  Watchdog wd(60s);
  QueueName q("cli-days");
  (void)Queue::create(q, {});
  const Result week = jr({"push", q, "x", "--delay", "7d"});
  EXPECT_RUN(cli({"push", q, "x", "--delay", "7d"}), week, 0);
  const Stats s = stats_of(q);
  EXPECT_EQ(s.delayed, 1u);
  const Result ten = jr({"push", q, "x", "--delay", "10d"});
  EXPECT_EQ(ten.code, 2) << show(cli({"push", q, "x", "--delay", "10d"}), ten);
  EXPECT_NE(ten.err.find("limit of 7 days"), std::string::npos) << ten.err;
  EXPECT_NE(ten.err.find("timer"), std::string::npos) << ten.err;
  EXPECT_EQ(stats_of(q).pushed, 1u);
  EXPECT_EQ(jobring::parse_duration("2d"), std::chrono::milliseconds(2 * 86'400'000));
  EXPECT_EQ(jobring::format_duration(std::chrono::hours(48)), "2d");
}

// A mistyped command gets the near ones ("did you mean"), and still exit 2.
TEST_F(Cli, Item9_UnknownCommandSuggestsTheNearOnes) {
  struct Row {
    std::string typed, suggestion;
  };
  const std::vector<Row> rows = {{"pusj", "did you mean 'push'"},  // (or 'pause')
                                 {"stta", "did you mean 'stat'?"},
                                 {"pur", "did you mean 'purge' or 'push'?"},
                                 {"requeu", "did you mean 'requeue'?"},
                                 {"ak", "did you mean 'ack'?"}};
  for (const auto& row : rows) {
    const Result r = jr({row.typed, "Q"});
    EXPECT_EQ(r.code, 2) << row.typed;
    EXPECT_NE(r.err.find(row.suggestion), std::string::npos) << row.typed << ": " << r.err;
  }
  const Result far = jr({"frobnicate"});
  EXPECT_EQ(far.code, 2);
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
}

// A duration beyond the limit of 7 days is as bad as one that does not parse:
// a usage error (exit 2) that changes nothing — not an error from the library
// (exit 1), and never silently cut down to 7 days.
TEST_F(Cli, OutOfRangeDurationsExitTwoAndChangeNothing) {
  Watchdog wd(120s);
  QueueName q("cli-range"), fresh("cli-range-new");
  (void)Queue::create(q, {});
  Queue queue = Queue::open(q);
  (void)queue.push("held");
  auto job = queue.try_claim({.lease = 60s, .owner = Owner::detached});
  ASSERT_TRUE(job);
  const std::string live = job->lease.to_string();
  const std::vector<std::vector<std::string>> rows = {
      {"push", "Q", "x", "--delay", "200h"},
      {"push", "Q", "x", "--wait", "200h"},
      {"claim", "Q", "--lease", "200h"},
      {"claim", "Q", "--wait", "200h"},
      {"extend", "Q", "LIVE", "--lease", "200h"},
      {"work", "Q", "--lease", "200h", "--", "true"},
      {"create", "NEW", "--lease", "200h"},
      {"release", "Q", "LIVE", "--delay", "200h"},  // last: if it is accepted, the lease is gone
  };
  for (const auto& row : rows) {
    const auto args = expand(row, {{"Q", q.str()}, {"NEW", fresh.str()}, {"LIVE", live}});
    const Result r = jr(args, "", 10s);
    EXPECT_RUN(args, r, 2);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
  }
  EXPECT_FALSE(segment_exists(fresh));
  const Stats s = stats_of(q);
  EXPECT_EQ(s.pushed, 1u);
  EXPECT_EQ(s.leased, 1u) << "the held job's lease must be untouched";
  EXPECT_EQ(s.released, 0u);
  EXPECT_EQ(queue.ack(job->lease), LeaseStatus::ok);
}

// Malformed handles are usage errors for ack, release and extend — including
// numbers that overflow (no wrap-around into a valid-looking handle).
TEST_F(Cli, MalformedHandlesExitTwo) {
  Watchdog wd(120s);
  QueueName q("cli-handle");
  (void)Queue::create(q, {});
  const std::vector<std::string> bad = {"garbage",        "1.2",
                                        "1.2.3.4",        "a.b.c",
                                        "1.0.zz",         "",
                                        "-1.0.1",         "1..1",
                                        "1.0.",           " 1.0.1",
                                        "1.0.1 ",         ".0.1",
                                        "1.0.1\n",        "18446744073709551616.0.1",
                                        "1.4294967296.1", "1.0.10000000000000000"};
  // Every bad handle with ack; two of them with release and extend. Stderr
  // says "malformed handle" (a handle that starts with '-' is taken for an
  // option: still exit 2, and stderr names it).
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> err_has;
  auto add = [&](std::vector<std::string> args, const std::string& h) {
    rows.push_back(std::move(args));
    err_has.push_back(h.rfind('-', 0) == 0 ? "'" + h + "'" : "malformed handle");
  };
  for (const auto& h : bad) add({"ack", q, h}, h);
  for (const std::string h : {"garbage", "1.0.1.5"}) {
    add({"release", q, h}, h);
    add({"extend", q, h, "--lease", "1s"}, h);
  }
  expect_usage_errors(rows, err_has);
}

// A queue that does not exist: exit 1 for every subcommand, nothing on stdout,
// and stderr names the queue and says what to do.
TEST_F(Cli, MissingQueueExitsOneNamingTheQueue) {
  Watchdog wd(120s);
  QueueName missing("cli-missing");
  struct Row {
    std::vector<std::string> args;
    std::string input;
    std::string hint;  // what to do
  };
  const std::vector<Row> rows = {
      {{"rm", "M"}, "", "jobring ls"},
      {{"stat", "M"}, "", "jobring create"},
      {{"stat", "M", "--json"}, "", "jobring create"},
      {{"stat", "M", "--watch", "100ms"}, "", "jobring create"},
      {{"push", "M", "x"}, "", "jobring create"},
      {{"push", "M"}, "from stdin", "jobring create"},
      {{"claim", "M"}, "", "jobring create"},
      {{"claim", "M", "--raw", "--wait", "1s"}, "", "jobring create"},
      {{"ack", "M", "1.0.1"}, "", "jobring create"},
      {{"release", "M", "1.0.1"}, "", "jobring create"},
      {{"extend", "M", "1.0.1", "--lease", "1s"}, "", "jobring create"},
      {{"work", "M", "--", "true"}, "", "jobring create"},
      {{"peek", "M"}, "", "jobring create"},
      {{"peek", "M", "--state", "dead", "--json"}, "", "jobring create"},
      {{"requeue", "M", "--dead"}, "", "jobring create"},
      {{"requeue", "M", "5"}, "", "jobring create"},
      {{"purge", "M", "--all"}, "", "jobring create"},
  };
  std::vector<std::vector<std::string>> all;
  std::vector<std::string> inputs;
  for (const auto& row : rows) {
    all.push_back(expand(row.args, {{"M", missing.str()}}));
    inputs.push_back(row.input);
  }
  const auto results = jr_batch(all, inputs, 10s);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const auto& args = all[i];
    const Result& r = results[i];
    EXPECT_RUN(args, r, 1);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, "'" + missing.str() + "'")) << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, row.hint)) << show(cli(args), r);
  }
  EXPECT_FALSE(segment_exists(missing));
}

// ===========================================================================
// Operators: create, rm, ls, stat
// ===========================================================================

// Issue 13 item 6: stat shows the queue's incarnation (Queue::incarnation(),
// 16 hex digits) in text and as a JSON string, and create prints it; a queue
// removed and created again under the same name has another one.
// Fails if stat does not show it, or shows one that does not change.
TEST_F(Cli, Item6_StatShowsTheIncarnation) {
  Watchdog wd(60s);
  QueueName q("cli-incarnation");
  auto hex = [](std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  std::string before;
  for (int round = 0; round < 2; ++round) {
    const Result c = jr({"create", q});
    ASSERT_RUN((std::vector<std::string>{"create", q}), c, 0);
    const std::string inc = hex(Queue::open(q).incarnation());
    EXPECT_TRUE(contains(c.out, "incarnation " + inc)) << c.out;
    const Result s = jr({"stat", q, "--json"});
    ASSERT_RUN((std::vector<std::string>{"stat", q, "--json"}), s, 0);
    const auto j = parse_json(s.out);
    ASSERT_TRUE(j) << "not JSON: " << s.out;
    EXPECT_EQ(j->str("incarnation"), inc);
    const Result t = jr({"stat", q});
    ASSERT_RUN((std::vector<std::string>{"stat", q}), t, 0);
    EXPECT_TRUE(contains(t.out, "incarnation " + inc)) << t.out;
    EXPECT_NE(inc, before) << "the recreated queue kept the incarnation";
    before = inc;
    ASSERT_RUN((std::vector<std::string>{"rm", q}), jr({"rm", q}), 0);
  }
}

// create stores every option (stat shows them) and creates the segment with
// the requested mode (guarantee 9: 0600 unless asked); a second create of the
// same name fails naming it; rm removes it, and a second rm fails.
TEST_F(Cli, CreateStatAndRm) {
  Watchdog wd(60s);
  QueueName q("cli-create"), plain("cli-plain");
  const std::vector<std::string> args = {"create",  q,    "--capacity",     "7", "--max-payload", "33",
                                         "--lease", "2m", "--max-attempts", "3", "--mode",        "0640"};
  const Result c = jr(args);
  ASSERT_RUN(args, c, 0);
  EXPECT_TRUE(contains(c.out, q.str())) << c.out;
  EXPECT_EQ(c.err, "");
  struct ::stat st {};
  ASSERT_EQ(::stat(("/dev/shm/jobring." + q.str()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);

  const Result s = jr({"stat", q, "--json"});
  ASSERT_RUN((std::vector<std::string>{"stat", q, "--json"}), s, 0);
  const auto j = parse_json(s.out);
  ASSERT_TRUE(j) << "not JSON: " << s.out;
  EXPECT_EQ(j->str("name"), q.str());
  EXPECT_EQ(j->num("capacity"), 7);
  EXPECT_EQ(j->num("max_payload"), 33);
  EXPECT_EQ(j->num("free"), 7);
  EXPECT_EQ(j->num("default_lease_ms"), 120000);
  EXPECT_EQ(j->num("max_attempts"), 3);
  const Options o = Queue::open(q).options();
  EXPECT_EQ(o.capacity, 7u);
  EXPECT_EQ(o.max_payload, 33u);
  EXPECT_EQ(o.default_lease, 120s);
  EXPECT_EQ(o.max_attempts, 3u);

  // The text form names the queue and its options.
  const Result t = jr({"stat", q});
  ASSERT_RUN((std::vector<std::string>{"stat", q}), t, 0);
  EXPECT_TRUE(contains(t.out, q.str()) && contains(t.out, "capacity 7") && contains(t.out, "2m")) << t.out;
  // ... and every statistic by the name stat --json gives it.
  EXPECT_TRUE(contains(t.out, " free 7 ") && contains(t.out, " expired 0 ") &&
              contains(t.out, " expired_total 0 "))
      << t.out;

  // Defaults: mode 0600.
  ASSERT_RUN((std::vector<std::string>{"create", plain}), jr({"create", plain}), 0);
  ASSERT_EQ(::stat(("/dev/shm/jobring." + plain.str()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  const Result again = jr({"create", q, "--capacity", "9"});
  EXPECT_RUN((std::vector<std::string>{"create", q}), again, 1);
  EXPECT_TRUE(contains(again.err, "'" + q.str() + "'") && contains(again.err, "exists")) << again.err;
  EXPECT_EQ(Queue::open(q).options().capacity, 7u) << "a failed create must not touch the existing queue";

  const Result rm = jr({"rm", q});
  EXPECT_RUN((std::vector<std::string>{"rm", q}), rm, 0);
  EXPECT_FALSE(segment_exists(q));
  const Result rm2 = jr({"rm", q});
  EXPECT_RUN((std::vector<std::string>{"rm", q}), rm2, 1);
  EXPECT_TRUE(contains(rm2.err, "'" + q.str() + "'")) << rm2.err;
}

// Options out of range are refused and create nothing.
TEST_F(Cli, CreateRefusesOptionsOutOfRange) {
  Watchdog wd(60s);
  QueueName q("cli-badopt");
  const std::vector<std::vector<std::string>> rows = {
      {"create", q, "--capacity", "0"},      {"create", q, "--capacity", "16777217"},
      {"create", q, "--max-payload", "0"},   {"create", q, "--lease", "0ms"},
      {"create", q, "--mode", "017777"},     {"create", q, "--capacity", "-1"},
      {"create", q, "--max-attempts", "-1"}, {"create", q, "--capacity", "1e3"},
      {"create", q, "--dedup-keys", "15"},   {"create", q, "--dedup-window", "8d"},
  };
  for (const auto& args : rows) {
    const Result r = jr(args);
    EXPECT_TRUE(r.code == 1 || r.code == 2) << show(cli(args), r);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
    EXPECT_FALSE(segment_exists(q)) << show(cli(args), r);
  }
}

// ls lists every queue, one line each (text) or one JSON array of stats
// objects (--json).
TEST_F(Cli, LsListsEveryQueue) {
  Watchdog wd(60s);
  QueueName a("cli-ls-a"), b("cli-ls-b");
  (void)Queue::create(a, {.capacity = 5});
  (void)Queue::create(b, {.capacity = 6});
  (void)Queue::open(b).push("one");

  const Result t = jr({"ls"});
  ASSERT_RUN((std::vector<std::string>{"ls"}), t, 0);
  EXPECT_EQ(t.out.rfind("NAME", 0), 0u) << t.out;
  std::map<std::string, std::string> lines;
  std::istringstream in(t.out);
  for (std::string line; std::getline(in, line);) lines[line.substr(0, line.find(' '))] = line;
  ASSERT_TRUE(lines.count(a.str())) << t.out;
  ASSERT_TRUE(lines.count(b.str())) << t.out;
  std::istringstream la(lines[a.str()]), lb(lines[b.str()]);
  std::string name;
  unsigned cap = 0, ready = 0;
  la >> name >> cap >> ready;
  EXPECT_EQ(cap, 5u);
  EXPECT_EQ(ready, 0u);
  lb >> name >> cap >> ready;
  EXPECT_EQ(cap, 6u);
  EXPECT_EQ(ready, 1u);

  const Result jres = jr({"ls", "--json"});
  ASSERT_RUN((std::vector<std::string>{"ls", "--json"}), jres, 0);
  const auto j = parse_json(jres.out);
  ASSERT_TRUE(j && j->kind == Json::Kind::array) << "not a JSON array: " << jres.out;
  std::map<std::string, const Json*> by_name;
  for (const auto& item : j->items) {
    ASSERT_EQ(item.kind, Json::Kind::object);
    by_name[item.str("name")] = &item;
  }
  ASSERT_TRUE(by_name.count(a.str()) && by_name.count(b.str())) << jres.out;
  EXPECT_EQ(by_name[a.str()]->num("capacity"), 5);
  EXPECT_EQ(by_name[b.str()]->num("capacity"), 6);
  EXPECT_EQ(by_name[b.str()]->num("ready"), 1);
}

// Issue 14 item 9: a 64-character name (the longest allowed) keeps ls's
// columns aligned: the name column is as wide as the longest name.
TEST_F(Cli, Item9_LsColumnsHoldTheLongestName) {
  Watchdog wd(60s);
  QueueName shortq("cli-ls-s");
  std::string longest = "test.ls-long." + std::to_string(::getpid()) + ".";
  longest.resize(64, 'x');
  Queue::remove(longest);
  (void)Queue::create(shortq, {.capacity = 5});
  (void)Queue::create(longest, {.capacity = 7});
  const Result t = jr({"ls"});
  Queue::remove(longest);
  ASSERT_RUN((std::vector<std::string>{"ls"}), t, 0);
  std::istringstream in(t.out);
  std::string header;
  std::getline(in, header);
  const std::size_t cap_end = header.find("CAPACITY") + std::string("CAPACITY").size();
  ASSERT_NE(header.find("CAPACITY"), std::string::npos) << t.out;
  int checked = 0;
  for (std::string line; std::getline(in, line);) {
    const std::string name = line.substr(0, line.find(' '));
    if (name != shortq.str() && name != longest) continue;
    ++checked;
    ASSERT_GT(line.size(), cap_end) << t.out;
    EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(line[cap_end - 1]))) << "misaligned:\n" << t.out;
    EXPECT_EQ(line[cap_end], ' ') << "misaligned:\n" << t.out;
  }
  EXPECT_EQ(checked, 2) << t.out;
}

// stat --json: one object with every field the issue asks for, and the
// values of a known history. Its keys are the names of the jobring::Stats
// fields: "expired" is the gauge (leases past their deadline not yet taken
// over), "expired_total" the total of takeovers.
TEST_F(Cli, StatJsonHasEveryFieldWithTheRightValues) {
  Watchdog wd(60s);
  QueueName q("cli-stat");
  (void)Queue::create(q, {.capacity = 4});
  Queue queue = Queue::open(q);
  (void)queue.push("a");
  (void)queue.push("b");
  (void)queue.push("c", {.delay = 1h});
  auto ja = queue.try_claim({.lease = 60s, .owner = Owner::detached});
  ASSERT_TRUE(ja);
  ASSERT_EQ(queue.ack(ja->lease), LeaseStatus::ok);
  auto jb = queue.try_claim({.lease = 60s, .owner = Owner::detached});
  ASSERT_TRUE(jb);

  const Result r = jr({"stat", q, "--json"});
  ASSERT_RUN((std::vector<std::string>{"stat", q, "--json"}), r, 0);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  const auto j = parse_json(r.out);
  ASSERT_TRUE(j && j->kind == Json::Kind::object) << "not a JSON object: " << r.out;
  // The issue's required keys, and every statistic by its jobring::Stats name.
  for (const char* key :
       {"name",          "capacity",        "max_payload",     "free",      "writing",
        "ready",         "delayed",         "leased",          "expired",   "dead",
        "corrupt",       "oldest_lease_ms", "oldest_ready_ms", "keys_live", "keys_remembered",
        "keys_capacity", "pushed",          "claimed",         "acked",     "released",
        "expired_total", "dead_lettered",   "requeued",        "purged",    "recovered_writes",
        "reclaimed",     "duplicates",      "keys_evicted",    "keys_full"})
    EXPECT_TRUE(j->has(key)) << "stat --json lacks \"" << key << "\": " << r.out;
  EXPECT_FALSE(j->has("overdue")) << "renamed to \"expired\": " << r.out;
  EXPECT_EQ(j->str("name"), q.str());
  EXPECT_EQ(j->num("capacity"), 4);
  EXPECT_EQ(j->num("max_payload"), 1024);
  EXPECT_EQ(j->num("free"), 2);
  EXPECT_EQ(j->num("ready"), 0);
  EXPECT_EQ(j->num("delayed"), 1);
  EXPECT_EQ(j->num("leased"), 1);
  EXPECT_EQ(j->num("dead"), 0);
  EXPECT_EQ(j->num("pushed"), 3);
  EXPECT_EQ(j->num("claimed"), 2);
  EXPECT_EQ(j->num("acked"), 1);
  EXPECT_EQ(j->num("released"), 0);
  EXPECT_EQ(j->num("expired"), 0);
  EXPECT_EQ(j->num("expired_total"), 0);
  EXPECT_EQ(j->num("reclaimed"), 0);
  EXPECT_EQ(j->num("dead_lettered"), 0);
  EXPECT_EQ(queue.ack(jb->lease), LeaseStatus::ok);
}

// The gauge "expired" counts a lease past its deadline until a claim takes it
// over; then the total "expired_total" counts the takeover (lease expiry ->
// claimed again with attempt + 1).
TEST_F(Cli, StatExpiredGaugeAndExpiredTotal) {
  Watchdog wd(60s);
  QueueName q("cli-expired");
  (void)Queue::create(q, {});
  ASSERT_TRUE(is_decimal_line(jr({"push", q, "job"}).out));
  const Result c = jr({"claim", q, "--lease", "50ms"});
  ASSERT_RUN((std::vector<std::string>{"claim", q}), c, 0);
  std::optional<Json> j;
  ASSERT_TRUE(test::poll_until(
      [&] {
        j = parse_json(jr({"stat", q, "--json"}).out);
        return j && j->num("expired") == 1;
      },
      20s, 20ms))
      << "the expired lease never showed in the \"expired\" gauge";
  EXPECT_EQ(j->num("leased"), 0);
  EXPECT_EQ(j->num("expired_total"), 0);
  const Result again = jr({"claim", q});
  ASSERT_RUN((std::vector<std::string>{"claim", q}), again, 0);
  const auto cj = parse_json(again.out);
  ASSERT_TRUE(cj);
  EXPECT_EQ(cj->num("attempt"), 2);
  j = parse_json(jr({"stat", q, "--json"}).out);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->num("expired"), 0);
  EXPECT_EQ(j->num("expired_total"), 1);
  EXPECT_EQ(j->num("leased"), 1);
  EXPECT_EQ(j->num("claimed"), 2);
}

// stat --watch D repeats until SIGINT (or SIGTERM), then exits 0.
TEST_F(Cli, StatWatchRepeatsUntilInterrupted) {
  Watchdog wd(60s);
  QueueName q("cli-watch");
  (void)Queue::create(q, {});
  for (int sig : {SIGINT, SIGTERM}) {
    for (bool json : {true, false}) {
      std::vector<std::string> args = {"stat", q, "--watch", "50ms"};
      if (json) args.emplace_back("--json");
      auto p = jr_bg(args);
      const std::string marker = json ? "\"name\"" : "queue " + q.str();
      auto count = [&](const std::string& out) {
        std::size_t n = 0;
        for (std::size_t at = out.find(marker); at != std::string::npos; at = out.find(marker, at + 1)) ++n;
        return n;
      };
      EXPECT_TRUE(
          p->wait_output([&](const std::string& out, const std::string&) { return count(out) >= 3; }, 20s))
          << show(p->argv(), {-1, p->out(), p->err()});
      send_and_wait_delivered(*p, sig);
      const Result r = p->wait();
      EXPECT_EQ(r.code, 0) << show(p->argv(), r);
      if (json) {
        std::istringstream in(r.out);
        for (std::string line; std::getline(in, line);) EXPECT_TRUE(parse_json(line)) << "not JSON: " << line;
      }
    }
  }
}

// ===========================================================================
// push / claim / ack / release / extend
// ===========================================================================

// push prints the job id; DATA or stdin (exact bytes, with newlines, NULs and
// invalid UTF-8) becomes the payload; claim returns it with that id.
TEST_F(Cli, PushDataOrStdinAndClaimReturnsIt) {
  Watchdog wd(60s);
  QueueName q("cli-push");
  (void)Queue::create(q, {});
  const std::string binary("bin\0\xff\n\x01 end", 11);
  struct Row {
    std::vector<std::string> args;
    std::string input;
    std::string payload;
  };
  const std::vector<Row> rows = {
      {{"push", q, "hello world"}, "", "hello world"},
      {{"push", q}, "line one\nline two\n", "line one\nline two\n"},
      {{"push", q}, binary, binary},
      {{"push", q, ""}, "", ""},
      {{"push", q}, "", ""},
      {{"push", q, "--", "-dash"}, "", "-dash"},
      {{"push", q, "caf\xc3\xa9 \"q\" \\ \t"}, "", "caf\xc3\xa9 \"q\" \\ \t"},
  };
  std::vector<std::uint64_t> ids;
  for (const auto& row : rows) {
    const Result r = jr(row.args, row.input);
    ASSERT_RUN(row.args, r, 0);
    ASSERT_TRUE(is_decimal_line(r.out)) << "push must print the job id alone: " << show(cli(row.args), r);
    EXPECT_EQ(r.err, "");
    ids.push_back(std::stoull(r.out));
  }
  EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).size(), ids.size()) << "job ids must be unique";
  // Claimed in push order (guarantee 6, one producer), payloads intact.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Result r = jr({"claim", q});
    ASSERT_RUN((std::vector<std::string>{"claim", q}), r, 0);
    const auto j = parse_json(r.out);
    ASSERT_TRUE(j) << "not JSON: " << r.out;
    EXPECT_EQ(static_cast<std::uint64_t>(j->num("job")), ids[i]);
    EXPECT_EQ(payload_of(*j), rows[i].payload) << r.out;
  }
}

// push --key: a second push of the key prints the first job's id and a note
// on stderr, and adds nothing (de-duplication, queue.hpp); claim shows the
// key; stat counts the duplicate; create sets the table and window; a bad key
// is a usage error.
TEST_F(Cli, PushKeyDeduplicates) {
  Watchdog wd(60s);
  QueueName q("cli-key");
  const Result c = jr({"create", q, "--dedup-keys", "40", "--dedup-window", "1h"});
  ASSERT_RUN((std::vector<std::string>{"create", q}), c, 0);
  const Result a = jr({"push", q, "first", "--key", "order-7"});
  ASSERT_RUN((std::vector<std::string>{"push", q, "first", "--key", "order-7"}), a, 0);
  EXPECT_EQ(a.err, "");
  const Result b = jr({"push", q, "second", "--key", "order-7"});
  ASSERT_RUN((std::vector<std::string>{"push", q, "second", "--key", "order-7"}), b, 0);
  EXPECT_EQ(b.out, a.out) << "a duplicate prints the existing job's id";
  EXPECT_NE(b.err.find("order-7"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("nothing pushed"), std::string::npos) << b.err;
  const Result st = jr({"stat", q, "--json"});
  const auto j = parse_json(st.out);
  ASSERT_TRUE(j) << st.out;
  EXPECT_EQ(j->num("ready"), 1);
  EXPECT_EQ(j->num("duplicates"), 1);
  EXPECT_EQ(j->num("keys_live"), 1);
  EXPECT_EQ(j->num("keys_capacity"), 48);  // 40 rounded up to whole buckets of 16
  EXPECT_EQ(j->num("dedup_window_ms"), 3'600'000);
  const Result cl = jr({"claim", q});
  const auto job = parse_json(cl.out);
  ASSERT_TRUE(job) << cl.out;
  EXPECT_EQ(job->str("key"), "order-7") << cl.out;
  EXPECT_EQ(payload_of(*job), "first");
  for (const std::string& bad : {std::string(), std::string(65, 'k')}) {
    const Result r = jr({"push", q, "x", "--key", bad});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

// claim prints one JSON object: job, handle, attempt, lease_ms, payload,
// payload_encoding; utf8 for text, base64 for bytes that are not UTF-8. The
// handle is the lease: ack with it works once.
TEST_F(Cli, ClaimJsonFields) {
  Watchdog wd(60s);
  QueueName q("cli-claim");
  (void)Queue::create(q, {.default_lease = 45s});
  const std::string id_text = jr({"push", q, "text \xe2\x82\xac"}).out;
  ASSERT_TRUE(is_decimal_line(id_text));
  ASSERT_TRUE(is_decimal_line(jr({"push", q}, std::string("\xff\xfe\x80", 3)).out));

  const Result r1 = jr({"claim", q});
  ASSERT_RUN((std::vector<std::string>{"claim", q}), r1, 0);
  EXPECT_EQ(std::count(r1.out.begin(), r1.out.end(), '\n'), 1) << r1.out;
  EXPECT_EQ(r1.err, "");
  const auto j1 = parse_json(r1.out);
  ASSERT_TRUE(j1 && j1->kind == Json::Kind::object) << "not a JSON object: " << r1.out;
  for (const char* key : {"job", "handle", "attempt", "lease_ms", "payload", "payload_encoding"})
    EXPECT_TRUE(j1->has(key)) << key << " missing: " << r1.out;
  EXPECT_EQ(j1->num("job"), std::stoll(id_text));
  EXPECT_EQ(j1->num("attempt"), 1);
  EXPECT_EQ(j1->num("lease_ms"), 45000) << "without --lease: the queue's default";
  EXPECT_EQ(j1->str("payload_encoding"), "utf8");
  EXPECT_EQ(j1->str("payload"), "text \xe2\x82\xac");
  const auto lease = Lease::parse(j1->str("handle"));
  ASSERT_TRUE(lease) << "handle does not parse: " << j1->str("handle");
  EXPECT_EQ(static_cast<std::int64_t>(lease->job), j1->num("job"));

  const Result r2 = jr({"claim", q, "--lease", "2m"});
  ASSERT_RUN((std::vector<std::string>{"claim", q}), r2, 0);
  const auto j2 = parse_json(r2.out);
  ASSERT_TRUE(j2) << r2.out;
  EXPECT_EQ(j2->num("lease_ms"), 120000);
  EXPECT_EQ(j2->str("payload_encoding"), "base64");
  EXPECT_EQ(payload_of(*j2), std::string("\xff\xfe\x80", 3));

  // Detached leases outlive the claim command: both jobs are still leased.
  const Stats s = stats_of(q);
  EXPECT_EQ(s.leased, 2u);
  EXPECT_EQ(s.ready, 0u);

  const std::vector<std::string> ack = {"ack", q, j1->str("handle")};
  const Result a = jr(ack);
  EXPECT_RUN(ack, a, 0);
  EXPECT_EQ(a.out, "");
  EXPECT_RUN(ack, jr(ack), 4);
  EXPECT_EQ(stats_of(q).acked, 1u);
}

// A payload with a NUL byte is binary: a JSON consumer in a shell (jq -r,
// $(...)) cannot carry a NUL, so claim must send it as base64, lossless.
TEST_F(Cli, ClaimJsonPayloadWithNulIsBase64) {
  Watchdog wd(60s);
  QueueName q("cli-nul");
  (void)Queue::create(q, {});
  const std::string payload("a\0b", 3);
  ASSERT_TRUE(is_decimal_line(jr({"push", q}, payload).out));
  const Result r = jr({"claim", q});
  ASSERT_RUN((std::vector<std::string>{"claim", q}), r, 0);
  const auto j = parse_json(r.out);
  ASSERT_TRUE(j) << r.out;
  EXPECT_EQ(payload_of(*j), payload) << "lossless either way: " << r.out;
  EXPECT_EQ(j->str("payload_encoding"), "base64") << r.out;
}

// claim --raw: the payload's exact bytes on stdout, the handle (and a newline)
// alone on stderr; the handle acks the job.
TEST_F(Cli, ClaimRawWritesExactBytes) {
  Watchdog wd(60s);
  QueueName q("cli-raw");
  (void)Queue::create(q, {});
  const std::string payload("\0\x01\xff\n\r\nno newline at the end", 26);
  ASSERT_TRUE(is_decimal_line(jr({"push", q}, payload).out));
  const Result r = jr({"claim", q, "--raw"});
  ASSERT_RUN((std::vector<std::string>{"claim", q, "--raw"}), r, 0);
  EXPECT_EQ(r.out, payload);
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n');
  const std::string handle = r.err.substr(0, r.err.size() - 1);
  ASSERT_TRUE(Lease::parse(handle)) << "stderr must be the handle alone: [" << r.err << "]";
  EXPECT_RUN((std::vector<std::string>{"ack", q, handle}), jr({"ack", q, handle}), 0);
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.free, Queue::open(q).options().capacity);
}

// Nothing to claim: exit 3, nothing on stdout, stderr names the queue — also
// with --wait (timed out), with --raw, and when the only jobs are delayed or
// leased (guarantee 5: neither is handed out).
TEST_F(Cli, NothingToClaimExitsThree) {
  Watchdog wd(60s);
  QueueName q("cli-empty");
  (void)Queue::create(q, {});
  const std::vector<std::vector<std::string>> rows = {
      {"claim", q}, {"claim", q, "--wait", "100ms"}, {"claim", q, "--raw"}, {"claim", q, "--lease", "1s"}};
  auto check_all = [&] {
    for (const auto& args : rows) {
      const Result r = jr(args);
      EXPECT_RUN(args, r, 3);
      EXPECT_EQ(r.out, "") << show(cli(args), r);
      EXPECT_TRUE(contains(r.err, "'" + q.str() + "'")) << show(cli(args), r);
    }
  };
  check_all();
  ASSERT_EQ(jr({"push", q, "later", "--delay", "1h"}).code, 0);
  ASSERT_EQ(jr({"push", q, "held"}).code, 0);
  ASSERT_EQ(jr({"claim", q, "--lease", "1h"}).code, 0);
  check_all();
  const Stats s = stats_of(q);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.leased, 1u);
}

// claim --wait D sleeps until a job comes: a push from another process wakes it.
TEST_F(Cli, ClaimWaitGetsAJobPushedLater) {
  Watchdog wd(60s);
  QueueName q("cli-claimwait");
  (void)Queue::create(q, {});
  auto p = jr_bg({"claim", q, "--wait", "20s"});
  std::this_thread::sleep_for(50ms);  // not needed for correctness: lets the claim block first, usually
  ASSERT_TRUE(is_decimal_line(jr({"push", q, "late job"}).out));
  const Result r = p->wait(30s);
  ASSERT_EQ(r.code, 0) << show(p->argv(), r);
  const auto j = parse_json(r.out);
  ASSERT_TRUE(j) << r.out;
  EXPECT_EQ(j->str("payload"), "late job");
}

// SIGINT / SIGTERM end a blocked claim --wait at once: exit 3, nothing claimed.
TEST_F(Cli, ClaimWaitInterruptedBySignalExitsThree) {
  Watchdog wd(60s);
  QueueName q("cli-claimint");
  (void)Queue::create(q, {});
  for (int sig : {SIGINT, SIGTERM}) {
    auto p = jr_bg({"claim", q, "--wait", "1h"});
    wait_for_handler(*p, sig);  // in the wait, or about to enter it: the outcome is the same
    send_and_wait_delivered(*p, sig);
    const Result r = p->wait(20s);
    EXPECT_EQ(r.code, 3) << show(p->argv(), r);
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(stats_of(q).claimed, 0u);
}

// A full queue: push exits 3 naming the queue and its capacity; push --wait D
// gets in when a worker makes room (guarantee 7: "full", or waits if asked).
TEST_F(Cli, FullQueueExitsThreeAndPushWaitGetsIn) {
  Watchdog wd(60s);
  QueueName q("cli-full");
  (void)Queue::create(q, {.capacity = 1});
  ASSERT_TRUE(is_decimal_line(jr({"push", q, "first"}).out));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"push", q, "second"},
        std::vector<std::string>{"push", q, "second", "--wait", "100ms"}}) {
    const Result r = jr(args);
    EXPECT_RUN(args, r, 3);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, "'" + q.str() + "'") && contains(r.err, "full")) << show(cli(args), r);
  }
  EXPECT_EQ(stats_of(q).pushed, 1u);

  auto p = jr_bg({"push", q, "second", "--wait", "20s"});
  std::this_thread::sleep_for(50ms);
  const Result c = jr({"claim", q});
  ASSERT_EQ(c.code, 0) << c.err;
  ASSERT_EQ(jr({"ack", q, jstr(c.out, "handle")}).code, 0);
  const Result r = p->wait(30s);
  ASSERT_EQ(r.code, 0) << show(p->argv(), r);
  EXPECT_TRUE(is_decimal_line(r.out)) << r.out;
  const Result c2 = jr({"claim", q});
  ASSERT_EQ(c2.code, 0);
  EXPECT_EQ(jstr(c2.out, "payload"), "second");

  // SIGINT ends a push that waits for room: exit 3, nothing pushed.
  auto w = jr_bg({"push", q, "third", "--wait", "1h"});
  wait_for_handler(*w, SIGINT);
  send_and_wait_delivered(*w, SIGINT);
  const Result wr = w->wait(20s);
  EXPECT_EQ(wr.code, 3) << show(w->argv(), wr);
  EXPECT_EQ(stats_of(q).pushed, 2u);
}

// A payload over max_payload: exit 1, the message names the queue and the
// limit; nothing pushed. Exactly max_payload bytes is fine.
TEST_F(Cli, PayloadTooLargeExitsOneWithTheLimit) {
  Watchdog wd(60s);
  QueueName q("cli-big");
  (void)Queue::create(q, {.max_payload = 100});
  const std::string over(101, 'x'), exact(100, 'y');
  const std::vector<std::pair<std::vector<std::string>, std::string>> rows = {
      {{"push", q, over}, ""}, {{"push", q}, over}, {{"push", q}, std::string(200000, 'z')}};
  for (const auto& [args, input] : rows) {
    const Result r = jr(args, input);
    EXPECT_RUN(args, r, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(contains(r.err, "100")) << "the message must give the limit" << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, "'" + q.str() + "'")) << show(cli(args), r);
  }
  EXPECT_EQ(stats_of(q).pushed, 0u);
  EXPECT_RUN((std::vector<std::string>{"push", q}), jr({"push", q}, exact), 0);
  EXPECT_EQ(stats_of(q).pushed, 1u);
}

// push --delay D: the job is delayed (not claimable), then claimable.
TEST_F(Cli, PushDelayHidesTheJobUntilDue) {
  Watchdog wd(60s);
  QueueName q("cli-delay");
  (void)Queue::create(q, {});
  ASSERT_TRUE(is_decimal_line(jr({"push", q, "later", "--delay", "300ms"}).out));
  EXPECT_EQ(stats_of(q).delayed + stats_of(q).ready, 1u);
  const Result r = jr({"claim", q, "--wait", "20s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(jstr(r.out, "payload"), "later");
  // A long delay: shows as delayed, is not claimable.
  ASSERT_TRUE(is_decimal_line(jr({"push", q, "much later", "--delay", "1h"}).out));
  EXPECT_EQ(stats_of(q).delayed, 1u);
  EXPECT_EQ(jr({"claim", q}).code, 3);
}

// Fencing (guarantee 4) through the CLI: a stale handle — acked, released,
// replaced by extend, or taken over after expiry — exits 4 and changes
// nothing.
TEST_F(Cli, StaleHandlesExitFour) {
  Watchdog wd(60s);
  QueueName q("cli-stale");
  (void)Queue::create(q, {});
  auto claim = [&](const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"claim", q};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = jr(args);
    EXPECT_EQ(r.code, 0) << show(cli(args), r);
    const auto j = parse_json(r.out);
    return j ? j->str("handle") : std::string("0.0.0");
  };
  auto expect_lost = [&](const std::vector<std::string>& args) {
    const Result r = jr(args);
    EXPECT_RUN(args, r, 4);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, "lease lost") && contains(r.err, "'" + q.str() + "'")) << show(cli(args), r);
  };
  auto all_ops_lost = [&](const std::string& h) {
    expect_lost({"ack", q, h});
    expect_lost({"release", q, h});
    expect_lost({"release", q, h, "--delay", "1s"});
    expect_lost({"extend", q, h, "--lease", "1m"});
  };

  // Acked.
  ASSERT_EQ(jr({"push", q, "a"}).code, 0);
  std::string h = claim();
  ASSERT_EQ(jr({"ack", q, h}).code, 0);
  all_ops_lost(h);

  // Released (then claimed again: attempt 2).
  ASSERT_EQ(jr({"push", q, "b"}).code, 0);
  h = claim();
  ASSERT_EQ(jr({"release", q, h}).code, 0);
  all_ops_lost(h);
  const Result again = jr({"claim", q});
  ASSERT_EQ(again.code, 0);
  const auto ja = parse_json(again.out);
  ASSERT_TRUE(ja);
  EXPECT_EQ(ja->str("payload"), "b");
  EXPECT_EQ(ja->num("attempt"), 2);
  const std::string hb = ja->str("handle");

  // Extended: the new handle works, the old one is stale.
  const Result ext = jr({"extend", q, hb, "--lease", "1m"});
  ASSERT_EQ(ext.code, 0) << ext.err;
  ASSERT_TRUE(!ext.out.empty() && ext.out.back() == '\n') << ext.out;
  const std::string hb2 = ext.out.substr(0, ext.out.size() - 1);
  const auto l1 = Lease::parse(hb), l2 = Lease::parse(hb2);
  ASSERT_TRUE(l1 && l2) << "extend must print the new handle alone: " << ext.out;
  EXPECT_EQ(l1->job, l2->job);
  EXPECT_EQ(l1->slot, l2->slot);
  EXPECT_NE(l1->token, l2->token);
  all_ops_lost(hb);

  // Expired and taken over by another claim: the first holder is fenced off.
  const Result rel = jr({"release", q, hb2});
  ASSERT_EQ(rel.code, 0) << rel.err;
  const std::string h_short = claim({"--lease", "50ms"});
  std::string h_taker;
  ASSERT_TRUE(test::poll_until(
      [&] {
        const Result r = jr({"claim", q, "--lease", "1m"});
        if (r.code == 0) h_taker = jstr(r.out, "handle");
        return r.code == 0;
      },
      20s, 20ms));
  all_ops_lost(h_short);
  EXPECT_EQ(jr({"ack", q, h_taker}).code, 0);

  // A well-formed handle for nothing (a slot out of range, a wrong token).
  all_ops_lost("1.4000000000.1");
  all_ops_lost("1.0.1");
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 2u);
  EXPECT_EQ(s.free, Queue::open(q).options().capacity);
}

// extend --lease D pushes the deadline out (peek shows the new time left);
// release --delay D makes the job delayed, plain release makes it ready.
TEST_F(Cli, ExtendAndReleaseChangeTheLease) {
  Watchdog wd(60s);
  QueueName q("cli-extend");
  (void)Queue::create(q, {});
  ASSERT_EQ(jr({"push", q, "job"}).code, 0);
  const Result c = jr({"claim", q, "--lease", "5s"});
  ASSERT_EQ(c.code, 0);
  const std::string h = jstr(c.out, "handle");
  const Result e = jr({"extend", q, h, "--lease", "1h"});
  ASSERT_EQ(e.code, 0) << e.err;
  const std::string h2 = e.out.substr(0, e.out.size() - 1);
  const auto peek = parse_json(jr({"peek", q, "--state", "leased", "--json"}).out);
  ASSERT_TRUE(peek && peek->items.size() == 1);
  EXPECT_GT(peek->items[0].num("ms_until"), 600'000) << "extend --lease 1h must move the deadline ~1 h out";

  ASSERT_EQ(jr({"release", q, h2, "--delay", "1h"}).code, 0);
  Stats s = stats_of(q);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.released, 1u);
  EXPECT_EQ(jr({"claim", q}).code, 3);

  ASSERT_EQ(jr({"push", q, "two"}).code, 0);
  const Result c2 = jr({"claim", q});
  ASSERT_EQ(c2.code, 0);
  ASSERT_EQ(jr({"release", q, jstr(c2.out, "handle")}).code, 0);
  s = stats_of(q);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.delayed, 1u);
}

// release --no-count gives the job back without counting the attempt: on a
// queue with max_attempts 1 the job is ready again with attempt 1 (a plain
// release dead-letters it); with --delay it is a usage error.
TEST_F(Cli, ReleaseNoCountDoesNotUseAnAttempt) {
  Watchdog wd(60s);
  QueueName q("cli-nocount");
  (void)Queue::create(q, {.max_attempts = 1});
  ASSERT_EQ(jr({"push", q, "job"}).code, 0);
  const Result c = jr({"claim", q});
  ASSERT_EQ(c.code, 0);
  const std::string h = jstr(c.out, "handle");
  const Result both = jr({"release", q, h, "--no-count", "--delay", "1s"});
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.err.find("--no-count"), std::string::npos) << both.err;
  ASSERT_EQ(jr({"release", q, h, "--no-count"}).code, 0);
  Stats s = stats_of(q);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.dead, 0u);
  const Result again = jr({"claim", q});
  ASSERT_EQ(again.code, 0);
  EXPECT_EQ(again.out.find("\"attempt\":1,") != std::string::npos, true) << again.out;
  ASSERT_EQ(jr({"release", q, jstr(again.out, "handle")}).code, 0);
  s = stats_of(q);
  EXPECT_EQ(s.dead, 1u);
}

// ===========================================================================
// peek / requeue / purge (dead jobs: release after max_attempts -> dead)
// ===========================================================================

// peek shows the jobs of one state without claiming them; --limit bounds the
// list; --json is an array of objects with job, state, attempts, payload.
TEST_F(Cli, PeekEveryState) {
  Watchdog wd(60s);
  QueueName q("cli-peek");
  (void)Queue::create(q, {.max_attempts = 1});
  for (int i = 0; i < 5; ++i) ASSERT_EQ(jr({"push", q, "ready " + std::to_string(i)}).code, 0);
  ASSERT_EQ(jr({"push", q}, std::string("\x00\xff", 2)).code, 0);
  ASSERT_EQ(jr({"push", q, "delayed", "--delay", "1h"}).code, 0);
  // Claim "ready 0" and release it: max_attempts 1 -> dead. Claim "ready 1" and hold it.
  const Result d = jr({"claim", q});
  ASSERT_EQ(d.code, 0);
  ASSERT_EQ(jr({"release", q, jstr(d.out, "handle")}).code, 0);
  const Result l = jr({"claim", q, "--lease", "1h"});
  ASSERT_EQ(l.code, 0);

  struct Row {
    std::string state;
    std::size_t count;
  };
  for (const Row& row : {Row{"ready", 4}, Row{"delayed", 1}, Row{"leased", 1}, Row{"dead", 1}}) {
    const std::vector<std::string> args = {"peek", q, "--state", row.state, "--json"};
    const Result r = jr(args);
    ASSERT_RUN(args, r, 0);
    const auto j = parse_json(r.out);
    ASSERT_TRUE(j && j->kind == Json::Kind::array) << r.out;
    EXPECT_EQ(j->items.size(), row.count) << r.out;
    for (const auto& item : j->items) {
      EXPECT_EQ(item.str("state"), row.state);
      EXPECT_TRUE(item.has("job") && item.has("attempts") && item.has("payload")) << r.out;
      EXPECT_TRUE(payload_of(item).has_value());
    }
    if (row.state == "dead") {
      EXPECT_EQ(payload_of(j->items[0]), "ready 0");
      EXPECT_EQ(j->items[0].num("attempts"), 1);
    }
    if (row.state == "leased") {
      EXPECT_EQ(payload_of(j->items[0]), "ready 1");
      EXPECT_EQ(j->items[0].num("owner_pid"), 0) << "claim's lease is detached";
      EXPECT_GT(j->items[0].num("ms_until"), 0);
    }
    if (row.state == "delayed") {
      EXPECT_GT(j->items[0].num("ms_until"), 0);
    }
    // Text form: one line per job.
    const Result t = jr({"peek", q, "--state", row.state});
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_EQ(static_cast<std::size_t>(std::count(t.out.begin(), t.out.end(), '\n')), row.count) << t.out;
  }
  // The binary payload comes back as base64.
  const auto ready = parse_json(jr({"peek", q, "--json"}).out);
  ASSERT_TRUE(ready);
  bool saw_binary = false;
  for (const auto& item : ready->items)
    if (item.str("payload_encoding") == "base64") saw_binary = payload_of(item) == std::string("\x00\xff", 2);
  EXPECT_TRUE(saw_binary);
  // --limit.
  const auto two = parse_json(jr({"peek", q, "--limit", "2", "--json"}).out);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->items.size(), 2u);
  // peek claims nothing.
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 2u);
  EXPECT_EQ(s.ready, 4u);
}

// Issue 14 item 5: `stat --json` has oldest_ready_ms, the age of the oldest
// claimable job, and `peek` each job's enqueued_ms_ago (JSON) / "enqueued
// ... ago" (text). Lower bounds only: after 50 ms both are at least 50.
TEST_F(Cli, Item5_StatAndPeekShowTheOldestWaitingJobsAge) {
  Watchdog wd(60s);
  QueueName q("cli-age");
  (void)Queue::create(q, {.capacity = 4});
  ASSERT_EQ(jr({"push", q, "waiting"}).code, 0);
  std::this_thread::sleep_for(50ms);
  const auto stat = parse_json(jr({"stat", q, "--json"}).out);
  ASSERT_TRUE(stat);
  EXPECT_GE(stat->num("oldest_ready_ms"), 50);
  const Result text_stat = jr({"stat", q});
  EXPECT_NE(text_stat.out.find("oldest_ready_ms "), std::string::npos) << text_stat.out;
  const auto peek = parse_json(jr({"peek", q, "--json"}).out);
  ASSERT_TRUE(peek && peek->items.size() == 1);
  EXPECT_GE(peek->items[0].num("enqueued_ms_ago"), 50);
  const Result line = jr({"peek", q});
  EXPECT_NE(line.out.find("  enqueued "), std::string::npos) << line.out;
  EXPECT_NE(line.out.find(" ago"), std::string::npos) << line.out;
}

// Issue 14 item 6: `peek --state dead` tells when and why each job died:
// `release --error` keeps the text (JSON "error", "failed_ms_ago"; text
// "died ... ago: ..."). Fails without the note. failed_ms_ago: lower bound.
TEST_F(Cli, Item6_PeekDeadShowsTheErrorAndWhenItDied) {
  Watchdog wd(60s);
  QueueName q("cli-why");
  (void)Queue::create(q, {.max_attempts = 1});
  ASSERT_EQ(jr({"push", q, "poison"}).code, 0);
  const Result c = jr({"claim", q});
  ASSERT_EQ(c.code, 0);
  const std::vector<std::string> release = {"release", q, jstr(c.out, "handle"), "--error", "bad input: x"};
  ASSERT_RUN(release, jr(release), 0);
  std::this_thread::sleep_for(20ms);
  const auto dead = parse_json(jr({"peek", q, "--state", "dead", "--json"}).out);
  ASSERT_TRUE(dead && dead->items.size() == 1);
  EXPECT_EQ(dead->items[0].str("error"), "bad input: x");
  EXPECT_GE(dead->items[0].num("failed_ms_ago"), 20);
  const Result text = jr({"peek", q, "--state", "dead"});
  EXPECT_NE(text.out.find("died "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" ago: \"bad input: x\""), std::string::npos) << text.out;
  // Other states carry no such fields.
  ASSERT_EQ(jr({"push", q, "fine"}).code, 0);
  const auto ready = parse_json(jr({"peek", q, "--json"}).out);
  ASSERT_TRUE(ready && ready->items.size() == 1);
  EXPECT_FALSE(ready->items[0].has("error"));
  // --no-count gives a job back untried: no error text to keep.
  EXPECT_EQ(jr({"release", q, "1.0.0", "--no-count", "--error", "x"}).code, 2);
}

// Issue 14 item 6's way out: `move` takes the dead jobs out of a queue into a
// dead-letter queue (dead there, notes kept) and `move --ready` drives them
// back; a full target exits 3 and keeps the rest; usage errors name what to
// give. Fails without the command or if the note did not travel.
TEST_F(Cli, Item6_MoveDeadJobsToADeadLetterQueueAndBack) {
  Watchdog wd(60s);
  QueueName q("cli-mv"), dlq("cli-mv.dead"), tiny("cli-mv.tiny");
  (void)Queue::create(q, {.capacity = 4, .max_attempts = 1});
  (void)Queue::create(dlq, {.capacity = 8});
  (void)Queue::create(tiny, {.capacity = 1});
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(jr({"push", q, "job " + std::to_string(i)}).code, 0);
    const Result c = jr({"claim", q});
    ASSERT_EQ(c.code, 0);
    ASSERT_EQ(jr({"release", q, jstr(c.out, "handle"), "--error", "bad input"}).code, 0);
  }
  const Result full = jr({"move", q, tiny});
  EXPECT_RUN(std::vector<std::string>({"move", q, tiny}), full, 3);
  EXPECT_EQ(full.out, "1\n");
  EXPECT_TRUE(contains(full.err, "is full")) << full.err;
  const Result moved = jr({"move", q, dlq});
  EXPECT_EQ(moved.code, 0) << moved.err;
  EXPECT_EQ(moved.out, "2\n");
  const auto dead = parse_json(jr({"peek", dlq, "--state", "dead", "--json"}).out);
  ASSERT_TRUE(dead && dead->items.size() == 2);
  EXPECT_EQ(dead->items[0].str("error"), "bad input");
  const Result back = jr({"move", dlq, q, "--ready", "--limit", "1"});
  EXPECT_EQ(back.out, "1\n") << back.err;
  const auto ready = parse_json(jr({"peek", q, "--json"}).out);
  ASSERT_TRUE(ready && ready->items.size() == 1);
  expect_usage_errors(
      {{"move", q}, {"move", q, q}, {"move", q, "bad/name"}, {"move", q, dlq, "--limit", "0"}},
      {"missing the queue TO", "one queue", "bad queue name", "at least 1"});
}

// Issue 19: `pause` stops claims (claim exits 3 with jobs ready) while
// pushes go on; `stat` says PAUSED and how to resume, `stat --json` and
// `top` show it; `resume` hands jobs out again. Fails without the commands
// or if the pause did not reach another process (the CLI is one).
TEST_F(Cli, Issue19_PauseAndResume) {
  Watchdog wd(60s);
  QueueName q("cli-pause");
  (void)Queue::create(q, {.capacity = 4});
  ASSERT_EQ(jr({"push", q, "job"}).code, 0);
  const Result p = jr({"pause", q});
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.out, "queue '" + q.str() + "' paused\n");
  EXPECT_EQ(jr({"pause", q}).out, "queue '" + q.str() + "' was already paused\n");
  EXPECT_EQ(jr({"claim", q}).code, 3);
  EXPECT_EQ(jr({"push", q, "another"}).code, 0);
  const Result stat = jr({"stat", q});
  EXPECT_TRUE(contains(stat.out, "PAUSED")) << stat.out;
  EXPECT_TRUE(contains(stat.out, "jobring resume " + q.str())) << stat.out;
  EXPECT_TRUE(contains(jr({"stat", q, "--json"}).out, "\"paused\":1"));
  const Result top = jr({"top", q, "--once"});
  EXPECT_TRUE(contains(top.out, q.str() + " [paused]")) << top.out;
  EXPECT_EQ(jr({"resume", q}).out, "queue '" + q.str() + "' running\n");
  EXPECT_EQ(jr({"claim", q}).code, 0);
  expect_usage_errors({{"pause"}, {"resume", "a", "b"}}, {"NAME", "b"});
}

// Issue 19: `work` serves several queues, strict in the order named (the
// command sees JOBRING_QUEUE), or weighted; bad weights are usage errors.
// Fails if the later queue were served while the first had jobs.
TEST_F(Cli, Issue19_WorkServesSeveralQueuesInOrder) {
  Watchdog wd(60s);
  QueueName urgent("cli-urgent"), bulk("cli-bulk");
  Queue u = Queue::create(urgent, {.capacity = 8});
  Queue b = Queue::create(bulk, {.capacity = 8});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.push("b"));
    ASSERT_TRUE(u.push("u"));
  }
  test::TempFile out("work-queues");
  const std::vector<std::string> work = {"work",       urgent, bulk,
                                         "--max-jobs", "6",    "--",
                                         "/bin/sh",    "-c",   "echo \"$JOBRING_QUEUE\" >> " + out.path()};
  const Result r = jr(work);
  EXPECT_RUN(work, r, 0);
  const std::string u_line = urgent.str() + "\n", b_line = bulk.str() + "\n";
  EXPECT_EQ(out.contents(), u_line + u_line + u_line + b_line + b_line + b_line);
  expect_usage_errors({{"work", urgent, bulk, "--weights", "1", "--", "true"},
                       {"work", urgent, bulk, "--weights", "1,0", "--", "true"},
                       {"work", urgent, urgent, "--", "true"}},
                      {"one per queue", "1 to 1000", "named twice"});
}

// requeue: dead -> ready (attempts reset) by id or --dead; prints how many; an
// id that is not dead exits 1 naming it.
TEST_F(Cli, RequeueDeadJobs) {
  Watchdog wd(60s);
  QueueName q("cli-requeue");
  (void)Queue::create(q, {.max_attempts = 1});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const Result p = jr({"push", q, "job " + std::to_string(i)});
    ASSERT_TRUE(is_decimal_line(p.out));
    ids.push_back(p.out.substr(0, p.out.size() - 1));
    const Result c = jr({"claim", q});
    ASSERT_EQ(c.code, 0);
    ASSERT_EQ(jr({"release", q, jstr(c.out, "handle")}).code, 0);
  }
  ASSERT_EQ(stats_of(q).dead, 3u);

  const Result one = jr({"requeue", q, ids[0]});
  EXPECT_RUN((std::vector<std::string>{"requeue", q, ids[0]}), one, 0);
  EXPECT_EQ(one.out, "1\n");
  Stats s = stats_of(q);
  EXPECT_EQ(s.dead, 2u);
  EXPECT_EQ(s.ready, 1u);
  const auto peek = parse_json(jr({"peek", q, "--json"}).out);
  ASSERT_TRUE(peek && peek->items.size() == 1);
  EXPECT_EQ(peek->items[0].num("attempts"), 0) << "requeue resets the attempts";

  // Not dead (ids[0] is ready now) and unknown: exit 1, the others still done.
  const std::vector<std::string> mixed = {"requeue", q, ids[0], ids[1], "999999"};
  const Result m = jr(mixed);
  EXPECT_RUN(mixed, m, 1);
  EXPECT_EQ(m.out, "1\n");
  EXPECT_TRUE(contains(m.err, ids[0]) && contains(m.err, "999999") && contains(m.err, "'" + q.str() + "'"))
      << m.err;

  const Result all = jr({"requeue", q, "--dead"});
  EXPECT_RUN((std::vector<std::string>{"requeue", q, "--dead"}), all, 0);
  EXPECT_EQ(all.out, "1\n");
  const Result none = jr({"requeue", q, "--dead"});
  EXPECT_RUN((std::vector<std::string>{"requeue", q, "--dead"}), none, 0);
  EXPECT_EQ(none.out, "0\n");
  s = stats_of(q);
  EXPECT_EQ(s.dead, 0u);
  EXPECT_EQ(s.ready, 3u);
  EXPECT_EQ(s.requeued, 3u);
}

// purge deletes the jobs of a state (default: every job not under lease) and
// prints how many; a leased job is never purged.
TEST_F(Cli, PurgeByState) {
  Watchdog wd(60s);
  QueueName q("cli-purge");
  (void)Queue::create(q, {.max_attempts = 1});
  // One dead, one leased, then three ready and two delayed.
  ASSERT_EQ(jr({"push", q, "dead"}).code, 0);
  const Result d = jr({"claim", q});
  ASSERT_EQ(d.code, 0);
  ASSERT_EQ(jr({"release", q, jstr(d.out, "handle")}).code, 0);
  ASSERT_EQ(jr({"push", q, "leased"}).code, 0);
  const Result l = jr({"claim", q, "--lease", "1h"});
  ASSERT_EQ(l.code, 0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(jr({"push", q, "r"}).code, 0);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(jr({"push", q, "d", "--delay", "1h"}).code, 0);

  struct Row {
    std::vector<std::string> args;
    std::string out;
  };
  const std::vector<Row> rows = {
      {{"purge", q, "--state", "ready"}, "3\n"},
      {{"purge", q, "--state", "ready"}, "0\n"},
      {{"purge", q, "--state", "delayed"}, "2\n"},
      {{"purge", q, "--state", "dead"}, "1\n"},
      {{"purge", q, "--all"}, "0\n"},
  };
  for (const auto& row : rows) {
    const Result r = jr(row.args);
    EXPECT_RUN(row.args, r, 0);
    EXPECT_EQ(r.out, row.out) << show(cli(row.args), r);
  }
  Stats s = stats_of(q);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.purged, 6u);
  EXPECT_EQ(jr({"ack", q, jstr(l.out, "handle")}).code, 0) << "the leased job survived the purges";
  // A bare purge deletes nothing: it asks for --state or --all.
  ASSERT_EQ(jr({"push", q, "x"}).code, 0);
  ASSERT_EQ(jr({"push", q, "y", "--delay", "1h"}).code, 0);
  const Result bare = jr({"purge", q});
  EXPECT_EQ(bare.code, 2) << show(cli({"purge", q}), bare);
  EXPECT_NE(bare.err.find("--all"), std::string::npos) << bare.err;
  EXPECT_EQ(jr({"purge", q, "--state", "dead", "--all"}).code, 2);
  EXPECT_EQ(stats_of(q).ready, 1u) << "a bare purge deleted jobs";
  // --all (or --state all): everything not leased.
  const Result all = jr({"purge", q, "--all"});
  EXPECT_EQ(all.out, "2\n") << all.err;
  ASSERT_EQ(jr({"push", q, "z"}).code, 0);
  EXPECT_EQ(jr({"purge", q, "--state", "all"}).out, "1\n");
  s = stats_of(q);
  EXPECT_EQ(s.free, Queue::open(q).options().capacity);
}

// ===========================================================================
// work: a command per job
// ===========================================================================

std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script, "sh"}; }

std::vector<std::string> work_args(const std::string& q, std::vector<std::string> options,
                                   const std::string& script) {
  std::vector<std::string> args = {"work", q};
  args.insert(args.end(), options.begin(), options.end());
  args.emplace_back("--");
  for (auto& a : sh(script)) args.push_back(a);
  return args;
}

// A command that fails once and then succeeds: the job is released with
// backoff, claimed again (attempt 2) and acked; the queue ends empty.
// JOBRING_JOB_ID and JOBRING_ATTEMPT reach the command.
TEST_F(Cli, WorkRetriesAFailedJobThenAcksIt) {
  Watchdog wd(90s);
  QueueName q("cli-retry");
  (void)Queue::create(q, {});
  TempDir dir;
  const Result p = jr({"push", q, "flaky"});
  ASSERT_TRUE(is_decimal_line(p.out));
  const std::string id = p.out.substr(0, p.out.size() - 1);
  const auto args = work_args(q, {"--backoff", "50ms", "--max-jobs", "2", "--wait", "20s"},
                              "echo \"$JOBRING_JOB_ID $JOBRING_ATTEMPT $(cat)\" >> \"$T/attempts\"; "
                              "[ \"$JOBRING_ATTEMPT\" -ge 2 ]");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  const Result r = w.wait(60s);
  ASSERT_EQ(r.code, 0) << show(w.argv(), r);
  EXPECT_EQ(dir.read("attempts"), id + " 1 flaky\n" + id + " 2 flaky\n");
  EXPECT_TRUE(contains(r.err, "attempt 1 failed")) << r.err;
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.released, 1u);
  EXPECT_EQ(s.claimed, 2u);
  EXPECT_EQ(s.ready + s.delayed + s.leased + s.expired + s.dead, 0u);
  EXPECT_EQ(s.free, Queue::open(q).options().capacity);
}

// The payload reaches the command's stdin byte for byte, with the job's id
// and attempt in its environment.
TEST_F(Cli, WorkGivesThePayloadOnStdinAndTheJobInTheEnvironment) {
  Watchdog wd(60s);
  QueueName q("cli-env");
  (void)Queue::create(q, {});
  TempDir dir;
  const std::string binary("bin\0\xff\n tail", 11);
  std::map<std::string, std::string> by_id;
  for (const std::string& payload : {std::string("hello"), binary, std::string()}) {
    const Result p = jr({"push", q}, payload);
    ASSERT_TRUE(is_decimal_line(p.out));
    by_id[p.out.substr(0, p.out.size() - 1)] = payload;
  }
  const auto args = work_args(
      q, {"--max-jobs", "3", "--wait", "20s"},
      "cat > \"$T/payload.$JOBRING_JOB_ID\"; echo \"$JOBRING_ATTEMPT\" > \"$T/attempt.$JOBRING_JOB_ID\"");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  const Result r = w.wait(60s);
  ASSERT_EQ(r.code, 0) << show(w.argv(), r);
  for (const auto& [id, payload] : by_id) {
    EXPECT_TRUE(dir.has("payload." + id)) << "job " << id;
    EXPECT_EQ(dir.read("payload." + id), payload) << "job " << id;
    EXPECT_EQ(dir.read("attempt." + id), "1\n") << "job " << id;
  }
  EXPECT_EQ(stats_of(q).acked, 3u);
}

// --concurrency 2 runs two commands at once: each command waits (up to 10 s)
// until both have started, and fails if they never overlap.
TEST_F(Cli, WorkConcurrencyRunsCommandsAtOnce) {
  Watchdog wd(90s);
  QueueName q("cli-conc");
  (void)Queue::create(q, {});
  TempDir dir;
  for (int i = 0; i < 2; ++i) ASSERT_EQ(jr({"push", q, "j" + std::to_string(i)}).code, 0);
  const auto args =
      work_args(q, {"--concurrency", "2", "--max-jobs", "2", "--backoff", "10m", "--wait", "30s"},
                "touch \"$T/started.$JOBRING_JOB_ID\"; i=0; "
                "while [ \"$(ls \"$T\" | grep -c '^started\\.')\" -lt 2 ]; do "
                "  i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; "
                "done");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  const Result r = w.wait(60s);
  ASSERT_EQ(r.code, 0) << show(w.argv(), r);
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 2u) << "both commands must have run at the same time" << show(w.argv(), r);
  EXPECT_EQ(s.released, 0u);
}

// Failures on several handler threads at once: each is released with
// backoff, reported on stderr with its exit status, and retried; work exits
// 0 after all 4 jobs x 2 attempts. Fails if the per-thread failure report
// breaks (it once crashed `work --concurrency 2`).
TEST_F(Cli, WorkConcurrencyRetriesFailuresOnEveryThread) {
  Watchdog wd(90s);
  QueueName q("cli-conc-fail");
  (void)Queue::create(q, {});
  for (int i = 0; i < 4; ++i) ASSERT_EQ(jr({"push", q, "j" + std::to_string(i)}).code, 0);
  const auto args =
      work_args(q, {"--concurrency", "2", "--max-jobs", "8", "--backoff", "10ms", "--wait", "30s"},
                "[ \"$JOBRING_ATTEMPT\" -ge 2 ] || exit 5");
  const Result r = jr(args, "", 60s);
  EXPECT_RUN(args, r, 0);
  std::size_t reports = 0;
  for (std::size_t at = 0; (at = r.err.find("attempt 1 failed (exit 5); retry in ", at)) != std::string::npos;
       ++at)
    ++reports;
  EXPECT_EQ(reports, 4u) << r.err;
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 4u);
  EXPECT_EQ(s.released, 4u);
  EXPECT_EQ(s.claimed, 8u);
}

// --max-jobs N exits 0 after N jobs; the rest stay ready.
TEST_F(Cli, WorkMaxJobsStopsAfterN) {
  Watchdog wd(60s);
  QueueName q("cli-maxjobs");
  (void)Queue::create(q, {});
  for (int i = 0; i < 5; ++i) ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const std::vector<std::string> args = {"work", q, "--max-jobs", "2", "--", "true"};
  const Result r = jr(args, "", 30s);
  EXPECT_RUN(args, r, 0);
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 2u);
  EXPECT_EQ(s.acked, 2u);
  EXPECT_EQ(s.ready, 3u);
}

// --wait D: exit 0 when no job came for D (with and without jobs done first).
TEST_F(Cli, WorkWaitExitsWhenIdle) {
  Watchdog wd(60s);
  QueueName q("cli-idle");
  (void)Queue::create(q, {});
  const std::vector<std::string> empty = {"work", q, "--wait", "200ms", "--", "true"};
  EXPECT_RUN(empty, jr(empty, "", 30s), 0);
  ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const std::vector<std::string> one = {"work", q, "--wait", "300ms", "--", "true"};
  EXPECT_RUN(one, jr(one, "", 30s), 0);
  EXPECT_EQ(stats_of(q).acked, 1u);
}

// --wait D counts idle time from when the worker went idle, not from the last
// claim: a job that runs longer than D is followed by D of waiting, so a job
// pushed just after it is still taken.
TEST_F(Cli, WorkWaitCountsIdleTimeFromTheLastJobsEnd) {
  Watchdog wd(60s);
  QueueName q("cli-idle2");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "slow"}).code, 0);
  // The first job runs until the test says go (after more than --wait);
  // the second job comes 300 ms after the first ended, well within --wait.
  const auto args =
      work_args(q, {"--wait", "2s"},
                "if [ \"$(cat)\" = slow ]; then touch \"$T/started\"; i=0; "
                "while [ ! -e \"$T/go\" ]; do i=$((i+1)); [ $i -gt 400 ] && exit 1; sleep 0.05; done; fi");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  std::this_thread::sleep_for(2500ms);  // the first job outlasts --wait
  dir.touch("go");
  ASSERT_TRUE(test::poll_until([&] { return stats_of(q).acked == 1; }, 20s, 5ms));
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(jr({"push", q, "second"}).code, 0);
  const Result r = w.wait(30s);
  ASSERT_EQ(r.code, 0) << show(w.argv(), r);
  EXPECT_EQ(stats_of(q).acked, 2u) << "the worker gave up less than --wait after its last job ended";
}

// SIGTERM while a command runs: no new claim, the command finishes, its job is
// acked, exit 0. The other job stays ready.
TEST_F(Cli, WorkSigtermFinishesTheRunningJobAndStops) {
  Watchdog wd(90s);
  QueueName q("cli-term");
  (void)Queue::create(q, {});
  TempDir dir;
  for (int i = 0; i < 2; ++i) ASSERT_EQ(jr({"push", q, "j" + std::to_string(i)}).code, 0);
  const auto args =
      work_args(q, {"--lease", "10s", "--backoff", "10m"},
                "touch \"$T/started.$JOBRING_JOB_ID\"; i=0; "
                "while [ ! -e \"$T/go\" ]; do i=$((i+1)); [ $i -gt 400 ] && exit 1; sleep 0.05; done; "
                "touch \"$T/done.$JOBRING_JOB_ID\"");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.count_prefix("started.") == 1; }, 20s, 5ms));
  send_and_wait_delivered(w, SIGTERM);
  dir.touch("go");  // only now may the command end
  const Result r = w.wait(30s);
  EXPECT_EQ(r.code, 0) << show(w.argv(), r);
  EXPECT_EQ(dir.count_prefix("started."), 1u) << "no new claim after SIGTERM";
  EXPECT_EQ(dir.count_prefix("done."), 1u) << "the running command must finish";
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 1u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.released, 0u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.leased, 0u);
}

// SIGINT / SIGTERM while idle (blocked in a claim): exit 0 at once.
TEST_F(Cli, WorkIdleExitsOnSignal) {
  Watchdog wd(60s);
  QueueName q("cli-idlesig");
  (void)Queue::create(q, {});
  for (int sig : {SIGINT, SIGTERM}) {
    auto w = jr_bg({"work", q, "--", "true"});
    wait_for_handler(*w, sig);
    send_and_wait_delivered(*w, sig);
    const Result r = w->wait(20s);
    EXPECT_EQ(r.code, 0) << show(w->argv(), r);
  }
  EXPECT_EQ(stats_of(q).claimed, 0u);
}

// A second signal: the running job is released (ready again at once), its
// command is stopped, and work exits 0.
TEST_F(Cli, WorkSecondSignalReleasesTheJobInHand) {
  Watchdog wd(90s);
  QueueName q("cli-term2");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const auto args = work_args(q, {"--lease", "1h"}, "touch \"$T/started\"; exec sleep 60");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  send_and_wait_delivered(w, SIGTERM);
  send_and_wait_delivered(w, SIGINT);
  const Result r = w.wait(30s);
  EXPECT_EQ(r.code, 0) << show(w.argv(), r);
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 0u);
  EXPECT_EQ(s.released, 1u);
  EXPECT_EQ(s.ready, 1u) << "released without delay: claimable at once";
  EXPECT_EQ(s.leased, 0u);
}

// --grace D: after SIGTERM a running command gets D to finish; then its job
// is released (ready again at once, not after its 1 h lease), the command's
// process group gets SIGTERM, and work exits 0. Nothing lost.
TEST_F(Cli, WorkGraceReleasesTheJobWhenItRunsOut) {
  Watchdog wd(90s);
  QueueName q("cli-grace");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const auto args = work_args(q, {"--lease", "1h", "--grace", "300ms"},
                              "touch \"$T/started\"; sleep 60; touch \"$T/finished\"");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  send_and_wait_delivered(w, SIGTERM);
  const Result r = w.wait(30s);
  EXPECT_EQ(r.code, 0) << show(w.argv(), r);
  EXPECT_FALSE(dir.has("finished")) << "the command should have been stopped";
  const Stats s = stats_of(q);
  EXPECT_EQ(s.acked, 0u);
  EXPECT_EQ(s.released, 1u);
  EXPECT_EQ(s.ready, 1u) << "released without delay: claimable at once";
  EXPECT_EQ(s.leased, 0u);
}

// While a command runs longer than the lease, work extends the lease: no one
// else can claim the job (guarantee 1) and it is done once.
TEST_F(Cli, WorkExtendsTheLeaseWhileTheCommandRuns) {
  Watchdog wd(90s);
  QueueName q("cli-extendw");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "long"}).code, 0);
  const auto args =
      work_args(q, {"--lease", "900ms", "--max-jobs", "1"},
                "touch \"$T/started\"; i=0; "
                "while [ ! -e \"$T/go\" ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done");
  Proc w(cli(args), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  const auto until = std::chrono::steady_clock::now() + 3s;  // more than 3 leases
  int tries = 0;
  while (std::chrono::steady_clock::now() < until) {
    const Result c = jr({"claim", q, "--lease", "1h"});
    ASSERT_EQ(c.code, 3) << "another claimer got the job while its command ran: the lease was not extended"
                         << show(cli({"claim", q}), c);
    ++tries;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(tries, 0);
  dir.touch("go");
  const Result r = w.wait(30s);
  EXPECT_EQ(r.code, 0) << show(w.argv(), r);
  EXPECT_FALSE(contains(r.err, "lease lost")) << r.err;
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 1u);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.expired_total, 0u);
}

// A command that always fails ends dead after the queue's max_attempts;
// requeue brings it back.
TEST_F(Cli, WorkFailingCommandEndsDead) {
  Watchdog wd(60s);
  QueueName q("cli-dead");
  (void)Queue::create(q, {.max_attempts = 2});
  ASSERT_EQ(jr({"push", q, "doomed"}).code, 0);
  const std::vector<std::string> args = {"work",   q,     "--backoff", "10ms",    "--max-jobs", "2",
                                         "--wait", "20s", "--",        "/bin/sh", "-c",         "exit 3"};
  const Result r = jr(args, "", 60s);
  EXPECT_RUN(args, r, 0);
  Stats s = stats_of(q);
  EXPECT_EQ(s.dead, 1u);
  EXPECT_EQ(s.dead_lettered, 1u);
  EXPECT_EQ(s.acked, 0u);
  const auto dead = parse_json(jr({"peek", q, "--state", "dead", "--json"}).out);
  ASSERT_TRUE(dead && dead->items.size() == 1);
  EXPECT_EQ(dead->items[0].num("attempts"), 2);
  EXPECT_EQ(jr({"requeue", q, "--dead"}).out, "1\n");
  EXPECT_EQ(stats_of(q).ready, 1u);
}

// Issue 14 item 9: a command that cannot be run (no such file, not in PATH,
// not executable, a directory) fails `jobring work` at startup, exit 1, with
// the reason and before any claim: the job keeps all its attempts.
TEST_F(Cli, Item9_WorkCommandThatCannotRunFailsAtStartup) {
  Watchdog wd(60s);
  QueueName q("cli-noexec");
  (void)Queue::create(q, {.max_attempts = 1});
  ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const TempDir dir;
  std::ofstream(dir.file("plain")) << "echo hi\n";  // mode 0644: not executable
  struct Row {
    std::string command, reason;
  };
  const std::vector<Row> rows = {{"/nonexistent/jobring-test-command", "No such file"},
                                 {"jobring-test-no-such-command", "not found in PATH"},
                                 {dir.file("plain"), "ermission denied"},
                                 {dir.str(), "directory"}};
  for (const auto& row : rows) {
    const std::vector<std::string> args = {"work", q, "--max-jobs", "1", "--", row.command};
    const Result r = jr(args, "", 30s);
    EXPECT_RUN(args, r, 1);
    EXPECT_TRUE(contains(r.err, row.command) && contains(r.err, row.reason) &&
                contains(r.err, "no job was claimed"))
        << r.err;
  }
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 0u);
  EXPECT_EQ(s.ready, 1u);
}

// A command that passes the startup check but cannot be exec'd when a job
// comes (here: a script whose interpreter does not exist) is reported on
// stderr, and the job, with max_attempts 1, goes dead rather than looping.
TEST_F(Cli, WorkCommandThatCannotRun) {
  Watchdog wd(60s);
  QueueName q("cli-noexec2");
  (void)Queue::create(q, {.max_attempts = 1});
  ASSERT_EQ(jr({"push", q, "j"}).code, 0);
  const TempDir dir;
  const std::string script = dir.file("bad-interpreter");
  std::ofstream(script) << "#!/nonexistent/jobring-test-interpreter\n";
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  const std::vector<std::string> args = {"work", q, "--max-jobs", "1", "--", script};
  const Result r = jr(args, "", 30s);
  EXPECT_RUN(args, r, 0);
  EXPECT_TRUE(contains(r.err, "cannot run " + script)) << r.err;
  EXPECT_EQ(stats_of(q).dead, 1u);
}

// The command of the kill tests: it logs each attempt to $T/attempts; the
// first attempt marks $T/started and then hangs (until the test kills it).
const std::string kHangOnFirstAttempt =
    "echo \"$JOBRING_ATTEMPT\" >> \"$T/attempts\"; "
    "if [ \"$JOBRING_ATTEMPT\" -eq 1 ]; then touch \"$T/started\"; exec sleep 60; fi";

// SIGKILL of `jobring work` while its command hangs: the worker only, so that
// its command is orphaned as with a real kill -9; then the orphaned `sleep`
// too (the group is still ours: the worker is not reaped yet); then reap it.
void kill_worker_mid_job(Proc& worker) {
  ::kill(worker.pid(), SIGKILL);
  worker.kill_group();
  EXPECT_EQ(worker.wait().code, 128 + SIGKILL);
}

// A second `jobring work` (with --lease `lease`, --wait `wait`) does the job
// as its attempt 2, acks it and exits 0.
void redo_with_a_second_worker(const std::string& q, const TempDir& dir, const std::string& lease,
                               const std::string& wait) {
  Proc b(cli(work_args(q, {"--lease", lease, "--max-jobs", "1", "--wait", wait}, kHangOnFirstAttempt)), {},
         {"T=" + dir.str()});
  const Result r = b.wait(60s);
  ASSERT_EQ(r.code, 0) << show(b.argv(), r);
  EXPECT_EQ(dir.read("attempts"), "1\n2\n");
  EXPECT_EQ(stats_of(q).acked, 1u);
}

// SIGKILL of `jobring work` in the middle of a job (guarantees 2 and 3): the
// job is not lost — another worker does it once the lease runs out.
TEST_F(Cli, WorkKilledMidJobIsRedoneByAnotherWorker) {
  Watchdog wd(90s);
  QueueName q("cli-kill");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "job"}).code, 0);
  Proc a(cli(work_args(q, {"--lease", "500ms"}, kHangOnFirstAttempt)), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  kill_worker_mid_job(a);
  ASSERT_NO_FATAL_FAILURE(redo_with_a_second_worker(q, dir, "500ms", "20s"));
  const Stats s = stats_of(q);
  EXPECT_EQ(s.claimed, 2u);
  EXPECT_EQ(s.expired_total + s.reclaimed, 1u);
  EXPECT_EQ(s.ready + s.leased + s.expired, 0u);
}

#ifdef JOBRING_JANITOR_BIN
// The same with the janitor (guarantee 8): `jobring work` holds an attached
// lease, so once it is dead the janitor returns its job at once — long before
// the 1 h lease would run out.
TEST_F(Cli, WorkKilledMidJobIsReclaimedByTheJanitor) {
  Watchdog wd(90s);
  QueueName q("cli-kill-jan");
  (void)Queue::create(q, {});
  TempDir dir;
  ASSERT_EQ(jr({"push", q, "job"}).code, 0);
  Proc a(cli(work_args(q, {"--lease", "1h"}, kHangOnFirstAttempt)), {}, {"T=" + dir.str()});
  ASSERT_TRUE(test::poll_until([&] { return dir.has("started"); }, 20s, 5ms));
  const auto leased = parse_json(jr({"peek", q, "--state", "leased", "--json"}).out);
  ASSERT_TRUE(leased && leased->items.size() == 1);
  EXPECT_EQ(leased->items[0].num("owner_pid"), a.pid()) << "work's lease is owned by the work process";
  kill_worker_mid_job(a);  // reaped: its PID is gone

  Proc jan({JOBRING_JANITOR_BIN, "--once", "--queue", q.str()});
  const Result jr_ = jan.wait(30s);
  ASSERT_EQ(jr_.code, 0) << show(jan.argv(), jr_);
  EXPECT_EQ(stats_of(q).reclaimed, 1u);

  ASSERT_NO_FATAL_FAILURE(redo_with_a_second_worker(q, dir, "1h", "10s"));
  EXPECT_EQ(stats_of(q).expired_total, 0u);
}
#endif

// ===========================================================================
// top: a live view of every queue (issue 14 item 7)
// ===========================================================================

// The line of `out` that starts with `name` and a space ("" if none).
std::string row_of(const std::string& out, const std::string& name) {
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return line;
  return {};
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The queue objects of one `top --json` frame, by name (and a test failure
// if the frame is not one JSON object with a "queues" array).
std::map<std::string, Json> frame_queues(const std::string& line) {
  std::map<std::string, Json> out;
  const auto j = parse_json(line);
  if (!j || !j->has("queues") || j->find("queues")->kind != Json::Kind::array) {
    ADD_FAILURE() << "not a top --json frame: " << line;
    return out;
  }
  EXPECT_TRUE(j->has("time_ms")) << line;
  EXPECT_TRUE(j->has("interval_ms")) << line;
  for (const Json& q : j->find("queues")->items) out[q.str("name")] = q;
  return out;
}

std::vector<std::string> lines_of(const std::string& out) {
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A queue with 2 ready jobs, 1 leased, 1 delayed and 1 dead, of capacity 8.
void fill_for_top(const std::string& q) {
  auto queue = Queue::create(q, {.capacity = 8, .max_attempts = 1});
  for (const char* job : {"dies", "a", "b", "leased"}) ASSERT_EQ(queue.push(job).status, PushStatus::ok);
  ASSERT_EQ(queue.push("later", {.delay = 1h}).status, PushStatus::ok);
  Job job;
  ASSERT_EQ(queue.try_claim(job, {.owner = Owner::detached}), ClaimStatus::ok);
  ASSERT_EQ(queue.release(job.lease), LeaseStatus::ok);  // its only attempt: dead
  ASSERT_EQ(queue.try_claim(job, {.lease = 1h, .owner = Owner::detached}), ClaimStatus::ok);
}

// top --once: one frame, no escapes; a created queue's row has its counts
// (READY OLDEST DELAYED LEASED EXPIRED DEAD FREE/CAP), and rates are "-" in a first
// frame. Without names, every queue on the host is listed, sorted by name.
TEST_F(Cli, Item7_TopOnceListsACreatedQueueWithItsCounts) {
  Watchdog wd(60s);
  QueueName q("cli-top-b"), other("cli-top-a");
  ASSERT_NO_FATAL_FAILURE(fill_for_top(q));
  (void)Queue::create(other, {});
  const std::vector<std::string> args = {"top", "--once"};
  const Result r = jr(args);
  ASSERT_RUN(args, r, 0);
  EXPECT_EQ(r.out.find('\033'), std::string::npos) << "escapes with --once" << show(cli(args), r);
  EXPECT_TRUE(contains(r.out, "NAME")) << show(cli(args), r);
  const auto row = words(row_of(r.out, q));
  ASSERT_GE(row.size(), 13u) << show(cli(args), r);
  EXPECT_EQ(row[1], "2") << row_of(r.out, q);
  EXPECT_NE(row[2], "-") << "OLDEST: two jobs wait, so it is an age" << row_of(r.out, q);
  EXPECT_EQ(std::vector<std::string>(row.begin() + 3, row.begin() + 8),
            (std::vector<std::string>{"1", "1", "0", "1", "3/8"}))
      << row_of(r.out, q);
  EXPECT_EQ(std::vector<std::string>(row.begin() + 8, row.begin() + 12),
            (std::vector<std::string>{"-", "-", "-", "-"}))
      << "rates in a first frame" << show(cli(args), r);
  EXPECT_LT(r.out.find(other.str() + " "), r.out.find(q.str() + " "))
      << "sorted by name" << show(cli(args), r);
}

// top --once --json: one line, one JSON object; each queue has stat --json's
// fields and "per_second": null in its first frame.
TEST_F(Cli, Item7_TopOnceJsonParses) {
  Watchdog wd(60s);
  QueueName q("cli-top-json");
  ASSERT_NO_FATAL_FAILURE(fill_for_top(q));
  const std::vector<std::string> args = {"top", "--once", "--json", q};
  const Result r = jr(args);
  ASSERT_RUN(args, r, 0);
  ASSERT_EQ(lines_of(r.out).size(), 1u) << show(cli(args), r);
  auto queues = frame_queues(r.out);
  ASSERT_EQ(queues.size(), 1u) << r.out;
  const Json& j = queues[q];
  EXPECT_EQ(j.num("ready"), 2);
  EXPECT_EQ(j.num("delayed"), 1);
  EXPECT_EQ(j.num("leased"), 1);
  EXPECT_EQ(j.num("dead"), 1);
  EXPECT_EQ(j.num("free"), 3);
  EXPECT_EQ(j.num("capacity"), 8);
  EXPECT_EQ(j.num("pushed"), 5);
  EXPECT_GE(j.num("oldest_lease_ms"), 0);
  ASSERT_TRUE(j.has("per_second")) << r.out;
  EXPECT_EQ(j.find("per_second")->kind, Json::Kind::null) << r.out;
}

// Named queues: only those, sorted, each once.
TEST_F(Cli, Item7_TopNamedQueuesFilter) {
  Watchdog wd(60s);
  QueueName a("cli-top-n1"), b("cli-top-n2"), c("cli-top-n3");
  for (const std::string& n : {a.str(), b.str(), c.str()}) (void)Queue::create(n, {});
  const std::vector<std::string> args = {"top", "--once", "--json", c, a, c};
  const Result r = jr(args);
  ASSERT_RUN(args, r, 0);
  const auto j = parse_json(r.out);
  ASSERT_TRUE(j) << r.out;
  std::vector<std::string> names;
  for (const Json& q : j->find("queues")->items) names.push_back(q.str("name"));
  EXPECT_EQ(names, (std::vector<std::string>{a, c}));
  const Result t = jr({"top", "--once", b});
  EXPECT_NE(row_of(t.out, b), "") << t.out;
  EXPECT_EQ(row_of(t.out, a), "") << t.out;
}

// Rates: the second frame has per-second rates of what happened between the
// two frames (5 pushes, 2 claims, 1 ack), none of what did not.
TEST_F(Cli, Item7_TopRatesOnTheSecondFrame) {
  Watchdog wd(60s);
  QueueName q("cli-top-rates");
  auto queue = Queue::create(q, {});
  (void)queue.push("before");
  auto p = jr_bg({"top", "--json", "--interval", "1s", "--frames", "2", q});
  ASSERT_TRUE(
      p->wait_output([](const std::string& out, const std::string&) { return contains(out, "\n"); }, 20s))
      << show(p->argv(), {-1, p->out(), p->err()});
  for (int i = 0; i < 5; ++i) ASSERT_EQ(queue.push("x").status, PushStatus::ok);
  Job job;
  for (int i = 0; i < 2; ++i) ASSERT_EQ(queue.try_claim(job), ClaimStatus::ok);
  ASSERT_EQ(queue.ack(job.lease), LeaseStatus::ok);
  const Result r = p->wait();
  ASSERT_EQ(r.code, 0) << show(p->argv(), r);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  auto first = frame_queues(lines[0]);
  auto second = frame_queues(lines[1]);
  EXPECT_EQ(first[q].find("per_second")->kind, Json::Kind::null) << lines[0];
  const Json* rates = second[q].find("per_second");
  ASSERT_TRUE(rates != nullptr && rates->kind == Json::Kind::object) << lines[1];
  // At least the 1 s interval lies between the snapshots, so 5 pushes are
  // 0 < rate <= 5 per second.
  EXPECT_GT(rates->find("pushed")->real, 0.0) << lines[1];
  EXPECT_LE(rates->find("pushed")->real, 5.0) << lines[1];
  EXPECT_NEAR(rates->find("claimed")->real * 5, rates->find("pushed")->real * 2, 0.01) << lines[1];
  EXPECT_NEAR(rates->find("acked")->real * 5, rates->find("pushed")->real, 0.01) << lines[1];
  EXPECT_EQ(rates->find("dead_lettered")->real, 0.0) << lines[1];
  EXPECT_EQ(second[q].num("pushed"), 6);
}

// Queues created or removed between frames appear and disappear (without
// names: every queue on the host).
TEST_F(Cli, Item7_TopQueuesComeAndGoBetweenFrames) {
  Watchdog wd(60s);
  QueueName going("cli-top-going"), coming("cli-top-coming");
  (void)Queue::create(going, {});
  auto p = jr_bg({"top", "--json", "--interval", "1s", "--frames", "2"});
  ASSERT_TRUE(
      p->wait_output([](const std::string& out, const std::string&) { return contains(out, "\n"); }, 20s))
      << show(p->argv(), {-1, p->out(), p->err()});
  ASSERT_TRUE(Queue::remove(going));
  (void)Queue::create(coming, {});
  const Result r = p->wait();
  ASSERT_EQ(r.code, 0) << show(p->argv(), r);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  const auto first = frame_queues(lines[0]);
  const auto second = frame_queues(lines[1]);
  EXPECT_TRUE(first.count(going) && !first.count(coming)) << lines[0];
  EXPECT_TRUE(second.count(coming) && !second.count(going)) << lines[1];
}

// A queue that cannot be opened (not a queue, missing) is a row with the
// reason, in text and JSON; the others are shown as usual, and top exits 0.
TEST_F(Cli, Item7_TopUnopenableQueueShowsItsReason) {
  Watchdog wd(60s);
  QueueName good("cli-top-good"), junk("cli-top-junk"), missing("cli-top-missing");
  (void)Queue::create(good, {});
  {
    std::ofstream f(jobring::segment_path(junk));
    f << std::string(4096, 'x');
  }
  const Result t = jr({"top", "--once", good, junk, missing});
  ASSERT_EQ(t.code, 0) << t.out << t.err;
  EXPECT_TRUE(contains(row_of(t.out, junk), "cannot open: ")) << t.out;
  EXPECT_TRUE(contains(row_of(t.out, missing), "cannot open: ")) << t.out;
  EXPECT_GE(words(row_of(t.out, good)).size(), 12u) << t.out;
  const Result j = jr({"top", "--once", "--json", good, junk, missing});
  ASSERT_EQ(j.code, 0) << j.out << j.err;
  auto queues = frame_queues(j.out);
  ASSERT_EQ(queues.size(), 3u) << j.out;
  const std::error_code not_a_queue = make_error_code(errc::not_a_queue);
  const std::error_code not_found = make_error_code(errc::not_found);
  EXPECT_EQ(queues[junk].str("error"), not_a_queue.message()) << j.out;
  EXPECT_EQ(queues[missing].str("error"), not_found.message()) << j.out;
  EXPECT_FALSE(queues[good].has("error")) << j.out;
}

TEST_F(Cli, Item7_TopUsageErrors) {
  Watchdog wd(60s);
  expect_usage_errors({{"top", "--frames", "0"},
                       {"top", "--once", "--frames", "2"},
                       {"top", "--interval", "0"},
                       {"top", "--interval", "fast"},
                       {"top", "--frames", "-1"},
                       {"top", "a/b"}},
                      {"--frames", "not both", "--interval", "bad duration", "--frames", "bad queue name"});
}

// `jobring ARGS` with its stdin, stdout and stderr on a new pseudo-terminal
// (80x24). Once the output holds `frames` frames (counted by the cursor-home
// escape), `sig` (if not 0) is sent. Returns the exit code and everything
// written to the terminal.
Result jr_on_terminal(const std::vector<std::string>& args, int sig, std::size_t frames) {
  Result r;
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) return r;
  char slave[128];
  if (::ptsname_r(master, slave, sizeof slave) != 0) return r;
  winsize ws{};
  ws.ws_row = 24;
  ws.ws_col = 80;
  ::ioctl(master, TIOCSWINSZ, &ws);
  std::vector<std::string> argv = cli(args);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(slave, O_RDWR);  // the session's controlling terminal
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int to : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(fd, to);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  bool sent = sig == 0;
  const auto until = std::chrono::steady_clock::now() + 20s;
  for (char buf[4096]; std::chrono::steady_clock::now() < until;) {
    pollfd pfd{master, POLLIN, 0};
    if (::poll(&pfd, 1, 50) > 0) {
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) break;  // EIO: the terminal's last user closed it
      r.out.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t homes = 0;
    for (auto at = r.out.find("\033[H"); at != std::string::npos; at = r.out.find("\033[H", at + 1)) ++homes;
    if (!sent && homes >= frames) sent = ::kill(pid, sig) == 0;
  }
  if (std::chrono::steady_clock::now() >= until) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// On a terminal: the alternate screen, the cursor hidden, each frame drawn
// from the top left; SIGINT and SIGTERM end it with exit 0 and the terminal
// given back (cursor shown, main screen). --once on a terminal: no escapes.
TEST_F(Cli, Item7_TopOnATerminalRedrawsInPlaceAndRestoresIt) {
  Watchdog wd(90s);
  QueueName q("cli-top-tty");
  (void)Queue::create(q, {});
  for (int sig : {SIGINT, SIGTERM}) {
    const Result r = jr_on_terminal({"top", "--interval", "50ms", q}, sig, 3);
    EXPECT_EQ(r.code, 0) << "signal " << sig << ": " << r.out;
    EXPECT_EQ(r.out.rfind("\033[?1049h\033[?25l", 0), 0u) << r.out;
    EXPECT_TRUE(r.out.ends_with("\033[?25h\033[?1049l")) << r.out;
    EXPECT_TRUE(contains(r.out, q.str() + " ")) << r.out;
  }
  const Result frames = jr_on_terminal({"top", "--interval", "50ms", "--frames", "2", q}, 0, 0);
  EXPECT_EQ(frames.code, 0) << frames.out;
  EXPECT_TRUE(frames.out.ends_with("\033[?25h\033[?1049l")) << frames.out;
  const Result once = jr_on_terminal({"top", "--once", q}, 0, 0);
  EXPECT_EQ(once.code, 0) << once.out;
  EXPECT_EQ(once.out.find('\033'), std::string::npos) << once.out;
  EXPECT_TRUE(contains(once.out, q.str() + " ")) << once.out;
}

// ===========================================================================
// The example shell worker (examples/shell-worker.sh) runs and accounts for
// every job, with the binary given as $JOBRING or found on PATH.
// ===========================================================================
TEST_F(Cli, ExampleShellWorkerRuns) {
  Watchdog wd(150s);
  const fs::path script = example_script();
  ASSERT_TRUE(fs::exists(script)) << script;
  const std::string bin_dir = fs::path(kCli).parent_path().string();
  const char* path = std::getenv("PATH");
  std::vector<std::vector<std::string>> envs = {{std::string("JOBRING=") + kCli}};
  if (fs::path(kCli).filename() == "jobring")  // found on PATH by its name
    envs.push_back({"JOBRING", "PATH=" + bin_dir + ":" + (path != nullptr ? path : "/usr/bin:/bin")});
  for (const auto& env : envs) {
    Proc p({"/bin/sh", script.string()}, {}, env);
    const Result r = p.wait(60s);
    EXPECT_EQ(r.code, 0) << show(p.argv(), r);
    EXPECT_TRUE(contains(r.out, "all 8 jobs done")) << show(p.argv(), r);
  }
}

// Issue 14 item 9: `shell-worker.sh --help` prints its usage and exits 0, and
// a bad JOBS is refused (exit 2) — both before making a queue or starting a
// worker (it used to loop on "--help" and leave both behind).
TEST_F(Cli, Item9_ExampleShellWorkerHelpAndBadArgumentsLeaveNothing) {
  Watchdog wd(60s);
  const fs::path script = example_script();
  auto leftovers = [] {
    std::size_t n = 0;
    for (const auto& name : Queue::list()) n += name.starts_with("example.shell-worker.") ? 1 : 0;
    return n;
  };
  const std::size_t before = leftovers();
  struct Row {
    std::string arg;
    int code;
    std::string text;
  };
  for (const Row& row : std::vector<Row>{{"--help", 0, "jobring work NAME -- CMD"},
                                         {"-h", 0, "jobring work NAME -- CMD"},
                                         {"many", 2, "whole number"},
                                         {"0", 2, "from 1 to 10000"},
                                         {"99999999999999999999", 2, "from 1 to 10000"}}) {
    Proc p({"/bin/sh", script.string(), row.arg}, {}, {std::string("JOBRING=") + kCli});
    const Result r = p.wait(20s);
    EXPECT_EQ(r.code, row.code) << show(p.argv(), r);
    EXPECT_TRUE(contains(r.out + r.err, row.text)) << show(p.argv(), r);
  }
  EXPECT_EQ(leftovers(), before) << "a queue was left behind";
}

// Issue 18: a file-backed queue from the shell. `create --dir` makes it and
// says its name; every other command takes the name DIR/NAME; `ls --dir`
// lists it; `stat` counts its recoveries; a sync policy without a directory
// is a usage error.
TEST_F(Cli, Item18_AFileBackedQueueIsMadeWithDirAndUsedByItsPath) {
  Watchdog wd(60s);
  TempDir dir("cli-durable");
  const std::string name = dir.str() + "/orders";
  Result r = jr({"create", "orders", "--dir", dir.str(), "--sync", "always", "--capacity", "8"});
  EXPECT_RUN({"create"}, r, 0);
  EXPECT_TRUE(contains(r.out, "created queue " + name)) << r.out;
  EXPECT_TRUE(contains(r.out, "file-backed: " + dir.str() + "/jobring.orders, sync always")) << r.out;
  EXPECT_TRUE(dir.has("jobring.orders"));
  EXPECT_RUN({"push"}, jr({"push", name, "survives"}), 0);
  r = jr({"ls", "--dir", dir.str()});
  EXPECT_RUN({"ls"}, r, 0);
  EXPECT_TRUE(contains(r.out, name)) << r.out;
  r = jr({"stat", name, "--json"});
  EXPECT_RUN({"stat"}, r, 0);
  EXPECT_TRUE(contains(r.out, "\"recoveries\":0")) << r.out;
  r = jr({"claim", name});
  EXPECT_RUN({"claim"}, r, 0);
  EXPECT_TRUE(contains(r.out, "survives")) << r.out;
  // The same queue is what open_or_create finds by either spelling.
  EXPECT_EQ(Queue::open(name).options().sync, Options::Sync::always);
  // Usage errors: a sync policy for a queue in memory; a bad policy.
  r = jr({"create", "mem", "--sync", "always"});
  EXPECT_RUN({"create"}, r, 2);
  EXPECT_TRUE(contains(r.err, "--dir")) << r.err;
  EXPECT_RUN({"create"}, jr({"create", "x", "--dir", dir.str(), "--sync", "sometimes"}), 2);
  EXPECT_RUN({"rm"}, jr({"rm", name}), 0);
  EXPECT_FALSE(dir.has("jobring.orders"));
}

}  // namespace
}  // namespace jobring
