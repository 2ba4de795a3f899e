#!/bin/sh
# make run: on first run build the default Fashion-MNIST zoo and generator in
# var/ (a few minutes, with progress; deploy/generators.sh), then serve it with
# d2nwgd on 127.0.0.1:8080 as the generator "default" at once. The
# cross-source generator "glyphs" is given as --generator-pending: while it is
# missing, `generators.sh BUILD all` builds it in the background (niced; log in
# var/generators.log) and it joins the running daemon when trained
# (GET /v1/generators says "loading" until then). Ctrl-C (SIGINT) or SIGTERM
# stops the daemon cleanly and the background build with it (training resumes
# from its checkpoint next time). Override with D2NWG_VAR (state folder) and
# D2NWG_LISTEN.
set -e
B=${1:-build}
VAR=${D2NWG_VAR:-var}
LISTEN=${D2NWG_LISTEN:-127.0.0.1:8080}
mkdir -p "$VAR"
sh "$(dirname "$0")/generators.sh" "$B" default
if [ ! -f "$VAR/job.json" ]; then
    "$B/d2nwg" sample --source fashion-mnist --classes 0,1,2,3,4 --shots 5 --out "$VAR/support.csv"
    "$B/d2nwg" sample --source fashion-mnist --classes 0,1,2,3,4 --shots 5 --out "$VAR/job.json"
fi
set +e

BG="" # the background build: its own session, so its process group is $BG
DPID=""
stop_build() {
    if [ -n "$BG" ]; then
        kill -TERM "-$BG" 2>/dev/null && echo "== stopped the background build of 'glyphs'"
        BG=""
    fi
}
# Ctrl-C reaches the daemon from the terminal; a SIGTERM to this script is
# passed on (one signal: a second one would make d2nwgd stop running jobs).
trap 'stop_build' INT
trap 'stop_build; [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null' TERM

if [ -f "$VAR/glyphs.safetensors" ]; then
    GLYPHS="ready: $VAR/glyphs.safetensors"
else
    setsid nice -n 10 sh "$(dirname "$0")/generators.sh" "$B" all \
        >"$VAR/generators.log" 2>&1 </dev/null &
    BG=$!
    GLYPHS="building in the background (log: $VAR/generators.log); it joins when trained"
fi
cat <<MSG
== d2nwgd on http://$LISTEN
   generator "default": $VAR/default.safetensors
   generator "glyphs":  $GLYPHS
   try:
     curl -s http://$LISTEN/v1/generators
     curl -s -X POST -H 'Content-Type: application/json' --data @$VAR/job.json http://$LISTEN/v1/jobs
     curl -s 'http://$LISTEN/v1/jobs/JOB_ID?wait=30'
     $B/d2nwg submit --support $VAR/support.csv --wait --out head.safetensors
MSG
"$B/d2nwgd" --generator "default=$VAR/default.safetensors" \
    --generator-pending "glyphs=$VAR/glyphs.safetensors" --listen "$LISTEN" --data "$VAR/data" &
DPID=$!
wait "$DPID"
rc=$?
while kill -0 "$DPID" 2>/dev/null; do # wait was cut short by a signal
    wait "$DPID"
    rc=$?
done
stop_build
exit "$rc"
