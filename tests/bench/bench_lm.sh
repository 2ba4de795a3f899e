#!/bin/sh
# bench_lm.sh BUILD - `d2nwg lm train` against the same model trained in PyTorch
# (tests/bench/lm_torch_train.py: same architecture, batch shape, packing and mask, AdamW),
# on one word list, same threads, side by side: tokens/s (bytes predicted per second) of
# each and the ratio d2nwg / PyTorch (goal >= 1.0). Skips, saying so, without python3-torch.
BUILD=${1:-build}
PY=/usr/bin/python3
STEPS=${LM_BENCH_STEPS:-60}
THREADS=${LM_BENCH_THREADS:-$(nproc)}
LIST=/usr/share/dict/french
dir=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-benchlm-XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    echo "bench_lm: SKIPPED (python3-torch missing)"
    exit 0
fi
d2=$("$BUILD/d2nwg" --json lm train --source words:french --out "$dir/m.safetensors" \
    --steps "$STEPS" --batch 32 --threads "$THREADS" --eval-words 10 2>/dev/null |
    sed -n 's/.*"tokens_per_s": *\([0-9.e+]*\).*/\1/p') || exit 1
pt=$("$PY" tests/bench/lm_torch_train.py "$LIST" "$STEPS" 32 "$THREADS" |
    sed -n 's/^tokens_per_s \([0-9.]*\).*/\1/p') || exit 1
if [ -z "$d2" ] || [ -z "$pt" ]; then
    echo "bench_lm: a run failed (d2nwg '$d2', torch '$pt')"
    exit 1
fi
awk -v a="$d2" -v b="$pt" -v s="$STEPS" -v t="$THREADS" 'BEGIN {
    printf "lm train, %d steps of 32 x 32 bytes, %d threads: d2nwg %.0f tokens/s, " \
           "PyTorch %.0f tokens/s, ratio %.2fx\n", s, t, a, b, a / b }'
