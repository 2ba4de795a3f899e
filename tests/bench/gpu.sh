#!/bin/bash
# tests/bench/gpu.sh - the one prepared run of the CUDA backend on a machine with an NVIDIA
# GPU that cannot build (the device machine: nvcc 13, PyTorch, safetensors, peft, but none
# of our Debian packages and no package registry).
#
# 1. HERE, in the session that holds the GPU (gpu-carry/ is ignored, never committed):
#      sh tests/bench/gpu_prepare.sh    (about a minute; writes gpu-carry/d2nwg-gpu.tar.gz,
#      30 MB: binaries, the libraries the image lacks, the quick generator, digits CSV)
# 2. ONE device run, from the repository root:
#      run(command="bash tests/bench/gpu.sh", carry=["gpu-carry"], timeout_s=600)
#    It needs nothing else: no make, no compiler, no network. Dry-run it here first
#    (`bash tests/bench/gpu.sh`, about a minute; where the pack is missing and the machine
#    can build, it runs gpu_prepare.sh itself): every CUDA step says SKIPPED by name.
#    Its working files go to /tmp/d2nwg-gpu (GPU_WORK); only these come back in $OUT (7
#    files; here: /tmp/d2nwg-gpu/report): summary.txt,
#    gpu.log (everything printed), backend_ops.log, bench_gpu.log, daemon.log, python.log,
#    cli.log. One deadline, GPU_DEADLINE seconds from the start (default 500, well under the
#    600 s of a run), bounds every step's timeout; a step that cannot start before it is
#    skipped and says so. The summary is always printed last. Exit 0 when no step failed.
#
# Steps (each ends as PASSED / FAILED / SKIPPED with the reason):
#   libs         unpack the carry; LD_LIBRARY_PATH = its lib/; `ldd | grep 'not found'` for
#                every binary; cuBLAS / cudart from /usr/local/cuda, else from the Python
#                environment's site-packages/nvidia/*/lib; the carried libstdc++ or glibc
#                loader only when ldd says the image's are missing or too old
#   backend_ops  test_backend_ops: every op CPU vs CUDA (normalised error), repeatable
#                reductions, the Philox stream, error recovery, gradient checks on CUDA
#   bench        bench_gpu: GEMMs, a training step, generation (8 candidates x 50 DDIM
#                steps), each timed on CPU and GPU in the same run
#   daemon       d2nwgd --device cpu, then --device cuda:0: one job each, same support set
#                and seed; the two best networks compared (bytes, else tensor by tensor:
#                GPU_TOL, default relative L2 error 1e-4 per tensor, since cuBLAS and
#                OpenBLAS sum in different orders and 50 sampler steps carry the rounding);
#                device memory read from GET /metrics
#   python       every ```python block of README.md, run with the image's torch,
#                safetensors (and peft, when a block imports it) on the CUDA job's weights
#                (head.safetensors) and README's support set (support.csv)
#   cli          d2nwg zoo build (digits) + train --quick on cpu and cuda:0, timed; generate
#                on both devices with one generator, outputs compared as above
# Here, without a GPU (a dry run), the CUDA steps and the CUDA halves are skipped by name;
# the rest runs on the CPU.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
W=${GPU_WORK:-/tmp/d2nwg-gpu}
R=${OUT:-$W/report}
if [ -z "${GPU_SH_LOGGED:-}" ]; then
    # once more, in a pipe to tee: everything printed also lands in $R/gpu.log
    rm -rf "$W"
    mkdir -p "$W" "$R"
    GPU_SH_LOGGED=1 GPU_T0=$(date +%s) bash "$ROOT/tests/bench/gpu.sh" "$@" 2>&1 | tee "$R/gpu.log"
    exit "${PIPESTATUS[0]}"
