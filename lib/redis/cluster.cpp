#include "redis/cluster.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <thread>

#include "jobring/error.hpp"

namespace jobring::detail::redis {
namespace {

Failure fail(errc code, std::string what) { return {make_error_code(code), std::move(what)}; }

std::string node_url(const HostPort& n) {
  return n.host.find(':') != std::string::npos ? "redis://[" + n.host + "]:" + std::to_string(n.port)
                                               : "redis://" + n.host + ":" + std::to_string(n.port);
}

Endpoint node_endpoint(const HostPort& n) {
  Endpoint e;
  e.kind = Endpoint::Kind::tcp;
  e.host = n.host;
  e.port = n.port;
  e.url = node_url(n);
  return e;
}

constexpr std::size_t kMaxHost = 255;
constexpr std::size_t kMaxNodes = 4096;  // owner_ holds int16 indices

}  // namespace

// --- slots ------------------------------------------------------------------

std::uint16_t crc16(std::string_view data) noexcept {
  std::uint16_t crc = 0;
  for (const char c : data) {
    crc ^= static_cast<std::uint16_t>(static_cast<unsigned char>(c) << 8);
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<std::uint16_t>(crc << 1);
  }
  return crc;
}

int key_slot(std::string_view key) noexcept {
  // The hash tag: from the first '{' to the next '}', if that is not empty.
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    if (const auto close = key.find('}', open + 1); close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & (kSlots - 1);
}

Failure parse_cluster_slots(const redisReply* reply, const HostPort& asked, std::vector<SlotRange>& out) {
  out.clear();
  const auto bad = [&](std::string_view why) {
    out.clear();
    return fail(errc::protocol_error, node_url(asked) + ": CLUSTER SLOTS answered " + std::string(why) +
                                          ": is this a Redis 7 cluster node?");
  };
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return bad("something other than an array");
  if (reply->elements > static_cast<std::size_t>(kSlots)) return bad("more ranges than slots");
  for (std::size_t i = 0; i < reply->elements; ++i) {
    const redisReply* range = reply->element[i];
    if (range == nullptr || range->type != REDIS_REPLY_ARRAY || range->elements < 3)
      return bad("a range that is not [first, last, primary, replicas...]");
    const redisReply* first = range->element[0];
    const redisReply* last = range->element[1];
    const redisReply* primary = range->element[2];
    if (first == nullptr || last == nullptr || first->type != REDIS_REPLY_INTEGER ||
        last->type != REDIS_REPLY_INTEGER || first->integer < 0 || last->integer >= kSlots ||
        first->integer > last->integer)
      return bad("a slot range out of 0..16383");
    if (primary == nullptr || primary->type != REDIS_REPLY_ARRAY || primary->elements < 2)
      return bad("a node that is not [host, port, ...]");
    const redisReply* host = primary->element[0];
    const redisReply* port = primary->element[1];
    if (host == nullptr || port == nullptr || port->type != REDIS_REPLY_INTEGER || port->integer < 0 ||
        port->integer > 65535)
      return bad("a node without a port in 0..65535");
    if (host->type == REDIS_REPLY_NIL) continue;  // no known endpoint: uncovered until the next reading
    if (host->type != REDIS_REPLY_STRING || host->len > kMaxHost) return bad("a node without a host");
    const std::string_view name(host->str, host->len);
    if (name == "?" || port->integer == 0) continue;  // likewise
    SlotRange r;
    r.first = static_cast<int>(first->integer);
    r.last = static_cast<int>(last->integer);
    r.primary = {name.empty() ? asked.host : std::string(name), static_cast<int>(port->integer)};
    out.push_back(std::move(r));
  }
  return {};
}

bool parse_redirection(std::string_view message, const HostPort& asked, int& slot, HostPort& node) {
  std::string_view rest;
  if (message.starts_with("MOVED "))
    rest = message.substr(6);
  else if (message.starts_with("ASK "))
    rest = message.substr(4);
  else
    return false;
  const auto space = rest.find(' ');
  if (space == std::string_view::npos) return false;
  const std::string_view number = rest.substr(0, space), address = rest.substr(space + 1);
  int value = -1;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc{} || end != number.data() + number.size() || value < 0 || value >= kSlots) return false;
  const auto colon = address.rfind(':');
  if (colon > kMaxHost) return false;  // npos (no colon) included
  const std::string_view port = address.substr(colon + 1);
  int port_value = 0;
  const auto [pend, pec] = std::from_chars(port.data(), port.data() + port.size(), port_value);
  if (pec != std::errc{} || pend != port.data() + port.size() || port_value < 1 || port_value > 65535)
    return false;
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  slot = value;
  node = {host.empty() ? asked.host : std::string(host), port_value};
  return true;
}

// --- Topology ---------------------------------------------------------------

Topology::Topology(std::vector<HostPort> seeds, std::string url)
    : seeds_(std::move(seeds)), url_(std::move(url)), owner_(kSlots, -1) {}

bool Topology::known() const {
  std::lock_guard lock(mutex_);
  return known_;
}

std::optional<HostPort> Topology::primary(int slot) const {
  std::lock_guard lock(mutex_);
  if (slot < 0 || slot >= kSlots) return std::nullopt;
  const int at = owner_[static_cast<std::size_t>(slot)];
  if (at < 0) return std::nullopt;
  return nodes_[static_cast<std::size_t>(at)];
}

std::vector<HostPort> Topology::primaries() const {
  std::lock_guard lock(mutex_);
  std::vector<bool> used(nodes_.size(), false);
  for (const auto at : owner_)
    if (at >= 0) used[static_cast<std::size_t>(at)] = true;
  std::vector<HostPort> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (used[i]) out.push_back(nodes_[i]);
  return out;
}

std::vector<HostPort> Topology::candidates() const {
  std::vector<HostPort> out = primaries();
  for (const auto& s : seeds_)
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

int Topology::index_of(const HostPort& node) {
  const auto it = std::find(nodes_.begin(), nodes_.end(), node);
  if (it != nodes_.end()) return static_cast<int>(it - nodes_.begin());
  if (nodes_.size() >= kMaxNodes) return -1;
  nodes_.push_back(node);
  return static_cast<int>(nodes_.size() - 1);
}

void Topology::assign(int slot, const HostPort& node) {
  std::lock_guard lock(mutex_);
  if (slot < 0 || slot >= kSlots) return;
  owner_[static_cast<std::size_t>(slot)] = static_cast<std::int16_t>(index_of(node));
}

void Topology::replace(const std::vector<SlotRange>& ranges) {
  std::lock_guard lock(mutex_);
  nodes_.clear();
  std::fill(owner_.begin(), owner_.end(), std::int16_t{-1});
  for (const auto& r : ranges) {
    const auto at = static_cast<std::int16_t>(index_of(r.primary));
    for (int s = r.first; s <= r.last; ++s) owner_[static_cast<std::size_t>(s)] = at;
  }
  known_ = true;
}

// --- ClusterLink ---------------------------------------------------------------

ClusterLink::ClusterLink(std::shared_ptr<Topology> topology, const ConnectOptions& options)
    : topology_(std::move(topology)), options_(options) {
  options_.cluster_node = true;
}

Connection& ClusterLink::node(const HostPort& n) {
  const std::string name = n.host + "\n" + std::to_string(n.port);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    if (nodes_.size() >= 64) nodes_.clear();  // a cluster reshaped many times: start over
    it = nodes_.emplace(name, std::make_unique<Connection>(node_endpoint(n), options_)).first;
  }
  return *it->second;
}

Failure ClusterLink::refresh() {
  ConnectOptions probe_options = options_;
  probe_options.check_eviction_policy = false;  // checked by each node's own Connection
  probe_options.load_library = false;           // a seed may be a replica
  probe_options.wait_replicas = 0;
  Failure last = fail(errc::invalid_argument, topology_->url() + ": no seed node in the URL");
  for (const HostPort& n : topology_->candidates()) {
    Connection probe(node_endpoint(n), probe_options);
    const std::string_view argv[] = {"CLUSTER", "SLOTS"};
    Failure f;
    Reply r = probe.command(argv, Retry::safe, f);
    if (f) {
      last = std::move(f);
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      last =
          fail(errc::server_error, node_url(n) + ": CLUSTER SLOTS refused (" + std::string(r->str, r->len) +
                                       "): is it a node of a Redis Cluster? For one server, use redis://");
      continue;
    }
    std::vector<SlotRange> ranges;
    if (Failure p = parse_cluster_slots(r.get(), n, ranges)) {
      last = std::move(p);
      continue;
    }
    if (ranges.empty()) {  // a node that has not joined (or a cluster being created)
      last = fail(errc::unavailable, node_url(n) +
                                         ": the node serves no hash slot yet (CLUSTER SLOTS is "
                                         "empty): is the cluster created (redis-cli --cluster create)?");
      continue;
    }
    topology_->replace(ranges);
    return {};
  }
  return last;
}

Failure ClusterLink::connect() {
  if (topology_->known()) return {};
  return refresh();
}

// One routed call's progress: its key and slot, the time left for retries
// (io_timeout from the start) and the pause before the next, a pending ASK
// redirection, and how many redirections it followed.
struct ClusterLink::Route {
  using Clock = std::chrono::steady_clock;

