/* glyph_render.c - one character of one script drawn with FreeType into 28x28
 * gray levels: the outline is loaded in font units, scaled, rotated, sheared,
 * warped, made bolder or thinner, centred by its bounding box, rasterised
 * with FreeType's anti-aliasing and blurred. */
#include "glyph_internal.h"

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_OUTLINE_H
#include FT_BBOX_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plain drawing: an em of GLYPH_EM_PX pixels, shrunk when the glyph's
 * larger side would exceed GLYPH_BOX_PX (tall stacks, wide syllables). */
#define GLYPH_EM_PX 26.0
#define GLYPH_BOX_PX 20.0
/* The most a faint drawing is brightened. */
#define GLYPH_MAX_GAIN 3.0f

struct glyph_renderer {
    FT_Library lib;
    FT_Face faces[GLYPH_MAX_FONTS];
    int nfaces;
};

void glyph_renderer_close(glyph_renderer *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nfaces; i++)
        FT_Done_Face(r->faces[i]);
    if (r->lib)
        FT_Done_FreeType(r->lib);
    free(r);
}

int glyph_renderer_open(glyph_renderer **out, const glyph_script *s, const char *font_dir,
                        d2_error *err)
{
    *out = NULL;
    glyph_renderer *r = calloc(1, sizeof *r);
    if (!r)
        return d2_fail(err, D2_ENOMEM, "out of memory opening the fonts of %s", s->name);
    if (FT_Init_FreeType(&r->lib)) {
        free(r);
        return d2_fail(err, D2_EIO, "FreeType failed to start");
    }
    for (int i = 0; i < s->nfonts; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", font_dir, s->fonts[i]);
        FT_Face f;
        if (FT_New_Face(r->lib, path, 0, &f)) {
            glyph_renderer_close(r);
            return d2_fail(err, D2_ENOTFOUND,
                           "glyphs: cannot open font %s of script %s (Debian package "
                           "fonts-noto-core)",
                           path, s->name);
        }
        r->faces[r->nfaces++] = f;
        if (FT_Select_Charmap(f, FT_ENCODING_UNICODE) || !FT_IS_SCALABLE(f)) {
            glyph_renderer_close(r);
            return d2_fail(err, D2_EFORMAT,
                           "glyphs: font %s has no Unicode character map or no outlines", path);
        }
    }
    *out = r;
    return 0;
}

int glyph_renderer_has(const glyph_renderer *r, uint32_t cp)
{
    for (int i = 0; i < r->nfaces; i++)
        if (FT_Get_Char_Index(r->faces[i], cp) == 0)
            return 0;
    return 1;
}

static FT_Fixed fix16(double v)
{
    return (FT_Fixed)lround(v * 65536.0);
}

/* Scale (font units -> 26.6 pixels), rotate, shear, then the smooth warp. */
static void outline_shape(FT_Outline *o, const glyph_jitter *j, double px_per_unit)
{
    double s = px_per_unit * 64.0 * j->scale, c = cos(j->rotate), n = sin(j->rotate);
    FT_Matrix m = {fix16(c * s), fix16((c * j->shear - n) * s), fix16(n * s),
                   fix16((n * j->shear + c) * s)};
    FT_Outline_Transform(o, &m);
    for (int i = 0; i < o->n_points; i++) {
        double x = o->points[i].x / 64.0, y = o->points[i].y / 64.0;
        double wx = j->warp[0][0] * sin(j->warp[0][1] * (x * cos(j->warp[0][3]) +
                                                          y * sin(j->warp[0][3])) + j->warp[0][2]);
        double wy = j->warp[1][0] * sin(j->warp[1][1] * (x * cos(j->warp[1][3]) +
                                                          y * sin(j->warp[1][3])) + j->warp[1][2]);
        o->points[i].x += (FT_Pos)lround(wx * 64.0);
        o->points[i].y += (FT_Pos)lround(wy * 64.0);
    }
}

