/* lm_batch.c - packing words into rows of the context with a block-diagonal causal
 * mask, and the host encodings the forward uploads (lm.h). */
#include <stdlib.h>
#include <string.h>

#include "lm_internal.h"

#define LM_MASKED (-1e30f)

int lm_batch_alloc(lm_batch *b, int B, int T, int heads, d2_error *err)
{
    memset(b, 0, sizeof *b);
    const size_t R = (size_t)B * T;
    b->B = B;
    b->T = T;
    b->heads = heads;
    b->ids = malloc(R * sizeof *b->ids);
    b->pos = malloc(R * sizeof *b->pos);
    b->labels = malloc(R * sizeof *b->labels);
    b->seg = malloc(R * sizeof *b->seg);
    b->tok1h = malloc(R * LM_VOCAB_IN * sizeof *b->tok1h);
    b->pos1h = malloc(R * (size_t)T * sizeof *b->pos1h);
    b->mask = malloc(R * (size_t)heads * (size_t)T * sizeof *b->mask);
    if (!b->ids || !b->pos || !b->labels || !b->seg || !b->tok1h || !b->pos1h || !b->mask) {
        lm_batch_free(b);
        return d2_fail(err, D2_ENOMEM, "out of memory for a batch of %d x %d", B, T);
    }
    lm_batch_clear(b);
    return 0;
}

void lm_batch_free(lm_batch *b)
{
    free(b->ids);
    free(b->pos);
    free(b->labels);
    free(b->seg);
    free(b->tok1h);
    free(b->pos1h);
    free(b->mask);
    memset(b, 0, sizeof *b);
}

/* every position empty: BOS at position 0, no target, a segment of its own */
void lm_batch_clear(lm_batch *b)
{
    const int R = b->B * b->T;
    for (int i = 0; i < R; i++) {
        b->ids[i] = LM_BOS;
        b->pos[i] = 0;
        b->labels[i] = -1;
        b->seg[i] = -1 - i;
    }
    b->row = b->col = 0;
    b->words = b->targets = 0;
}

int lm_batch_add(lm_batch *b, const unsigned char *w, size_t len)
{
    if (len + 1 > (size_t)b->T)
        return -1;
    const int need = (int)len + 1;
    if (b->col + need > b->T) {
        b->row++;
        b->col = 0;
    }
    if (b->row >= b->B)
        return 0;
    int32_t *ids = b->ids + (size_t)b->row * b->T + b->col;
    int32_t *pos = b->pos + (size_t)b->row * b->T + b->col;
    int32_t *lab = b->labels + (size_t)b->row * b->T + b->col;
    int32_t *seg = b->seg + (size_t)b->row * b->T + b->col;
    for (int t = 0; t < need; t++) {
        ids[t] = t == 0 ? LM_BOS : w[t - 1];
        pos[t] = t;
        lab[t] = t < (int)len ? w[t] : LM_EOW;
        seg[t] = b->words;
    }
    b->col += need;
    b->words++;
    b->targets += need;
    return 1;
}

void lm_batch_encode(lm_batch *b)
{
    const int T = b->T, H = b->heads;
    const size_t R = (size_t)b->B * T, tt = (size_t)T * T;
    memset(b->tok1h, 0, R * LM_VOCAB_IN * sizeof *b->tok1h);
    memset(b->pos1h, 0, R * (size_t)T * sizeof *b->pos1h);
    for (size_t i = 0; i < R; i++) {
        b->tok1h[i * LM_VOCAB_IN + (size_t)b->ids[i]] = 1.0f;
        b->pos1h[i * (size_t)T + (size_t)b->pos[i]] = 1.0f;
    }
    for (int r = 0; r < b->B; r++) {
        const int32_t *seg = b->seg + (size_t)r * T;
        float *m0 = b->mask + (size_t)r * H * tt;
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++)
                m0[(size_t)i * T + j] = j <= i && seg[i] == seg[j] ? 0.0f : LM_MASKED;
        for (int h = 1; h < H; h++)
            memcpy(m0 + (size_t)h * tt, m0, tt * sizeof *m0);
    }
}
