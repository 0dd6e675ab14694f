// jobring — a queue's name, options and lifecycle: create, open,
// open_or_create, remove, list, and the validation of a segment's header
// before any slot is touched.

#include <dirent.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "ring/core.hpp"

namespace jobring {

using detail::Header;

namespace {

constexpr const char* kShmDir = "/dev/shm";
constexpr const char* kFilePrefix = "jobring.";
constexpr std::size_t kFilePrefixLength = 8;
// How long open() waits for a creator that is still initialising the header.
constexpr milliseconds kInitWait{1000};
// A segment at a queue's name that records no creator (0 bytes, or a header
// with no creator PID) — left by a jobring of layout 2 or older, which built
// segments under their real names — and was last modified longer ago than
// this is abandoned: such a creator spent microseconds between shm_open,
// ftruncate and writing its PID. Only a creator of that older version
// stopped (SIGSTOP) in that window for this long would be taken for dead.
constexpr std::chrono::seconds kAbandonedAfter{10};

// Where a queue lives. A plain name is a segment in /dev/shm; "DIR/NAME"
// (or a plain name with Options::dir) a file-backed one, DIR/jobring.NAME.
struct Place {
  std::string dir;   // empty: /dev/shm
  std::string name;  // what Queue::name() reports: NAME, or DIR/NAME
  std::string file;  // the segment file's full path
  [[nodiscard]] bool durable() const noexcept { return !dir.empty(); }
  [[nodiscard]] std::string directory() const { return durable() ? dir : std::string(kShmDir); }
};

// The longest directory a name may carry (PATH_MAX less the file's name).
constexpr std::size_t kMaxDirLength = 4000;

std::error_code check_plain_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength || name.front() == '.')
    return make_error_code(errc::invalid_name);
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return make_error_code(errc::invalid_name);
  }
  return {};
}

// A directory as a name carries it: absolute, not the root (a name "/q"
// is far likelier a mistake than a wish for /jobring.q), no trailing
// slash, no NUL. /dev/shm itself means memory: the same file as the plain
// name.
std::error_code normal_dir(std::string_view dir, std::string& out) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir.size() < 2 || dir.front() != '/' || dir.size() > kMaxDirLength ||
      dir.find('\0') != std::string_view::npos)
    return make_error_code(errc::invalid_name);
  // One spelling per directory: no empty, "." or ".." component, so that a
  // queue has one name (the janitor's --dead-letter, metrics labels) and
  // "/dev//shm" is not a second way to say memory.
  for (std::size_t at = 1; at <= dir.size();) {
    const std::size_t end = std::min(dir.find('/', at), dir.size());
    const std::string_view part = dir.substr(at, end - at);
    if (part.empty() || part == "." || part == "..") return make_error_code(errc::invalid_name);
    at = end + 1;
  }
  out = dir == kShmDir ? std::string() : std::string(dir);
  return {};
}

// `name` (plain or DIR/NAME) and Options::dir (empty: none) as a Place.
std::error_code place_of(std::string_view name, std::string_view dir_option, Place& out) {
  std::string_view plain = name;
  std::string dir;
  if (const auto slash = name.rfind('/'); slash != std::string_view::npos) {
    plain = name.substr(slash + 1);
    // "DIR//NAME" would be a second spelling of "DIR/NAME".
    if (slash > 0 && name[slash - 1] == '/') return make_error_code(errc::invalid_name);
    if (auto ec = normal_dir(name.substr(0, slash), dir)) return ec;
  }
  if (auto ec = check_plain_name(plain)) return ec;
  if (!dir_option.empty()) {
    std::string from_option;
    if (normal_dir(dir_option, from_option)) return make_error_code(errc::invalid_options);
    if (plain.size() != name.size() && from_option != dir) return make_error_code(errc::invalid_options);
    dir = std::move(from_option);
  }
  out.dir = std::move(dir);
  out.name = out.durable() ? out.dir + "/" + std::string(plain) : std::string(plain);
  out.file = (out.durable() ? out.dir : std::string(kShmDir)) + "/" + kFilePrefix + std::string(plain);
  return {};
}

}  // namespace

