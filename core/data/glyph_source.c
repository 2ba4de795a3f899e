/* glyph_source.c - the glyphs data source: the split of the script table
 * into background (train + validation) and held-out scripts, the parsing of
 * a selection, and the assembly of the chosen scripts' cached sets into a
 * train/test data source with a script and code point per class. */
#include "glyph_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Never in any zoo, feature map, VAE, encoder or denoiser training, never
 * used to choose a default: the test of weights for unseen classes. */
static const char *const glyph_heldout[] = {
    "Armenian", "Cherokee", "Ethiopic",  "Georgian", "Glagolitic", "Gujarati", "Gurmukhi",
    "Kannada",  "Malayalam", "Mongolian", "Ogham",   "Oriya",      "Runic",    "Sinhala",
    "Syriac",   "Tamil",    "Telugu",    "Thaana",   "Tifinagh",   "Vai"};
#define GLYPH_HELDOUT_COUNT ((int)(sizeof glyph_heldout / sizeof glyph_heldout[0]))

void data_dir_default(char *out, size_t cap)
{
    const char *d = getenv("D2NWG_DATA_DIR");
    snprintf(out, cap, "%s", d && *d ? d : "var/data");
}

void glyph_options_default(glyph_options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = GLYPH_DEFAULT_SEED;
    o->samples = GLYPH_DEFAULT_SAMPLES;
    data_dir_default(o->cache_dir, sizeof o->cache_dir);
    snprintf(o->font_dir, sizeof o->font_dir, "%s", GLYPH_FONT_DIR);
}

int glyph_table_size(void)
{
    return glyph_script_count;
}

const char *glyph_table_name(int i)
{
    return i >= 0 && i < glyph_script_count ? glyph_scripts[i].name : NULL;
}

const glyph_script *glyph_script_find(const char *name)
{
    for (int i = 0; name && i < glyph_script_count; i++)
        if (strcasecmp(glyph_scripts[i].name, name) == 0)
            return &glyph_scripts[i];
    return NULL;
}

int glyph_script_is_known(const char *name)
{
    return glyph_script_find(name) != NULL;
}

int glyph_script_is_heldout(const char *name)
{
    for (int i = 0; name && i < GLYPH_HELDOUT_COUNT; i++)
        if (strcasecmp(glyph_heldout[i], name) == 0)
            return 1;
    return 0;
}

/* 1 when table entry i belongs to split. Validation: every fourth background
 * script in table order, from the second (a rule fixed before any result). */
static int in_split(int i, glyph_split split)
{
    if (glyph_script_is_heldout(glyph_scripts[i].name))
        return split == GLYPH_SPLIT_HELDOUT;
    int background = 0;
    for (int k = 0; k < i; k++)
        background += !glyph_script_is_heldout(glyph_scripts[k].name);
    int validation = background % 4 == 1;
    return split == GLYPH_SPLIT_BACKGROUND || (split == GLYPH_SPLIT_VALIDATION && validation) ||
           (split == GLYPH_SPLIT_TRAIN && !validation);
}

int glyph_split_scripts(glyph_split split, const char **names, int cap)
{
    int n = 0;
    for (int i = 0; i < glyph_script_count; i++)
        if (in_split(i, split)) {
            if (names && n < cap)
                names[n] = glyph_scripts[i].name;
            n++;
        }
    return n;
}

