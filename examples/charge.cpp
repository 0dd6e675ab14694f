// jobring-example-charge — a payment worker that charges every payment exactly
// once, although a lost ack makes the queue deliver one payment twice.
//
//   jobring-example-charge [--payments N] [--lease-ms N]
//
// Delivery is at-least-once: a worker that dies after doing a job but before
// acking it (or whose ack comes too late) gets the job done again by another
// worker. Resizing a photo twice is harmless; charging a card twice is not.
// The fix is an idempotent consumer, and this example shows one:
//
//   - Producer: each payment is pushed with a de-duplication key ("pay-<n>").
//     Pushing the same payment again (a double click, a retried request)
//     returns PushResult::duplicate = true and the first job's id: one job.
//   - Worker: the ledger is a jobring::DoneStore file, and the charge IS the
//     ledger entry: ledger.mark_done(key, payment) appends it — durably, under
//     an exclusive lock that re-checks the key — in one write, and returns
//     false if the key is there already. So the effect and the record that it
//     happened can never disagree; a payment found in the ledger is skipped
//     and acked. (With a real payment API, pass the key as the API's own
//     idempotency key instead.)
//   - Lost ack, injected: worker process A charges the first payment and then
//     dies (SIGKILL) before acking it. The payment's lease runs out, and the
//     queue delivers it again (attempt 2) to worker process B, which finds it
//     in the ledger and skips it.
//   - Check: the ledger holds exactly one charge per payment, with its amount;
//     the queue delivered exactly one payment twice; the duplicate push made
//     no job. Exit status 0 only if all of that holds.
//
// The queue ("charge.<pid>") and the ledger's temporary directory are removed
// at the end.

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "example_support.hpp"
#include "jobring/idempotent.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"

namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

const char kUsage[] =
    "usage: jobring-example-charge [--payments N] [--lease-ms N]\n"
    "\n"
    "Pushes N payments (each with a de-duplication key, one of them twice), then runs\n"
    "worker process A, which charges the first payment and dies before acking it, and\n"
    "worker process B, which gets that payment again when its lease runs out. The\n"
    "ledger shows one charge per payment.\n"
    "\n"
    "  --payments N   payments to push (default 5)\n"
    "  --lease-ms N   lease of a claim (default 300): how long the lost ack's payment\n"
    "                 stays hidden\n"
    "\n"
    "Exit status: 0 if every check passed, 1 if not, 2 for a usage error.\n";

// A payment: key "pay-<n>", payload "<amount> EUR from customer <id>".
struct Payment {
  std::string key;
  std::string text;
};

std::vector<Payment> make_payments(std::uint64_t n) {
  std::vector<Payment> payments;
  for (std::uint64_t i = 1; i <= n; ++i) {
    const unsigned long long cents = 999 + i * 1234 % 9000;
    char text[64];
    std::snprintf(text, sizeof text, "%llu.%02llu EUR from customer %llu", cents / 100, cents % 100,
                  static_cast<unsigned long long>(1000 + i));
    payments.push_back({"pay-" + std::to_string(i), text});
  }
  return payments;
}

// --- The worker -------------------------------------------------------------------------

// The handler. The ledger is the payments' record AND their done-record:
// mark_done appends the charge unless the key is there, in one durable step.
//   died before mark_done       → redelivered, charged then: once
//   died after it, before ack   → redelivered, found, skipped: once
jobring::Outcome charge(jobring::DoneStore& ledger, const jobring::Job& job, char who,
                        bool die_after_charge) {
  if (!ledger.mark_done(job.key(), job.text())) {
    std::printf("[worker %c] %.*s is in the ledger already (attempt %u): skip and ack, no charge\n", who,
                static_cast<int>(job.key().size()), job.key().data(), job.attempt);
    return jobring::Outcome::skip();
  }
  std::printf("[worker %c] charged %.*s: %.*s (attempt %u)\n", who, static_cast<int>(job.key().size()),
              job.key().data(), static_cast<int>(job.text().size()), job.text().data(), job.attempt);
  if (die_after_charge) {
    // Fault injection: the charge is done and recorded, the ack never comes.
    std::printf("[worker %c] dies now (SIGKILL), before the ack\n", who);
    std::fflush(stdout);
    ::kill(::getpid(), SIGKILL);
  }
  return jobring::Outcome::ack();
}

// The body of a worker process. A dies on its first payment; B runs until
// SIGTERM.
int worker_process(const std::string& queue_name, const std::string& ledger_path, milliseconds lease,
                   char who) {
  jobring::Queue queue = jobring::Queue::open(queue_name);
  jobring::DoneStore ledger(ledger_path);  // shared by all workers: one file
  jobring::Worker worker(
      queue,
      [&](const jobring::Job& job, jobring::JobContext&) { return charge(ledger, job, who, who == 'A'); },
      {.lease = lease});
  jobring::Worker::install_signal_handlers();  // SIGTERM: finish the payment in hand, then return
  const jobring::WorkerSummary s = worker.run();
  std::printf("[worker %c] stopped: %llu claimed, %llu charged, %llu skipped (already in the ledger)\n", who,
              static_cast<unsigned long long>(s.claimed), static_cast<unsigned long long>(s.acked),
              static_cast<unsigned long long>(s.skipped));
  return 0;
}

