#include "ring/segment.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "common/sys.hpp"
#include "jobring/error.hpp"
#include "ring/testing.hpp"

namespace jobring::detail {

namespace bip = boost::interprocess;

// A segment opened by name goes through Boost; one built by
// create_unnamed() is an O_TMPFILE descriptor and a mapping of our own
// (Boost has no way to make a file without a name).
struct Segment::Impl {
  bip::shared_memory_object shm;
  bip::mapped_region region;
  int fd = -1;  // create_unnamed() only
  void* base = nullptr;
  std::uint64_t size = 0;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (base != nullptr) ::munmap(base, size);
    if (fd >= 0) ::close(fd);
  }
  [[nodiscard]] int handle() const noexcept { return fd >= 0 ? fd : shm.get_mapping_handle().handle; }
};

namespace {

std::atomic<SyncObserver> g_sync_observer{nullptr};  // testing.hpp
std::atomic<int> g_sync_failure{0};                  // testing.hpp

std::error_code from_errno(int err) noexcept {
  switch (err) {
    case ENOENT:
      return make_error_code(errc::not_found);
    case EEXIST:
      return make_error_code(errc::already_exists);
    case EACCES:
    case EPERM:
      return make_error_code(errc::permission_denied);
    case EINVAL:
    case ENAMETOOLONG:
      return make_error_code(errc::invalid_name);
    default:
      return make_error_code(errc::system_error);
  }
}

void fail(Failure& failure, const char* what, int err) {  // may throw std::bad_alloc
  failure.code = from_errno(err);
  failure.detail = std::string(what) + ": " + errno_text(err) + " (errno " + std::to_string(err) + ")";
}

int native_error(const bip::interprocess_exception& e) noexcept {
  const int err = e.get_native_error();
  return err != 0 ? err : EIO;
}

bool map(Segment::Impl& impl, Failure& failure, bool writable) {
  try {
    bip::offset_t size = 0;
    if (!impl.shm.get_size(size)) {
      fail(failure, "fstat", errno);
      return false;
    }
    if (size == 0) return true;  // nothing to map: the caller reports it
    impl.region = bip::mapped_region(impl.shm, writable ? bip::read_write : bip::read_only, 0,
                                     static_cast<std::size_t>(size));
    return true;
  } catch (const bip::interprocess_exception& e) {
    fail(failure, "mmap", native_error(e));
    return false;
  }
}

}  // namespace

Segment::Segment() noexcept = default;
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

void* Segment::data() const noexcept {
  if (!impl_) return nullptr;
  return impl_->fd >= 0 ? impl_->base : impl_->region.get_address();
}
std::uint64_t Segment::size() const noexcept {
  if (!impl_) return 0;
  return impl_->fd >= 0 ? impl_->size : impl_->region.get_size();
}
int Segment::fd() const noexcept { return impl_ ? impl_->handle() : -1; }

bool Segment::modified_at(timespec& out) const noexcept {
  struct stat st {};
  if (!impl_ || ::fstat(impl_->handle(), &st) != 0) return false;
  out = st.st_mtim;
  return true;
}

