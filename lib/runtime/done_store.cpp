// jobring — DoneStore, the file-backed record of done keys (include/jobring/done_store.hpp).
//
// File format (all integers little-endian):
//
//   header  "JRDONE1\n"                                   8 bytes
//   record  ┌──────┬──────┬─────────┬───────────┬─────┬───────┬──────────┐
//           │ 0xD0 │ 0x4E │ key_len │ value_len │ key │ value │ checksum │
//           │  1   │  1   │ 1 (≥1)  │    2      │     │       │    4     │
//           └──────┴──────┴─────────┴───────────┴─────┴───────┴──────────┘
//   checksum = FNV-1a 32 of key_len .. value (everything but the marker and itself)
//
// Protocol (processes and threads):
//   - writers (open, mark_done) hold flock(LOCK_EX) on the file; readers
//     (contains on a miss, size, for_each) hold flock(LOCK_SH). The kernel
//     drops the lock of a process that dies, so a dead writer never blocks.
//   - A writer first reads whatever other processes appended (refresh), then
//     appends its record with pwrite at the end and fdatasyncs it before it
//     unlocks and returns.
//   - A process killed during its pwrite leaves a prefix of its record at
//     the end (a page-crossing write can stop halfway). A power loss can
//     leave zeros at the end (ext4 extends the size before the data reaches
//     the disk). Both are "torn tails": the next writer, holding the
//     exclusive lock — so no write is in progress — truncates them away
//     before appending. A reader (shared lock) just stops before a torn tail.
//   - Anything else that does not parse (a bad checksum in the middle, a
//     foreign file) is corruption and is reported, never silently dropped:
//     dropping a done-record would make its job run again.
//
// Crash points of mark_done: before the pwrite → nothing recorded (the job's
// side effect may run again); during it → a torn tail, cut off later,
// nothing recorded; after it, before fdatasync returns → recorded in the page
// cache: survives a process crash, maybe not a power loss; after → durable.
#include "jobring/done_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>

#include "common/sys.hpp"
#include "jobring/error.hpp"

