#!/bin/sh
# tests/bench/gpu_prepare.sh - run HERE (where the Debian packages and nvcc are) before the
# one device run of tests/bench/gpu.sh, whose machine cannot build (no -dev packages, no
# package registry). Writes gpu-carry/d2nwg-gpu.tar.gz (gpu-carry/ is ignored by git; the
# run names it in `carry`; gzip, as OpenBLAS alone is 36 MB unpacked), holding:
#   bin/      d2nwg, d2nwgd, test_backend_ops, bench_gpu of `make CUDA=1 BUILD=build/cuda`,
#             debug sections stripped
#   lib/      every shared library they load except glibc's, libstdc++/libgcc_s and CUDA's
#             (libcuda, libcudart, libcublas*: the device image has those)
#   lib-cxx/  this machine's libstdc++ and libgcc_s, used there only when the image's are
#             missing or too old (gpu.sh decides from ldd)
#   glibc/    this machine's loader and libc family, used there only when ldd reports a
#             GLIBC_x.y the image lacks (gpu.sh then starts every program through it)
#   data/     gen.safetensors (the quick test generator, tests/fixture.sh), support.csv
#             (README's `d2nwg sample --classes 0,1,7,8,9 --shots 5`: 25 Fashion-MNIST
#             images, for the daemon jobs and README's python blocks) and digits.csv
#             (scikit-learn's digits from Debian's python3-sklearn, label first, for a zoo)
# gpu.sh unpacks it into its working folder there. Prints what it carries and the sizes (the
# run's limit: 64 MiB with the working tree).
#   sh tests/bench/gpu_prepare.sh          (BUILD=build/cuda, JOBS=2 by default)
set -eu
cd "$(dirname "$0")/../.."
B=${BUILD:-build/cuda}
C=gpu-carry
JOBS=${JOBS:-2}
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
PROGS="d2nwg d2nwgd tests/unit/test_backend_ops tests/bench/bench_gpu"

targets=""
for p in $PROGS; do targets="$targets $B/$p"; done
echo "gpu_prepare: make -j$JOBS CUDA=1 BUILD=$B$targets"
make -j"$JOBS" CUDA=1 BUILD="$B" $targets >/dev/null
# the quick generator: copied from the CPU build's fixture when it has one (same format)
GEN=$(FIXTURE_SOURCE="${FIXTURE_SOURCE:-build}" sh tests/fixture.sh "$B")

S=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-gpu-stage-XXXXXX")
trap 'rm -rf "$S"' EXIT
rm -rf "$C"
mkdir -p "$C"
C0=$C
C=$S
mkdir -p "$C/bin" "$C/lib" "$C/lib-cxx" "$C/glibc" "$C/data"
for p in $PROGS; do
    objcopy --strip-debug "$B/$p" "$C/bin/$(basename "$p")"
done
ldd "$C"/bin/* | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
    while read -r name path; do
        case "$name" in
        linux-vdso* | libcuda.so* | libcudart.so* | libcublas.so* | libcublasLt.so*) ;;
        ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | \
            libresolv.so* | libutil.so*) cp -L "$path" "$C/glibc/$name" ;;
        libstdc++.so* | libgcc_s.so*) cp -L "$path" "$C/lib-cxx/$name" ;;
        *) cp -L "$path" "$C/lib/$name" ;;
        esac
    done
cp -L /lib64/ld-linux-x86-64.so.2 "$C/glibc/ld-linux-x86-64.so.2"
cp "$GEN" "$C/data/gen.safetensors"
"$B/d2nwg" sample --classes 0,1,7,8,9 --shots 5 --out "$C/data/support.csv" >/dev/null
if [ -f "$DIGITS" ]; then
    # digits.csv.gz: 64 pixel columns, label last, no header -> a csv: source, label first
    zcat "$DIGITS" | awk -F, 'BEGIN { printf "label"; for (i = 0; i < 64; i++) printf ",p%d", i
        printf "\n" }
        { printf "%d", $NF; for (i = 1; i < NF; i++) printf ",%s", $i; printf "\n" }' \
        >"$C/data/digits.csv"
else
    echo "gpu_prepare: $DIGITS missing (python3-sklearn): gpu.sh will skip its CLI step"
fi
echo "gpu_prepare: $C0/d2nwg-gpu.tar.gz holds"
(cd "$C" && find . -type f | sort | xargs ls -l | awk '{ printf "  %9d  %s\n", $5, $NF }')
tar -C "$C" -czf "$C0/d2nwg-gpu.tar.gz" .
echo "gpu_prepare: $(du -sk "$C" | cut -f1) KiB unpacked, $(du -sk "$C0" | cut -f1) KiB in $C0;" \
    "working tree (tracked + untracked, not ignored):" \
    "$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- | tail -n 1 | cut -f1) KiB"
echo "device run: bash tests/bench/gpu.sh   (carry: $C0)"
