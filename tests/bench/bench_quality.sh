#!/bin/sh
# make bench: the paper-style results table of the default generator.
# Uses var/default.safetensors and var/zoo when `make run` made them, else
# builds them under BUILD/bench-var (about 5-8 minutes on 2 cores), then runs
#   d2nwg eval --tasks 100 --shots 1,5 --plot BUILD/bench-var/finetune.svg
set -e
B=${1:-build}
if [ -f var/default.safetensors ] && [ -f var/zoo/manifest.json ]; then
    GEN=var/default.safetensors
    ZOO=var/zoo
else
    V="$B/bench-var"
    mkdir -p "$V"
    GEN="$V/default.safetensors"
    ZOO="$V/zoo"
    if [ ! -f "$ZOO/manifest.json" ]; then
        rm -rf "$ZOO"
        "$B/d2nwg" zoo build --source fashion-mnist --way 5 --tasks 2000 --feature pca:128 \
            --seed 1 --out "$ZOO" --quiet
    fi
    if [ ! -f "$GEN" ]; then
        start=$(date +%s)
        "$B/d2nwg" train --zoo "$ZOO" --out "$GEN" --seed 1 --resume --quiet
        echo "default generator trained in $(( $(date +%s) - start )) s"
    fi
fi
mkdir -p "$B/bench-var"
"$B/d2nwg" eval --generator "$GEN" --zoo "$ZOO" --tasks 100 --shots 1,5 \
    --plot "$B/bench-var/finetune.svg" 2>/dev/null
