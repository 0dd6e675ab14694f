// jobring-example-resize — "resize profile photo after upload": a producer and a
// pool of worker processes that really resize images, one worker killed in
// the middle of a job. Every image is resized, and each output written once.
//
//   jobring-example-resize                       12 images, 3 workers, one killed
//   jobring-example-resize --images 500 --workers 4 --work-ms 0 --quiet
//
// What it shows:
//   - The producer pushes one job per image (payload: input path, output path,
//     target size) with a de-duplication key (the output's name): pushing the
//     same image again — an upload handler that fired twice — adds nothing
//     (PushResult::duplicate).
//   - The workers are separate processes built on jobring::Worker. The
//     handler reads a PPM image, shrinks it with a box filter, and writes the
//     result to a temporary file that it renames into place: an output is
//     either complete or absent, so its existence is the record that the job
//     is done, and a redelivered job whose output exists is skipped.
//   - A crash: the worker that starts the middle image stops half-way (half
//     of the rows in its temporary file) and this process SIGKILLs it. The job
//     is not lost: it stays hidden until its lease runs out (500 ms; at once
//     if jobring-janitor runs), then another worker claims it (attempt 2) and
//     does it. The half-written temporary file never becomes the output.
//   - The check, at the end: every output exists once, is a valid PPM of the
//     target size with exactly the expected pixels, and was written by exactly
//     one worker; the killed worker's image was redone by another one; the
//     queue is empty. Exit status 0 only if all of that holds.
//
// Inputs are generated (64×48 gradients) in a temporary directory, removed at
// the end with the queue ("resize.<pid>"). Options: --help.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "example_support.hpp"
#include "jobring/queue.hpp"
#include "jobring/worker.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using example::Clock;
using std::chrono::milliseconds;

const char kUsage[] =
    "usage: jobring-example-resize [options]\n"
    "\n"
    "Generates N PPM images, pushes one resize job per image, and runs a pool of\n"
    "worker processes that shrink them. The worker that starts the middle image is\n"
    "killed (SIGKILL) half-way through it; its job comes back when the lease runs\n"
    "out and another worker does it. Then it checks every output.\n"
    "\n"
    "  --images N     images to resize (default 12)\n"
    "  --workers N    worker processes (default 3; at least 2 unless --no-kill)\n"
    "  --lease-ms N   lease of a claim (default 500): how long the killed worker's\n"
    "                 job stays hidden\n"
    "  --work-ms N    how long one resize takes, paced row by row (default 40)\n"
    "  --width N, --height N   the target size (default 16 x 12; inputs are 64 x 48)\n"
    "  --no-kill      kill no worker\n"
    "  --quiet        no line per image\n"
    "  --keep         keep the temporary directory (its path is printed)\n"
    "\n"
    "Exit status: 0 if every check passed, 1 if not, 2 for a usage error.\n";

struct Config {
  std::uint64_t images = 12;
  std::uint64_t workers = 3;
  std::uint64_t lease_ms = 500;
  std::uint64_t work_ms = 40;
  std::uint64_t width = 16;
  std::uint64_t height = 12;
  bool kill = true;
  bool quiet = false;
  bool keep = false;
};

constexpr int kInputWidth = 64;
constexpr int kInputHeight = 48;

// --- Images: binary PPM (P6), 8 bits per channel --------------------------------

struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // width × height × 3 bytes, row by row
  friend bool operator==(const Image&, const Image&) = default;
};

std::string ppm_header(int width, int height) {
  return "P6\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
}

// Reads a P6 file with maxval 255 (no comments). Throws std::runtime_error if
// it is not one, or is cut short.
Image read_ppm(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::string magic;
  Image image;
  int maxval = 0;
  in >> magic >> image.width >> image.height >> maxval;
  if (!in || magic != "P6" || image.width < 1 || image.height < 1 || image.width > 16384 ||
      image.height > 16384 || maxval != 255 || in.get() != '\n')
    throw std::runtime_error(path.string() + " is not a binary PPM (P6, maxval 255)");
  image.rgb.resize(static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3);
  in.read(reinterpret_cast<char*>(image.rgb.data()), static_cast<std::streamsize>(image.rgb.size()));
  if (in.gcount() != static_cast<std::streamsize>(image.rgb.size()) || in.peek() != EOF)
    throw std::runtime_error(path.string() + ": the pixel data has the wrong size");
  return image;
}

