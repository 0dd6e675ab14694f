// RedisQueue::move_dead: this queue's dead jobs into another Redis queue
// (a dead-letter queue, or the redrive back), per job three calls —
// jr_move_take here, jr_move_in on the target under the move's key,
// jr_move_out here — because the two queues may live on different servers
// or cluster nodes. The crash analysis is jobring_admin.lua's, above jr_move_take:
// a mover that dies between the target's insert and the removal here leaves
// the job in both; the next move sends the same key, the target answers
// duplicate, and only the removal is done. Never lost; at most doubled
// once the target has forgotten the key (its dedup window).
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "jobring/redis_queue.hpp"
#include "redis/queue_impl.hpp"

namespace jobring {

using redis::Failure;
using redis::Reply;
using redis::Retry;

namespace {

constexpr std::size_t kTake = 64;  // dead jobs listed per jr_move_take

struct DeadJob {
  std::string id;
  std::string died_at;  // the score in dead, as the server wrote it
  std::string attempts;
  std::string enqueued_at;
  std::string note;
  std::string payload;
};

// Up to kTake dead jobs from position `offset` of this queue's dead set (the
// jobs left behind by earlier batches come first).
std::vector<DeadJob> take(RedisQueue::Impl& impl, std::size_t offset, std::size_t limit, Failure& failure) {
  std::vector<DeadJob> out;
  const std::string first = std::to_string(offset), n = std::to_string(limit);
  Reply r = impl.call("jr_move_take", {first, n}, Retry::safe, failure);
  if (!r) return out;
  if (redis::status(r.get()) == "not_found") {
    failure = impl.not_found();
    return out;
  }
  const auto k = static_cast<std::size_t>(redis::integer(r.get(), 1));
  if (redis::status(r.get()) != "ok" || k > limit || r->elements != 2 + 6 * k) {
    failure = redis::unexpected(impl, "jr_move_take");
    return out;
  }
  out.reserve(k);
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t at = 2 + 6 * i;
    auto str = [&](std::size_t j) { return std::string(redis::string(r.get(), at + j)); };
    out.push_back({std::to_string(redis::integer(r.get(), at)), str(1),
                   std::to_string(redis::integer(r.get(), at + 2)), str(3), str(4), str(5)});
  }
  return out;
}

// The move's key in the target: "#moved/<incarnation hex>/<id>.<time of death>".
std::string move_key(std::uint64_t incarnation, const DeadJob& job) {
  char inc[17];
  std::snprintf(inc, sizeof inc, "%016" PRIx64, incarnation);
  return "#moved/" + std::string(inc) + "/" + job.id + "." + job.died_at;
}

}  // namespace

MoveResult RedisQueue::move_dead(RedisQueue& to, const MoveOptions& options, std::error_code& ec) noexcept {
  MoveResult result;
  ec.clear();
  if (&to == this || (to.impl_->url == impl_->url && to.impl_->name == impl_->name)) {
    ec = make_error_code(errc::invalid_argument);
    return result;
  }
  try {
    Failure f;
    std::size_t offset = 0;  // dead jobs left here (too large, or changed meanwhile)
    const std::string as_ready = options.as_ready ? "1" : "0";
    while (result.moved < options.limit) {
      if (redis::stop_requested(nullptr)) {
        result.interrupted = true;
        break;
      }
      const std::vector<DeadJob> jobs =
          take(*impl_, offset, std::min(kTake, options.limit - result.moved), f);
      if (f || jobs.empty()) break;
      for (const DeadJob& job : jobs) {
        const std::string key = move_key(impl_->incarnation, job);
        Reply in = to.impl_->call(
            "jr_move_in", {key, as_ready, job.attempts, job.enqueued_at, job.died_at, job.note, job.payload},
            Retry::safe, f);  // keyed: a repeat answers duplicate
        if (!in) break;
        const std::string_view s = redis::status(in.get());
        if (s == "not_found") {
          f = to.impl_->not_found();
          break;
        }
        if (s == "too_large") {
          ++result.too_large;
          ++offset;
          continue;
        }
        if (s == "full") {
          result.target_full = true;
          break;
        }
        if (s != "ok" && s != "duplicate") {
          f = redis::unexpected(*to.impl_, "jr_move_in");
          break;
        }
        // In the target (now, or by an earlier mover that died here): gone from here.
        Reply out = impl_->call("jr_move_out", {job.id, job.died_at}, Retry::safe, f);
        if (!out) break;
        if (redis::status(out.get()) != "ok") {
          f = redis::unexpected(*impl_, "jr_move_out");
          break;
        }
        if (redis::integer(out.get(), 1) == 1) {
          ++result.moved;
        } else {
          ++result.left;  // requeued or removed by a rival meanwhile
          ++offset;
        }
      }
      if (f || result.target_full) break;
    }
    ec = f.ec;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return result;
}

MoveResult RedisQueue::move_dead(RedisQueue& to, const MoveOptions& options) {
  std::error_code ec;
  const MoveResult r = move_dead(to, options, ec);
  if (ec == make_error_code(errc::invalid_argument))
    throw error(ec,
                "jobring queue '" + name() + "': move_dead: the target is this queue: give another queue");
  if (ec)
    throw error(ec, "jobring queue '" + name() + "': move_dead to '" + to.name() + "' (" + to.url() +
                        "): " + ec.message() + " (" + std::to_string(r.moved) + " moved before it)");
  return r;
}

}  // namespace jobring
