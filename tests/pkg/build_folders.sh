#!/bin/sh
# Each build configuration has its own folder, so switching flags can never
# leave objects of the other configuration in a binary (TAP lines for
# tests/run_tests.sh):
#   - `make print-build` names build/, build/cuda, build/mpi, build/asan for plain,
#     CUDA=1, MPI=1, SAN=1;
#   - a flags change in one folder (BUILD=DIR given) rebuilds its objects
#     (DIR/flags.stamp), and an unchanged one does not;
#   - `make run` and `make test` build with -j$(nproc) (make's database, -p);
#   - `make CUDA=1` after `make` gives a d2nwg with the CUDA backend
#     (nm: backend_cuda_create) and leaves the plain one as it was. Needs nvcc
#     and the suite running on the default folder; otherwise skipped by name.
cd "$(dirname "$0")/../.." || exit 1
# the suite runs under make: drop its jobserver and command-line variables,
# which make also exports (`make asan` runs the suite with SAN=1 OPT=-O1 BUILD=...)
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES BUILD SAN OPT CUDA MPI
B=${D2NWG_BUILD:-build}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
n=0
fail=0
report() { # status name
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
M="make -s --no-print-directory"

for cfg in ":build" "CUDA=1:build/cuda" "MPI=1:build/mpi" "SAN=1:build/asan" \
    "CUDA=1 SAN=1:build/cuda/asan"; do
    flags=${cfg%%:*} want=${cfg#*:}
    got=$($M $flags print-build)
    [ "$got" = "$want" ]; report $? "make ${flags:-(no flags)} builds in $want (got $got)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/d2-build-folders.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
obj=$tmp/core/base/rng.o
$M BUILD="$tmp" "$obj" >/dev/null 2>&1
[ -f "$obj" ]; report $? "make BUILD=DIR builds an object"
$M -q BUILD="$tmp" "$obj"; report $? "the same flags again: the object is up to date"
$M -q BUILD="$tmp" OPT=-O1 "$obj"
[ $? = 1 ]; report $? "other flags in the same folder (OPT=-O1): the object must be rebuilt"

# make's database (-p; -q runs no recipe): JOBS and the recipes that use it
db=$($M -pq print-build 2>/dev/null)
jobs=$(nproc)
echo "$db" | grep -q "^JOBS := -j$jobs\$"; report $? "JOBS is -j$jobs when no -j is given"
for goal in run test; do
    echo "$db" | awk -v g="$goal:" '$1 == g { f = 1 } f && /\$\(MAKE\) \$\(JOBS\) all/ { ok = 1 }
        /^$/ { f = 0 } END { exit !ok }'
    report $? "make $goal builds with \$(JOBS)"
done

if [ ! -x "$NVCC" ]; then
    skip "make CUDA=1 after make adds the CUDA backend" "no nvcc at $NVCC"
elif [ "$B" != build ]; then
    skip "make CUDA=1 after make adds the CUDA backend" "the suite runs on BUILD=$B, not build/"
else
    $M all >/dev/null 2>&1; report $? "make (plain) builds"
    before=$(stat -c %Y build/d2nwg)
    $M CUDA=1 all >"$tmp/cuda.log" 2>&1; rc=$?
    [ $rc = 0 ] || tail -n 20 "$tmp/cuda.log" | sed 's/^/# /'
    report $rc "make CUDA=1 after make builds"
    nm build/cuda/d2nwg 2>/dev/null | grep -q ' T backend_cuda_create$'
    report $? "build/cuda/d2nwg has the CUDA backend (backend_cuda_create)"
    ! nm build/d2nwg | grep -q backend_cuda_create
    report $? "build/d2nwg (plain) has no CUDA backend"
    [ "$(stat -c %Y build/d2nwg)" = "$before" ]
    report $? "make CUDA=1 leaves the plain build/d2nwg as it was"
fi
exit $fail