// A gradient that differs from image to image.
Image make_gradient(int width, int height, int seed) {
  Image image{width, height, {}};
  image.rgb.reserve(static_cast<std::size_t>(width * height * 3));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.rgb.push_back(static_cast<std::uint8_t>(x * 255 / (width - 1)));
      image.rgb.push_back(static_cast<std::uint8_t>(y * 255 / (height - 1)));
      image.rgb.push_back(static_cast<std::uint8_t>((x * 3 + y * 5 + seed * 37) % 256));
    }
  }
  return image;
}

// Box filter: each output pixel is the rounded average of the input pixels
// it covers (every input pixel is covered when shrinking).
Image shrink(const Image& in, int width, int height) {
  Image out{width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(width * height * 3))};
  for (int y = 0; y < height; ++y) {
    const int y0 = y * in.height / height;
    const int y1 = std::max(y0 + 1, (y + 1) * in.height / height);
    for (int x = 0; x < width; ++x) {
      const int x0 = x * in.width / width;
      const int x1 = std::max(x0 + 1, (x + 1) * in.width / width);
      const int count = (y1 - y0) * (x1 - x0);
      for (int c = 0; c < 3; ++c) {
        int sum = 0;
        for (int sy = y0; sy < y1; ++sy)
          for (int sx = x0; sx < x1; ++sx)
            sum += in.rgb[static_cast<std::size_t>((sy * in.width + sx) * 3 + c)];
        out.rgb[static_cast<std::size_t>((y * width + x) * 3 + c)] =
            static_cast<std::uint8_t>((sum + count / 2) / count);
      }
    }
  }
  return out;
}

// write(2) all of `data`, retrying after EINTR and short writes.
void write_all(int fd, const void* data, std::size_t size, const fs::path& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "write " + path.string());
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

// --- A job: "INPUT\nOUTPUT\nWIDTHxHEIGHT" --------------------------------------------

struct ResizeJob {
  fs::path input;
  fs::path output;
  int width = 0;
  int height = 0;
};

std::string to_payload(const ResizeJob& r) {
  return r.input.string() + "\n" + r.output.string() + "\n" + std::to_string(r.width) + "x" +
         std::to_string(r.height);
}

ResizeJob parse_payload(std::string_view text) {
  const auto nl1 = text.find('\n');
  const auto nl2 = nl1 == std::string_view::npos ? nl1 : text.find('\n', nl1 + 1);
  ResizeJob r;
  if (nl2 == std::string_view::npos ||
      std::sscanf(std::string(text.substr(nl2 + 1)).c_str(), "%dx%d", &r.width, &r.height) != 2 ||
      r.width < 1 || r.height < 1)
    throw std::runtime_error("malformed job '" + std::string(text) + "'");
  r.input = text.substr(0, nl1);
  r.output = text.substr(nl1 + 1, nl2 - nl1 - 1);
  return r;
}

// --- Reports from the workers to this process -------------------------------------

// One record per event, each written with one write(2) of less than PIPE_BUF
// bytes, so that the records of different workers never interleave.
struct Event {
  enum Kind : std::uint32_t { half_way = 1, written = 2 };
  Kind kind;
  std::uint32_t worker;   // 0 .. workers - 1
  std::uint32_t attempt;  // Job::attempt
  std::uint32_t reserved;
  jobring::JobId job;
};
static_assert(sizeof(Event) <= PIPE_BUF);

void send_event(int fd, const Event& event) {
  while (::write(fd, &event, sizeof event) < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "write to the parent");
  }
}

// What a worker process knows besides the queue.
struct WorkerSetup {
  std::uint32_t index = 0;
  int report_fd = -1;
  milliseconds row_pause{0};  // work_ms spread over the rows
  fs::path victim;            // the output whose worker stops half-way (empty: none)
  bool quiet = false;
};

// --- The worker: the handler, and the process that runs it ----------------------------

