#!/bin/sh
# The quick zoos and generators that the tests share, built once per build
# directory (a few tens of seconds each) and reused:
#   sh tests/fixture.sh BUILD [NAME]  ->  prints BUILD/fixtures/NAME/gen.safetensors
# NAME: quick (default; 5-way Fashion-MNIST heads) or anyway (an any-way
# generator: Fashion-MNIST tasks of 2..6 classes, zoo build --min-way 2 --way 6)
# or perclass (the same zoo, a generator trained with --per-class).
# The zoo is beside it: BUILD/fixtures/NAME/zoo; the build's log is
# BUILD/fixtures/NAME/build.log. A cached bundle that this build cannot load
# (an older format) is rebuilt. With FIXTURE_SOURCE=OTHER_BUILD, a valid
# fixture of that build is copied instead of trained (make asan uses it: the
# sanitized binaries would train slowly). Safe to call from tests at once.
set -e
B=${1:-build}
NAME=${2:-quick}
case "$NAME" in
quick) WAYS="--way 5" TASKS=2000 TRAIN= ;;
anyway) WAYS="--way 6 --min-way 2" TASKS=1500 TRAIN= ;;
perclass) WAYS="--way 6 --min-way 2" TASKS=1500 TRAIN=--per-class ;;
*) echo "fixture: unknown fixture '$NAME' (quick, anyway or perclass)" >&2; exit 2 ;;
esac
D="$B/fixtures/$NAME"
mkdir -p "$D"
exec 9>"$D/.lock"
flock 9
valid() {
    [ -f "$1/gen.safetensors" ] && [ -f "$1/zoo/manifest.json" ] &&
        "$B/d2nwg" info "$1/gen.safetensors" >/dev/null 2>&1
}
if ! valid "$D"; then
    S="${FIXTURE_SOURCE:+$FIXTURE_SOURCE/fixtures/$NAME}"
    rm -rf "$D/zoo" "$D/gen.safetensors" "$D/gen.safetensors.tmp" "$D/gen.safetensors.tmp.ckpt"
    if [ -n "$S" ] && valid "$S"; then
        cp -r "$S/zoo" "$D/zoo"
        cp "$S/gen.safetensors" "$D/gen.safetensors.tmp"
    else
        {
            "$B/d2nwg" zoo build --source fashion-mnist $WAYS --tasks $TASKS --feature pca:128 \
                --seed 1 --out "$D/zoo" --quiet &&
            "$B/d2nwg" train --zoo "$D/zoo" --out "$D/gen.safetensors.tmp" --quick --seed 1 --quiet $TRAIN
        } >"$D/build.log" 2>&1 || {
            echo "fixture: building the $NAME generator failed; see $D/build.log" >&2
            tail -n 20 "$D/build.log" >&2
            exit 1
        }
    fi
    mv "$D/gen.safetensors.tmp" "$D/gen.safetensors"
fi
echo "$D/gen.safetensors"
