/* target_internal.h - the host kernels shared by target.c (forward, eval) and
 * target_train.c (training): a workspace that caches every layer's input for
 * a batch, the forward pass, and the backward pass. Not part of the public
 * interface. */
#ifndef D2_TARGET_INTERNAL_H
#define D2_TARGET_INTERNAL_H

#include "target.h"

typedef struct tnet_ws {
    int rows;             /* batch capacity */
    float *act[TARGET_MAX_LAYERS + 1]; /* act[l]: input of layer l, [rows, width]; act[0]
                                         * is only used when the caller copies into it */
    float *dbuf[2];       /* gradient ping-pong buffers [rows, max width] */
    float *buf;           /* one allocation behind all of the above */
} tnet_ws;

/* Workspace for batches of up to `rows` rows; with_grad adds the gradient buffers. */
int tnet_ws_init(tnet_ws *ws, const target_spec *s, int rows, int with_grad, d2_error *err);
void tnet_ws_free(tnet_ws *ws);

/* x: [b, feat_dim] -> logits [b, out_dim] (a pointer into ws, valid until the
 * next call). Caches each layer's input (x itself for layer 0). */
const float *tnet_forward(tnet_ws *ws, const target_spec *s, const float *theta, const float *x,
                          int b);
/* After tnet_forward on the same x: dlogits [b, out_dim] (overwritten) ->
 * grad [numel] (overwritten, not accumulated). x is the forward's input. */
void tnet_backward(tnet_ws *ws, const target_spec *s, const float *theta, const float *x,
                   float *dlogits, int b, float *grad);

/* Data set checks shared by eval and train: dims match the spec, labels in
 * 0..classes-1, classes <= out_dim. `what` prefixes the message. */
int target_check_data(const target_spec *s, const dataset *d, const char *what, d2_error *err);

#endif