// The handler: one job = one image. Returns ack when the output is written,
// skip when it was written before (a redelivery after its worker died between
// the rename and the ack). An exception (an unreadable input, a full disk)
// makes the Worker release the job for a retry with backoff; the queue
// dead-letters it after max_attempts.
jobring::Outcome resize(const jobring::Job& job, jobring::JobContext& ctx, const WorkerSetup& setup) {
  const ResizeJob r = parse_payload(job.text());
  const std::string name = r.output.filename().string();
  if (fs::exists(r.output)) {
    if (!setup.quiet) std::printf("[worker %u] %s exists already: skip\n", setup.index, name.c_str());
    return jobring::Outcome::skip();
  }
  if (!setup.quiet)
    std::printf("[worker %u] %s: %dx%d -> %dx%d  (job %llu, attempt %u)\n", setup.index, name.c_str(),
                kInputWidth, kInputHeight, r.width, r.height, static_cast<unsigned long long>(job.id),
                job.attempt);
  const Image out = shrink(read_ppm(r.input), r.width, r.height);

  // Write a temporary file of our own, then rename it over the output: the
  // rename is atomic, so the output appears complete or not at all, whenever
  // this process dies.
  const fs::path tmp = r.output.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "create " + tmp.string());
  try {
    const std::string header = ppm_header(out.width, out.height);
    write_all(fd, header.data(), header.size(), tmp);
    const std::size_t row = static_cast<std::size_t>(out.width) * 3;
    for (int y = 0; y < out.height; ++y) {
      write_all(fd, out.rgb.data() + static_cast<std::size_t>(y) * row, row, tmp);
      if (y + 1 == out.height / 2 && job.attempt == 1 && r.output == setup.victim) {
        // Fault injection: stop half-way, tell the parent, and wait for its SIGKILL.
        std::printf("[worker %u] %s: half of the rows written to %s ...\n", setup.index, name.c_str(),
                    tmp.filename().c_str());
        send_event(setup.report_fd, {Event::half_way, setup.index, job.attempt, 0, job.id});
        for (;;) ::pause();
      }
      // "Slow work": sleep between rows. sleep_for returns early if the job
      // is cancelled (lease lost: someone else may have it) or a stop is
      // requested (then we just finish quickly).
      (void)ctx.sleep_for(setup.row_pause);
      if (ctx.cancelled()) {
        ::close(fd);
        fs::remove(tmp);
        return jobring::Outcome::retry();  // discarded anyway: the job is no longer ours
      }
    }
    if (::fdatasync(fd) != 0) throw std::system_error(errno, std::generic_category(), "fdatasync");
  } catch (...) {
    ::close(fd);
    fs::remove(tmp);
    throw;
  }
  ::close(fd);
  fs::rename(tmp, r.output);  // the output now exists, complete
  // (To survive a power loss too, fsync the directory here.)
  send_event(setup.report_fd, {Event::written, setup.index, job.attempt, 0, job.id});
  return jobring::Outcome::ack();
}

// The body of a worker process: a jobring::Worker running the handler until
// SIGTERM (sent by the parent when every image is done).
int worker_process(const std::string& queue_name, const Config& config, const WorkerSetup& setup) {
  jobring::Queue queue = jobring::Queue::open(queue_name);
  jobring::Worker worker(
      queue, [&](const jobring::Job& job, jobring::JobContext& ctx) { return resize(job, ctx, setup); },
      {.lease = milliseconds(config.lease_ms), .backoff = {.base = 100ms, .cap = 2s}});
  jobring::Worker::install_signal_handlers();  // SIGTERM: finish the image in hand, then return
  const jobring::WorkerSummary s = worker.run();
  std::printf("[worker %u] stopped: %llu resized, %llu skipped, %llu failed\n", setup.index,
              static_cast<unsigned long long>(s.acked), static_cast<unsigned long long>(s.skipped),
              static_cast<unsigned long long>(s.retried + s.dead + s.lease_lost));
  return 0;
}

// --- The parent: producer, supervisor and checker ---------------------------------------

