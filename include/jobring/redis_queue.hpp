// jobring — the same leased job queue on a Redis 7 server (or Valkey), for
// producers and workers on several hosts.
//
// A RedisQueue has Queue's method names, argument and result types
// (queue.hpp: Options, PushOptions, PushResult, ClaimOptions, ClaimStatus,
// Job, Lease, LeaseStatus, Stats, JobInfo, PurgeWhat), so that code written
// against one compiles against the other (and AnyQueue, any_queue.hpp,
// serves both behind one handle: the Worker and idempotent() run on it).
// Each operation is one call of a Redis function (lib/redis/jobring.lua),
// which the server runs atomically: claim gives and hides a job in one step,
// and ack / release / extend check the lease's fencing token before they
// change anything (else lease_lost, nothing changed).
//
//   auto q = jobring::RedisQueue::open_or_create("redis://10.0.0.5:6379", "orders",
//                                                {.capacity = 100000, .default_lease = 30s});
//   q.push("{\"order\": 42}");
//   jobring::Job job;
//   if (q.claim(job, 5s) == jobring::ClaimStatus::ok) { do_it(job.text()); q.ack(job.lease); }
//
// URL: redis://HOST:PORT or redis+unix:///PATH/redis.sock (one server), or
// redis+cluster://HOST:PORT,HOST:PORT,... (a Redis Cluster: any of its nodes
// as seeds; one that answers is enough). No TLS (hiredis 0.14 has none):
// across hosts use a private network, or stunnel / an SSH tunnel to the
// server's unix socket.
//
// Redis Cluster: every key of a queue carries the hash tag {jr:NAME}, so a
// queue lives on one shard (the primary serving its hash slot, and that
// primary's replicas) and queues spread over the shards by name. Each call
// goes to that primary; the client reads the slot map (CLUSTER SLOTS) and
// follows the cluster's redirections (MOVED, ASK) and waits out its refusals
// (TRYAGAIN, CLUSTERDOWN) and a primary that stopped answering, within
// RedisOptions::io_timeout of the call's start, so that a shard failover
// (cluster-node-timeout plus about a second) is ridden out by calls that are
// safe to repeat (see "Network failures" below); past it, unavailable. The
// function library is loaded on each primary when a client first connects
// to it. list(url) scans every primary. A cluster's shard fails over as a
// replicated server does (below). Resharding: Redis moves a slot's keys one
// by one, and a call that finds some of its queue's keys moved fails
// part-way (server_error): move the slots of queues in use only when they
// are drained.
//
// Time: deadlines and delays are kept in the server's clock (TIME), never a
// client's, so hosts with skewed clocks agree. Job::deadline is this host's
// steady_clock when the claim was sent plus the lease: never later than the
// server's deadline.
//
// Thread safety: a RedisQueue may be used from many threads at once: it
// keeps a pool of connections, one per call in flight (a blocked claim holds
// one for its wait).
//
// Crash safety: a client that dies before its call reached the server
// changed nothing; one that dies after it changed what the call changes,
// whether or not the answer reached it. A dead worker's lease ends at its
// deadline and the next claim takes the job back, counting the attempt.
// Guarantees on the server's side: a push is durable as far as the server's
// persistence is (use appendonly yes with appendfsync everysec or always).
// A failover to an asynchronous replica may lose the writes the replica had
// not received: a push (gone), an ack (the job is done again), a claim (the
// job is given again, and its first holder's ack, release or extend is
// lease_lost: fencing tokens and job ids are floored by the server's clock
// in microseconds, so a new primary never gives one twice as long as the
// servers' clocks agree to better than the failover's length).
// RedisOptions::wait_replicas makes each such write answered only once a
// replica has it (else errc::timeout: it may be lost). The server's
// maxmemory-policy must not evict keys: noeviction (or a volatile-*
// policy: jobs' keys have no TTL; only a finished job's remembered
// de-duplication key can go early); connecting to a server with an
// allkeys-* policy is refused (unsafe_server_config). A
// server at maxmemory refuses pushes (server_error, OOM) but still runs the
// claims, acks and purges that drain it.
//
// Network failures are environment errors, not outcomes: every call that
// talks to the server reports errc::unavailable (refused, reset, closed),
// errc::timeout (no answer within RedisOptions::io_timeout: a stopped or
// unreachable server; the call may or may not have taken effect),
// errc::server_error (e.g. OOM) or errc::protocol_error. Therefore, unlike
// Queue's, ack / release / give_back / extend / ack_many / stats / requeue /
// purge / pause are not noexcept: the plain forms throw jobring::error, the
// forms taking std::error_code& never throw. A dropped connection is opened
// again once and the call sent again when that is harmless (claims, lease
// calls, reads, keyed pushes); a push without a key is not sent twice (it
// could add the job twice): it reports unavailable, and the caller decides.
// (A claim sent twice may leave a lease nobody holds: the job comes back at
// its deadline with an attempt counted. An ack sent twice whose first went
// through answers lease_lost: the job is gone either way.)
//
// What differs from Queue, and what is not here yet:
// - Lease: job = the job id, token = the fencing token (a number that grows
//   on every claim and extend of the queue), slot = 0 (there are no slots).
//   Ids and tokens are at least the server's clock in microseconds when
//   given (about 1.8e15 in 2026), not counts from 1.
// - Owner::process records "host:pid" as the lease's owner, for operators;
//   it is never checked (the token is), and no janitor reclaims a dead
//   owner's lease early: leases end at their deadline.
// - Capacity counts jobs (ready, delayed, leased and dead), not slots; it is
//   a bound on the server's memory use per queue, fixed at creation.
// - De-duplication keys are remembered (PushOptions::key) while their job is
//   in the queue and dedup_window after; there is no table to fill, so
//   Options::dedup_keys is ignored and Stats::keys_* are 0.
// - Blocking: a blocked claim (a push waiting for room) sleeps in BLPOP on a
//   marker list that pushes (acks) fill, bounded by the next due time the
//   server reported; it also wakes once a second to look at its stop flag and
//   interrupt_waits() (wake_waits() does not reach it).
// - Stats::oldest_lease_ms looks at the 16 leases nearest their deadline;
//   Stats::free = capacity - jobs; writing, corrupt, recovered_writes,
//   reclaimed, keys_*, moved_* are 0. JobInfo::slot and owner_pid are 0.
// - The function library is loaded by the client (its version is a hash of
//   its text): all clients of one server must run one jobring version, or
//   each replaces the others' library.
// - The connect timeout does not bound the host name's resolution
//   (getaddrinfo): name the server by address, or by a unix socket, where a
//   stuck resolver would matter.
// - Not yet: QueueView, Options::mode / group (access is the
//   server's: ACLs), Sentinel (a redis:// URL names
//   one server: after a standalone failover, open the queue on the new
//   primary; a Cluster's failovers are followed).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "jobring/error.hpp"
#include "jobring/queue.hpp"

