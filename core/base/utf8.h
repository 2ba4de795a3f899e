/* utf8.h - strict UTF-8 validation (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
#ifndef D2_UTF8_H
#define D2_UTF8_H

#include <stddef.h>

/* 1 when s[0..len) is valid UTF-8; else 0 and *bad_offset (may be NULL) is
 * the offset of the first byte of the offending sequence. */
int d2_utf8_valid(const unsigned char *s, size_t len, size_t *bad_offset);

#endif
