#!/bin/sh
# make generators: build every generator that `make run` serves, into var/:
#   default.safetensors  Fashion-MNIST, 5-way heads on PCA-128 (the "default")
#   glyphs.safetensors   across sources and ways: Fashion-MNIST and the glyph
#                        background training scripts (glyphs:train), heads of
#                        2..20 classes on the features of a Conv-4 backbone
#                        (backbone.safetensors, trained on those background
#                        data only); never a held-out script, never digits.
#                        Per-class conditions, 64 latent values per head
#                        row, the query term at 0.3, refinement's rule
#                        (fixed C = 10) and the gate's 1-shot fallback
#                        (logistic regression) were chosen on the
#                        glyphs:validation scripts (README "Results").
# Each step is skipped when its output exists, and training resumes from its
# checkpoint when interrupted. Usage: generators.sh [BUILD] [all|default]
# (default: build, all). Override the folder with D2NWG_VAR.
set -e
B=${1:-build}
WHICH=${2:-all}
VAR=${D2NWG_VAR:-var}
mkdir -p "$VAR"

# zoo NAME SOURCE FEATURE WAYS WHAT: the zoo VAR/zoo[-NAME]
zoo() {
    name=$1 source=$2 feature=$3 ways=$4 what=$5
    dir="$VAR/zoo"
    [ "$name" = default ] || dir="$VAR/zoo-$name"
    if [ ! -f "$dir/manifest.json" ]; then
        echo "== building zoo '$name': $what"
        rm -rf "$dir"
        "$B/d2nwg" zoo build --source "$source" $ways --feature "$feature" --seed 1 --out "$dir"
    fi
}

# generator NAME OUT [TRAIN OPTIONS]: the generator OUT trained on NAME's zoo
generator() {
    name=$1 out=$2
    shift 2
    dir="$VAR/zoo"
    [ "$name" = default ] || dir="$VAR/zoo-$name"
    if [ ! -f "$out" ]; then
        echo "== training generator '$name' (resumable if interrupted)"
        "$B/d2nwg" train --zoo "$dir" --out "$out" --seed 1 --resume "$@"
    fi
}

zoo default fashion-mnist pca:128 "--way 5 --tasks 2000" "2000 five-way heads on PCA-128"
generator default "$VAR/default.safetensors"
[ "$WHICH" = default ] && exit 0

if [ ! -f "$VAR/glyphs.safetensors" ]; then
    if [ ! -f "$VAR/backbone.safetensors" ]; then
        echo "== training the Conv-4 backbone on background data (about 5 minutes)"
        "$B/d2nwg" backbone train --steps 1200 --out "$VAR/backbone.safetensors" --resume
    fi
    bb="$(cd "$VAR" && pwd)/backbone.safetensors"
    zoo glyphs fashion-mnist+glyphs:train "cnn:$bb" "--way 20 --min-way 2 --tasks 4000" \
        "4000 heads of 2..20 classes of Fashion-MNIST and 91 glyph background scripts"
    generator glyphs "$VAR/glyphs.trained.safetensors" --per-class --den-hidden 128 \
        --token-latent 64 --query-loss 0.3
    "$B/d2nwg" defaults --generator "$VAR/glyphs.trained.safetensors" \
        --out "$VAR/glyphs.safetensors" --refine-rule fixed --refine-c 10 \
        --one-shot-agreement 0.7 --one-shot-fallback logreg
    rm -f "$VAR/glyphs.trained.safetensors"
fi
