// jobring — Queue::claim_any: one claim from several queues, in the order
// the caller gives, sleeping on all their event words at once when every
// one is empty (wait.hpp: wait_after_first_try, sleep_on_any).
//
// Nothing here changes a slot but the one claim pass that finds a job (T4 /
// T5 in claim.cpp, with its crash analysis); a caller that dies anywhere in
// between leaves at most waiting bits set, which the next notify clears.

#include <algorithm>
#include <array>
#include <string>

#include "ring/core.hpp"
#include "ring/wait.hpp"

namespace jobring {

static_assert(Queue::kMaxClaimAny <= detail::kMaxWaitWords, "claim_any sleeps on every queue's word at once");

Queue::ClaimAnyResult Queue::claim_any(std::span<Queue* const> queues, Job& job, milliseconds wait,
                                       const ClaimOptions& options) {
  auto invalid = [](const std::string& what) {
    throw error(make_error_code(errc::invalid_argument), "jobring::Queue::claim_any: " + what);
  };
  if (queues.empty() || queues.size() > kMaxClaimAny)
    invalid("give 1 to " + std::to_string(kMaxClaimAny) + " queues, not " + std::to_string(queues.size()));
  if (!detail::valid_duration(wait, true))
    invalid("wait of " + std::to_string(wait.count()) + " ms not in 0.." + std::to_string(kMaxLease.count()) +
            " ms");
  const std::size_t n = queues.size();
  std::array<Impl*, kMaxClaimAny> q{};
  std::array<std::uint64_t, kMaxClaimAny> lease{};
  std::array<std::uint64_t, kMaxClaimAny> owner{};
  std::array<std::atomic<std::uint32_t>*, kMaxClaimAny> events{};
  milliseconds cap{0};
  for (std::size_t i = 0; i < n; ++i) {
    if (queues[i] == nullptr) invalid("queue " + std::to_string(i) + " is null");
    q[i] = queues[i]->impl_.get();
    lease[i] = q[i]->lease_ms_or_throw(options);
    owner[i] = owner_of(*q[i], options);
    events[i] = &q[i]->header->work_event;
    cap = std::max(cap, detail::safety_sleep(q[i]->capacity));
  }
  ClaimAnyResult result;
  // One pass over each ring in the caller's order; the first job wins. Each
  // pass lowers `due` to its ring's earliest due time (a lease running out,
  // a delayed job coming due), so the sleep ends by the earliest of all.
  auto attempt = [&](std::memory_order order, std::uint64_t& due) -> std::size_t {
    for (std::size_t i = 0; i < n; ++i) {
      if (q[i]->claim_pass({&job, 1}, lease[i], owner[i], order, due) == 1) {
        result.index = i;
        return 1;
      }
    }
    return 0;
  };
  std::uint64_t due = detail::kNoDue;
  detail::Progress p{attempt(std::memory_order_relaxed, due), false};
  if (p.done == 0) p = detail::wait_after_first_try({events.data(), n}, wait, cap, options.stop, attempt);
  result.status = p.done == 1                         ? ClaimStatus::ok
                  : wait.count() > 0 && p.interrupted ? ClaimStatus::interrupted
                                                      : ClaimStatus::empty;
  return result;
}

}  // namespace jobring
