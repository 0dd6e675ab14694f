// `jobring work NAME -- CMD`: one process holds the leases (jobring::Worker),
// a child process per job does it.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "common/errno_text.hpp"
#include "jobring/worker.hpp"

namespace jobring::cli {

using namespace std::chrono_literals;

namespace {

// What a command needs, built before fork(): the child of a multi-threaded
// process may make only async-signal-safe calls until it execs.
struct CommandLine {
  std::vector<std::string> args;
  std::vector<char*> argv;  // into args, null-terminated
};

// A memfd holding the job's payload, positioned at its start; -1 with errno
// set on failure. A command that does not read its input never blocks us.
int payload_fd(const jobring::Job& job) {
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
  return fd;
}

// The command's environment: ours, with the job's id, attempt and queue.
std::vector<std::string> job_environment(const jobring::Job& job, const std::string& queue) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (kv.starts_with("JOBRING_JOB_ID=") || kv.starts_with("JOBRING_ATTEMPT=") ||
        kv.starts_with("JOBRING_QUEUE="))
      continue;
    env.emplace_back(kv);
  }
  env.push_back("JOBRING_JOB_ID=" + std::to_string(job.id));
  env.push_back("JOBRING_ATTEMPT=" + std::to_string(job.attempt));
  env.push_back("JOBRING_QUEUE=" + queue);
  return env;
}

// In the forked child: async-signal-safe calls only, then exec. If the exec
// fails, its errno goes to `report` and the child exits 127.
[[noreturn]] void exec_in_child(const CommandLine& cmd, char* const* envp, int stdin_fd, int report,
                                pid_t parent) {
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
  ::dup2(stdin_fd, STDIN_FILENO);
  ::execvpe(cmd.argv[0], cmd.argv.data(), envp);
  const int e = errno;
  (void)!::write(report, &e, sizeof e);
  ::_exit(127);
}

// Spawns CMD with the payload on stdin and the job in its environment, in
// its own process group. Returns the pid, or -1 with errno set. If the
// command cannot be executed, `exec_errno` gets the reason (reported through
// a close-on-exec pipe) and the child exits 127.
pid_t spawn(const CommandLine& cmd, const jobring::Job& job, const std::string& queue, pid_t parent,
            int& exec_errno) {
  exec_errno = 0;
  const int fd = payload_fd(job);
  if (fd < 0) return -1;
  std::vector<std::string> env = job_environment(job, queue);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid == 0) exec_in_child(cmd, envp.data(), fd, report[1], parent);
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
// handler's thread). A function-local thread_local: GCC 12 does not
// initialise the second thread's copy of a thread_local used from a lambda
// defined in another function (a crash of `work --concurrency 2`).
std::string& status_text() {
  thread_local std::string text;
  return text;
}

// The command line of `jobring work`, checked.
struct WorkPlan {
  std::vector<std::string> names;  // strict priority in this order, unless weights are given
  std::vector<unsigned> weights;
  CommandLine cmd;
  unsigned concurrency = 1;
  std::uint64_t max_jobs = 0;
  milliseconds idle{0};
  milliseconds grace{0};
  milliseconds backoff{0};
  milliseconds max_backoff{0};
};

void add_work_options(Command& c) {
  c.options.add_options()("lease", po::value<std::string>(),
                          "lease length (default: the queue's); extended every third of it")(
      "concurrency", po::value<std::string>()->default_value("1"), "jobs at once")(
      "max-jobs", po::value<std::string>()->default_value("0"),
      "exit after N claims have finished (retries count); 0 = no limit")(
      "wait", po::value<std::string>(), "exit 0 when no job came for D; default: wait for ever")(
      "grace", po::value<std::string>(), "after a signal, time running commands get; default: no limit")(
      "backoff", po::value<std::string>()->default_value("1s"), "first retry delay after a failure")(
      "max-backoff", po::value<std::string>()->default_value("5m"), "longest retry delay")(
      "weights", po::value<std::string>(),
      "W1,W2,...: one per queue; each claim picks among the queues with jobs in proportion to these "
      "(default: strict priority in the order named)");
  c.hidden.add_options()("names", po::value<std::vector<std::string>>());
  c.positional.add("names", -1);
}

