// jobring-janitor — reclaims crashed processes' jobs at once and reports metrics.
//
// Every guarantee of a jobring queue holds without this daemon: a dead
// worker's job comes back when its lease runs out. The janitor makes that
// fast: each sweep (default every 50 ms) returns the leases of owners that are
// proven dead (PID gone, a zombie, or a PID reused by a process with another
// start time), returns expired leases, frees slots that dead producers left
// half-written, and wakes waiters (Queue::sweep). A stopped (SIGSTOP) worker
// is alive: its lease lasts until its deadline.
//
// Structure: signals only set flags; the main loop sleeps, then sweeps,
// reloads, notifies systemd and writes metrics.

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "jobring/duration.hpp"
#include "jobring/queue.hpp"

namespace po = boost::program_options;
using namespace std::chrono_literals;

namespace {

// Exit codes (documented in --help and the README).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // a fatal runtime error (e.g. cannot install signal handlers)
constexpr int kExitUsage = 2;    // bad command line
constexpr int kExitConfig = 3;   // bad or unreadable config file

constexpr const char* kDefaultConfig = "/etc/jobring/janitor.conf";
constexpr const char* kVersion = "jobring-janitor 0.1.0";

// The text of errno value `err`, from strerror_r (strerror is not
// thread-safe). strerror_r comes in two flavours: GNU (returns the message,
// maybe not in the buffer) and XSI (returns 0 and fills the buffer).
[[maybe_unused]] const char* strerror_result(const char* gnu, const char* /*buf*/) { return gnu; }
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}
std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(::strerror_r(err, buf, sizeof buf), buf);
}

// ---------------------------------------------------------------------------
// Logging: levelled, to stderr. Under systemd (JOURNAL_STREAM set) each line
// starts with a syslog priority prefix "<N>", which journald turns into the
// entry's priority.
// ---------------------------------------------------------------------------

enum class Level { error = 3, warn = 4, info = 6, debug = 7 };
Level g_level = Level::info;
const bool g_journal = std::getenv("JOURNAL_STREAM") != nullptr;

std::optional<Level> parse_level(const std::string& s) {
  if (s == "error") return Level::error;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "info") return Level::info;
  if (s == "debug") return Level::debug;
  return std::nullopt;
}

[[gnu::format(printf, 2, 3)]] void log(Level level, const char* fmt, ...) {
  if (static_cast<int>(level) > static_cast<int>(g_level)) return;
  static const char* const names[] = {"", "", "", "error", "warn", "", "info", "debug"};
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (g_journal)
    std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), line);
  else
    std::fprintf(stderr, "jobring-janitor[%d] %s: %s\n", static_cast<int>(::getpid()),
                 names[static_cast<int>(level)], line);
  std::fflush(stderr);
}

// ---------------------------------------------------------------------------
// systemd notification protocol (sd_notify(3)): one datagram per message to
// the AF_UNIX socket named by $NOTIFY_SOCKET ('@' = abstract namespace).
// Without $NOTIFY_SOCKET every call is a no-op: the daemon runs as a plain
// foreground process.
// ---------------------------------------------------------------------------

bool notify_systemd(const std::string& message) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@')) return false;
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t sent = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), addr_len);
  ::close(fd);
  return sent == static_cast<ssize_t>(message.size());
}

// Half of $WATCHDOG_USEC (when it is meant for this process), else nullopt.
std::optional<std::chrono::microseconds> watchdog_period() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (usec == nullptr) return std::nullopt;
  // Whole decimal numbers only: atol would read "12x" as 12 and "x" as 0.
  auto number = [](const char* s) -> std::optional<long long> {
    long long v = 0;
    const char* end = s + std::strlen(s);
    const auto [p, ec] = std::from_chars(s, end, v);
    if (ec != std::errc() || p != end || p == s) return std::nullopt;
    return v;
  };
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid != nullptr && number(pid) != ::getpid())
    return std::nullopt;
  const auto v = number(usec);
  if (!v || *v <= 0) return std::nullopt;
  return std::chrono::microseconds(*v / 2);
}

// ---------------------------------------------------------------------------
// Signals set flags; the main loop acts on them.
// ---------------------------------------------------------------------------

volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_reload = 0;
volatile sig_atomic_t g_in_sweep = 0;
sigjmp_buf g_sweep_jump;

