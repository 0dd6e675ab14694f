// Filling a jobring::Job from a Redis reply. Job's buffer and key are
// private, and its only friend is Queue (include/jobring/queue.hpp, owned by
// the shared-memory backend's work of this step). Until queue.hpp names
// RedisQueue a friend too, this header reaches the members through the one
// door C++ leaves open for it: an explicit instantiation may name private
// members ([temp.spec.general]/6), and a friend function defined in the
// instantiated class hands out the member pointers.
// TODO(issue 15): add `friend class RedisQueue;` to Job and delete this file.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <string_view>
#include <vector>

#include "jobring/queue.hpp"

namespace jobring::detail::redis {

template <typename Tag, typename Tag::type Member>
struct JobMemberAccess {
  friend typename Tag::type member_of(Tag) { return Member; }
};

struct JobBufferTag {
  using type = std::vector<std::byte> Job::*;
  friend type member_of(JobBufferTag);
};
struct JobSizeTag {
  using type = std::size_t Job::*;
  friend type member_of(JobSizeTag);
};
struct JobKeyTag {
  using type = std::array<char, kMaxKeyLength> Job::*;
  friend type member_of(JobKeyTag);
};
struct JobKeySizeTag {
  using type = std::size_t Job::*;
  friend type member_of(JobKeySizeTag);
};

// Copies payload and key into the job (the buffer grows, never shrinks).
void fill_job(Job& job, std::string_view payload, std::string_view key);

}  // namespace jobring::detail::redis
