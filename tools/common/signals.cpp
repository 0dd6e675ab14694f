#include "common/signals.hpp"

#include <signal.h>

#include <csignal>

#include "jobring/queue.hpp"

namespace jobring::tools {

namespace {

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_reload = 0;

extern "C" void on_stop(int) {
  g_stop = 1;
  jobring::interrupt_waits();  // async-signal-safe
}
extern "C" void on_reload(int) { g_reload = 1; }

bool install(int sig, void (*handler)(int)) noexcept {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART
  sa.sa_handler = handler;
  return ::sigaction(sig, &sa, nullptr) == 0;
}

}  // namespace

bool install_stop_handlers() noexcept { return install(SIGTERM, on_stop) && install(SIGINT, on_stop); }
bool stop_requested() noexcept { return g_stop != 0; }

bool install_reload_handler() noexcept { return install(SIGHUP, on_reload); }
bool reload_requested() noexcept { return g_reload != 0; }
void clear_reload_request() noexcept { g_reload = 0; }

}  // namespace jobring::tools