extern "C" void on_stop(int) { g_stop = 1; }
extern "C" void on_reload(int) { g_reload = 1; }
extern "C" void on_sigbus(int sig) {
  if (g_in_sweep) siglongjmp(g_sweep_jump, 1);
  ::signal(sig, SIG_DFL);  // not ours: die of it as we would have
  ::raise(sig);
}

bool install_signals() {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a signal cuts the sleep between sweeps short
  sa.sa_handler = on_stop;
  if (::sigaction(SIGTERM, &sa, nullptr) != 0 || ::sigaction(SIGINT, &sa, nullptr) != 0) return false;
  sa.sa_handler = on_reload;
  if (::sigaction(SIGHUP, &sa, nullptr) != 0) return false;
  sa.sa_handler = on_sigbus;
  if (::sigaction(SIGBUS, &sa, nullptr) != 0) return false;
  sa.sa_handler = SIG_IGN;
  return ::sigaction(SIGPIPE, &sa, nullptr) == 0;
}

// ---------------------------------------------------------------------------
// Configuration: command line wins over the config file.
// ---------------------------------------------------------------------------

struct Config {
  std::vector<std::string> queues;  // empty: every jobring queue on the host
  std::chrono::milliseconds interval = 50ms;
  Level level = Level::info;
  std::string metrics_file;
  std::string config_file = kDefaultConfig;
  bool config_explicit = false;
  bool once = false;
};

struct ConfigError {
  int exit_code;
  std::string message;
};

po::options_description file_options() {
  po::options_description d("Options (command line or config file)");
  d.add_options()("queue,q", po::value<std::vector<std::string>>()->composing(),
                  "a queue to look after (repeatable); none: every jobring queue on the host")(
      "interval,i", po::value<std::string>(), "time between sweeps: 10ms .. 1h (default 50ms)")(
      "log-level,l", po::value<std::string>(), "error, warn, info or debug (default info)")(
      "metrics-file,m", po::value<std::string>(),
      "write Prometheus metrics here after every sweep (atomically: for node_exporter's textfile collector)");
  return d;
}

po::options_description cli_only_options() {
  po::options_description d("Command line only");
  d.add_options()("config,c", po::value<std::string>(),
                  "config file (default /etc/jobring/janitor.conf; a missing default is fine)")(
      "once", "one sweep, then exit (for tests and cron)")("help,h", "show this help and exit")(
      "version,V", "show the version and exit");
  return d;
}

void print_help(std::ostream& out) {
  out << "Usage: jobring-janitor [OPTIONS]\n\n"
         "Reclaims the jobs of crashed jobring workers and producers at once (a proven-dead owner's\n"
         "lease goes back to ready without waiting for its deadline), returns expired leases, wakes\n"
         "waiters, and writes metrics. Runs under systemd (Type=notify, watchdog) or in the foreground.\n\n"
      << file_options() << '\n'
      << cli_only_options()
      << "\nSignals: SIGTERM/SIGINT stop cleanly (exit 0); SIGHUP re-reads the config file and the queue "
         "list.\n"
         "\nExit codes:\n"
         "  0  stopped cleanly (or --once, --help, --version done)\n"
         "  1  fatal runtime error\n"
         "  2  bad command line\n"
         "  3  bad or unreadable config file\n"
         "\nExample:\n"
         "  jobring-janitor --queue orders --queue emails --interval 50ms \\\n"
         "                  --metrics-file /var/lib/prometheus/node-exporter/jobring.prom\n";
}

// Checks the values in `vm` and applies them to `c`. Problems are reported
// with `exit_code`: 2 for the command line, 3 for the config file.
bool apply(const po::variables_map& vm, Config& c, int exit_code, const std::string& where,
           ConfigError& err) {
  auto fail = [&](const std::string& what) {
    err = {exit_code, where + what};
    return false;
  };
  if (vm.count("queue")) {
    c.queues = vm["queue"].as<std::vector<std::string>>();
    for (const auto& q : c.queues)
      if (auto ec = jobring::check_name(q)) return fail("bad queue name '" + q + "': " + ec.message());
  }
  if (vm.count("interval")) {
    const std::string interval = vm["interval"].as<std::string>();
    const auto d = jobring::parse_duration(interval);
    // (Not 10ms / 1h: cppcheck 2.10 stops analysing this file at those literals here.)
    if (!d || *d < std::chrono::milliseconds{10} || *d > std::chrono::hours{1})
      return fail("bad interval '" + interval + "': write a duration from 10ms to 1h, e.g. 50ms or 1s");
    c.interval = *d;
  }
  if (vm.count("log-level")) {
    const std::string level = vm["log-level"].as<std::string>();
    const auto l = parse_level(level);
    if (!l) return fail("bad log-level '" + level + "': use error, warn, info or debug");
    c.level = *l;
  }
  if (vm.count("metrics-file")) c.metrics_file = vm["metrics-file"].as<std::string>();
  return true;
}

