#!/bin/sh
# Run every test program and print the total as the last line:
#   N passed, N failed
# Test programs are cmocka binaries; with CMOCKA_MESSAGE_OUTPUT=TAP each test
# prints "ok N - name" or "not ok N - name". A program that exits non-zero
# without reporting a failure (a crash) counts as one failure.
BUILD=${1:-build}
passed=0
failed=0
failed_names=""
export CMOCKA_MESSAGE_OUTPUT=TAP
export D2NWG_BUILD="${D2NWG_BUILD:-$BUILD}"
log_dir="$BUILD/test-logs"
mkdir -p "$log_dir"

run_one() {
    bin=$1
    name=$(basename "$bin")
    log="$log_dir/$name.log"
    start=$(date +%s)
    "$bin" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
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
        echo "ok   $name: $p passed ($((end - start)) s)"
    fi
}

run_one tests/layers.sh
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
        run_one "$bin"
    done
fi
for bin in "$BUILD"/tests/api/test_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue ;; esac
    run_one "$bin"
done

if [ -n "$failed_names" ]; then
    echo "failed programs:$failed_names"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
