// jobring — the URL schemes AnyQueue tells apart (include/jobring/any_queue.hpp):
// shared memory's, and the Redis backend's. Shared by any_queue_open.cpp
// (backend_of, url_from_env) and any_queue.cpp (AnyQueue::url).
//
// Internal header.
#pragma once

#include <string_view>

namespace jobring::detail {

inline constexpr std::string_view kShm = "shm:";
inline constexpr std::string_view kRedisSchemes[] = {"redis://", "redis+unix://", "redis+cluster://"};

}  // namespace jobring::detail