std::optional<Config> load_config(int argc, char** argv, ConfigError& err, bool& exit_now) {
  exit_now = false;
  po::options_description all;
  all.add(file_options()).add(cli_only_options());
  po::variables_map cli;
  try {
    // No positional arguments: a stray word (say "orders" for "--queue
    // orders") is an error, not silently "every queue on the host".
    po::store(po::command_line_parser(argc, argv).options(all).positional({}).run(), cli);
  } catch (const po::too_many_positional_options_error&) {
    std::string stray;
    for (int i = 1; i < argc; ++i)
      if (argv[i][0] != '-' && (i == 1 || argv[i - 1][0] != '-' || std::strchr(argv[i - 1], '=') != nullptr))
        stray = argv[i];
    err = {kExitUsage, "unexpected argument '" + stray +
                           "': queues are named with --queue NAME (see jobring-janitor --help)"};
    return std::nullopt;
  } catch (const po::error& e) {
    err = {kExitUsage, std::string(e.what()) + " (see jobring-janitor --help)"};
    return std::nullopt;
  }
  if (cli.count("help")) {
    print_help(std::cout);
    exit_now = true;
    return std::nullopt;
  }
  if (cli.count("version")) {
    std::cout << kVersion << '\n';
    exit_now = true;
    return std::nullopt;
  }
  Config c;
  c.once = cli.count("once") > 0;
  if (cli.count("config")) {
    c.config_file = cli["config"].as<std::string>();
    c.config_explicit = true;
  }
  // Check the command line first (exit 2), then the file (exit 3); then
  // apply the file's values and, over them, the command line's.
  Config from_cli;
  if (!apply(cli, from_cli, kExitUsage, "", err)) return std::nullopt;
  struct stat st {};
  const bool exists = ::stat(c.config_file.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    err = {kExitConfig, "config file " + c.config_file + " is not a regular file"};
    return std::nullopt;
  }
  std::ifstream in;
  if (exists) in.open(c.config_file);
  if (!exists || !in) {
    if (c.config_explicit || exists) {
      err = {kExitConfig, "cannot read config file " + c.config_file + ": " + errno_text(errno)};
      return std::nullopt;
    }
  } else {
    po::variables_map file;
    try {
      po::store(po::parse_config_file(in, file_options()), file);
    } catch (const po::error& e) {
      err = {kExitConfig, "config file " + c.config_file + ": " + e.what()};
      return std::nullopt;
    }
    if (in.bad()) {
      err = {kExitConfig, "cannot read config file " + c.config_file + ": " + errno_text(errno)};
      return std::nullopt;
    }
    if (!apply(file, c, kExitConfig, "config file " + c.config_file + ": ", err)) return std::nullopt;
  }
  if (!apply(cli, c, kExitUsage, "", err)) return std::nullopt;
  return c;
}

// ---------------------------------------------------------------------------
// The queues we look after, re-opened when removed and recreated.
// ---------------------------------------------------------------------------

struct Watched {
  jobring::Queue queue;
  ino_t inode;
  off_t bytes;             // the segment's size when opened: a change means someone truncated it
  std::string last_error;  // so that a failing queue is logged once, not every sweep
};

struct Totals {
  std::uint64_t sweeps = 0;
  std::uint64_t reclaimed = 0;
  std::uint64_t expired = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t recovered_writes = 0;
};

class Janitor {
 public:
  explicit Janitor(Config config) : config_(std::move(config)) {}

  void set_config(Config config) {
    if (config.metrics_file != config_.metrics_file) stale_tmp_removed_ = false;
    config_ = std::move(config);
  }
  [[nodiscard]] const Config& config() const { return config_; }
  [[nodiscard]] const Totals& totals() const { return totals_; }
  [[nodiscard]] std::size_t queue_count() const { return watched_.size(); }

