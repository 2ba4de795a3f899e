/* rng.c - Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011) and the seekable stream layout documented in rng.h. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* largest float below 1: the cap that keeps a uniform strictly inside (0, 1) */
#define RNG_ONE_MINUS 0x1.fffffep-1f
#define RNG_TWO_PI 6.28318530717958647692f

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* block j of seed's stream: words 4j .. 4j+3 */
static void rng_block(uint64_t seed, uint64_t j, uint32_t out[4])
{
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)j, (uint32_t)(j >> 32), 0u, 0u};
    philox4x32_10(ctr, key, out);
}

/* u = ((w >> 8) + 0.5) * 2^-24 rounded to float, capped below 1 (only w >> 8 = 2^24 - 1
 * would round to 1.0f). Exact in float: (w >> 8) + 0.5f is the correctly rounded sum. */
static inline float rng_word_to_uniform(uint32_t w)
{
    float u = ((float)(w >> 8) + 0.5f) * 0x1p-24f;
    return u < RNG_ONE_MINUS ? u : RNG_ONE_MINUS;
}

/* Box-Muller on the word pair (a, b): z0 = r cos(2 pi u_b), z1 = r sin(2 pi u_b) */
static inline void rng_box_muller(uint32_t a, uint32_t b, float *z0, float *z1)
{
    float ua = rng_word_to_uniform(a);
    float ub = rng_word_to_uniform(b);
    float r = sqrtf(-2.0f * logf(ua));
    float theta = RNG_TWO_PI * ub;
    *z0 = r * cosf(theta);
    *z1 = r * sinf(theta);
}

void rng_init(rng *r, uint64_t seed, uint64_t pos)
{
    r->seed = seed;
    r->pos = pos;
}

uint32_t rng_u32(rng *r)
{
    uint32_t w[4];
    rng_block(r->seed, r->pos >> 2, w);
    uint32_t x = w[r->pos & 3];
    r->pos++;
    return x;
}

float rng_uniform(rng *r)
{
    return rng_word_to_uniform(rng_u32(r));
}

double rng_uniform_double(rng *r)
{
    /* 27 + 26 = 53 random bits, centred in their cell: never 0, never 1 */
    uint64_t a = rng_u32(r) >> 5;
    uint64_t b = rng_u32(r) >> 6;
    return ((double)((a << 26) | b) + 0.5) * 0x1p-53;
}

float rng_normal(rng *r)
{
    uint32_t w[4];
    rng_block(r->seed, r->pos >> 2, w);
    unsigned k = (unsigned)(r->pos & 3);
    unsigned pair = k & 2u;
    float z0, z1;
    rng_box_muller(w[pair], w[pair + 1], &z0, &z1);
    r->pos++;
    return (k & 1u) ? z1 : z0;
}

uint32_t rng_below(rng *r, uint32_t n)
{
    if (n <= 1)
        return 0;
    /* reject the lowest (2^32 mod n) values so every residue is equally likely */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = rng_u32(r);
        if (x >= threshold)
            return x % n;
    }
}

void rng_shuffle_int(rng *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1u);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

// x: [n] <- uniforms at positions offset .. offset+n-1
void rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t offset)
{
    size_t i = 0;
    uint32_t w[4];
    while (i < n) {
        uint64_t pos = offset + i;
        uint64_t j = pos >> 2;
        unsigned k = (unsigned)(pos & 3);
        rng_block(seed, j, w);
        for (; k < 4 && i < n; k++, i++)
            x[i] = rng_word_to_uniform(w[k]);
    }
}

// x: [n] <- normals * std + mean at positions offset .. offset+n-1
void rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t offset, float mean, float std)
{
    size_t i = 0;
    uint32_t w[4];
    while (i < n) {
        uint64_t pos = offset + i;
        uint64_t j = pos >> 2;
        unsigned k = (unsigned)(pos & 3);
        rng_block(seed, j, w);
        float z[4];
        rng_box_muller(w[0], w[1], &z[0], &z[1]);
        rng_box_muller(w[2], w[3], &z[2], &z[3]);
        for (; k < 4 && i < n; k++, i++)
            x[i] = z[k] * std + mean;
    }
}

static uint64_t rng_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t rng_fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; s && *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

/* Mixed in stages (seed, then tag, then index) rather than XORed together once, so that
 * (seed, index) pairs such as (1, 0) and (0, 1) do not collide. */
uint64_t rng_derive(uint64_t seed, const char *tag, uint64_t index)
{
    uint64_t x = rng_splitmix64(seed);
    x = rng_splitmix64(x ^ rng_fnv1a64(tag));
    return rng_splitmix64(x ^ index);
}
