#!/bin/sh
# make run: on first run build the default Fashion-MNIST zoo and generator in
# var/ (a few minutes, with progress; deploy/generators.sh), then serve it with
# d2nwgd on 127.0.0.1:8080 as the generator "default", and the cross-source
# generator "glyphs" too when `make generators` has built it. Ctrl-C
# (SIGINT/SIGTERM) stops it cleanly. Override with D2NWG_VAR (state folder)
# and D2NWG_LISTEN.
set -e
B=${1:-build}
VAR=${D2NWG_VAR:-var}
LISTEN=${D2NWG_LISTEN:-127.0.0.1:8080}
mkdir -p "$VAR"
sh "$(dirname "$0")/generators.sh" "$B" default
GENS="--generator default=$VAR/default.safetensors"
if [ -f "$VAR/glyphs.safetensors" ]; then
    GENS="$GENS --generator glyphs=$VAR/glyphs.safetensors"
else
    echo "== serving 'default' only; 'make generators' adds the cross-source 'glyphs' generator"
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
# shellcheck disable=SC2086 # GENS is a list of options
exec "$B/d2nwgd" $GENS --listen "$LISTEN" --data "$VAR/data"
