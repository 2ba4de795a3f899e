/* sha256.h - SHA-256 (FIPS 180-4) for content addressing: dataset
 * fingerprints, generator ids, checkpoint ids. */
#ifndef D2_SHA256_H
#define D2_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, unsigned char out[32]);
/* One-shot, lowercase hex (65 bytes with the NUL). */
void sha256_hex(const void *data, size_t len, char hex[65]);
void sha256_to_hex(const unsigned char digest[32], char hex[65]);

#endif
