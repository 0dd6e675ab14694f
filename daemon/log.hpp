// Levelled logs to stderr. Under systemd (JOURNAL_STREAM set) each line
// starts with a syslog priority prefix "<N>", which journald turns into the
// entry's priority.
#pragma once

#include <optional>
#include <string>

namespace jobring::janitor {

enum class Level { error = 3, warn = 4, info = 6, debug = 7 };

// error, warn (or warning), info or debug.
std::optional<Level> parse_level(const std::string& s);
// Messages above `level` are dropped. The default is info.
void set_log_level(Level level);

[[gnu::format(printf, 2, 3)]] void log(Level level, const char* fmt, ...);

}  // namespace jobring::janitor