// Where execvpe would find `program`, or the reason it would not: checked
// once at startup, so that `jobring work Q -- /nonexistent` (or a typo)
// fails before claiming anything instead of burning every job's attempts.
// (The command can still vanish later; then each job is retried as before.)
std::string find_program(const std::string& program) {
  auto runnable = [](const std::string& path) -> int {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) return EISDIR;
    return ::access(path.c_str(), X_OK) == 0 ? 0 : errno;
  };
  if (program.find('/') != std::string::npos) {
    const int e = runnable(program);
    return e == 0 ? std::string() : tools::errno_text(e);
  }
  const char* env = std::getenv("PATH");
  const std::string path = env != nullptr ? env : "/bin:/usr/bin";
  int last = ENOENT;
  for (std::size_t begin = 0; begin <= path.size();) {
    std::size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string candidate = end == begin ? std::string(".") : path.substr(begin, end - begin);
    candidate.append("/").append(program);
    const int e = runnable(candidate);
    if (e == 0) return {};
    if (e != ENOENT && e != ENOTDIR) last = e;  // like execvp: EACCES wins over "not found"
    begin = end + 1;
  }
  return last == ENOENT ? "not found in PATH (" + path + ")" : tools::errno_text(last);
}

// Everything after "--" is the command; the rest goes to `vm`.
WorkPlan parse_work(Command& c, const Args& args_in, po::variables_map& vm) {
  WorkPlan plan;
  std::vector<std::string> args;
  bool in_cmd = false;
  for (const auto& a : args_in) {
    if (!in_cmd && a == "--") {
      in_cmd = true;
      continue;
    }
    (in_cmd ? plan.cmd.args : args).push_back(a);
  }
  vm = parse(c, args);
  if (!vm.count("names")) usage(c.name, "missing the queue NAME");
  plan.names = vm["names"].as<std::vector<std::string>>();
  for (const auto& n : plan.names)
    if (auto ec = jobring::check_name(n)) usage(c.name, "bad queue name '" + n + "': " + ec.message());
  for (std::size_t i = 0; i < plan.names.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (plan.names[i] == plan.names[j]) usage(c.name, "queue '" + plan.names[i] + "' is named twice");
  if (plan.names.size() > jobring::Queue::kMaxClaimAny)
    usage(c.name, "at most " + std::to_string(jobring::Queue::kMaxClaimAny) + " queues");
  if (vm.count("weights")) {
    const std::string text = vm["weights"].as<std::string>();
    for (std::size_t at = 0; at <= text.size();) {
      std::size_t end = text.find(',', at);
      if (end == std::string::npos) end = text.size();
      const std::string w = text.substr(at, end - at);
      if (w.empty() || w.size() > 4 || w.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(w) < 1 || std::stoul(w) > 1000)
        usage(c.name,
              "bad --weights '" + text + "': whole numbers from 1 to 1000, one per queue, e.g. 5,3,1");
      plan.weights.push_back(static_cast<unsigned>(std::stoul(w)));
      at = end + 1;
    }
    if (plan.weights.size() != plan.names.size())
      usage(c.name, "--weights gives " + std::to_string(plan.weights.size()) + " weights for " +
                        std::to_string(plan.names.size()) + " queues: give one per queue");
  }
  if (plan.cmd.args.empty()) usage(c.name, "missing the command: jobring work NAME... -- CMD [ARG...]");
  if (const std::string why = find_program(plan.cmd.args[0]); !why.empty())
    throw Exit{kError, "jobring work: cannot run '" + plan.cmd.args[0] + "': " + why +
                           "; no job was claimed (fix the command, or give its full path)"};
  for (auto& a : plan.cmd.args) plan.cmd.argv.push_back(a.data());
  plan.cmd.argv.push_back(nullptr);
  plan.concurrency = count_arg(c, vm, "concurrency");
  if (plan.concurrency < 1 || plan.concurrency > 1024) usage(c.name, "--concurrency must be from 1 to 1024");
  plan.max_jobs = count_arg(c, vm, "max-jobs");
  plan.idle = duration_arg(c, vm, "wait", 0ms);
  plan.grace = vm.count("grace") ? duration_arg(c, vm, "grace", 0ms) : jobring::kForever;
  plan.backoff = duration_arg(c, vm, "backoff", 1s);
  plan.max_backoff = duration_arg(c, vm, "max-backoff", 5min);
  return plan;
}

// The Worker's handler and hooks: runs the command for each job and keeps
// track of which command runs which job, so that a lost or abandoned lease
// can be reported or its command stopped.
class CommandRunner {
 public:
  explicit CommandRunner(const WorkPlan& plan) : plan_(plan), running_(plan.concurrency) {}

  // The Worker that runs this, while it runs (nullptr after).
  void set_worker(jobring::Worker* w) { worker_ = w; }
  [[nodiscard]] bool spawn_failed() const { return spawn_failed_.load(); }

  jobring::Outcome run(const jobring::Job& job, jobring::JobContext& ctx) {
    Running& slot = running_[ctx.thread_index()];
    int exec_errno = 0;
    const pid_t pid = spawn(plan_.cmd, job, ctx.any_queue().name(), self_, exec_errno);
    if (pid < 0) {
      std::fprintf(stderr, "jobring work: cannot start %s: %s\n", plan_.cmd.args[0].c_str(),
                   tools::errno_text(errno).c_str());
      status_text() = "could not start";
      spawn_failed_.store(true);
      worker_->request_stop();
      return jobring::Outcome::retry_after(std::min(plan_.backoff, plan_.max_backoff));
    }
    slot.pid.store(pid);
    slot.job.store(job.id);
    if (ctx.abandoned()) ::kill(-pid, SIGTERM);  // on_abandon came before we stored the pid
    if (exec_errno != 0)
      std::fprintf(stderr, "jobring work: cannot run %s: %s\n", plan_.cmd.args[0].c_str(),
                   tools::errno_text(exec_errno).c_str());
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    slot.job.store(0);
    slot.pid.store(0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return jobring::Outcome::ack();
    status_text() = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
    // Kept with the job if this was its last attempt (peek --state dead).
    return jobring::Outcome::retry(plan_.cmd.args[0] + ": " + status_text());
  }

  void on_lease_lost(const jobring::Job& job) const {
    if (running_pid(job.id) != 0)
      std::fprintf(stderr,
                   "jobring work: job %llu: lease lost while running (another worker may run it too)\n",
                   static_cast<unsigned long long>(job.id));
  }

  // Second signal or end of the grace period: the job is back in the queue;
  // stop its command (its process group).
  void on_abandon(const jobring::Job& job) const {
    if (const pid_t pid = running_pid(job.id); pid > 0) ::kill(-pid, SIGTERM);
  }

 private:
  // The command running for each handler thread.
  struct Running {
    std::atomic<jobring::JobId> job{0};
    std::atomic<pid_t> pid{0};
  };

  [[nodiscard]] pid_t running_pid(jobring::JobId id) const {
    for (const auto& r : running_)
      if (r.job.load() == id) return r.pid.load();
    return 0;
  }

  const WorkPlan& plan_;
  std::vector<Running> running_;
  std::atomic<bool> spawn_failed_{false};
  const pid_t self_ = ::getpid();
  jobring::Worker* worker_ = nullptr;
};

// on_done: a failed attempt, and a lease lost on the way, go to stderr.
void report_done(const jobring::Job& job, const jobring::JobReport& r) {
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
        std::fprintf(stderr, "jobring work: job %llu attempt %u failed (%s); the lease was lost meanwhile\n",
                     id, job.attempt, status_text().c_str());
      break;
    case jobring::JobResult::unconfirmed:
      std::fprintf(stderr,
                   "jobring work: job %llu: the final call got no answer from the server (%s); if it did not "
                   "take effect, the job comes back when its lease runs out\n",
                   id, r.backend_error.message().c_str());
      break;
    default:
      break;
  }
}

jobring::WorkerOptions worker_options(const WorkPlan& plan, milliseconds lease, CommandRunner& runner) {
  jobring::WorkerOptions o;
  o.lease = lease;
  o.backoff = {.base = std::min(plan.backoff, plan.max_backoff),
               .cap = plan.max_backoff,
               .jitter = jobring::Jitter::equal};
  o.grace = plan.grace;
  o.threads = plan.concurrency;
  o.weights = plan.weights;
  o.max_jobs = plan.max_jobs;
  o.idle_exit = plan.idle;
  o.hooks.on_lease_lost = [&runner](const jobring::Job& job) { runner.on_lease_lost(job); };
  o.hooks.on_abandon = [&runner](const jobring::Job& job) { runner.on_abandon(job); };
  o.hooks.on_done = report_done;
  return o;
}

// The Worker over `queues` (all on one backend: shared memory or one Redis
// server), running `runner` for each job, until it stops.
void serve(std::vector<jobring::AnyQueue>& queues, CommandRunner& runner, jobring::WorkerOptions options) {
  std::vector<std::reference_wrapper<jobring::AnyQueue>> served(queues.begin(), queues.end());
  jobring::Worker worker(
      served, [&runner](const jobring::Job& job, jobring::JobContext& ctx) { return runner.run(job, ctx); },
      std::move(options));
  runner.set_worker(&worker);
  jobring::Worker::install_signal_handlers();
  (void)worker.run();
  runner.set_worker(nullptr);
}

}  // namespace

