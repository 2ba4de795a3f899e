/* glyph_internal.h - the glyphs source's parts, private to core/data: the
 * script table (glyph_table.c), the FreeType renderer (glyph_render.c), the
 * choice of each script's classes (glyph_classes.c) and the IDX cache
 * (glyph_cache.c). No FreeType type appears here: only the .c files that
 * draw see its headers. */
#ifndef D2_GLYPH_INTERNAL_H
#define D2_GLYPH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "data.h"

/* Bump whenever anything that changes the pixels or the classes changes
 * (jitter, metrics, class rules, the table): it is part of the cache key. */
#define GLYPH_RENDER_VERSION 1
#define GLYPH_FONT_DIR "/usr/share/fonts/truetype/noto"
#define GLYPH_MAX_FONTS 2
#define GLYPH_PIXELS (GLYPH_SIDE * GLYPH_SIDE)
/* Classes kept per script, evenly spaced over its letters (Omniglot's
 * alphabets hold 14 to 55 characters). */
#define GLYPH_MAX_CLASSES 24

typedef struct glyph_range {
    uint32_t first, last; /* inclusive */
} glyph_range;

typedef struct glyph_script {
    const char *name;                    /* "Armenian", "CanadianAboriginal" */
    const char *fonts[GLYPH_MAX_FONTS];  /* file names under GLYPH_FONT_DIR, Sans first */
    int nfonts;
    const glyph_range *ranges;           /* its letters (Lu, Ll, Lt, Lo) */
    int nranges;
} glyph_script;

extern const glyph_script glyph_scripts[];
extern const int glyph_script_count;

/* How one sample departs from the plain drawing of its character. */
typedef struct glyph_jitter {
    int font;           /* index into the script's fonts */
    float scale;        /* size factor */
    float rotate;       /* radians */
    float shear;        /* x += shear * y */
    float dx, dy;       /* pixels, after centring */
    float stroke;       /* pixels added to the stroke width (< 0 thins) */
    float warp[2][4];   /* smooth displacement: per axis amplitude, frequency, phase, direction */
    float blur;         /* Gaussian sigma in pixels (0: none) */
} glyph_jitter;

/* The plain drawing with font `font`: no jitter. */
void glyph_jitter_plain(glyph_jitter *j, int font);
/* Jitter of sample `index` of code point cp of a script, from seed alone. */
void glyph_jitter_draw(glyph_jitter *j, uint64_t seed, const glyph_script *s, uint32_t cp,
                       int index);

/* The fonts of one script, open. */
typedef struct glyph_renderer glyph_renderer;
int glyph_renderer_open(glyph_renderer **out, const glyph_script *s, const char *font_dir,
                        d2_error *err);
void glyph_renderer_close(glyph_renderer *r);
/* 1 when every font of the script maps cp to a glyph. */
int glyph_renderer_has(const glyph_renderer *r, uint32_t cp);
/* Draw cp into out[GLYPH_PIXELS] (row-major, 0 = black, 255 = white). */
int glyph_render(glyph_renderer *r, uint32_t cp, const glyph_jitter *j, uint8_t *out,
                 d2_error *err);

/* One script's classes and samples: images [nclasses * samples][GLYPH_PIXELS],
 * class-major (sample k of class c is row c * samples + k). */
typedef struct glyph_set {
    int nclasses, samples;
    uint32_t *codepoints; /* [nclasses], ascending */
    uint8_t *images;
} glyph_set;
void glyph_set_free(glyph_set *g);

/* Choose the script's classes and render `samples` of each. */
int glyph_set_render(glyph_set *g, const glyph_script *s, const char *font_dir, uint64_t seed,
                     int samples, d2_error *err);

/* The cache: the set of script s for (seed, samples) under cache_dir, or a
 * fresh rendering that is then written there. A cache file that cannot be
 * trusted is reported on stderr and replaced. *from_cache tells which. */
int glyph_set_load(glyph_set *g, const glyph_script *s, const glyph_options *o, int *from_cache,
                   d2_error *err);
/* The paths of script s's cache files (images, labels, checksum). */
int glyph_cache_paths(const glyph_script *s, const glyph_options *o, char images[1024],
                      char labels[1024], char sum[1024], d2_error *err);

const glyph_script *glyph_script_find(const char *name);

#endif