/* Separable Gaussian blur of a GLYPH_SIDE square, in place. */
static void blur_square(float *img, float sigma)
{
    if (sigma < 0.05f)
        return;
    enum { R = 3 };
    float k[2 * R + 1], sum = 0;
    for (int i = -R; i <= R; i++)
        sum += k[i + R] = expf(-(float)(i * i) / (2 * sigma * sigma));
    for (int i = 0; i < 2 * R + 1; i++)
        k[i] /= sum;
    float tmp[GLYPH_PIXELS];
    for (int pass = 0; pass < 2; pass++) {
        const float *src = pass ? tmp : img;
        float *dst = pass ? img : tmp;
        for (int y = 0; y < GLYPH_SIDE; y++)
            for (int x = 0; x < GLYPH_SIDE; x++) {
                float acc = 0;
                for (int t = -R; t <= R; t++) {
                    int xx = pass ? x : x + t, yy = pass ? y + t : y;
                    if (xx >= 0 && xx < GLYPH_SIDE && yy >= 0 && yy < GLYPH_SIDE)
                        acc += k[t + R] * src[yy * GLYPH_SIDE + xx];
                }
                dst[y * GLYPH_SIDE + x] = acc;
            }
    }
}

int glyph_render(glyph_renderer *r, uint32_t cp, const glyph_jitter *j, uint8_t *out,
                 d2_error *err)
{
    memset(out, 0, GLYPH_PIXELS);
    if (j->font < 0 || j->font >= r->nfaces)
        return d2_fail(err, D2_EINVAL, "glyphs: font %d of %d", j->font, r->nfaces);
    FT_Face f = r->faces[j->font];
    FT_UInt gi = FT_Get_Char_Index(f, cp);
    if (!gi)
        return d2_fail(err, D2_ENOTFOUND, "glyphs: %s has no U+%04X", f->family_name, cp);
    if (FT_Load_Glyph(f, gi, FT_LOAD_NO_SCALE | FT_LOAD_NO_BITMAP | FT_LOAD_NO_HINTING))
        return d2_fail(err, D2_EFORMAT, "glyphs: %s cannot load U+%04X", f->family_name, cp);
    FT_Outline *o = &f->glyph->outline;
    if (f->glyph->format != FT_GLYPH_FORMAT_OUTLINE || o->n_points == 0)
        return 0; /* nothing to draw: an empty image */
    FT_BBox b;
    if (FT_Outline_Get_BBox(o, &b))
        return d2_fail(err, D2_EFORMAT, "glyphs: %s: bad outline of U+%04X", f->family_name, cp);
    double big = (double)(b.xMax - b.xMin > b.yMax - b.yMin ? b.xMax - b.xMin : b.yMax - b.yMin);
    double ppu = GLYPH_EM_PX / f->units_per_EM;
    if (big > 0 && big * ppu > GLYPH_BOX_PX)
        ppu = GLYPH_BOX_PX / big;
    outline_shape(o, j, ppu);
    if ((fabsf(j->stroke) > 0.01f && FT_Outline_Embolden(o, (FT_Pos)lroundf(j->stroke * 64.0f))) ||
        FT_Outline_Get_BBox(o, &b))
        return d2_fail(err, D2_EFORMAT, "glyphs: %s: cannot reshape U+%04X", f->family_name, cp);
    FT_Pos cx = (b.xMin + b.xMax) / 2, cy = (b.yMin + b.yMax) / 2;
    FT_Outline_Translate(o, (FT_Pos)lroundf((GLYPH_SIDE / 2.0f + j->dx) * 64.0f) - cx,
                         (FT_Pos)lroundf((GLYPH_SIDE / 2.0f - j->dy) * 64.0f) - cy);
    FT_Bitmap bm;
    memset(&bm, 0, sizeof bm);
    bm.rows = bm.width = GLYPH_SIDE;
    bm.pitch = GLYPH_SIDE;
    bm.buffer = out;
    bm.num_grays = 256;
    bm.pixel_mode = FT_PIXEL_MODE_GRAY;
    if (FT_Outline_Get_Bitmap(r->lib, o, &bm))
        return d2_fail(err, D2_EFORMAT, "glyphs: %s cannot rasterise U+%04X", f->family_name,
                       cp);
    /* Blur, then stretch so the brightest pixel is white (as in MNIST):
     * thin strokes and blur must not fade a character away. */
    float img[GLYPH_PIXELS], top = 0;
    for (int i = 0; i < GLYPH_PIXELS; i++)
        img[i] = out[i];
    blur_square(img, j->blur);
    for (int i = 0; i < GLYPH_PIXELS; i++)
        top = img[i] > top ? img[i] : top;
    float gain = top > 0 ? 255.0f / top : 1.0f;
    gain = gain > GLYPH_MAX_GAIN ? GLYPH_MAX_GAIN : gain;
    for (int i = 0; i < GLYPH_PIXELS; i++) {
        float v = img[i] * gain;
        out[i] = (uint8_t)(v >= 255.0f ? 255 : lroundf(v));
    }
    return 0;
}
