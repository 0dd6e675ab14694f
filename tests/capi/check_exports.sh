#!/bin/bash
# check_exports.sh LIB SONAME HEADER: what libjobring.so exports (issue 17).
# Fails on any exported (defined, dynamic) symbol other than the C API
# (jobring_*) and the C++ API (namespace jobring: _ZN7jobring, _ZNK7jobring,
# and typeinfo / typeinfo name / vtable of jobring classes), on any from
# jobring::detail or jobring::capi, on a function that HEADER declares with
# JOBRING_API but the library does not export, and on an SONAME other than
# SONAME.
set -u
lib=$1 soname=$2 header=$3
rc=0
syms=$(nm -D --defined-only "$lib" | awk '{print $NF}') || { echo "nm failed on $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -Ev '^(jobring_|_ZN7jobring|_ZNK7jobring|_ZT[ISV]N7jobring)')
inner=$(printf '%s\n' "$syms" | grep -E '^_Z(N|NK|T[ISV]N)7jobring(6detail|4capi)')
for set in bad inner; do
  if [ -n "${!set}" ]; then
    echo "exported but not the public API ($set):"
    printf '%s\n' "${!set}" | head -50 | while read -r s; do echo "  $s  $(echo "$s" | c++filt)"; done
    rc=1
  fi
done
declared=$(grep -oE 'JOBRING_API [^(]*\(' "$header" | grep -oE 'jobring_[a-z0-9_]+\($' | tr -d '(')
[ "$(printf '%s\n' "$declared" | wc -l)" -ge 40 ] || { echo "found too few JOBRING_API functions in $header"; rc=1; }
for f in $declared; do
  printf '%s\n' "$syms" | grep -qx "$f" || { echo "declared in jobring.h, not exported: $f"; rc=1; }
done
for f in $(printf '%s\n' "$syms" | grep -E '^jobring_'); do
  printf '%s\n' "$declared" | grep -qx "$f" || { echo "exported, not declared in jobring.h: $f"; rc=1; }
done
got=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$got" = "$soname" ] || { echo "SONAME is '$got', wanted '$soname'"; rc=1; }
[ $rc -eq 0 ] && echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all public; SONAME $got"
exit $rc
