#!/bin/sh
# make bench: weights for data the zoo never saw (README "Results", first table).
# Builds both generators of `make generators` into var/ when missing (about
# 10 minutes on 2 cores), then evaluates, 200 tasks per cell, 1 and 5 shots:
#   - both generators on the 20 held-out glyph scripts (glyphs:heldout), 5-way;
#   - both on digits (never seen), 5-way;
#   - the glyphs generator on the background validation scripts (the split that
#     settings are chosen on), for comparison;
#   - the glyphs generator on its zoo's held-out Fashion-MNIST combinations
#     (in distribution).
# Every figure is a mean with its 95% interval over tasks; the paired
# differences against both baselines are printed with each table.
set -e
B=${1:-build}
TASKS=${BENCH_TASKS:-200}
D2NWG_VAR=${D2NWG_VAR:-var} sh deploy/generators.sh "$B" all >/dev/null
V=${D2NWG_VAR:-var}
for gen in default glyphs; do
    for src in glyphs:heldout digits-28; do
        echo "== generator $gen, tasks of $src"
        "$B/d2nwg" eval --generator "$V/$gen.safetensors" --source "$src" --tasks "$TASKS" \
            --shots 1,5 --no-finetune 2>/dev/null
    done
done
echo "== generator glyphs, tasks of glyphs:validation (background; for choosing settings)"
"$B/d2nwg" eval --generator "$V/glyphs.safetensors" --source glyphs:validation \
    --tasks "$TASKS" --shots 1,5 --no-finetune 2>/dev/null
echo "== generator glyphs, held-out Fashion-MNIST combinations of its zoo (in distribution)"
"$B/d2nwg" eval --generator "$V/glyphs.safetensors" --zoo "$V/zoo-glyphs" --tasks "$TASKS" \
    --shots 1,5 2>/dev/null
