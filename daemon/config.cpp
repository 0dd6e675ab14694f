#include "config.hpp"

#include <sys/stat.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "common/errno_text.hpp"
#include "common/version.hpp"
#include "jobring/any_queue.hpp"
#include "jobring/duration.hpp"
#include "jobring/queue.hpp"

namespace jobring::janitor {

namespace po = boost::program_options;
using tools::errno_text;

namespace {

po::options_description file_options() {
  po::options_description d("Options (command line or config file)");
  d.add_options()("queue,q", po::value<std::vector<std::string>>()->composing(),
                  "a queue to look after (repeatable); none: every jobring queue on the host")(
      "dir", po::value<std::vector<std::string>>()->composing(),
      "a directory of file-backed queues (jobring create --dir DIR) to look after too, when no --queue "
      "is given (repeatable); their queues are named DIR/NAME")(
      "url,u", po::value<std::vector<std::string>>()->composing(),
      "a Redis server (redis://HOST:PORT, redis+unix:///PATH/redis.sock, redis+cluster://H1:P1,H2:P2) whose "
      "queues every sweep looks after too: expired leases back, statistics in the metrics (repeatable)")(
      "interval,i", po::value<std::string>(), "time between sweeps: 10ms .. 1h (default 50ms)")(
      "log-level,l", po::value<std::string>(), "error, warn, info or debug (default info)")(
      "dead-letter,d", po::value<std::vector<std::string>>()->composing(),
      "SRC=DST: every sweep moves the dead jobs of queue SRC into queue DST (a dead-letter queue that "
      "you create), so that poison jobs do not fill SRC (repeatable)")(
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
         "waiters, and writes metrics. Runs under systemd (Type=notify, watchdog) or in the foreground.\n"
         "With --url, also the queues of Redis servers: their expired leases back at once (no claimer\n"
         "needed) and their statistics in the metrics; a server that cannot be reached is logged once\n"
         "per outage, retried every few seconds, and the other queues are swept as usual.\n\n"
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
         "                  --dead-letter orders=orders.dead --url redis://10.0.0.5:6379 \\\n"
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
  if (vm.count("dir")) {
    c.dirs = vm["dir"].as<std::vector<std::string>>();
    for (const auto& d : c.dirs)
      if (d.empty() || d.front() != '/') return fail("bad dir '" + d + "': give an absolute directory");
  }
  if (vm.count("url")) {
    c.urls = vm["url"].as<std::vector<std::string>>();
    for (const auto& u : c.urls) {
      std::error_code ec;
      const auto backend = jobring::backend_of(u, ec);
      if (!backend || *backend != jobring::Backend::redis)
        return fail("bad url '" + u +
                    "': give a Redis server, redis://HOST:PORT, redis+unix:///PATH/redis.sock or "
                    "redis+cluster://H1:P1,H2:P2 (the queues in shared memory are looked after without one)");
    }
  }
  if (vm.count("dead-letter")) {
    c.dead_letter.clear();
    for (const auto& pair : vm["dead-letter"].as<std::vector<std::string>>()) {
      const auto eq = pair.find('=');
      const std::string src = pair.substr(0, eq), dst = eq == std::string::npos ? "" : pair.substr(eq + 1);
      if (eq == std::string::npos || jobring::check_name(src) || jobring::check_name(dst) || src == dst)
        return fail("bad dead-letter '" + pair +
                    "': write SRC=DST, two different queue names, e.g. "
                    "orders=orders.dead");
      if (!c.dead_letter.emplace(src, dst).second) {
        std::string why = "dead-letter '";
        why.append(pair).append("': queue '").append(src).append("' already has a dead-letter queue ('");
        why.append(c.dead_letter[src]).append("'); give one per queue");
        return fail(why);
      }
    }
    // A cycle (a=b, b=a) would move the same dead jobs round for ever.
    for (const auto& [src, dst] : c.dead_letter) {
      std::string at = dst;
      for (std::size_t hops = 0; hops <= c.dead_letter.size(); ++hops) {
        if (at == src)
          return fail("dead-letter queues form a cycle through '" + src +
                      "': a dead-letter queue must not have one of its own that leads back");
        const auto next = c.dead_letter.find(at);
        if (next == c.dead_letter.end()) break;
        at = next->second;
      }
    }
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

// The command line into `cli`. False with `err` set on a usage error.
bool parse_command_line(int argc, char** argv, po::variables_map& cli, ConfigError& err) {
  po::options_description all;
  all.add(file_options()).add(cli_only_options());
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
    return false;
  } catch (const po::error& e) {
    err = {kExitUsage, std::string(e.what()) + " (see jobring-janitor --help)"};
    return false;
  }
  return true;
}

// The config file's values into `c`. A missing default file is fine; a
// missing file named with --config is not. False with `err` set.
bool apply_config_file(Config& c, ConfigError& err) {
  struct stat st {};
  const bool exists = ::stat(c.config_file.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    err = {kExitConfig, "config file " + c.config_file + " is not a regular file"};
    return false;
  }
  std::ifstream in;
  if (exists) in.open(c.config_file);
  if (!exists || !in) {
    if (!c.config_explicit && !exists) return true;
    err = {kExitConfig, "cannot read config file " + c.config_file + ": " + errno_text(errno)};
    return false;
  }
  po::variables_map file;
  try {
    po::store(po::parse_config_file(in, file_options()), file);
  } catch (const po::error& e) {
    err = {kExitConfig, "config file " + c.config_file + ": " + e.what()};
    return false;
  }
  if (in.bad()) {
    err = {kExitConfig, "cannot read config file " + c.config_file + ": " + errno_text(errno)};
    return false;
  }
  return apply(file, c, kExitConfig, "config file " + c.config_file + ": ", err);
}

}  // namespace

std::optional<Config> load_config(int argc, char** argv, ConfigError& err, bool& exit_now) {
  exit_now = false;
  po::variables_map cli;
  if (!parse_command_line(argc, argv, cli, err)) return std::nullopt;
  if (cli.count("help")) {
    print_help(std::cout);
    exit_now = true;
    return std::nullopt;
  }
  if (cli.count("version")) {
    std::cout << "jobring-janitor " << tools::kVersion << '\n';
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
  if (!apply_config_file(c, err)) return std::nullopt;
  if (!apply(cli, c, kExitUsage, "", err)) return std::nullopt;
  return c;
}

}  // namespace jobring::janitor
