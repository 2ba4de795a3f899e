#!/bin/sh
# make bench: weights for data the zoo never saw (README "Results", first table).
# Builds the generators of `make generators` into var/ when missing (about
# 40 minutes on 2 cores), then evaluates, 200 tasks per cell, 1 and 5 shots:
#   - the glyphs generator (any-way heads on the backbone's features) on the 20
#     held-out glyph scripts (glyphs:heldout), 5-way and 20-way;
#   - it on digits (never seen), 5-way and 10-way;
#   - the default generator (5-way, PCA-128) on the held-out scripts and digits,
#     for the PCA-space row of the comparison;
#   - the glyphs generator on the background validation scripts (the split that
#     settings are chosen on), 5-way, for comparison;
#   - the glyphs generator on its zoo's held-out Fashion-MNIST combinations
#     (in distribution).
# Every figure is a mean with its 95% interval over tasks; the paired
# differences against both baselines are printed with each table.
set -e
B=${1:-build}
TASKS=${BENCH_TASKS:-200}
D2NWG_VAR=${D2NWG_VAR:-var} sh deploy/generators.sh "$B" all >/dev/null
V=${D2NWG_VAR:-var}
ev() { # generator way source
    echo "== generator $1, $2-way tasks of $3"
    "$B/d2nwg" eval --generator "$V/$1.safetensors" --source "$3" --way "$2" \
        --tasks "$TASKS" --shots 1,5 --no-finetune 2>/dev/null
}
ev glyphs 5 glyphs:heldout
ev glyphs 20 glyphs:heldout
ev glyphs 5 digits-28
ev glyphs 10 digits-28
ev default 5 glyphs:heldout
ev default 5 digits-28
ev glyphs 5 glyphs:validation
echo "== generator glyphs, held-out Fashion-MNIST combinations of its zoo (in distribution)"
"$B/d2nwg" eval --generator "$V/glyphs.safetensors" --zoo "$V/zoo-glyphs" --tasks "$TASKS" \
    --shots 1,5 2>/dev/null