/* The selection as table entries, in table order (chosen[i] = 1). */
static int parse_selection(const char *sel, char *chosen, d2_error *err)
{
    static const struct {
        const char *word;
        glyph_split split;
    } splits[] = {{"background", GLYPH_SPLIT_BACKGROUND},
                  {"train", GLYPH_SPLIT_TRAIN},
                  {"validation", GLYPH_SPLIT_VALIDATION},
                  {"heldout", GLYPH_SPLIT_HELDOUT}};
    memset(chosen, 0, (size_t)glyph_script_count);
    for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++)
        if (strcmp(sel, splits[k].word) == 0) {
            for (int i = 0; i < glyph_script_count; i++)
                chosen[i] = (char)in_split(i, splits[k].split);
            return 0;
        }
    const char *p = sel;
    while (1) {
        size_t len = strcspn(p, ",");
        char name[64];
        if (len == 0 || len >= sizeof name)
            return d2_fail(err, D2_EINVAL,
                           "glyphs: expected background, train, validation, heldout or "
                           "SCRIPT[,SCRIPT...], got \"%.100s\"",
                           sel);
        memcpy(name, p, len);
        name[len] = '\0';
        const glyph_script *s = glyph_script_find(name);
        if (!s)
            return d2_fail(err, D2_EINVAL,
                           "glyphs: unknown script \"%s\" (%d scripts, e.g. Latin, Greek, "
                           "Devanagari; names as in the Noto fonts, CanadianAboriginal)",
                           name, glyph_script_count);
        if (chosen[s - glyph_scripts])
            return d2_fail(err, D2_EINVAL, "glyphs: script %s named twice", s->name);
        chosen[s - glyph_scripts] = 1;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* Append set g's rows to the train/test datasets at class offset c0:
 * samples 0..k-1 of each class go to train, the rest to test. */
static void append_set(const glyph_set *g, int c0, int k, dataset *train, dataset *test)
{
    for (int c = 0; c < g->nclasses; c++)
        for (int j = 0; j < g->samples; j++) {
            dataset *d = j < k ? train : test;
            const uint8_t *img = g->images + ((size_t)c * g->samples + j) * GLYPH_PIXELS;
            float *row = d->x + (size_t)d->n * GLYPH_PIXELS;
            for (int p = 0; p < GLYPH_PIXELS; p++)
                row[p] = img[p] / 255.0f;
            d->y[d->n++] = c0 + c;
        }
}

/* Load every chosen script's set (cached or drawn). */
static int load_sets(const char *chosen, const glyph_options *o, glyph_set *sets, int *classes,
                     d2_error *err)
{
    double t0 = d2_now();
    int drawn = 0, drawn_classes = 0, rc = 0;
    *classes = 0;
    for (int i = 0; i < glyph_script_count && !rc; i++) {
        if (!chosen[i])
            continue;
        int from_cache;
        rc = glyph_set_load(&sets[i], &glyph_scripts[i], o, &from_cache, err);
        if (rc)
            break;
        *classes += sets[i].nclasses;
        if (!from_cache) {
            drawn++;
            drawn_classes += sets[i].nclasses;
        }
    }
    if (!rc && drawn)
        fprintf(stderr, "glyphs: drew %d script%s (%d classes x %d samples) in %.1f s, cached "
                "under %s/glyphs\n", drawn, drawn == 1 ? "" : "s", drawn_classes, o->samples,
                d2_now() - t0, o->cache_dir);
    return rc;
}

static int assemble(data_source *s, const char *chosen, const glyph_set *sets, int classes,
                    int samples, d2_error *err)
{
    int k = (int)(0.8 * samples + 0.5);
    k = k < 1 ? 1 : (k > samples - 1 ? samples - 1 : k);
    int rc = dataset_alloc(&s->train, classes * k, GLYPH_PIXELS, err);
    if (!rc)
        rc = dataset_alloc(&s->test, classes * (samples - k), GLYPH_PIXELS, err);
    if (!rc && !(s->class_info = calloc((size_t)classes, sizeof *s->class_info)))
        rc = d2_fail(err, D2_ENOMEM, "out of memory for %d glyph classes", classes);
    if (rc)
        return rc;
    s->train.n = s->test.n = 0;
    int c0 = 0;
    for (int i = 0; i < glyph_script_count; i++) {
        if (!chosen[i])
            continue;
        append_set(&sets[i], c0, k, &s->train, &s->test);
        for (int c = 0; c < sets[i].nclasses; c++) {
            s->class_info[c0 + c].script = glyph_scripts[i].name;
            s->class_info[c0 + c].codepoint = sets[i].codepoints[c];
        }
        c0 += sets[i].nclasses;
    }
    rc = dataset_validate(&s->train, err);
    if (!rc)
        rc = dataset_validate(&s->test, err);
    return rc;
}

int glyph_source_load(data_source *s, const char *selection, const glyph_options *o,
                      d2_error *err)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "glyphs:%s", selection ? selection : "");
    if (!selection || !*selection)
        return d2_fail(err, D2_EINVAL, "glyphs: empty selection (expected background, train, "
                       "validation, heldout or SCRIPT[,SCRIPT...])");
    if (o->samples < 2 || o->samples > 10000)
        return d2_fail(err, D2_ERANGE, "glyphs: %d samples per class (2 to 10000)", o->samples);
    char *chosen = calloc((size_t)glyph_script_count, 1);
    glyph_set *sets = calloc((size_t)glyph_script_count, sizeof *sets);
    int rc = chosen && sets ? 0 : d2_fail(err, D2_ENOMEM, "out of memory");
    int classes = 0;
    if (!rc)
        rc = parse_selection(selection, chosen, err);
    if (!rc)
        rc = load_sets(chosen, o, sets, &classes, err);
    if (!rc)
        rc = assemble(s, chosen, sets, classes, o->samples, err);
    for (int i = 0; sets && i < glyph_script_count; i++)
        glyph_set_free(&sets[i]);
    free(sets);
    free(chosen);
    if (rc)
        data_source_free(s);
    return rc;
}