  std::string_view key;
  int slot = 0;
  Clock::time_point deadline;
  std::chrono::milliseconds pause{10};
  std::optional<HostPort> ask;
  int redirects = 0;

  // Pauses before the next try if io_timeout since the start allows; false when spent.
  bool pause_more() {
    if (Clock::now() + pause >= deadline) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds{200});
    return true;
  }
};

std::string ClusterLink::where(const Route& r) const {
  return topology_->url() + ": hash slot " + std::to_string(r.slot) + " (" + std::string(r.key) + ")";
}

ClusterLink::Step ClusterLink::pick_node(Route& r, std::optional<HostPort>& target, Failure& failure) {
  if (!topology_->known()) {
    if (Failure f = refresh()) {
      if (f.ec == make_error_code(errc::unavailable) && r.pause_more()) return Step::again;
      failure = std::move(f);
      return Step::stop;
    }
  }
  target = r.ask ? r.ask : topology_->primary(r.slot);
  if (target) return Step::go;
  // No primary for the slot: a failover under way, or a cluster that lost a shard.
  if (r.pause_more()) {
    (void)refresh();
    return Step::again;
  }
  failure = fail(errc::unavailable, where(r) +
                                        ": no node serves it (CLUSTER SLOTS): the shard's primary "
                                        "is down and no replica took over within io_timeout");
  return Step::stop;
}

