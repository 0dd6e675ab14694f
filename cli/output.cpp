// What the subcommands print: payloads as JSON, job states, a queue's
// statistics (as JSON and as text), and the check that it was all written.
#include <cerrno>
#include <cstdio>
#include <sstream>

#include "cli.hpp"
#include "common/errno_text.hpp"
#include "common/stats.hpp"
#include "text.hpp"

namespace jobring::cli {

std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Text is valid UTF-8 without NUL bytes (which many consumers of JSON
// strings, and every shell variable, cannot hold); anything else is binary.
bool is_text(std::string_view s) { return s.find('\0') == std::string_view::npos && is_utf8(s); }

std::string payload_json(std::span<const std::byte> payload) {
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (is_text(text)) return "\"payload\":" + json_string(text) + ",\"payload_encoding\":\"utf8\"";
  return "\"payload\":\"" + base64_encode(payload) + "\",\"payload_encoding\":\"base64\"";
}

std::string state_name(JobState s) {
  switch (s) {
    case JobState::ready:
      return "ready";
    case JobState::delayed:
      return "delayed";
    case JobState::leased:
      return "leased";
    case JobState::dead:
      return "dead";
  }
  return "?";
}

std::string incarnation_text(std::uint64_t incarnation) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(incarnation));
  return buf;
}

std::string stats_json_members(const Snapshot& snap) {
  const Options& o = snap.options;
  std::ostringstream out;
  // The incarnation as a string of 16 hex digits: a JSON number loses
  // integers above 2^53 in most readers.
  out << "\"name\":" << json_string(snap.name) << ",\"incarnation\":\"" << incarnation_text(snap.incarnation)
      << '"' << ",\"capacity\":" << o.capacity << ",\"max_payload\":" << o.max_payload
      << ",\"default_lease_ms\":" << o.default_lease.count() << ",\"max_attempts\":" << o.max_attempts
      << ",\"dedup_window_ms\":" << o.dedup_window.count();
  tools::for_each_stat(snap.stats, [&](std::string_view field, std::uint64_t value, tools::StatKind) {
    out << ",\"" << field << "\":" << value;
  });
  return out.str();
}

std::string stats_json(const Snapshot& snap) { return '{' + stats_json_members(snap) + '}'; }

std::string age_text(std::uint64_t ms) {
  constexpr std::uint64_t kSecond = 1000, kMinute = 60 * kSecond, kHour = 60 * kMinute, kDay = 24 * kHour;
  if (ms < kSecond) return std::to_string(ms) + "ms";
  if (ms < kMinute) return std::to_string(ms / kSecond) + "s";
  if (ms < kHour) return std::to_string(ms / kMinute) + "m";
  if (ms < 2 * kDay) return std::to_string(ms / kHour) + "h";
  return std::to_string(ms / kDay) + "d";
}

std::string job_json(const JobInfo& j) {
  std::ostringstream out;
  out << "{\"job\":" << j.id << ",\"state\":\"" << state_name(j.state) << "\",\"attempts\":" << j.attempts
      << ",\"ms_until\":" << j.ms_until << ",\"owner_pid\":" << j.owner_pid
      << ",\"enqueued_ms_ago\":" << j.enqueued_ms_ago;
  if (j.state == JobState::dead) {
    // null: the slot holds no note for this death (JobInfo::error).
    out << ",\"failed_ms_ago\":";
    if (j.failed_ms_ago)
      out << *j.failed_ms_ago;
    else
      out << "null";
    out << ",\"error\":";
    if (!j.failed_ms_ago)
      out << "null";
    else if (is_text(j.error))
      out << json_string(j.error);
    else  // garbled by racing writers, or not text to begin with
      out << '"' << base64_encode(bytes(j.error)) << "\",\"error_encoding\":\"base64\"";
  }
  out << ',' << payload_json(j.payload) << '}';
  return out.str();
}

