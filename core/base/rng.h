/* rng.h - counter-based Philox-4x32-10 (Salmon et al., Random123).
 *
 * Stream layout (identical on every backend, so a seed gives the same numbers
 * on CPU and GPU and any position can be reached without generating the ones
 * before it):
 *   key   = (uint32)(seed), (uint32)(seed >> 32)
 *   block j (j = 0, 1, 2...) = philox4x32_10(counter = {j lo, j hi, 0, 0}, key)
 *   uniform number at position i: word (i % 4) of block (i / 4), mapped to
 *     u = ((w >> 8) + 0.5) * 2^-24, in (0, 1) (never 0, never 1); computed in float as
 *     ((float)(w >> 8) + 0.5f) * 0x1p-24f and capped at 0x1.fffffep-1f (the top word
 *     would otherwise round to 1.0f)
 *   normal number at position i: Box-Muller on the pair of uniforms of block
 *     (i / 4): positions 4j, 4j+1 from words (0, 1), positions 4j+2, 4j+3 from
 *     words (2, 3): r = sqrt(-2 ln u_a), z0 = r cos(2 pi u_b), z1 = r sin(2 pi u_b).
 */
#ifndef D2_RNG_H
#define D2_RNG_H

#include <stddef.h>
#include <stdint.h>

/* One Philox-4x32-10 block: out = philox(ctr, key). */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Host-side seekable stream over the layout above. */
typedef struct rng {
    uint64_t seed;
    uint64_t pos; /* next position */
} rng;

void rng_init(rng *r, uint64_t seed, uint64_t pos);
uint32_t rng_u32(rng *r);        /* raw word at pos, then pos++ */
float rng_uniform(rng *r);       /* (0,1) */
double rng_uniform_double(rng *r); /* (0,1), uses two positions */
float rng_normal(rng *r);        /* standard normal, consumes one position */
/* Uniform integer in [0, n) without modulo bias (n >= 1). */
uint32_t rng_below(rng *r, uint32_t n);
/* Fisher-Yates shuffle of idx[n]. */
void rng_shuffle_int(rng *r, int *idx, int n);

/* Fill x[i] with the numbers at positions offset..offset+n-1 of seed's stream. */
void rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t offset);
void rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t offset, float mean, float std);

/* Derive an independent seed for a named sub-stream (splitmix64 of seed ^ hash(tag) ^ index). */
uint64_t rng_derive(uint64_t seed, const char *tag, uint64_t index);

#endif