class Run {
 public:
  explicit Run(const Config& config)
      : config_(config),
        dir_("jobring-resize"),
        queue_("resize", {.capacity = 64,
                          .max_payload = 3 * PATH_MAX,
                          .default_lease = milliseconds(config.lease_ms),
                          .max_attempts = 5}) {
    if (config.keep) dir_.keep();
  }
  // On an early exit (an exception): no worker outlives the run.
  ~Run() {
    for (const pid_t pid : workers_) {
      if (pid <= 0) continue;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (events_fd_ >= 0) ::close(events_fd_);
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  int run() {
    const Config& c = config_;
    std::printf(
        "resize: %llu images %dx%d -> %llux%llu, %llu worker processes, lease %llu ms, queue \"%s\"\n",
        u(c.images), kInputWidth, kInputHeight, u(c.width), u(c.height), u(c.workers), u(c.lease_ms),
        queue_.name().c_str());
    std::printf("        files in %s\n", dir_.path().c_str());
    make_inputs();
    if (c.kill)
      std::printf("the worker that starts %s will be killed (SIGKILL) half-way through it\n",
                  jobs_[victim_].output.filename().c_str());
    std::printf("\n");
    start_workers();
    start_ = Clock::now();
    const bool finished = push_and_supervise();
    stop_workers();
    while (read_events(0)) {
    }  // whatever the workers wrote before they exited
    if (example::interrupted()) {
      std::printf("result: FAILED (interrupted)\n");
      return 130;
    }
    std::printf("\ncheck (%.0f ms)\n", example::ms_since(start_));
    return check(finished);
  }

 private:
  static unsigned long long u(std::uint64_t v) { return static_cast<unsigned long long>(v); }

  void make_inputs() {
    fs::create_directory(dir_.path() / "in");
    fs::create_directory(dir_.path() / "out");
    for (std::uint64_t i = 0; i < config_.images; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "img-%03llu.ppm", u(i));
      ResizeJob r{dir_.path() / "in" / name, dir_.path() / "out" / name, static_cast<int>(config_.width),
                  static_cast<int>(config_.height)};
      const Image image = make_gradient(kInputWidth, kInputHeight, static_cast<int>(i));
      std::ofstream f(r.input, std::ios::binary);
      f << ppm_header(image.width, image.height);
      f.write(reinterpret_cast<const char*>(image.rgb.data()),
              static_cast<std::streamsize>(image.rgb.size()));
      if (!f) throw std::runtime_error("cannot write " + r.input.string());
      jobs_.push_back(std::move(r));
    }
    victim_ = config_.images / 2;
  }

  void start_workers() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    const milliseconds row_pause(config_.work_ms / config_.height);
    for (std::uint32_t w = 0; w < config_.workers; ++w) {
      const WorkerSetup setup{w, fds[1], row_pause, config_.kill ? jobs_[victim_].output : fs::path(),
                              config_.quiet};
      workers_.push_back(example::spawn([&] {
        ::close(fds[0]);
        return worker_process(queue_.name(), config_, setup);
      }));
    }
    ::close(fds[1]);  // read() sees EOF once every worker has exited
    events_fd_ = fds[0];
  }

  // Pushes every job (reading the workers' reports whenever the queue is
  // full), then reads reports until every image is written. False on a
  // timeout, Ctrl-C, or when every worker has died.
  bool push_and_supervise() {
    const Clock::time_point give_up =
        start_ + 30s + 4 * milliseconds(config_.lease_ms) +
        milliseconds(2 * config_.images * (config_.work_ms + 5) / config_.workers);
    Clock::time_point next_progress = start_ + 1s;
    std::size_t next = 0;
    while (written_jobs_ < jobs_.size()) {
      while (next < jobs_.size()) {
        // The key makes a second push of the same image a no-op while the
        // first is queued, and for Options::dedup_window after its ack.
        const std::string key = "resize:" + jobs_[next].output.filename().string();
        const jobring::PushResult pushed = queue_->push(to_payload(jobs_[next]), {.key = key});
        if (!pushed) break;  // full: let the workers make room
        index_of_[pushed.id] = next;
        ++next;
        if (next == 1) {
          // The upload handler fires twice for the first image: no second job.
          const jobring::PushResult again = queue_->push(to_payload(jobs_[0]), {.key = key});
          duplicate_seen_ = again && again.duplicate && again.id == pushed.id;
          std::printf(
              "[producer] pushed %s again: %s\n", jobs_[0].output.filename().c_str(),
              duplicate_seen_ ? "duplicate, no new job (same key, same job id)" : "A NEW JOB (wrong)");
        }
      }
      if (next == jobs_.size() && !all_pushed_) {
        all_pushed_ = true;
        std::printf("[producer] pushed %zu jobs\n", jobs_.size());
      }
      if (!read_events(next < jobs_.size() ? 1 : 20)) {
        std::printf("every worker has exited before the images were done\n");
        return false;
      }
      if (config_.quiet && Clock::now() >= next_progress) {
        std::printf("[%5.1f s] %zu of %zu images written\n", example::ms_since(start_) / 1000, written_jobs_,
                    jobs_.size());
        next_progress += 1s;
      }
      if (example::interrupted() || Clock::now() >= give_up) {
        std::printf("%s after %.0f ms\n", example::interrupted() ? "interrupted" : "gave up",
                    example::ms_since(start_));
        return false;
      }
    }
    return true;
  }