int cmd_work(const Args& args) {
  Command c{
      "work",
      "NAME... [--weights W,...] [--lease D] [--concurrency N] [--max-jobs N] [--wait D] [--grace D] -- CMD "
      "[ARG...]",
      "Turns CMD into a worker: for each job it runs CMD with the payload on stdin and JOBRING_JOB_ID,\n"
      "JOBRING_ATTEMPT and JOBRING_QUEUE in the environment, holding a lease owned by this process and\n"
      "extending it while\n"
      "CMD runs. Exit 0: ack. Otherwise: release with exponential backoff (--backoff doubled per attempt,\n"
      "up to --max-backoff, with jitter between half and all of it), so a job that keeps failing ends\n"
      "dead after the queue's max_attempts. CMD runs in its own process group, and dies if this\n"
      "process dies.\n"
      "SIGTERM/SIGINT: stop claiming, let running commands finish (for at most --grace), exit 0; a\n"
      "second signal (or the end of --grace) releases their jobs, sends them SIGTERM, and exits. If this\n"
      "process is killed, the janitor sees the owner dead and its jobs come back at once (or when their\n"
      "leases run out).\n"
      "Several queues (jobring work urgent normal bulk -- CMD): strict priority in the order named (a\n"
      "queue is served only while the ones before it are empty), or with --weights 5,3,1 each claim\n"
      "picks among the queues that have jobs in proportion to the weights, so none starves. With\n"
      "nothing to do it sleeps on all of them at once (on Redis: polls them every 100 ms).\n"
      "On Redis (--url, JOBRING_URL): the same, with leases owned by host:pid (no janitor\n"
      "reclaims them early: a killed worker's job comes back when its lease runs out). A call the\n"
      "server did not answer is retried (claims with backoff, extensions until the lease's deadline)."};
  add_work_options(c);
  po::variables_map vm;
  const WorkPlan plan = parse_work(c, args, vm);
  std::vector<jobring::AnyQueue> queues;
  queues.reserve(plan.names.size());
  for (const auto& n : plan.names) queues.push_back(open_queue(n));
  // 0: each queue's own default_lease, which must be as long as --lease
  // would have to be (extended every third of it).
  const milliseconds lease = duration_arg(c, vm, "lease", 0ms);
  if (vm.count("lease") && (lease.count() < 3 || lease > jobring::kMaxLease))
    usage(c.name, "--lease must be from 3ms to 7 days");
  for (const auto& q : queues)
    if (!vm.count("lease") && q.options().default_lease.count() < 3)
      usage(c.name, "queue '" + q.name() + "' has a default lease under 3ms: give --lease (3ms to 7 days)");

  CommandRunner runner(plan);
  serve(queues, runner, worker_options(plan, lease, runner));
  return runner.spawn_failed() ? kError : kOk;
}

}  // namespace jobring::cli
