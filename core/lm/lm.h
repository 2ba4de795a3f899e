/* lm.h - a byte-level causal transformer language model (GPT-2 shape) with
 * optional LoRA adapters, over the backend ops.
 *
 * Tokens: the 256 byte values and BOS (256) on input; the 256 byte values on
 * output. A word of n bytes is the sequence BOS b0 .. b(n-1) whose targets are
 * b0 .. b(n-1) '\n': the model predicts every byte of "word\n", the line as the
 * word list holds it, so bits per byte = the bits of those n + 1 predictions /
 * (n + 1). Words of n + 1 > context bytes are skipped (and counted).
 *
 * Packing: a batch is B rows of T = context positions; each row holds several
 * words one after another, with positions restarting at 0 at each word's BOS
 * and a block-diagonal causal mask (a position sees only earlier positions of
 * its own word), so a word's predictions are exactly those of the word alone.
 * Positions left over at the end of a row have no target and see only
 * themselves.
 *
 * Model (pre-norm GPT-2; x: [B*T, width]):
 *   x = wte[ids] + wpe[pos]
 *   per block: x = x + o_proj(attn(q_proj(ln_1 x), k_proj(..), v_proj(..)))
 *              x = x + mlp.fc_out(gelu_tanh(mlp.fc_in(ln_2 x)))   (fc_in: 4 x width)
 *   logits = lm_head(ln_f x)   (untied, no bias)
 * Tensor names (PyTorch nn.Linear layout [out, in], not GPT-2's transposed Conv1D):
 *   transformer.wte.weight [257, W], transformer.wpe.weight [T, W],
 *   transformer.h.N.ln_1.{weight,bias}, transformer.h.N.attn.{q,k,v,o}_proj.{weight,bias},
 *   transformer.h.N.ln_2.{weight,bias}, transformer.h.N.mlp.{fc_in,fc_out}.{weight,bias},
 *   transformer.ln_f.{weight,bias}, lm_head.weight [256, W].
 * Initialisation as GPT-2: weights N(0, 0.02), o_proj and fc_out N(0, 0.02 / sqrt(2 L)),
 * biases 0, LayerNorm 1 / 0.
 *
 * LoRA (Hu et al. 2021, PEFT layout): a projection W x + b gets + (alpha / r) B A x with
 * A [r, in] (Kaiming-uniform, as PEFT) and B [out, r] (zeros), in a second paramset named
 * base_model.model.<module>.lora_{A,B}.weight; targets q_proj and v_proj, and with
 * mlp != 0 also mlp.fc_in and mlp.fc_out. With a frozen base the backward computes no
 * gradient for the base's linear and embedding weights. */
#ifndef D2_LM_H
#define D2_LM_H

#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "layers.h"
#include "params.h"

#define LM_BOS 256
#define LM_VOCAB_IN 257
#define LM_VOCAB_OUT 256
#define LM_EOW '\n'
#define LM_MAX_LAYERS 16
#define LM_MAX_CONTEXT 256

typedef struct lm_config {
    int layers, width, heads, context;
} lm_config;

/* 4 layers, width 128, 4 heads, context 32 */
lm_config lm_config_default(void);
/* sizes in range and width a multiple of heads; D2_EINVAL naming the field */
int lm_config_check(const lm_config *c, d2_error *err);

typedef struct lm_lora_cfg {
    int rank;
    float alpha;
    int mlp; /* 1: also mlp.fc_in and mlp.fc_out */
} lm_lora_cfg;

/* rank 4, alpha 8, attention only */
lm_lora_cfg lm_lora_default(void);

/* A linear projection with an optional adapter. */
typedef struct lm_proj {
    linear base;
    int lora;      /* 1 when A, B are registered in the model's lora paramset */
    int rank;
    float scale;   /* alpha / rank */
    size_t A, B;   /* offsets in the lora paramset: A [rank, in], B [out, rank] */
} lm_proj;

typedef struct lm_block {
    layernorm ln1, ln2;
    lm_proj q, k, v, o, fc_in, fc_out;
} lm_block;

typedef struct lm_model {
    lm_config cfg;
    paramset *ps;   /* the base (not owned) */
    paramset *lora; /* the adapters, or NULL (not owned) */
    int frozen;     /* 1: no gradients for the base's linear and embedding weights */
    size_t wte, wpe;
    lm_block blk[LM_MAX_LAYERS];
    layernorm lnf;
    linear head;
} lm_model;

/* Register the base's tensors in ps (before paramset_alloc). */
int lm_init(lm_model *m, paramset *ps, const lm_config *cfg, d2_error *err);
/* Register adapters in lora (before its paramset_alloc) on the targets of lc. */
int lm_attach_lora(lm_model *m, paramset *lora, const lm_lora_cfg *lc, d2_error *err);
/* The module name of target t of block l ("transformer.h.0.attn.q_proj"); the targets are
 * q, v, then fc_in, fc_out with mlp. Returns the projection, NULL past the last. */
lm_proj *lm_lora_target(lm_model *m, int l, int t, int mlp, char *name, size_t cap);
/* W += scale * B A for every adapted projection (then detach the adapters). */
int lm_merge_lora(lm_model *m, d2_error *err);

