// jobring — the producer's side: push, push_many, and the pass that puts jobs
// into free slots (T1 reserve, T3 commit; K1..K3 for a keyed push).

#include <cstring>

#include "common/sys.hpp"
#include "ring/core.hpp"
#include "ring/wait.hpp"

namespace jobring {

namespace {

// The arguments of a push, checked before anything is touched. `why`, when
// given, gets what was wrong, for the throwing calls' message.
JOBRING_INLINE std::error_code check_push(std::uint32_t max_payload,
                                          std::span<const std::span<const std::byte>> payloads,
                                          const PushOptions& o, bool batch, std::string* why) {
  auto bad = [&](errc e, auto&& text) {
    if (why != nullptr) *why = text();
    return make_error_code(e);
  };
  for (const auto& p : payloads)
    if (p.size() > max_payload)
      return bad(errc::payload_too_large, [&] {
        return "payload of " + std::to_string(p.size()) + " bytes, max_payload is " +
               std::to_string(max_payload);
      });
  if (!detail::valid_duration(o.delay, true) || !detail::valid_duration(o.wait, true))
    return bad(errc::invalid_argument, [&] {
      return "delay " + std::to_string(o.delay.count()) + " ms or wait " + std::to_string(o.wait.count()) +
             " ms not in 0.." + std::to_string(kMaxLease.count()) + " ms";
    });
  if (batch && !o.key.empty())
    return bad(errc::invalid_argument, [] {
      return std::string("push_many takes no key: push keyed jobs one at a time with push()");
    });
  if (o.key.size() > kMaxKeyLength)
    return bad(errc::invalid_argument, [&] {
      return "key of " + std::to_string(o.key.size()) + " bytes, the limit is " +
             std::to_string(kMaxKeyLength);
    });
  if (!o.key.empty() && o.key.starts_with(detail::kMoveKeyPrefix)) [[unlikely]]
    return bad(errc::invalid_argument, [] {
      return "keys starting with \"" + std::string(detail::kMoveKeyPrefix) +
             "\" are Queue::move_dead's: choose another key";
    });
  return {};
}

// Counted from the push call: a push that waits for room does not add its
// wait to the delay, nor to the job's age (pushed_at is the call's time too:
// a job's age is how long it has waited since its producer tried).
// A job visible at once needs no precise clock: its enqueue time is advice
// (ages in stats and peek; the boot recovery's latest time seen, which an
// earlier time never moves), so the coarse clock serves, a quarter of the
// cost (issue 16: 20 ns of a 135-ns cycle). It is never later than the
// precise one, so an age comes out a tick longer at most, never negative.
// A delayed job's visible-at is a promise ("not before"): the precise
// clock, and its enqueue time from the same reading.
detail::PushTimes times_for(const detail::Ring& q, const PushOptions& o) noexcept {
  if (o.delay.count() == 0) return {0, q.now_coarse()};
  const std::uint64_t now = q.now();
  return {detail::visible_at_after(o.delay, now), now};
}

// A dead job moved in (move.cpp): committed by T10 commit-dead, not T3.
JOBRING_INLINE bool dead_arrival(const detail::KeyedPush* key) noexcept {
  return key != nullptr && key->arrival != nullptr && key->arrival->dead;
}

}  // namespace

// Fills slot i, which this producer holds WRITING (as `reserved`), with a new job: its id,
// meta, key and payload. Returns the id.
JOBRING_INLINE JobId Queue::Impl::write_job(std::uint32_t i, Word reserved,
                                            std::span<const std::byte> payload, const detail::KeyedPush* key,
                                            std::uint64_t pushed_at) noexcept {
  // Pairs with the acquire fence of a claimer validating its copy of this
  // slot's old payload (claim.cpp, peek): if that claimer's re-check reads a
  // word older than our T1, our writes below are not visible to its copy;
  // if newer, it discards the copy.
  std::atomic_thread_fence(std::memory_order_release);
  SlotMeta& m = meta(i);
  // Release: a poller whose acquire load of the counter (the empty-ring
  // memo's signature, core.hpp) reads this id or a later one sees our T1
  // (claim.cpp says why that is enough). Free on x86, where every locked
  // RMW is a full barrier; and the fence above already made it one.
  const JobId id = header->next_job_id.fetch_add(1, std::memory_order_release);
  m.job_id.store(id, std::memory_order_relaxed);
  m.length.store(static_cast<std::uint32_t>(payload.size()), std::memory_order_relaxed);
  // Tagged with our WRITING word's generation, the oldest tag this job's
  // meta can have: a stale writer of an earlier job's tags finds it later
  // than its own word and leaves it alone (layout.hpp, count_claim).
  m.attempts.store(detail::make_attempts(reserved.gen(), 0), std::memory_order_relaxed);
  m.owner.store(detail::make_owner(reserved.gen(), 0), std::memory_order_relaxed);
  // The enqueue time, published by the commit like the rest. Dies before the
  // commit: the slot is freed (T2) and nobody reads it.
  m.pushed_at_ms.store(pushed_at, std::memory_order_relaxed);
  m.key_hash.store(key != nullptr ? key->hash : 0, std::memory_order_relaxed);
  m.key_length.store(key != nullptr ? static_cast<std::uint32_t>(key->key.size()) : 0,
                     std::memory_order_relaxed);
  if (key != nullptr) std::memcpy(key_area(i), key->key.data(), key->key.size());
  detail::copy_payload(this->payload(i), payload.data(), payload.size());
  return id;
}

// Slot i is ours (T1 done, as `reserved`): write the job, take its key, move
// the push cursor to `cursor_to`, commit. `id` gets the job's id (or, for a
// duplicate, the id of the job that holds the key).
JOBRING_INLINE Queue::Impl::SlotPush Queue::Impl::push_into(std::uint32_t i, Word reserved,
                                                            std::span<const std::byte> payload,
                                                            detail::PushTimes times, detail::KeyedPush* key,
                                                            std::uint64_t writer, std::uint64_t cursor_to,
                                                            JobId& id) noexcept {
  auto& sw = state(i);
  id = write_job(i, reserved, payload, key, times.pushed_at);
  // Sync::always (durable.cpp): the job on disk before its READY word can
  // be; before its key is taken, so that a refusal gives back a slot that
  // holds nothing else. Dies after: the slot is WRITING on disk too (T2 at
  // recovery).
  if (sync_always && !sync_slot(i, true)) [[unlikely]] {
    Word ours = reserved;
    (void)detail::apply(T::abandon, *header, sw, ours, 0);
    return SlotPush::failed;
  }
  std::uint32_t entry = 0;
  Word claimed_key{};
  if (key != nullptr) {
    // K1 + K2 (keys.hpp): the key becomes this job's, or the push ends here.
    // Dies before: T2 frees the slot. Dies after: K7 tells from this slot
    // whether the job got in.
    JobId existing = 0;
    key->outcome = keys.insert(key->hash, id, i, writer, entry, claimed_key, existing);
    if (key->outcome != detail::KeyInsert::inserted) {
      // Not pushing after all: give the slot back (T2 by its own writer).
      Word ours = reserved;
      (void)detail::apply(T::abandon, *header, sw, ours, 0);
      id = existing;
      return SlotPush::ended;
    }
    meta(i).key_entry.store(entry, std::memory_order_relaxed);
    // A dead job moved in (move.cpp): its attempts, age and note, before
    // the T10 commit below publishes them.
    if (key->arrival != nullptr) {
      if (key->arrival->dead) write_arrival(i, reserved, *key->arrival);
      detail::move_kill_point(1);
    }
  }
  // Sync::always: the key entry (and a moved-in job's attempts and note,
  // written since) on disk too, before the commit.
  if (sync_always && key != nullptr) [[unlikely]] {
    (void)sync_key_entry(entry);
    if (key->arrival != nullptr) (void)sync_slot(i, false);
  }
  // Advance the push cursor past this slot before the commit, so that a
  // claimer that acquires our commit sees the cursor here (or further) and
  // may move the claim cursor past this job (claim.cpp). A hint, moved with
  // a load and a store, not a CAS (one locked RMW fewer per push; the claim
  // cursor is moved the same way). Only forward as far as this producer
  // sees; a rival producer's store between our load and store can be
  // overwritten, moving the cursor back by the slots it pushed meanwhile.
  // What that costs, never a job: a producer starts its scan at an occupied
  // slot and passes it (push_round rescans once, so the older position is
  // still refilled first); a claimer that read the lower cursor caps the
  // claim cursor lower (advance_claim_cursor), so its next scan passes a
  // slot more; skip_unclaimable_positions stops earlier. Both scans cover
  // the whole ring from their cursor. A death between the load and the
  // store leaves the cursor where it was.
  if (header->push_cursor.load(std::memory_order_relaxed) < cursor_to)
    header->push_cursor.store(cursor_to, std::memory_order_relaxed);
  // T3 commit (counted and woken once per pass, by push_pass). If it fails,
  // someone judged us dead and recovered the slot (possible only if it sees
  // another PID namespace): it is not ours any more, and this push has not
  // happened; the caller tries another slot.
  // (Each with its transition a constant: the CAS's memory order is then
  // known at compile time.)
  Word expected = reserved;
  if (dead_arrival(key)) [[unlikely]] {
    if (!detail::move(T::commit_dead, sw, expected, T::commit_dead.target(reserved, 0)))
      return SlotPush::lost;
  } else if (!detail::move(T::commit, sw, expected, T::commit.target(reserved, times.visible_at))) {
    return SlotPush::lost;
  }
  // K3. Fails if a finisher already made it REMEMBERED (K4): fine.
  if (key != nullptr) {
    if (key->arrival != nullptr) detail::move_kill_point(3);
    keys.make_live(entry, claimed_key);
  }
  // Sync::always: the READY word on disk before the push returns.
  if (sync_always) [[unlikely]] {
    (void)sync_state(i);
    if (key != nullptr) (void)sync_key_entry(entry);
  }
  return SlotPush::pushed;
}

// One scan of the ring from the push cursor, filling free slots in ring
// order. Adds to `done`; returns false if a keyed push ended (duplicate, or
// no room in the key table), with the outcome in *key.
JOBRING_INLINE bool Queue::Impl::push_round(std::span<const std::span<const std::byte>> payloads,
                                            std::span<JobId> ids, detail::PushTimes times,
                                            std::memory_order load_order, detail::KeyedPush* key,
                                            std::uint64_t writer, std::size_t& done) noexcept {
  const std::uint64_t start = header->push_cursor.load(std::memory_order_relaxed);
  std::uint32_t i = slot_at(start);
  // FIFO (guarantee 6): the k of the first slot this pass passed because it
  // was not FREE (kNotPassed: none yet), and whether we looked again.
  constexpr std::uint32_t kNotPassed = ~std::uint32_t{0};
  std::uint32_t passed = kNotPassed;
  bool rescanned = false;
  for (std::uint32_t k = 0; k < capacity && done < payloads.size(); ++k, i = next(i)) {
    auto& sw = state(i);
    Word w{sw.load(load_order)};
    if (w.state() != State::free) {
      if (passed == kNotPassed) passed = k;
      continue;
    }
    if (passed != kNotPassed && !rescanned) {
      // We passed an occupied slot and now see a free one after it. A worker
      // may have freed the older slot after we looked (a worker acking in
      // order frees it first): look once more from there, so that the older
      // position is refilled first. Acquire: if this FREE was written by an
      // ack (a release CAS), that worker's earlier acks happen-before the
      // loads below, which therefore see those slots FREE. Never waits: a
      // slot still occupied is passed again (guarantee 5). Nothing is
      // reserved yet, so a death here leaves nothing behind.
      std::atomic_thread_fence(std::memory_order_acquire);
      rescanned = true;
      const auto back = slot_at(start + passed);
      k = passed - 1;                           // ++k: passed (~0u + 1 = 0)
      i = back == 0 ? capacity - 1 : back - 1;  // next(i): back
      passed = kNotPassed;
      continue;
    }
    // T1 reserve. On failure another producer took it: move on.
    const Word reserved = T::reserve.target(w, writer);
    if (!detail::move(T::reserve, sw, w, reserved)) continue;
    JobId id = 0;
    switch (push_into(i, reserved, payloads[done], times, key, writer, start + k + 1, id)) {
      case SlotPush::pushed:
        if (done < ids.size()) ids[done] = id;
        ++done;
        break;
      case SlotPush::lost:
        break;
      case SlotPush::failed:
        return false;
      case SlotPush::ended:
        if (key->outcome == detail::KeyInsert::duplicate) {
          if (!ids.empty()) ids[0] = id;
          done = 1;
        }
        return false;
    }
  }
  return true;
}

JOBRING_INLINE std::size_t Queue::Impl::push_pass_inline(std::span<const std::span<const std::byte>> payloads,
                                                         std::span<JobId> ids, detail::PushTimes times,
                                                         std::memory_order load_order,
                                                         detail::KeyedPush* key) noexcept {
  if (payloads.empty()) return 0;
  if (key != nullptr) {
    key->outcome = detail::KeyInsert::none;
    // A duplicate needs no slot: answer it before looking for room.
    JobId existing = 0;
    if (keys.lookup(key->hash, existing)) {
      key->outcome = detail::KeyInsert::duplicate;
      if (!ids.empty()) ids[0] = existing;
      return 1;
    }
  }
  const std::uint64_t writer = detail::make_writer(liveness.token());
  std::size_t done = 0;
  for (int round = 0; round < 2 && done < payloads.size(); ++round) {
    if (!push_round(payloads, ids, times, load_order, key, writer, done)) return done;
    // Full. A slot left WRITING by a dead producer is not full: free those and look once more.
    if (done < payloads.size() && (round > 0 || recover_dead_writers() == 0)) break;
  }
  // The count, then the wake-up (transitions.hpp, settle). T3's count goes
  // to this thread's tally block (layout.hpp, Tallies), not the shared
  // total: no locked RMW.
  if (dead_arrival(key)) [[unlikely]] {
    detail::settle(T::commit_dead, *header, done);
  } else if (done != 0) {
    tally(detail::kTallyPushed, done);
    detail::wake(T::commit, *header);
  }
  return done;
}

std::size_t Queue::Impl::push_pass(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                                   detail::PushTimes times, std::memory_order load_order,
                                   detail::KeyedPush* key) noexcept {
  return push_pass_inline(payloads, ids, times, load_order, key);
}

JOBRING_INLINE PushResult Queue::Impl::push_checked(std::span<const std::byte> payload,
                                                    const PushOptions& push) noexcept {
  const detail::PushTimes times = times_for(*this, push);
  JobId id = 0;
  const std::span<const std::byte> one[1] = {payload};
  // The common push, no key and no Sync::always: its first pass (relaxed)
  // here, before the wait's state (the attempt's captures, the key) is
  // built; only a full ring goes on to the wait, whose first try this was.
  const bool plain = push.key.empty() && !sync_always;
  if (plain && push_pass_inline(one, {&id, 1}, times, std::memory_order_relaxed, nullptr) == 1) [[likely]]
    return {PushStatus::ok, id};
  detail::KeyedPush keyed{push.key, push.key.empty() ? 0 : detail::key_hash(push.key)};
  detail::KeyedPush* key = push.key.empty() ? nullptr : &keyed;
  bool failed = false;
  const auto attempt = [&](std::memory_order order, std::uint64_t&) {
    if (key != nullptr && key->outcome == detail::KeyInsert::interrupted) return std::size_t{1};
    if (key != nullptr && key->outcome == detail::KeyInsert::full) {
      // The last pass found the key table full and gave its slot back,
      // which bumped room_event. Re-check the table alone until it has
      // room, so that the sleep on room_event is not woken by our own
      // give-back (it spun at full CPU for the whole wait). No wake-up
      // is lost: an ack's K4 (seq_cst) frees the entry before its
      // settle bumps room_event, and this fence orders our look at the
      // entries after prepare_wait's announcement (wait.hpp).
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (keys.full_for(key->hash)) return std::size_t{0};
    }
    // The first pass (relaxed) is inlined here, the re-checks before a
    // sleep call push_pass: one call less on every push.
    const std::size_t n = order == std::memory_order_relaxed
                              ? push_pass_inline(one, {&id, 1}, times, order, key)
                              : push_pass(one, {&id, 1}, times, order, key);
    // Sync::always could not put the job on disk: stop; the caller reports it.
    if (n == 0 && detail::sync_error_pending()) [[unlikely]] {
      failed = true;
      return std::size_t{1};
    }
    return n;
  };
  std::atomic<std::uint32_t>* const room[1] = {&header->room_event};
  const detail::Progress p =
      plain
          ? detail::wait_after_first_try(room, push.wait, detail::safety_sleep(capacity), push.stop, attempt)
          : detail::wait_until_progress(header->room_event, push.wait, capacity, push.stop, attempt);
  if (failed) [[unlikely]]
    return {PushStatus::full, 0};
  if (key != nullptr) {
    if (key->outcome == detail::KeyInsert::interrupted) return {PushStatus::interrupted, 0};
    if (key->outcome == detail::KeyInsert::full) count(detail::kKeysFull);
    if (key->outcome == detail::KeyInsert::duplicate) {
      count(detail::kDuplicates);
      return {PushStatus::ok, id, true};
    }
  }
  if (p.done == 1) return {PushStatus::ok, id};
  return {p.interrupted ? PushStatus::interrupted : PushStatus::full, 0};
}

namespace {

// After a push: Sync::always could not put a job on disk (durable.cpp), so
// it was not pushed. The error, and what it says.
std::error_code sync_failure(std::string* why) {
  const int err = detail::take_sync_error();
  if (err == 0) return {};
  if (why != nullptr)
    *why = "msync: " + detail::errno_text(err) +
           ": the job could not be written to disk, so it was not pushed (sync always); check the disk "
           "(dmesg), then push again";
  return make_error_code(errc::system_error);
}

// A bad argument to push (its slow path): throws, saying what was wrong.
[[noreturn]] [[gnu::cold]] [[gnu::noinline]] void throw_bad_push(const Queue::Impl& q,
                                                                 std::span<const std::byte> payload,
                                                                 const PushOptions& options) {
  std::string why;
  detail::throw_error(q.name, check_push(q.max_payload, {&payload, 1}, options, false, &why), why);
}

}  // namespace

PushResult Queue::push(std::span<const std::byte> payload, const PushOptions& options,
                       std::error_code& ec) noexcept {
  Impl& q = *impl_;
  if ((ec = check_push(q.max_payload, {&payload, 1}, options, false, nullptr))) return {};
  const PushResult r = q.push_checked(payload, options);
  if (q.sync_always) [[unlikely]]
    ec = sync_failure(nullptr);
  return r;
}

PushResult Queue::push(std::span<const std::byte> payload, const PushOptions& options) {
  Impl& q = *impl_;
  // The message is built only for a bad argument (check_push again, with
  // `why`): the string's construction and destruction cost every push ~11
  // instructions.
  if (check_push(q.max_payload, {&payload, 1}, options, false, nullptr)) [[unlikely]]
    throw_bad_push(q, payload, options);
  const PushResult r = q.push_checked(payload, options);
  if (q.sync_always) [[unlikely]] {
    std::string why;
    if (const auto ec = sync_failure(&why)) detail::throw_error(q.name, ec, why);
  }
  return r;
}

PushResult Queue::push(std::string_view payload, const PushOptions& options) {
  return push(std::as_bytes(std::span<const char>(payload.data(), payload.size())), options);
}

std::size_t Queue::Impl::push_many_checked(std::span<const std::span<const std::byte>> payloads,
                                           std::span<JobId> ids, const PushOptions& push) noexcept {
  const detail::PushTimes times = times_for(*this, push);
  std::size_t done = 0;
  bool failed = false;  // Sync::always could not put a job on disk (take_sync_error)
  std::size_t pushed_before = 0;
  // One wait for the whole batch, not one per bit of progress.
  const auto give_up_at = std::chrono::steady_clock::now() + push.wait;
  while (done < payloads.size()) {
    const auto left = std::max(
        milliseconds{0}, std::chrono::ceil<milliseconds>(give_up_at - std::chrono::steady_clock::now()));
    const detail::Progress p = detail::wait_until_progress(
        header->room_event, left, capacity, push.stop, [&](std::memory_order order, std::uint64_t&) {
          const std::size_t n =
              push_pass(payloads.subspan(done), ids.size() > done ? ids.subspan(done) : std::span<JobId>{},
                        times, order);
          if (detail::sync_error_pending()) [[unlikely]] {
            failed = true;  // what came before it is pushed; the rest is not
            pushed_before = n;
            return std::size_t{1};
          }
          return n;
        });
    if (failed) [[unlikely]] {
      done += pushed_before;
      break;
    }
    if (p.done == 0) break;
    done += p.done;
  }
  return done;
}

std::size_t Queue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                             const PushOptions& options) {
  Impl& q = *impl_;
  std::string why;
  if (const auto ec = check_push(q.max_payload, payloads, options, true, &why))
    detail::throw_error(q.name, ec, why);
  const std::size_t n = q.push_many_checked(payloads, ids, options);
  // The jobs before a refused msync are pushed: report them; the next call
  // meets the disk's error again.
  if (q.sync_always) [[unlikely]] {
    if (const auto ec = sync_failure(&why); ec && n == 0) detail::throw_error(q.name, ec, why);
  }
  return n;
}

std::size_t Queue::push_many(std::span<const std::span<const std::byte>> payloads, std::span<JobId> ids,
                             const PushOptions& options, std::error_code& ec) noexcept {
  Impl& q = *impl_;
  if ((ec = check_push(q.max_payload, payloads, options, true, nullptr))) return 0;
  const std::size_t n = q.push_many_checked(payloads, ids, options);
  if (q.sync_always) [[unlikely]]
    ec = sync_failure(nullptr);
  return n;
}

}  // namespace jobring