std::string job_line(const JobInfo& j) {
  const std::string_view text(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
  std::string line = "job " + std::to_string(j.id) + "  " + state_name(j.state) + "  attempts " +
                     std::to_string(j.attempts) + "  enqueued " + age_text(j.enqueued_ms_ago) + " ago";
  if (j.state == JobState::delayed || j.state == JobState::leased)
    line += "  in " + std::to_string(j.ms_until) + "ms";
  if (j.owner_pid != 0) line += "  owner pid " + std::to_string(j.owner_pid);
  if (j.state == JobState::dead && j.failed_ms_ago) {
    line += "  died " + age_text(*j.failed_ms_ago) + " ago: ";
    line += is_text(j.error) ? json_string(j.error) : "base64:" + base64_encode(bytes(j.error));
  }
  line += "  ";
  line += is_text(text) ? json_string(text.substr(0, 200)) : "base64:" + base64_encode(j.payload);
  return line;
}

namespace {

// "  LABEL  name value  name value ...", wrapped before 110 columns with the
// continuation lines indented under the first value.
void print_stat_line(const char* label, const Stats& s, tools::StatKind kind) {
  constexpr std::size_t kWidth = 110;
  char head[32];
  std::snprintf(head, sizeof head, "  %-10s", label);
  const std::string indent(std::string_view(head).size(), ' ');
  std::string line = head;
  bool first = true;
  tools::for_each_stat(s, [&](std::string_view field, std::uint64_t value, tools::StatKind k) {
    if (k != kind) return;
    const std::string item = std::string(field) + ' ' + std::to_string(value);
    if (!first && line.size() + 2 + item.size() > kWidth) {
      std::printf("%s\n", line.c_str());
      line = indent;
      first = true;
    }
    line += (first ? "" : "  ") + item;
    first = false;
  });
  std::printf("%s\n", line.c_str());
}

}  // namespace

void print_stats(const Snapshot& snap) {
  const std::string& name = snap.name;
  const Stats& s = snap.stats;
  const Options& o = snap.options;
  // The segment's mode on shared memory; on Redis, the server (access is its own: ACLs).
  char mode[16];
  std::snprintf(mode, sizeof mode, "mode %04o", o.mode);
  const std::string where = on_redis() ? "server " + queue_url() : std::string(mode);
  std::printf(
      "queue %s: capacity %u, max payload %u bytes, lease %s, max attempts %u, %s, dedup window %s, "
      "incarnation %s\n",
      name.c_str(), o.capacity, o.max_payload, format_duration(o.default_lease).c_str(), o.max_attempts,
      where.c_str(), format_duration(o.dedup_window).c_str(), incarnation_text(snap.incarnation).c_str());
  if (s.paused) std::printf("  PAUSED: claims hand out nothing until `jobring resume %s`\n", name.c_str());
  if (!o.dir.empty()) {
    const char* sync = o.sync == Options::Sync::always     ? "always"
                       : o.sync == Options::Sync::interval ? "interval"
                                                           : "none";
    std::printf(
        "  file-backed: %s, sync %s%s; recovered in %llu boot%s\n", segment_path(name).c_str(), sync,
        o.sync == Options::Sync::interval ? (" every " + format_duration(o.sync_interval)).c_str() : "",
        static_cast<unsigned long long>(s.recoveries), s.recoveries == 1 ? "" : "s");
  }
  print_stat_line("gauges:", s, tools::StatKind::gauge);
  print_stat_line("counters:", s, tools::StatKind::counter);
  if (s.corrupt)
    std::printf("  CORRUPT %llu (jobring purge %s resets them)\n", static_cast<unsigned long long>(s.corrupt),
                name.c_str());
}

// Output that could not be written (a full disk, a closed file) makes the
// exit status an error: a script must not take a lost answer for a good one.
// (A claim whose JSON was lost stays claimed until its lease runs out.)
int checked_exit(int code) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
    std::fprintf(stderr, "jobring: cannot write the output: %s\n", tools::errno_text(errno).c_str());
    return code == kOk ? kError : code;
  }
  return code;
}

}  // namespace jobring::cli