namespace jobring {

namespace {

constexpr char kHeader[8] = {'J', 'R', 'D', 'O', 'N', 'E', '1', '\n'};
constexpr unsigned char kMark0 = 0xD0;
constexpr unsigned char kMark1 = 0x4E;
constexpr std::size_t kRecordHead = 5;  // marker (2), key_len (1), value_len (2)
constexpr std::size_t kRecordTail = 4;  // checksum
constexpr std::size_t kMaxRecord = kRecordHead + DoneStore::kMaxKey + DoneStore::kMaxValue + kRecordTail;
constexpr std::size_t kChunk = 1 << 20;  // read the file in pieces of this size

std::uint32_t fnv1a(const unsigned char* p, std::size_t n) noexcept {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

std::uint32_t load32(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

enum class Parse { ok, incomplete, bad };

// Parses the record at p[0..n); on ok sets `length`, `key` and `value`.
Parse parse(const unsigned char* p, std::size_t n, std::size_t& length, std::string_view& key,
            std::string_view& value) noexcept {
  if (n >= 1 && p[0] != kMark0) return Parse::bad;
  if (n >= 2 && p[1] != kMark1) return Parse::bad;
  if (n >= 3 && p[2] == 0) return Parse::bad;  // keys are at least one byte
  if (n < kRecordHead) return Parse::incomplete;
  const std::size_t klen = p[2];
  const std::size_t vlen = static_cast<std::size_t>(p[3]) | static_cast<std::size_t>(p[4]) << 8;
  const std::size_t total = kRecordHead + klen + vlen + kRecordTail;
  length = total;  // also for a bad checksum: the extent the record claims
  if (n < total) return Parse::incomplete;
  if (fnv1a(p + 2, 3 + klen + vlen) != load32(p + kRecordHead + klen + vlen)) return Parse::bad;
  key = {reinterpret_cast<const char*>(p + kRecordHead), klen};
  value = {reinterpret_cast<const char*>(p + kRecordHead + klen), vlen};
  return Parse::ok;
}

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

[[noreturn]] void fail_errno(const std::filesystem::path& path, const std::string& what, int err) {
  throw error(std::error_code(err, std::system_category()),
              "done store " + path.string() + ": " + what + ": " + detail::errno_text(err));
}

// flock for the scope; EINTR retried.
class FileLock {
 public:
  FileLock(int fd, int op, const std::filesystem::path& path) : fd_(fd) {
    while (::flock(fd_, op) != 0) {
      if (errno != EINTR) fail_errno(path, "cannot lock", errno);
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

bool pwrite_all(int fd, const void* data, std::size_t n, off_t at) noexcept {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, at);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    at += w;
  }
  return true;
}

}  // namespace

struct DoneStore::Impl {
  std::filesystem::path path;
  int fd = -1;
  std::mutex mu;  // this object's state and its use of fd
  std::unordered_set<std::string, Hash, std::equal_to<>> keys;
  std::uint64_t offset = sizeof kHeader;  // end of the last record read (or written)
  std::uint64_t torn = 0;
  std::string record;  // reused buffer for appends

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  // Reads the records from `from` to the end of the file, calling fn(key,
  // value) for each; returns where the complete records end. At a record
  // that does not parse: with `exclusive` (no writer can be in progress) a
  // torn tail is cut off and corruption throws; without, the tail is left
  // for a writer to judge.
  template <class F>
  std::uint64_t scan(std::uint64_t from, bool exclusive, F&& fn) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail_errno(path, "cannot stat", errno);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::string buf;
    std::uint64_t at = from;  // file offset of buf[0]
    std::size_t pos = 0;      // parse position in buf
    while (at + pos < size) {
      // Keep at least one whole record (or the rest of the file) in buf.
      if (buf.size() - pos < kMaxRecord && at + buf.size() < size) {
        buf.erase(0, pos);
        at += pos;
        pos = 0;
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size - at - buf.size()));
        const std::size_t old = buf.size();
        buf.resize(old + want);
        std::size_t got = 0;
        while (got < want) {
          const ssize_t r =
              ::pread(fd, buf.data() + old + got, want - got, static_cast<off_t>(at + old + got));
          if (r < 0 && errno == EINTR) continue;
          if (r < 0) fail_errno(path, "cannot read", errno);
          if (r == 0) break;  // the file shrank meanwhile (a writer cut a torn tail)
          got += static_cast<std::size_t>(r);
        }
        buf.resize(old + got);
        if (got == 0) break;
        continue;
      }
      std::size_t length = 0;
      std::string_view key;
      std::string_view value;
      const auto* p = reinterpret_cast<const unsigned char*>(buf.data() + pos);
      const Parse r = parse(p, buf.size() - pos, length, key, value);
      if (r == Parse::ok) {
        fn(key, value);
        pos += length;
        continue;
      }
      const std::uint64_t bad_at = at + pos;
      if (!exclusive) return bad_at;
      // Torn tail, at the very end of the file: a prefix of one record; or
      // zeros to the end; or one record with a bad checksum (written only in
      // part before a power loss) followed by nothing but zeros.
      const bool at_end = at + buf.size() == size;
      auto zeros_from = [&](std::size_t i) {
        for (; i < buf.size(); ++i)
          if (buf[i] != '\0') return false;
        return true;
      };
      const bool torn_tail =
          at_end && (r == Parse::incomplete || zeros_from(pos) ||
                     (length > 0 && pos + length <= buf.size() && zeros_from(pos + length)));
      if (!torn_tail)
        throw error(make_error_code(errc::corrupt_file),
                    "done store " + path.string() + ": corrupt record at byte " + std::to_string(bad_at) +
                        " of " + std::to_string(size) +
                        " (not a torn last write): restore the file from a backup, or truncate it to " +
                        std::to_string(bad_at) + " bytes to keep the records before it");
      if (::ftruncate(fd, static_cast<off_t>(bad_at)) != 0)
        fail_errno(path, "cannot cut off a torn record", errno);
      torn += size - bad_at;
      return bad_at;
    }
    return at + pos;
  }

