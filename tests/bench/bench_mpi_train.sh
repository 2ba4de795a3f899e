#!/bin/sh
# bench_mpi_train.sh BUILD - the speed-up of `d2nwg train` with 2 MPI processes
# (make bench): one digits zoo, the default model, the same steps and seed,
# trained by one process with all cores' threads and by `mpirun -np 2` with
# half of them each, in the same run; the wall-time ratio. Skipped by name
# without BUILD/mpi (make MPI=1, which make bench builds when mpicc is there)
# or mpirun.
BUILD=${1:-build}
MPI_BIN="$BUILD/mpi/d2nwg"
if [ ! -x "$MPI_BIN" ] || ! command -v mpirun >/dev/null 2>&1; then
  echo "bench_mpi_train: SKIP (no $MPI_BIN or no mpirun; make MPI=1)"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
N=$(nproc)
H=$((N / 2 > 0 ? N / 2 : 1))
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$MPI_BIN" zoo build --source digits --feature pca:32 --tasks 400 --per-class 50 \
  --out "$T/zoo" --quiet >/dev/null || exit 1
TR="train --zoo $T/zoo --vae-steps ${VAE_STEPS:-300} --steps ${STEPS:-600} --quiet"
now() { date +%s.%N; }
t0=$(now)
"$MPI_BIN" $TR --threads "$N" --out "$T/one.safetensors" >/dev/null || exit 1
t1=$(now)
mpirun -np 2 --bind-to none "$MPI_BIN" $TR --threads "$H" --out "$T/two.safetensors" \
  >/dev/null || exit 1
t2=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$N" -v h="$H" 'BEGIN {
  printf "d2nwg train, %s steps: 1 process x %d threads %.1f s, 2 processes x %d threads %.1f s: speed-up %.2fx\n",
    ENVIRON["STEPS"] ? ENVIRON["STEPS"] : 600, n, b - a, h, c - b, (b - a) / (c - b) }'
