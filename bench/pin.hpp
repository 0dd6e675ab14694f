// CPU pinning for the cross-process benchmarks (issue 16): on a 2-vCPU VM
// the scheduler decides run by run whether two processes share a core, which
// moved the same figure by 6x between runs. Pinned runs place every process
// on a fixed CPU, the same placement for every system measured.
#pragma once

#include <sched.h>

#include <cstdlib>
#include <vector>

namespace bench {

// The CPUs this process may run on, in order (empty if unknown).
inline std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

// Pins the calling thread (a single-threaded process: the process) to `cpu`;
// -1 leaves it where it is.
inline bool pin_to(int cpu) {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

// A ping-pong's pinning, from the environment variable `var`: 1 puts this
// process on the first allowed CPU for the object's lifetime (its mask is
// restored after) and the child it forks on the second (child(), called in
// the child): every hop is a wake-up across CPUs. 2 puts both on the first
// CPU: every hop is a hand-off on one CPU. 0 or unset: inactive.
class PinPair {
 public:
  explicit PinPair(const char* var) {
    const char* v = std::getenv(var);
    const long mode = v != nullptr ? std::atol(v) : 0;
    if (mode != 1 && mode != 2) return;
    CPU_ZERO(&saved_);
    const std::vector<int> cpus = allowed_cpus();
    if (cpus.size() < (mode == 1 ? 2u : 1u) || ::sched_getaffinity(0, sizeof saved_, &saved_) != 0) {
      failed_ = true;
      return;
    }
    child_cpu_ = mode == 1 ? cpus[1] : cpus[0];
    active_ = pin_to(cpus[0]);
    failed_ = !active_;
  }
  PinPair(const PinPair&) = delete;
  PinPair& operator=(const PinPair&) = delete;
  ~PinPair() {
    if (active_) (void)::sched_setaffinity(0, sizeof saved_, &saved_);
  }
  // In the forked child: moves it to its own CPU. False if that failed.
  [[nodiscard]] bool child() const { return !active_ || pin_to(child_cpu_); }
  [[nodiscard]] bool active() const noexcept { return active_; }
  // Asked for but not possible (too few CPUs allowed, or refused).
  [[nodiscard]] bool failed() const noexcept { return failed_; }

 private:
  cpu_set_t saved_{};
  int child_cpu_ = -1;
  bool active_ = false;
  bool failed_ = false;
};

}  // namespace bench
