#include "common/errno_text.hpp"

#include <cstring>

namespace jobring::tools {

namespace {
// strerror_r comes in two flavours: GNU (returns the message, maybe not in
// the buffer) and XSI (returns 0 and fills the buffer). These take either.
[[maybe_unused]] const char* strerror_result(const char* gnu, const char* /*buf*/) { return gnu; }
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}
}  // namespace

std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(::strerror_r(err, buf, sizeof buf), buf);
}

}  // namespace jobring::tools
