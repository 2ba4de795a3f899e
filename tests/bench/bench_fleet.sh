#!/bin/sh
# bench_fleet.sh BUILD - d2nwgd replicas on one PostgreSQL database against
# one d2nwgd on SQLite, in one run, on this machine:
#   1. finished jobs/s: FLEET_JOBS jobs (2 candidates, 50 steps) submitted
#      round-robin to the replicas, from the first submission until the
#      store says every one succeeded;
#   2. accepted submissions/s: wrk (+ Lua) POST /v1/jobs for
#      FLEET_BURST_SECONDS to every replica at once (one candidate, 5 steps);
# with 1, 2 and 3 replicas on PostgreSQL (each --workers 1) and 1 on SQLite,
# each on a fresh database; every figure is printed with its ratio to the
# SQLite one. PostgreSQL is a throw-away cluster (tests/pg_cluster.sh). The
# replicas share this machine's cores: finished jobs/s cannot scale past
# them (nproc is printed).
set -u
B=${1:-build}
JOBS=${FLEET_JOBS:-24} # at most 200 (one page of GET /v1/jobs)
BURST=${FLEET_BURST_SECONDS:-3}
cd "$(dirname "$0")/../.." || exit 1
command -v wrk >/dev/null 2>&1 || { echo "bench_fleet: wrk is not installed"; exit 1; }
[ -x "$B/d2nwgd" ] || { echo "bench_fleet: $B/d2nwgd is missing"; exit 1; }
GEN=$(sh tests/api/fixture.sh "$B") || exit 1

DIR=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-fleet-XXXXXX")
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-fleet-pg-XXXXXX") # its own: the postgres user enters it
PIDS=""
cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    sh tests/pg_cluster.sh stop "$PGDIR"
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
PG=$(sh tests/pg_cluster.sh start "$PGDIR") || { echo "bench_fleet: no PostgreSQL"; exit 1; }

# start N STORE_KIND TAG: N replicas (STORE_KIND pg or sqlite); sets URLS, PIDS
start() {
    URLS=""
    store=""
    if [ "$2" = pg ]; then
        psql "$PG dbname=postgres" -qc "CREATE DATABASE $3" >/dev/null || exit 1
        store="$PG dbname=$3"
    fi
    i=0
    while [ $i -lt "$1" ]; do
        name="$3-$i"
        "$B/d2nwgd" --generator "$GEN" --listen 127.0.0.1:0 --port-file "$DIR/$name.port" \
            --data "$DIR/$name" --log-level warn --max-queue 1000000 --workers 1 \
            ${store:+--store} ${store:+"$store"} 2>"$DIR/$name.log" &
        PIDS="$PIDS $!"
        i=$((i + 1))
    done
    i=0
    while [ $i -lt "$1" ]; do
        name="$3-$i"
        k=0
        until [ -s "$DIR/$name.port" ] && curl -fs "http://127.0.0.1:$(cat "$DIR/$name.port")/readyz" >/dev/null 2>&1; do
            k=$((k + 1))
            [ $k -gt 3000 ] && { echo "bench_fleet: $name not ready"; tail -n 20 "$DIR/$name.log"; exit 1; }
            sleep 0.02
        done
        URLS="$URLS http://127.0.0.1:$(cat "$DIR/$name.port")"
        i=$((i + 1))
    done
}

stop() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    PIDS=""
}

# the bench_daemon.sh data set (job_body.sh)
. tests/bench/job_body.sh

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# finished URLS -> jobs/s (x1000, integer) for JOBS jobs spread round-robin
finished() {
    set -- $URLS
    n=$#
    t0=$(now_ms)
    i=0
    while [ $i -lt "$JOBS" ]; do
        eval "url=\${$((i % n + 1))}"
        job_body $((500 + i)) ',"candidates":2,"steps":50' >"$DIR/job.json"
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary @"$DIR/job.json" "$url/v1/jobs")
        [ "$code" = 202 ] || { echo "bench_fleet: submission answered $code" >&2; exit 1; }
        i=$((i + 1))
    done
    while :; do
        done_n=$(curl -fs "$1/v1/jobs?state=succeeded&limit=200" |
            python3 -c 'import json, sys; print(len(json.load(sys.stdin)["jobs"]))' 2>/dev/null)
        done_n=${done_n:-0}
        [ "$done_n" -ge "$JOBS" ] && break
        [ $(($(now_ms) - t0)) -gt 600000 ] && { echo "bench_fleet: jobs not done in 600 s"; exit 1; }
        sleep 0.05
    done
    t1=$(now_ms)
    awk -v n="$JOBS" -v ms=$((t1 - t0)) 'BEGIN { printf "%.2f", n * 1000.0 / ms }'
}

# burst URLS -> accepted submissions/s (all replicas at once)
burst() {
    job_body 2 ',"candidates":1,"steps":5' >"$DIR/burst.json"
    cat >"$DIR/submit.lua" <<EOF
local f = io.open("$DIR/burst.json", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) accepted = 0 end
function response(status, headers, body) if status == 202 then accepted = accepted + 1 end end
function done(summary, latency, requests)
    local a = 0
    for _, t in ipairs(threads) do a = a + t:get("accepted") end
    io.write(string.format("BURST %d %.3f\\n", a, summary.duration / 1e6))
end
EOF
    k=0
    wpids=""
    for url in $URLS; do
        wrk -t1 -c16 -d"${BURST}s" -s "$DIR/submit.lua" "$url/v1/jobs" >"$DIR/burst.$k" 2>&1 &
        wpids="$wpids $!"
        k=$((k + 1))
    done
    for p in $wpids; do wait "$p"; done
    cat "$DIR"/burst.* | awk '/^BURST/ { a += $2; if ($3 > s) s = $3 } END { printf "%.0f", a / s }'
    rm -f "$DIR"/burst.*
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "bench_fleet: $(nproc) cores; $JOBS jobs (2 candidates, 50 steps) per setting; submission bursts of ${BURST} s"
start 1 sqlite sqlite1
SQ_FIN=$(finished "$(echo $URLS | cut -d' ' -f1)") || exit 1
SQ_SUB=$(burst)
stop
echo "SQLite, 1 daemon:         finished ${SQ_FIN} jobs/s, accepted ${SQ_SUB} submissions/s (the baseline)"
for n in 1 2 3; do
    start "$n" pg "fleet$n"
    FIN=$(finished "$(echo $URLS | cut -d' ' -f1)") || exit 1
    SUB=$(burst)
    stop
    echo "PostgreSQL, $n replica(s):  finished ${FIN} jobs/s ($(ratio "$FIN" "$SQ_FIN")x SQLite), accepted ${SUB} submissions/s ($(ratio "$SUB" "$SQ_SUB")x SQLite)"
done
