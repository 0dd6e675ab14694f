#!/usr/bin/env bash
# The bash completion of the jobring CLI (issue 14 item 8), driven as bash
# drives it: COMP_WORDS / COMP_CWORD set, the function that `complete -p
# jobring` names called, COMPREPLY read. No interactive shell.
#   test_completion.sh COMPLETION_SCRIPT JOBRING_BINARY
# Exit status 0 if every check passed; each check prints PASS or FAIL.
set -uo pipefail

completion="$(realpath "$1")"
binary="$(realpath "$2")"
# The binary as `jobring` on PATH, as a user would type it.
bin_dir="$(mktemp -d)"
ln -s "$binary" "$bin_dir/jobring"
PATH="$bin_dir:$PATH"
queue="test.completion.$$"
other="test.completion-other.$$"
redis_pid=""
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  jobring rm "$queue" 2>/dev/null
  jobring rm "$other" 2>/dev/null
  [[ -z "$redis_pid" ]] || kill -9 "$redis_pid" 2>/dev/null
  rm -rf "$bin_dir"
}
trap cleanup EXIT
jobring create "$queue" >/dev/null || exit 1
jobring create "$other" >/dev/null || exit 1

# shellcheck source=/dev/null
source "$completion" || exit 1
function_name="$(complete -p jobring 2>/dev/null | sed -nE 's/.*-F ([^ ]+) .*/\1/p')"

# complete WORD...: the completions of the last WORD (sorted, space-separated).
complete_line() {
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMP_LINE="$*"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  "$function_name" jobring "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'
}

failed=0
# expect WHAT EXPECTED WORD...: the completions of WORD... are EXPECTED exactly.
expect() {
  local what="$1" expected="$2" got
  shift 2
  got="$(complete_line "$@")"
  if [[ "$got" == "$expected" ]]; then
    printf 'PASS  %s\n' "$what"
  else
    printf 'FAIL  %s: "%s<TAB>" gave [%s], expected [%s]\n' "$what" "$*" "$got" "$expected"
    failed=1
  fi
}
# expect_has WHAT EXPECTED_WORD WORD...: EXPECTED_WORD is among the completions.
expect_has() {
  local what="$1" expected="$2" got
  shift 2
  got=" $(complete_line "$@") "
  if [[ "$got" == *" $expected "* ]]; then
    printf 'PASS  %s\n' "$what"
  else
    printf 'FAIL  %s: "%s<TAB>" gave [%s], no %s\n' "$what" "$*" "$got" "$expected"
    failed=1
  fi
}

if [[ -n "$function_name" ]]; then
  printf 'PASS  sourcing it registers a completion for jobring (%s)\n' "$function_name"
else
  printf 'FAIL  sourcing it registers no completion function for jobring\n'
  exit 1
fi
expect "pu completes to purge and push" "purge push" jobring pu
expect "pus completes to push" "push" jobring pus
expect_has "a subcommand's list includes top" top jobring ""
expect "a queue name completes" "$queue" jobring stat "test.completion."
expect "both queues complete from their common prefix" "$other $queue" jobring peek "test.completion"
expect "top completes a queue in every position" "$queue" jobring top "$other" --once "test.completion."
expect "move completes its TO queue too" "$queue" jobring move "$other" "test.completion."
expect "move takes two queues, no third" "" jobring move "$other" "$queue" "test.completion."
expect "work completes a second queue" "$queue" jobring work "$other" "test.completion."
expect "no queue name for push's DATA" "" jobring push "$queue" "test.completion."
expect "no existing queue name for create" "" jobring create "test.completion."
expect "an option's value is not a queue" "" jobring top --interval "test.completion."
expect "after an option's value, a queue again" "$queue" jobring top --interval 1s "test.completion."
expect "top's options" "--frames --help --interval --json --once --url" jobring top --
expect "peek --state values" "dead delayed" jobring peek "$queue" --state de
expect "purge --state values" "all" jobring purge "$queue" --state a
expect "not a subcommand: nothing" "" jobring frob --
expect_has "work: a command after --" bash jobring work "$queue" -- bas
# --url (issue 15): before the subcommand, the subcommand still completes;
# queue names come from the backend it names (here shared memory).
expect "a subcommand after --url URL" "stat" jobring --url shm: sta
expect "a queue after --url shm:" "$queue" jobring --url shm: stat "test.completion."
expect "no completion for the URL itself" "" jobring --url ""
# On a Redis server (if redis-server is installed): its queues, not this host's.
if command -v redis-server >/dev/null; then
  sock="$bin_dir/redis.sock"
  redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$bin_dir" >/dev/null 2>&1 &
  redis_pid=$!
  disown "$redis_pid"  # no "Killed" notice from the cleanup
  for _ in $(seq 100); do [[ -S "$sock" ]] && break; sleep 0.1; done
  url="redis+unix://$sock"
  jobring --url "$url" create "test.completion.redis" >/dev/null || printf 'FAIL  cannot create a queue on %s\n' "$url"
  expect "a Redis queue after --url URL" "test.completion.redis" jobring --url "$url" peek "test.completion."
  expect "a Redis queue with --url after the subcommand" "test.completion.redis" jobring peek --url "$url" "test.completion."
  JOBRING_URL="$url" expect "a Redis queue with JOBRING_URL" "test.completion.redis" jobring stat "test.completion."
else
  printf 'SKIP  completion of Redis queues: no redis-server\n'
fi
# Every subcommand's options are those its --help lists (read from it).
for sub in $(jobring --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p'); do
  listed="$(jobring "$sub" --help | grep -oE '^  (-[A-Za-z] \[ )?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' |
    sort | tr '\n' ' ' | sed 's/ $//')"
  expect "jobring $sub --<TAB> gives its --help's options" "$listed" jobring "$sub" --
done

exit "$failed"
