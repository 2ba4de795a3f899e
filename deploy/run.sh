#!/bin/sh
# make run: on first run build the default Fashion-MNIST zoo and generator in
# var/ (a few minutes, with progress), then serve it with d2nwgd on
# 127.0.0.1:8080 as the generator "default". Ctrl-C (SIGINT/SIGTERM) stops it
# cleanly. Override with D2NWG_VAR (state folder) and D2NWG_LISTEN.
set -e
B=${1:-build}
VAR=${D2NWG_VAR:-var}
LISTEN=${D2NWG_LISTEN:-127.0.0.1:8080}
mkdir -p "$VAR"
if [ ! -f "$VAR/zoo/manifest.json" ]; then
    echo "== building the default zoo: 2000 five-way Fashion-MNIST heads on PCA-128 features"
    rm -rf "$VAR/zoo"
    "$B/d2nwg" zoo build --source fashion-mnist --way 5 --tasks 2000 --feature pca:128 \
        --seed 1 --out "$VAR/zoo"
fi
if [ ! -f "$VAR/default.safetensors" ]; then
    echo "== training the default generator (a few minutes; resumable if interrupted)"
    "$B/d2nwg" train --zoo "$VAR/zoo" --out "$VAR/default.safetensors" --seed 1 --resume
fi
if [ ! -f "$VAR/job.json" ]; then
    "$B/d2nwg" sample --source fashion-mnist --classes 0,1,2,3,4 --shots 5 --out "$VAR/support.csv"
    "$B/d2nwg" sample --source fashion-mnist --classes 0,1,2,3,4 --shots 5 --out "$VAR/job.json"
fi
cat <<MSG
== d2nwgd on http://$LISTEN (generator "default": $VAR/default.safetensors)
   try:
     curl -s -X POST -H 'Content-Type: application/json' --data @$VAR/job.json http://$LISTEN/v1/jobs
     curl -s 'http://$LISTEN/v1/jobs/JOB_ID?wait=30'
     $B/d2nwg submit --support $VAR/support.csv --wait --out head.safetensors
MSG
exec "$B/d2nwgd" --generator "$VAR/default.safetensors" --listen "$LISTEN" --data "$VAR/data"
