/* wtokens.h - a target network's parameters as tokens for the weight VAE.
 *
 * One token per output neuron of each generated linear layer: the neuron's
 * weight row followed by its bias (in + 1 values), zero-padded to the longest
 * token, followed by a one-hot of the layer the neuron belongs to. So a 5-way
 * linear head is 5 tokens of 129 values, one per class row. The VAE encodes
 * and decodes each token on its own (shared weights): rows of the same class
 * look alike across tasks, which lets the VAE generalise to class combinations
 * it never saw, where a whole-vector autoencoder memorises the zoo. This is
 * DESIGN's "layer-wise chunks as tokens", cut at neuron boundaries. */
#ifndef D2_WTOKENS_H
#define D2_WTOKENS_H

#include "target.h"

typedef struct wtok {
    int P;        /* parameters */
    int n_tok;    /* tokens per network */
    int len;      /* values per token (longest in + 1) */
    int n_layers; /* one-hot width */
    int *pos;     /* [P] theta index -> token * len + offset */
    int *layer;   /* [n_tok] layer of each token */
} wtok;

int wtok_init(wtok *w, const target_spec *s, d2_error *err);
void wtok_free(wtok *w);

/* theta [B, P] (normalised) -> tokens [B * n_tok, len + n_layers] with the
 * layer one-hot appended; padding is 0. */
void wtok_split(const wtok *w, const float *theta, int B, float *tokens);
/* tokens [B * n_tok, len] (no one-hot) -> theta [B, P] */
void wtok_merge(const wtok *w, const float *tokens, int B, float *theta);
/* z [B, n_tok * l] -> decoder input [B * n_tok, l + n_layers] with the one-hot */
void wtok_latent_rows(const wtok *w, const float *z, int B, int l, float *rows);
/* targets without the one-hot: theta [B, P] -> [B * n_tok, len] */
void wtok_targets(const wtok *w, const float *theta, int B, float *tokens);

#endif
