#include "common/sys.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace jobring::detail {

namespace {

// strerror_r comes in two flavours: GNU (returns the message, maybe not in
// the buffer) and XSI (returns 0 and fills the buffer). These take either.
[[maybe_unused]] const char* strerror_result(const char* gnu, const char* /*buf*/) { return gnu; }
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}

}  // namespace

long read_small_file(const char* path, char* buf, unsigned long size) noexcept {
  if (size == 0) return -1;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n;
  do {
    n = ::read(fd, buf, size - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  return static_cast<long>(n);
}

std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(::strerror_r(err, buf, sizeof buf), buf);
}

}  // namespace jobring::detail
