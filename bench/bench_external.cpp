// External peers (bench/compare --peers): one process, one job through the
// usual server-based reliable-queue patterns, to put jobring's cycle in
// context. bench/compare starts the servers on unix sockets in a temporary
// directory and stops them; this binary only connects.
//
//   BM_External/redis     Redis reliable queue: LPUSH jobs <payload>;
//                         LMOVE jobs processing RIGHT LEFT (the claim: the job
//                         stays in `processing` until acked); LREM
//                         processing 1 <payload> (the ack). Three round trips;
//                         a minimal RESP client over the unix socket
//                         (JOBRING_BENCH_REDIS_SOCKET).
//   BM_External/jobring_redis/1, /32
//                         jobring's own Redis backend (RedisQueue) on the
//                         same server: push + claim + ack, one job at a time
//                         and in batches of 32 (per job).
//   BM_External/redis_procs/P/W, BM_External/jobring_redis_procs/P/W/B
//                         the same two across processes: P producer and W
//                         worker processes on one server, 2,000 jobs per
//                         producer; workers block (BLMOVE; RedisQueue::claim)
//                         and stop at a stop job each. Items per second are
//                         jobs through the system (manual time: from the
//                         start signal to the last worker's exit). B: jobs
//                         per push_many / claim_many / ack_many.
//   BM_External/postgres  PostgreSQL queue table with a visibility column:
//                         INSERT; UPDATE ... SET visible_at = now() + 30 s
//                         WHERE id = (SELECT id ... WHERE visible_at <= now()
//                         ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
//                         RETURNING id, payload (the claim); DELETE (the ack).
//                         Autocommit, prepared statements, libpq
//                         (JOBRING_BENCH_PG_CONNINFO); built only when libpq
//                         is found.
// Payload: 64 bytes. Read items_per_second (one item = one job), which is
// per wall-clock second (UseRealTime): the client mostly waits for the
// server, so its CPU time would count only a third of a job's time.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#ifdef JOBRING_BENCH_HAVE_LIBPQ
#include <libpq-fe.h>
#endif
#ifdef JOBRING_BENCH_HAVE_REDIS_BACKEND
#include <chrono>
#include <span>

#include "jobring/redis_queue.hpp"
#endif
#include "procs.hpp"

namespace {

constexpr std::size_t kPayload = 64;

// --- A minimal synchronous RESP2 client --------------------------------------

class Redis {
 public:
  explicit Redis(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;
  ~Redis() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] bool ok() const noexcept { return fd_ >= 0; }

  // Sends one command; returns the reply's first line type and, for bulk
  // strings, the body in `bulk`. False on a protocol or I/O error.
  bool command(std::initializer_list<std::string_view> args, char& type, std::string& bulk) {
    out_.clear();
    append_header('*', args.size());
    for (const auto a : args) {
      append_header('$', a.size());
      out_.append(a);
      out_.append("\r\n");
    }
    if (!write_all(out_)) return false;
    std::string line;
    if (!read_line(line) || line.empty()) return false;
    type = line[0];
    if (type == '$') {
      const long n = std::atol(line.c_str() + 1);
      bulk.clear();
      if (n < 0) return true;  // nil
      return read_exact(bulk, static_cast<std::size_t>(n) + 2) &&
             (bulk.resize(static_cast<std::size_t>(n)), true);
    }
    return type == ':' || type == '+';
  }

