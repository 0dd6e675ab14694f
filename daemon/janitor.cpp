#include "janitor.hpp"

#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <vector>

#include "jobring/duration.hpp"
#include "log.hpp"

namespace jobring::janitor {

using namespace std::chrono_literals;

namespace {

volatile std::sig_atomic_t g_in_sweep = 0;
sigjmp_buf g_sweep_jump;

extern "C" void on_sigbus(int sig) {
  if (g_in_sweep) siglongjmp(g_sweep_jump, 1);
  ::signal(sig, SIG_DFL);  // not ours: die of it as we would have
  ::raise(sig);
}

std::string group_name(gid_t gid) {
  ::group gr{};
  ::group* found = nullptr;
  char buf[4096];
  if (::getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found != nullptr) return gr.gr_name;
  return std::to_string(gid);
}

std::string user_name(uid_t uid) {
  ::passwd pw{};
  ::passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return pw.pw_name;
  return "uid " + std::to_string(uid);
}

// Who may open the segment, who the janitor is, and the way in (README,
// "Access model").
std::string permission_hint(const struct stat& st) {
  const std::string user = user_name(::geteuid());
  const std::string group = group_name(st.st_gid);
  char text[64];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  std::string hint = " (the segment is group " + group + ", mode " + text + "; the janitor runs as " + user +
                     ", group " + group_name(::getegid()) + "): ";
  if ((st.st_mode & 060) == 060)
    return hint + "add " + user + " to group " + group + " (usermod -aG " + group + " " + user +
           ", then restart the janitor)";
  return hint + "create queues with --group " + group_name(::getegid()) + " (Options::group), mode 0660";
}

}  // namespace

SkipReason skip_reason(const std::error_code& ec) {
  using jobring::errc;
  if (ec == errc::permission_denied) return SkipReason::permission;
  if (ec == errc::not_a_queue || ec == errc::corrupt_segment || ec == errc::incomplete_segment)
    return SkipReason::corrupt;
  if (ec == errc::incompatible_version) return SkipReason::version;
  return SkipReason::other;
}

bool install_sigbus_guard() {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigbus;
  return ::sigaction(SIGBUS, &sa, nullptr) == 0;
}

namespace {

// How often a Redis server's queues are listed again (a SCAN of its keys),
// and how soon one that could not be reached is tried again.
constexpr auto kRedisRelist = std::chrono::seconds{1};
constexpr auto kRedisRetry = std::chrono::seconds{5};

// Bounds on a call to a Redis server, shorter than a client's: a stopped
// server holds up the sweep of every other queue for at most this long.
jobring::RedisOptions janitor_redis_options() {
  jobring::RedisOptions o;
  o.connect_timeout = std::chrono::milliseconds{1000};
  o.io_timeout = std::chrono::milliseconds{2000};
  return o;
}

bool is_connection_error(const std::error_code& ec) {
  return ec == jobring::errc::unavailable || ec == jobring::errc::timeout;
}

}  // namespace

Janitor::Janitor(Config config) : config_(std::move(config)) { metrics_.set_path(config_.metrics_file); }

std::size_t Janitor::queue_count() const {
  std::size_t n = watched_.size();
  for (const auto& [url, server] : redis_) n += server.queues.size();
  return n;
}

void Janitor::set_config(Config config) {
  config_ = std::move(config);
  std::erase_if(redis_, [&](const auto& entry) {
    return std::find(config_.urls.begin(), config_.urls.end(), entry.first) == config_.urls.end();
  });
  std::erase_if(dead_letter_problem_, [&](const auto& p) { return !config_.dead_letter.contains(p.first); });
  metrics_.set_path(config_.metrics_file);
}

void Janitor::sweep_all() {
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> names = config_.queues.empty() ? jobring::Queue::list() : config_.queues;
  // The file-backed queues of every --dir, listed every sweep too.
  if (config_.queues.empty()) {
    for (const std::string& dir : config_.dirs) {
      std::error_code ec;
      const auto in_dir = jobring::Queue::list(dir, ec);
      if (ec && !missing_dirs_.contains(dir)) {
        log(Level::warn, "dir '%s': cannot be listed (%s); will look again every sweep", dir.c_str(),
            ec.message().c_str());
        missing_dirs_.insert(dir);
      } else if (!ec && missing_dirs_.erase(dir) > 0) {
        log(Level::info, "dir '%s': can be listed now", dir.c_str());
      }
      names.insert(names.end(), in_dir.begin(), in_dir.end());
    }
  }
  // The queues of --dead-letter are looked after too (the move needs both open).
  for (const auto& [src, dst] : config_.dead_letter)
    for (const std::string* n : {&src, &dst})
      if (std::find(names.begin(), names.end(), *n) == names.end() &&
          (!config_.queues.empty() || ::access(segment_path(*n).c_str(), F_OK) == 0))
        names.push_back(*n);
  const std::set<std::string> wanted(names.begin(), names.end());
  std::erase_if(failed_, [&](const auto& entry) { return !wanted.contains(entry.first); });
  for (auto it = watched_.begin(); it != watched_.end();) {
    if (!wanted.contains(it->first)) {
      log(Level::info, "queue '%s': no longer watched", it->first.c_str());
      it = watched_.erase(it);
    } else {
      ++it;
    }
  }
  metrics_.clear();
  skipped_ = {};
  for (const auto& name : names) sweep_one(name);
  // After the queues in shared memory: a Redis server that is slow to fail
  // delays only itself.
  for (const std::string& url : config_.urls) sweep_redis(url, redis_[url]);
  ++totals_.sweeps;
  last_sweep_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (metrics_.enabled()) {
    metrics_.set_skipped(skipped_);
    metrics_.write(totals_.sweeps, last_sweep_seconds_);
  }
}

Janitor::Watched* Janitor::watch(const std::string& name) {
  struct stat st {};
  const std::string path = segment_path(name);
  if (::stat(path.c_str(), &st) != 0) {
    failed_.erase(name);
    if (watched_.erase(name) > 0) log(Level::info, "queue '%s': removed; dropped", name.c_str());
    if (!config_.queues.empty() && !missing_.contains(name)) {
      log(Level::warn, "queue '%s': does not exist (yet); will look again every sweep", name.c_str());
      missing_.insert(name);
    }
    return nullptr;
  }
  missing_.erase(name);
  auto it = watched_.find(name);
  if (it != watched_.end() && it->second.inode != st.st_ino) {
    log(Level::info, "queue '%s': recreated; re-opening", name.c_str());
    watched_.erase(it);
    it = watched_.end();
  } else if (it != watched_.end() && it->second.bytes != st.st_size) {
    // Touching a page beyond the new end would raise SIGBUS: let go.
    log(Level::warn, "queue '%s': segment resized from %lld to %lld bytes by someone; dropped", name.c_str(),
        static_cast<long long>(it->second.bytes), static_cast<long long>(st.st_size));
    watched_.erase(it);
    it = watched_.end();
  }
  if (it != watched_.end()) return &it->second;
  if (const auto f = failed_.find(name);
      f != failed_.end() && f->second.reason == SkipReason::permission && f->second.inode == st.st_ino &&
      f->second.ctime.tv_sec == st.st_ctim.tv_sec && f->second.ctime.tv_nsec == st.st_ctim.tv_nsec) {
    ++skipped_[static_cast<std::size_t>(SkipReason::permission)];  // nothing changed: still skipped
    return nullptr;
  }
  std::error_code ec;
  // No waiting for a half-made segment: it would stall every other queue's
  // sweep. It is looked at again next sweep.
  auto q = jobring::Queue::open(name, ec, 0ms);
  if (!q) {
    // Removed since the stat: gone, not skipped.
    if (ec != jobring::errc::not_found) skip(name, ec, st);
    return nullptr;
  }
  if (failed_.erase(name) > 0) log(Level::info, "queue '%s': can be opened now (was skipped)", name.c_str());
  log(Level::info, "queue '%s': watching (capacity %u)", name.c_str(), q->options().capacity);
  return &watched_.emplace(name, Watched{std::move(*q), st.st_ino, st.st_size}).first->second;
}

void Janitor::skip(const std::string& name, const std::error_code& ec, const struct stat& st) {
  const SkipReason reason = skip_reason(ec);
  ++skipped_[static_cast<std::size_t>(reason)];
  const Failed now{ec.message(), reason, st.st_ino, st.st_ctim};
  auto [it, added] = failed_.try_emplace(name, now);
  const bool same = !added && it->second.message == now.message && it->second.inode == now.inode;
  it->second = now;
  if (same) return;
  const std::string hint = reason == SkipReason::permission ? permission_hint(st) : "";
  log(Level::warn, "queue '%s': skipped (%s): %s%s", name.c_str(),
      kSkipReasonNames[static_cast<std::size_t>(reason)], ec.message().c_str(), hint.c_str());
}

void Janitor::sweep_one(const std::string& name) {
  Watched* w = watch(name);
  if (w == nullptr) return;
  // A segment truncated between our size check and the sweep raises SIGBUS
  // when a page past its end is touched. The handler jumps back here; the
  // sweep holds no lock and every change it makes is a single CAS, so
  // abandoning it midway leaves the queue consistent.
  if (sigsetjmp(g_sweep_jump, 1) != 0) {
    g_in_sweep = 0;
    log(Level::warn, "queue '%s': segment truncated during a sweep (SIGBUS); dropped", name.c_str());
    watched_.erase(name);
    return;
  }
  g_in_sweep = 1;
  const jobring::SweepResult r = w->queue.sweep();
  const jobring::Stats stats = w->queue.stats();
  g_in_sweep = 0;
  sync_if_due(name, *w);
  // Outside the SIGBUS guard: a move copies payloads into objects with
  // destructors, which a jump out of it would skip. A segment truncated
  // during a move (someone with write access to it did that) therefore
  // kills the janitor with SIGBUS, and systemd restarts it; watch() has just
  // checked both segments' sizes. (The metrics below show the dead jobs as
  // they were before the move; the next sweep's show them moved.)
  move_dead_letters(name, *w);
  totals_.reclaimed += r.reclaimed;
  totals_.expired += r.expired;
  totals_.dead_lettered += r.dead_lettered;
  totals_.recovered_writes += r.recovered_writes;
  if (r.reclaimed + r.expired + r.dead_lettered + r.recovered_writes > 0)
    log(Level::info,
        "queue '%s': %zu reclaimed from dead owners, %zu expired, %zu dead-lettered, %zu half-written freed",
        name.c_str(), r.reclaimed, r.expired, r.dead_lettered, r.recovered_writes);
  if (metrics_.enabled()) metrics_.add(name, stats);
}

// A Redis server's queues: expired leases back (AnyQueue::sweep: no
// claimer needed) and their statistics for the metrics.
void Janitor::sweep_redis(const std::string& url, RedisServer& server) {
  const auto now = std::chrono::steady_clock::now();
  if (server.down && now < server.retry) {
    if (metrics_.enabled()) metrics_.set_server(url, false);
    return;
  }
  std::error_code ec;
  if (server.down || server.names.empty() || now - server.listed >= kRedisRelist) {
    auto names = jobring::AnyQueue::list(url, ec, janitor_redis_options());
    if (ec) return redis_unreachable(url, server, ec);
    server.names = std::move(names);
    server.listed = now;
    std::erase_if(server.queues, [&](const auto& q) {
      return std::find(server.names.begin(), server.names.end(), q.first) == server.names.end();
    });
    std::erase_if(server.problems, [&](const auto& p) {
      return std::find(server.names.begin(), server.names.end(), p.first) == server.names.end();
    });
  }
  if (server.down) {
    server.down = false;
    log(Level::info, "redis %s: reachable again; sweeping its %zu queue%s", url.c_str(), server.names.size(),
        server.names.size() == 1 ? "" : "s");
  }
  for (const std::string& name : server.names) {
    auto it = server.queues.find(name);
    if (it == server.queues.end()) {
      auto q = jobring::AnyQueue::open(url, name, ec, janitor_redis_options());
      if (!q && is_connection_error(ec)) return redis_unreachable(url, server, ec);
      if (q) {
        log(Level::info, "queue '%s' on %s: watching (capacity %u)", name.c_str(), url.c_str(),
            q->options().capacity);
        it = server.queues.emplace(name, std::move(*q)).first;
      }
    }
    jobring::SweepResult r;
    jobring::Stats stats{};
    if (it != server.queues.end()) {
      r = it->second.sweep(ec);
      if (!ec) stats = it->second.stats(ec);
    }
    if (ec) {
      if (it != server.queues.end()) server.queues.erase(it);  // opened again next sweep
      if (is_connection_error(ec)) return redis_unreachable(url, server, ec);
      // Removed since the list: gone, not a problem. Anything else is logged
      // once, until it changes.
      if (ec != jobring::errc::not_found && server.problems[name] != ec.message()) {
        log(Level::warn, "queue '%s' on %s: %s; will try again every sweep", name.c_str(), url.c_str(),
            ec.message().c_str());
        server.problems[name] = ec.message();
      }
      continue;
    }
    if (server.problems.erase(name) > 0)
      log(Level::info, "queue '%s' on %s: swept again", name.c_str(), url.c_str());
    totals_.expired += r.expired;
    totals_.dead_lettered += r.dead_lettered;
    if (r.expired + r.dead_lettered > 0)
      log(Level::info, "queue '%s' on %s: %zu expired, %zu dead-lettered", name.c_str(), url.c_str(),
          r.expired, r.dead_lettered);
    if (metrics_.enabled()) metrics_.add_redis(url, name, stats);
  }
  if (metrics_.enabled()) metrics_.set_server(url, true);
}

void Janitor::redis_unreachable(const std::string& url, RedisServer& server, const std::error_code& ec) {
  server.retry = std::chrono::steady_clock::now() + kRedisRetry;
  server.queues.clear();
  if (metrics_.enabled()) metrics_.set_server(url, false);
  if (server.down) return;
  server.down = true;
  log(Level::warn,
      "redis %s: cannot be reached (%s): its queues are not swept until it is back (tried again every "
      "%llds; the other queues are swept as usual). Is redis-server running there?",
      url.c_str(), ec.message().c_str(), static_cast<long long>(kRedisRetry.count()));
}

// A file-backed queue created with Sync::interval: written to disk every
// sync_interval (at the first sweep after it is due). A failure is logged
// (it says what a power cut may lose) and tried again at the next sweep.
void Janitor::sync_if_due(const std::string& name, Watched& w) {
  const jobring::Options& o = w.queue.options();
  if (o.sync != jobring::Options::Sync::interval) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - w.synced < o.sync_interval) return;
  std::error_code ec;
  if (w.queue.sync(ec)) {
    w.synced = now;
    ++totals_.synced;
    log(Level::debug, "queue '%s': written to disk (sync interval %s)", name.c_str(),
        format_duration(o.sync_interval).c_str());
  } else {
    log(Level::warn, "queue '%s': msync failed (%s): a power cut now may lose more than %s of work",
        name.c_str(), ec.message().c_str(), format_duration(o.sync_interval).c_str());
  }
}