/* ---- batches (lm_batch.c) ---- */
typedef struct lm_batch {
    int B, T, heads;
    int32_t *ids, *pos, *labels, *seg; /* host [B*T]; labels -1: no target */
    int row, col;                      /* where the next word goes */
    int words, targets;
    float *tok1h, *pos1h, *mask;       /* host: [B*T, 257], [B*T, T], [B, heads, T, T] */
} lm_batch;

int lm_batch_alloc(lm_batch *b, int B, int T, int heads, d2_error *err);
void lm_batch_free(lm_batch *b);
void lm_batch_clear(lm_batch *b);
/* 1: added; 0: no room left in the batch; -1: longer than T - 1 bytes (never fits) */
int lm_batch_add(lm_batch *b, const unsigned char *w, size_t len);
/* fill tok1h, pos1h and mask from ids, pos and seg */
void lm_batch_encode(lm_batch *b);

/* ---- forward / backward (lm_block.c, lm_model.c) ---- */
typedef struct lm_proj_cache {
    float *u; /* [R, rank]: A x, when the projection has an adapter */
} lm_proj_cache;

typedef struct lm_attn_cache {
    float *qh, *kh, *vh, *att; /* [B, H, T, dh] x3, [B, H, T, T] */
} lm_attn_cache;

typedef struct lm_block_cache {
    float *a, *m1, *r1;       /* ln_1 output and statistics */
    float *q, *k, *v, *y;     /* projections, attention output [R, W] */
    float *x1;                /* after the attention residual */
    float *mm, *m2, *r2;      /* ln_2 output and statistics */
    float *h, *g;             /* fc_in output, gelu of it [R, 4W] */
    float *out;               /* the block output */
    lm_attn_cache at;
    lm_proj_cache pq, pk, pv, po, pi, pf;
} lm_block_cache;

typedef struct lm_cache {
    int B, T;
    float *tok1h, *pos1h, *mask; /* device copies of the batch's encodings */
    float *x0;
    lm_block_cache blk[LM_MAX_LAYERS];
    float *xf, *mf, *rf;         /* ln_f output and statistics */
    float *logits;               /* [B*T, 256] */
} lm_cache;

/* Causal multi-head attention over q, k, v [B, T, W] with an additive mask
 * [B, H, T, T] (0 or -1e30); y [B, T, W] is overwritten. Backward overwrites
 * dq, dk, dv from dy. */
int lm_attn_forward(backend_t *be, arena *ar, lm_attn_cache *c, float *y, const float *q,
                    const float *k, const float *v, const float *mask, int B, int T, int W,
                    int H, d2_error *err);
int lm_attn_backward(backend_t *be, arena *ar, const lm_attn_cache *c, float *dq, float *dk,
                     float *dv, const float *dy, int B, int T, int W, int H, d2_error *err);

/* A projection: y = x W^T + b (+ scale * (x A^T) B^T). Backward: dx += (may be NULL),
 * base gradients unless frozen, adapter gradients into lora->g. */
int lm_proj_forward(backend_t *be, const lm_model *m, const lm_proj *p, arena *ar,
                    lm_proj_cache *c, float *y, const float *x, int R, d2_error *err);
int lm_proj_backward(backend_t *be, lm_model *m, const lm_proj *p, arena *ar,
                     const lm_proj_cache *c, float *dx, const float *dy, const float *x, int R,
                     d2_error *err);

/* One block over x [B*T, W] (kept by the caller); out in c->out. Backward: dx +=. */
int lm_block_forward(backend_t *be, const lm_model *m, int l, arena *ar, lm_block_cache *c,
                     const float *x, const float *mask, int B, int T, d2_error *err);
int lm_block_backward(backend_t *be, lm_model *m, int l, arena *ar, const lm_block_cache *c,
                      float *dx, const float *dout, const float *x, int B, int T, d2_error *err);

/* The model over an encoded batch; logits in c->logits (arena memory). */
int lm_forward(backend_t *be, const lm_model *m, arena *ar, lm_cache *c, const lm_batch *b,
               d2_error *err);
/* dlogits [B*T, 256] (device) -> gradients into m->ps->g and m->lora->g (accumulate). */
int lm_backward(backend_t *be, lm_model *m, arena *ar, const lm_cache *c, const float *dlogits,
                d2_error *err);

/* Masked softmax cross-entropy on the host: logits [R, 256], labels [R] (-1: none).
 * Returns the sum of -ln p over the targets; *count = how many. dlogits (may be NULL)
 * = (softmax - onehot) * gscale / count on target rows, 0 elsewhere. */
double lm_loss_host(const float *logits, const int32_t *labels, int R, float *dlogits,
                    float gscale, int *count);

/* Arena bytes for a batch of B rows (forward and backward, with adapters of rank r). */
size_t lm_arena_bytes(const lm_config *c, int B, int rank);

/* forward (+ loss, + backward when train != 0) of one encoded batch; host scratch
 * logits_h and dl_h hold [B*T, 256]. *nats and *count as lm_loss_host. The arena is
 * reset to where it was. */
int lm_run_batch(backend_t *be, lm_model *m, arena *ar, lm_batch *b, float *logits_h,
                 float *dl_h, int train, double *nats, int *count, d2_error *err);

#endif