namespace detail {

std::string describe(std::string_view name, const std::error_code& ec, const std::string& detail) {
  std::string s = "jobring queue '";
  s.append(name).append("': ").append(ec.message());
  if (!detail.empty()) s.append(" (").append(detail).append(")");
  return s;
}

void throw_error(std::string_view name, std::error_code ec, const std::string& detail) {
  throw error(ec, describe(name, ec, detail));
}

}  // namespace detail

std::string segment_path(std::string_view name) {
  Place place;
  if (place_of(name, {}, place)) return std::string(kShmDir).append("/").append(kFilePrefix).append(name);
  return place.file;
}

void Queue::Impl::attach() noexcept {
  auto* base = static_cast<std::byte*>(segment.data());
  const auto g = detail::geometry(options.capacity, options.max_payload, options.dedup_keys,
                                  durable_line ? detail::kDurableHeaderBytes : detail::kHeaderBytes);
  Ring::attach(base, g, options.capacity, options.max_payload);
  durable = durable_line ? reinterpret_cast<detail::Durable*>(base + detail::kHeaderBytes) : nullptr;
  options.dir = dir;
  sync_always = durable != nullptr && options.sync == Options::Sync::always;
  entries_offset = g.entries_offset;
  // A read-only handle (QueueView) writes no record, so it needs no token
  // (whose lock needs a writable descriptor).
  if (writable) liveness.attach(segment.fd());
  keys.attach(base, g, options.dedup_keys, static_cast<std::uint64_t>(options.dedup_window.count()), *this);
}

