#!/bin/sh
# bench_daemon.sh BUILD - d2nwgd over real HTTP on this machine:
#   1. wrk GET /healthz                      (goal: >= 20k requests/s on 2 cores)
#   2. wrk GET /v1/jobs/{id} (a finished job: the status route pollers hit)
#   3. job submissions with wrk + Lua for a bounded time: accepted/s (goal: >= 500/s)
#   4. sequential jobs with the generator's default parameters, end to end: from
#      before the submission to the (long-poll) response that reports the job
#      done, as the client sees it (curl start-up included) and as the daemon
#      records it (created_at -> finished_at); p50 / p99 (goal: p50 < 100 ms)
# Uses var/default.safetensors (what `make run` trains) when present, else the
# quick test generator. Each figure is printed with its ratio to the goal. The
# daemon logs at warn for these runs; run 1 is repeated at the default log
# level (one JSON line per request) to show what request logging costs.
set -u
B=${1:-build}
DURATION=${BENCH_SECONDS:-5}
BURST_SECONDS=${BENCH_BURST_SECONDS:-3}
LATENCY_JOBS=${BENCH_LATENCY_JOBS:-100}
cd "$(dirname "$0")/../.." || exit 1

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench_daemon: wrk is not installed (apt-get install wrk)"
    exit 1
fi
if [ ! -x "$B/d2nwgd" ]; then
    echo "bench_daemon: $B/d2nwgd is missing (make BUILD=$B all)"
    exit 1
fi
if [ -f var/default.safetensors ]; then
    GEN=var/default.safetensors
    GEN_NOTE="var/default.safetensors (make run's generator)"
else
    GEN=$(sh tests/api/fixture.sh "$B") || exit 1
    GEN_NOTE="$GEN (the quick test generator: var/default.safetensors not built)"
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-bench-XXXXXX")
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# start_daemon NAME LOGLEVEL: sets PID and URL
start_daemon() {
    rm -f "$DIR/$1.port"
    "$B/d2nwgd" --generator "$GEN" --listen 127.0.0.1:0 --port-file "$DIR/$1.port" \
        --data "$DIR/$1" --log-level "$2" --max-queue 1000000 2>"$DIR/$1.log" &
    PID=$!
    i=0
    while [ ! -s "$DIR/$1.port" ]; do
        i=$((i + 1))
        if [ $i -gt 3000 ] || ! kill -0 "$PID" 2>/dev/null; then
            echo "bench_daemon: d2nwgd did not start:"
            tail -n 20 "$DIR/$1.log"
            exit 1
        fi
        sleep 0.02
    done
    URL="http://127.0.0.1:$(cat "$DIR/$1.port")"
    i=0
    until curl -fs "$URL/readyz" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 3000 ] && { echo "bench_daemon: not ready"; tail -n 20 "$DIR/$1.log"; exit 1; }
        sleep 0.02
    done
}

stop_daemon() {
    kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    PID=""
}