// --- The parent: producer, supervisor, auditor ------------------------------------------

int run(std::uint64_t count, milliseconds lease) {
  example::TempDir dir("jobring-charge");
  const std::string ledger_path = (dir.path() / "ledger").string();
  example::ExampleQueue queue("charge", {.capacity = 1024, .max_payload = 256, .default_lease = lease});
  std::printf("charge: %llu payments, lease %lld ms, queue \"%s\", ledger %s\n\n",
              static_cast<unsigned long long>(count), static_cast<long long>(lease.count()),
              queue.name().c_str(), ledger_path.c_str());
  example::Checks checks;

  // Producer.
  const std::vector<Payment> payments = make_payments(count);
  jobring::JobId first_id = 0;
  for (const Payment& p : payments) {
    const jobring::PushResult r = queue->push(p.text, {.key = p.key});
    if (!r) throw std::runtime_error("the queue is full");
    if (first_id == 0) first_id = r.id;
  }
  std::printf("[producer] pushed %zu payments, keys pay-1 .. pay-%zu\n", payments.size(), payments.size());
  const jobring::PushResult again = queue->push(payments[0].text, {.key = payments[0].key});
  std::printf("[producer] pushed pay-1 again (the customer double-clicked): duplicate = %s, job %llu\n",
              again.duplicate ? "true" : "false", static_cast<unsigned long long>(again.id));

  // Worker A: charges pay-1, dies before the ack.
  const pid_t a = example::spawn([&] { return worker_process(queue.name(), ledger_path, lease, 'A'); });
  const int a_status = example::wait_for(a, 20s);
  std::printf("[parent]   worker A ended: %s. pay-1 is charged but not acked: it comes back\n",
              example::describe(a_status).c_str());
  std::printf("           when its %lld ms lease runs out.\n", static_cast<long long>(lease.count()));

  // Worker B: does the rest, and gets pay-1 again.
  const pid_t b = example::spawn([&] { return worker_process(queue.name(), ledger_path, lease, 'B'); });
  const bool drained = example::poll_until([&] { return queue->stats().acked >= count; }, 20s + 4 * lease);
  ::kill(b, SIGTERM);
  const int b_status = example::wait_for(b, 20s);

  // Audit.
  std::printf("\nledger\n");
  std::map<std::string, std::vector<std::string>> charges;  // key → amounts charged
  jobring::DoneStore ledger(ledger_path);
  ledger.for_each([&](std::string_view key, std::string_view value) {
    std::printf("  %-8.*s %.*s\n", static_cast<int>(key.size()), key.data(), static_cast<int>(value.size()),
                value.data());
    charges[std::string(key)].emplace_back(value);
  });
  std::printf("\ncheck\n");
  std::size_t once = 0;
  for (const Payment& p : payments) {
    const auto it = charges.find(p.key);
    once += it != charges.end() && it->second.size() == 1 && it->second[0] == p.text ? 1 : 0;
  }
  checks.expect(again && again.duplicate && again.id == first_id,
                "the second push of pay-1 was a duplicate of job " + std::to_string(first_id));
  checks.expect(WIFSIGNALED(a_status) && WTERMSIG(a_status) == SIGKILL,
                "worker A died after charging, before acking (" + example::describe(a_status) + ")");
  checks.expect(drained, "every payment was acked");
  checks.expect(once == payments.size() && charges.size() == payments.size(),
                "the ledger holds exactly one charge per payment, with its amount (" + std::to_string(once) +
                    " of " + std::to_string(payments.size()) + ", " + std::to_string(charges.size()) +
                    " keys)");
  const jobring::Stats s = queue->stats();
  checks.expect(s.claimed == count + 1, "the queue delivered exactly one payment twice (" +
                                            std::to_string(s.claimed) + " claims of " +
                                            std::to_string(count) + " payments)");
  checks.expect(
      s.pushed == count && s.acked == count && s.ready + s.leased + s.expired + s.delayed + s.dead == 0,
      "the queue is empty");
  checks.expect(example::exited_ok(b_status),
                "worker B stopped cleanly on SIGTERM (" + example::describe(b_status) + ")");
  return checks.finish(std::to_string(count) +
                       " payments, one lost ack: pay-1 delivered twice, charged once");
}

}  // namespace

int main(int argc, char** argv) {
  return example::run_main("jobring-example-charge", [&] {
    std::uint64_t payments = 5;
    std::uint64_t lease_ms = 300;
    example::Args args(argc, argv, kUsage);
    args.number("--payments", payments, 1, 1000);
    args.number("--lease-ms", lease_ms, 10, 60'000);
    args.done();
    example::catch_interrupts();
    return run(payments, milliseconds(lease_ms));
  });
}
