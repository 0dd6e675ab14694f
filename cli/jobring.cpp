// jobring — the command-line tool: operators create, inspect and fix queues;
// shell scripts push, claim and ack; `jobring work` turns any command into a
// worker.
//
// Exit codes (also in --help): 0 success; 1 error (the message names the
// queue and what to do); 2 usage; 3 nothing to claim / timed out / queue
// full; 4 lease lost.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jobring/duration.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"
#include "text.hpp"

namespace po = boost::program_options;
using namespace std::chrono_literals;
using jobring::milliseconds;

namespace {

constexpr int kOk = 0;
constexpr int kError = 1;
constexpr int kUsage = 2;
constexpr int kNothing = 3;  // nothing to claim, timed out, queue full
constexpr int kLeaseLost = 4;

constexpr const char* kExitCodes =
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

[[noreturn]] void usage(const std::string& command, const std::string& message) {
  throw UsageError{"jobring " + command + ": " + message + " (see jobring " + command + " --help)"};
}

// ---------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------

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

po::variables_map parse(Command& c, const std::vector<std::string>& args) {
  po::options_description all;
  c.options.add_options()("help,h", "show this help");
  all.add(c.options).add(c.hidden);
  po::variables_map vm;
  try {
    // No abbreviations: a script that says --del would break when another
    // option starting with "del" is added.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(args).options(all).positional(c.positional).style(style).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage(c.name, e.what());
  }
  if (vm.count("help")) {
    std::cout << "Usage: jobring " << c.name << ' ' << c.synopsis << "\n\n"
              << c.summary << "\n\n"
              << c.options << '\n'
              << "Durations are written 500ms, 30s, 2m or 1h.\n"
              << kExitCodes;
    throw Exit{kOk, ""};
  }
  return vm;
}

milliseconds duration_arg(const Command& c, const po::variables_map& vm, const char* key,
                          milliseconds fallback) {
  if (!vm.count(key)) return fallback;
  const std::string text = vm[key].as<std::string>();
  const auto d = jobring::parse_duration(text);
  if (!d)
    usage(c.name, std::string("bad duration '") + text + "' for --" + key + ": write e.g. 500ms, 30s or 2m");
  if (*d > jobring::kMaxLease)
    usage(c.name, std::string("--") + key + " " + text + " is longer than the limit of 7 days");
  return *d;
}

std::string name_arg(const Command& c, const po::variables_map& vm) {
  if (!vm.count("name")) usage(c.name, "missing the queue NAME");
  std::string name = vm["name"].as<std::string>();
  if (auto ec = jobring::check_name(name)) usage(c.name, "bad queue name '" + name + "': " + ec.message());
  return name;
}

jobring::Lease handle_arg(const Command& c, const po::variables_map& vm) {
  if (!vm.count("handle")) usage(c.name, "missing the HANDLE printed by `jobring claim`");
  const std::string text = vm["handle"].as<std::string>();
  const auto lease = jobring::Lease::parse(text);
  if (!lease)
    usage(c.name, "malformed handle '" + text + "': pass the \"handle\" field printed by `jobring claim`");
  return *lease;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Exit{kError, std::string("jobring: cannot read stdin: ") + jobring::cli::errno_text(errno)};
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Text is valid UTF-8 without NUL bytes (which many consumers of JSON
// strings, and every shell variable, cannot hold); anything else is binary.
bool is_text(std::string_view s) {
  return s.find('\0') == std::string_view::npos && jobring::cli::is_utf8(s);
}

std::string payload_json(std::span<const std::byte> payload) {
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (is_text(text))
    return "\"payload\":" + jobring::cli::json_string(text) + ",\"payload_encoding\":\"utf8\"";
  return "\"payload\":\"" + jobring::cli::base64_encode(payload) + "\",\"payload_encoding\":\"base64\"";
}

std::string state_name(jobring::JobState s) {
  switch (s) {
    case jobring::JobState::ready:
      return "ready";
    case jobring::JobState::delayed:
      return "delayed";
    case jobring::JobState::leased:
      return "leased";
    case jobring::JobState::dead:
      return "dead";
  }
  return "?";
}

std::string stats_json(const std::string& name, const jobring::Queue& q) {
  const jobring::Stats s = q.stats();
  const jobring::Options& o = q.options();
  std::ostringstream out;
  out << "{\"name\":" << jobring::cli::json_string(name) << ",\"capacity\":" << o.capacity
      << ",\"max_payload\":" << o.max_payload << ",\"default_lease_ms\":" << o.default_lease.count()
      << ",\"max_attempts\":" << o.max_attempts << ",\"free\":" << s.free << ",\"writing\":" << s.writing
      << ",\"ready\":" << s.ready << ",\"delayed\":" << s.delayed << ",\"leased\":" << s.leased
      << ",\"overdue\":" << s.expired << ",\"dead\":" << s.dead << ",\"corrupt\":" << s.corrupt
      << ",\"oldest_lease_ms\":" << s.oldest_lease_ms << ",\"pushed\":" << s.pushed
      << ",\"claimed\":" << s.claimed << ",\"acked\":" << s.acked << ",\"released\":" << s.released
      << ",\"expired\":" << s.expired_total << ",\"expired_total\":" << s.expired_total
      << ",\"reclaimed\":" << s.reclaimed << ",\"dead_lettered\":" << s.dead_lettered
      << ",\"requeued\":" << s.requeued << ",\"purged\":" << s.purged
      << ",\"recovered_writes\":" << s.recovered_writes << ",\"keys_live\":" << s.keys_live
      << ",\"keys_remembered\":" << s.keys_remembered << ",\"keys_capacity\":" << s.keys_capacity
      << ",\"dedup_window_ms\":" << o.dedup_window.count() << ",\"duplicates\":" << s.duplicates
      << ",\"keys_evicted\":" << s.keys_evicted << ",\"keys_full\":" << s.keys_full << '}';
  return out.str();
}

volatile sig_atomic_t g_signals = 0;  // how many SIGTERM/SIGINT arrived
extern "C" void on_signal(int) {
  g_signals = g_signals + 1;
  jobring::interrupt_waits();  // async-signal-safe
}
void install_handlers() {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

// ---------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------

// A whole number option (decimal, no sign): Boost reads "-1" into an
// unsigned as 4294967295, so numbers are parsed here.
std::uint32_t count_arg(const Command& c, const po::variables_map& vm, const char* option) {
  const std::string text = vm[option].as<std::string>();
  std::uint32_t v = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || err != std::errc{} || end != text.data() + text.size())
    usage(c.name,
          "bad --" + std::string(option) + " '" + text + "': write a whole number from 0 to 4294967295");
  return v;
}

int cmd_create(const std::vector<std::string>& args) {
  Command c{"create",
            "NAME [--capacity N] [--max-payload BYTES] [--lease D] [--max-attempts N] [--mode OCTAL]\n"
            "       [--dedup-keys N] [--dedup-window D]",
            "Creates a queue. Fails if it exists."};
  jobring::Options defaults;
  c.options.add_options()(
      "capacity", po::value<std::string>()->default_value(std::to_string(defaults.capacity)), "job slots")(
      "max-payload", po::value<std::string>()->default_value(std::to_string(defaults.max_payload)),
      "bytes per job")("lease", po::value<std::string>()->default_value("30s"), "default lease")(
      "max-attempts", po::value<std::string>()->default_value("0"),
      "claims before a job is dead-lettered; 0 = unlimited")(
      "mode", po::value<std::string>()->default_value("0600"), "permission bits of the segment, octal")(
      "dedup-keys", po::value<std::string>()->default_value("0"),
      "entries of the de-duplication key table; 0 = 2 x capacity")(
      "dedup-window", po::value<std::string>()->default_value("5m"),
      "how long a finished job's key is remembered (push --key)");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  jobring::Options o;
  o.capacity = count_arg(c, vm, "capacity");
  o.max_payload = count_arg(c, vm, "max-payload");
  o.default_lease = duration_arg(c, vm, "lease", o.default_lease);
  o.max_attempts = count_arg(c, vm, "max-attempts");
  o.dedup_keys = count_arg(c, vm, "dedup-keys");
  o.dedup_window = duration_arg(c, vm, "dedup-window", o.dedup_window);
  const std::string mode = vm["mode"].as<std::string>();
  char* end = nullptr;
  const unsigned long m = std::strtoul(mode.c_str(), &end, 8);
  if (mode.empty() || *end != '\0' || m > 07777)
    usage(c.name, "bad --mode '" + mode + "': write octal, e.g. 0600 or 0660");
  o.mode = static_cast<unsigned>(m);
  auto q = jobring::Queue::create(name, o);
  std::printf("created queue %s: capacity %u, max payload %u bytes, lease %s, max attempts %u, mode %04o\n",
              name.c_str(), o.capacity, o.max_payload, jobring::format_duration(o.default_lease).c_str(),
              o.max_attempts, o.mode);
  return kOk;
}

int cmd_rm(const std::vector<std::string>& args) {
  Command c{"rm", "NAME", "Removes a queue. Processes that have it open keep it until they close it."};
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  if (!jobring::Queue::remove(name))
    throw Exit{kError, "jobring: no queue named '" + name + "' (see `jobring ls`)"};
  return kOk;
}

int cmd_ls(const std::vector<std::string>& args) {
  Command c{"ls", "[--json]", "Lists every jobring queue on this host, one line each."};
  c.options.add_options()("json", "one JSON array");
  const auto vm = parse(c, args);
  const bool json = vm.count("json") > 0;
  const auto names = jobring::Queue::list();
  if (json)
    std::printf("[");
  else
    std::printf("%-32s %9s %8s %8s %8s %8s %8s\n", "NAME", "CAPACITY", "READY", "DELAYED", "LEASED", "DEAD",
                "FREE");
  bool first = true;
  for (const auto& name : names) {
    std::error_code ec;
    auto q = jobring::Queue::open(name, ec);
    if (json) {
      std::printf("%s", first ? "" : ",");
      if (q)
        std::printf("%s", stats_json(name, *q).c_str());
      else
        std::printf("{\"name\":%s,\"error\":%s}", jobring::cli::json_string(name).c_str(),
                    jobring::cli::json_string(ec.message()).c_str());
    } else if (q) {
      const auto s = q->stats();
      std::printf("%-32s %9u %8llu %8llu %8llu %8llu %8llu\n", name.c_str(), q->options().capacity,
                  static_cast<unsigned long long>(s.ready), static_cast<unsigned long long>(s.delayed),
                  static_cast<unsigned long long>(s.leased) + static_cast<unsigned long long>(s.expired),
                  static_cast<unsigned long long>(s.dead), static_cast<unsigned long long>(s.free));
    } else {
      std::printf("%-32s (cannot open: %s)\n", name.c_str(), ec.message().c_str());
    }
    first = false;
  }
  if (json) std::printf("]\n");
  return kOk;
}

int cmd_stat(const std::vector<std::string>& args) {
  Command c{"stat", "NAME [--json] [--watch D]", "Shows a queue's options, jobs per state and totals."};
  c.options.add_options()("json", "one JSON object")("watch", po::value<std::string>(),
                                                     "repeat every D until interrupted");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const milliseconds watch = duration_arg(c, vm, "watch", 0ms);
  auto q = jobring::Queue::open(name);
  install_handlers();
  for (;;) {
    if (vm.count("json")) {
      std::printf("%s\n", stats_json(name, q).c_str());
    } else {
      const auto s = q.stats();
      const auto& o = q.options();
      std::printf("queue %s: capacity %u, max payload %u bytes, lease %s, max attempts %u, mode %04o\n",
                  name.c_str(), o.capacity, o.max_payload, jobring::format_duration(o.default_lease).c_str(),
                  o.max_attempts, o.mode);
      std::printf(
          "  jobs:   ready %llu  delayed %llu  leased %llu  expired %llu  dead %llu  writing %llu  free %llu",
          static_cast<unsigned long long>(s.ready), static_cast<unsigned long long>(s.delayed),
          static_cast<unsigned long long>(s.leased), static_cast<unsigned long long>(s.expired),
          static_cast<unsigned long long>(s.dead), static_cast<unsigned long long>(s.writing),
          static_cast<unsigned long long>(s.free));
      if (s.corrupt)
        std::printf("  CORRUPT %llu (jobring purge %s resets them)",
                    static_cast<unsigned long long>(s.corrupt), name.c_str());
      std::printf(
          "\n  totals: pushed %llu  claimed %llu  acked %llu  released %llu  expired %llu  reclaimed %llu  "
          "dead-lettered %llu  requeued %llu  purged %llu\n",
          static_cast<unsigned long long>(s.pushed), static_cast<unsigned long long>(s.claimed),
          static_cast<unsigned long long>(s.acked), static_cast<unsigned long long>(s.released),
          static_cast<unsigned long long>(s.expired_total), static_cast<unsigned long long>(s.reclaimed),
          static_cast<unsigned long long>(s.dead_lettered), static_cast<unsigned long long>(s.requeued),
          static_cast<unsigned long long>(s.purged));
      std::printf(
          "  keys:   live %llu  remembered %llu (window %s)  of %llu  duplicates %llu  evicted %llu  full "
          "%llu\n",
          static_cast<unsigned long long>(s.keys_live), static_cast<unsigned long long>(s.keys_remembered),
          jobring::format_duration(o.dedup_window).c_str(), static_cast<unsigned long long>(s.keys_capacity),
          static_cast<unsigned long long>(s.duplicates), static_cast<unsigned long long>(s.keys_evicted),
          static_cast<unsigned long long>(s.keys_full));
    }
    std::fflush(stdout);
    if (watch.count() == 0) return kOk;
    const auto until = std::chrono::steady_clock::now() + watch;
    while (g_signals == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
    if (g_signals != 0) return kOk;
  }
}

int cmd_push(const std::vector<std::string>& args) {
  Command c{"push", "NAME [DATA] [--delay D] [--wait D] [--key K]",
            "Pushes one job with DATA (or standard input) as its payload; prints the job id.\n"
            "With --key: if a job with key K is in the queue, or was finished within the queue's\n"
            "de-duplication window, nothing is pushed; that job's id is printed (and a note on stderr)."};
  c.options.add_options()("delay", po::value<std::string>(), "the job stays invisible for D")(
      "wait", po::value<std::string>(), "if the queue is full, wait up to D for room")(
      "key", po::value<std::string>(), "de-duplication key, 1 to 64 bytes");
  c.hidden.add_options()("name", po::value<std::string>())("data", po::value<std::string>());
  c.positional.add("name", 1).add("data", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  jobring::PushOptions o;
  o.delay = duration_arg(c, vm, "delay", 0ms);
  o.wait = duration_arg(c, vm, "wait", 0ms);
  const std::string key = vm.count("key") ? vm["key"].as<std::string>() : std::string();
  if (vm.count("key") && (key.empty() || key.size() > jobring::kMaxKeyLength))
    usage(c.name, "bad --key: 1 to " + std::to_string(jobring::kMaxKeyLength) + " bytes");
  o.key = key;
  if (!vm.count("data") && ::isatty(STDIN_FILENO))
    usage(c.name, "no DATA: give it as an argument, or pipe it in (standard input is a terminal)");
  const std::string data = vm.count("data") ? vm["data"].as<std::string>() : read_all(STDIN_FILENO);
  auto q = jobring::Queue::open(name);
  install_handlers();
  const auto r = q.push(bytes(data), o);
  if (r.status == jobring::PushStatus::interrupted) throw Exit{kNothing, "jobring push: interrupted"};
  if (r.status != jobring::PushStatus::ok)
    throw Exit{kNothing,
               "jobring push: queue '" + name + "' is full (capacity " +
                   std::to_string(q.options().capacity) + ")" +
                   (key.empty() ? "" : ", or its de-duplication key table has no room for this key") +
                   ": wait for workers (--wait D), or recreate it larger"};
  if (r.duplicate)
    std::fprintf(stderr,
                 "jobring push: key '%s' belongs to job %llu (in the queue, or finished within the "
                 "de-duplication window): nothing pushed\n",
                 key.c_str(), static_cast<unsigned long long>(r.id));
  std::printf("%llu\n", static_cast<unsigned long long>(r.id));
  return kOk;
}

int cmd_claim(const std::vector<std::string>& args) {
  Command c{
      "claim", "NAME [--lease D] [--wait D] [--raw]",
      "Claims one job with a detached lease (it outlives this command until its deadline) and prints one\n"
      "JSON object: job, handle (for ack / release / extend), attempt, lease_ms, payload, payload_encoding\n"
      "(utf8, or base64 for binary payloads). With --raw: the payload bytes alone on stdout, the handle on\n"
      "stderr."};
  c.options.add_options()("lease", po::value<std::string>(), "lease length (default: the queue's)")(
      "wait", po::value<std::string>(), "wait up to D for a job")(
      "raw", "payload bytes to stdout, handle to stderr");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const milliseconds lease = duration_arg(c, vm, "lease", 0ms);
  const milliseconds wait = duration_arg(c, vm, "wait", 0ms);
  auto q = jobring::Queue::open(name);
  install_handlers();
  jobring::Job job;
  const auto status = q.claim(job, wait, {.lease = lease, .owner = jobring::Owner::detached});
  if (status != jobring::ClaimStatus::ok)
    throw Exit{kNothing, "jobring claim: nothing to claim in queue '" + name + "'"};
  const long long lease_ms = lease.count() > 0 ? lease.count() : q.options().default_lease.count();
  if (vm.count("raw")) {
    std::fwrite(job.payload().data(), 1, job.payload().size(), stdout);
    std::fprintf(stderr, "%s\n", job.lease.to_string().c_str());
  } else {
    const std::string key =
        job.key().empty() ? "" : ",\"key\":" + jobring::cli::json_string(std::string(job.key()));
    std::printf("{\"job\":%llu,\"handle\":\"%s\",\"attempt\":%u,\"lease_ms\":%lld%s,%s}\n",
                static_cast<unsigned long long>(job.id), job.lease.to_string().c_str(), job.attempt, lease_ms,
                key.c_str(), payload_json(job.payload()).c_str());
  }
  return kOk;
}

int lease_outcome(const std::string& verb, const std::string& name, jobring::LeaseStatus s) {
  if (s == jobring::LeaseStatus::ok) return kOk;
  throw Exit{kLeaseLost,
             "jobring " + verb + ": lease lost on queue '" + name +
                 "': the lease expired and the job was claimed again, or was already acked/released, or "
                 "the handle is stale (after `extend`, use the new handle)"};
}

int cmd_lease_op(const std::string& verb, const std::vector<std::string>& args) {
  Command c{verb,
            verb == "extend"    ? "NAME HANDLE --lease D"
            : verb == "release" ? "NAME HANDLE [--delay D | --no-count]"
                                : "NAME HANDLE",
            verb == "ack" ? "Acknowledges a claimed job: it is deleted."
            : verb == "release"
                ? "Gives a claimed job back: it is claimable again (after D). The claim counts as an "
                  "attempt (max_attempts dead-letters the job on its last one) unless --no-count: for a "
                  "job given back untried, e.g. on shutdown."
                : "Pushes the lease's deadline to now + D; prints the new handle (the old one is "
                  "then stale)."};
  if (verb == "release")
    c.options.add_options()("delay", po::value<std::string>(), "invisible for D before it is claimable")(
        "no-count", "do not count this attempt; claimable at once (not with --delay)");
  if (verb == "extend")
    c.options.add_options()("lease", po::value<std::string>(), "new lease length from now (required)");
  c.hidden.add_options()("name", po::value<std::string>())("handle", po::value<std::string>());
  c.positional.add("name", 1).add("handle", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  jobring::Lease lease = handle_arg(c, vm);
  auto q = jobring::Queue::open(name);
  if (verb == "ack") return lease_outcome(verb, name, q.ack(lease));
  if (verb == "release" && vm.count("no-count")) {
    if (vm.count("delay")) usage(c.name, "--no-count gives the job back at once: it takes no --delay");
    return lease_outcome(verb, name, q.give_back(lease));
  }
  if (verb == "release")
    return lease_outcome(verb, name, q.release(lease, duration_arg(c, vm, "delay", 0ms)));
  if (!vm.count("lease")) usage(c.name, "--lease D is required");
  const milliseconds d = duration_arg(c, vm, "lease", 0ms);
  if (d.count() < 1 || d > jobring::kMaxLease) usage(c.name, "--lease must be from 1ms to 7 days");
  const int rc = lease_outcome(verb, name, q.extend(lease, d));
  std::printf("%s\n", lease.to_string().c_str());
  return rc;
}

int cmd_peek(const std::vector<std::string>& args) {
  Command c{"peek", "NAME [--state ready|delayed|leased|dead] [--limit N] [--json]",
            "Shows jobs in one state without claiming them."};
  c.options.add_options()("state", po::value<std::string>()->default_value("ready"),
                          "ready, delayed, leased or dead")(
      "limit", po::value<std::size_t>()->default_value(20), "at most N jobs")("json", "one JSON array");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const std::map<std::string, jobring::JobState> states{{"ready", jobring::JobState::ready},
                                                        {"delayed", jobring::JobState::delayed},
                                                        {"leased", jobring::JobState::leased},
                                                        {"dead", jobring::JobState::dead}};
  const auto it = states.find(vm["state"].as<std::string>());
  if (it == states.end()) usage(c.name, "bad --state: use ready, delayed, leased or dead");
  auto q = jobring::Queue::open(name);
  const auto jobs = q.peek(it->second, vm["limit"].as<std::size_t>());
  const bool json = vm.count("json") > 0;
  if (json) std::printf("[");
  bool first = true;
  for (const auto& j : jobs) {
    if (json) {
      std::printf("%s{\"job\":%llu,\"state\":\"%s\",\"attempts\":%u,\"ms_until\":%lld,\"owner_pid\":%d,%s}",
                  first ? "" : ",", static_cast<unsigned long long>(j.id), state_name(j.state).c_str(),
                  j.attempts, static_cast<long long>(j.ms_until), j.owner_pid,
                  payload_json(j.payload).c_str());
    } else {
      const std::string_view text(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
      const bool printable = is_text(text);
      std::printf("job %llu  %s  attempts %u", static_cast<unsigned long long>(j.id),
                  state_name(j.state).c_str(), j.attempts);
      if (j.state == jobring::JobState::delayed || j.state == jobring::JobState::leased)
        std::printf("  in %lldms", static_cast<long long>(j.ms_until));
      if (j.owner_pid != 0) std::printf("  owner pid %d", j.owner_pid);
      std::printf("  %s\n", printable ? jobring::cli::json_string(text.substr(0, 200)).c_str()
                                      : ("base64:" + jobring::cli::base64_encode(j.payload)).c_str());
    }
    first = false;
  }
  if (json) std::printf("]\n");
  return kOk;
}

int cmd_requeue(const std::vector<std::string>& args) {
  Command c{"requeue", "NAME (--dead | JOB_ID...)",
            "Moves dead jobs back to ready, with their attempts reset."};
  c.options.add_options()("dead", "every dead job");
  c.hidden.add_options()("name", po::value<std::string>())("ids", po::value<std::vector<std::uint64_t>>());
  c.positional.add("name", 1).add("ids", -1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const bool all = vm.count("dead") > 0;
  const bool ids = vm.count("ids") > 0;
  if (all == ids) usage(c.name, "give either --dead or one or more JOB_IDs");
  auto q = jobring::Queue::open(name);
  if (all) {
    std::printf("%zu\n", q.requeue_dead());
    return kOk;
  }
  int rc = kOk;
  std::size_t n = 0;
  for (const auto id : vm["ids"].as<std::vector<std::uint64_t>>()) {
    if (q.requeue(id)) {
      ++n;
    } else {
      std::fprintf(
          stderr,
          "jobring requeue: job %llu is not dead in queue '%s' (see `jobring peek %s --state dead`)\n",
          static_cast<unsigned long long>(id), name.c_str(), name.c_str());
      rc = kError;
    }
  }
  std::printf("%zu\n", n);
  return rc;
}

int cmd_purge(const std::vector<std::string>& args) {
  Command c{"purge", "NAME [--state ready|delayed|dead|all]",
            "Deletes jobs that are not under lease; prints how many. `all` also resets corrupt slots."};
  c.options.add_options()("state", po::value<std::string>()->default_value("all"),
                          "ready, delayed, dead or all");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const std::map<std::string, jobring::PurgeWhat> what{{"ready", jobring::PurgeWhat::ready},
                                                       {"delayed", jobring::PurgeWhat::delayed},
                                                       {"dead", jobring::PurgeWhat::dead},
                                                       {"all", jobring::PurgeWhat::all}};
  const auto it = what.find(vm["state"].as<std::string>());
  if (it == what.end()) usage(c.name, "bad --state: use ready, delayed, dead or all");
  auto q = jobring::Queue::open(name);
  std::printf("%zu\n", q.purge(it->second));
  return kOk;
}

// --- work: one process holds the leases (jobring::Worker), a child process
// per job does it.

// What a command needs, built before fork(): the child of a multi-threaded
// process may make only async-signal-safe calls until it execs.
struct CommandLine {
  std::vector<std::string> args;
  std::vector<char*> argv;  // into args, null-terminated
};

// Spawns CMD with the payload on stdin (through a memfd, so a command that
// does not read its input never blocks us) and the job in its environment,
// in its own process group. Returns the pid, or -1 with errno set. If the
// command cannot be executed, `exec_errno` gets the reason (reported through
// a close-on-exec pipe) and the child exits 127.
pid_t spawn(const CommandLine& cmd, const jobring::Job& job, pid_t parent, int& exec_errno) {
  exec_errno = 0;
  const int fd = ::memfd_create("jobring-payload", MFD_CLOEXEC);
  if (fd < 0) return -1;
  const auto p = job.payload();
  std::size_t off = 0;
  while (off < p.size()) {
    const ssize_t n = ::write(fd, p.data() + off, p.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      errno = e;
      return -1;
    }
    off += static_cast<std::size_t>(n);
  }
  ::lseek(fd, 0, SEEK_SET);
  // The environment: ours, with the job's id and attempt.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (kv.starts_with("JOBRING_JOB_ID=") || kv.starts_with("JOBRING_ATTEMPT=")) continue;
    env_strings.emplace_back(kv);
  }
  env_strings.push_back("JOBRING_JOB_ID=" + std::to_string(job.id));
  env_strings.push_back("JOBRING_ATTEMPT=" + std::to_string(job.attempt));
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Its own process group: Ctrl-C at the terminal reaches `jobring work`
    // (which lets the command finish), not the command itself.
    ::setpgid(0, 0);
    // If `jobring work` is killed, the command dies too: its job comes back
    // to the queue, and must not be done twice at once. (The death signal
    // follows the forking thread, which waits for the command.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGCHLD, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);  // async-signal-safe
    ::dup2(fd, STDIN_FILENO);
    ::execvpe(cmd.argv[0], cmd.argv.data(), envp.data());
    const int e = errno;
    (void)!::write(report[1], &e, sizeof e);
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(fd);
  ::close(report[1]);
  if (pid > 0) {
    int e = 0;
    ssize_t n = 0;
    do {
      n = ::read(report[0], &e, sizeof e);  // EOF at the exec: it worked
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof e)) exec_errno = e;
  }
  ::close(report[0]);
  errno = fork_errno;
  return pid;
}

// How the last command of this thread ended, for on_done (which runs on the
// handler's thread). A function, not a thread_local inside cmd_work: used
// from the handler lambda on a second thread, GCC 12 did not initialise that
// thread's copy (a crash of `work --concurrency 2`).
std::string& status_text() {
  thread_local std::string text;
  return text;
}

int cmd_work(const std::vector<std::string>& args_in) {
  Command c{
      "work", "NAME [--lease D] [--concurrency N] [--max-jobs N] [--wait D] [--grace D] -- CMD [ARG...]",
      "Turns CMD into a worker: for each job it runs CMD with the payload on stdin and JOBRING_JOB_ID and\n"
      "JOBRING_ATTEMPT in the environment, holding a lease owned by this process and extending it while\n"
      "CMD runs. Exit 0: ack. Otherwise: release with exponential backoff (--backoff doubled per attempt,\n"
      "up to --max-backoff, with jitter between half and all of it), so a job that keeps failing ends\n"
      "dead after the queue's max_attempts. CMD runs in its own process group, and dies if this\n"
      "process dies.\n"
      "SIGTERM/SIGINT: stop claiming, let running commands finish (for at most --grace), exit 0; a\n"
      "second signal (or the end of --grace) releases their jobs, sends them SIGTERM, and exits. If this\n"
      "process is killed, the janitor sees the owner dead and its jobs come back at once (or when their\n"
      "leases run out)."};
  c.options.add_options()("lease", po::value<std::string>(),
                          "lease length (default: the queue's); extended every third of it")(
      "concurrency", po::value<unsigned>()->default_value(1), "jobs at once")(
      "max-jobs", po::value<std::uint64_t>()->default_value(0),
      "exit after N claims have finished (retries count); 0 = no limit")(
      "wait", po::value<std::string>(), "exit 0 when no job came for D; default: wait for ever")(
      "grace", po::value<std::string>(), "after a signal, time running commands get; default: no limit")(
      "backoff", po::value<std::string>()->default_value("1s"), "first retry delay after a failure")(
      "max-backoff", po::value<std::string>()->default_value("5m"), "longest retry delay");
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
  // Everything after "--" is the command.
  std::vector<std::string> args;
  CommandLine cmd;
  bool in_cmd = false;
  for (const auto& a : args_in) {
    if (!in_cmd && a == "--") {
      in_cmd = true;
      continue;
    }
    (in_cmd ? cmd.args : args).push_back(a);
  }
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  if (cmd.args.empty()) usage(c.name, "missing the command: jobring work NAME -- CMD [ARG...]");
  for (auto& a : cmd.args) cmd.argv.push_back(a.data());
  cmd.argv.push_back(nullptr);
  const unsigned concurrency = vm["concurrency"].as<unsigned>();
  if (concurrency < 1 || concurrency > 1024) usage(c.name, "--concurrency must be from 1 to 1024");
  const std::uint64_t max_jobs = vm["max-jobs"].as<std::uint64_t>();
  const milliseconds idle = duration_arg(c, vm, "wait", 0ms);
  const milliseconds grace = vm.count("grace") ? duration_arg(c, vm, "grace", 0ms) : jobring::kForever;
  const milliseconds backoff = duration_arg(c, vm, "backoff", 1s);
  const milliseconds max_backoff = duration_arg(c, vm, "max-backoff", 5min);
  auto q = jobring::Queue::open(name);
  const milliseconds lease = duration_arg(c, vm, "lease", q.options().default_lease);
  if (lease.count() < 3 || lease > jobring::kMaxLease) usage(c.name, "--lease must be from 3ms to 7 days");

  // The command running for each handler thread, for on_abandon and on_lease_lost.
  struct Running {
    std::atomic<jobring::JobId> job{0};
    std::atomic<pid_t> pid{0};
  };
  std::vector<Running> running(concurrency);
  auto running_pid = [&](jobring::JobId id) -> pid_t {
    for (const auto& r : running)
      if (r.job.load() == id) return r.pid.load();
    return 0;
  };
  std::atomic<bool> spawn_failed{false};
  const pid_t self = ::getpid();

  jobring::WorkerOptions o;
  o.lease = lease;
  o.backoff = {.base = std::min(backoff, max_backoff), .cap = max_backoff, .jitter = jobring::Jitter::equal};
  o.grace = grace;
  o.threads = concurrency;
  o.max_jobs = max_jobs;
  o.idle_exit = idle;
  o.hooks.on_lease_lost = [&](const jobring::Job& job) {
    if (running_pid(job.id) != 0)
      std::fprintf(stderr,
                   "jobring work: job %llu: lease lost while running (another worker may run it too)\n",
                   static_cast<unsigned long long>(job.id));
  };
  o.hooks.on_abandon = [&](const jobring::Job& job) {
    // Second signal or end of the grace period: the job is back in the
    // queue; stop its command (its process group).
    if (const pid_t pid = running_pid(job.id); pid > 0) ::kill(-pid, SIGTERM);
  };
  o.hooks.on_done = [&](const jobring::Job& job, const jobring::JobReport& r) {
    const auto id = static_cast<unsigned long long>(job.id);
    switch (r.result) {
      case jobring::JobResult::retried:
      case jobring::JobResult::dead:
        std::fprintf(stderr, "jobring work: job %llu attempt %u failed (%s); %s%s\n", id, job.attempt,
                     status_text().c_str(),
                     r.result == jobring::JobResult::dead ? "attempts used up: dead-lettered" : "retry in ",
                     r.result == jobring::JobResult::dead ? "" : jobring::format_duration(r.delay).c_str());
        break;
      case jobring::JobResult::lease_lost:
        if (r.outcome.kind() == jobring::Outcome::Kind::ack)
          std::fprintf(
              stderr,
              "jobring work: job %llu: done, but the lease was lost before the ack (it may run again)\n", id);
        else
          std::fprintf(stderr,
                       "jobring work: job %llu attempt %u failed (%s); the lease was lost meanwhile\n", id,
                       job.attempt, status_text().c_str());
        break;
      default:
        break;
    }
  };

  jobring::Worker* worker_ptr = nullptr;
  jobring::Worker worker(
      q,
      [&](const jobring::Job& job, jobring::JobContext& ctx) {
        Running& slot = running[ctx.thread_index()];
        int exec_errno = 0;
        const pid_t pid = spawn(cmd, job, self, exec_errno);
        if (pid < 0) {
          std::fprintf(stderr, "jobring work: cannot start %s: %s\n", cmd.args[0].c_str(),
                       jobring::cli::errno_text(errno).c_str());
          status_text() = "could not start";
          spawn_failed.store(true);
          worker_ptr->request_stop();
          return jobring::Outcome::retry_after(std::min(backoff, max_backoff));
        }
        slot.pid.store(pid);
        slot.job.store(job.id);
        if (ctx.abandoned()) ::kill(-pid, SIGTERM);  // on_abandon came before we stored the pid
        if (exec_errno != 0)
          std::fprintf(stderr, "jobring work: cannot run %s: %s\n", cmd.args[0].c_str(),
                       jobring::cli::errno_text(exec_errno).c_str());
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        slot.job.store(0);
        slot.pid.store(0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return jobring::Outcome::ack();
        status_text() = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                          : "signal " + std::to_string(WTERMSIG(status));
        return jobring::Outcome::retry();
      },
      std::move(o));
  worker_ptr = &worker;
  jobring::Worker::install_signal_handlers();
  (void)worker.run();
  return spawn_failed.load() ? kError : kOk;
}

// ---------------------------------------------------------------------------

struct Entry {
  const char* name;
  const char* line;
  std::function<int(const std::vector<std::string>&)> run;
};

const std::vector<Entry>& commands() {
  static const std::vector<Entry> table = {
      {"create", "create a queue", cmd_create},
      {"rm", "remove a queue", cmd_rm},
      {"ls", "list every queue on this host", cmd_ls},
      {"stat", "options, jobs per state, totals", cmd_stat},
      {"push", "push a job (DATA or stdin); prints its id", cmd_push},
      {"claim", "claim a job with a detached lease; prints JSON", cmd_claim},
      {"ack", "acknowledge a claimed job", [](const auto& a) { return cmd_lease_op("ack", a); }},
      {"release", "give a claimed job back (optionally delayed)",
       [](const auto& a) { return cmd_lease_op("release", a); }},
      {"extend", "extend a lease; prints the new handle",
       [](const auto& a) { return cmd_lease_op("extend", a); }},
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

// Output that could not be written (a full disk, a closed file) makes the
// exit status an error: a script must not take a lost answer for a good one.
// (A claim whose JSON was lost stays claimed until its lease runs out.)
int checked_exit(int code) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
    std::fprintf(stderr, "jobring: cannot write the output: %s\n", jobring::cli::errno_text(errno).c_str());
    return code == kOk ? kError : code;
  }
  return code;
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
    std::printf("jobring 0.1.0\n");
    return kOk;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& e : commands()) {
    if (command != e.name) continue;
    try {
      return checked_exit(e.run(args));
    } catch (const UsageError& u) {
      std::fprintf(stderr, "%s\n", u.message.c_str());
      return kUsage;
    } catch (const Exit& x) {
      if (!x.message.empty()) std::fprintf(x.code == kOk ? stdout : stderr, "%s\n", x.message.c_str());
      return checked_exit(x.code);
    } catch (const jobring::error& err) {
      std::fprintf(stderr, "jobring %s: %s\n", command.c_str(), err.what());
      return kError;
    } catch (const std::exception& err) {
      std::fprintf(stderr, "jobring %s: %s\n", command.c_str(), err.what());
      return kError;
    }
  }
  std::fprintf(stderr, "jobring: unknown command '%s'\n\n", command.c_str());
  main_help(stderr);
  return kUsage;
}
