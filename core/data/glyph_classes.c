/* glyph_classes.c - which letters of a script become classes, the jitter of
 * each sample, and the rendering of a script's whole set.
 *
 * Classes: the letters of the table's ranges that every font of the script
 * has; at most 3 * GLYPH_MAX_CLASSES candidates, evenly spaced, are drawn
 * plainly; empty drawings (in any font) and near-duplicates of an earlier
 * class's drawing are dropped; of the rest, GLYPH_MAX_CLASSES evenly spaced
 * ones are kept. Everything follows from the table and the fonts, never from
 * the seed. */
#include "glyph_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* A drawing with fewer lit pixels than this is empty. */
#define GLYPH_MIN_INK 12
/* Mean absolute difference (0..255) under which two plain drawings are one. */
#define GLYPH_DUP_MAD 4.0

void glyph_jitter_plain(glyph_jitter *j, int font)
{
    memset(j, 0, sizeof *j);
    j->font = font;
    j->scale = 1.0f;
}

static float uniform_in(rng *r, float lo, float hi)
{
    return lo + (hi - lo) * rng_uniform(r);
}

void glyph_jitter_draw(glyph_jitter *j, uint64_t seed, const glyph_script *s, uint32_t cp,
                       int index)
{
    rng r;
    rng_init(&r, rng_derive(seed, s->name, (uint64_t)cp << 20 | (uint64_t)index), 0);
    glyph_jitter_plain(j, (int)rng_below(&r, (uint32_t)s->nfonts));
    const float pi = 3.14159265f;
    j->scale = uniform_in(&r, 0.82f, 1.08f);
    float rot = 0.10f * rng_normal(&r);
    j->rotate = rot > 0.25f ? 0.25f : (rot < -0.25f ? -0.25f : rot);
    j->shear = uniform_in(&r, -0.22f, 0.22f);
    j->dx = uniform_in(&r, -1.5f, 1.5f);
    j->dy = uniform_in(&r, -1.5f, 1.5f);
    j->stroke = uniform_in(&r, -0.25f, 1.0f);
    for (int a = 0; a < 2; a++) {
        j->warp[a][0] = uniform_in(&r, 0.0f, 0.8f);       /* amplitude, pixels */
        j->warp[a][1] = uniform_in(&r, 0.15f, 0.40f);     /* radians per pixel */
        j->warp[a][2] = uniform_in(&r, 0.0f, 2 * pi);     /* phase */
        j->warp[a][3] = uniform_in(&r, 0.0f, 2 * pi);     /* direction */
    }
    j->blur = uniform_in(&r, 0.0f, 0.65f);
}

void glyph_set_free(glyph_set *g)
{
    if (!g)
        return;
    free(g->codepoints);
    free(g->images);
    memset(g, 0, sizeof *g);
}

static int ink(const uint8_t *img)
{
    int lit = 0;
    for (int i = 0; i < GLYPH_PIXELS; i++)
        lit += img[i] >= 64;
    return lit;
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b)
{
    long acc = 0;
    for (int i = 0; i < GLYPH_PIXELS; i++)
        acc += abs((int)a[i] - (int)b[i]);
    return (double)acc / GLYPH_PIXELS;
}

/* The code points of the script's letters that every font has, at most cap of
 * them, evenly spaced. */
static int candidates(const glyph_script *s, glyph_renderer *r, int cap, uint32_t **out,
                      int *n, d2_error *err)
{
    int total = 0;
    for (int i = 0; i < s->nranges; i++)
        total += (int)(s->ranges[i].last - s->ranges[i].first + 1);
    uint32_t *all = malloc((size_t)(total ? total : 1) * sizeof *all);
    if (!all)
        return d2_fail(err, D2_ENOMEM, "out of memory listing the letters of %s", s->name);
    int m = 0;
    for (int i = 0; i < s->nranges; i++)
        for (uint32_t cp = s->ranges[i].first; cp <= s->ranges[i].last; cp++)
            if (glyph_renderer_has(r, cp))
                all[m++] = cp;
    if (m > cap) {
        for (int i = 0; i < cap; i++)
            all[i] = all[(int)((long)i * m / cap)];
        m = cap;
    }
    *out = all;
    *n = m;
    return 0;
}

/* Keep the candidates whose plain drawings are not empty in any font and not a
 * near-duplicate of an earlier kept one (in the first font). */
static int choose_classes(const glyph_script *s, glyph_renderer *r, uint32_t *cps, int *n,
                          d2_error *err)
{
    uint8_t *plain = malloc((size_t)(*n ? *n : 1) * GLYPH_PIXELS);
    if (!plain)
        return d2_fail(err, D2_ENOMEM, "out of memory drawing the letters of %s", s->name);
    int kept = 0, rc = 0;
    for (int i = 0; i < *n && !rc; i++) {
        uint8_t *img = plain + (size_t)kept * GLYPH_PIXELS, other[GLYPH_PIXELS];
        glyph_jitter j;
        int ok = 1;
        for (int f = s->nfonts - 1; f >= 0 && ok && !rc; f--) {
            glyph_jitter_plain(&j, f);
            rc = glyph_render(r, cps[i], &j, f ? other : img, err);
            ok = ink(f ? other : img) >= GLYPH_MIN_INK;
        }
        for (int k = 0; k < kept && ok; k++)
            ok = mean_abs_diff(plain + (size_t)k * GLYPH_PIXELS, img) >= GLYPH_DUP_MAD;
        if (ok && !rc)
            cps[kept++] = cps[i];
    }
    free(plain);
    if (kept > GLYPH_MAX_CLASSES) {
        for (int i = 0; i < GLYPH_MAX_CLASSES; i++)
            cps[i] = cps[(int)((long)i * kept / GLYPH_MAX_CLASSES)];
        kept = GLYPH_MAX_CLASSES;
    }
    *n = kept;
    return rc;
}

int glyph_set_render(glyph_set *g, const glyph_script *s, const char *font_dir, uint64_t seed,
                     int samples, d2_error *err)
{
    memset(g, 0, sizeof *g);
    glyph_renderer *r;
    int rc = glyph_renderer_open(&r, s, font_dir, err);
    if (rc)
        return rc;
    int n = 0;
    rc = candidates(s, r, 3 * GLYPH_MAX_CLASSES, &g->codepoints, &n, err);
    if (!rc)
        rc = choose_classes(s, r, g->codepoints, &n, err);
    if (!rc && n < 2)
        rc = d2_fail(err, D2_EFORMAT, "glyphs: script %s has %d drawable letter%s in its fonts",
                     s->name, n, n == 1 ? "" : "s");
    if (!rc) {
        g->nclasses = n;
        g->samples = samples;
        g->images = malloc((size_t)n * (size_t)samples * GLYPH_PIXELS);
        if (!g->images)
            rc = d2_fail(err, D2_ENOMEM, "out of memory rendering %s", s->name);
    }
    for (int c = 0; c < g->nclasses && !rc; c++)
        for (int k = 0; k < samples && !rc; k++) {
            glyph_jitter j;
            glyph_jitter_draw(&j, seed, s, g->codepoints[c], k);
            rc = glyph_render(r, g->codepoints[c], &j,
                              g->images + ((size_t)c * samples + k) * GLYPH_PIXELS, err);
        }
    glyph_renderer_close(r);
    if (rc)
        glyph_set_free(g);
    return rc;
}
