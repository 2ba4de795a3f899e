/* strbuf.h - a growable text buffer for building documents (Prometheus text,
 * SVG, CSV). An allocation failure is sticky: later appends do nothing and
 * the caller checks `oom` once at the end. */
#ifndef D2_STRBUF_H
#define D2_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p;    /* NUL-terminated when len > 0 */
    size_t len, cap;
    int oom;
} strbuf;

void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(strbuf *b);

#endif