  void sweep_all() {
    const auto started = std::chrono::steady_clock::now();
    const std::vector<std::string> names = config_.queues.empty() ? jobring::Queue::list() : config_.queues;
    const std::set<std::string> wanted(names.begin(), names.end());
    for (auto it = watched_.begin(); it != watched_.end();) {
      if (!wanted.contains(it->first)) {
        log(Level::info, "queue '%s': no longer watched", it->first.c_str());
        it = watched_.erase(it);
      } else {
        ++it;
      }
    }
    metrics_.str("");
    metrics_.clear();
    for (const auto& name : names) sweep_one(name);
    ++totals_.sweeps;
    last_sweep_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!config_.metrics_file.empty()) write_metrics();
  }

 private:
  void sweep_one(const std::string& name) {
    struct stat st {};
    const std::string path = "/dev/shm/jobring." + name;
    if (::stat(path.c_str(), &st) != 0) {
      if (watched_.erase(name) > 0) log(Level::info, "queue '%s': removed; dropped", name.c_str());
      if (!config_.queues.empty() && !missing_.contains(name)) {
        log(Level::warn, "queue '%s': does not exist (yet); will look again every sweep", name.c_str());
        missing_.insert(name);
      }
      return;
    }
    missing_.erase(name);
    auto it = watched_.find(name);
    if (it != watched_.end() && it->second.inode != st.st_ino) {
      log(Level::info, "queue '%s': recreated; re-opening", name.c_str());
      watched_.erase(it);
      it = watched_.end();
    } else if (it != watched_.end() && it->second.bytes != st.st_size) {
      // Touching a page beyond the new end would raise SIGBUS: let go.
      log(Level::warn, "queue '%s': segment resized from %lld to %lld bytes by someone; dropped",
          name.c_str(), static_cast<long long>(it->second.bytes), static_cast<long long>(st.st_size));
      watched_.erase(it);
      it = watched_.end();
    }
    if (it == watched_.end()) {
      std::error_code ec;
      // No waiting for a half-made segment: it would stall every other
      // queue's sweep. It is looked at again next sweep.
      auto q = jobring::Queue::open(name, ec, 0ms);
      if (!q) {
        auto& last = failed_[name];
        if (last != ec.message()) {
          log(Level::warn, "queue '%s': skipped: %s", name.c_str(), ec.message().c_str());
          last = ec.message();
        }
        return;
      }
      failed_.erase(name);
      log(Level::info, "queue '%s': watching (capacity %u)", name.c_str(), q->options().capacity);
      it = watched_.emplace(name, Watched{std::move(*q), st.st_ino, st.st_size, {}}).first;
    }
    jobring::Queue& q = it->second.queue;
    // A segment truncated between our size check and the sweep raises SIGBUS
    // when a page past its end is touched. The handler jumps back here; the
    // sweep holds no lock and every change it makes is a single CAS, so
    // abandoning it midway leaves the queue consistent.
    if (sigsetjmp(g_sweep_jump, 1) != 0) {
      g_in_sweep = 0;
      log(Level::warn, "queue '%s': segment truncated during a sweep (SIGBUS); dropped", name.c_str());
      watched_.erase(name);
      return;
    }
    g_in_sweep = 1;
    const jobring::SweepResult r = q.sweep();
    const jobring::Stats stats = q.stats();
    g_in_sweep = 0;
    totals_.reclaimed += r.reclaimed;
    totals_.expired += r.expired;
    totals_.dead_lettered += r.dead_lettered;
    totals_.recovered_writes += r.recovered_writes;
    if (r.reclaimed + r.expired + r.dead_lettered + r.recovered_writes > 0)
      log(Level::info,
          "queue '%s': %zu reclaimed from dead owners, %zu expired, %zu dead-lettered, %zu half-written "
          "freed",
          name.c_str(), r.reclaimed, r.expired, r.dead_lettered, r.recovered_writes);
    if (!config_.metrics_file.empty()) append_metrics(name, stats);
  }

  void append_metrics(const std::string& name, const jobring::Stats& s) {
    const std::string q = "queue=\"" + name + "\"";  // names are [A-Za-z0-9._-]: no escaping needed
    auto gauge = [&](const char* state, std::uint64_t v) {
      metrics_ << "jobring_jobs{" << q << ",state=\"" << state << "\"} " << v << '\n';
    };
    gauge("free", s.free);
    gauge("writing", s.writing);
    gauge("ready", s.ready);
    gauge("delayed", s.delayed);
    gauge("leased", s.leased);
    gauge("expired", s.expired);
    gauge("dead", s.dead);
    gauge("corrupt", s.corrupt);
    auto counter = [&](const char* metric, std::uint64_t v) {
      metrics_ << metric << '{' << q << "} " << v << '\n';
    };
    counter("jobring_pushed_total", s.pushed);
    counter("jobring_claimed_total", s.claimed);
    counter("jobring_acked_total", s.acked);
    counter("jobring_released_total", s.released);
    counter("jobring_expired_total", s.expired_total);
    counter("jobring_reclaimed_total", s.reclaimed);
    counter("jobring_dead_lettered_total", s.dead_lettered);
    counter("jobring_recovered_writes_total", s.recovered_writes);
    counter("jobring_duplicates_total", s.duplicates);
    counter("jobring_keys_evicted_total", s.keys_evicted);
    counter("jobring_keys_full_total", s.keys_full);
    metrics_ << "jobring_keys{" << q << ",state=\"live\"} " << s.keys_live << '\n'
             << "jobring_keys{" << q << ",state=\"remembered\"} " << s.keys_remembered << '\n'
             << "jobring_keys_capacity{" << q << "} " << s.keys_capacity << '\n';
    metrics_ << "jobring_oldest_lease_seconds{" << q << "} "
             << static_cast<double>(s.oldest_lease_ms) / 1000.0 << '\n';
  }

  // A janitor SIGKILLed between writing its temporary metrics file and the
  // rename leaves FILE.tmp.PID behind. Remove those of PIDs that are gone
  // (once per metrics file), so that restarts do not pile them up.
  void remove_stale_tmp() {
    stale_tmp_removed_ = true;
    const std::filesystem::path file(config_.metrics_file);
    const std::string prefix = file.filename().string() + ".tmp.";
    std::error_code ec;
    const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
      long pid = 0;
      const char* digits = name.c_str() + prefix.size();
      char* end = nullptr;
      pid = std::strtol(digits, &end, 10);
      if (end == digits || *end != '\0' || pid <= 0 || pid == ::getpid()) continue;
      if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        std::filesystem::remove(entry.path(), ec);
        log(Level::info, "removed %s, left by a janitor that died while writing it", entry.path().c_str());
      }
    }
  }

  void write_metrics() {
    std::ostringstream out;
    out << "# HELP jobring_jobs Jobs per state (free slots included).\n# TYPE jobring_jobs gauge\n"
        << "# HELP jobring_oldest_lease_seconds Age of the oldest lease still held.\n"
        << "# TYPE jobring_oldest_lease_seconds gauge\n"
        << "# HELP jobring_keys De-duplication keys held (live: job in the queue; remembered: in the "
           "window).\n"
        << "# TYPE jobring_keys gauge\n# TYPE jobring_keys_capacity gauge\n";
    for (const char* c : {"pushed", "claimed", "acked", "released", "expired", "reclaimed", "dead_lettered",
                          "recovered_writes", "duplicates", "keys_evicted", "keys_full"})
      out << "# TYPE jobring_" << c << "_total counter\n";
    out << metrics_.str();
    out << "# TYPE jobring_janitor_sweeps_total counter\njobring_janitor_sweeps_total " << totals_.sweeps
        << '\n'
        << "# TYPE jobring_janitor_last_sweep_seconds gauge\njobring_janitor_last_sweep_seconds "
        << last_sweep_seconds_ << '\n';
    // Atomic replacement: write a temporary file beside it, then rename.
    const std::string tmp = config_.metrics_file + ".tmp." + std::to_string(::getpid());
    if (!stale_tmp_removed_) remove_stale_tmp();
    {
      std::ofstream f(tmp, std::ios::trunc);
      f << out.str();
      f.flush();
      if (!f) {
        if (!metrics_failed_)
          log(Level::warn, "cannot write metrics to %s: %s", tmp.c_str(), errno_text(errno).c_str());
        metrics_failed_ = true;
        ::unlink(tmp.c_str());
        return;
      }
    }
    if (std::rename(tmp.c_str(), config_.metrics_file.c_str()) != 0) {
      if (!metrics_failed_)
        log(Level::warn, "cannot rename metrics into %s: %s", config_.metrics_file.c_str(),
            errno_text(errno).c_str());
      metrics_failed_ = true;
      ::unlink(tmp.c_str());
      return;
    }
    metrics_failed_ = false;
  }

  bool stale_tmp_removed_ = false;  // reset when the metrics file changes (reload)
  Config config_;
  std::map<std::string, Watched> watched_;
  std::map<std::string, std::string> failed_;
  std::set<std::string> missing_;
  std::ostringstream metrics_;
  Totals totals_;
  double last_sweep_seconds_ = 0;
  bool metrics_failed_ = false;
};

