// The systemd notification protocol (sd_notify(3)): one datagram per message
// to the AF_UNIX socket named by $NOTIFY_SOCKET ('@' = abstract namespace).
// Without $NOTIFY_SOCKET every call is a no-op: the daemon runs as a plain
// foreground process.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace jobring::janitor {

// Sends `message` (e.g. "READY=1"); false if there is no socket or it failed.
bool notify_systemd(const std::string& message);

// Half of $WATCHDOG_USEC (when it is meant for this process), else nullopt.
std::optional<std::chrono::microseconds> watchdog_period();

}  // namespace jobring::janitor