namespace {

constexpr std::string_view kShmPrefix = "/dev/shm/";

// A path in /dev/shm (opened with shm_open, through Boost), and the name
// shm_open takes for it.
bool in_shm(const std::string& path) noexcept {
  return path.size() > kShmPrefix.size() && path.compare(0, kShmPrefix.size(), kShmPrefix) == 0 &&
         path.find('/', kShmPrefix.size()) == std::string::npos;
}
std::string shm_name(const std::string& path) { return path.substr(kShmPrefix.size()); }
std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// fsync of a directory, so that a name made or removed in it survives a
// power cut. Best effort: a file system that cannot (EINVAL) has nothing to do.
void sync_dir(const std::string& dir) noexcept {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string user_name(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return pw.pw_name;
  return "uid " + std::to_string(uid);
}

std::string group_name(gid_t gid) {
  group gr{};
  group* found = nullptr;
  char buf[4096];
  if (::getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found != nullptr) return gr.gr_name;
  return std::to_string(gid);
}

// After EACCES on `path`: who may open it, and how this user gets in (README,
// "Access model").
std::string access_hint(const std::string& path, bool writable) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  const unsigned mode = st.st_mode & 07777;
  const std::string group = group_name(st.st_gid);
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode);
  std::string hint = path + " is owner " + user_name(st.st_uid) + ", group " + group + ", mode " + octal;
  if (writable && ::faccessat(AT_FDCWD, path.c_str(), R_OK, AT_EACCESS) == 0)
    hint += "; this user may only read it: look at it read-only (jobring stat / peek / ls, QueueView)";
  if ((mode & 060) == 060)
    hint += "; members of group " + group + " may open it: add the user to it (usermod -aG " + group +
            " $USER, then log in again)";
  else
    hint += "; to share it, recreate it with a group and mode 0660 (jobring create --group G)";
  return hint;
}

// linkat() of an O_TMPFILE descriptor: through /proc/self/fd (any user), or,
// where /proc is missing, AT_EMPTY_PATH (CAP_DAC_READ_SEARCH, or a kernel
// that lets the opener do it). Returns 0 or an errno.
int link_fd(int fd, const std::string& path) noexcept {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) return 0;
  const int err = errno;
  if (err != ENOENT) return err;
  if (::linkat(fd, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH) == 0) return 0;
  return errno == ENOENT ? err : errno;
}

}  // namespace

bool Segment::create_unnamed(const std::string& dir, std::uint64_t bytes, unsigned mode, gid_t group,
                             Segment& out, Failure& failure) {
  auto impl = std::make_unique<Impl>();
  const bool shm = dir == "/dev/shm";
  // No name, no O_EXCL race, nothing to clean up: the file exists only
  // through this descriptor until link() names it.
  impl->fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (impl->fd < 0) {
    const int err = errno;
    fail(failure, ("open(" + dir + ", O_TMPFILE)").c_str(), err);
    if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL)
      failure.detail += shm ? ": /dev/shm must be a tmpfs of Linux 3.11 or later (O_TMPFILE)"
                            : ": the directory must be on a local file system that supports O_TMPFILE "
                              "(ext4, xfs, btrfs, tmpfs)";
    if (err == ENOENT && !shm)
      failure.detail += ": create the directory first (mkdir -p " + dir +
                        "; the janitor's package makes "
                        "/var/lib/jobring)";
    if (err == EACCES && !shm) failure.detail += ": this user may not create files in " + dir;
    return false;
  }
  // The group first, while the file has no name: nobody ever sees the queue
  // with the creator's group. (chown by a non-root user may clear set-id
  // bits: the fchmod after it sets the mode asked for.)
  if (group != kKeepGroup && ::fchown(impl->fd, static_cast<uid_t>(-1), group) != 0) {
    fail(failure, ("fchown(gid " + std::to_string(group) + ")").c_str(), errno);
    return false;
  }
  // Exactly `mode`: the umask applied to open()'s mode does not apply here.
  if (::fchmod(impl->fd, static_cast<mode_t>(mode)) != 0) {
    fail(failure, "fchmod", errno);
    return false;
  }
  if (::ftruncate(impl->fd, static_cast<off_t>(bytes)) != 0) {
    fail(failure, "ftruncate", errno);
    return false;
  }
  // Give the segment its memory now. /dev/shm is a tmpfs whose pages are
  // allocated when first touched: without this, a queue larger than the room
  // left in /dev/shm (containers often have 64 MiB) would be created fine and
  // then kill its users with SIGBUS at some later push. With it, memory is
  // fixed at creation (guarantee 7) and a lack of room is an error now.
  if (const int err = ::posix_fallocate(impl->fd, 0, static_cast<off_t>(bytes));
      err != 0 && err != EOPNOTSUPP && err != EINVAL) {
    fail(failure, "posix_fallocate", err);
    if (err == ENOSPC)
      failure.detail = "not enough room in " + dir + " for a segment of " + std::to_string(bytes) +
                       " bytes: see `df -h " + dir + "`; free room" +
                       (shm ? ", enlarge it (mount -o remount,size=...)," : "") +
                       " or create the queue with a smaller capacity or max_payload";
    return false;
  }
  void* base =
      ::mmap(nullptr, static_cast<std::size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, impl->fd, 0);
  if (base == MAP_FAILED) {
    fail(failure, "mmap", errno);
    return false;
  }
  impl->base = base;
  impl->size = bytes;
  out.impl_ = std::move(impl);
  return true;
}

