#include "log.hpp"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace jobring::janitor {

namespace {
Level g_level = Level::info;
const bool g_journal = std::getenv("JOURNAL_STREAM") != nullptr;
}  // namespace

std::optional<Level> parse_level(const std::string& s) {
  if (s == "error") return Level::error;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "info") return Level::info;
  if (s == "debug") return Level::debug;
  return std::nullopt;
}

void set_log_level(Level level) { g_level = level; }

void log(Level level, const char* fmt, ...) {
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

}  // namespace jobring::janitor