  void refresh(bool exclusive) {
    offset = scan(offset, exclusive, [this](std::string_view key, std::string_view) { keys.emplace(key); });
  }
};

DoneStore::DoneStore(const std::filesystem::path& file, unsigned mode) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.path = file;
  bool created = true;
  s.fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (s.fd < 0 && errno == EEXIST) {
    created = false;
    s.fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (s.fd < 0) fail_errno(file, "cannot open", errno);
  FileLock lock(s.fd, LOCK_EX, file);
  struct stat st {};
  if (::fstat(s.fd, &st) != 0) fail_errno(file, "cannot stat", errno);
  char head[sizeof kHeader] = {};
  const auto size = static_cast<std::size_t>(st.st_size);
  const std::size_t n = std::min(size, sizeof head);
  if (n > 0 && ::pread(s.fd, head, n, 0) != static_cast<ssize_t>(n)) fail_errno(file, "cannot read", errno);
  if (size < sizeof kHeader && std::memcmp(head, kHeader, n) == 0) {
    // New, or its creator died while writing the header: (re)write it.
    if (!pwrite_all(s.fd, kHeader, sizeof kHeader, 0)) fail_errno(file, "cannot write", errno);
    if (::fdatasync(s.fd) != 0) fail_errno(file, "cannot sync", errno);
    if (created) {
      // The new name must survive a power loss too.
      const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
      const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
      }
    }
  } else if (size < sizeof kHeader || std::memcmp(head, kHeader, sizeof kHeader) != 0) {
    throw error(
        make_error_code(errc::corrupt_file),
        "done store " + file.string() +
            ": not a jobring done store (wrong header): check the path; a new store needs a new file");
  }
  s.refresh(true);
}

DoneStore::~DoneStore() = default;
DoneStore::DoneStore(DoneStore&&) noexcept = default;
DoneStore& DoneStore::operator=(DoneStore&&) noexcept = default;

bool DoneStore::contains(std::string_view key) {
  Impl& s = *impl_;
  std::lock_guard guard(s.mu);
  if (s.keys.find(key) != s.keys.end()) return true;
  FileLock lock(s.fd, LOCK_SH, s.path);
  s.refresh(false);
  return s.keys.find(key) != s.keys.end();
}

bool DoneStore::mark_done(std::string_view key, std::string_view value) {
  Impl& s = *impl_;
  if (key.empty() || key.size() > kMaxKey || value.size() > kMaxValue)
    throw error(make_error_code(errc::invalid_argument),
                "done store " + s.path.string() + ": key of " + std::to_string(key.size()) +
                    " bytes (1 .. 255) or value of " + std::to_string(value.size()) +
                    " bytes (at most 65535)");
  std::lock_guard guard(s.mu);
  if (s.keys.find(key) != s.keys.end()) return false;
  FileLock lock(s.fd, LOCK_EX, s.path);
  s.refresh(true);  // another process may have recorded it; and cut off a torn tail
  if (s.keys.find(key) != s.keys.end()) return false;
  std::string& r = s.record;
  r.clear();
  r.push_back(static_cast<char>(kMark0));
  r.push_back(static_cast<char>(kMark1));
  r.push_back(static_cast<char>(key.size()));
  r.push_back(static_cast<char>(value.size() & 0xFF));
  r.push_back(static_cast<char>(value.size() >> 8));
  r.append(key);
  r.append(value);
  const std::uint32_t sum = fnv1a(reinterpret_cast<const unsigned char*>(r.data()) + 2, r.size() - 2);
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>((sum >> (8 * i)) & 0xFF));
  const auto at = static_cast<off_t>(s.offset);
  if (!pwrite_all(s.fd, r.data(), r.size(), at)) {
    const int err = errno;
    (void)::ftruncate(s.fd, at);  // leave no partial record behind us
    fail_errno(s.path, "cannot append", err);
  }
  if (::fdatasync(s.fd) != 0) fail_errno(s.path, "cannot sync", errno);
  s.offset += r.size();
  s.keys.emplace(key);
  return true;
}

std::size_t DoneStore::size() {
  Impl& s = *impl_;
  std::lock_guard guard(s.mu);
  FileLock lock(s.fd, LOCK_SH, s.path);
  s.refresh(false);
  return s.keys.size();
}

void DoneStore::for_each(const std::function<void(std::string_view key, std::string_view value)>& fn) {
  Impl& s = *impl_;
  std::lock_guard guard(s.mu);
  FileLock lock(s.fd, LOCK_SH, s.path);
  (void)s.scan(sizeof kHeader, false, fn);
}

const std::filesystem::path& DoneStore::path() const noexcept { return impl_->path; }

std::uint64_t DoneStore::torn_bytes_dropped() const noexcept { return impl_->torn; }

}  // namespace jobring