namespace jobring {

struct RedisOptions {
  std::chrono::milliseconds connect_timeout{2000};  // per connection attempt
  // Per network call: a server that does not answer within it is `timeout`
  // (a blocked claim's wait comes on top).
  std::chrono::milliseconds io_timeout{5000};
  // Refuse a server whose maxmemory-policy can evict the queue's keys, or
  // whose CONFIG GET is refused (then check by hand, and turn this off).
  bool check_eviction_policy = true;
  // Acknowledgement by replicas (WAIT): when > 0, every call that changes a
  // queue is followed, in the same round trip, by WAIT for this many
  // replicas, up to wait_timeout. Fewer replicas in time is errc::timeout,
  // although the call took effect on the primary: a failover then could
  // lose it (a push: push again with its key; an ack: the job may be done
  // again). Asynchronous replication still: a failover between the write
  // and WAIT's answer can lose the write; this narrows the window to it.
  // On a Cluster, the replicas of the queue's shard. After a failover the
  // new primary has one replica fewer: with wait_replicas equal to the
  // replica count, writes answer timeout until one is added. A replica
  // that has just synced can take its ACK period (1 s) to acknowledge the
  // first write: keep wait_timeout above a second.
  int wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{1000};
};

class RedisQueue {
 public:
  // --- Lifecycle. As Queue's, on the server `url` names. create:
  // already_exists if the name is taken; open: not_found if not;
  // open_or_create: options_mismatch naming the fields that differ
  // (capacity, max_payload, default_lease, max_attempts, dedup_window).
  [[nodiscard]] static RedisQueue create(std::string_view url, std::string_view name,
                                         const Options& options = {}, const RedisOptions& redis = {});
  [[nodiscard]] static RedisQueue open(std::string_view url, std::string_view name,
                                       const RedisOptions& redis = {});
  [[nodiscard]] static RedisQueue open_or_create(std::string_view url, std::string_view name,
                                                 const Options& options = {}, const RedisOptions& redis = {});
  // Deletes the queue's keys (jobs, leases and all); handles on it find it
  // gone (not_found, lease_lost). False if there was no such queue. One
  // server call, as long as the queue is large.
  static bool remove(std::string_view url, std::string_view name, const RedisOptions& redis = {});

