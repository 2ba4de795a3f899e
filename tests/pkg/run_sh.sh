#!/bin/sh
# deploy/run.sh (make run) with a stand-in d2nwg whose `zoo build` and `train`
# take seconds (a copy of the quick fixture generator), the real d2nwgd, and a
# var/ where "default" exists and "glyphs" does not, as TAP lines for
# tests/run_tests.sh:
#   - /readyz answers while "glyphs" is still being built, and
#     /v1/generators lists it as loading;
#   - "glyphs" joins the running daemon when its training ends;
#   - SIGTERM (and Ctrl-C: SIGINT to the process group) stops the daemon and
#     the background build, leaving no process behind.
cd "$(dirname "$0")/../.." || exit 1
B=${D2NWG_BUILD:-build}
n=0
fail=0
report() { # status name
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
if [ ! -x "$B/d2nwgd" ] || ! command -v curl >/dev/null 2>&1 || ! command -v setsid >/dev/null 2>&1; then
    echo "ok 1 - deploy/run.sh serves while 'glyphs' builds # SKIP no $B/d2nwgd, curl or setsid"
    exit 0
fi
fixture=$(sh tests/fixture.sh "$B") || { echo "not ok 1 - the quick fixture builds"; exit 1; }
fixture=$(cd "$(dirname "$fixture")" && pwd)/$(basename "$fixture")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/var/zoo"
ln -s "$(cd "$B" && pwd)/d2nwgd" "$tmp/bin/d2nwgd"
cat >"$tmp/bin/d2nwg" <<STUB
#!/bin/sh
out=""; gen=""; prev=""
for a in "\$@"; do
    [ "\$prev" = "--out" ] && out=\$a
    [ "\$prev" = "--generator" ] && gen=\$a
    prev=\$a
done
case "\$1" in
zoo) mkdir -p "\$out" && echo '{}' >"\$out/manifest.json" ;;
backbone) echo x >"\$out" ;;
defaults) cp "\$gen" "\$out.tmp" && mv "\$out.tmp" "\$out" ;;
train) ps -o pgid= \$\$ | tr -d ' ' >"$tmp/train.pgid"; sleep "\${STUB_TRAIN_S:-3}"; cp "$fixture" "\$out.tmp" && mv "\$out.tmp" "\$out" ;;
sample) echo x >"\$out" ;;
esac
STUB
chmod +x "$tmp/bin/d2nwg"
echo '{}' >"$tmp/var/zoo/manifest.json"
cp "$fixture" "$tmp/var/default.safetensors"
port=$((20000 + $$ % 20000))

# start [TRAIN_SECONDS]: run.sh in its own session; its pid (= group) in $pid
start() {
    rm -rf "$tmp/var/zoo-glyphs" "$tmp/var/glyphs.safetensors" "$tmp/var/backbone.safetensors" \
        "$tmp/var/glyphs.trained.safetensors" "$tmp/train.pgid"
    STUB_TRAIN_S=$1 D2NWG_VAR="$tmp/var" D2NWG_LISTEN="127.0.0.1:$port" \
        setsid sh deploy/run.sh "$tmp/bin" >"$tmp/run.log" 2>&1 </dev/null &
    pid=$!
    i=0
    while [ $i -lt 100 ] && ! curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
}
state_of_glyphs() {
    curl -s "http://127.0.0.1:$port/v1/generators/glyphs" |
        sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p'
}
# left: processes of this test still running (the daemon, the build's
# scripts, and anything in the training stand-in's process group)
# (zombies waiting for a parent that is gone are not running)
left() {
    {
        pgrep -af -- "$tmp"
        [ -s "$tmp/train.pgid" ] && pgrep -a -g "$(cat "$tmp/train.pgid")"
    } | grep -v '<defunct>'
}

start 3
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null
report $? "make run answers /readyz while 'glyphs' is still being built"
[ "$(state_of_glyphs)" = loading ]
report $? "/v1/generators lists 'glyphs' as loading meanwhile"
i=0
while [ $i -lt 100 ] && [ "$(state_of_glyphs)" != ready ]; do sleep 0.1; i=$((i + 1)); done
[ "$(state_of_glyphs)" = ready ]
report $? "'glyphs' joins the running daemon when trained"
kill -TERM "$pid"
wait "$pid"
l=$(left)
[ -z "$l" ]; report $? "SIGTERM stops make run${l:+; left: $l}"

for sig in TERM INT; do
    start 60
    i=0
    while [ $i -lt 50 ] && [ ! -s "$tmp/train.pgid" ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$tmp/train.pgid" ] && [ -n "$(pgrep -g "$(cat "$tmp/train.pgid")")" ]
    report $? "the background build is training (SIG$sig case)"
    if [ $sig = INT ]; then kill -INT "-$pid"; else kill -TERM "$pid"; fi
    wait "$pid"
    sleep 0.5
    l=$(left)
    [ -z "$l" ]; report $? "SIG$sig stops the daemon and the background build${l:+; left: $l}"
    grep -q "stopped the background build" "$tmp/run.log"
    report $? "SIG$sig: run.sh says it stopped the background build"
done
echo "1..$n"
exit $fail