  // Handles the reports that arrive within timeout_ms. False at EOF.
  bool read_events(int timeout_ms) {
    pollfd pfd{events_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return true;
    Event e{};
    const ssize_t n = ::read(events_fd_, &e, sizeof e);  // whole records: each was one write
    if (n == 0) return false;
    if (n != static_cast<ssize_t>(sizeof e)) return true;  // EINTR
    const auto it = index_of_.find(e.job);
    if (it == index_of_.end() || e.worker >= workers_.size()) throw std::runtime_error("a bogus report");
    const std::size_t image = it->second;
    if (e.kind == Event::half_way) {
      kill_worker(e.worker, image);
    } else if (e.kind == Event::written) {
      if (writes_[image]++ == 0) ++written_jobs_;
      if (image == victim_ && killed_) {
        redone_by_ = e.worker;
        redone_attempt_ = e.attempt;
        redone_ms_ = example::ms_since(killed_at_);
        std::printf("  ** %s was redone by worker %u on attempt %u, %.0f ms after the kill\n",
                    jobs_[image].output.filename().c_str(), e.worker, e.attempt, redone_ms_);
      }
    }
    return true;
  }

  void kill_worker(std::uint32_t w, std::size_t image) {
    ::kill(workers_[w], SIGKILL);
    killed_status_ = example::wait_for(workers_[w], 10s);
    workers_[w] = 0;
    killed_ = true;
    killed_worker_ = w;
    killed_at_ = Clock::now();
    std::printf("  !! killed worker %u (SIGKILL) in the middle of %s; %zu workers left.\n", w,
                jobs_[image].output.filename().c_str(), workers_.size() - 1);
    std::printf(
        "     Its job stays hidden until the %llu ms lease runs out (sooner if jobring-janitor runs).\n",
        u(config_.lease_ms));
  }

  // SIGTERM: each Worker finishes the job in hand and returns from run().
  void stop_workers() {
    for (const pid_t pid : workers_)
      if (pid > 0) ::kill(pid, SIGTERM);
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      if (workers_[w] <= 0) continue;
      const int status = example::wait_for(workers_[w], 20s);
      if (!example::exited_ok(status))
        bad_exits_.push_back("worker " + std::to_string(w) + ": " + example::describe(status));
      workers_[w] = 0;
    }
  }

