// Every field of jobring::Stats with its name and kind: the one place where
// statistics are named. `jobring stat` (text and --json) and the janitor's
// Prometheus metrics all walk this table, so a statistic has one name
// everywhere: the Stats field's.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "jobring/queue.hpp"

namespace jobring::tools {

// gauge: a value now (jobs per state, keys held); counter: a total since the
// queue was created, which only grows.
enum class StatKind { gauge, counter };

struct StatField {
  std::string_view name;
  std::uint64_t Stats::*member;
  StatKind kind;
};

// In the order of the fields in jobring::Stats.
inline constexpr std::array<StatField, 25> kStatFields{{
    {"free", &Stats::free, StatKind::gauge},
    {"writing", &Stats::writing, StatKind::gauge},
    {"ready", &Stats::ready, StatKind::gauge},
    {"delayed", &Stats::delayed, StatKind::gauge},
    {"leased", &Stats::leased, StatKind::gauge},
    {"expired", &Stats::expired, StatKind::gauge},
    {"dead", &Stats::dead, StatKind::gauge},
    {"corrupt", &Stats::corrupt, StatKind::gauge},
    {"oldest_lease_ms", &Stats::oldest_lease_ms, StatKind::gauge},
    {"keys_live", &Stats::keys_live, StatKind::gauge},
    {"keys_remembered", &Stats::keys_remembered, StatKind::gauge},
    {"keys_capacity", &Stats::keys_capacity, StatKind::gauge},
    {"pushed", &Stats::pushed, StatKind::counter},
    {"claimed", &Stats::claimed, StatKind::counter},
    {"acked", &Stats::acked, StatKind::counter},
    {"released", &Stats::released, StatKind::counter},
    {"expired_total", &Stats::expired_total, StatKind::counter},
    {"dead_lettered", &Stats::dead_lettered, StatKind::counter},
    {"requeued", &Stats::requeued, StatKind::counter},
    {"purged", &Stats::purged, StatKind::counter},
    {"recovered_writes", &Stats::recovered_writes, StatKind::counter},
    {"reclaimed", &Stats::reclaimed, StatKind::counter},
    {"duplicates", &Stats::duplicates, StatKind::counter},
    {"keys_evicted", &Stats::keys_evicted, StatKind::counter},
    {"keys_full", &Stats::keys_full, StatKind::counter},
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
