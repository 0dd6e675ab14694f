// `jobring top`: a live view of every queue on the host (or of the named
// ones), one row per queue, refreshed in place.
//
// Every frame lists the queues again and opens each afresh, so a queue
// created or removed between frames appears or disappears, and a queue
// removed and created again under its name (a new incarnation) starts its
// rates over. (On Redis the handles stay open between frames, and one whose
// stats fail, e.g. a queue removed, is opened again the frame after.) A
// queue that cannot be opened is a row with the reason; the view goes on. Rates are the change of a Stats
// total between two frames of the same incarnation, per second of the time between the two snapshots; a
// queue's first frame has none ("-" in text, null in JSON).
//
// Output: on a terminal (without --once or --json) each frame is redrawn in
// place on the alternate screen with plain ANSI escapes (no curses), and the
// terminal is restored when the view ends, by --frames, SIGINT or SIGTERM (the
// handlers only set a flag: the loop ends and Screen's destructor restores
// it). Otherwise frames are printed one after another without escapes;
// --json prints one JSON object per frame, one line each (JSON Lines), with
// every statistic of `stat --json` per queue plus its rates.
//
// Not shown: how many workers are waiting. The segment keeps no waiter count,
// on purpose (lib/ring/wait.hpp: a count would leak when a waiter is killed
// in its sleep), and its event words hold only a "someone may be sleeping"
// bit, which stays set after a waiter gives up until the next push or
// release: it cannot tell no waiter from one or ten.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "common/signals.hpp"
#include "text.hpp"

namespace jobring::cli {

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  std::vector<std::string> names;  // sorted; empty: every queue on the host
  milliseconds interval{1000};
  std::uint32_t frames = 0;  // 0: until interrupted
  bool json = false;
};

// The totals that have a rate, per second.
struct Rates {
  double pushed = 0;
  double claimed = 0;
  double acked = 0;
  double dead_lettered = 0;
};

// One queue in one frame.
struct Row {
  std::string name;
  bool open = false;  // false: it could not be opened, `error` says why
  std::string error;
  Options options{};
  std::uint64_t incarnation = 0;
  Stats stats{};
  Clock::time_point at{};      // when `stats` was taken
  std::optional<Rates> rates;  // empty on the queue's first frame
};

// A queue's snapshot in the last frame, for the next frame's rates.
struct Previous {
  std::uint64_t incarnation = 0;
  Stats stats{};
  Clock::time_point at{};
};
using History = std::map<std::string, Previous>;

// The rates of `r` since its last frame; none if it had none, or was another
// incarnation, or a total went down (only a hostile write does that).
std::optional<Rates> rates_since(const Row& r, const History& history) {
  const auto it = history.find(r.name);
  if (it == history.end() || it->second.incarnation != r.incarnation) return std::nullopt;
  const double seconds = std::chrono::duration<double>(r.at - it->second.at).count();
  if (seconds <= 0) return std::nullopt;
  bool grew = true;
  auto rate = [&](std::uint64_t Stats::*total) {
    const std::uint64_t before = it->second.stats.*total;
    const std::uint64_t now = r.stats.*total;
    if (now < before) grew = false;
    return now < before ? 0.0 : static_cast<double>(now - before) / seconds;
  };
  const Rates rates{rate(&Stats::pushed), rate(&Stats::claimed), rate(&Stats::acked),
                    rate(&Stats::dead_lettered)};
  if (!grew) return std::nullopt;
  return rates;
}

// The queues of a Redis server stay open from frame to frame (an open is a
// connection and a round trip); a queue gone from the list is closed.
using Handles = std::map<std::string, AnyQueue>;

