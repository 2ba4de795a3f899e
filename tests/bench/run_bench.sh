#!/bin/sh
# make bench: run every benchmark program and script in tests/bench. Each one
# prints its own figures as ratios against a baseline measured in the same run.
BUILD=${1:-build}
export D2NWG_BUILD="${D2NWG_BUILD:-$BUILD}"
status=0
for bin in "$BUILD"/tests/bench/bench_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    echo "== $(basename "$bin")"
    "$bin" || status=1
done
for script in tests/bench/bench_*.sh; do
    [ -f "$script" ] || continue
    echo "== $(basename "$script")"
    sh "$script" "$BUILD" || status=1
done
exit $status
