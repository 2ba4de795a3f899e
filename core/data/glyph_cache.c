/* glyph_cache.c - each script's rendered set, kept as IDX files so that it is
 * drawn once:
 *   CACHE/glyphs/r<version>-seed<seed>-n<samples>/<Script>-<fonts>-images-idx3-ubyte
 *       [n, 28, 28] unsigned bytes, class-major
 *   ...-labels-idx2-ubyte   [n, 4]: each sample's code point, big-endian
 *   ...-sha256              the SHA-256 of both files, written last
 * <fonts> is a hash of the script's font files (name, size, mtime) and of its
 * table ranges, so a font upgrade or a new table makes a new key. Every file
 * is written atomically; a set that is incomplete, inconsistent or fails its
 * checksum is reported on stderr and drawn again. */
#include "glyph_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "sha256.h"

static int mkdir_parents(const char *path, d2_error *err)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        struct stat sb;
        if (mkdir(buf, 0755) != 0 && !(errno == EEXIST && stat(buf, &sb) == 0 &&
                                       S_ISDIR(sb.st_mode)))
            return d2_fail(err, D2_EIO, "glyphs: cannot create directory %s: %s", buf,
                           strerror(errno));
        if (c == '\0')
            return 0;
        *p = c;
    }
}

/* 8 hex digits naming the script's fonts and ranges. */
static void font_key(const glyph_script *s, const char *font_dir, char out[9])
{
    sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < s->nfonts; i++) {
        char path[2048], line[2300];
        snprintf(path, sizeof path, "%s/%s", font_dir, s->fonts[i]);
        struct stat sb;
        if (stat(path, &sb) != 0)
            memset(&sb, 0, sizeof sb);
        int n = snprintf(line, sizeof line, "%s %lld %lld\n", s->fonts[i], (long long)sb.st_size,
                         (long long)sb.st_mtime);
        sha256_update(&c, line, (size_t)n);
    }
    for (int i = 0; i < s->nranges; i++) {
        char r[32];
        int n = snprintf(r, sizeof r, "%X-%X,", s->ranges[i].first, s->ranges[i].last);
        sha256_update(&c, r, (size_t)n);
    }
    unsigned char d[32];
    char hex[65];
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
    memcpy(out, hex, 8);
    out[8] = '\0';
}

