#!/bin/sh
# Writes help2man's include file for jobring(1): a section with every
# subcommand's own --help (`jobring COMMAND --help`), so that the man page
# documents each command's options, not only the command list.
#   jobring-include.sh JOBRING_BINARY OUTPUT
set -eu
bin="$1"
out="$2"
{
  printf '[COMMANDS IN DETAIL]\n'
  for cmd in $("$bin" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p'); do
    printf '.SS "jobring %s"\n.nf\n' "$cmd"
    # Without the lines on durations and exit codes that every --help ends
    # with (the page says them once). roff: a backslash is \e; a line that
    # starts with . or ' must not be taken for a request.
    "$bin" "$cmd" --help | sed -e '/^Durations are written/,$d' -e 's/\\/\\e/g' -e "s/^[.']/\\\\\\&&/"
    printf '.fi\n'
  done
  printf '[SEE ALSO]\n.BR jobring-janitor (1)\n'
} >"$out.tmp"
mv "$out.tmp" "$out"
