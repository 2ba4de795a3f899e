#!/bin/sh
# bench_torch.sh - d2nwg side by side with a PyTorch replica of the default generator
# (tests/bench/torch_replica.py: the same layers and shapes, the C bundle loaded with
# strict=True, so the parameter counts are equal tensor by tensor), issue 19.
#
# PyTorch 1.13 from Debian (python3-torch), OPENBLAS_NUM_THREADS=1 (at its defaults its
# OpenBLAS threads fight its own OpenMP threads on 2 cores) and torch.set_num_threads(2):
# the fair baseline. Figures, alternating C and PyTorch runs, medians of 3 rounds:
#   stage 1 (token VAE) steps/s, stage 2 (encoder + denoiser) steps/s: d2nwg train on the
#     default zoo with short stages, the steady rate from its progress lines (between 1/4
#     of a stage and its end, so start-up and the first steps are not counted);
#   a generation job (8 candidates x 50 DDIM steps, guidance 2, 5-way 5-shot) in ms:
#     bench_speed gen (C) and torch_replica.py gen;
#   the second core's speed-up of d2nwg (threads 1 vs 2) on stage 2 and on the job.
# Also printed: PyTorch at 1 thread (on a busy 2-core machine its OpenMP threads can lose
# more than they gain), and the ratio against its better setting.
# Usage: bench_torch.sh [BUILD]   (D2NWG_VAR: where default.safetensors and zoo/ are;
# default var). Skips, saying why, without the generator, its zoo or python3-torch.
# D2NWG_BASE_BUILD=DIR (optional): another build of d2nwg (with tests/bench/bench_speed)
# also runs in each round, alternating, and its figures are printed as "before".
B=${1:-build}
VAR=${D2NWG_VAR:-var}
GEN="$VAR/default.safetensors"
ZOO="$VAR/zoo"
PY=${D2NWG_PYTHON:-/usr/bin/python3}
HERE=$(dirname "$0")
S1=${BENCH_S1_STEPS:-240}
S2=${BENCH_S2_STEPS:-120}

if [ ! -f "$GEN" ] || [ ! -f "$ZOO/manifest.json" ]; then
    echo "bench_torch: skipped (no $GEN or $ZOO; make generators)"
    exit 0
fi
if ! OPENBLAS_NUM_THREADS=1 "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "bench_torch: skipped ($PY has no torch: apt-get install python3-torch)"
    exit 0
fi
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM

torch_run() { # MODE THREADS REPS -> value
    OPENBLAS_NUM_THREADS=1 "$PY" "$HERE/torch_replica.py" "$GEN" "$1" "$2" "$3" |
        awk '/^RESULT/ {print $3}'
}

# c_train THREADS [BUILD] -> "stage1_rate stage2_rate" (steady rates from the progress lines)
c_train() {
    rm -f "$TMP/g.safetensors" "$TMP/g.safetensors.ckpt"
    "${2:-$B}/d2nwg" train --zoo "$ZOO" --out "$TMP/g.safetensors" --seed 1 --threads "$1" \
        --vae-steps "$S1" --steps "$S2" --checkpoint-every 100000 2>&1 | tr '\r' '\n' |
        awk -v n1="$S1" -v n2="$S2" '
        function rate(line,   m, a) { # "k/n  r steps/s" -> k and r
            if (!match(line, /[0-9]+\/[0-9]+ +[0-9.]+ steps\/s/)) return 0
            split(substr(line, RSTART, RLENGTH), a, /[\/ ]+/); K = a[1]; R = a[3]; return 1 }
        function keep(st, n) {
            if (!rate($0) || R <= 0) return
            if (!(st in k0) && K >= n / 4) { k0[st] = K; t0[st] = K / R }
            if (st in k0) { k1[st] = K; t1[st] = K / R } }
        /stage 1 vae/ { keep(1, n1) }
        /stage 2 diffusion/ { keep(2, n2) }
        END { for (st = 1; st <= 2; st++)
                  printf "%.3f ", (t1[st] > t0[st]) ? (k1[st] - k0[st]) / (t1[st] - t0[st]) : 0
              print "" }'
}

c_gen() { # THREADS [BUILD] -> ms
    "${2:-$B}/tests/bench/bench_speed" gen "$GEN" "$1" 10 | awk '/^RESULT/ {print $3}'
}

med3() { printf '%s\n%s\n%s\n' "$1" "$2" "$3" | sort -g | sed -n 2p; }

