// The janitor proper: the queues it looks after, re-opened when removed and
// recreated, and a sweep of each (Queue::sweep) with its statistics for the
// metrics; and the queues of the Redis servers of --url (AnyQueue::sweep).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <system_error>

#include "config.hpp"
#include "jobring/any_queue.hpp"
#include "jobring/queue.hpp"
#include "metrics.hpp"

namespace jobring::janitor {

// What every sweep so far returned, summed over the queues.
struct Totals {
  std::uint64_t sweeps = 0;
  std::uint64_t reclaimed = 0;
  std::uint64_t expired = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t recovered_writes = 0;
  std::uint64_t moved_dead = 0;  // dead jobs moved to their dead-letter queue (--dead-letter)
  std::uint64_t synced = 0;      // msyncs of file-backed queues with Sync::interval
};

// A SIGBUS raised by a segment truncated during a sweep abandons that sweep
// (the queue is dropped); any other SIGBUS kills the process as usual. False
// (errno set) if sigaction failed.
bool install_sigbus_guard();

// The metric's reason for an error of Queue::open.
SkipReason skip_reason(const std::error_code& ec);

class Janitor {
 public:
  explicit Janitor(Config config);

  void set_config(Config config);
  [[nodiscard]] const Config& config() const { return config_; }
  [[nodiscard]] const Totals& totals() const { return totals_; }
  [[nodiscard]] std::size_t queue_count() const;
  // The queues the last sweep could not open, by reason.
  [[nodiscard]] const SkipCounts& skipped() const { return skipped_; }

  // Sweeps every configured queue (every queue on the host if none is
  // configured), then writes the metrics.
  void sweep_all();

 private:
  struct Watched {
    jobring::Queue queue;
    ino_t inode;
    off_t bytes;  // the segment's size when opened: a change means someone truncated it
    // A file-backed queue with Sync::interval: when the janitor last wrote it to disk.
    std::chrono::steady_clock::time_point synced{};
  };

  // The open queue `name`, opened (or re-opened) as needed; nullptr if it
  // does not exist or cannot be opened now.
  Watched* watch(const std::string& name);
  // Counts and logs a queue that could not be opened (the file at `st`).
  void skip(const std::string& name, const std::error_code& ec, const struct stat& st);
  void sweep_one(const std::string& name);
  void move_dead_letters(const std::string& name, Watched& w);
  void sync_if_due(const std::string& name, Watched& w);

  // Why a queue was skipped: logged once, and again only when the error or
  // the file (removed and created again) changes. A queue skipped for
  // permission is not tried again until its file's inode or ctime changes
  // (chmod, chown): a refused open costs a stat and user and group lookups
  // (the message), which may go to a directory server, every sweep.
  struct Failed {
    std::string message;
    SkipReason reason;
    ino_t inode;
    timespec ctime;
  };

  // A Redis server of --url: its queues, open between sweeps, listed again
  // every kRedisRelist; while it cannot be reached (logged once per outage),
  // tried again every kRedisRetry, so that a server that takes its connect
  // timeout to fail does not slow every sweep of the other queues.
  struct RedisServer {
    std::map<std::string, jobring::AnyQueue> queues;
    std::vector<std::string> names;  // the last list
    std::chrono::steady_clock::time_point listed{};
    bool down = false;
    std::chrono::steady_clock::time_point retry{};
    std::map<std::string, std::string> problems;  // by queue: the last one logged
  };
  void sweep_redis(const std::string& url, RedisServer& server);
  // Counts a server that could not be reached, and logs it once per outage.
  void redis_unreachable(const std::string& url, RedisServer& server, const std::error_code& ec);

  Config config_;
  std::map<std::string, Watched> watched_;
  std::map<std::string, RedisServer> redis_;  // by URL
  std::map<std::string, Failed> failed_;
  std::set<std::string> missing_;                           // configured but absent, logged once
  std::set<std::string> missing_dirs_;                      // --dir that cannot be listed, logged once
  std::map<std::string, std::string> dead_letter_problem_;  // by source queue: the last one logged
  MetricsFile metrics_;
  Totals totals_;
  SkipCounts skipped_{};
  double last_sweep_seconds_ = 0;
};

// systemd's STATUS= line: queues, sweeps and what they returned.
std::string status_line(const Janitor& j);

}  // namespace jobring::janitor