bool Segment::sync_all(Failure& failure) const {
  if (::fsync(impl_->handle()) != 0) {
    fail(failure, "fsync", errno);
    return false;
  }
  return true;
}

bool Segment::sync_range(std::uint64_t offset, std::uint64_t length) const noexcept {
  if (!impl_ || length == 0) return true;
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t first = offset / page * page;
  const std::uint64_t end = std::min(size(), offset + length);
  if (end <= first) return true;
  if (const int err = g_sync_failure.load(std::memory_order_relaxed); err != 0) [[unlikely]] {
    errno = err;
    return false;
  }
  if (::msync(static_cast<std::byte*>(data()) + first, end - first, MS_SYNC) != 0) return false;
  if (const SyncObserver seen = g_sync_observer.load(std::memory_order_relaxed))
    seen(data(), first, end - first);
  return true;
}

void set_sync_failure_for_testing(int err) noexcept { g_sync_failure.store(err, std::memory_order_relaxed); }

void set_sync_observer_for_testing(SyncObserver observer) noexcept {
  g_sync_observer.store(observer, std::memory_order_relaxed);
}

bool Segment::link(const std::string& path, Failure& failure) {
  if (const int err = link_fd(impl_->fd, path); err != 0) {
    fail(failure, "linkat", err);
    return false;
  }
  if (!in_shm(path)) sync_dir(dir_of(path));
  return true;
}