check=$(OPENBLAS_NUM_THREADS=1 "$PY" "$HERE/torch_replica.py" "$GEN" check | grep '^RESULT')
echo "replica of $GEN: $check (tensors, replica parameters, bundle parameters;"
echo "loaded with strict=True)"
for r in 1 2 3; do
    set -- $(c_train 2)
    eval "cs1_$r=$1 cs2_$r=$2"
    eval "ts1_$r=$(torch_run stage1 2 60)"
    eval "ts2_$r=$(torch_run stage2 2 20)"
    set -- $(c_train 1)
    eval "cs2t1_$r=$2"
    eval "ts2t1_$r=$(torch_run stage2 1 20)"
    eval "cg_$r=$(c_gen 2)"
    eval "tg_$r=$(torch_run gen 2 10)"
    eval "cgt1_$r=$(c_gen 1)"
    eval "tgt1_$r=$(torch_run gen 1 10)"
    if [ -n "$D2NWG_BASE_BUILD" ]; then
        set -- $(c_train 2 "$D2NWG_BASE_BUILD")
        eval "bs1_$r=$1 bs2_$r=$2"
        set -- $(c_train 1 "$D2NWG_BASE_BUILD")
        eval "bs2t1_$r=$2"
        eval "bg_$r=$(c_gen 2 "$D2NWG_BASE_BUILD") bgt1_$r=$(c_gen 1 "$D2NWG_BASE_BUILD")"
    fi
    echo "round $r done"
done
m() { eval "med3 \$${1}_1 \$${1}_2 \$${1}_3"; }
cs1=$(m cs1) cs2=$(m cs2) ts1=$(m ts1) ts2=$(m ts2) cs2t1=$(m cs2t1) ts2t1=$(m ts2t1)
cg=$(m cg) tg=$(m tg) cgt1=$(m cgt1) tgt1=$(m tgt1)
awk -v cs1="$cs1" -v ts1="$ts1" -v cs2="$cs2" -v ts2="$ts2" -v cs2t1="$cs2t1" \
    -v ts2t1="$ts2t1" -v cg="$cg" -v tg="$tg" -v cgt1="$cgt1" -v tgt1="$tgt1" 'BEGIN {
    best2 = ts2 > ts2t1 ? ts2 : ts2t1; bestg = tg < tgt1 ? tg : tgt1
    printf "\n| medians of 3 rounds          | d2nwg (2 thr) | PyTorch (2 thr) | ratio | PyTorch (1 thr) | vs its best |\n"
    printf "|------------------------------|------:|------:|------:|------:|------:|\n"
    printf "| stage 1 (token VAE) steps/s  | %.1f | %.1f | %.2fx | | |\n", cs1, ts1, cs1 / ts1
    printf "| stage 2 (enc+denoiser) steps/s | %.1f | %.1f | %.2fx | %.1f | %.2fx |\n", cs2, ts2,
           cs2 / ts2, ts2t1, cs2 / best2
    printf "| generation job ms            | %.1f | %.1f | %.2fx | %.1f | %.2fx |\n", cg, tg,
           tg / cg, tgt1, bestg / cg
    printf "\nd2nwg second core: stage 2 %.2fx (%.1f -> %.1f steps/s), generation job %.2fx (%.1f -> %.1f ms)\n",
           cs2 / cs2t1, cs2t1, cs2, cgt1 / cg, cgt1, cg
    printf "goals (issue 19): >= 3x PyTorch on each row, >= 1.7x from the second core\n" }'
if [ -n "$D2NWG_BASE_BUILD" ]; then
    bs1=$(m bs1) bs2=$(m bs2) bs2t1=$(m bs2t1) bg=$(m bg) bgt1=$(m bgt1)
    awk -v bs1="$bs1" -v bs2="$bs2" -v bs2t1="$bs2t1" -v bg="$bg" -v bgt1="$bgt1" \
        -v cs1="$cs1" -v cs2="$cs2" -v cs2t1="$cs2t1" -v cg="$cg" -v cgt1="$cgt1" \
        -v ts1="$ts1" -v ts2="$ts2" -v tg="$tg" 'BEGIN {
    printf "\nbefore (%s) and after, same rounds:\n", ENVIRON["D2NWG_BASE_BUILD"]
    printf "| | before | after | after/before | before vs PyTorch |\n|--|--:|--:|--:|--:|\n"
    printf "| stage 1 steps/s (2 thr) | %.1f | %.1f | %.2fx | %.2fx |\n", bs1, cs1, cs1 / bs1, bs1 / ts1
    printf "| stage 2 steps/s (2 thr) | %.1f | %.1f | %.2fx | %.2fx |\n", bs2, cs2, cs2 / bs2, bs2 / ts2
    printf "| stage 2 steps/s (1 thr) | %.1f | %.1f | %.2fx | |\n", bs2t1, cs2t1, cs2t1 / bs2t1
    printf "| job ms (2 thr) | %.1f | %.1f | %.2fx | %.2fx |\n", bg, cg, bg / cg, tg / bg
    printf "| job ms (1 thr) | %.1f | %.1f | %.2fx | |\n", bgt1, cgt1, bgt1 / cgt1
    printf "| second core, stage 2 | %.2fx | %.2fx | | |\n", bs2 / bs2t1, cs2 / cs2t1
    printf "| second core, job | %.2fx | %.2fx | | |\n", bgt1 / bg, cgt1 / cg }'
fi
