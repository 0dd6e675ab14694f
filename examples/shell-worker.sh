#!/bin/sh
# A shell worker and a shell producer for a jobring queue.
#
#   JOBRING=/path/to/jobring sh examples/shell-worker.sh [JOBS]
#   sh examples/shell-worker.sh [JOBS]          # with `jobring` on PATH
#
# What it shows:
#   - `jobring work NAME -- CMD` turns any command into a worker: for each job
#     it runs CMD with the payload on stdin and JOBRING_JOB_ID / JOBRING_ATTEMPT
#     in the environment; exit 0 acks the job, any other exit releases it for
#     a retry (with exponential backoff, from --backoff).
#   - a producer loop with `jobring push NAME DATA` (or the payload on stdin);
#     push prints the new job's id.
#   - `jobring stat NAME --json` to watch progress, and SIGTERM for a graceful
#     stop (the worker finishes the job in hand, then exits 0).
#
# It makes a queue of its own (removed at the end), pushes JOBS jobs (default
# 8; every fourth fails on its first attempt, to show a retry), waits until
# every job is acked, checks that each was done, and exits 0 — or 1 on any
# problem; its last line is then "result: OK: ...". It runs unattended (CI runs
# it: tests/cli/test_cli.cpp and the ctest test example.shell; scripts/demo too).
set -eu

JOBRING=${JOBRING:-jobring}
case ${1:-} in
  -h | --help)
    sed -n '2,20s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
esac
JOBS=${1:-8}
# JOBS must be a whole number from 1 to 10000: checked before anything is
# made, so a bad argument leaves no queue or worker behind.
case $JOBS in
  '' | *[!0-9]*)
    echo "shell-worker.sh: JOBS must be a whole number from 1 to 10000, not '$JOBS' (try --help)" >&2
    exit 2
    ;;
esac
if [ "${#JOBS}" -gt 5 ] || [ "$JOBS" -lt 1 ] || [ "$JOBS" -gt 10000 ]; then
  echo "shell-worker.sh: JOBS must be from 1 to 10000, not $JOBS" >&2
  exit 2
fi
if ! command -v "$JOBRING" >/dev/null 2>&1; then
  echo "shell-worker.sh: cannot find the jobring binary: set JOBRING=/path/to/jobring or put it on PATH" >&2
  exit 2
fi

QUEUE="example.shell-worker.$$"
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/jobring-shell-worker.XXXXXX")
RESULTS="$WORKDIR/results"
export RESULTS          # the handler below runs in the worker's children
worker=""

cleanup() {
  if [ -n "$worker" ] && kill -0 "$worker" 2>/dev/null; then kill -TERM "$worker" 2>/dev/null || true; wait "$worker" || true; fi
  "$JOBRING" rm "$QUEUE" 2>/dev/null || true
  rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# A queue for this run: 16 slots, jobs of up to 256 bytes, 30 s leases, and a
# job that fails 3 times goes to the dead state (see `jobring peek --state dead`).
"$JOBRING" create "$QUEUE" --capacity 16 --max-payload 256 --lease 30s --max-attempts 3

# --- The worker --------------------------------------------------------------
# The handler is an ordinary shell script. It reads the payload from stdin,
# does the work, and exits 0 when done. Jobs whose payload starts with "flaky"
# fail on their first attempt: the worker releases them and they come back
# (attempt 2) after the backoff. (Single quotes: the variables expand when
# the handler runs, not here.)
# shellcheck disable=SC2016
handler='
  payload=$(cat)
  case $payload in
    flaky*)
      if [ "$JOBRING_ATTEMPT" -eq 1 ]; then
        echo "job $JOBRING_JOB_ID: failing on purpose (attempt 1)" >&2
        exit 1
      fi ;;
  esac
  # The "work": upper-case the payload. One short append per job (O_APPEND).
  printf "%s %s %s\n" "$JOBRING_JOB_ID" "$JOBRING_ATTEMPT" "$(printf %s "$payload" | tr a-z A-Z)" >> "$RESULTS"
'
# Two jobs at a time; a failed job is retried after 50-100 ms (jitter: half to all
# of --backoff), then 100-200 ms, and so on up to --max-backoff.
"$JOBRING" work "$QUEUE" --concurrency 2 --backoff 100ms -- sh -c "$handler" &
worker=$!

# --- The producer ------------------------------------------------------------
# push prints the job id. --wait 10s: if the queue is full, wait for room
# instead of failing with exit status 3.
i=1
while [ "$i" -le "$JOBS" ]; do
  if [ $((i % 4)) -eq 0 ]; then data="flaky job $i"; else data="job $i"; fi
  if [ "$i" -eq "$JOBS" ]; then
    id=$(printf '%s' "$data" | "$JOBRING" push "$QUEUE" --wait 10s)   # payload from stdin
  else
    id=$("$JOBRING" push "$QUEUE" "$data" --wait 10s)
  fi
  echo "pushed job $id: $data"
  i=$((i + 1))
done

# --- Wait until every job is acked (up to 60 s) --------------------------------
acked=0
tries=0
while :; do
  # One JSON object; pick the "acked" total out of it without needing jq.
  acked=$("$JOBRING" stat "$QUEUE" --json | sed 's/.*"acked":\([0-9]*\).*/\1/')
  [ "$acked" -ge "$JOBS" ] && break
  tries=$((tries + 1))
  if [ "$tries" -ge 600 ]; then
    echo "shell-worker.sh: only $acked of $JOBS jobs done after 60 s" >&2
    "$JOBRING" stat "$QUEUE" >&2
    exit 1
  fi
  sleep 0.1
done

# Graceful stop: SIGTERM makes the worker stop claiming, finish what it runs,
# and exit 0.
kill -TERM "$worker"
status=0
wait "$worker" || status=$?
worker=""
if [ "$status" -ne 0 ]; then
  echo "shell-worker.sh: the worker exited with status $status" >&2
  exit 1
fi

# --- Check: every job done, the flaky ones on their second attempt -------------
"$JOBRING" stat "$QUEUE"
done_jobs=$(cut -d' ' -f1 "$RESULTS" | sort -u | wc -l)
retried=$(awk '$2 == 2' "$RESULTS" | wc -l)
if [ "$done_jobs" -ne "$JOBS" ] || [ "$retried" -ne $((JOBS / 4)) ]; then
  echo "shell-worker.sh: expected $JOBS jobs done ($((JOBS / 4)) retried), got $done_jobs ($retried retried):" >&2
  cat "$RESULTS" >&2
  exit 1
fi
echo "all $JOBS jobs done ($retried after a retry):"
sort -n "$RESULTS"
echo "result: OK: $JOBS jobs done by a shell worker (jobring work), $retried after a retry"
