#!/bin/sh
# make generators: build every generator that `make run` serves, into var/:
#   default.safetensors  Fashion-MNIST, 5-way heads on PCA-128 (the "default")
#   glyphs.safetensors   across sources: Fashion-MNIST and the glyph background
#                        training scripts (glyphs:train), 5-way heads on PCA-128
#                        fitted on those background data only; never a held-out
#                        script, never digits
# Each step is skipped when its output exists, and training resumes from its
# checkpoint when interrupted. Usage: generators.sh [BUILD] [all|default]
# (default: build, all). Override the folder with D2NWG_VAR.
set -e
B=${1:-build}
WHICH=${2:-all}
VAR=${D2NWG_VAR:-var}
mkdir -p "$VAR"

# build NAME SOURCE WHAT: zoo VAR/zoo[-NAME] and generator VAR/NAME.safetensors
build() {
    name=$1 source=$2 what=$3
    zoo="$VAR/zoo"
    [ "$name" = default ] || zoo="$VAR/zoo-$name"
    if [ ! -f "$zoo/manifest.json" ]; then
        echo "== building zoo '$name': 2000 five-way heads of $what on PCA-128 features"
        rm -rf "$zoo"
        "$B/d2nwg" zoo build --source "$source" --way 5 --tasks 2000 --feature pca:128 \
            --seed 1 --out "$zoo"
    fi
    if [ ! -f "$VAR/$name.safetensors" ]; then
        echo "== training generator '$name' (a few minutes; resumable if interrupted)"
        "$B/d2nwg" train --zoo "$zoo" --out "$VAR/$name.safetensors" --seed 1 --resume
    fi
}

build default fashion-mnist "Fashion-MNIST"
[ "$WHICH" = default ] && exit 0
build glyphs fashion-mnist+glyphs:train "Fashion-MNIST and 91 glyph background scripts"
