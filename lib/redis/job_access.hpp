// Filling a jobring::Job from a Redis reply: Job's buffer and key are
// private, and detail::JobAccess is its friend for this (queue.hpp).
#pragma once

#include <cstring>
#include <string_view>

#include "jobring/queue.hpp"

namespace jobring::detail {

struct JobAccess {
  // Copies payload and key into the job (the buffer grows, never shrinks;
  // a key longer than kMaxKeyLength is dropped).
  static void fill(Job& job, std::string_view payload, std::string_view key) {
    if (job.buffer_.size() < payload.size()) job.buffer_.resize(payload.size());
    if (!payload.empty()) std::memcpy(job.buffer_.data(), payload.data(), payload.size());
    job.size_ = payload.size();
    const std::size_t key_size = key.size() <= kMaxKeyLength ? key.size() : 0;
    if (key_size > 0) std::memcpy(job.key_.data(), key.data(), key_size);
    job.key_size_ = key_size;
  }
};

namespace redis {
inline void fill_job(Job& job, std::string_view payload, std::string_view key) {
  JobAccess::fill(job, payload, key);
}
}  // namespace redis

}  // namespace jobring::detail
