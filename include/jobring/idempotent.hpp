// jobring — idempotent consumers: do each job's work once even though
// delivery is at-least-once.
//
// A job is delivered again when its worker dies before the ack, when the ack
// is lost (the lease ran out first and another worker took the job over), or
// when a stop released it. To do the work only once, record durably that a
// job is done — under its de-duplication key (PushOptions::key), or its id —
// before acking it, and skip a job whose key is already recorded:
//
//   jobring::DoneStore done("/var/lib/myapp/orders.done");  // any local file, shared by all workers
//   jobring::Worker worker(queue, jobring::idempotent(done, [](const jobring::Job& job, jobring::JobContext&)
//   {
//     ship(job.text());
//     return jobring::Outcome::ack();
//   }));
//
// idempotent(store, handler) returns a handler that
//   1. returns Outcome::skip() (acked, reported as skipped) if store.contains(key);
//   2. else runs `handler`; if it returns Outcome::ack(), calls
//      store.mark_done(key) — durable before it returns — and only then
//      returns ack. Other outcomes (retry, drop, ...) record nothing.
// key = job.key(), or "#<incarnation hex>.<id>" when the job has no key (see
// done_key() below; so do not push keys of that form). The store may be anything with
// `bool contains(std::string_view)` and `mark_done(std::string_view)` (the
// DoneRecordStore concept): a table in your database works as well as the
// file-backed DoneStore below.
//
// Crash analysis, for a worker that dies (or loses its lease) at each point:
//   before the side effect          → redelivered, done normally: once.
//   after mark_done, before the ack → redelivered, skipped and acked: once.
//   ack lost (lease ran out)        → the same: skipped: once.
//   after the side effect, BEFORE mark_done is durable
//                                   → redelivered and done AGAIN: twice.
//   lease lost while the handler runs (it outlived its lease, extensions
//   failing): another worker may run the handler at the same time, both
//   having found the key absent     → twice.
// The window of the last two cases cannot be closed by any wrapper around a
// side effect in another system: the effect and the done-record are two
// writes. Close it by making them ONE durable write — the record of the
// effect is the done-record. For example a payment worker whose "charge" is
// an entry in a ledger uses the ledger itself as the store:
//
//   jobring::DoneStore ledger("/var/lib/pay/ledger");  // key = the payment's de-duplication key
//   jobring::Worker worker(queue, [&](const jobring::Job& job, jobring::JobContext&) {
//     // The charge and its done-record: one append, fsync'd, under an exclusive
//     // lock that also re-checks the key, so two workers never both record it.
//     const bool charged = ledger.mark_done(job.key(), job.text());
//     return charged ? jobring::Outcome::ack() : jobring::Outcome::skip();
//   });
//
// (or, with a database, the effect and the key in one transaction with a
// unique constraint on the key). The remote system's own idempotency key
// (most payment APIs take one) closes it for effects outside your storage.
#pragma once

#include <array>
#include <charconv>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>

#include "jobring/done_store.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"

namespace jobring {

template <class Store>
concept DoneRecordStore = requires(Store& s, std::string_view key) {
  { s.contains(key) } -> std::convertible_to<bool>;
  s.mark_done(key);
};

// The buffer done_key() writes a default key into: "#" + 16 hex digits +
// "." + up to 20 decimal digits.
using DoneKeyBuffer = std::array<char, 40>;

// The key idempotent() records a job under: job.key(), or, for a job pushed
// without one, "#<incarnation>.<id>" — the queue's incarnation in 16 lower-case
// hex digits (Queue::incarnation(), carried by the Job), a dot, and the job
// id in decimal. Job ids restart at 1 when a queue is removed and created
// again; the incarnation does not repeat, so a store shared across
// incarnations never takes a new job for one done before.
[[nodiscard]] inline std::string_view done_key(const Job& job, DoneKeyBuffer& buffer) noexcept {
  if (!job.key().empty()) return job.key();
  char* p = buffer.data();
  *p++ = '#';
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = kHex[(job.incarnation >> shift) & 0xf];
  *p++ = '.';
  const auto r = std::to_chars(p, buffer.data() + buffer.size(), job.id);
  return {buffer.data(), static_cast<std::size_t>(r.ptr - buffer.data())};
}

// Wraps `handler` (see the top of this file). `store` must outlive the Worker.
template <DoneRecordStore Store>
[[nodiscard]] Worker::Handler idempotent(Store& store, Worker::Handler handler) {
  return [&store, h = std::move(handler)](const Job& job, JobContext& ctx) -> Outcome {
    DoneKeyBuffer buffer{};
    const std::string_view key = done_key(job, buffer);
    if (store.contains(key)) return Outcome::skip();  // done before; the ack was lost
    const Outcome outcome = h(job, ctx);
    // Recorded even if the lease was lost meanwhile: the side effect happened,
    // and whoever has the job now should skip it. An exception here (an I/O
    // error) makes the Worker retry the job: the side effect may run again.
    if (outcome.kind() == Outcome::Kind::ack) store.mark_done(key);
    return outcome;
  };
}

}  // namespace jobring