# rps WRK_OUTPUT -> requests/s
rps() { awk '/^Requests\/sec:/ { print int($2) }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

. tests/bench/job_body.sh

echo "d2nwgd benchmark: $(nproc) cores, wrk -t2 -c50 -d${DURATION}s, generator $GEN_NOTE"
start_daemon bench warn

# 1. /healthz
wrk -t2 -c50 -d"${DURATION}s" "$URL/healthz" >"$DIR/healthz.txt" 2>&1
HEALTH=$(rps "$DIR/healthz.txt")
echo "GET /healthz:             ${HEALTH} requests/s ($(ratio "$HEALTH" 20000)x the 20000 goal)"

# 2. job status
job_body 1 ',"candidates":1,"steps":5' >"$DIR/one.json"
ID=$(curl -fs -H 'Content-Type: application/json' --data-binary @"$DIR/one.json" "$URL/v1/jobs" |
    sed -n 's/^{"id":"\(j_[0-9a-f]*\)".*/\1/p')
if [ -z "$ID" ]; then
    echo "bench_daemon: the job submission failed"
    tail -n 20 "$DIR/bench.log"
    exit 1
fi
curl -fs "$URL/v1/jobs/$ID?wait=30" >/dev/null
wrk -t2 -c50 -d"${DURATION}s" "$URL/v1/jobs/$ID" >"$DIR/status.txt" 2>&1
STATUS=$(rps "$DIR/status.txt")
echo "GET /v1/jobs/{id}:        ${STATUS} requests/s ($(ratio "$STATUS" "$HEALTH")x /healthz)"

# 3. submission burst, bounded in time: every accepted job is stored and queued
#    (one candidate, few steps: the worker keeps generating meanwhile)
job_body 2 ',"candidates":1,"steps":5' >"$DIR/burst.json"
cat >"$DIR/submit.lua" <<EOF
local f = io.open("$DIR/burst.json", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) accepted = 0; refused = 0 end
function response(status, headers, body)
    if status == 202 then accepted = accepted + 1 else refused = refused + 1 end
end
function done(summary, latency, requests)
    local a, r = 0, 0
    for _, t in ipairs(threads) do a = a + t:get("accepted"); r = r + t:get("refused") end
    io.write(string.format("BURST %d %d %.3f %.3f %.3f\\n", a, r, summary.duration / 1e6,
                           latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF
wrk -t2 -c50 -d"${BURST_SECONDS}s" -s "$DIR/submit.lua" "$URL/v1/jobs" >"$DIR/burst.txt" 2>&1
set -- $(awk '/^BURST/ { print $2, $3, $4, $5, $6 }' "$DIR/burst.txt")
if [ $# -ne 5 ]; then
    echo "bench_daemon: the submission burst gave no result:"
    cat "$DIR/burst.txt"
    exit 1
fi
SUBS=$(awk -v a="$1" -v s="$3" 'BEGIN { print int(a / s) }')
BODY=$(wc -c <"$DIR/burst.json")
echo "POST /v1/jobs for $3 s:    $1 accepted, $2 refused: ${SUBS} submissions/s" \
    "($(ratio "$SUBS" 500)x the 500 goal; ${BODY}-byte bodies; response p50 $4 ms, p99 $5 ms)"
stop_daemon

# 4. end-to-end latency, one job at a time, generator defaults
start_daemon latency warn
: >"$DIR/lat.txt"
: >"$DIR/server.txt"
i=0
while [ $i -lt "$LATENCY_JOBS" ]; do
    i=$((i + 1))
    job_body $((100 + i)) '' >"$DIR/job.json"
    t0=$(date +%s%N)
    curl -s -o "$DIR/resp.json" -H 'Content-Type: application/json' \
        --data-binary @"$DIR/job.json" "$URL/v1/jobs"
    id=$(sed -n 's/^{"id":"\(j_[0-9a-f]*\)".*/\1/p' "$DIR/resp.json")
    state=$(sed -n 's/^{"id":"[^"]*","state":"\([a-z]*\)".*/\1/p' "$DIR/resp.json")
    [ -n "$id" ] || { echo "bench_daemon: submission failed: $(cat "$DIR/resp.json")"; exit 1; }
    while [ "$state" = queued ] || [ "$state" = running ]; do
        curl -s -o "$DIR/resp.json" "$URL/v1/jobs/$id?wait=30"
        state=$(sed -n 's/^{"id":"[^"]*","state":"\([a-z]*\)".*/\1/p' "$DIR/resp.json")
    done
    t1=$(date +%s%N)
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }')
    [ "$state" = succeeded ] || { echo "bench_daemon: job $id ended $state"; exit 1; }
    echo "$t" >>"$DIR/lat.txt"
    # the daemon's own view: created_at -> finished_at
    sed -n 's/.*"created_at":"[^"]*T\([0-9:.]*\)Z".*"finished_at":"[^"]*T\([0-9:.]*\)Z".*/\1 \2/p' \
        "$DIR/resp.json" |
        awk '{ split($1, a, ":"); split($2, b, ":");
               print (b[1] * 3600 + b[2] * 60 + b[3]) - (a[1] * 3600 + a[2] * 60 + a[3]) }' \
            >>"$DIR/server.txt"
done
pct() { sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int((NR - 1) * p + 0.5) + 1; printf "%.1f", v[i] * 1000 }'; }
P50=$(pct "$DIR/lat.txt" 0.50)
P99=$(pct "$DIR/lat.txt" 0.99)
S50=$(pct "$DIR/server.txt" 0.50)
S99=$(pct "$DIR/server.txt" 0.99)
DEF=$(curl -fs "$URL/v1/generators/default" | sed -n 's/.*"defaults":{\([^}]*\)}.*/\1/p')
echo "job latency, $LATENCY_JOBS jobs ($DEF):"
CURL0=$( (t0=$(date +%s%N); curl -s -o /dev/null "$URL/healthz"; t1=$(date +%s%N);
          echo $(( (t1 - t0) / 1000 ))) )
echo "  in the daemon (created_at -> finished_at): p50 ${S50} ms, p99 ${S99} ms" \
    "($(ratio "$S50" 100)x the 100 ms goal)"
echo "  at the client (2+ curl runs, ~$((CURL0 / 1000)) ms each for GET /healthz): p50 ${P50} ms, p99 ${P99} ms"
stop_daemon

# 1 again with one JSON log line per request (the default level)
start_daemon logged info
wrk -t2 -c50 -d"${DURATION}s" "$URL/healthz" >"$DIR/healthz-info.txt" 2>&1
HEALTH_INFO=$(rps "$DIR/healthz-info.txt")
echo "GET /healthz, info logs:  ${HEALTH_INFO} requests/s ($(ratio "$HEALTH_INFO" "$HEALTH")x of warn)"
stop_daemon
