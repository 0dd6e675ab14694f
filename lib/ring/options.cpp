// jobring — what a queue's options may be, what a segment's header must say
// before any slot is touched, and how the options of an existing queue
// differ from the ones asked for.

#include <grp.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <vector>

#include "jobring/duration.hpp"
#include "ring/core.hpp"

namespace jobring::detail {

// The key-table size a queue created with `o` gets: Options::dedup_keys
// rounded up to whole buckets, or the default for 0.
std::uint32_t key_capacity_for(const Options& o) noexcept {
  if (o.dedup_keys == 0) return default_key_capacity(o.capacity);
  return static_cast<std::uint32_t>(round_up(o.dedup_keys, kKeyWays));
}

std::error_code check_options(const Options& o, std::string& detail) {
  auto bad = [&](std::string why) {
    detail = std::move(why);
    return make_error_code(errc::invalid_options);
  };
  if (o.capacity < 1 || o.capacity > kMaxCapacity)
    return bad("capacity " + std::to_string(o.capacity) + " not in 1.." + std::to_string(kMaxCapacity));
  if (o.max_payload < 1 || o.max_payload > kMaxPayload)
    return bad("max_payload " + std::to_string(o.max_payload) + " not in 1.." + std::to_string(kMaxPayload));
  if (!valid_duration(o.default_lease, false))
    return bad("default_lease " + std::to_string(o.default_lease.count()) + " ms not in 1.." +
               std::to_string(kMaxLease.count()) + " ms");
  if (o.mode > 07777) return bad("mode has bits outside 07777");
  if (o.dedup_keys != 0 && (o.dedup_keys < kKeyWays || o.dedup_keys > kMaxKeyCapacity))
    return bad("dedup_keys " + std::to_string(o.dedup_keys) + " not 0 (automatic) or in " +
               std::to_string(kKeyWays) + ".." + std::to_string(kMaxKeyCapacity));
  if (!valid_duration(o.dedup_window, true))
    return bad("dedup_window " + std::to_string(o.dedup_window.count()) + " ms not in 0.." +
               std::to_string(kMaxLease.count()) + " ms");
  if (static_cast<std::uint32_t>(o.sync) > static_cast<std::uint32_t>(Options::Sync::always))
    return bad("sync policy " + std::to_string(static_cast<std::uint32_t>(o.sync)) +
               " is not none, interval or always");
  if (o.sync_interval < kMinSyncInterval || o.sync_interval > kMaxSyncInterval)
    return bad("sync_interval " + std::to_string(o.sync_interval.count()) + " ms not in " +
               std::to_string(kMinSyncInterval.count()) + ".." + std::to_string(kMaxSyncInterval.count()) +
               " ms");
  const auto g = geometry(o.capacity, o.max_payload, key_capacity_for(o));
  if (g.total_bytes > kMaxSegmentBytes)
    return bad("segment of " + std::to_string(g.total_bytes) + " bytes exceeds the limit of " +
               std::to_string(kMaxSegmentBytes) +
               " bytes (capacity x (max_payload + 128) + dedup_keys x 33): lower capacity or max_payload");
  return {};
}

unsigned mode_for(const Options& o) noexcept {
  if (o.mode != 0) return o.mode;
  return o.group.empty() ? 0600u : 0660u;
}

std::error_code resolve_group(std::string_view group, gid_t& out, std::string& detail) {
  out = kKeepGroup;
  if (group.empty()) return {};
  const std::string text(group);
  unsigned long gid = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), gid);
  if (err == std::errc{} && end == text.data() + text.size()) {
    if (gid >= kKeepGroup) {
      detail = "group " + text + ": not a gid";
      return make_error_code(errc::invalid_options);
    }
    out = static_cast<gid_t>(gid);
    return {};
  }
  ::group gr{};
  ::group* found = nullptr;
  std::vector<char> buf(16384);
  int rc = 0;
  while ((rc = ::getgrnam_r(text.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 22))
    buf.resize(buf.size() * 4);
  if (rc != 0 || found == nullptr) {
    detail = "no group named '" + text + "' on this host (see `getent group`): create it (groupadd " + text +
             "), or give an existing group's name or gid";
    return make_error_code(errc::invalid_options);
  }
  out = gr.gr_gid;
  return {};
}

