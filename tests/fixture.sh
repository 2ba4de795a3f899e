#!/bin/sh
# The quick zoo and generator that the tests share, built once per build
# directory (a few tens of seconds) and reused:
#   sh tests/fixture.sh BUILD   ->  prints BUILD/fixtures/quick/gen.safetensors
# The zoo is beside it: BUILD/fixtures/quick/zoo. A log of the build is in
# BUILD/fixtures/quick/build.log. Safe to call from tests running at once.
set -e
B=${1:-build}
D="$B/fixtures/quick"
mkdir -p "$D"
exec 9>"$D/.lock"
flock 9
if [ ! -f "$D/gen.safetensors" ]; then
    rm -rf "$D/zoo" "$D/gen.safetensors.tmp" "$D/gen.safetensors.tmp.ckpt"
    {
        "$B/d2nwg" zoo build --source fashion-mnist --way 5 --tasks 2000 --feature pca:128 \
            --seed 1 --out "$D/zoo" --quiet &&
        "$B/d2nwg" train --zoo "$D/zoo" --out "$D/gen.safetensors.tmp" --quick --seed 1 --quiet
    } >"$D/build.log" 2>&1 || {
        echo "fixture: building the quick generator failed; see $D/build.log" >&2
        tail -n 20 "$D/build.log" >&2
        exit 1
    }
    mv "$D/gen.safetensors.tmp" "$D/gen.safetensors"
fi
echo "$D/gen.safetensors"
