// Every field of jobring::Stats with its name, kind and description: the one
// place where statistics are named. `jobring stat` (text and --json) and the
// janitor's Prometheus metrics all walk this table, so a statistic has one
// name everywhere: the Stats field's. The metrics add Prometheus' conventions
// to it (daemon/metrics.cpp): the prefix jobring_, _total on counters, and
// base units (a field in milliseconds, NAME_ms, is NAME_seconds there).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "jobring/queue.hpp"

namespace jobring::tools {

// gauge: a value now (jobs per state, keys held); counter: a total since the
// queue was created, which only grows.
enum class StatKind { gauge, counter };

// `help` is the metric's # HELP text (one line, no backslash or newline).
struct StatField {
  std::string_view name;
  std::uint64_t Stats::*member;
  StatKind kind;
  std::string_view help;
};

// In the order of the fields in jobring::Stats.
inline constexpr std::array<StatField, 33> kStatFields{{
    {"free", &Stats::free, StatKind::gauge, "Job slots free."},
    {"writing", &Stats::writing, StatKind::gauge, "Job slots a producer is writing."},
    {"ready", &Stats::ready, StatKind::gauge, "Jobs claimable now."},
    {"delayed", &Stats::delayed, StatKind::gauge, "Jobs pushed with a delay that has not passed yet."},
    {"leased", &Stats::leased, StatKind::gauge, "Jobs claimed whose lease deadline has not passed."},
    {"expired", &Stats::expired, StatKind::gauge,
     "Jobs claimed whose lease deadline has passed: the next claim takes them over."},
    {"dead", &Stats::dead, StatKind::gauge, "Dead-lettered jobs (attempts used up); requeue or remove them."},
    {"corrupt", &Stats::corrupt, StatKind::gauge, "Job slots with a state word no jobring process writes."},
    {"oldest_lease_ms", &Stats::oldest_lease_ms, StatKind::gauge,
     "Age of the oldest lease still held (0 if none)."},
    {"oldest_ready_ms", &Stats::oldest_ready_ms, StatKind::gauge,
     "Age of the oldest claimable job, since its push, requeue or due time (0 if none)."},
    {"keys_live", &Stats::keys_live, StatKind::gauge, "De-duplication keys of jobs in the queue."},
    {"keys_remembered", &Stats::keys_remembered, StatKind::gauge,
     "De-duplication keys of finished jobs, inside their window."},
    {"keys_capacity", &Stats::keys_capacity, StatKind::gauge, "Entries of the de-duplication key table."},
    {"pushed", &Stats::pushed, StatKind::counter, "Jobs pushed."},
    {"claimed", &Stats::claimed, StatKind::counter, "Claims, takeovers of expired leases included."},
    {"acked", &Stats::acked, StatKind::counter, "Jobs acknowledged (done)."},
    {"released", &Stats::released, StatKind::counter, "Leases given back by their worker."},
    {"expired_total", &Stats::expired_total, StatKind::counter, "Leases taken over after their deadline."},
    {"dead_lettered", &Stats::dead_lettered, StatKind::counter, "Jobs dead-lettered."},
    {"requeued", &Stats::requeued, StatKind::counter, "Dead jobs requeued."},
    {"purged", &Stats::purged, StatKind::counter, "Job slots reset by purge or removal of dead jobs."},
    {"recovered_writes", &Stats::recovered_writes, StatKind::counter,
     "Half-written slots of dead producers freed."},
    {"reclaimed", &Stats::reclaimed, StatKind::counter, "Leases of proven-dead owners returned by a sweep."},
    {"duplicates", &Stats::duplicates, StatKind::counter,
     "Keyed pushes that found their key and added nothing."},
    {"keys_evicted", &Stats::keys_evicted, StatKind::counter,
     "Remembered de-duplication keys dropped before their window ended, for room."},
    {"keys_full", &Stats::keys_full, StatKind::counter,
     "Keyed pushes refused because every key table entry was live."},
    {"moved_out", &Stats::moved_out, StatKind::counter, "Dead jobs moved to another queue."},
    {"moved_in", &Stats::moved_in, StatKind::counter, "Jobs moved in from another queue."},
    {"paused", &Stats::paused, StatKind::gauge, "1 while the queue is paused (no claims), else 0."},
    {"recoveries", &Stats::recoveries, StatKind::counter,
     "File-backed queue: boots it was recovered in (the first open after a reboot)."},
    {"recovered_leases", &Stats::recovered_leases, StatKind::counter,
     "File-backed queue: leases returned by recoveries after a reboot."},
    {"recovered_boot_writes", &Stats::recovered_boot_writes, StatKind::counter,
     "File-backed queue: half-written slots freed by recoveries after a reboot."},
    {"sync_errors", &Stats::sync_errors, StatKind::counter,
     "File-backed queue with sync always: msyncs refused after a commit or an ack (the disk failed)."},
}};

// A field added to jobring::Stats must be named above.
static_assert(sizeof(Stats) == kStatFields.size() * sizeof(std::uint64_t),
              "jobring::Stats has a field that kStatFields does not name");

// Calls f(name, value, kind) for every statistic in `s`, in table order.
template <class F>
void for_each_stat(const Stats& s, F&& f) {
  for (const StatField& field : kStatFields) f(field.name, s.*field.member, field.kind);
}

}  // namespace jobring::tools