// Opens every queue and takes its statistics; keeps them in `history` for
// the next frame (a queue gone from this frame is forgotten).
std::vector<Row> sample(const Settings& s, History& history, Handles& handles) {
  std::vector<Row> rows;
  History next;
  const std::vector<std::string> names =
      s.names.empty() ? AnyQueue::list(queue_url(), redis_options()) : s.names;
  std::erase_if(handles,
                [&](const auto& h) { return std::find(names.begin(), names.end(), h.first) == names.end(); });
  for (const auto& name : names) {
    Row r;
    r.name = name;
    std::error_code ec;
    if (on_redis()) {
      auto it = handles.find(name);
      if (it == handles.end()) {
        if (auto q = AnyQueue::open(queue_url(), name, ec, redis_options()))
          it = handles.emplace(name, std::move(*q)).first;
      }
      if (it != handles.end()) {
        r.stats = it->second.stats(ec);
        r.options = it->second.options();
        r.incarnation = it->second.incarnation();
        if (ec) handles.erase(it);  // removed, or the server went away: open it again next frame
      }
      r.open = !ec;
    } else {
      // No wait for a creator still at work (only an older jobring leaves a
      // half-made segment at a name): the row says so, the next frame looks again.
      const auto q = QueueView::open(name, ec, 0ms);  // read-only: a readable queue is shown too
      if (q) {
        r.stats = q->stats();
        r.options = q->options();
        r.incarnation = q->incarnation();
        r.open = true;
      }
    }
    if (r.open) {
      r.at = Clock::now();
      r.rates = rates_since(r, history);
      next[name] = Previous{r.incarnation, r.stats, r.at};
    } else {
      r.error = ec.message();
    }
    rows.push_back(std::move(r));
  }
  history = std::move(next);
  return rows;
}

// --- The text view: one column table, so that a column is one line.

enum class Format { count, of_capacity, rate, age };

struct Column {
  const char* header;
  int width;
  Format format;
  std::optional<double> (*value)(const Row&);  // nullopt: unknown, shown as "-"
};

std::optional<double> count(std::uint64_t v) noexcept { return static_cast<double>(v); }
// An age in milliseconds, of which 0 means "nothing that old" (Stats' convention).
std::optional<double> age(std::uint64_t ms) noexcept { return ms == 0 ? std::nullopt : count(ms); }
std::optional<double> rate(const Row& r, double Rates::*member) noexcept {
  if (!r.rates) return std::nullopt;
  return (*r.rates).*member;
}

// The columns after NAME, in order.
constexpr std::array kColumns{
    Column{"READY", 7, Format::count, [](const Row& r) { return count(r.stats.ready); }},
    // The age of the oldest claimable job: the queue's main alerting signal.
    Column{"OLDEST", 9, Format::age, [](const Row& r) { return age(r.stats.oldest_ready_ms); }},
    Column{"DELAYED", 7, Format::count, [](const Row& r) { return count(r.stats.delayed); }},
    Column{"LEASED", 7, Format::count, [](const Row& r) { return count(r.stats.leased); }},
    Column{"EXPIRED", 7, Format::count, [](const Row& r) { return count(r.stats.expired); }},
    Column{"DEAD", 6, Format::count, [](const Row& r) { return count(r.stats.dead); }},
    Column{"FREE/CAP", 15, Format::of_capacity, [](const Row& r) { return count(r.stats.free); }},
    Column{"PUSH/s", 9, Format::rate, [](const Row& r) { return rate(r, &Rates::pushed); }},
    Column{"CLAIM/s", 9, Format::rate, [](const Row& r) { return rate(r, &Rates::claimed); }},
    Column{"ACK/s", 9, Format::rate, [](const Row& r) { return rate(r, &Rates::acked); }},
    Column{"DEAD/s", 7, Format::rate, [](const Row& r) { return rate(r, &Rates::dead_lettered); }},
    Column{"LEASE-AGE", 9, Format::age, [](const Row& r) { return age(r.stats.oldest_lease_ms); }},
};