fi
T0=${GPU_T0:-$(date +%s)}
DEADLINE=$((T0 + ${GPU_DEADLINE:-500}))
TOL=${GPU_TOL:-1e-4}
STEPS=""
declare -A RES
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
step() { printf '\n=== [%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
result() { # result STEP TEXT
    [ -n "${RES[$1]+x}" ] || STEPS="$STEPS $1"
    RES[$1]=$2
    echo "-> $1: $2"
}
# budget WANT: seconds a step may take (WANT, cut to the deadline); 0 when under 15 remain
budget() {
    local left=$((DEADLINE - $(date +%s) - 5))
    if [ "$left" -lt 15 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
summary() {
    step "summary"
    {
        echo "d2nwg CUDA run, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(($(date +%s) - T0)) s of" \
            "the ${GPU_DEADLINE:-500} s deadline; GPU: ${GPU_NAME:-none}"
        for s in $STEPS; do printf '%-12s %s\n' "$s" "${RES[$s]}"; done
    } | tee "$R/summary.txt"
}
on_exit() {
    stop_daemon 2>/dev/null
    summary
}
trap on_exit EXIT

# run a carried program (through the carried loader when the image's glibc is too old)
RUNNER=()
run() { "${RUNNER[@]}" "$@"; }

# HTTP GET to stdout: curl when the image has it, else Python
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 10 "$1"
    else
        python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1"
    fi
}

# ------------------------------------------------------------------ machine and libraries
step "machine"
GPU_NAME=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
else
    echo "nvidia-smi: not found"
fi
echo "cpu cores: $(nproc); $(ldd --version 2>&1 | head -n 1)"
[ -x /usr/local/cuda/bin/nvcc ] && /usr/local/cuda/bin/nvcc --version | tail -n 1
PY=$(command -v python3 || true)
[ -n "$PY" ] && echo "python3: $PY ($("$PY" --version 2>&1))"

step "libs: the carried binaries and libraries"
C=$W/carry
PACK=$ROOT/gpu-carry/d2nwg-gpu.tar.gz
mkdir -p "$C"
if [ ! -f "$PACK" ] && command -v make >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ] &&
    dpkg-query -W libopenblas-dev >/dev/null 2>&1; then
    echo "no $PACK: this machine can build, so running tests/bench/gpu_prepare.sh first"
    sh tests/bench/gpu_prepare.sh 2>&1 | tail -n 3
fi
if [ -f "$PACK" ]; then
    if ! tar -C "$C" -xzf "$PACK" 2>"$W/untar.err"; then
        cat "$W/untar.err"
        [ -n "$PY" ] && "$PY" -m tarfile -e "$PACK" "$C"
    fi
    echo "unpacked $PACK ($(du -sk "$PACK" | cut -f1) KiB) into $C"
else
    echo "no $PACK: run sh tests/bench/gpu_prepare.sh where it can build, and carry gpu-carry"
fi
D2=$C/bin/d2nwg
D2D=$C/bin/d2nwgd
TBO=$C/bin/test_backend_ops
BENCH=$C/bin/bench_gpu
export LD_LIBRARY_PATH="$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing() { # the ldd complaints of every carried binary
    for b in "$D2" "$D2D" "$TBO" "$BENCH"; do
        [ -e "$b" ] && ldd "$b" 2>&1 | grep -E 'not found' | sed "s|^|$(basename "$b"): |"
    done | sort -u
}
if [ -e "$D2" ]; then
    m=$(missing)
    if echo "$m" | grep -q 'libcublas\|libcudart'; then
        echo "cuBLAS / cudart not found by ldd: looking in the Python environment"
        extra=""
        for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
            ls "$d"/libcublas.so.* >/dev/null 2>&1 && extra="$extra:$d"
        done
        if [ -n "$PY" ]; then
            extra="$extra:$("$PY" - <<'EOF'
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
dirs = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        if glob.glob(os.path.join(d, "libcu*.so*")) and d not in dirs:
            dirs.append(d)