 private:
  void append_header(char kind, std::size_t n) {
    out_.push_back(kind);
    out_.append(std::to_string(n));
    out_.append("\r\n");
  }
  bool write_all(const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
      const ssize_t n = ::write(fd_, s.data() + done, s.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool fill() {
    char buf[4096];
    ssize_t n;
    do {
      n = ::read(fd_, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  bool read_line(std::string& line) {
    for (;;) {
      const auto pos = in_.find("\r\n");
      if (pos != std::string::npos) {
        line = in_.substr(0, pos);
        in_.erase(0, pos + 2);
        return true;
      }
      if (!fill()) return false;
    }
  }
  bool read_exact(std::string& out, std::size_t n) {
    while (in_.size() < n)
      if (!fill()) return false;
    out = in_.substr(0, n);
    in_.erase(0, n);
    return true;
  }

  int fd_ = -1;
  std::string out_;
  std::string in_;
};

void BM_External_redis(benchmark::State& state) {
  const char* path = std::getenv("JOBRING_BENCH_REDIS_SOCKET");
  if (path == nullptr || *path == '\0') {
    state.SkipWithError("no Redis (JOBRING_BENCH_REDIS_SOCKET unset)");
    return;
  }
  Redis r(path);
  if (!r.ok()) {
    state.SkipWithError("cannot connect to Redis");
    return;
  }
  const std::string payload(kPayload, 'j');
  char type = 0;
  std::string bulk;
  (void)r.command({"DEL", "jobs", "processing"}, type, bulk);
  for (auto _ : state) {
    if (!r.command({"LPUSH", "jobs", payload}, type, bulk) || type != ':' ||
        !r.command({"LMOVE", "jobs", "processing", "RIGHT", "LEFT"}, type, bulk) || type != '$' ||
        bulk.size() != kPayload || !r.command({"LREM", "processing", "1", bulk}, type, bulk) || type != ':') {
      state.SkipWithError("unexpected Redis reply");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_External_redis)->Name("BM_External/redis")->Unit(benchmark::kMicrosecond)->UseRealTime();

#ifdef JOBRING_BENCH_HAVE_REDIS_BACKEND
// jobring's Redis backend on the same server: push + claim + ack through
// jobring::RedisQueue, three FCALLs (each one atomic function call doing
// the fencing, attempt counting and bookkeeping); with range(0) > 1, batches
// of that many jobs (push_many, try_claim_many, ack_many: three FCALLs per
// batch). Items are jobs.
void BM_External_jobring_redis(benchmark::State& state) {
  const char* path = std::getenv("JOBRING_BENCH_REDIS_SOCKET");
  if (path == nullptr || *path == '\0') {
    state.SkipWithError("no Redis (JOBRING_BENCH_REDIS_SOCKET unset)");
    return;
  }
  const std::string url = std::string("redis+unix://") + path;
  const std::string name = "bench." + std::to_string(::getpid());
  const auto batch = static_cast<std::size_t>(state.range(0));
  std::error_code ec;
  jobring::RedisQueue::remove(url, name, ec);
  auto q = jobring::RedisQueue::create(url, name, {.capacity = 1024, .max_payload = kPayload}, ec);
  if (!q) {
    state.SkipWithError(("cannot create the queue: " + ec.message()).c_str());
    return;
  }
  const std::string payload(kPayload, 'j');
  const auto bytes = std::as_bytes(std::span(payload.data(), payload.size()));
  std::vector<std::span<const std::byte>> payloads(batch, bytes);
  std::vector<jobring::Job> jobs(batch);
  std::vector<jobring::Lease> leases(batch);
  for (auto _ : state) {
    if (batch == 1) {
      if (!q->push(bytes, {}, ec) || q->try_claim(jobs[0], {}, ec) != jobring::ClaimStatus::ok ||
          q->ack(jobs[0].lease, ec) != jobring::LeaseStatus::ok) {
        state.SkipWithError(("unexpected outcome: " + ec.message()).c_str());
        break;
      }
      continue;
    }
    const std::size_t pushed = q->push_many(payloads, {}, {}, ec);
    const std::size_t claimed = q->try_claim_many(jobs, {}, ec);
    for (std::size_t i = 0; i < claimed; ++i) leases[i] = jobs[i].lease;
    const std::size_t acked = q->ack_many(std::span(leases.data(), claimed), {}, ec);
    if (pushed != batch || claimed != batch || acked != batch) {
      const std::string what = "pushed " + std::to_string(pushed) + ", claimed " + std::to_string(claimed) +
                               ", acked " + std::to_string(acked) + " of " + std::to_string(batch) + ": " +
                               ec.message();
      state.SkipWithError(what.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
  jobring::RedisQueue::remove(url, name, ec);
}
BENCHMARK(BM_External_jobring_redis)
    ->Name("BM_External/jobring_redis")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

#endif

// --- Across processes --------------------------------------------------------

constexpr int kJobsPerProducer = 2000;
constexpr std::string_view kStop = "stop";

struct Start {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
};

// Forks P producers and W workers that wait for the start signal, runs them,
// and returns the seconds from the signal to the last exit (negative: a
// child failed or the run took over 120 s). `finish` runs in the parent
// once the producers are done (it queues the workers' stop jobs).
template <class Producer, class Worker, class Finish>
double run_procs(int producers, int workers, Producer producer, Worker worker, Finish finish) {
  bench::Shared<Start> start;
  bench::ProcessGroup prods, works;
  auto gate = [&start] {
    start->ready.fetch_add(1);
    while (!start->go.load()) ::usleep(100);
  };
  for (int i = 0; i < workers; ++i)
    works.spawn([&, i] {
      gate();
      return worker(i);
    });
  for (int i = 0; i < producers; ++i)
    prods.spawn([&, i] {
      gate();
      return producer(i);
    });
  const std::int64_t limit = bench::mono_ns() + 120'000'000'000;
  while (start->ready.load() < producers + workers && bench::mono_ns() < limit) ::usleep(200);
  const std::int64_t t0 = bench::mono_ns();
  start->go.store(true);
  if (!prods.wait_all(limit) || !finish()) return -1;
  if (!works.wait_all(limit)) return -1;
  return static_cast<double>(bench::mono_ns() - t0) / 1e9;
}

// One run's seconds (from run_procs) into the iteration's time and the sum;
// false, with the benchmark's error set, if the run failed.
bool record_run(benchmark::State& state, double s, double& seconds) {
  if (s < 0) {
    state.SkipWithError("a process failed or the run took over 120 s");
    return false;
  }
  state.SetIterationTime(s);
  seconds += s;
  return true;
}

void procs_counters(benchmark::State& state, int producers, double seconds_sum) {
  const auto jobs = static_cast<double>(state.iterations()) * producers * kJobsPerProducer;
  state.counters["jobs_per_second"] = seconds_sum > 0 ? jobs / seconds_sum : 0;
  state.SetItemsProcessed(static_cast<std::int64_t>(jobs));
}

const char* redis_socket(benchmark::State& state) {
  const char* path = std::getenv("JOBRING_BENCH_REDIS_SOCKET");
  if (path == nullptr || *path == '\0') state.SkipWithError("no Redis (JOBRING_BENCH_REDIS_SOCKET unset)");
  return path != nullptr && *path != '\0' ? path : nullptr;
}

// The bare reliable queue across processes: LPUSH; BLMOVE + LREM.
void BM_External_redis_procs(benchmark::State& state) {
  const char* path = redis_socket(state);
  if (path == nullptr) return;
  const int producers = static_cast<int>(state.range(0)), workers = static_cast<int>(state.range(1));
  const std::string payload(kPayload, 'j');
  double seconds = 0;
  for (auto _ : state) {
    const double s = run_procs(
        producers, workers,
        [&](int) {
          Redis r(path);
          char type = 0;
          std::string bulk;
          for (int i = 0; i < kJobsPerProducer; ++i)
            if (!r.ok() || !r.command({"LPUSH", "pjobs", payload}, type, bulk)) return 1;
          return 0;
        },
        [&](int) {
          Redis r(path);
          char type = 0;
          std::string bulk;
          for (;;) {
            if (!r.ok() ||
                !r.command({"BLMOVE", "pjobs", "pprocessing", "RIGHT", "LEFT", "30"}, type, bulk) ||
                type != '$')
              return 1;
            const std::string job = bulk;
            if (!r.command({"LREM", "pprocessing", "1", job}, type, bulk)) return 1;
            if (job == kStop) return 0;
          }
        },
        [&] {
          Redis r(path);
          char type = 0;
          std::string bulk;
          for (int i = 0; i < workers; ++i)
            if (!r.ok() || !r.command({"LPUSH", "pjobs", kStop}, type, bulk)) return false;
          return true;
        });
    if (!record_run(state, s, seconds)) break;
  }
  procs_counters(state, producers, seconds);
}
BENCHMARK(BM_External_redis_procs)
    ->Name("BM_External/redis_procs")
    ->Args({1, 1})
    ->Args({2, 2})
    ->Args({4, 4})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

#ifdef JOBRING_BENCH_HAVE_REDIS_BACKEND
// jobring's Redis backend across processes: push (push_many of B); a worker
// claims up to B jobs (blocking), acks them with one ack_many, and stops at
// a stop job (handing back any further stop jobs it took, so that every
// worker gets one).
void BM_External_jobring_redis_procs(benchmark::State& state) {
  const char* path = redis_socket(state);
  if (path == nullptr) return;
  const int producers = static_cast<int>(state.range(0)), workers = static_cast<int>(state.range(1));
  const auto batch = static_cast<std::size_t>(state.range(2));
  const std::string url = std::string("redis+unix://") + path;
  const std::string name = "bench.procs." + std::to_string(::getpid());
  const std::string payload(kPayload, 'j');
  const auto bytes = std::as_bytes(std::span(payload.data(), payload.size()));
  const auto stop = std::as_bytes(std::span(kStop.data(), kStop.size()));
  double seconds = 0;
  for (auto _ : state) {
    std::error_code ec;
    jobring::RedisQueue::remove(url, name, ec);
    if (!jobring::RedisQueue::create(url, name, {.capacity = 1 << 20, .max_payload = kPayload}, ec)) {
      state.SkipWithError(("cannot create the queue: " + ec.message()).c_str());
      break;
    }
    const double s = run_procs(
        producers, workers,
        [&](int) {
          auto q = jobring::RedisQueue::open(url, name);
          std::vector<std::span<const std::byte>> payloads(batch, bytes);
          for (int done = 0; done < kJobsPerProducer;) {
            const auto n = std::min<std::size_t>(batch, static_cast<std::size_t>(kJobsPerProducer - done));
            if (n == 1 ? !q.push(bytes) : q.push_many(std::span(payloads.data(), n)) != n) return 1;
            done += static_cast<int>(n);
          }
          return 0;
        },
        [&](int) {
          auto q = jobring::RedisQueue::open(url, name);
          std::vector<jobring::Job> jobs(batch);
          std::vector<jobring::Lease> leases(batch);
          for (;;) {
            const std::size_t n = q.claim_many(jobs, std::chrono::seconds(30));
            if (n == 0) return 1;
            std::size_t stops = 0;
            for (std::size_t i = 0; i < n; ++i) {
              leases[i] = jobs[i].lease;
              if (jobs[i].text() == kStop) ++stops;
            }
            if (n == 1 ? q.ack(leases[0]) != jobring::LeaseStatus::ok
                       : q.ack_many(std::span(leases.data(), n)) != n)
              return 1;
            for (std::size_t i = 1; i < stops; ++i)
              if (!q.push(stop)) return 1;
            if (stops > 0) return 0;
          }
        },
        [&] {
          auto q = jobring::RedisQueue::open(url, name);
          for (int i = 0; i < workers; ++i)
            if (!q.push(stop)) return false;
          return true;
        });
    jobring::RedisQueue::remove(url, name, ec);
    if (!record_run(state, s, seconds)) break;
  }
  procs_counters(state, producers, seconds);
}
BENCHMARK(BM_External_jobring_redis_procs)
    ->Name("BM_External/jobring_redis_procs")
    ->Args({1, 1, 1})
    ->Args({2, 2, 1})
    ->Args({4, 4, 1})
    ->Args({1, 1, 32})
    ->Args({2, 2, 32})
    ->Args({4, 4, 32})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
#endif

#ifdef JOBRING_BENCH_HAVE_LIBPQ
bool pg_ok(PGresult* r, ExecStatusType want) {
  const bool ok = r != nullptr && PQresultStatus(r) == want;
  PQclear(r);
  return ok;
}

void BM_External_postgres(benchmark::State& state) {
  const char* conninfo = std::getenv("JOBRING_BENCH_PG_CONNINFO");
  if (conninfo == nullptr || *conninfo == '\0') {
    state.SkipWithError("no PostgreSQL (JOBRING_BENCH_PG_CONNINFO unset)");
    return;
  }
  PGconn* c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    state.SkipWithError("cannot connect to PostgreSQL");
    PQfinish(c);
    return;
  }
  bool ok =
      pg_ok(PQexec(c, "DROP TABLE IF EXISTS jobs"), PGRES_COMMAND_OK) &&
      pg_ok(PQexec(c,
                   "CREATE TABLE jobs (id bigserial PRIMARY KEY, payload bytea NOT NULL, "
                   "visible_at timestamptz NOT NULL DEFAULT now(), attempts int NOT NULL DEFAULT 0)"),
            PGRES_COMMAND_OK) &&
      pg_ok(PQprepare(c, "push", "INSERT INTO jobs (payload) VALUES ($1)", 1, nullptr), PGRES_COMMAND_OK) &&
      pg_ok(PQprepare(c, "claim",
                      "UPDATE jobs SET visible_at = now() + interval '30 seconds', attempts = attempts + 1 "
                      "WHERE id = (SELECT id FROM jobs WHERE visible_at <= now() ORDER BY id "
                      "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, payload",
                      0, nullptr),
            PGRES_COMMAND_OK) &&
      pg_ok(PQprepare(c, "ack", "DELETE FROM jobs WHERE id = $1", 1, nullptr), PGRES_COMMAND_OK);
  if (!ok) {
    state.SkipWithError(PQerrorMessage(c));
    PQfinish(c);
    return;
  }
  const std::string payload(kPayload, 'j');
  const char* push_values[1] = {payload.data()};
  const int push_lengths[1] = {static_cast<int>(payload.size())};
  const int binary[1] = {1};
  for (auto _ : state) {
    if (!pg_ok(PQexecPrepared(c, "push", 1, push_values, push_lengths, binary, 0), PGRES_COMMAND_OK)) {
      state.SkipWithError("INSERT failed");
      break;
    }
    PGresult* r = PQexecPrepared(c, "claim", 0, nullptr, nullptr, nullptr, 0);
    if (r == nullptr || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
      PQclear(r);
      state.SkipWithError("claim found nothing");
      break;
    }
    const std::string id = PQgetvalue(r, 0, 0);
    PQclear(r);
    const char* ack_values[1] = {id.c_str()};
    if (!pg_ok(PQexecPrepared(c, "ack", 1, ack_values, nullptr, nullptr, 0), PGRES_COMMAND_OK)) {
      state.SkipWithError("DELETE failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  PQfinish(c);
}
BENCHMARK(BM_External_postgres)->Name("BM_External/postgres")->Unit(benchmark::kMicrosecond)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