// 850ms, 4.2s, 3m07s, 2h05m.
std::string age_text(std::uint64_t ms) {
  char buf[40];
  const auto n = static_cast<unsigned long long>(ms);
  if (ms < 1000)
    std::snprintf(buf, sizeof buf, "%llums", n);
  else if (ms < 60'000)
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  else if (ms < 3'600'000)
    std::snprintf(buf, sizeof buf, "%llum%02llus", n / 60'000, n / 1000 % 60);
  else
    std::snprintf(buf, sizeof buf, "%lluh%02llum", n / 3'600'000, n / 60'000 % 60);
  return buf;
}

std::string cell(const Column& c, const Row& r) {
  const std::optional<double> v = c.value(r);
  if (!v) return "-";
  const auto n = static_cast<unsigned long long>(*v);
  char buf[64];
  switch (c.format) {
    case Format::count:
      std::snprintf(buf, sizeof buf, "%llu", n);
      break;
    case Format::of_capacity:
      std::snprintf(buf, sizeof buf, "%llu/%u", n, r.options.capacity);
      break;
    case Format::rate:
      std::snprintf(buf, sizeof buf, "%.1f", *v);
      break;
    case Format::age:
      return age_text(n);
  }
  return buf;
}

std::string padded(const std::string& s, std::size_t width, bool right) {
  if (s.size() >= width) return s;
  const std::string fill(width - s.size(), ' ');
  return right ? fill + s : s + fill;
}

// "jobring top: 3 queues at 12:04:05, every 1s (Ctrl-C quits)".
std::string title(std::size_t queues, const Settings& s, bool live) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  char clock[16] = "?";
  if (::localtime_r(&now, &local) != nullptr) std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
  std::string t =
      "jobring top: " + std::to_string(queues) + (queues == 1 ? " queue" : " queues") + " at " + clock;
  if (s.frames != 1) t += ", every " + format_duration(s.interval);
  if (live) t += " (Ctrl-C quits)";
  return t;
}

// NAME, marked while the queue is paused (no claims: its READY only grows).
std::string shown_name(const Row& r) { return r.open && r.stats.paused != 0 ? r.name + " [paused]" : r.name; }

std::vector<std::string> text_frame(const std::vector<Row>& rows, const Settings& s, bool live) {
  std::size_t name_width = 4;
  for (const auto& r : rows) name_width = std::max(name_width, shown_name(r).size());
  std::vector<std::string> lines{title(rows.size(), s, live), ""};
  std::string head = padded("NAME", name_width, false);
  for (const auto& c : kColumns) head += ' ' + padded(c.header, static_cast<std::size_t>(c.width), true);
  lines.push_back(head);
  for (const auto& r : rows) {
    std::string line = padded(shown_name(r), name_width, false);
    if (!r.open) line += "  (cannot open: " + r.error + ")";
    for (const auto& c : kColumns)
      if (r.open) line += ' ' + padded(cell(c, r), static_cast<std::size_t>(c.width), true);
    lines.push_back(line);
  }
  if (rows.empty())
    lines.push_back(on_redis() ? "(no queues on " + queue_url() + "; `jobring create NAME` makes one)"
                               : "(no queues on this host; `jobring create NAME` makes one)");
  return lines;
}

// --- JSON: one line per frame.

std::string rates_json(const std::optional<Rates>& rates) {
  if (!rates) return "null";
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"pushed\":%.3f,\"claimed\":%.3f,\"acked\":%.3f,\"dead_lettered\":%.3f}",
                rates->pushed, rates->claimed, rates->acked, rates->dead_lettered);
  return buf;
}

std::string json_frame(const std::vector<Row>& rows, const Settings& s) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  std::ostringstream out;
  out << "{\"time_ms\":" << std::chrono::duration_cast<milliseconds>(now).count()
      << ",\"interval_ms\":" << s.interval.count() << ",\"queues\":[";
  bool first = true;
  for (const auto& r : rows) {
    out << (first ? "{" : ",{");
    first = false;
    if (r.open)
      out << stats_json_members(Snapshot{r.name, r.options, r.incarnation, r.stats})
          << ",\"per_second\":" << rates_json(r.rates);
    else
      out << "\"name\":" << json_string(r.name) << ",\"error\":" << json_string(r.error);
    out << '}';
  }
  out << "]}";
  return out.str();
}

// --- The terminal.

// While the view is live: the alternate screen, the cursor hidden; the
// destructor gives the terminal back as it was (also on an exception).
class Screen {
 public:
  explicit Screen(bool live) : live_(live) {
    if (live_) std::fputs("\033[?1049h\033[?25l", stdout);
  }
  ~Screen() {
    if (!live_) return;
    std::fputs("\033[?25h\033[?1049l", stdout);
    std::fflush(stdout);
  }
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  // Live: overwrites the last frame from the top left, each line cut to the
  // terminal's width, as many lines as fit (the last says how many did not).
  // Otherwise: the lines as they are.
  void show(const std::vector<std::string>& lines) const {
    if (!live_) {
      for (const auto& l : lines) std::printf("%s\n", l.c_str());
      return;
    }
    winsize ws{};
    const bool sized = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 1;
    const std::size_t width = sized ? ws.ws_col : std::string::npos;
    const std::size_t fit = sized ? ws.ws_row - 1u : lines.size();  // no newline scrolls the screen
    std::string out = "\033[H";
    for (std::size_t i = 0; i < lines.size() && i < fit; ++i) {
      std::string line = lines[i];
      if (i + 1 == fit && lines.size() > fit)
        line = "... " + std::to_string(lines.size() - i) + " more: a taller window, or name the queues";
      out += line.substr(0, width) + "\033[K\n";
    }
    std::fputs((out + "\033[J").c_str(), stdout);
  }