print(":".join(dirs))
EOF
)"
        fi
        export LD_LIBRARY_PATH="$LD_LIBRARY_PATH$extra"
        echo "LD_LIBRARY_PATH += ${extra#:}"
        m=$(missing)
    fi
    if echo "$m" | grep -q 'libstdc++\|libgcc_s\|GLIBCXX\|CXXABI'; then
        echo "the image's libstdc++ / libgcc_s is missing or too old: using the carried ones"
        export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$C/lib-cxx"
        m=$(missing)
    fi
    if echo "$m" | grep -q 'GLIBC_'; then
        echo "the image's glibc is older than the binaries need: starting them through" \
            "the carried loader $C/glibc/ld-linux-x86-64.so.2"
        RUNNER=("$C/glibc/ld-linux-x86-64.so.2" --library-path
            "$C/glibc:$LD_LIBRARY_PATH:$C/lib-cxx")
        m=$(echo "$m" | grep -v 'GLIBC_')
    fi
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd "$D2" 2>&1 | grep -E 'cublas|cudart|openblas|not found' | sed 's/^/  /'
    if [ -n "$m" ]; then
        echo "$m"
        result libs "FAILED: $(echo "$m" | tr '\n' ';' | cut -c1-300)"
    elif run "$D2" --help >/dev/null 2>&1; then
        result libs "PASSED (every library found; d2nwg starts)"
    else
        run "$D2" --help 2>&1 | tail -n 3
        result libs "FAILED: d2nwg does not start"
    fi
else
    result libs "FAILED: no binaries (no gpu-carry/d2nwg-gpu.tar.gz)"
fi
BIN_OK=0
case "${RES[libs]}" in PASSED*) BIN_OK=1 ;; esac
HAVE_GPU=0
if [ $BIN_OK = 1 ]; then
    # the backend's own view (cudaGetDeviceCount)
    n=$(run "$BENCH" --devices 2>&1 | sed -n 's/^cuda devices: \([0-9]*\).*/\1/p')
    if [ "${n:-0}" -gt 0 ]; then
        HAVE_GPU=1
        echo "the CUDA runtime sees $n device(s)"
    else
        echo "the CUDA runtime sees no GPU: the CUDA steps are skipped by name"
    fi
fi

# ------------------------------------------------------------------ backend comparison
step "backend_ops: test_backend_ops (CPU vs CUDA, gradient checks on CUDA)"
t=$(budget 150)
if [ $BIN_OK = 0 ]; then
    result backend_ops "SKIPPED: no runnable binaries (libs step)"
elif [ "$t" = 0 ]; then
    result backend_ops "SKIPPED: past the deadline"
else
    log=$R/backend_ops.log
    t0=$(now)
    timeout -k 5 "$t" "${RUNNER[@]}" "$TBO" >"$log" 2>&1
    rc=$?
    cat "$log"
    ok=$(grep -c '^\[       OK \]' "$log")
    skipped=$(grep '^\[  SKIPPED \] test_' "$log" | sort -u | awk '{ print $4 }' | tr '\n' ' ')
    failed=$(grep '^\[  FAILED  \] test_' "$log" | sort -u | awk '{ print $4 }' | tr '\n' ' ')
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        result backend_ops "FAILED: timed out after $t s ($ok passed; failed: ${failed:-none})"
    elif [ $rc -ne 0 ] || [ -n "$failed" ]; then
        result backend_ops "FAILED (exit $rc): ${failed:-crash, see backend_ops.log}"
    elif [ $HAVE_GPU = 0 ]; then
        result backend_ops "SKIPPED: no GPU; CUDA tests skipped by name: $skipped"
    else
        result backend_ops "PASSED: $ok tests in $(secs "$t0" "$(now)") s$(
            grep -m1 'tf32' "$log" | sed 's/^ */; /')"
    fi
fi

# ------------------------------------------------------------------ timings
step "bench: bench_gpu (GEMMs, training step, generation K=8 x 50 steps; CPU vs GPU)"
t=$(budget 150)
if [ $BIN_OK = 0 ]; then
    result bench "SKIPPED: no runnable binaries (libs step)"
elif [ $HAVE_GPU = 0 ]; then
    result bench "SKIPPED: no GPU (bench_gpu times CUDA against CPU)"
elif [ "$t" = 0 ]; then
    result bench "SKIPPED: past the deadline"