bool Segment::replace(const std::string& path, const Segment& stale, Failure& failure) {
  const int stale_fd = stale.impl_->handle();
  // Replacers of one stale file take turns on its lock; a replacer killed
  // while holding it releases it with its descriptors. Blocking is bounded:
  // a holder does one fstatat, one unlink and one linkat under it.
  while (::flock(stale_fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      fail(failure, "flock", errno);
      return false;
    }
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock{stale_fd};
  struct stat judged {};
  struct stat now {};
  if (::fstat(stale_fd, &judged) != 0) {
    fail(failure, "fstat", errno);
    return false;
  }
  // Still the file that was judged, at the size it was judged at? If not, a
  // previous replacer (or a remove and a create) put another one there: that
  // one is the queue now.
  if (::fstatat(AT_FDCWD, path.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_dev != judged.st_dev ||
      now.st_ino != judged.st_ino || static_cast<std::uint64_t>(judged.st_size) != stale.size()) {
    failure.code = make_error_code(errc::already_exists);
    failure.detail = "replaced meanwhile";
    return false;
  }
  // Crash analysis (the replacer dies):
  //   holding the lock, before the unlink → the lock goes with its
  //     descriptors; the stale file stays; the next open_or_create replaces it.
  //   after the unlink, before the link → the name is free; the next
  //     open_or_create creates the queue. Nobody was using the stale file:
  //     its creator is dead and it was never published.
  //   after the link → a complete queue at the name.
  // Left open: a `remove` of the stale name and a create of a fresh queue,
  // both between the fstatat above and this unlink (microseconds), would
  // have the fresh queue unlinked here. Only replacers unlink a name
  // without a user asking, and they take turns on the stale file's lock.
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail(failure, "unlink", errno);
    return false;
  }
  return link(path, failure);
}

bool Segment::map_by_name(const std::string& path) {
  Segment named;
  Failure ignored;
  if (!open(path, named, ignored) || named.size() != size()) return false;
  struct stat mine {};
  struct stat theirs {};
  if (::fstat(impl_->handle(), &mine) != 0 || ::fstat(named.impl_->handle(), &theirs) != 0 ||
      mine.st_dev != theirs.st_dev || mine.st_ino != theirs.st_ino)
    return false;
  *this = std::move(named);
  return true;
}

namespace {

// A segment outside /dev/shm (a file-backed queue): open(2) without
// following a symbolic link, and a mapping of our own.
bool open_file(const std::string& path, Segment::Impl& impl, Failure& failure, bool writable) {
  impl.fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
  if (impl.fd < 0) {
    const int err = errno;
    fail(failure, "open", err);
    if (err == EACCES) failure.detail += "; " + access_hint(path, writable);
    if (err == ELOOP || err == EISDIR) {
      failure.code = make_error_code(errc::not_a_queue);
      failure.detail = path + (err == ELOOP ? " is a symbolic link" : " is a directory");
    }
    return false;
  }
  return true;
}

}  // namespace

bool Segment::open(const std::string& path, Segment& out, Failure& failure, bool writable) {
  auto impl = std::make_unique<Impl>();
  const bool shm = in_shm(path);
  if (!shm) {
    if (!open_file(path, *impl, failure, writable)) return false;
  } else {
    try {
      impl->shm = bip::shared_memory_object(bip::open_only, shm_name(path).c_str(),
                                            writable ? bip::read_write : bip::read_only);
    } catch (const bip::interprocess_exception& e) {
      const int err = native_error(e);
      fail(failure, "shm_open", err);
      if (err == EACCES) failure.detail += "; " + access_hint(path, writable);
      // The name was validated before we got here, so these mean that
      // something other than a segment sits at it: glibc's shm_open turns
      // EISDIR into EINVAL, and its O_NOFOLLOW makes a symlink ELOOP.
      if (err == EINVAL || err == ELOOP) {
        failure.code = make_error_code(errc::not_a_queue);
        failure.detail = path + (err == ELOOP ? " is a symbolic link" : " is a directory");
      }
      return false;
    }
  }
  // Only a regular file can be a segment. Anyone may make a FIFO in
  // /dev/shm: without this check it would look like a segment whose creator
  // has not sized it yet, and open() would wait for it and then report
  // "never fully initialised".
  struct stat st {};
  if (::fstat(impl->handle(), &st) != 0) {
    fail(failure, "fstat", errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    failure.code = make_error_code(errc::not_a_queue);
    failure.detail = path + " is not a regular file";
    return false;
  }
  if (shm) {
    if (!map(*impl, failure, writable)) return false;
  } else if (st.st_size > 0) {
    const auto bytes = static_cast<std::size_t>(st.st_size);
    void* base =
        ::mmap(nullptr, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, impl->fd, 0);
    if (base == MAP_FAILED) {
      fail(failure, "mmap", errno);
      return false;
    }
    impl->base = base;
    impl->size = bytes;
  }
  out.impl_ = std::move(impl);
  return true;
}

bool Segment::remove(const std::string& path, Failure& failure) {
  // Boost's remove() swallows errno; the distinction between "no such queue"
  // and "permission denied" matters to the user, so call shm_unlink here.
  // shm_unlink takes "/NAME": the path less its "/dev/shm" (the slash kept).
  const bool shm = in_shm(path);
  const char* shm_arg = path.c_str() + (kShmPrefix.size() - 1);
  if (shm ? ::shm_unlink(shm_arg) != 0 : ::unlink(path.c_str()) != 0) {
    fail(failure, shm ? "shm_unlink" : "unlink", errno);
    return false;
  }
  if (!shm) sync_dir(dir_of(path));
  return true;
}

}  // namespace jobring::detail