 private:
  bool live_;
};

// Sleeps until `when`; false if SIGINT or SIGTERM came first.
bool sleep_until(Clock::time_point when) {
  while (!tools::stop_requested()) {
    const auto now = Clock::now();
    if (now >= when) return true;
    std::this_thread::sleep_for(std::min<Clock::duration>(when - now, 20ms));
  }
  return false;
}

int show_frames(const Settings& s) {
  const bool live = s.frames != 1 && !s.json && ::isatty(STDOUT_FILENO) == 1;
  (void)tools::install_stop_handlers();
  Screen screen(live);
  History history;
  Handles handles;
  for (std::uint32_t frame = 1;; ++frame) {
    const auto start = Clock::now();
    const std::vector<Row> rows = sample(s, history, handles);
    if (s.json) {
      std::printf("%s\n", json_frame(rows, s).c_str());
    } else {
      if (frame > 1 && !live) std::printf("\n");
      screen.show(text_frame(rows, s, live));
    }
    // A reader that went away (a closed pipe, a full disk) ends the view;
    // main's checked_exit reports it.
    if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) return kOk;
    if (frame == s.frames || !sleep_until(start + s.interval)) return kOk;
  }
}

Settings settings(const Command& c, const po::variables_map& vm) {
  Settings s;
  if (vm.count("queues")) s.names = vm["queues"].as<std::vector<std::string>>();
  for (const auto& name : s.names)
    if (auto ec = jobring::check_name(name)) usage(c.name, "bad queue name '" + name + "': " + ec.message());
  std::sort(s.names.begin(), s.names.end());
  s.names.erase(std::unique(s.names.begin(), s.names.end()), s.names.end());
  s.interval = duration_arg(c, vm, "interval", 1s);
  if (s.interval.count() == 0) usage(c.name, "--interval must be at least 1ms");
  const bool once = vm.count("once") > 0;
  if (once && vm.count("frames")) usage(c.name, "give --once or --frames N, not both");
  if (vm.count("frames")) {
    s.frames = count_arg(c, vm, "frames");
    if (s.frames == 0) usage(c.name, "--frames must be at least 1");
  }
  if (once) s.frames = 1;
  s.json = vm.count("json") > 0;
  return s;
}

}  // namespace

int cmd_top(const Args& args) {
  Command c{"top", "[QUEUE...] [--interval D] [--once | --frames N] [--json]",
            "A live view of every queue on this host, or of the QUEUEs named: jobs per state, free slots\n"
            "of the capacity, push / claim / ack / dead-letter rates per second (\"-\" in a queue's first\n"
            "frame), the age of the oldest waiting job (OLDEST) and of the oldest lease (LEASE-AGE). On a\n"
            "terminal it redraws in place until Ctrl-C;\n"
            "otherwise (or with --once) frames follow one another, without escapes. A queue that cannot\n"
            "be opened shows why in its row. Workers waiting for jobs are not shown: queues do not count\n"
            "them. On Redis (--url, JOBRING_URL): every queue on the server, its statistics fetched at\n"
            "each refresh."};
  c.options.add_options()("interval", po::value<std::string>()->default_value("1s"), "time between frames")(
      "once", "one frame, without escapes, then exit")("frames", po::value<std::string>(),
                                                       "N frames, then exit (for scripts and tests)")(
      "json",
      "one JSON object per frame, one line each (JSON Lines): every statistic of `stat --json` per "
      "queue, and \"per_second\" rates (null in a queue's first frame)");
  c.hidden.add_options()("queues", po::value<std::vector<std::string>>());
  c.positional.add("queues", -1);
  const auto vm = parse(c, args);
  return show_frames(settings(c, vm));
}

}  // namespace jobring::cli