// --dead-letter: the dead jobs of `name` (open as `w`) into its dead-letter
// queue (a move abandoned midway loses no job: move.cpp). A dead-letter
// queue that is missing, full, or too small for a job is logged once, until
// that changes.
void Janitor::move_dead_letters(const std::string& name, Watched& w) {
  const auto dl = config_.dead_letter.find(name);
  if (dl == config_.dead_letter.end()) return;
  const std::string& to_name = dl->second;
  Watched* to = watch(to_name);  // std::map: `w` stays valid
  std::string problem;
  std::error_code ec;
  jobring::MoveResult r;
  if (to != nullptr) r = w.queue.move_dead(to->queue, {}, ec);  // never throws
  totals_.moved_dead += r.moved;
  if (to == nullptr) {
    problem = "its dead-letter queue '" + to_name + "' cannot be opened (create it: jobring create " +
              to_name + ")";
  } else if (ec) {
    problem = "moving its dead jobs to '" + to_name + "' failed: " + ec.message();
  } else {
    if (r.moved > 0)
      log(Level::info, "queue '%s': %zu dead job%s moved to '%s'", name.c_str(), r.moved,
          r.moved == 1 ? "" : "s", to_name.c_str());
    if (r.target_full)
      problem = "its dead-letter queue '" + to_name +
                "' is full; dead jobs stay here (make room: jobring purge " + to_name + " --state dead)";
    else if (r.too_large > 0)
      problem = "dead jobs larger than the max_payload of '" + to_name +
                "' stay here (recreate it with a larger --max-payload)";
  }
  std::string& said = dead_letter_problem_[name];
  if (problem != said && !problem.empty()) log(Level::warn, "queue '%s': %s", name.c_str(), problem.c_str());
  if (problem.empty() && !said.empty())
    log(Level::info, "queue '%s': dead jobs move to '%s' again", name.c_str(), to_name.c_str());
  said = problem;
}

namespace {

// ", N skipped (R)" if the last sweep skipped queues.
std::string skipped_text(const SkipCounts& skipped) {
  std::string out;
  std::uint64_t n = 0;
  for (std::size_t r = 0; r < skipped.size(); ++r) {
    if (skipped[r] == 0) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(skipped[r]) + " " + kSkipReasonNames[r];
    n += skipped[r];
  }
  return n == 0 ? "" : ", " + std::to_string(n) + " skipped (" + out + ")";
}

}  // namespace

std::string status_line(const Janitor& j) {
  const Totals& t = j.totals();
  return "STATUS=" + std::to_string(j.queue_count()) + " queues, " + std::to_string(t.sweeps) + " sweeps, " +
         std::to_string(t.reclaimed) + " reclaimed from dead owners, " + std::to_string(t.expired) +
         " expired, " + std::to_string(t.recovered_writes) + " half-written freed" +
         skipped_text(j.skipped());
}

}  // namespace jobring::janitor
