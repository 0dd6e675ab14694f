#include "metrics.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <string_view>

#include "common/errno_text.hpp"
#include "common/stats.hpp"
#include "log.hpp"

namespace jobring::janitor {

namespace {

// A Stats field as a Prometheus metric: its name and how to scale its value.
struct Metric {
  std::string name;
  double scale = 1;
};

// Prometheus' naming conventions on a Stats field's name: jobring_FIELD for a
// gauge, jobring_FIELD_total for a counter (a field that already ends in
// _total, like expired_total, keeps one), and base units: FIELD_ms is
// jobring_FIELD_seconds, its value divided by 1000.
Metric metric_of(const tools::StatField& field) {
  std::string_view base = field.name;
  double scale = 1;
  if (base.ends_with("_ms")) {
    base.remove_suffix(3);
    scale = 0.001;
  }
  std::string name = "jobring_" + std::string(base);
  if (scale != 1) name += "_seconds";
  if (field.kind == tools::StatKind::counter && !base.ends_with("_total")) name += "_total";
  return {name, scale};
}

// The # HELP and # TYPE lines of one metric.
void describe(std::ostream& out, const std::string& name, std::string_view help, const char* type) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// A label value in the text format: backslash, double quote and newline escaped.
std::string label_value(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\' || c == '"')
      out.push_back('\\');
    else if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

void MetricsFile::add(const std::string& queue, const Stats& stats) {
  queues_.emplace_back("queue=\"" + label_value(queue) + '"', stats);
}

void MetricsFile::add_redis(const std::string& url, const std::string& queue, const Stats& stats) {
  queues_.emplace_back(
      "queue=\"" + label_value(queue) + "\",backend=\"redis\",server=\"" + label_value(url) + '"', stats);
}

void MetricsFile::set_path(std::string path) {
  if (path != path_) stale_tmp_removed_ = false;
  path_ = std::move(path);
}

// One group per metric: its HELP and TYPE lines, then a sample per queue.
std::string MetricsFile::text(std::uint64_t sweeps, double last_sweep_seconds) const {
  std::ostringstream out;
  for (const tools::StatField& field : tools::kStatFields) {
    const Metric metric = metric_of(field);
    describe(out, metric.name, field.help, field.kind == tools::StatKind::gauge ? "gauge" : "counter");
    for (const auto& [labels, stats] : queues_) {
      out << metric.name << '{' << labels << "} ";
      if (metric.scale == 1) {
        out << stats.*field.member;
      } else {
        char value[32];
        std::snprintf(value, sizeof value, "%.3f", static_cast<double>(stats.*field.member) * metric.scale);
        out << value;
      }
      out << '\n';
    }
  }
  describe(out, "jobring_queues_skipped",
           "Queues the last sweep could not open, by reason: permission (owner, group and mode keep the "
           "janitor's user out), corrupt, version (another layout version), other.",
           "gauge");
  for (std::size_t r = 0; r < kSkipReasonNames.size(); ++r)
    out << "jobring_queues_skipped{reason=\"" << kSkipReasonNames[r] << "\"} " << skipped_[r] << '\n';
  if (!servers_.empty()) {
    describe(out, "jobring_redis_up",
             "Whether the last sweep reached the Redis server (1) or not (0), per server of --url.", "gauge");
    for (const auto& [url, up] : servers_)
      out << "jobring_redis_up{server=\"" << label_value(url) << "\"} " << (up ? 1 : 0) << '\n';
  }
  describe(out, "jobring_janitor_sweeps_total", "Sweeps done by this janitor since it started.", "counter");
  out << "jobring_janitor_sweeps_total " << sweeps << '\n';
  describe(out, "jobring_janitor_last_sweep_seconds", "How long the janitor's last sweep of all queues took.",
           "gauge");
  out << "jobring_janitor_last_sweep_seconds " << last_sweep_seconds << '\n';
  return out.str();
}

// The file is made 0644 whatever the umask (the unit's UMask=0077 would make
// it 0600): node_exporter reads it as another user (prometheus).
void MetricsFile::write(std::uint64_t sweeps, double last_sweep_seconds) {
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
  if (!stale_tmp_removed_) remove_stale_tmp();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const bool written = fd >= 0 && ::fchmod(fd, 0644) == 0 && write_all(fd, text(sweeps, last_sweep_seconds));
  const int err = errno;
  if (fd >= 0 && ::close(fd) != 0 && written) {
    fail("cannot write metrics to", tmp, errno);
    ::unlink(tmp.c_str());
    return;
  }
  if (!written) {
    fail("cannot write metrics to", tmp, err);
    if (fd >= 0) ::unlink(tmp.c_str());
    return;
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    fail("cannot rename metrics into", path_, errno);
    ::unlink(tmp.c_str());
    return;
  }
  failed_ = false;
}

// Logged once, until a write succeeds again.
void MetricsFile::fail(const char* what, const std::string& path, int err) {
  if (!failed_) log(Level::warn, "%s %s: %s", what, path.c_str(), tools::errno_text(err).c_str());
  failed_ = true;
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
