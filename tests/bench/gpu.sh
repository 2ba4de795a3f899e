#!/bin/bash
# tests/bench/gpu.sh - the one prepared check for a machine with an NVIDIA GPU (issue 7).
#
#   bash tests/bench/gpu.sh            (from the repository root; runs as root or not)
#
# 1. prints the machine (GPU, driver, toolkit) and which Debian packages are installed;
#    tries `make deps` when some are missing (apt may be unreachable: it goes on);
# 2. builds `make CUDA=1 BUILD=build/cuda all unit-bins bench-bins` (falls back to the two
#    programs it needs when the full build fails);
# 3. runs the backend comparison build/cuda/tests/unit/test_backend_ops (every op on CPU
#    and CUDA by normalised error, bitwise-repeatable reductions, the Philox stream, the
#    gradient checks of linear/layernorm/MAB/ISAB/PMA on CUDA, TF32 error);
# 4. times CUDA against CPU in the same run: GEMMs at the model's sizes, a training step of
#    a residual MLP, the device part of generation (build/cuda/tests/bench/bench_gpu);
# 5. end to end with the CLI when it has --device: a small digits zoo, `d2nwg train
#    --quick` and `d2nwg generate` on cpu and on cuda:0, timed, outputs compared.
# Everything is logged to $OUT (when set) or build/cuda/gpu-report. Under ~5 minutes.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build/cuda}
REPORT=${OUT:-$BUILD/gpu-report}
mkdir -p "$REPORT"
exec > >(tee "$REPORT/gpu.log") 2>&1
T0=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 4)
step() { printf '\n=== [%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
RESULT_TEST="not run"
RESULT_BENCH="not run"
RESULT_CLI="not run"

step "machine"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv
else
    echo "nvidia-smi: not found"
fi
echo "cpu cores: $JOBS; kernel $(uname -r)"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if [ -x "$CUDA_HOME/bin/nvcc" ]; then
    "$CUDA_HOME/bin/nvcc" --version | tail -n 2
else
    echo "nvcc: not found at $CUDA_HOME/bin/nvcc - cannot build the CUDA backend"
fi
ls "$CUDA_HOME"/lib64/libcublas.so* 2>/dev/null | head -n 2

step "packages"
missing=""
for p in gcc make pkg-config libopenblas-dev libmicrohttpd-dev libjansson-dev libuv1-dev \
    libsqlite3-dev zlib1g-dev libcurl4-openssl-dev libcmocka-dev python3-sklearn \
    dataset-fashion-mnist; do
    v=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null)
    case "$v" in
    "install ok installed"*) printf '  %-24s %s\n' "$p" "${v#install ok installed }" ;;
    *) printf '  %-24s MISSING\n' "$p"; missing="$missing $p" ;;
    esac
done
if [ -n "$missing" ]; then
    echo "missing:$missing - trying make deps (3 minutes at most)"
    timeout 180 make deps </dev/null >"$REPORT/deps.log" 2>&1
    echo "make deps: exit $? (log: $REPORT/deps.log)"
    tail -n 5 "$REPORT/deps.log"
fi

step "build: make CUDA=1 BUILD=$BUILD all unit-bins bench-bins (-j$JOBS)"
t=$(now)
timeout 420 make -j"$JOBS" CUDA=1 BUILD="$BUILD" all unit-bins bench-bins </dev/null \
    >"$REPORT/build.log" 2>&1
rc=$?
echo "full build: exit $rc in $(secs "$t" "$(now)") s (log: $REPORT/build.log)"
grep -E '(warning|error):' "$REPORT/build.log" | head -n 20
if [ $rc -ne 0 ]; then
    grep -E '(error|Error|Stop)' "$REPORT/build.log" | head -n 20
    echo "building only what this check needs (make -k)"
    timeout 300 make -k -j"$JOBS" CUDA=1 BUILD="$BUILD" "$BUILD/tests/unit/test_backend_ops" \
        "$BUILD/tests/bench/bench_gpu" "$BUILD/d2nwg" </dev/null >"$REPORT/build-min.log" 2>&1
    rc=$?
    echo "minimal build: exit $rc (log: $REPORT/build-min.log)"
    [ $rc -eq 0 ] || grep -E '(error|Error|Stop)' "$REPORT/build-min.log" | head -n 20
fi

step "backend comparison: $BUILD/tests/unit/test_backend_ops"
if [ -x "$BUILD/tests/unit/test_backend_ops" ]; then
    t=$(now)
    timeout 240 "$BUILD/tests/unit/test_backend_ops" >"$REPORT/test_backend_ops.log" 2>&1
    rc=$?
    cat "$REPORT/test_backend_ops.log"
    if [ $rc -eq 0 ] && grep -q '^no GPU' "$REPORT/test_backend_ops.log"; then
        RESULT_TEST="SKIPPED (no GPU visible to the CUDA runtime)"
    elif [ $rc -eq 0 ]; then
        RESULT_TEST="PASSED ($(grep -c '^\[       OK \]' "$REPORT/test_backend_ops.log") tests, $(secs "$t" "$(now)") s)"
    else
        RESULT_TEST="FAILED (exit $rc): $(grep -E '^\[  FAILED  \] test_' "$REPORT/test_backend_ops.log" | tr '\n' ' ')"
    fi
else
    RESULT_TEST="NOT BUILT"
