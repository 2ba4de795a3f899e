/* target_kernels.c - host forward and backward of a target network over a
 * batch (cblas for the linear layers, plain loops for the activations). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "target_internal.h"

int tnet_ws_init(tnet_ws *ws, const target_spec *s, int rows, int with_grad, d2_error *err)
{
    memset(ws, 0, sizeof *ws);
    if (rows < 1)
        rows = 1;
    size_t total = 0, maxw = (size_t)s->feat_dim;
    for (int l = 0; l < s->nlayers; l++) {
        total += (size_t)rows * (size_t)s->layers[l].out;
        if ((size_t)s->layers[l].out > maxw)
            maxw = (size_t)s->layers[l].out;
    }
    size_t all = total + (with_grad ? 2 * (size_t)rows * maxw : 0);
    ws->buf = malloc(sizeof(float) * (all ? all : 1));
    if (!ws->buf)
        return d2_fail(err, D2_ENOMEM, "target: out of memory for a %d-row workspace", rows);
    ws->rows = rows;
    float *p = ws->buf;
    for (int l = 0; l < s->nlayers; l++) {
        ws->act[l + 1] = p;
        p += (size_t)rows * (size_t)s->layers[l].out;
    }
    if (with_grad) {
        ws->dbuf[0] = p;
        ws->dbuf[1] = p + (size_t)rows * maxw;
    }
    return 0;
}

void tnet_ws_free(tnet_ws *ws)
{
    free(ws->buf);
    memset(ws, 0, sizeof *ws);
}

static float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static float gelu_d(float x)
{
    /* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

static float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// x: [m] -> y: [m], y = act(x)
static void act_forward(tl_kind k, const float *x, float *y, size_t m)
{
    switch (k) {
    case TL_RELU:
        for (size_t i = 0; i < m; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case TL_TANH:
        for (size_t i = 0; i < m; i++)
            y[i] = tanhf(x[i]);
        break;
    case TL_GELU:
        for (size_t i = 0; i < m; i++)
            y[i] = gelu_f(x[i]);
        break;
    case TL_SILU:
        for (size_t i = 0; i < m; i++)
            y[i] = x[i] * sigmoid_f(x[i]);
        break;
    case TL_LINEAR:
        break;
    }
}

// x: [m] (the activation's input), d: [m] dy -> dx in place
static void act_backward(tl_kind k, const float *x, float *d, size_t m)
{
    switch (k) {
    case TL_RELU:
        for (size_t i = 0; i < m; i++)
            if (!(x[i] > 0.0f))
                d[i] = 0.0f;
        break;
    case TL_TANH:
        for (size_t i = 0; i < m; i++) {
            float t = tanhf(x[i]);
            d[i] *= 1.0f - t * t;
        }
        break;
    case TL_GELU:
        for (size_t i = 0; i < m; i++)
            d[i] *= gelu_d(x[i]);
        break;
    case TL_SILU:
        for (size_t i = 0; i < m; i++) {
            float sg = sigmoid_f(x[i]);
            d[i] *= sg * (1.0f + x[i] * (1.0f - sg));
        }
        break;
    case TL_LINEAR:
        break;
    }
}

// x: [b, in] -> y: [b, out], y = x @ W^T + bias, W: [out, in]
static void linear_fwd(const float *W, const float *bias, const float *x, float *y, int b, int in,
                       int out)
{
    for (int i = 0; i < b; i++)
        memcpy(y + (size_t)i * out, bias, sizeof(float) * (size_t)out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, out, in, 1.0f, x, in, W, in, 1.0f, y,
                out);
}

const float *tnet_forward(tnet_ws *ws, const target_spec *s, const float *theta, const float *x,
                          int b)
{
    const float *in = x;
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        float *out = ws->act[l + 1];
        if (L->kind == TL_LINEAR)
            linear_fwd(theta + L->w_off, theta + L->b_off, in, out, b, L->in, L->out);
        else
            act_forward(L->kind, in, out, (size_t)b * (size_t)L->out);
        in = out;
    }
    return in;
}

void tnet_backward(tnet_ws *ws, const target_spec *s, const float *theta, const float *x,
                   float *dlogits, int b, float *grad)
{
    float *dy = dlogits;
    int which = 0;
    for (int l = s->nlayers - 1; l >= 0; l--) {
        const target_layer *L = &s->layers[l];
        const float *in = l == 0 ? x : ws->act[l];
        if (L->kind != TL_LINEAR) {
            // dy: [b, width] -> dx in place
            act_backward(L->kind, in, dy, (size_t)b * (size_t)L->out);
            continue;
        }
        // dW: [out, in] = dy^T [out, b] @ x [b, in]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L->out, L->in, b, 1.0f, dy, L->out,
                    in, L->in, 0.0f, grad + L->w_off, L->in);
        // db: [out] = column sums of dy
        float *gb = grad + L->b_off;
        memset(gb, 0, sizeof(float) * (size_t)L->out);
        for (int i = 0; i < b; i++) {
            const float *row = dy + (size_t)i * L->out;
            for (int j = 0; j < L->out; j++)
                gb[j] += row[j];
        }
        if (l == 0)
            break;
        // dx: [b, in] = dy [b, out] @ W [out, in]
        float *dx = ws->dbuf[which];
        which ^= 1;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, L->in, L->out, 1.0f, dy, L->out,
                    theta + L->w_off, L->in, 0.0f, dx, L->in);
        dy = dx;
    }
}