// Validates every header field against the others and against the real size
// of the mapping, before any slot is touched. Returns the options it describes
// and the incarnation.
std::error_code validate_header(const void* base, std::uint64_t size, Options& out,
                                std::uint64_t& incarnation, bool& durable, std::string& detail) {
  // Validate a private copy of line 0: another process may be rewriting the
  // shared one, and what we check must be what we keep.
  const auto* header = static_cast<const Header*>(base);
  Identity copy;
  std::memcpy(&copy, &header->identity, sizeof copy);
  const Identity* h = &copy;
  auto fail = [&](errc e, std::string why) {
    detail = std::move(why);
    return make_error_code(e);
  };
  if (h->magic != kMagic) return fail(errc::not_a_queue, "bad magic");
  // Layout 6 (memory) or 7 (file-backed: one more header line). An older
  // layout (4, 5: no tally blocks, so every offset after the header
  // differs) is refused like a newer one, saying which it is.
  if (h->layout_version != kLayoutVersion && h->layout_version != kDurableLayoutVersion)
    return fail(
        errc::incompatible_version,
        "layout version " + std::to_string(h->layout_version) + ", this library reads versions " +
            std::to_string(kLayoutVersion) + " and " + std::to_string(kDurableLayoutVersion) +
            (h->layout_version > kDurableLayoutVersion
                 ? ": made by a newer jobring; use that version's library and tools"
                 : ": made by an older jobring; drain it with that version, then remove and recreate it"));
  durable = h->layout_version == kDurableLayoutVersion;
  const std::uint64_t header_bytes = durable ? kDurableHeaderBytes : kHeaderBytes;
  if (h->header_bytes != header_bytes || size < header_bytes)
    return fail(errc::corrupt_segment, "header size");
  if (h->capacity < 1 || h->capacity > kMaxCapacity) return fail(errc::corrupt_segment, "capacity");
  if (h->max_payload < 1 || h->max_payload > kMaxPayload) return fail(errc::corrupt_segment, "max_payload");
  // Line 1's key-table fields, also from private copies.
  std::uint32_t key_capacity = 0;
  std::uint64_t keys_offset = 0;
  std::uint64_t dedup_window_ms = 0;
  incarnation = 0;
  std::memcpy(&key_capacity, &header->key_capacity, sizeof key_capacity);
  std::memcpy(&keys_offset, &header->keys_offset, sizeof keys_offset);
  std::memcpy(&dedup_window_ms, &header->dedup_window_ms, sizeof dedup_window_ms);
  std::memcpy(&incarnation, &header->incarnation, sizeof incarnation);
  if (incarnation == 0) return fail(errc::corrupt_segment, "incarnation 0");
  if (key_capacity < kKeyWays || key_capacity > kMaxKeyCapacity || key_capacity % kKeyWays != 0)
    return fail(errc::corrupt_segment, "key table size");
  if (dedup_window_ms > static_cast<std::uint64_t>(kMaxLease.count()))
    return fail(errc::corrupt_segment, "de-duplication window");
  const auto g = geometry(h->capacity, h->max_payload, key_capacity, header_bytes);
  if (h->slot_stride != g.slot_stride || h->states_offset != g.states_offset ||
      h->slots_offset != g.slots_offset || h->total_bytes != g.total_bytes || keys_offset != g.keys_offset)
    return fail(errc::corrupt_segment, "geometry fields disagree with capacity and max_payload");
  if (g.total_bytes != size)
    return fail(errc::corrupt_segment, "segment is " + std::to_string(size) + " bytes, header says " +
                                           std::to_string(g.total_bytes));
  if (h->default_lease_ms < 1 || h->default_lease_ms > static_cast<std::uint64_t>(kMaxLease.count()))
    return fail(errc::corrupt_segment, "default lease");
  out.capacity = h->capacity;
  out.max_payload = h->max_payload;
  out.default_lease = milliseconds(static_cast<std::int64_t>(h->default_lease_ms));
  out.max_attempts = h->max_attempts;
  out.dedup_keys = key_capacity;
  out.dedup_window = milliseconds(static_cast<std::int64_t>(dedup_window_ms));
  out.mode = header->mode & 07777;  // informative only: no bound depends on it
  out.sync = Options::Sync::none;
  if (durable) {
    // Line 8's fixed fields, from private copies too.
    const auto* line = reinterpret_cast<const Durable*>(static_cast<const std::byte*>(base) + kHeaderBytes);
    std::uint32_t sync = 0;
    std::uint32_t interval_ms = 0;
    std::memcpy(&sync, &line->sync, sizeof sync);
    std::memcpy(&interval_ms, &line->sync_interval_ms, sizeof interval_ms);
    if (sync > static_cast<std::uint32_t>(Options::Sync::always))
      return fail(errc::corrupt_segment, "sync policy");
    if (interval_ms < kMinSyncInterval.count() || interval_ms > kMaxSyncInterval.count())
      return fail(errc::corrupt_segment, "sync interval");
    out.sync = static_cast<Options::Sync>(sync);
    out.sync_interval = milliseconds(interval_ms);
  }
  return {};
}

const char* sync_name(Options::Sync s) noexcept {
  switch (s) {
    case Options::Sync::none:
      return "none";
    case Options::Sync::interval:
      return "interval";
    case Options::Sync::always:
      return "always";
  }
  return "?";
}

// Empty if the queue `impl` opened has the options asked for, else what
// differs: "capacity 2 exists, 4096 asked; ...". The fields that count are
// the geometry (capacity, max_payload, the de-duplication table's size) and
// the contract (max_attempts, default_lease, dedup_window); mode is not.
std::string options_mismatch(const Options& stored, const Options& asked) {
  std::string out;
  auto differ = [&](const char* field, const std::string& have, const std::string& want,
                    const char* note = "") {
    if (have == want) return;
    if (!out.empty()) out += "; ";
    out.append(field).append(" ").append(have).append(" exists, ").append(want).append(" asked").append(note);
  };
  differ("capacity", std::to_string(stored.capacity), std::to_string(asked.capacity));
  differ("max_payload", std::to_string(stored.max_payload), std::to_string(asked.max_payload));
  differ("dedup_keys", std::to_string(stored.dedup_keys), std::to_string(key_capacity_for(asked)),
         asked.dedup_keys == 0 ? " (automatic)" : "");
  differ("max_attempts", std::to_string(stored.max_attempts), std::to_string(asked.max_attempts));
  differ("default_lease", jobring::format_duration(stored.default_lease),
         jobring::format_duration(asked.default_lease));
  differ("dedup_window", jobring::format_duration(stored.dedup_window),
         jobring::format_duration(asked.dedup_window));
  differ("sync", sync_name(stored.sync), sync_name(asked.sync));
  if (stored.sync == Options::Sync::interval && asked.sync == Options::Sync::interval)
    differ("sync_interval", jobring::format_duration(stored.sync_interval),
           jobring::format_duration(asked.sync_interval));
  return out;
}

}  // namespace jobring::detail