fi
echo "result: $RESULT_TEST"

step "timings: $BUILD/tests/bench/bench_gpu (CUDA vs CPU, same run)"
if [ -x "$BUILD/tests/bench/bench_gpu" ]; then
    timeout 240 "$BUILD/tests/bench/bench_gpu" 2>&1 | tee "$REPORT/bench_gpu.log"
    rc=${PIPESTATUS[0]}
    RESULT_BENCH="exit $rc: $(grep '^summary' "$REPORT/bench_gpu.log" || echo 'no summary')"
else
    RESULT_BENCH="NOT BUILT"
fi

step "end to end with the CLI: zoo -> train -> generate, cpu vs cuda:0"
D2=$BUILD/d2nwg
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
W=$REPORT/cli
if [ ! -x "$D2" ]; then
    RESULT_CLI="skipped: $D2 not built"
elif ! "$D2" train --help 2>&1 | grep -q -- '--device' ||
    ! "$D2" generate --help 2>&1 | grep -q -- '--device'; then
    RESULT_CLI="skipped: d2nwg train/generate have no --device option in this build"
elif [ ! -f "$DIGITS" ]; then
    RESULT_CLI="skipped: $DIGITS missing (python3-sklearn)"
else
    rm -rf "$W" && mkdir -p "$W"
    # support set: 5 rows of each of the digits 0..4 as a CSV with a label column first
    zcat "$DIGITS" | awk -F, 'BEGIN { printf "label"; for (i = 0; i < 64; i++) printf ",f%d", i
        printf "\n" }
        { lab = $NF + 0; if (lab < 5 && cnt[lab] < 5) { cnt[lab]++; printf "%d", lab
          for (i = 1; i < NF; i++) printf ",%s", $i; printf "\n" } }' >"$W/support.csv"
    ok=1
    t=$(now)
    timeout 60 "$D2" zoo build --source digits --feature pca:32 --tasks 200 --out "$W/zoo" \
        --quiet >"$W/zoo.log" 2>&1 || ok=0
    echo "zoo build: $([ $ok = 1 ] && echo ok || echo FAILED) in $(secs "$t" "$(now)") s"
    [ $ok = 1 ] || tail -n 5 "$W/zoo.log"
    for dev in cpu cuda:0; do
        [ $ok = 1 ] || break
        tag=${dev%%:*}
        t=$(now)
        if timeout 150 "$D2" train --zoo "$W/zoo" --out "$W/gen-$tag.safetensors" --quick \
            --quiet --device "$dev" >"$W/train-$tag.log" 2>&1; then
            eval "train_$tag=$(secs "$t" "$(now)")"
            echo "train --quick --device $dev: $(eval echo \$train_$tag) s"
            sed 's/^/    /' "$W/train-$tag.log" | tail -n 3
        else
            echo "train --device $dev FAILED:"
            tail -n 10 "$W/train-$tag.log"
            ok=0
        fi
    done
    if [ $ok = 1 ]; then
        # the same (CPU-trained) generator sampled on both devices
        for dev in cpu cuda:0; do
            tag=${dev%%:*}
            for k in 8 256; do
                t=$(now)
                if timeout 60 "$D2" generate --generator "$W/gen-cpu.safetensors" \
                    --support "$W/support.csv" --candidates $k --seed 7 --device "$dev" \
                    --out "$W/best-$tag-$k.safetensors" >"$W/gen-$tag-$k.log" 2>&1; then
                    eval "gen_${tag}_$k=$(secs "$t" "$(now)")"
                    echo "generate --candidates $k --device $dev: $(eval echo \$gen_${tag}_$k) s (process wall time)"
                else
                    echo "generate --device $dev FAILED:"
                    tail -n 10 "$W/gen-$tag-$k.log"
                    ok=0
                fi
            done
        done
    fi
    if [ $ok = 1 ]; then
        echo "ranked candidates, K=8, cpu then cuda:0 (same seed: the same table up to rounding):"
        head -n 6 "$W/gen-cpu-8.log"
        head -n 6 "$W/gen-cuda-8.log"
        if cmp -s "$W/best-cpu-8.safetensors" "$W/best-cuda-8.safetensors"; then
            echo "best network: identical bytes on cpu and cuda:0"
        else
            echo "best network: bytes differ between cpu and cuda:0 (float rounding; see tables)"
        fi
        RESULT_CLI=$(awk -v tc="$train_cpu" -v tg="$train_cuda" -v g8c="$gen_cpu_8" \
            -v g8g="$gen_cuda_8" -v gkc="$gen_cpu_256" -v gkg="$gen_cuda_256" 'BEGIN {
            printf "train --quick cpu/gpu %.2f (%.1f s / %.1f s); generate K=8 cpu/gpu %.2f, K=256 cpu/gpu %.2f (process times incl. start-up)",
                tc / tg, tc, tg, g8c / g8g, gkc / gkg }')
    else
        RESULT_CLI="FAILED (logs in $W)"
    fi
fi
echo "$RESULT_CLI"

step "summary"
echo "backend comparison: $RESULT_TEST"
echo "timings:            $RESULT_BENCH"
echo "cli end to end:     $RESULT_CLI"
echo "total: $(($(date +%s) - T0)) s; logs in $REPORT"
case "$RESULT_TEST" in PASSED*) exit 0 ;; *) exit 1 ;; esac