ClusterLink::Step ClusterLink::open_node(Route& r, const HostPort& target, Connection*& connection,
                                         Failure& failure) {
  Connection& c = node(target);
  if (Failure f = c.connect()) {  // nothing was sent
    // A dead node (unavailable), or a demoted one (its FUNCTION LOAD
    // refused: server_error): the map is stale. Any other failure (a
    // timeout, an evicting server, a protocol error) stands.
    const bool stale =
        f.ec == make_error_code(errc::unavailable) || f.ec == make_error_code(errc::server_error);
    if (stale && r.pause_more()) {
      r.ask.reset();
      (void)refresh();
      return Step::again;
    }
    failure = std::move(f);
    return Step::stop;
  }
  if (r.ask) {
    r.ask.reset();
    const std::string_view asking[] = {"ASKING"};
    if (Reply ok = c.command(asking, Retry::unsafe, failure); !ok) return Step::stop;
  }
  connection = &c;
  return Step::go;
}

ClusterLink::Step ClusterLink::after_refusal(Route& r, std::string_view message, const HostPort& target,
                                             Failure& failure) {
  if (message.starts_with("MOVED ") || message.starts_with("ASK ")) {
    int to_slot = 0;
    HostPort to;
    if (!parse_redirection(message, target, to_slot, to)) {
      failure = fail(errc::protocol_error, node_url(target) + ": a malformed redirection '" +
                                               std::string(message.substr(0, 80)) + "'");
      return Step::stop;
    }
    if (++r.redirects > kMaxRedirects) {
      failure = fail(errc::protocol_error, where(r) + ": redirected " + std::to_string(kMaxRedirects) +
                                               " times (last: " + std::string(message.substr(0, 80)) +
                                               "): the cluster's nodes disagree; check CLUSTER NODES");
      return Step::stop;
    }
    if (message.front() == 'M') {
      (void)refresh();                 // the whole map: other slots moved too, likely
      topology_->assign(to_slot, to);  // the owner's word for this one, fresher than a reading
    } else {
      r.ask = to;
    }
    return Step::again;
  }
  // TRYAGAIN, CLUSTERDOWN.
  if (r.pause_more()) {
    if (message.starts_with("CLUSTERDOWN")) (void)refresh();
    return Step::again;
  }
  failure = fail(errc::unavailable, where(r) + ": " + std::string(message.substr(0, 120)) + " for " +
                                        std::to_string(options_.io_timeout.count()) +
                                        " ms: the cluster is failing over or resharding; try again");
  return Step::stop;
}