std::string status_line(const Janitor& j) {
  const Totals& t = j.totals();
  return "STATUS=" + std::to_string(j.queue_count()) + " queues, " + std::to_string(t.sweeps) + " sweeps, " +
         std::to_string(t.reclaimed) + " reclaimed from dead owners, " + std::to_string(t.expired) +
         " expired, " + std::to_string(t.recovered_writes) + " half-written freed";
}

// SIGTERM, SIGINT and SIGHUP stay blocked except while we sleep: ppoll
// unblocks them atomically with going to sleep, so a signal that arrives
// during a sweep (or between checking the flags and sleeping) is delivered
// at the start of the sleep and ends it at once, instead of being noticed an
// interval later.
sigset_t g_sleep_mask;

bool block_loop_signals() {
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGHUP);
  return ::pthread_sigmask(SIG_BLOCK, &block, &g_sleep_mask) == 0;
}

void sleep_for(std::chrono::milliseconds d) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(d.count() / 1000);
  ts.tv_nsec = static_cast<long>(d.count() % 1000) * 1'000'000L;
  ::ppoll(nullptr, 0, &ts, &g_sleep_mask);  // EINTR by SIGTERM/SIGHUP: the loop looks at the flags
}

}  // namespace

int main(int argc, char** argv) {
  ConfigError err{};
  bool exit_now = false;
  auto config = load_config(argc, argv, err, exit_now);
  if (exit_now) return kExitOk;
  if (!config) {
    std::fprintf(stderr, "jobring-janitor: %s\n", err.message.c_str());
    return err.exit_code;
  }
  g_level = config->level;
  if (!install_signals() || !block_loop_signals()) {
    log(Level::error, "cannot install signal handlers: %s", errno_text(errno).c_str());
    return kExitFailure;
  }

  Janitor janitor(*config);
  log(Level::info, "started: %s, sweep every %s%s", config->queues.empty() ? "all queues" : "listed queues",
      jobring::format_duration(config->interval).c_str(),
      config->metrics_file.empty() ? "" : (", metrics to " + config->metrics_file).c_str());
  janitor.sweep_all();
  if (config->once) return kExitOk;
  notify_systemd("READY=1\n" + status_line(janitor));

  const auto watchdog = watchdog_period();
  auto last_watchdog = std::chrono::steady_clock::now();
  auto last_status = last_watchdog;
  if (watchdog) notify_systemd("WATCHDOG=1");
  auto next_sweep = std::chrono::steady_clock::now() + janitor.config().interval;
  while (!g_stop) {
    // Sleep until the next sweep, or the next watchdog ping if that is sooner.
    auto wake = next_sweep;
    if (watchdog)
      wake = std::min(wake, last_watchdog + std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog));
    const auto now0 = std::chrono::steady_clock::now();
    if (wake > now0 && !g_reload && !g_stop)
      sleep_for(std::chrono::ceil<std::chrono::milliseconds>(wake - now0));
    if (g_stop) break;
    if (watchdog && std::chrono::steady_clock::now() - last_watchdog >= *watchdog) {
      notify_systemd("WATCHDOG=1");
      last_watchdog = std::chrono::steady_clock::now();
    }
    if (std::chrono::steady_clock::now() < next_sweep && !g_reload) continue;
    next_sweep = std::chrono::steady_clock::now() + janitor.config().interval;
    if (g_reload) {
      g_reload = 0;
      notify_systemd("RELOADING=1");
      ConfigError reload_err{};
      bool ignored = false;
      if (auto fresh = load_config(argc, argv, reload_err, ignored)) {
        g_level = fresh->level;
        janitor.set_config(std::move(*fresh));
        log(Level::info, "configuration reloaded");
      } else {
        log(Level::error, "reload failed, keeping the old configuration: %s", reload_err.message.c_str());
      }
      notify_systemd("READY=1");
    }
    janitor.sweep_all();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_status >= std::chrono::seconds{1}) {  // (not 1s: see the interval check)
      notify_systemd(status_line(janitor));
      last_status = now;
    }
  }
  notify_systemd("STOPPING=1");
  log(Level::info, "stopping: %s", status_line(janitor).c_str() + 7);
  return kExitOk;
}
