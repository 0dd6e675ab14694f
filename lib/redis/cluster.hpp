// Redis Cluster for the Redis backend: redis+cluster://H1:P1,H2:P2,...
//
// A cluster splits the key space into 16384 hash slots, each served by one
// primary (and copied to its replicas). A key's slot is CRC16(key) mod
// 16384, where a key holding a hash tag (the text between its first `{` and
// the next `}`, if not empty) hashes only the tag. Every key of a jobring
// queue starts with `{jr:NAME}`, so a queue lives in one slot: each of its
// FCALLs (whose Lua touches only that queue's keys) and BLPOPs goes to the
// primary serving that slot, and queues spread over the shards by name.
//
// A ClusterLink is one RedisQueue's way to the cluster (its pool holds
// several, one per call in flight). It keeps one Connection per node it has
// talked to, and shares the slot map (Topology) with the queue's other links:
// - the slot map is read with CLUSTER SLOTS from the first node that answers
//   (the known primaries, then the URL's seeds) on first use, after a MOVED
//   and when a node stops answering;
// - MOVED SLOT HOST:PORT (the slot has another owner for good): the map is
//   corrected and read again, and the call sent to the new owner;
// - ASK SLOT HOST:PORT (the slot is migrating and the key is already
//   there): ASKING then the call on that node, once, the map unchanged;
// - TRYAGAIN (the keys are split by a migration) and CLUSTERDOWN (a slot
//   without a live primary: a failover under way, or a cluster that lost
//   too many nodes): the call is sent again after a pause that doubles
//   (10 ms .. 200 ms), as long as io_timeout since the call began allows;
// - a node that refuses connections (a killed primary: its replica takes
//   over after cluster-node-timeout): the map is read again and the call
//   sent to the slot's owner, within the same budget, when nothing reached
//   the dead node or the call is Retry::safe (else unavailable, "may or may
//   not have taken effect", as on one server);
// - the function library: each node's Connection checks it when it
//   connects, and loads it if missing or of another version (so every
//   primary a queue uses has it), and again when an FCALL answers "Function
//   not found" (a node promoted or emptied since).
// Redirections are bounded (kMaxRedirects), so that nodes that keep
// pointing elsewhere are a protocol_error, never a loop. Every network call
// has its timeout (Connection), and the retries above end within io_timeout
// of the call's start: never a hang.
//
// A reply from the network is checked before use: a CLUSTER SLOTS reply
// or a redirection of another shape is protocol_error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis/connection.hpp"

namespace jobring::detail::redis {

inline constexpr int kSlots = 16384;
inline constexpr int kMaxRedirects = 16;

// CRC16/XMODEM (polynomial 0x1021, initial value 0), as the Redis Cluster
// specification: crc16("123456789") == 0x31C3.
[[nodiscard]] std::uint16_t crc16(std::string_view data) noexcept;
// The hash slot of `key`, honouring its hash tag.
[[nodiscard]] int key_slot(std::string_view key) noexcept;

struct SlotRange {
  int first = 0;
  int last = 0;
  HostPort primary;
};

// CLUSTER SLOTS' reply as ranges and their primaries. An empty host stands
// for the node that answered (`asked`); a range whose primary has no known
// endpoint ("?") is left out (uncovered until the next reading). Anything
// else that is not the documented shape is protocol_error.
[[nodiscard]] Failure parse_cluster_slots(const redisReply* reply, const HostPort& asked,
                                          std::vector<SlotRange>& out);

// "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" (an empty host:
// the node that answered). False if `message` is not one.
[[nodiscard]] bool parse_redirection(std::string_view message, const HostPort& asked, int& slot,
                                     HostPort& node);

// The slot map of one cluster, shared by one RedisQueue's links. Thread-safe.
class Topology {
 public:
  explicit Topology(std::vector<HostPort> seeds, std::string url);

  [[nodiscard]] const std::string& url() const noexcept { return url_; }
  [[nodiscard]] bool known() const;
  [[nodiscard]] std::optional<HostPort> primary(int slot) const;
  // Every primary, each once.
  [[nodiscard]] std::vector<HostPort> primaries() const;
  // Whom to ask for the map: the known primaries, then the seeds.
  [[nodiscard]] std::vector<HostPort> candidates() const;
  void assign(int slot, const HostPort& node);
  void replace(const std::vector<SlotRange>& ranges);

 private:
  int index_of(const HostPort& node);  // with mutex_ held

  mutable std::mutex mutex_;
  const std::vector<HostPort> seeds_;
  const std::string url_;
  std::vector<HostPort> nodes_;
  std::vector<std::int16_t> owner_;  // per slot: an index in nodes_, or -1
  bool known_ = false;
};

class ClusterLink final : public Link {
 public:
  ClusterLink(std::shared_ptr<Topology> topology, const ConnectOptions& options);

  [[nodiscard]] Failure connect() override;  // reads the slot map if it is not known yet
  [[nodiscard]] Reply fcall(std::string_view fn, std::string_view key, std::span<const std::string_view> args,
                            bool writes, Retry retry, Failure& failure) override;
  [[nodiscard]] Reply command_on(std::string_view key, std::span<const std::string_view> argv, Retry retry,
                                 Failure& failure, std::chrono::milliseconds extra_wait) override;

  // Reads the slot map again from the first node that answers.
  [[nodiscard]] Failure refresh();
  // The connection to `node` (made on first use).
  [[nodiscard]] Connection& node(const HostPort& node);

 private:
  // Sends a call on `key` to the node that serves its slot (send(connection,
  // failure) makes it), following redirections and riding out failovers
  // within io_timeout.
  template <typename Send>
  Reply route(std::string_view key, Retry retry, Failure& failure, const Send& send);

  // route's steps, each answering: go on, try again (after a pause or a
  // redirection), or stop (failure set).
  struct Route;
  enum class Step { go, again, stop };
  // The node for the slot (or a pending ASK target), reading the map if it
  // is not known.
  Step pick_node(Route& r, std::optional<HostPort>& target, Failure& failure);
  // The connection to `target`, ASKING sent first after an ASK.
  Step open_node(Route& r, const HostPort& target, Connection*& connection, Failure& failure);
  // After a cluster error (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) in `message`,
  // which the call did not run past: never go.
  Step after_refusal(Route& r, std::string_view message, const HostPort& target, Failure& failure);
  // "URL: hash slot N (KEY)", for messages.
  [[nodiscard]] std::string where(const Route& r) const;

  std::shared_ptr<Topology> topology_;
  ConnectOptions options_;  // for the nodes: cluster_node set
  std::map<std::string, std::unique_ptr<Connection>> nodes_;
};

// A new Link to what `endpoint` names: a Connection, or a ClusterLink
// sharing `topology` (made by make_topology) for a cluster.
[[nodiscard]] std::shared_ptr<Topology> make_topology(const Endpoint& endpoint);
[[nodiscard]] std::unique_ptr<Link> make_link(const Endpoint& endpoint, const ConnectOptions& options,
                                              const std::shared_ptr<Topology>& topology);

}  // namespace jobring::detail::redis
