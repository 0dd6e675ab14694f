#include "common/errno_text.hpp"

#include "common/sys.hpp"  // lib/common: the library's own, the one implementation

namespace jobring::tools {

std::string errno_text(int err) { return detail::errno_text(err); }

}  // namespace jobring::tools
