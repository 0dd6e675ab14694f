# shellcheck shell=bash
# Sourced by scripts/test, scripts/fuzz and scripts/demo: strict mode, the
# packages the build needs (installed with apt-get when run as root on
# Debian/Ubuntu), and a function that configures and builds one build directory.
set -euo pipefail

JOBRING_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBRING_JOBS="${JOBRING_JOBS:-$(nproc 2>/dev/null || echo 2)}"

# Debian 12 package names. Boost.Interprocess is header-only (libboost-dev);
# program_options is for jobring-janitor and the jobring CLI; GoogleTest/GMock
# for tests/; Google Benchmark for bench/; systemd for systemd-analyze and
# systemd-sysusers, with which tests verify the janitor's unit and sysusers
# files; prometheus for promtool, which checks the janitor's metrics file;
# pkg-config, with which a test compiles a program against an install;
# help2man, which makes the man pages from the binaries' --help (without it
# the build makes none, and says so); python3 with python3-pytest for the
# Python package's tests (python/), and python3-setuptools, python3-wheel,
# python3-pip and python3-venv, with which a test installs it offline into a
# virtual environment, as README.md says; mypy, which checks its type hints.
# (The tests that need a tool are skipped, saying so, where it is missing.)
JOBRING_PACKAGES=(g++ cmake make libboost-dev libboost-program-options-dev libgtest-dev libgmock-dev
                  libbenchmark-dev systemd prometheus pkg-config help2man
                  python3 python3-pytest python3-setuptools python3-wheel python3-pip python3-venv mypy)
# The Redis backend (issue 15): hiredis to build lib/redis/ (libhiredis-dev),
# and a redis-server 7 (redis-server, redis-tools for redis-cli) that the
# tests of tests/redis/ start on a unix socket of their own; they never use
# a system Redis.
JOBRING_PACKAGES+=(redis-server redis-tools libhiredis-dev)
# Only for the fuzz targets (scripts/fuzz, the "fuzz" stage of scripts/test):
# clang, and libFuzzer with clang's sanitizer runtimes, which Debian 12 ships
# in libclang-rt-14-dev (clang only recommends it, and we install without
# recommends).
# shellcheck disable=SC2034  # used by scripts/test and scripts/fuzz
JOBRING_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

log() { printf '==> %s\n' "$*"; }
# script_help: prints the running script's header comment (its usage), from
# line 2 to the first line that is not a comment (or is a shellcheck one).
script_help() {
  awk 'NR == 1 { next } /^# shellcheck/ || !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# jobring_install_deps [EXTRA_PACKAGES...]: installs whatever in
# JOBRING_PACKAGES and the extra packages is missing. Does nothing (and does
# not touch the network) when everything is installed.
jobring_install_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    log "not a Debian-based system: not checking packages (need a C++20 compiler, CMake >= 3.25," \
        "Boost >= 1.74, GoogleTest, Google Benchmark)"
    return 0
  fi
  local missing=() pkg
  for pkg in "${JOBRING_PACKAGES[@]}" "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    die "missing packages: ${missing[*]}
  install them with:  sudo apt-get install ${missing[*]}
  then run $0 again."
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# jobring_build DIR TARGETS [CMAKE_ARGS...]: configure (quietly) and build DIR.
# TARGETS is a space-separated list ("all" for everything). Commands run with
# the prefix in the array JOBRING_RUN (e.g. env VAR=... setarch ... -R), if set.
# A build directory configured from another source tree (a moved or copied
# clone) is wiped first, so that re-running is always safe.
jobring_build() {
  local dir="$1" target_list
  read -r -a target_list <<<"${2:-all}"
  shift 2
  local run=("${JOBRING_RUN[@]+"${JOBRING_RUN[@]}"}")
  if [[ -f "$dir/CMakeCache.txt" ]] &&
     ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$JOBRING_ROOT" "$dir/CMakeCache.txt"; then
    log "removing $dir (configured for another source tree)"
    rm -rf "$dir"
  fi
  log "configuring ${dir#"$JOBRING_ROOT"/} $*"
  "${run[@]}" cmake -S "$JOBRING_ROOT" -B "$dir" --log-level=WARNING "$@" || return 1
  log "building ${dir#"$JOBRING_ROOT"/} (${target_list[*]}, -j$JOBRING_JOBS)"
  "${run[@]}" cmake --build "$dir" -j "$JOBRING_JOBS" --target "${target_list[@]}" || return 1
}