int glyph_cache_paths(const glyph_script *s, const glyph_options *o, char images[1024],
                      char labels[1024], char sum[1024], d2_error *err)
{
    char key[9];
    font_key(s, o->font_dir, key);
    char prefix[1000];
    int n = snprintf(prefix, sizeof prefix, "%s/glyphs/r%d-seed%llu-n%d/%s-%s", o->cache_dir,
                     GLYPH_RENDER_VERSION, (unsigned long long)o->seed, o->samples, s->name, key);
    if (n < 0 || (size_t)n >= sizeof prefix)
        return d2_fail(err, D2_EINVAL, "glyphs: cache folder name too long: %.64s...",
                       o->cache_dir);
    snprintf(images, 1024, "%s-images-idx3-ubyte", prefix);
    snprintf(labels, 1024, "%s-labels-idx2-ubyte", prefix);
    snprintf(sum, 1024, "%s-sha256", prefix);
    return 0;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int cache_write(const glyph_set *g, const char *images, const char *labels,
                       const char *sum, d2_error *err)
{
    size_t n = (size_t)g->nclasses * (size_t)g->samples;
    size_t ilen = 16 + n * GLYPH_PIXELS, llen = 12 + 4 * n;
    unsigned char *ib = malloc(ilen), *lb = malloc(llen);
    int rc = 0;
    if (!ib || !lb)
        rc = d2_fail(err, D2_ENOMEM, "out of memory writing %s", images);
    if (!rc) {
        put_be32(ib, 0x0803);
        put_be32(ib + 4, (uint32_t)n);
        put_be32(ib + 8, GLYPH_SIDE);
        put_be32(ib + 12, GLYPH_SIDE);
        memcpy(ib + 16, g->images, n * GLYPH_PIXELS);
        put_be32(lb, 0x0802);
        put_be32(lb + 4, (uint32_t)n);
        put_be32(lb + 8, 4);
        for (size_t i = 0; i < n; i++)
            put_be32(lb + 12 + 4 * i, g->codepoints[i / (size_t)g->samples]);
        char hi[65], hl[65], line[140];
        sha256_hex(ib, ilen, hi);
        sha256_hex(lb, llen, hl);
        int m = snprintf(line, sizeof line, "%s %s\n", hi, hl);
        rc = d2_write_file_atomic(images, ib, ilen, err);
        if (!rc)
            rc = d2_write_file_atomic(labels, lb, llen, err);
        if (!rc)
            rc = d2_write_file_atomic(sum, line, (size_t)m, err);
    }
    free(ib);
    free(lb);
    return rc;
}

static int in_ranges(const glyph_script *s, uint32_t cp)
{
    for (int i = 0; i < s->nranges; i++)
        if (cp >= s->ranges[i].first && cp <= s->ranges[i].last)
            return 1;
    return 0;
}

/* Parse the labels into g (codepoints); why names the first problem. */
static int cache_parse_labels(glyph_set *g, const glyph_script *s, const unsigned char *lb,
                              size_t llen, int samples, char *why, size_t wcap)
{
    uint32_t n = llen >= 12 ? get_be32(lb + 4) : 0;
    if (llen < 12 || get_be32(lb) != 0x0802 || get_be32(lb + 8) != 4 ||
        llen != 12 + 4 * (size_t)n) {
        snprintf(why, wcap, "the labels file's header does not match its %zu bytes", llen);
        return -1;
    }
    if (n == 0 || n % (uint32_t)samples != 0 || n / (uint32_t)samples > GLYPH_MAX_CLASSES) {
        snprintf(why, wcap, "%u labels are not whole classes of %d samples", n, samples);
        return -1;
    }
    g->nclasses = (int)(n / (uint32_t)samples);
    g->samples = samples;
    g->codepoints = malloc((size_t)g->nclasses * sizeof *g->codepoints);
    if (!g->codepoints) {
        snprintf(why, wcap, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cp = get_be32(lb + 12 + 4 * (size_t)i);
        int c = (int)(i / (uint32_t)samples);
        if (i % (uint32_t)samples == 0)
            g->codepoints[c] = cp;
        if (cp != g->codepoints[c] || !in_ranges(s, cp) ||
            (c > 0 && g->codepoints[c] <= g->codepoints[c - 1])) {
            snprintf(why, wcap, "label %u (U+%04X) is out of order or not a letter of %s", i, cp,
                     s->name);
            return -1;
        }
    }
    return 0;
}

/* 1: g filled from the cache; 0: no cache; -1: a bad cache (why says why). */
static int cache_read(glyph_set *g, const glyph_script *s, int samples, const char *images,
                      const char *labels, const char *sum, char *why, size_t wcap)
{
    struct stat sb;
    if (stat(images, &sb) != 0 && stat(labels, &sb) != 0 && stat(sum, &sb) != 0)
        return 0;
    unsigned char *ib = NULL, *lb = NULL, *sb_text = NULL;
    size_t ilen = 0, llen = 0, slen = 0;
    d2_error e;
    int rc = -1;
    if (d2_read_file(sum, &sb_text, &slen, 1024, &e) || d2_read_file(labels, &lb, &llen, 0, &e) ||
        d2_read_file(images, &ib, &ilen, 0, &e)) {
        snprintf(why, wcap, "%s", e.msg);
        goto out;
    }
    char hi[65], hl[65], line[140];
    sha256_hex(ib, ilen, hi);
    sha256_hex(lb, llen, hl);
    snprintf(line, sizeof line, "%s %s\n", hi, hl);
    if (slen != strlen(line) || memcmp(sb_text, line, slen) != 0) {
        snprintf(why, wcap, "the files do not match their checksums in %.400s", sum);
        goto out;
    }
    if (cache_parse_labels(g, s, lb, llen, samples, why, wcap))
        goto out;
    size_t n = (size_t)g->nclasses * (size_t)samples;
    if (ilen != 16 + n * GLYPH_PIXELS || get_be32(ib) != 0x0803 || get_be32(ib + 4) != n ||
        get_be32(ib + 8) != GLYPH_SIDE || get_be32(ib + 12) != GLYPH_SIDE) {
        snprintf(why, wcap, "the images file's header does not match %zu images of 28x28", n);
        goto out;
    }
    g->images = malloc(n * GLYPH_PIXELS);
    if (!g->images) {
        snprintf(why, wcap, "out of memory");
        goto out;
    }
    memcpy(g->images, ib + 16, n * GLYPH_PIXELS);
    rc = 1;
out:
    if (rc != 1)
        glyph_set_free(g);
    free(ib);
    free(lb);
    free(sb_text);
    return rc;
}

int glyph_set_load(glyph_set *g, const glyph_script *s, const glyph_options *o, int *from_cache,
                   d2_error *err)
{
    memset(g, 0, sizeof *g);
    *from_cache = 0;
    char images[1024], labels[1024], sum[1024], why[600] = "";
    int rc = glyph_cache_paths(s, o, images, labels, sum, err);
    if (rc)
        return rc;
    int got = cache_read(g, s, o->samples, images, labels, sum, why, sizeof why);
    if (got == 1) {
        *from_cache = 1;
        return 0;
    }
    if (got < 0)
        fprintf(stderr, "glyphs: the cache of %s cannot be trusted (%s); drawing it again\n",
                s->name, why);
    rc = glyph_set_render(g, s, o->font_dir, o->seed, o->samples, err);
    if (rc)
        return rc;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", images);
    *strrchr(dir, '/') = '\0';
    d2_error we = {0};
    if (mkdir_parents(dir, &we) || cache_write(g, images, labels, sum, &we))
        /* the drawing is good; only the next load pays again */
        fprintf(stderr, "glyphs: cannot cache %s: %s\n", s->name, we.msg);
    return 0;
}
