#include "metrics.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/errno_text.hpp"
#include "common/stats.hpp"
#include "log.hpp"

namespace jobring::janitor {

namespace {

// jobring_FIELD for a gauge; jobring_FIELD_total for a counter (a field whose
// name already ends in _total, like expired_total, keeps it once).
std::string metric_name(std::string_view field, tools::StatKind kind) {
  std::string name = "jobring_" + std::string(field);
  if (kind == tools::StatKind::counter && !field.ends_with("_total")) name += "_total";
  return name;
}

}  // namespace

void MetricsFile::set_path(std::string path) {
  if (path != path_) stale_tmp_removed_ = false;
  path_ = std::move(path);
}

// One group per metric: its TYPE line, then a sample per queue.
std::string MetricsFile::text(std::uint64_t sweeps, double last_sweep_seconds) const {
  std::ostringstream out;
  for (const tools::StatField& field : tools::kStatFields) {
    const std::string name = metric_name(field.name, field.kind);
    out << "# TYPE " << name << (field.kind == tools::StatKind::gauge ? " gauge\n" : " counter\n");
    // Queue names are [A-Za-z0-9._-]: no escaping needed.
    for (const auto& [queue, stats] : queues_)
      out << name << "{queue=\"" << queue << "\"} " << stats.*field.member << '\n';
  }
  out << "# TYPE jobring_janitor_sweeps_total counter\njobring_janitor_sweeps_total " << sweeps << '\n'
      << "# TYPE jobring_janitor_last_sweep_seconds gauge\njobring_janitor_last_sweep_seconds "
      << last_sweep_seconds << '\n';
  return out.str();
}

void MetricsFile::write(std::uint64_t sweeps, double last_sweep_seconds) {
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
  if (!stale_tmp_removed_) remove_stale_tmp();
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text(sweeps, last_sweep_seconds);
    f.flush();
    if (!f) {
      if (!failed_)
        log(Level::warn, "cannot write metrics to %s: %s", tmp.c_str(), tools::errno_text(errno).c_str());
      failed_ = true;
      ::unlink(tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    if (!failed_)
      log(Level::warn, "cannot rename metrics into %s: %s", path_.c_str(), tools::errno_text(errno).c_str());
    failed_ = true;
    ::unlink(tmp.c_str());
    return;
  }
  failed_ = false;
}

// A janitor SIGKILLed between writing its temporary metrics file and the
// rename leaves FILE.tmp.PID behind. Remove those of PIDs that are gone
// (once per metrics file), so that restarts do not pile them up.
void MetricsFile::remove_stale_tmp() {
  stale_tmp_removed_ = true;
  const std::filesystem::path file(path_);
  const std::string prefix = file.filename().string() + ".tmp.";
  std::error_code ec;
  const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const char* digits = name.c_str() + prefix.size();
    char* end = nullptr;
    const long pid = std::strtol(digits, &end, 10);
    if (end == digits || *end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::filesystem::remove(entry.path(), ec);
      log(Level::info, "removed %s, left by a janitor that died while writing it", entry.path().c_str());
    }
  }
}

}  // namespace jobring::janitor
