// Signal handlers that only set flags: the main loop (or a wait that the
// signal interrupts) looks at the flags and does the work.
//
// The handlers are installed without SA_RESTART, so a signal also cuts short
// a sleep (ppoll, nanosleep) in progress.
#pragma once

namespace jobring::tools {

// SIGTERM and SIGINT set the stop flag and call jobring::interrupt_waits(),
// so a claim or push waiting in this process returns `interrupted`. False
// (errno set) if sigaction failed.
bool install_stop_handlers() noexcept;
// True once SIGTERM or SIGINT has arrived.
bool stop_requested() noexcept;

// SIGHUP sets the reload flag. False (errno set) if sigaction failed.
bool install_reload_handler() noexcept;
// True if SIGHUP has arrived since the last clear_reload_request().
bool reload_requested() noexcept;
void clear_reload_request() noexcept;

}  // namespace jobring::tools
