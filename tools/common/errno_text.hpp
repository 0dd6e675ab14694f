// The text of an errno value, safe to call from several threads.
#pragma once

#include <string>

namespace jobring::tools {

// The text of errno value `err`, from strerror_r: `jobring work` runs its
// handlers on several threads, and strerror is not thread-safe.
std::string errno_text(int err);

}  // namespace jobring::tools
