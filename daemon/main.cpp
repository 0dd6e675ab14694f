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
// Structure: signals only set flags (common/signals.hpp); the main loop here
// sleeps, then sweeps (janitor.cpp), reloads (config.cpp), notifies systemd
// (sd_notify.cpp) and writes metrics (metrics.cpp).

#include <poll.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>

#include "common/errno_text.hpp"
#include "common/signals.hpp"
#include "config.hpp"
#include "janitor.hpp"
#include "jobring/duration.hpp"
#include "log.hpp"
#include "sd_notify.hpp"

using namespace jobring::janitor;
using Clock = std::chrono::steady_clock;

namespace {

// SIGTERM, SIGINT and SIGHUP stay blocked except while we sleep: ppoll
// unblocks them atomically with going to sleep, so a signal that arrives
// during a sweep (or between checking the flags and sleeping) is delivered
// at the start of the sleep and ends it at once, instead of being noticed an
// interval later.
sigset_t g_sleep_mask;

bool install_signals() {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  if (!jobring::tools::install_stop_handlers() || !jobring::tools::install_reload_handler() ||
      !install_sigbus_guard() || ::sigaction(SIGPIPE, &ignore, nullptr) != 0)
    return false;
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

// SIGHUP: the command line and the config file again; the old configuration
// stays if the new one is bad.
void reload(Janitor& janitor, int argc, char** argv) {
  jobring::tools::clear_reload_request();
  notify_systemd("RELOADING=1");
  ConfigError err{};
  bool ignored = false;
  if (auto fresh = load_config(argc, argv, err, ignored)) {
    set_log_level(fresh->level);
    janitor.set_config(std::move(*fresh));
    log(Level::info, "configuration reloaded");
  } else {
    log(Level::error, "reload failed, keeping the old configuration: %s", err.message.c_str());
  }
  notify_systemd("READY=1");
}

// Sweeps every interval, pings the watchdog every half of its period, and
// reloads on SIGHUP, until SIGTERM or SIGINT.
void run(Janitor& janitor, int argc, char** argv) {
  const auto watchdog = watchdog_period();
  auto last_watchdog = Clock::now();
  auto last_status = last_watchdog;
  if (watchdog) notify_systemd("WATCHDOG=1");
  auto next_sweep = Clock::now() + janitor.config().interval;
  while (!jobring::tools::stop_requested()) {
    // Sleep until the next sweep, or the next watchdog ping if that is sooner.
    auto wake = next_sweep;
    if (watchdog)
      wake = std::min(wake, last_watchdog + std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog));
    const auto now0 = Clock::now();
    if (wake > now0 && !jobring::tools::reload_requested() && !jobring::tools::stop_requested())
      sleep_for(std::chrono::ceil<std::chrono::milliseconds>(wake - now0));
    if (jobring::tools::stop_requested()) break;
    if (watchdog && Clock::now() - last_watchdog >= *watchdog) {
      notify_systemd("WATCHDOG=1");
      last_watchdog = Clock::now();
    }
    if (Clock::now() < next_sweep && !jobring::tools::reload_requested()) continue;
    next_sweep = Clock::now() + janitor.config().interval;
    if (jobring::tools::reload_requested()) reload(janitor, argc, argv);
    janitor.sweep_all();
    const auto now = Clock::now();
    if (now - last_status >= std::chrono::seconds{1}) {  // (not 1s: cppcheck 2.10 stops at that literal)
      notify_systemd(status_line(janitor));
      last_status = now;
    }
  }
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
  set_log_level(config->level);
  if (!install_signals()) {
    log(Level::error, "cannot install signal handlers: %s", jobring::tools::errno_text(errno).c_str());
    return kExitFailure;
  }

  Janitor janitor(*config);
  log(Level::info, "started: %s, sweep every %s%s", config->queues.empty() ? "all queues" : "listed queues",
      jobring::format_duration(config->interval).c_str(),
      config->metrics_file.empty() ? "" : (", metrics to " + config->metrics_file).c_str());
  janitor.sweep_all();
  if (config->once) return kExitOk;
  notify_systemd("READY=1\n" + status_line(janitor));
  run(janitor, argc, argv);
  notify_systemd("STOPPING=1");
  log(Level::info, "stopping: %s", status_line(janitor).c_str() + 7);
  return kExitOk;
}
