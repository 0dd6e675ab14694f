// Prometheus metrics (text exposition format) in a file, for node_exporter's
// textfile collector: every jobring::Stats field of every watched queue,
// named as common/stats.hpp names it with Prometheus' conventions (gauges
// jobring_FIELD, counters jobring_FIELD_total, FIELD_ms as
// jobring_FIELD_seconds), each with # HELP and # TYPE, labelled
// queue="NAME", and the janitor's own sweep count and sweep time. The file is
// mode 0644 whatever the umask.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "jobring/queue.hpp"

namespace jobring::janitor {

class MetricsFile {
 public:
  // An empty path: no metrics are written.
  void set_path(std::string path);
  [[nodiscard]] bool enabled() const { return !path_.empty(); }

  // One sweep's statistics: clear(), add() per queue, then write().
  void clear() { queues_.clear(); }
  void add(const std::string& queue, const Stats& stats) { queues_.emplace_back(queue, stats); }
  // Replaces the file atomically (a temporary file beside it, then a
  // rename). A failure is logged once, until a write succeeds again.
  void write(std::uint64_t sweeps, double last_sweep_seconds);

 private:
  [[nodiscard]] std::string text(std::uint64_t sweeps, double last_sweep_seconds) const;
  void remove_stale_tmp();
  void fail(const char* what, const std::string& path, int err);

  std::string path_;
  std::vector<std::pair<std::string, Stats>> queues_;
  bool stale_tmp_removed_ = false;  // once per path
  bool failed_ = false;
};

}  // namespace jobring::janitor
