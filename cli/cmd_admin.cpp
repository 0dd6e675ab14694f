// The operators' subcommands: create, rm, ls, stat, peek, requeue, move, pause, resume, purge.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "cli.hpp"
#include "common/logind.hpp"
#include "common/signals.hpp"
#include "text.hpp"

namespace jobring::cli {

using namespace std::chrono_literals;

namespace {

// On stderr, so that scripts reading stdout see nothing new. Shared memory only.
void warn_remove_ipc(const std::string& name) {
  if (on_redis()) return;
  const std::string warning = tools::remove_ipc_warning(name, jobring::segment_path(name));
  if (!warning.empty()) std::fprintf(stderr, "jobring: %s\n", warning.c_str());
}

// create's options that only a segment has, given on Redis: a usage error.
void refuse_shm_options_on_redis(const Command& c, const po::variables_map& vm) {
  if (vm.count("group")) refuse_on_redis(c, "--group", "access is the server's (ACLs)");
  if (vm.count("mode")) refuse_on_redis(c, "--mode", "access is the server's (ACLs)");
  if (vm.count("dir"))
    refuse_on_redis(c, "--dir", "the server's persistence (appendonly) decides what a restart keeps");
  for (const char* o : {"sync", "sync-interval"})
    if (!vm[o].defaulted())
      refuse_on_redis(c, std::string("--") + o,
                      "the server's persistence (appendfsync) decides what a crash loses");
  if (!vm["dedup-keys"].defaulted())
    refuse_on_redis(c, "--dedup-keys",
                    "Redis keeps de-duplication keys without a table (--dedup-window still applies)");
}

// create's options (NAME is add_name's).
void add_create_options(Command& c) {
  jobring::Options defaults;
  c.options.add_options()(
      "capacity", po::value<std::string>()->default_value(std::to_string(defaults.capacity)), "job slots")(
      "max-payload", po::value<std::string>()->default_value(std::to_string(defaults.max_payload)),
      "bytes per job")("lease", po::value<std::string>()->default_value("30s"), "default lease")(
      "max-attempts", po::value<std::string>()->default_value("0"),
      "claims before a job is dead-lettered; 0 = unlimited")(
      "group", po::value<std::string>(), "the segment's group (name or gid); makes the mode 0660")(
      "mode", po::value<std::string>(),
      "permission bits of the segment, octal (default 0600, or 0660 with --group)")(
      "dedup-keys", po::value<std::string>()->default_value("0"),
      "entries of the de-duplication key table; 0 = 2 x capacity")(
      "dedup-window", po::value<std::string>()->default_value("5m"),
      "how long a finished job's key is remembered (push --key)")(
      "dir", po::value<std::string>(), "a file-backed queue in this directory (survives a reboot)")(
      "sync", po::value<std::string>()->default_value("none"),
      "with --dir: none, interval or always (what a power cut may lose)")(
      "sync-interval", po::value<std::string>()->default_value("1s"),
      "with --sync interval: the janitor's period");
}

// create --mode: octal permission bits, 1 to 07777; a usage error otherwise.
unsigned mode_arg(const Command& c, const po::variables_map& vm) {
  const std::string mode = vm["mode"].as<std::string>();
  char* end = nullptr;
  const unsigned long m = std::strtoul(mode.c_str(), &end, 8);
  if (mode.empty() || *end != '\0' || m == 0 || m > 07777)
    usage(c.name, "bad --mode '" + mode + "': write octal, e.g. 0600 or 0660");
  return static_cast<unsigned>(m);
}

// create --sync: none, interval or always; a usage error otherwise.
jobring::Options::Sync sync_arg(const Command& c, const po::variables_map& vm) {
  const std::string sync = vm["sync"].as<std::string>();
  if (sync == "none") return jobring::Options::Sync::none;
  if (sync == "interval") return jobring::Options::Sync::interval;
  if (sync == "always") return jobring::Options::Sync::always;
  usage(c.name, "bad --sync '" + sync + "': none, interval or always");
}

// The queue's Options from create's command line, checked in the order the
// options are listed (the first bad one is the one reported). o.group and
// o.dir view `group` and `dir`.
jobring::Options create_options(const Command& c, const po::variables_map& vm, const std::string& name,
                                const std::string& group, const std::string& dir) {
  jobring::Options o;
  o.capacity = count_arg(c, vm, "capacity");
  o.max_payload = count_arg(c, vm, "max-payload");
  o.default_lease = duration_arg(c, vm, "lease", o.default_lease);
  o.max_attempts = count_arg(c, vm, "max-attempts");
  o.dedup_keys = count_arg(c, vm, "dedup-keys");
  o.dedup_window = duration_arg(c, vm, "dedup-window", o.dedup_window);
  if (vm.count("mode")) o.mode = mode_arg(c, vm);
  if (vm.count("group") && group.empty()) usage(c.name, "empty --group: give a group name or gid");
  o.group = group;
  o.dir = dir;
  o.sync = sync_arg(c, vm);
  if (o.sync != jobring::Options::Sync::none && dir.empty() && name.find('/') == std::string::npos)
    usage(c.name, "--sync is for a file-backed queue: give --dir DIR (or the name DIR/NAME)");
  o.sync_interval = duration_arg(c, vm, "sync-interval", o.sync_interval);
  return o;
}

// create's report of the queue it made, on stdout; for a segment in
// memory, the RemoveIPC warning on stderr.
void print_created(const jobring::AnyQueue& q, const jobring::Options& o, const std::string& name,
                   const std::string& group, const std::string& sync) {
  if (on_redis()) {
    std::printf(
        "created queue %s on %s: capacity %u, max payload %u bytes, lease %s, max attempts %u, incarnation "
        "%s\n",
        q.name().c_str(), queue_url().c_str(), o.capacity, o.max_payload,
        jobring::format_duration(o.default_lease).c_str(), o.max_attempts,
        incarnation_text(q.incarnation()).c_str());
    return;
  }
  std::printf(
      "created queue %s: capacity %u, max payload %u bytes, lease %s, max attempts %u, mode %04o%s%s, "
      "incarnation %s\n",
      q.name().c_str(), o.capacity, o.max_payload, jobring::format_duration(o.default_lease).c_str(),
      o.max_attempts, q.options().mode, group.empty() ? "" : ", group ", group.c_str(),
      incarnation_text(q.incarnation()).c_str());
  if (!q.options().dir.empty())
    std::printf("file-backed: %s, sync %s%s; open it as %s\n", jobring::segment_path(q.name()).c_str(),
                sync.c_str(),
                o.sync == jobring::Options::Sync::interval
                    ? (" every " + jobring::format_duration(o.sync_interval)).c_str()
                    : "",
                q.name().c_str());
  else
    warn_remove_ipc(name);
}

}  // namespace

int cmd_create(const std::vector<std::string>& args) {
  Command c{
      "create",
      "NAME [--capacity N] [--max-payload BYTES] [--lease D] [--max-attempts N] [--group G]\n"
      "       [--mode OCTAL] [--dedup-keys N] [--dedup-window D] [--dir DIR [--sync POLICY]]",
      "Creates a queue. Fails if it exists.\n\n"
      "Who may use it: opening a queue (push, claim, ack, ...) needs read and write permission on\n"
      "its segment, looking at it (stat, peek, ls) read permission. By default only you may do\n"
      "either (mode 0600). To share it with the janitor (which runs as user and group jobring)\n"
      "and with other users, give it a group: --group jobring makes it group jobring, mode 0660,\n"
      "and every member of the group may use it (add a user with usermod -aG jobring USER, who\n"
      "then logs in again). You must be a member of the group yourself, or root.\n\n"
      "A queue in memory (/dev/shm) is gone at reboot. --dir DIR makes a file-backed queue that\n"
      "survives one: its segment is DIR/jobring.NAME, and its name is DIR/NAME everywhere else\n"
      "(jobring push /var/lib/jobring/orders ...). --sync says what a power cut may lose: none\n"
      "(the page cache: jobs the kernel had not written back), interval (the janitor syncs every\n"
      "--sync-interval), always (nothing whose push returned; each push and ack waits for the disk).\n\n"
      "On Redis (--url redis://...) the queue is on the server: --group, --mode, --dir, --sync and\n"
      "--dedup-keys are for shared memory and refused there (access is the server's: ACLs; the\n"
      "server's persistence decides what a crash loses; keys need no table)."};
  add_create_options(c);
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  refuse_shm_options_on_redis(c, vm);
  // The Options view these two: they outlive the queue's creation.
  const std::string group = vm.count("group") ? vm["group"].as<std::string>() : "";
  const std::string dir = vm.count("dir") ? vm["dir"].as<std::string>() : "";
  const jobring::Options o = create_options(c, vm, name, group, dir);
  auto q = jobring::AnyQueue::create(queue_url(), name, o, redis_options());
  print_created(q, o, name, group, vm["sync"].as<std::string>());
  return kOk;
}

int cmd_rm(const std::vector<std::string>& args) {
  Command c{"rm", "NAME",
            "Removes a queue. Processes that have it open keep it until they close it (on Redis: its\n"
            "jobs and leases are deleted at once, and handles on it find it gone)."};
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  if (!jobring::AnyQueue::remove(queue_url(), name, redis_options()))
    throw Exit{kError, "jobring: no queue named '" + name + "' (see `jobring ls`)"};
  return kOk;
}

int cmd_ls(const std::vector<std::string>& args) {
  Command c{"ls", "[--json] [--dir DIR]...",
            "Lists every jobring queue in memory (/dev/shm), and the file-backed ones in each --dir DIR,\n"
            "one line each. On Redis: every queue on the server (--dir is for shared memory)."};
  c.options.add_options()("json", "one JSON array")("dir", po::value<std::vector<std::string>>(),
                                                    "also list the file-backed queues in DIR (repeatable)");
  const auto vm = parse(c, args);
  const bool json = vm.count("json") > 0;
  if (vm.count("dir")) refuse_on_redis(c, "--dir", "it lists the queues on the server, all of them");
  auto names = jobring::AnyQueue::list(queue_url(), redis_options());
  if (vm.count("dir")) {
    for (const std::string& dir : vm["dir"].as<std::vector<std::string>>()) {
      std::error_code ec;
      auto in_dir = jobring::Queue::list(dir, ec);
      if (ec) throw Exit{kError, "jobring: cannot list " + dir + ": " + ec.message()};
      names.insert(names.end(), in_dir.begin(), in_dir.end());
    }
  }
  // The name column is as wide as the longest name (up to 64 characters), so
  // the counts stay in their columns.
  int width = 4;
  for (const auto& name : names) width = std::max(width, static_cast<int>(name.size()));
  if (json)
    std::printf("[");
  else
    std::printf("%-*s %9s %8s %8s %8s %8s %8s\n", width, "NAME", "CAPACITY", "READY", "DELAYED", "LEASED",
                "DEAD", "FREE");
  bool first = true;
  for (const auto& name : names) {
    std::error_code ec;
    auto q = Inspected::open(name, ec);  // on shm read-only: needs read permission only
    std::optional<Snapshot> snap;
    if (q) {
      const Stats s = q->stats(ec);
      if (!ec) snap = Snapshot{name, q->options(), q->incarnation(), s};
    }
    if (json) {
      std::printf("%s", first ? "" : ",");
      if (snap)
        std::printf("%s", stats_json(*snap).c_str());
      else
        std::printf("{\"name\":%s,\"error\":%s}", json_string(name).c_str(),
                    json_string(ec.message()).c_str());
    } else if (snap) {
      const Stats& s = snap->stats;
      std::printf("%-*s %9u %8llu %8llu %8llu %8llu %8llu\n", width, name.c_str(), snap->options.capacity,
                  static_cast<unsigned long long>(s.ready), static_cast<unsigned long long>(s.delayed),
                  static_cast<unsigned long long>(s.leased) + static_cast<unsigned long long>(s.expired),
                  static_cast<unsigned long long>(s.dead), static_cast<unsigned long long>(s.free));
    } else {
      std::printf("%-*s (cannot open: %s)\n", width, name.c_str(), ec.message().c_str());
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
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const milliseconds watch = duration_arg(c, vm, "watch", 0ms);
  const auto q = Inspected::open(name);  // on shm read-only: needs read permission only
  warn_remove_ipc(name);
  (void)tools::install_stop_handlers();
  for (;;) {
    if (vm.count("json"))
      std::printf("%s\n", stats_json(snapshot(name, q)).c_str());
    else
      print_stats(snapshot(name, q));
    std::fflush(stdout);
    if (watch.count() == 0) return kOk;
    const auto until = std::chrono::steady_clock::now() + watch;
    while (!tools::stop_requested() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(20ms);
    if (tools::stop_requested()) return kOk;
  }
}

int cmd_peek(const std::vector<std::string>& args) {
  Command c{"peek", "NAME [--state ready|delayed|leased|dead] [--limit N] [--json]",
            "Shows jobs in one state without claiming them."};
  c.options.add_options()("state", po::value<std::string>()->default_value("ready"),
                          "ready, delayed, leased or dead")(
      "limit", po::value<std::string>()->default_value("20"), "at most N jobs")("json", "one JSON array");
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const auto state = choice_arg<jobring::JobState>(c, vm, "state",
                                                   {{"ready", jobring::JobState::ready},
                                                    {"delayed", jobring::JobState::delayed},
                                                    {"leased", jobring::JobState::leased},
                                                    {"dead", jobring::JobState::dead}},
                                                   "ready, delayed, leased or dead");
  const std::uint32_t limit = count_arg(c, vm, "limit");
  const auto q = Inspected::open(name);  // on shm read-only: needs read permission only
  const auto jobs = q.peek(state, limit);
  const bool json = vm.count("json") > 0;
  if (json) std::printf("[");
  bool first = true;
  for (const auto& j : jobs) {
    if (json)
      std::printf("%s%s", first ? "" : ",", job_json(j).c_str());
    else
      std::printf("%s\n", job_line(j).c_str());
    first = false;
  }
  if (json) std::printf("]\n");
  return kOk;
}

int cmd_requeue(const std::vector<std::string>& args) {
  Command c{"requeue", "NAME (--dead | JOB_ID...)",
            "Moves dead jobs back to ready, with their attempts reset."};
  c.options.add_options()("dead", "every dead job");
  add_name(c);
  c.hidden.add_options()("ids", po::value<std::vector<std::uint64_t>>());
  c.positional.add("ids", -1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const bool all = vm.count("dead") > 0;
  const bool ids = vm.count("ids") > 0;
  if (all == ids) usage(c.name, "give either --dead or one or more JOB_IDs");
  auto q = open_queue(name);
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

namespace {

// pause / resume: one queue, and what changed.
int pause_or_resume(const std::vector<std::string>& args, bool pause) {
  Command c{
      pause ? "pause" : "resume", "NAME",
      pause
          ? "Pauses queue NAME: pushes, acks, releases and extends go on, but no claim gets a job (workers\n"
            "sleep) until `jobring resume NAME`. For an incident: stop the jobs that break something while\n"
            "it is fixed. The queue stays paused across restarts of every process. `stat`, `top` and the\n"
            "metrics (jobring_paused) show it."
          : "Resumes queue NAME after `jobring pause`: claims get jobs again, and blocked workers wake."};
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  auto q = open_queue(name);
  const bool changed = pause ? q.pause() : q.resume();
  std::printf("queue '%s' %s%s\n", name.c_str(), changed ? "" : "was already ", pause ? "paused" : "running");
  return kOk;
}

}  // namespace

int cmd_pause(const std::vector<std::string>& args) { return pause_or_resume(args, true); }
int cmd_resume(const std::vector<std::string>& args) { return pause_or_resume(args, false); }

int cmd_move(const std::vector<std::string>& args) {
  Command c{"move", "NAME TO [--ready] [--limit N]",
            "Moves the dead jobs of queue NAME into queue TO; prints how many moved.\n"
            "Without --ready they stay dead in TO (a dead-letter queue), with their payload, attempts\n"
            "and why they died, and NAME has room again. With --ready they arrive as new ready jobs (a\n"
            "redrive): `jobring move orders.dead orders --ready` after the cause is fixed. Crash-safe:\n"
            "a move cut short loses no job, and running it again does not double one. Exits 3 if TO\n"
            "filled up before all moved. Both queues on one backend (on Redis: any servers of the URL)."};
  c.options.add_options()("ready", "arrive as ready jobs (attempts reset), not dead")(
      "limit", po::value<std::string>(), "at most N jobs");
  add_name(c);
  c.hidden.add_options()("to", po::value<std::string>());
  c.positional.add("to", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  if (!vm.count("to")) usage(c.name, "missing the queue TO to move the dead jobs into");
  const std::string to_name = vm["to"].as<std::string>();
  if (auto ec = jobring::check_name(to_name))
    usage(c.name, "bad queue name '" + to_name + "': " + ec.message());
  if (to_name == name) usage(c.name, "NAME and TO are one queue: give another queue to move into");
  jobring::MoveOptions o;
  o.as_ready = vm.count("ready") > 0;
  if (vm.count("limit")) {
    o.limit = count_arg(c, vm, "limit");
    if (o.limit == 0) usage(c.name, "--limit must be at least 1 (leave it out to move every dead job)");
  }
  auto from = open_queue(name);
  auto to = open_queue(to_name);
  const jobring::MoveResult r = from.move_dead(to, o);
  std::printf("%zu\n", r.moved);
  if (r.too_large > 0)
    std::fprintf(stderr,
                 "jobring move: %zu dead job%s stayed in '%s': larger than the max_payload of '%s' (`jobring "
                 "stat %s` shows it; create a queue with a larger --max-payload)\n",
                 r.too_large, r.too_large == 1 ? "" : "s", name.c_str(), to_name.c_str(), to_name.c_str());
  if (r.left > 0)
    std::fprintf(
        stderr,
        "jobring move: %zu dead job%s stayed in '%s' for now: being moved by another mover, or "
        "quarantined with a corrupt length (`jobring peek %s --state dead` shows them; purge those)\n",
        r.left, r.left == 1 ? "" : "s", name.c_str(), name.c_str());
  if (r.target_full) {
    std::fprintf(stderr,
                 "jobring move: queue '%s' is full; the rest stayed dead in '%s' (make room in '%s', or move "
                 "into a larger queue, and run the move again)\n",
                 to_name.c_str(), name.c_str(), to_name.c_str());
    return kNothing;
  }
  return r.too_large > 0 ? kError : kOk;
}

int cmd_purge(const std::vector<std::string>& args) {
  Command c{"purge", "NAME (--state ready|delayed|dead | --all)",
            "Deletes jobs that are not under lease; prints how many. Say which: --state picks one state,\n"
            "--all takes every job not under lease and also resets corrupt slots."};
  c.options.add_options()("state", po::value<std::string>(), "ready, delayed or dead (all = --all)")(
      "all", "every job not under lease, and corrupt slots");
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  // No default: a bare `purge NAME` used to empty the queue, one typo away
  // from `peek NAME`.
  if (vm.count("state") == vm.count("all"))
    usage(c.name, vm.count("all") ? "give --state or --all, not both"
                                  : "say what to delete: --state ready|delayed|dead, or --all for every job "
                                    "not under lease");
  const auto what = vm.count("all")
                        ? jobring::PurgeWhat::all
                        : choice_arg<jobring::PurgeWhat>(c, vm, "state",
                                                         {{"ready", jobring::PurgeWhat::ready},
                                                          {"delayed", jobring::PurgeWhat::delayed},
                                                          {"dead", jobring::PurgeWhat::dead},
                                                          {"all", jobring::PurgeWhat::all}},
                                                         "ready, delayed, dead or all");
  auto q = open_queue(name);
  std::printf("%zu\n", q.purge(what));
  return kOk;
}

}  // namespace jobring::cli