template <typename Send>
Reply ClusterLink::route(std::string_view key, Retry retry, Failure& failure, const Send& send) {
  Route r;
  r.key = key;
  r.slot = key_slot(key);
  r.deadline = Route::Clock::now() + options_.io_timeout;
  for (;;) {
    failure = {};
    std::optional<HostPort> target;
    Connection* c = nullptr;
    if (const Step s = pick_node(r, target, failure); s != Step::go) {
      if (s == Step::again) continue;
      return nullptr;
    }
    if (const Step s = open_node(r, *target, c, failure); s != Step::go) {
      if (s == Step::again) continue;
      return nullptr;
    }
    Reply reply = send(*c, failure);
    if (!reply) {
      // The connection dropped: the node died. Safe calls go to its successor.
      if (failure.ec == make_error_code(errc::unavailable) && retry == Retry::safe && r.pause_more()) {
        (void)refresh();
        continue;
      }
      return nullptr;
    }
    if (reply->type != REDIS_REPLY_ERROR) return reply;
    const std::string_view message(reply->str, reply->len);
    if (!is_cluster_error(message)) return reply;
    // A redirection or a refusal: the call did not run.
    if (after_refusal(r, message, *target, failure) == Step::stop) return nullptr;
  }
}

Reply ClusterLink::fcall(std::string_view fn, std::string_view key, std::span<const std::string_view> args,
                         bool writes, Retry retry, Failure& failure) {
  return route(key, retry, failure,
               [&](Connection& c, Failure& f) { return c.fcall(fn, key, args, writes, retry, f); });
}

Reply ClusterLink::command_on(std::string_view key, std::span<const std::string_view> argv, Retry retry,
                              Failure& failure, std::chrono::milliseconds extra_wait) {
  return route(key, retry, failure,
               [&](Connection& c, Failure& f) { return c.command(argv, retry, f, extra_wait); });
}

std::shared_ptr<Topology> make_topology(const Endpoint& endpoint) {
  if (endpoint.kind != Endpoint::Kind::cluster) return nullptr;
  return std::make_shared<Topology>(endpoint.seeds, endpoint.url);
}

std::unique_ptr<Link> make_link(const Endpoint& endpoint, const ConnectOptions& options,
                                const std::shared_ptr<Topology>& topology) {
  if (topology) return std::make_unique<ClusterLink>(topology, options);
  return std::make_unique<Connection>(endpoint, options);
}

}  // namespace jobring::detail::redis
