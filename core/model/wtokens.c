/* wtokens.c - neuron tokens of a target network (see wtokens.h). */
#include "wtokens.h"

#include <stdlib.h>
#include <string.h>

int wtok_init(wtok *w, const target_spec *s, d2_error *err)
{
    memset(w, 0, sizeof *w);
    int n_tok = 0, len = 0, n_layers = 0;
    for (int i = 0; i < s->nlayers; i++) {
        const target_layer *L = &s->layers[i];
        if (L->kind != TL_LINEAR)
            continue;
        n_tok += L->out;
        if (L->in + 1 > len)
            len = L->in + 1;
        n_layers++;
    }
    if (!n_tok)
        return d2_fail(err, D2_EINVAL, "spec '%s' has no generated linear layer", s->text);
    w->P = (int)s->numel;
    w->n_tok = n_tok;
    w->len = len;
    w->n_layers = n_layers;
    w->pos = malloc((size_t)w->P * sizeof(int));
    w->layer = malloc((size_t)n_tok * sizeof(int));
    if (!w->pos || !w->layer) {
        wtok_free(w);
        return d2_fail(err, D2_ENOMEM, "out of memory");
    }
    for (int i = 0; i < w->P; i++)
        w->pos[i] = -1;
    int tok = 0, li = 0;
    for (int i = 0; i < s->nlayers; i++) {
        const target_layer *L = &s->layers[i];
        if (L->kind != TL_LINEAR)
            continue;
        for (int o = 0; o < L->out; o++, tok++) {
            w->layer[tok] = li;
            for (int k = 0; k < L->in; k++)
                w->pos[L->w_off + (size_t)o * L->in + k] = tok * len + k;
            w->pos[L->b_off + o] = tok * len + L->in;
        }
        li++;
    }
    for (int i = 0; i < w->P; i++)
        if (w->pos[i] < 0) {
            wtok_free(w);
            return d2_fail(err, D2_EINVAL, "spec '%s': parameter %d belongs to no token", s->text,
                           i);
        }
    return 0;
}

void wtok_free(wtok *w)
{
    free(w->pos);
    free(w->layer);
    memset(w, 0, sizeof *w);
}

void wtok_targets(const wtok *w, const float *theta, int B, float *tokens)
{
    const size_t per = (size_t)w->n_tok * w->len;
    memset(tokens, 0, (size_t)B * per * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < w->P; i++)
            tokens[(size_t)b * per + w->pos[i]] = theta[(size_t)b * w->P + i];
}

void wtok_split(const wtok *w, const float *theta, int B, float *tokens)
{
    const int row = w->len + w->n_layers;
    memset(tokens, 0, (size_t)B * w->n_tok * row * sizeof(float));
    for (int b = 0; b < B; b++) {
        float *base = tokens + (size_t)b * w->n_tok * row;
        for (int i = 0; i < w->P; i++) {
            int p = w->pos[i], t = p / w->len, k = p % w->len;
            base[(size_t)t * row + k] = theta[(size_t)b * w->P + i];
        }
        for (int t = 0; t < w->n_tok; t++)
            base[(size_t)t * row + w->len + w->layer[t]] = 1.0f;
    }
}

void wtok_merge(const wtok *w, const float *tokens, int B, float *theta)
{
    const size_t per = (size_t)w->n_tok * w->len;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < w->P; i++)
            theta[(size_t)b * w->P + i] = tokens[(size_t)b * per + w->pos[i]];
}

void wtok_latent_rows(const wtok *w, const float *z, int B, int l, float *rows)
{
    const int row = l + w->n_layers;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < w->n_tok; t++) {
            float *r = rows + ((size_t)b * w->n_tok + t) * row;
            memcpy(r, z + ((size_t)b * w->n_tok + t) * l, (size_t)l * sizeof(float));
            memset(r + l, 0, (size_t)w->n_layers * sizeof(float));
            r[l + w->layer[t]] = 1.0f;
        }
}
