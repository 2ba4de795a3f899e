/* data_gzio.c - whole-file reads through zlib (gzip or plain files). */
#include "data_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *data_gz_error(struct gzFile_s *g, const char *path)
{
    int code;
    const char *m = gzerror(g, &code);
    if (code == Z_ERRNO)
        return strerror(errno);
    size_t n = strlen(path);
    if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    return m;
}

int data_read_all(const char *path, unsigned char **out, size_t *len, size_t max_len,
                  d2_error *err)
{
    *out = NULL;
    *len = 0;
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return d2_fail(err, errno == ENOENT ? D2_ENOTFOUND : D2_EIO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(g, 1 << 17);
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap + 1);
    if (!buf) {
        gzclose_r(g);
        return d2_fail(err, D2_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_len) {
                free(buf);
                gzclose_r(g);
                return d2_fail(err, D2_ERANGE, "%s: more than %zu bytes of data", path, max_len);
            }
            size_t ncap = cap * 2 > max_len ? max_len : cap * 2;
            unsigned char *p = realloc(buf, ncap + 1);
            if (!p) {
                free(buf);
                gzclose_r(g);
                return d2_fail(err, D2_ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
            }
            buf = p;
            cap = ncap;
        }
        size_t want = cap - n > (1u << 30) ? (1u << 30) : cap - n;
        int r = gzread(g, buf + n, (unsigned)want);
        if (r < 0) {
            d2_fail(err, D2_EFORMAT, "%s: gzip error after %zu bytes: %s", path, n,
                    data_gz_error(g, path));
            free(buf);
            gzclose_r(g);
            return D2_EFORMAT;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    /* gzread returns 0 at the end and also when a compressed stream is cut
     * short: tell those apart. */
    int code;
    gzerror(g, &code);
    if (code != Z_OK && code != Z_STREAM_END) {
        d2_fail(err, D2_EFORMAT, "%s: truncated or corrupt gzip data after %zu bytes: %s", path,
                n, data_gz_error(g, path));
        free(buf);
        gzclose_r(g);
        return D2_EFORMAT;
    }
    int rc = gzclose_r(g);
    if (rc != Z_OK) {
        free(buf);
        return d2_fail(err, D2_EFORMAT, "%s: corrupt gzip data (%s)", path,
                       rc == Z_BUF_ERROR ? "unexpected end of file" : "close failed");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
