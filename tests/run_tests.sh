#!/bin/sh
# Run every test program and print the total as the last line:
#   N passed, N failed
# Test programs are cmocka binaries; with CMOCKA_MESSAGE_OUTPUT=TAP each test
# prints "ok N - name" or "not ok N - name". A program that exits non-zero
# without reporting a failure (a crash) counts as one failure. A skipped test
# ("not ok N # SKIP name" from cmocka 1.1.5, "ok N # SKIP name" from later
# versions) is neither: the skipped tests are listed by name before the total.
# Logs go to BUILD/test-logs/NAME.log; the CUDA build's programs log as
# cuda-NAME.log so they do not overwrite the CPU build's.
BUILD=${1:-build}
passed=0
failed=0
failed_names=""
skipped=0
skipped_names=""
export CMOCKA_MESSAGE_OUTPUT=TAP
export D2NWG_BUILD="${D2NWG_BUILD:-$BUILD}"
log_dir="$BUILD/test-logs"
mkdir -p "$log_dir"
# the API tests record every response here; check_responses.sh checks each
# against proto/openapi.yaml
export D2NWG_CONTRACT_LOG="$log_dir/api-responses.jsonl"
: >"$D2NWG_CONTRACT_LOG"

# A throw-away PostgreSQL cluster for the tests of that dialect
# (tests/pg_cluster.sh; $D2NWG_TEST_PG names it). One that cannot start is a
# failure, never a skip; it is stopped and removed on exit.
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-pg.XXXXXX")
trap 'sh tests/pg_cluster.sh stop "$pg_dir"' EXIT
if D2NWG_TEST_PG=$(sh tests/pg_cluster.sh start "$pg_dir" 2>"$log_dir/pg_cluster.log"); then
    export D2NWG_TEST_PG
    echo "ok   PostgreSQL cluster: $D2NWG_TEST_PG"
else
    failed=$((failed + 1))
    failed_names="$failed_names pg_cluster"
    echo "FAIL PostgreSQL cluster (tests/pg_cluster.sh) did not start; every PostgreSQL test fails:"
    sed 's/^/    /' "$log_dir/pg_cluster.log" | tail -n 30
fi

# run_one PROGRAM [LOG_PREFIX]
run_one() {
    bin=$1
    name=${2:-}$(basename "$bin")
    log="$log_dir/$name.log"
    start=$(date +%s)
    "$bin" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    p=$(grep '^ok ' "$log" | grep -vc '# SKIP')
    f=$(grep '^not ok ' "$log" | grep -vc '# SKIP')
    s=$(grep -c '^\(not \)\{0,1\}ok [0-9]* # SKIP' "$log")
    if [ "$s" -gt 0 ]; then
        skipped=$((skipped + s))
        skipped_names="$skipped_names $name:$(sed -n 's/^\(not \)\{0,1\}ok [0-9]* # SKIP *//p' "$log" | tr '\n' ',' | sed 's/,$//')"
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "  $name exited with status $rc without a test failure (crash?)"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        failed_names="$failed_names $name"
        echo "FAIL $name: $p passed, $f failed ($((end - start)) s); log:"
        sed 's/^/    /' "$log" | tail -n 60
    else
        echo "ok   $name: $p passed$([ "$s" -gt 0 ] && echo ", $s skipped") ($((end - start)) s)"
    fi
}

run_one tests/layers.sh
run_one tests/contract/lint_openapi.sh
# packaging and deploy checks (shell, TAP): tests/pkg/*.sh
for sh_test in tests/pkg/*.sh; do
    [ -x "$sh_test" ] && run_one "$sh_test"
done
for bin in "$BUILD"/tests/unit/test_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    run_one "$bin"
done
if [ -n "$CUDA_BUILD" ]; then
    for bin in "$CUDA_BUILD"/tests/unit/test_backend_ops; do
        [ -x "$bin" ] || continue
        run_one "$bin" cuda-
    done
fi
# d2nwg train under mpirun -np 2 ($MPI_BUILD from make test; skipped by name without)
run_one tests/mpi_train.sh
for bin in "$BUILD"/tests/api/test_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    run_one "$bin"
done
# the API suite again with every daemon on PostgreSQL (D2NWG_TEST_STORE,
# tests/api/apitest.h: a database of the cluster per --data directory), logs
# as pg-NAME.log. Not test_api_store_lock (SQLite's file lock; PostgreSQL's
# lock timeout is tests/unit/test_store's pg_test_pg_lock_timeout) nor
# test_api_anyway (the generation gate's quality runs, store-independent and
# the slowest program), nor test_api_fleet (PostgreSQL already: three
# replicas on one database, one killed mid-job).
for bin in "$BUILD"/tests/api/test_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o|*/test_api_store_lock|*/test_api_anyway|*/test_api_fleet) continue ;; esac
    D2NWG_TEST_STORE=postgres run_one "$bin" pg-
done
# the dashboard in headless chromium (skipped by name where it is not installed)
run_one tests/browser/dashboard.sh
run_one tests/contract/check_responses.sh

if [ -n "$skipped_names" ]; then
    echo "skipped $skipped tests (not run, not counted):$skipped_names"
fi
if [ -n "$failed_names" ]; then
    echo "failed programs:$failed_names"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
