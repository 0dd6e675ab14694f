#include "ring/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>

#include "common/sys.hpp"
#include "jobring/error.hpp"

namespace jobring::detail {

namespace bip = boost::interprocess;

struct Segment::Impl {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

namespace {

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

bool map(Segment::Impl& impl, Failure& failure) {
  try {
    bip::offset_t size = 0;
    if (!impl.shm.get_size(size)) {
      fail(failure, "fstat", errno);
      return false;
    }
    if (size == 0) return true;  // nothing to map: the caller reports it
    impl.region = bip::mapped_region(impl.shm, bip::read_write, 0, static_cast<std::size_t>(size));
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

void* Segment::data() const noexcept { return impl_ ? impl_->region.get_address() : nullptr; }
int Segment::fd() const noexcept { return impl_ ? impl_->shm.get_mapping_handle().handle : -1; }
std::uint64_t Segment::size() const noexcept { return impl_ ? impl_->region.get_size() : 0; }

bool Segment::create(const std::string& file_name, std::uint64_t bytes, unsigned mode, Segment& out,
                     Failure& failure) {
  auto impl = std::make_unique<Impl>();
  try {
    bip::permissions perm(static_cast<int>(mode));
    impl->shm = bip::shared_memory_object(bip::create_only, file_name.c_str(), bip::read_write, perm);
  } catch (const bip::interprocess_exception& e) {
    fail(failure, "shm_open(O_CREAT|O_EXCL)", native_error(e));
    return false;
  }
  // From here on the name exists: a failure must remove it again, so that a
  // half-made segment never stays behind.
  try {
    impl->shm.truncate(static_cast<bip::offset_t>(bytes));
  } catch (const bip::interprocess_exception& e) {
    fail(failure, "ftruncate", native_error(e));
    bip::shared_memory_object::remove(file_name.c_str());
    return false;
  }
  // Give the segment its memory now. /dev/shm is a tmpfs whose pages are
  // allocated when first touched: without this, a queue larger than the room
  // left in /dev/shm (containers often have 64 MiB) would be created fine and
  // then kill its users with SIGBUS at some later push. With it, memory is
  // fixed at creation (guarantee 7) and a lack of room is an error now.
  if (const int err = ::posix_fallocate(impl->shm.get_mapping_handle().handle, 0, static_cast<off_t>(bytes));
      err != 0 && err != EOPNOTSUPP && err != EINVAL) {
    fail(failure, "posix_fallocate", err);
    if (err == ENOSPC)
      failure.detail = "not enough room in /dev/shm for a segment of " + std::to_string(bytes) +
                       " bytes: see `df -h /dev/shm`; free room, enlarge it (mount -o remount,size=...), "
                       "or create the queue with a smaller capacity or max_payload";
    bip::shared_memory_object::remove(file_name.c_str());
    return false;
  }
  if (!map(*impl, failure)) {
    bip::shared_memory_object::remove(file_name.c_str());
    return false;
  }
  out.impl_ = std::move(impl);
  return true;
}

bool Segment::open(const std::string& file_name, Segment& out, Failure& failure) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->shm = bip::shared_memory_object(bip::open_only, file_name.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    const int err = native_error(e);
    fail(failure, "shm_open", err);
    // The name was validated before we got here, so these mean that
    // something other than a segment sits at it: glibc's shm_open turns
    // EISDIR into EINVAL, and its O_NOFOLLOW makes a symlink ELOOP.
    if (err == EINVAL || err == ELOOP) {
      failure.code = make_error_code(errc::not_a_queue);
      failure.detail = "/dev/shm/" + file_name + (err == ELOOP ? " is a symbolic link" : " is a directory");
    }
    return false;
  }
  // Only a regular file can be a segment. Anyone may make a FIFO in
  // /dev/shm: without this check it would look like a segment whose creator
  // has not sized it yet, and open() would wait for it and then report
  // "never fully initialised".
  struct stat st {};
  if (::fstat(impl->shm.get_mapping_handle().handle, &st) != 0) {
    fail(failure, "fstat", errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    failure.code = make_error_code(errc::not_a_queue);
    failure.detail = "/dev/shm/" + file_name + " is not a regular file";
    return false;
  }
  if (!map(*impl, failure)) return false;
  out.impl_ = std::move(impl);
  return true;
}

bool Segment::remove(const std::string& file_name, Failure& failure) {
  // Boost's remove() swallows errno; the distinction between "no such queue"
  // and "permission denied" matters to the user, so call shm_unlink here.
  const std::string path = "/" + file_name;
  if (::shm_unlink(path.c_str()) != 0) {
    fail(failure, "shm_unlink", errno);
    return false;
  }
  return true;
}

}  // namespace jobring::detail