else
    log=$R/bench_gpu.log
    # it stops starting rows 20 s before its budget; the timeout is the backstop
    timeout -k 5 "$t" "${RUNNER[@]}" "$BENCH" --max-seconds $((t - 20 > 10 ? t - 20 : 10)) \
        >"$log" 2>&1
    rc=$?
    cat "$log"
    if [ $rc -eq 0 ] && grep -q '^summary' "$log"; then
        result bench "PASSED: $(grep '^summary' "$log" | sed 's/^summary //')"
    else
        result bench "FAILED (exit $rc): $(grep -E 'bench_gpu:|skipped' "$log" | head -n 3 |
            tr '\n' ' ')"
    fi
fi

# ------------------------------------------------------------------ safetensors comparison
# compare A B: "identical bytes", or tensor-by-tensor relative L2 error against TOL (exit 1
# when a tensor is over it, a name or shape differs, or the metadata differs: numbers in it
# within 1e-3 relative, the rest exactly; a different d2nwg.candidate_index means another
# candidate ranked best)
cat >"$W/compare.py" <<'EOF'
import json, math, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        assert t["dtype"] == "F32", t["dtype"]
        out[name] = (t["shape"], struct.unpack("<%df" % ((e - b) // 4), data[b:e]))
    return out, meta
(a, ma), (b, mb) = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3])
bad = []
if sorted(a) != sorted(b):
    bad.append("tensor names differ: %s vs %s" % (sorted(a), sorted(b)))
def close(x, y):  # numbers in the metadata (support loss ...) are printed rounded
    try:
        fx, fy = float(x), float(y)
    except (TypeError, ValueError):
        return x == y
    return abs(fx - fy) <= 1e-3 * max(abs(fx), abs(fy), 1e-6)
diff_meta = sorted(k for k in set(ma) | set(mb) if not close(ma.get(k), mb.get(k)))
if diff_meta:
    bad.append("metadata differs: " + ", ".join(diff_meta))
worst = 0.0
for name in sorted(set(a) & set(b)):
    (sa, va), (sb, vb) = a[name], b[name]
    if sa != sb:
        bad.append("%s: shape %s vs %s" % (name, sa, sb))
        continue
    num = sum((x - y) ** 2 for x, y in zip(va, vb))
    den = sum(x * x for x in va)
    rel = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    mx = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
    worst = max(worst, rel)
    print("  %-10s %-12s rel L2 %.3g, max abs %.3g" % (name, "x".join(map(str, sa)), rel, mx))
    if not rel <= tol:
        bad.append("%s: rel L2 %.3g > %g" % (name, rel, tol))
print("RESULT " + ("; ".join(bad) if bad else "equal within rel L2 %g (worst %.3g)" % (tol, worst)))
sys.exit(1 if bad else 0)
EOF
compare() { # compare A B -> prints one line; 0 when equal within TOL
    if cmp -s "$1" "$2"; then
        echo "identical bytes"
        return 0
    fi
    if [ -z "$PY" ]; then
        echo "bytes differ (no python3 to compare the tensors)"
        return 1
    fi
    "$PY" "$W/compare.py" "$1" "$2" "$TOL" >"$W/compare.out" 2>&1
    local rc=$?
    sed -n '/^  /p' "$W/compare.out" >&2
    grep '^RESULT' "$W/compare.out" | sed 's/^RESULT /bytes differ; /' || tail -n 3 "$W/compare.out"
    return $rc
}

# ------------------------------------------------------------------ daemon end to end
step "daemon: one job on d2nwgd --device cpu and one on --device cuda:0, same seed"
GEN=$C/data/gen.safetensors
DLOG=$R/daemon.log
: >"$DLOG"
DPID=""
stop_daemon() {
    if [ -n "$DPID" ]; then
        kill -TERM "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
        DPID=""
    fi
}
# start_daemon TAG DEVICE: sets DPID and URL; 1 when it does not come up
start_daemon() {
    rm -f "$W/d-$1.port"
    "${RUNNER[@]}" "$D2D" --generator "$GEN" --listen 127.0.0.1:0 --port-file "$W/d-$1.port" \
        --data "$W/d-$1" --device "$2" --log-level warn 2>>"$W/d-$1.log" &
    DPID=$!
    local i=0
    while [ ! -s "$W/d-$1.port" ]; do
        i=$((i + 1))
        if [ $i -gt 1500 ] || ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null
            DPID=""
            return 1
        fi
        sleep 0.02
    done
    URL="http://127.0.0.1:$(cat "$W/d-$1.port")"
}
# README's support set: 5 Fashion-MNIST images of each of 5 classes (gpu_prepare.sh)
SUP=$C/data/support.csv
t=$(budget 90)
HEAD=""
if [ $BIN_OK = 0 ]; then
    result daemon "SKIPPED: no runnable binaries (libs step)"
elif [ ! -f "$GEN" ] || [ ! -f "$SUP" ]; then
    result daemon "SKIPPED: no generator or support set in $C/data (gpu_prepare.sh)"
elif [ "$t" = 0 ]; then
    result daemon "SKIPPED: past the deadline"
else
    dl=$(($(date +%s) + t))
    notes=""
    ok=1
    for dev in cpu cuda:0; do
        tag=${dev%%:*}
        if [ "$tag" = cuda ] && [ $HAVE_GPU = 0 ]; then
            notes="$notes; cuda:0 job SKIPPED (no GPU)"
            continue
        fi
        left=$((dl - $(date +%s)))
        if [ $left -lt 10 ]; then
            notes="$notes; $dev job SKIPPED (past the deadline)"
            ok=0
            continue
        fi
        if ! start_daemon "$tag" "$dev"; then
            echo "d2nwgd --device $dev did not start:"
            tail -n 20 "$W/d-$tag.log"
            notes="$notes; d2nwgd --device $dev FAILED to start: $(tail -n 1 "$W/d-$tag.log")"
            ok=0
            continue
        fi
        t0=$(now)
        if timeout -k 5 "$left" "${RUNNER[@]}" "$D2" submit --support "$SUP" \
            --candidates 8 --steps 50 --seed 7 --quiet --server "$URL" \
            --timeout $((left - 5)) --out "$W/head-$tag.safetensors" >"$W/submit-$tag.log" 2>&1
        then
            dt=$(secs "$t0" "$(now)")
            echo "job on $dev: best network in $dt s (submission to download, CLI client)"
            cat "$W/submit-$tag.log"
            notes="$notes; $dev job $dt s"
            [ "$tag" = cuda ] && HEAD=$W/head-cuda.safetensors
            [ -z "$HEAD" ] && HEAD=$W/head-cpu.safetensors
        else
            echo "job on $dev FAILED:"
            cat "$W/submit-$tag.log"
            notes="$notes; $dev job FAILED: $(tail -n 1 "$W/submit-$tag.log" | cut -c1-200)"
            ok=0
        fi
        if [ "$tag" = cuda ]; then
            http_get "$URL/metrics" >"$W/metrics-cuda.txt" 2>&1
            mem=$(awk '/^d2nwgd_device_memory_(used|total)_bytes/ { v = $2 / 1048576
                sub(/^d2nwgd_device_memory_/, "", $1); printf "%s %.1f MiB  ", $1, v }' \
                "$W/metrics-cuda.txt")
            grep '^d2nwgd_device_memory' "$W/metrics-cuda.txt"
            notes="$notes; /metrics: ${mem:-no device memory lines}"
            [ -n "$mem" ] || ok=0
        fi
        stop_daemon
        { echo "--- d2nwgd --device $dev (log level warn)"; cat "$W/d-$tag.log"
          echo "--- submit"; cat "$W/submit-$tag.log"; } >>"$DLOG"
    done
    if [ -f "$W/head-cpu.safetensors" ] && [ -f "$W/head-cuda.safetensors" ]; then
        c=$(compare "$W/head-cpu.safetensors" "$W/head-cuda.safetensors") || ok=0
        notes="$notes; cpu vs cuda:0 best network: $c"
    fi
    [ -f "$W/metrics-cuda.txt" ] && cat "$W/metrics-cuda.txt" >>"$DLOG"
    if [ $ok = 1 ] && [ $HAVE_GPU = 1 ]; then
        result daemon "PASSED${notes}"
    elif [ $ok = 1 ]; then
        result daemon "SKIPPED (cuda:0 half; the cpu half passed)${notes}"
    else
        result daemon "FAILED${notes}"
    fi
fi
stop_daemon

# ------------------------------------------------------------------ README python blocks
step "python: README.md's python blocks with the image's torch / safetensors / peft"
PYLOG=$R/python.log
: >"$PYLOG"
t=$(budget 60)
if [ -z "$PY" ]; then
    result python "SKIPPED: no python3"
elif [ -z "$HEAD" ]; then
    result python "SKIPPED: no weights from the daemon step to load"
elif [ "$t" = 0 ]; then
    result python "SKIPPED: past the deadline"
else
    mkdir -p "$W/py"
    cp "$HEAD" "$W/py/head.safetensors"
    cp "$SUP" "$W/py/support.csv"
    awk -v dir="$W/py" '/^```python/ { n++; f = sprintf("%s/block%d.py", dir, n); inb = 1; next }
        inb && /^```/ { inb = 0; close(f); next }
        inb { print > f }' README.md
    "$PY" - >>"$PYLOG" 2>&1 <<'EOF'
import importlib
for m in ("torch", "safetensors", "peft", "numpy"):
    try:
        v = importlib.import_module(m).__version__
    except Exception as e:
        v = "missing (%s)" % e.__class__.__name__
    print("%-12s %s" % (m, v))
try:
    import torch
    print("torch.cuda.is_available()", torch.cuda.is_available())
except Exception:
    pass
EOF
    cat "$PYLOG"
    notes="on $(basename "$HEAD")"
    fails=0
    dl=$(($(date +%s) + t))
    for f in "$W"/py/block*.py; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .py)
        mods=$(sed -n 's/^\(import\|from\) \([A-Za-z_][A-Za-z0-9_]*\).*/\2/p' "$f" | sort -u |
            tr '\n' ' ')
        absent=""
        for m in $mods; do "$PY" -c "import $m" 2>/dev/null || absent="$absent $m"; done
        left=$((dl - $(date +%s)))
        if [ -n "$absent" ]; then
            notes="$notes; $name ($mods) SKIPPED: missing$absent"
        elif [ $left -lt 5 ]; then
            notes="$notes; $name SKIPPED: past the deadline"
        else
            echo "--- $name (imports: $mods)" >>"$PYLOG"
            cat "$f" >>"$PYLOG"
            echo "--- output" >>"$PYLOG"
            if (cd "$W/py" && PYTHONUNBUFFERED=1 timeout -k 5 "$left" "$PY" "$f") \
                >>"$PYLOG" 2>&1; then
                notes="$notes; $name ($mods) PASSED"
            else
                notes="$notes; $name ($mods) FAILED: $(tail -n 1 "$PYLOG" | cut -c1-150)"
                fails=$((fails + 1))
            fi
            sed -n "/^--- $name/,\$p" "$PYLOG"
        fi
    done
    grep -q 'import peft\|from peft' "$W"/py/block*.py 2>/dev/null ||
        notes="$notes; no README block imports peft ($(grep '^peft' "$PYLOG" | tr -s ' '))"
    if [ $fails -gt 0 ]; then
        result python "FAILED: $notes"
    elif echo "$notes" | grep -q PASSED; then
        result python "PASSED: $notes"
    else
        result python "SKIPPED: $notes"
    fi
fi

# ------------------------------------------------------------------ CLI pipeline
step "cli: zoo (digits) -> train --quick on cpu and cuda:0 -> generate on both"
CLOG=$R/cli.log
: >"$CLOG"
t=$(budget 150)
DIG=$C/data/digits.csv
if [ $BIN_OK = 0 ]; then
    result cli "SKIPPED: no runnable binaries (libs step)"
elif [ ! -f "$DIG" ]; then
    result cli "SKIPPED: no digits CSV carried (no python3-sklearn where gpu_prepare.sh ran)"
elif [ "$t" = 0 ]; then
    result cli "SKIPPED: past the deadline"
else
    dl=$(($(date +%s) + t))
    left() { echo $((dl - $(date +%s))); }
    why() { # why RC T0: a timeout, or the program's last line
        if [ "$1" = 124 ] || [ "$1" = 137 ]; then
            echo "timed out after $(secs "$2" "$(now)") s (the deadline)"
        else
            echo "exit $1: $(tail -n 1 "$CLOG" | cut -c1-200)"
        fi
    }
    notes=""
    ok=1
    # support set: 5 rows of each of the digits 0..4
    awk -F, 'NR == 1 { print; next } { if ($1 < 5 && cnt[$1]++ < 5) print }' "$DIG" \
        >"$W/digits-support.csv"
    t0=$(now)
    if timeout -k 5 "$(left)" "${RUNNER[@]}" "$D2" zoo build --source "csv:$DIG" \
        --feature pca:32 --tasks 200 --seed 1 --out "$W/zoo" --quiet >>"$CLOG" 2>&1; then
        notes="zoo (200 tasks) $(secs "$t0" "$(now)") s"
    else
        notes="zoo build FAILED: $(tail -n 1 "$CLOG")"
        ok=0
    fi
    for dev in cpu cuda:0; do
        [ $ok = 1 ] || break
        tag=${dev%%:*}
        if [ "$tag" = cuda ] && [ $HAVE_GPU = 0 ]; then
            notes="$notes; train --device cuda:0 SKIPPED (no GPU)"
            continue
        fi
        if [ "$(left)" -lt 10 ]; then
            notes="$notes; train --device $dev SKIPPED (past the deadline)"
            continue
        fi
        t0=$(now)
        echo "--- train --quick --device $dev" >>"$CLOG"
        timeout -k 5 "$(left)" "${RUNNER[@]}" "$D2" train --zoo "$W/zoo" --quick --seed 1 \
            --quiet --device "$dev" --out "$W/gen-$tag.safetensors" >>"$CLOG" 2>&1
        rc=$?
        if [ $rc = 0 ]; then
            notes="$notes; train --quick --device $dev $(secs "$t0" "$(now)") s"
        else
            notes="$notes; train --device $dev FAILED: $(why $rc "$t0")"
            [ "$tag" = cpu ] && ok=0
        fi
    done
    if [ $ok = 1 ] && [ -f "$W/gen-cpu.safetensors" ]; then
        for dev in cpu cuda:0; do
            tag=${dev%%:*}
            if [ "$tag" = cuda ] && [ $HAVE_GPU = 0 ]; then
                notes="$notes; generate --device cuda:0 SKIPPED (no GPU)"
                continue
            fi
            if [ "$(left)" -lt 5 ]; then
                notes="$notes; generate --device $dev SKIPPED (past the deadline)"
                continue
            fi
            t0=$(now)
            echo "--- generate --device $dev" >>"$CLOG"
            timeout -k 5 "$(left)" "${RUNNER[@]}" "$D2" generate \
                --generator "$W/gen-cpu.safetensors" --support "$W/digits-support.csv" \
                --seed 7 --device "$dev" --out "$W/best-$tag.safetensors" >>"$CLOG" 2>&1
            rc=$?
            if [ $rc = 0 ]; then
                notes="$notes; generate --device $dev $(secs "$t0" "$(now)") s"
            else
                notes="$notes; generate --device $dev FAILED: $(why $rc "$t0")"
                ok=0
            fi
        done
        if [ -f "$W/best-cpu.safetensors" ] && [ -f "$W/best-cuda.safetensors" ]; then
            c=$(compare "$W/best-cpu.safetensors" "$W/best-cuda.safetensors") || ok=0
            notes="$notes; cpu vs cuda:0 best network: $c"
        fi
    fi
    cat "$CLOG"
    if echo "$notes" | grep -q FAILED; then
        result cli "FAILED: $notes"
    elif [ $HAVE_GPU = 0 ]; then
        result cli "SKIPPED (cuda:0 halves; the cpu halves passed): $notes"
    elif echo "$notes" | grep -q SKIPPED; then
        result cli "SKIPPED (in part): $notes"
    else
        result cli "PASSED: $notes"
    fi
fi

for s in $STEPS; do
    case "${RES[$s]}" in FAILED*) exit 1 ;; esac
done
exit 0