  [[nodiscard]] static std::optional<RedisQueue> create(std::string_view url, std::string_view name,
                                                        const Options& options, std::error_code& ec,
                                                        const RedisOptions& redis = {}) noexcept;
  [[nodiscard]] static std::optional<RedisQueue> open(std::string_view url, std::string_view name,
                                                      std::error_code& ec,
                                                      const RedisOptions& redis = {}) noexcept;
  [[nodiscard]] static std::optional<RedisQueue> open_or_create(std::string_view url, std::string_view name,
                                                                const Options& options, std::error_code& ec,
                                                                const RedisOptions& redis = {}) noexcept;
  static bool remove(std::string_view url, std::string_view name, std::error_code& ec,
                     const RedisOptions& redis = {}) noexcept;

  RedisQueue(RedisQueue&&) noexcept;
  RedisQueue& operator=(RedisQueue&&) noexcept;
  ~RedisQueue();

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] const Options& options() const noexcept;  // as stored on the server
  [[nodiscard]] std::uint64_t incarnation() const noexcept;
  [[nodiscard]] const std::string& url() const noexcept;

  // --- Producer. As Queue's. PushOptions::stop and interrupt_waits() are
  // seen within a second while waiting for room.
  PushResult push(std::span<const std::byte> payload, const PushOptions& options = {});
  PushResult push(std::string_view payload, const PushOptions& options = {});
  PushResult push(std::span<const std::byte> payload, const PushOptions& options,
                  std::error_code& ec) noexcept;
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids = {},
                        const PushOptions& options = {});
  std::size_t push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                        const PushOptions& options, std::error_code& ec) noexcept;

  // --- Worker. As Queue's; claims take expired leases back first.
  ClaimStatus try_claim(Job& job, const ClaimOptions& options = {});
  [[nodiscard]] std::optional<Job> try_claim(const ClaimOptions& options = {});
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options = {});
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options = {});
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options = {});
  ClaimStatus try_claim(Job& job, const ClaimOptions& options, std::error_code& ec) noexcept;
  ClaimStatus claim(Job& job, milliseconds wait, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t try_claim_many(std::span<Job> jobs, const ClaimOptions& options, std::error_code& ec) noexcept;
  std::size_t claim_many(std::span<Job> jobs, milliseconds wait, const ClaimOptions& options,
                         std::error_code& ec) noexcept;

  // One job from the first of `queues` (1 .. Queue::kMaxClaimAny, tried in
  // the order given) that has one, as Queue::claim_any. A wait sleeps in one
  // BLPOP on every queue's wake-up list when the queues are on one server
  // (one URL, not a Cluster); else it looks at them in turn every 100 ms.
  // Either way it also wakes once a second for its stop flag.
  static Queue::ClaimAnyResult claim_any(std::span<RedisQueue* const> queues, Job& job, milliseconds wait,
                                         const ClaimOptions& options = {});
  static Queue::ClaimAnyResult claim_any(std::span<RedisQueue* const> queues, Job& job, milliseconds wait,
                                         const ClaimOptions& options, std::error_code& ec) noexcept;

  // Each changes something only while `lease` is current; else lease_lost.
  // With `ec` set, the outcome is unknown (see the top of this file) and the
  // LeaseStatus returned is lease_lost.
  LeaseStatus ack(const Lease& lease);
  LeaseStatus ack(const Lease& lease, std::error_code& ec) noexcept;
  LeaseStatus release(const Lease& lease, milliseconds delay = milliseconds{0});
  LeaseStatus release(const Lease& lease, milliseconds delay, std::string_view error);
  LeaseStatus release(const Lease& lease, milliseconds delay, std::string_view error,
                      std::error_code& ec) noexcept;
  LeaseStatus give_back(const Lease& lease);
  LeaseStatus give_back(const Lease& lease, std::error_code& ec) noexcept;
  LeaseStatus extend(Lease& lease, milliseconds lease_time);
  LeaseStatus extend(Job& job, milliseconds lease_time);  // also updates job.deadline
  LeaseStatus extend(Lease& lease, milliseconds lease_time, std::error_code& ec) noexcept;
  std::size_t ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results = {});
  std::size_t ack_many(std::span<const Lease> leases, std::span<LeaseStatus> results,
                       std::error_code& ec) noexcept;

  // --- Operators.
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] Stats stats(std::error_code& ec) const noexcept;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit = 100) const;
  [[nodiscard]] std::vector<JobInfo> peek(JobState state, std::size_t limit,
                                          std::error_code& ec) const noexcept;
  bool requeue(JobId dead_job);
  std::size_t requeue_dead();
  bool remove_dead(JobId dead_job);
  std::size_t purge(PurgeWhat what = PurgeWhat::all);
  // As Queue::move_dead: this queue's dead jobs into `to` (another queue, on
  // this server or another), as dead jobs there with their attempts, age and
  // note, or with options.as_ready as new ready jobs (a redrive). Per job: a
  // push into `to` under the key "#moved/<this queue's incarnation>/<id>.<time
  // of death>", then the removal here; a mover that dies between the two
  // leaves the job in both, and the next move finds the key in `to` and only
  // removes it here — never lost, not doubled while `to` remembers the key.
  // A job larger than `to`'s max_payload stays (too_large); a full `to` ends
  // the move (target_full). The plain form throws error (invalid_argument
  // if `to` is this queue, a network error with how many moved before it).
  MoveResult move_dead(RedisQueue& to, const MoveOptions& options = {});
  MoveResult move_dead(RedisQueue& to, const MoveOptions& options, std::error_code& ec) noexcept;
  bool pause();
  bool resume();
  [[nodiscard]] bool paused() const;
  // One recovery pass, as every claim runs first: leases past their
  // deadline go back to ready (or dead, if their attempts are used up).
  // Only `expired` and `dead_lettered` are counted: no owner is proven dead
  // (reclaimed = 0) and no write is ever half done (recovered_writes = 0).
  SweepResult sweep();
  SweepResult sweep(std::error_code& ec) noexcept;

  // Names of every jobring queue on the server (sorted): a SCAN of its
  // keys, so it takes time linear in the server's key count.
  [[nodiscard]] static std::vector<std::string> list(std::string_view url, const RedisOptions& redis = {});
  [[nodiscard]] static std::vector<std::string> list(std::string_view url, std::error_code& ec,
                                                     const RedisOptions& redis = {}) noexcept;

  struct Impl;

 private:
  explicit RedisQueue(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jobring
