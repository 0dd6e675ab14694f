// Prometheus metrics (text exposition format) in a file, for node_exporter's
// textfile collector: every jobring::Stats field of every watched queue,
// named as common/stats.hpp names it with Prometheus' conventions (gauges
// jobring_FIELD, counters jobring_FIELD_total, FIELD_ms as
// jobring_FIELD_seconds), each with # HELP and # TYPE, labelled
// queue="NAME" (a queue on a Redis server also backend="redis" and
// server="URL": two servers may each have a queue of one name), the queues
// the last sweep skipped by reason, the Redis servers it could not reach, and the janitor's
// own sweep count and sweep time. The file is
// mode 0644 whatever the umask.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "jobring/queue.hpp"

namespace jobring::janitor {

// Why the janitor could not open a queue (metric jobring_queues_skipped).
enum class SkipReason : std::size_t {
  permission,  // the segment's owner, group and mode do not let the janitor's user in
  corrupt,     // not a queue, a corrupt header, or a half-made segment
  version,     // a queue of another layout version
  other,       // any other failure (the log says which)
};
inline constexpr std::array<const char*, 4> kSkipReasonNames{"permission", "corrupt", "version", "other"};
using SkipCounts = std::array<std::uint64_t, kSkipReasonNames.size()>;

class MetricsFile {
 public:
  // An empty path: no metrics are written.
  void set_path(std::string path);
  [[nodiscard]] bool enabled() const { return !path_.empty(); }

  // One sweep's statistics: clear(), add() per queue, then write().
  void clear() {
    queues_.clear();
    servers_.clear();
  }
  // A queue in shared memory.
  void add(const std::string& queue, const Stats& stats);
  // A queue on the Redis server `url`.
  void add_redis(const std::string& url, const std::string& queue, const Stats& stats);
  // A Redis server of --url, and whether the last sweep reached it.
  void set_server(const std::string& url, bool up) { servers_.emplace_back(url, up); }
  // The queues this sweep could not open, by reason.
  void set_skipped(const SkipCounts& skipped) { skipped_ = skipped; }
  // Replaces the file atomically (a temporary file beside it, then a
  // rename). A failure is logged once, until a write succeeds again.
  void write(std::uint64_t sweeps, double last_sweep_seconds);

 private:
  [[nodiscard]] std::string text(std::uint64_t sweeps, double last_sweep_seconds) const;
  void remove_stale_tmp();
  void fail(const char* what, const std::string& path, int err);

  std::string path_;
  std::vector<std::pair<std::string, Stats>> queues_;  // the labels without braces, and the statistics
  std::vector<std::pair<std::string, bool>> servers_;
  SkipCounts skipped_{};
  bool stale_tmp_removed_ = false;  // once per path
  bool failed_ = false;
};

}  // namespace jobring::janitor
