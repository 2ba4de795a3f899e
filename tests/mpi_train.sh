#!/bin/sh
# tests/mpi_train.sh [MPI_BUILD [PLAIN_BUILD]] - `d2nwg train` data parallel
# under `mpirun -np 2` (make test runs it with $MPI_BUILD, the MPI=1 build it
# makes when mpicc is there, and $D2NWG_BUILD; TAP): a small digits zoo, one process and two
# processes with the same seed and one thread each; the two bundles' `d2nwg
# eval` figures (generated heads, mean and best candidate) must agree within
# their 95% intervals, and the wall times give the speed-up. A d2nwg built
# without MPI must refuse to run as one of two processes. --bind-to none: the
# default binding to one core gives OpenBLAS one thread, whose feature map
# rounds differently from the zoo build's, and the zoo would be refused.
set -eu
MPI_BUILD=${1:-${MPI_BUILD:-}}
PLAIN_BUILD=${2:-${D2NWG_BUILD:-build}}
if [ -z "$MPI_BUILD" ] || ! command -v mpirun >/dev/null 2>&1; then
  echo "1..1"
  echo "ok 1 # SKIP mpi_train: no MPI build (make MPI=1) or no mpirun"
  exit 0
fi
MPI_BIN=$(realpath "$MPI_BUILD/d2nwg")
PLAIN_BIN=$(realpath "$PLAIN_BUILD/d2nwg")
echo "1..3"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$MPI_BIN" zoo build --source digits --feature pca:16 --way 3 --tasks 80 --per-class 30 \
  --out "$T/zoo" --quiet --threads 1 >/dev/null
TR="train --zoo $T/zoo --quick --vae-steps ${VAE_STEPS:-200} --steps ${STEPS:-300} --threads 1 --quiet"
now() { date +%s.%N; }
t0=$(now)
"$MPI_BIN" $TR --out "$T/one.safetensors" >/dev/null
t1=$(now)
mpirun -np 2 --bind-to none "$MPI_BIN" $TR --out "$T/two.safetensors" >/dev/null
t2=$(now)
[ -f "$T/two.safetensors" ] || { echo "not ok 1 - mpirun -np 2 wrote no bundle"; exit 1; }
echo "ok 1 - mpirun -np 2 d2nwg train wrote a bundle"
EV="eval --zoo $T/zoo --tasks 60 --shots 1,5 --no-finetune --json"
"$MPI_BIN" $EV --generator "$T/one.safetensors" >"$T/one.json"
"$MPI_BIN" $EV --generator "$T/two.safetensors" >"$T/two.json"
python3 - "$T/one.json" "$T/two.json" "$t0" "$t1" "$t2" <<'PY'
import json, sys
a, b = (json.load(open(p))["methods"] for p in sys.argv[1:3])
t0, t1, t2 = map(float, sys.argv[3:6])
bad = []
for m in ("d2nwg_mean", "d2nwg_best"):
    for k in a[m]:
        x, y = a[m][k], b[m][k]
        ok = abs(x["mean"] - y["mean"]) <= max(x["ci95"], y["ci95"])
        print("# %-10s %s-shot  1 process %.4f +- %.4f   2 processes %.4f +- %.4f  %s"
              % (m, k, x["mean"], x["ci95"], y["mean"], y["ci95"], "ok" if ok else "DIFFERENT"))
        if not ok:
            bad.append((m, k))
print("# training %.1f s with 1 process, %.1f s with 2: speed-up %.2fx"
      % (t1 - t0, t2 - t1, (t1 - t0) / (t2 - t1)))
print("%s 2 - eval figures of 1 and 2 processes agree within their 95%% intervals"
      % ("not ok" if bad else "ok"))
sys.exit(1 if bad else 0)
PY
if mpirun -np 2 --bind-to none "$PLAIN_BIN" $TR --out "$T/x.safetensors" >"$T/refused" 2>&1 ||
   ! grep -q "built without MPI" "$T/refused"; then
  echo "not ok 3 - a build without MPI under mpirun -np 2 did not refuse"
  sed 's/^/# /' "$T/refused"
  exit 1
fi
echo "ok 3 - a build without MPI refuses to run as one of 2 processes"