std::error_code check_name(std::string_view name) noexcept {
  try {
    Place place;
    return place_of(name, {}, place);
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

void validate_name(std::string_view name) {
  if (auto ec = check_name(name)) detail::throw_error(name, ec, "");
}

namespace {

// A random incarnation id, never 0. getrandom() blocks only until the
// kernel's pool is first seeded at boot; should it fail, the time, the PID
// and an address still tell incarnations apart.
std::uint64_t new_incarnation() noexcept {
  std::uint64_t id = 0;
  if (::getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    id = (static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec)) ^
         (static_cast<std::uint64_t>(::getpid()) << 40) ^ reinterpret_cast<std::uintptr_t>(&id);
  }
  return id != 0 ? id : 1;
}

// Both report through (ec, detail); the public overloads format or throw.
//
// Creation never shows a half-made segment under the queue's name: the
// segment is built with no name (O_TMPFILE), its header written and
// published, and only then linked to /dev/shm/jobring.NAME in one step.
//   creator dies before the link → nothing at the name; the kernel frees the
//     file with the creator's descriptors. Nothing to clean up.
//   creator dies after the link  → a complete, published queue.
// `stale` (open_or_create only): a segment at the name that its creator
// abandoned (judged by do_open), replaced instead of linking next to it.
std::unique_ptr<Queue::Impl> do_create(std::string_view name, const Options& options, std::error_code& ec,
                                       std::string& detail, const detail::Segment* stale = nullptr) {
  Place place;
  if ((ec = place_of(name, options.dir, place))) {
    if (ec == make_error_code(errc::invalid_options))
      detail = "Options::dir '" + std::string(options.dir) +
               "' must be an absolute directory, and the one the name gives if it gives one";
    return nullptr;
  }
  if ((ec = detail::check_options(options, detail))) return nullptr;
  if (options.sync != Options::Sync::none && !place.durable()) {
    ec = make_error_code(errc::invalid_options);
    detail = "a sync policy is for a file-backed queue: give Options::dir (jobring create --dir DIR)";
    return nullptr;
  }
  if (place.durable() && detail::boot_key() == 0) {
    ec = detail::boot_unknown(detail);
    return nullptr;
  }
  gid_t group = detail::kKeepGroup;
  if ((ec = detail::resolve_group(options.group, group, detail))) return nullptr;
  const unsigned mode = detail::mode_for(options);
  const std::uint32_t key_capacity = detail::key_capacity_for(options);
  const std::uint64_t header_bytes = place.durable() ? detail::kDurableHeaderBytes : detail::kHeaderBytes;
  const auto g = detail::geometry(options.capacity, options.max_payload, key_capacity, header_bytes);
  auto impl = std::make_unique<Queue::Impl>();
  detail::Failure failure;
  if (!detail::Segment::create_unnamed(place.directory(), g.total_bytes, mode, group, impl->segment,
                                       failure)) {
    ec = failure.code;
    detail = failure.detail;
    if (ec == make_error_code(errc::permission_denied) && group != detail::kKeepGroup)
      detail += ": this user is not in group '" + std::string(options.group) +
                "': add yourself to it (usermod -aG " + std::string(options.group) +
                " $USER, then log in again), or create the queue as root";
    return nullptr;
  }
  impl->name = place.name;
  impl->dir = place.dir;
  impl->durable_line = place.durable();
  impl->options = options;
  impl->options.mode = mode;
  impl->options.group = {};  // a view of the caller's string: not kept
  impl->options.dedup_keys = key_capacity;
  impl->incarnation = new_incarnation();
  impl->attach();
  // The segment is zero-filled by ftruncate: every state word is FREE with
  // generation 0, every counter 0. Write lines 0 and 1, then publish them.
  Header& h = *impl->header;
  h.identity = detail::Identity{detail::kMagic,
                                place.durable() ? detail::kDurableLayoutVersion : detail::kLayoutVersion,
                                static_cast<std::uint32_t>(header_bytes),
                                options.capacity,
                                options.max_payload,
                                static_cast<std::uint32_t>(g.slot_stride),
                                options.max_attempts,
                                static_cast<std::uint64_t>(options.default_lease.count()),
                                g.states_offset,
                                g.slots_offset,
                                g.total_bytes};
  // Line 8 of a file-backed queue: its clock starts as this boot's
  // CLOCK_MONOTONIC (base 0), anchored to the wall clock (durable.cpp).
  if (impl->durable != nullptr) detail::init_durable(*impl, options);
  h.creator_pid = static_cast<std::uint32_t>(::getpid());
  h.mode = mode;
  h.key_capacity = key_capacity;
  h.keys_offset = g.keys_offset;
  h.dedup_window_ms = static_cast<std::uint64_t>(options.dedup_window.count());
  h.incarnation = impl->incarnation;
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  h.created_realtime_ns =
      static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  h.next_job_id.store(1, std::memory_order_relaxed);
  // Release: pairs with the acquire load of `init` in do_open(); everything
  // above happens-before any opener reads the header. No opener can map the
  // segment before the link below, so none ever waits for this store; the
  // acquire/release pair is kept for segments of older versions, which
  // published under the real name.
  h.init.store(detail::kInitDone, std::memory_order_release);
  // A file-backed queue is on disk, whole, before its name appears: a power
  // cut after create() returned cannot leave a name without its header.
  if (place.durable() && !impl->segment.sync_all(failure)) {
    ec = failure.code;
    detail = failure.detail;
    return nullptr;
  }
  const std::string& file = place.file;
  const bool named =
      stale != nullptr ? impl->segment.replace(file, *stale, failure) : impl->segment.link(file, failure);
  if (!named) {
    ec = failure.code;  // already_exists: someone else's queue is at the name
    detail = failure.detail;
    return nullptr;
  }
  // The same pages through the named file; nothing in them moves.
  if (impl->segment.map_by_name(file)) impl->attach();
  return impl;
}

// True if the segment file was last modified more than kAbandonedAfter ago.
bool untouched_for_long(const detail::Segment& segment) {
  timespec modified{};
  timespec now{};
  if (!segment.modified_at(modified) || ::clock_gettime(CLOCK_REALTIME, &now) != 0) return false;
  return now.tv_sec - modified.tv_sec > kAbandonedAfter.count();
}

// Opens the queue at `name`, waiting up to `init_wait` for a creator (of an
// older jobring) still writing its header. With `abandoned` (open_or_create),
// a segment whose creator is proven dead, or that records no creator and has
// not been touched for kAbandonedAfter, is handed back in it (ec =
// incomplete_segment) for the caller to replace.
// `writable` false (QueueView): opened and mapped read-only.
std::unique_ptr<Queue::Impl> do_open(std::string_view name, std::error_code& ec, std::string& detail,
                                     milliseconds init_wait = kInitWait, detail::Segment* abandoned = nullptr,
                                     bool writable = true) {
  Place place;
  if ((ec = place_of(name, {}, place))) return nullptr;
  const std::string remedy = "; if no creator is at work, remove it (jobring rm " + place.name +
                             ") or let Queue::open_or_create replace it";
  const auto give_up_at = std::chrono::steady_clock::now() + init_wait;
  for (;;) {
    auto impl = std::make_unique<Queue::Impl>();
    detail::Failure failure;
    impl->writable = writable;
    if (!detail::Segment::open(place.file, impl->segment, failure, writable)) {
      ec = failure.code;
      detail = failure.detail;
      return nullptr;
    }
    const std::uint64_t size = impl->segment.size();
    bool in_progress = false;  // a creator may be between shm_open and publishing the header
    bool no_creator = false;   // nothing records who is creating it
    if (size == 0) {
      in_progress = true;
      no_creator = true;
    } else if (size < detail::kHeaderBytes) {
      ec = make_error_code(errc::corrupt_segment);
      detail = "segment of " + std::to_string(size) + " bytes is smaller than a jobring header";
      return nullptr;
    } else {
      const auto* h = static_cast<const Header*>(impl->segment.data());
      // Acquire: pairs with the creator's release store of kInitDone.
      const std::uint32_t init = h->init.load(std::memory_order_acquire);
      if (init != detail::kInitDone) {
        if (h->identity.magic != 0 && h->identity.magic != detail::kMagic) {
          ec = make_error_code(errc::not_a_queue);
          detail = "bad magic";
          return nullptr;
        }
        in_progress = true;
        const std::uint32_t creator = h->creator_pid;
        no_creator = creator == 0;
        if (creator != 0 && detail::proven_dead(creator)) {
          ec = make_error_code(errc::incomplete_segment);
          detail = "creator pid " + std::to_string(creator) + " died before finishing";
          if (abandoned != nullptr) {
            *abandoned = std::move(impl->segment);
          } else {
            detail += remedy;
          }
          return nullptr;
        }
      } else {
        Options options;
        std::uint64_t incarnation = 0;
        bool durable = false;
        if ((ec = detail::validate_header(h, size, options, incarnation, durable, detail))) return nullptr;
        if (place.durable() && !durable) {
          // A /dev/shm segment (layout 6) copied into a directory: it has no
          // boot id, so it would be used after a reboot without recovery.
          ec = make_error_code(errc::incompatible_version);
          detail =
              "a queue in memory's segment (layout 6) outside /dev/shm: it would not be recovered "
              "after a reboot; create the queue there with --dir (Options::dir) and move its jobs";
          return nullptr;
        }
        impl->name = place.name;
        impl->dir = place.dir;
        impl->durable_line = durable;
        impl->options = options;
        impl->incarnation = incarnation;
        impl->attach();
        // A file-backed queue's clock for this boot, after the recovery
        // that the first opener in a new boot runs (durable.cpp).
        if (impl->durable != nullptr && (ec = detail::enter_boot(*impl, detail))) return nullptr;
        return impl;
      }
    }
    if (in_progress && no_creator && abandoned != nullptr && untouched_for_long(impl->segment)) {
      ec = make_error_code(errc::incomplete_segment);
      detail = "abandoned by its creator";
      *abandoned = std::move(impl->segment);
      return nullptr;
    }
    if (in_progress && std::chrono::steady_clock::now() >= give_up_at) {
      ec = make_error_code(errc::incomplete_segment);
      detail = "header not published after " + std::to_string(init_wait.count()) + " ms" + remedy;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::unique_ptr<Queue::Impl> do_open_or_create(std::string_view name_asked, const Options& options,
                                               std::error_code& ec, std::string& detail) {
  Place place;
  if ((ec = place_of(name_asked, options.dir, place))) return nullptr;
  const std::string_view name = place.name;  // DIR/NAME with Options::dir
  if ((ec = detail::check_options(options, detail))) return nullptr;
  // open, create and replace race with other processes doing the same and
  // with remove(): not_found on open means create; already_exists on create
  // (someone linked theirs first) means open again.
  for (int round = 0; round < 100; ++round) {
    detail::Segment abandoned;
    auto impl = do_open(name, ec, detail, kInitWait, &abandoned);
    if (impl) {
      if (std::string diff = detail::options_mismatch(impl->options, options); !diff.empty()) {
        ec = make_error_code(errc::options_mismatch);
        detail = diff + ": remove it (jobring rm " + std::string(name) + ") or ask for what exists";
        return nullptr;
      }
      return impl;
    }
    if (ec == make_error_code(errc::not_found)) {
      impl = do_create(name, options, ec, detail);
    } else if (ec == make_error_code(errc::incomplete_segment) && abandoned.is_open()) {
      impl = do_create(name, options, ec, detail, &abandoned);
    } else {
      return nullptr;
    }
    if (impl || ec != make_error_code(errc::already_exists)) return impl;
  }
  return nullptr;
}

template <typename F>
Queue::Impl* throwing(std::string_view name, F&& f) {
  std::error_code ec;
  std::string detail;
  auto impl = f(ec, detail);
  if (!impl) detail::throw_error(name, ec, detail);
  return impl.release();
}

}  // namespace

Queue::Queue(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Queue::Queue(Queue&&) noexcept = default;
Queue& Queue::operator=(Queue&&) noexcept = default;
Queue::~Queue() = default;

Queue Queue::create(std::string_view name, const Options& options) {
  return Queue(std::unique_ptr<Impl>(
      throwing(name, [&](std::error_code& ec, std::string& d) { return do_create(name, options, ec, d); })));
}
Queue Queue::open(std::string_view name) {
  return Queue(std::unique_ptr<Impl>(
      throwing(name, [&](std::error_code& ec, std::string& d) { return do_open(name, ec, d); })));
}
Queue Queue::open_or_create(std::string_view name, const Options& options) {
  return Queue(std::unique_ptr<Impl>(throwing(
      name, [&](std::error_code& ec, std::string& d) { return do_open_or_create(name, options, ec, d); })));
}

std::optional<Queue> Queue::create(std::string_view name, const Options& options,
                                   std::error_code& ec) noexcept {
  try {
    std::string detail;
    if (auto impl = do_create(name, options, ec, detail)) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}
std::optional<Queue> Queue::open(std::string_view name, std::error_code& ec) noexcept {
  return open(name, ec, kInitWait);
}
std::optional<Queue> Queue::open(std::string_view name, std::error_code& ec,
                                 milliseconds init_wait) noexcept {
  try {
    std::string detail;
    if (auto impl = do_open(name, ec, detail, std::max(init_wait, milliseconds{0}))) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}
std::optional<Queue> Queue::open_or_create(std::string_view name, const Options& options,
                                           std::error_code& ec) noexcept {
  try {
    std::string detail;
    if (auto impl = do_open_or_create(name, options, ec, detail)) {
      ec.clear();
      return Queue(std::move(impl));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}

QueueView QueueView::open(std::string_view name) {
  return QueueView(
      Queue(std::unique_ptr<Queue::Impl>(throwing(name, [&](std::error_code& ec, std::string& d) {
        return do_open(name, ec, d, kInitWait, nullptr, false);
      }))));
}
std::optional<QueueView> QueueView::open(std::string_view name, std::error_code& ec,
                                         milliseconds init_wait) noexcept {
  try {
    std::string detail;
    if (auto impl = do_open(name, ec, detail, std::max(init_wait, milliseconds{0}), nullptr, false)) {
      ec.clear();
      return QueueView(Queue(std::move(impl)));
    }
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return std::nullopt;
}

bool Queue::remove(std::string_view name, std::error_code& ec) noexcept {
  try {
    Place place;
    if ((ec = place_of(name, {}, place))) return false;
    detail::Failure failure;
    if (detail::Segment::remove(place.file, failure)) {
      ec.clear();
      return true;
    }
    ec = failure.code;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return false;
}

namespace {

// Removing is not governed by the queue's mode: /dev/shm is a sticky
// directory, so only the segment's owner (or root) may unlink it. The
// generic permission advice ("a wider mode") cannot help here; say who can.
[[noreturn]] void throw_remove_denied(std::string_view name, std::error_code ec) {
  std::string who = "its owner";
  struct stat st {};
  if (::stat(segment_path(name).c_str(), &st) == 0) {
    who = "its owner, uid " + std::to_string(st.st_uid);
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(4096);
    if (::getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr)
      who = std::string("its owner, user ") + found->pw_name + " (uid " + std::to_string(st.st_uid) + ")";
  }
  if (name.find('/') != std::string_view::npos)
    throw error(ec, "jobring queue '" + std::string(name) +
                        "': permission denied to remove it: removing needs write permission on its directory "
                        "(the queue's own mode does not matter); run jobring rm as a user who has it (" +
                        who + ", or root)");
  throw error(ec, "jobring queue '" + std::string(name) + "': permission denied to remove it: only " + who +
                      " or root can (" + kShmDir +
                      " is a sticky directory, so the queue's mode does not matter); run jobring rm as "
                      "that user");
}

}  // namespace

bool Queue::remove(std::string_view name) {
  std::error_code ec;
  if (remove(name, ec)) return true;
  if (ec == make_error_code(errc::not_found)) return false;
  if (ec == make_error_code(errc::permission_denied)) throw_remove_denied(name, ec);
  detail::throw_error(name, ec, name.find('/') != std::string_view::npos ? "unlink" : "shm_unlink");
}

namespace {

// The queues in directory `path` (their files jobring.NAME), named as
// `prefix` + NAME.
std::vector<std::string> list_in(const char* path, const std::string& prefix, std::error_code& ec) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path);
  if (dir == nullptr) {
    ec = std::error_code(errno, std::system_category());
    return names;
  }
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view file(entry->d_name);
    if (file.size() <= kFilePrefixLength || file.substr(0, kFilePrefixLength) != kFilePrefix) continue;
    const std::string_view name = file.substr(kFilePrefixLength);
    if (!check_plain_name(name)) names.emplace_back(prefix + std::string(name));
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  ec.clear();
  return names;
}

}  // namespace

std::vector<std::string> Queue::list(std::string_view dir, std::error_code& ec) noexcept {
  try {
    std::string normal;
    if ((ec = normal_dir(dir, normal))) return {};
    if (normal.empty()) return list(ec);  // /dev/shm
    return list_in(normal.c_str(), normal + "/", ec);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
}

std::vector<std::string> Queue::list(std::error_code& ec) noexcept {
  std::vector<std::string> names;
  try {
    names = list_in(kShmDir, "", ec);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    names.clear();
  }
  return names;
}

std::vector<std::string> Queue::list() {
  std::error_code ec;
  auto names = list(ec);
  if (ec == std::errc::not_enough_memory) throw std::bad_alloc();
  return names;
}

const std::string& Queue::name() const noexcept { return impl_->name; }
const Options& Queue::options() const noexcept { return impl_->options; }
std::uint64_t Queue::incarnation() const noexcept { return impl_->incarnation; }

}  // namespace jobring
