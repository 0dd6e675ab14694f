// The subcommands that move jobs: push and claim, and ack, release and
// extend, which act on the lease a claim printed.
#include <unistd.h>

#include <cstdio>

#include "cli.hpp"
#include "common/signals.hpp"
#include "text.hpp"

namespace jobring::cli {

using namespace std::chrono_literals;

int cmd_push(const std::vector<std::string>& args) {
  Command c{"push", "NAME [DATA] [--delay D] [--wait D] [--key K]",
            "Pushes one job with DATA (or standard input) as its payload; prints the job id.\n"
            "With --key: if a job with key K is in the queue, or was finished within the queue's\n"
            "de-duplication window, nothing is pushed; that job's id is printed (and a note on stderr)."};
  c.options.add_options()("delay", po::value<std::string>(), "the job stays invisible for D")(
      "wait", po::value<std::string>(), "if the queue is full, wait up to D for room")(
      "key", po::value<std::string>(), "de-duplication key, 1 to 64 bytes");
  add_name(c);
  c.hidden.add_options()("data", po::value<std::string>());
  c.positional.add("data", 1);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  jobring::PushOptions o;
  o.delay = duration_arg(c, vm, "delay", 0ms);
  o.wait = duration_arg(c, vm, "wait", 0ms);
  const std::string key = vm.count("key") ? vm["key"].as<std::string>() : std::string();
  if (vm.count("key") && (key.empty() || key.size() > jobring::kMaxKeyLength))
    usage(c.name, "bad --key: 1 to " + std::to_string(jobring::kMaxKeyLength) + " bytes");
  o.key = key;
  if (!vm.count("data") && ::isatty(STDIN_FILENO))
    usage(c.name, "no DATA: give it as an argument, or pipe it in (standard input is a terminal)");
  const std::string data = vm.count("data") ? vm["data"].as<std::string>() : read_all(STDIN_FILENO);
  auto q = open_queue(name);
  (void)tools::install_stop_handlers();
  const auto r = q.push(bytes(data), o);
  if (r.status == jobring::PushStatus::interrupted) throw Exit{kNothing, "jobring push: interrupted"};
  if (r.status != jobring::PushStatus::ok)
    throw Exit{kNothing,
               "jobring push: queue '" + name + "' is full (capacity " +
                   std::to_string(q.options().capacity) + ")" +
                   (key.empty() ? "" : ", or its de-duplication key table has no room for this key") +
                   ": wait for workers (--wait D), or recreate it larger"};
  if (r.duplicate)
    std::fprintf(stderr,
                 "jobring push: key '%s' belongs to job %llu (in the queue, or finished within the "
                 "de-duplication window): nothing pushed\n",
                 key.c_str(), static_cast<unsigned long long>(r.id));
  std::printf("%llu\n", static_cast<unsigned long long>(r.id));
  return kOk;
}

int cmd_claim(const std::vector<std::string>& args) {
  Command c{
      "claim", "NAME [--lease D] [--wait D] [--raw]",
      "Claims one job with a detached lease (it outlives this command until its deadline) and prints one\n"
      "JSON object: job, handle (for ack / release / extend), attempt, lease_ms, payload, payload_encoding\n"
      "(utf8, or base64 for binary payloads). With --raw: the payload bytes alone on stdout, the handle on\n"
      "stderr."};
  c.options.add_options()("lease", po::value<std::string>(), "lease length (default: the queue's)")(
      "wait", po::value<std::string>(), "wait up to D for a job")(
      "raw", "payload bytes to stdout, handle to stderr");
  add_name(c);
  const auto vm = parse(c, args);
  const std::string name = name_arg(c, vm);
  const milliseconds lease = duration_arg(c, vm, "lease", 0ms);
  const milliseconds wait = duration_arg(c, vm, "wait", 0ms);
  auto q = open_queue(name);
  (void)tools::install_stop_handlers();
  jobring::Job job;
  const auto status = q.claim(job, wait, {.lease = lease, .owner = jobring::Owner::detached});
  if (status != jobring::ClaimStatus::ok)
    throw Exit{kNothing, "jobring claim: nothing to claim in queue '" + name + "'"};
  const long long lease_ms = lease.count() > 0 ? lease.count() : q.options().default_lease.count();
  if (vm.count("raw")) {
    std::fwrite(job.payload().data(), 1, job.payload().size(), stdout);
    std::fprintf(stderr, "%s\n", job.lease.to_string().c_str());
  } else {
    const std::string key = job.key().empty() ? "" : ",\"key\":" + json_string(std::string(job.key()));
    std::printf("{\"job\":%llu,\"handle\":\"%s\",\"attempt\":%u,\"lease_ms\":%lld%s,%s}\n",
                static_cast<unsigned long long>(job.id), job.lease.to_string().c_str(), job.attempt, lease_ms,
                key.c_str(), payload_json(job.payload()).c_str());
  }
  return kOk;
}

namespace {

int lease_outcome(const std::string& verb, const std::string& name, jobring::LeaseStatus s) {
  if (s == jobring::LeaseStatus::ok) return kOk;
  throw Exit{kLeaseLost,
             "jobring " + verb + ": lease lost on queue '" + name +
                 "': the lease expired and the job was claimed again, or was already acked/released, or "
                 "the handle is stale (after `extend`, use the new handle)"};
}

// What ack, release and extend share: NAME HANDLE, then the open queue.
struct LeaseCall {
  po::variables_map vm;
  std::string name;
  jobring::Lease lease;
  jobring::AnyQueue queue;
};

LeaseCall parse_lease_call(Command& c, const Args& args) {
  add_name(c);
  c.hidden.add_options()("handle", po::value<std::string>());
  c.positional.add("handle", 1);
  auto vm = parse(c, args);
  std::string name = name_arg(c, vm);
  const jobring::Lease lease = handle_arg(c, vm);
  auto q = open_queue(name);
  return {std::move(vm), std::move(name), lease, std::move(q)};
}

}  // namespace

int cmd_ack(const Args& args) {
  Command c{"ack", "NAME HANDLE", "Acknowledges a claimed job: it is deleted."};
  LeaseCall call = parse_lease_call(c, args);
  return lease_outcome(c.name, call.name, call.queue.ack(call.lease));
}

int cmd_release(const Args& args) {
  Command c{"release", "NAME HANDLE [--delay D | --no-count] [--error TEXT]",
            "Gives a claimed job back: it is claimable again (after D). The claim counts as an "
            "attempt (max_attempts dead-letters the job on its last one) unless --no-count: for a "
            "job given back untried, e.g. on shutdown."};
  c.options.add_options()("delay", po::value<std::string>(), "invisible for D before it is claimable")(
      "no-count", "do not count this attempt; claimable at once (not with --delay)")(
      "error", po::value<std::string>(),
      "why the attempt failed: kept with the job (first 112 bytes) if this release dead-letters it");
  LeaseCall call = parse_lease_call(c, args);
  if (call.vm.count("no-count")) {
    if (call.vm.count("delay") || call.vm.count("error"))
      usage(c.name, "--no-count gives the job back untried: it takes no --delay or --error");
    return lease_outcome(c.name, call.name, call.queue.give_back(call.lease));
  }
  const milliseconds delay = duration_arg(c, call.vm, "delay", 0ms);
  const std::string error = call.vm.count("error") ? call.vm["error"].as<std::string>() : std::string();
  return lease_outcome(c.name, call.name, call.queue.release(call.lease, delay, error));
}

int cmd_extend(const Args& args) {
  Command c{"extend", "NAME HANDLE --lease D",
            "Pushes the lease's deadline to now + D; prints the new handle (the old one is then stale)."};
  c.options.add_options()("lease", po::value<std::string>(), "new lease length from now (required)");
  LeaseCall call = parse_lease_call(c, args);
  if (!call.vm.count("lease")) usage(c.name, "--lease D is required");
  const milliseconds d = duration_arg(c, call.vm, "lease", 0ms);
  if (d.count() < 1 || d > jobring::kMaxLease) usage(c.name, "--lease must be from 1ms to 7 days");
  const int rc = lease_outcome(c.name, call.name, call.queue.extend(call.lease, d));
  std::printf("%s\n", call.lease.to_string().c_str());
  return rc;
}

}  // namespace jobring::cli
