// Where the queues are: the URL (--url, else $JOBRING_URL, else "shm:"), the
// handles the subcommands open on it (jobring::AnyQueue, or a read-only
// QueueView on shared memory), and what a Redis server that cannot be
// reached turns into.
#include <optional>

#include "cli.hpp"

namespace jobring::cli {

namespace {

// --url, if given (before or after the subcommand).
std::optional<std::string>& given_url() {
  static std::optional<std::string> url;
  return url;
}

// Checked once, at first use: a subcommand that never opens a queue (--help)
// does not look at the URL.
struct Where {
  std::string url;
  Backend backend = Backend::shm;
};

const Where& where() {
  static const Where w = [] {
    Where out;
    const bool from_option = given_url().has_value();
    out.url = from_option ? *given_url() : jobring::url_from_env();
    if (out.url.empty()) out.url = "shm:";
    std::error_code ec;
    const auto b = jobring::backend_of(out.url, ec);
    if (!b)
      throw UsageError{"jobring: bad URL '" + out.url + "'" + (from_option ? "" : " (from JOBRING_URL)") +
                       ": use shm: (this host's shared memory), redis://HOST:PORT, "
                       "redis+unix:///PATH/redis.sock or redis+cluster://HOST:PORT,HOST:PORT"};
    out.backend = *b;
    return out;
  }();
  return w;
}

}  // namespace

void set_url(std::string url) { given_url() = std::move(url); }

const std::string& queue_url() { return where().url; }
bool on_redis() { return where().backend == Backend::redis; }

jobring::RedisOptions redis_options() {
  // The library's bounds (connect 2 s, each call 5 s): a server that is down
  // or stopped is an error within seconds, never a hang.
  return {};
}

AnyQueue open_queue(const std::string& name) { return AnyQueue::open(queue_url(), name, redis_options()); }

std::string unreachable_hint(const std::error_code& ec) {
  if ((ec != errc::unavailable && ec != errc::timeout) || !on_redis())
    return {};  // only Redis calls time out
  return "is redis-server running at " + queue_url() +
         "? start it, or set JOBRING_URL (or --url) to where it runs";
}

void refuse_on_redis(const Command& c, const std::string& option, const std::string& why) {
  if (on_redis())
    usage(c.name, option + " is for queues in shared memory; " + queue_url() + " is a Redis server: " + why);
}

Inspected Inspected::open(const std::string& name) {
  Inspected i;
  if (on_redis())
    i.queue_.emplace(open_queue(name));
  else
    i.view_.emplace(QueueView::open(name));  // read-only: needs read permission only
  return i;
}

std::optional<Inspected> Inspected::open(const std::string& name, std::error_code& ec,
                                         milliseconds init_wait) {
  Inspected i;
  if (on_redis()) {
    auto q = AnyQueue::open(queue_url(), name, ec, redis_options());
    if (!q) return std::nullopt;
    i.queue_.emplace(std::move(*q));
  } else {
    auto v = QueueView::open(name, ec, init_wait);
    if (!v) return std::nullopt;
    i.view_.emplace(std::move(*v));
  }
  return i;
}

const Options& Inspected::options() const { return view_ ? view_->options() : queue_->options(); }
std::uint64_t Inspected::incarnation() const { return view_ ? view_->incarnation() : queue_->incarnation(); }
Stats Inspected::stats() const { return view_ ? view_->stats() : queue_->stats(); }
Stats Inspected::stats(std::error_code& ec) const noexcept {
  ec.clear();
  return view_ ? view_->stats() : queue_->stats(ec);
}
std::vector<JobInfo> Inspected::peek(JobState state, std::size_t limit) const {
  return view_ ? view_->peek(state, limit) : queue_->peek(state, limit);
}

}  // namespace jobring::cli