  int check(bool finished) {
    example::Checks checks;
    checks.expect(finished, "every image was reported done");
    std::size_t good = 0;
    std::string first_bad;
    for (const ResizeJob& r : jobs_) {
      try {
        const Image want = shrink(read_ppm(r.input), r.width, r.height);
        const Image got = read_ppm(r.output);
        if (got == want) {
          ++good;
          continue;
        }
        if (first_bad.empty()) first_bad = r.output.filename().string() + " has the wrong size or pixels";
      } catch (const std::exception& e) {
        if (first_bad.empty()) first_bad = e.what();
      }
    }
    checks.expect(good == jobs_.size(),
                  std::to_string(good) + " of " + std::to_string(jobs_.size()) + " outputs exist, are " +
                      std::to_string(config_.width) + "x" + std::to_string(config_.height) +
                      " PPMs, with the expected pixels" + (first_bad.empty() ? "" : " (" + first_bad + ")"));
    std::size_t once = 0;
    for (const auto& [image, n] : writes_) once += n == 1 ? 1 : 0;
    checks.expect(once == jobs_.size(), "each output was written by exactly one worker (" +
                                            std::to_string(once) + " of " + std::to_string(jobs_.size()) +
                                            ")");
    // What else is in out/: nothing but the outputs, and the killed worker's
    // half-written temporary file.
    std::vector<std::string> others;
    for (const fs::directory_entry& e : fs::directory_iterator(dir_.path() / "out"))
      if (e.path().extension() != ".ppm") others.push_back(e.path().filename().string());
    if (config_.kill) {
      const bool one_tmp =
          others.size() == 1 && others[0].starts_with(jobs_[victim_].output.filename().string() + ".tmp.");
      checks.expect(one_tmp,
                    one_tmp ? "out/ also holds " + others[0] + ", " +
                                  std::to_string(fs::file_size(dir_.path() / "out" / others[0])) + " of " +
                                  std::to_string(fs::file_size(jobs_[victim_].output)) +
                                  " bytes, left half-written by the killed worker (never seen as the output)"
                            : "out/ holds the outputs and one half-written temporary file (" +
                                  std::to_string(others.size()) + " other files)");
      checks.expect(
          killed_ && WIFSIGNALED(killed_status_) && WTERMSIG(killed_status_) == SIGKILL,
          "a worker was killed (SIGKILL) half-way through " + jobs_[victim_].output.filename().string());
      checks.expect(redone_by_.has_value() && *redone_by_ != killed_worker_ && redone_attempt_ >= 2,
                    "another worker redid it on attempt " + std::to_string(redone_attempt_));
    } else {
      checks.expect(others.empty(), "out/ holds nothing but the outputs");
    }
    checks.expect(duplicate_seen_, "pushing an image twice made one job (PushResult::duplicate)");
    const jobring::Stats s = queue_->stats();
    const std::uint64_t left = s.writing + s.ready + s.delayed + s.leased + s.expired + s.dead + s.corrupt;
    const std::uint64_t redeliveries = s.claimed - std::min(s.claimed, s.pushed);
    checks.expect(
        left == 0 && s.acked == jobs_.size() && s.pushed == jobs_.size(),
        "the queue is empty: " + std::to_string(s.pushed) + " pushed, " + std::to_string(s.acked) + " acked");
    checks.expect(redeliveries == (config_.kill ? 1u : 0u),
                  std::to_string(redeliveries) + " redelivery: " + std::to_string(s.claimed) + " claims of " +
                      std::to_string(s.pushed) + " jobs");
    checks.expect(bad_exits_.empty(), bad_exits_.empty() ? "the other workers stopped cleanly on SIGTERM"
                                                         : "a worker ended badly: " + bad_exits_.front());
    if (config_.keep) std::printf("files kept in %s\n", dir_.path().c_str());

    std::string story = std::to_string(jobs_.size()) + " images resized by " +
                        std::to_string(config_.workers) + " workers, each written once";
    if (config_.kill && redone_by_)
      story += "; worker " + std::to_string(killed_worker_) +
               " killed mid-job, its image redone on attempt " + std::to_string(redone_attempt_) + ", " +
               std::to_string(static_cast<long>(redone_ms_)) + " ms after the kill";
    return checks.finish(story);
  }

  Config config_;
  example::TempDir dir_;
  example::ExampleQueue queue_;
  std::vector<ResizeJob> jobs_;
  std::size_t victim_ = 0;
  std::vector<pid_t> workers_;
  int events_fd_ = -1;
  Clock::time_point start_;
  std::map<jobring::JobId, std::size_t> index_of_;  // job id → image
  std::map<std::size_t, unsigned> writes_;          // image → outputs written
  std::size_t written_jobs_ = 0;
  bool all_pushed_ = false;
  bool duplicate_seen_ = false;
  bool killed_ = false;
  int killed_status_ = -1;
  std::uint32_t killed_worker_ = 0;
  Clock::time_point killed_at_;
  std::optional<std::uint32_t> redone_by_;
  std::uint32_t redone_attempt_ = 0;
  double redone_ms_ = 0;
  std::vector<std::string> bad_exits_;
};

}  // namespace

int main(int argc, char** argv) {
  return example::run_main("jobring-example-resize", [&] {
    Config config;
    example::Args args(argc, argv, kUsage);
    args.number("--images", config.images, 1, 100'000);
    args.number("--workers", config.workers, 1, 64);
    args.number("--lease-ms", config.lease_ms, 10, 60'000);
    args.number("--work-ms", config.work_ms, 0, 10'000);
    args.number("--width", config.width, 1, kInputWidth);
    args.number("--height", config.height, 2, kInputHeight);
    config.kill = !args.flag("--no-kill");
    config.quiet = args.flag("--quiet");
    config.keep = args.flag("--keep");
    args.done();
    if (config.kill && config.workers < 2)
      throw example::UsageError{"--workers must be at least 2 when one is killed (or use --no-kill)"};
    example::catch_interrupts();
    Run run(config);
    return run.run();
  });
}
