/* target_train.c - mini-batch AdamW on softmax cross-entropy for a target
 * network, on the host, single-threaded and deterministic for a seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "target_internal.h"

target_train_cfg target_train_defaults(void)
{
    /* Tuned for 5-way linear heads on PCA-128 Fashion-MNIST features with
     * 300 samples per class: reaches logistic regression's query accuracy. */
    target_train_cfg c = {.epochs = 10, .batch = 64, .lr = 0.01f, .weight_decay = 0.01f,
                          .seed = 0, .min_steps = 240};
    return c;
}

// z: [b, out] logits, y: [b] -> z becomes dlogits of the mean cross-entropy
// over the first `way` outputs (the others get zero gradient).
static void softmax_xent_grad(float *z, const int32_t *y, int b, int out, int way)
{
    float inv = 1.0f / (float)b;
    for (int i = 0; i < b; i++) {
        float *zi = z + (size_t)i * out;
        float mx = zi[0];
        for (int j = 1; j < way; j++)
            mx = zi[j] > mx ? zi[j] : mx;
        float se = 0.0f;
        for (int j = 0; j < way; j++) {
            zi[j] = expf(zi[j] - mx);
            se += zi[j];
        }
        float r = inv / se;
        for (int j = 0; j < way; j++)
            zi[j] *= r;
        zi[y[i]] -= inv;
        for (int j = way; j < out; j++)
            zi[j] = 0.0f;
    }
}

// theta, g, m, v: [n]; one AdamW step (PyTorch semantics: decoupled decay,
// bias-corrected moments); t is the 1-based step number.
static void adamw_update(float *theta, const float *g, float *m, float *v, size_t n, float lr,
                         float wd, int t)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f / (1.0f - powf(b1, (float)t));
    float c2 = 1.0f / sqrtf(1.0f - powf(b2, (float)t));
    float decay = 1.0f - lr * wd;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        theta[i] = theta[i] * decay - lr * (m[i] * c1) / (sqrtf(v[i]) * c2 + eps);
    }
}

static int check_cfg(const target_train_cfg *cfg, d2_error *err)
{
    if (cfg->epochs < 1 || cfg->epochs > 1000000)
        return d2_fail(err, D2_EINVAL, "target_train: epochs %d outside 1..1000000", cfg->epochs);
    if (cfg->min_steps < 0 || cfg->min_steps > 100000000)
        return d2_fail(err, D2_EINVAL, "target_train: min_steps %d outside 0..100000000",
                       cfg->min_steps);
    if (cfg->batch < 1)
        return d2_fail(err, D2_EINVAL, "target_train: batch %d must be positive", cfg->batch);
    if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr))
        return d2_fail(err, D2_EINVAL, "target_train: learning rate %g must be positive",
                       (double)cfg->lr);
    if (!(cfg->weight_decay >= 0.0f) || !isfinite(cfg->weight_decay))
        return d2_fail(err, D2_EINVAL, "target_train: weight decay %g must be >= 0",
                       (double)cfg->weight_decay);
    return 0;
}

int target_train(const target_spec *s, const dataset *feat, float *theta, int from_theta,
                 const target_train_cfg *cfg, d2_error *err)
{
    if (!s || !feat || !theta || !cfg)
        return d2_fail(err, D2_EINVAL, "target_train: bad arguments");
    int rc = check_cfg(cfg, err);
    if (!rc)
        rc = target_check_data(s, feat, "target_train", err);
    if (rc)
        return rc;
    if (from_theta && (rc = target_check_theta(s, theta, err)))
        return d2_wrap(err, "target_train: start point");
    if (!from_theta)
        target_init_random(s, rng_derive(cfg->seed, "target-init", 0), theta);

    int n = feat->n, D = s->feat_dim, way = feat->classes;
    int B = cfg->batch < n ? cfg->batch : n;
    size_t P = s->numel;
    tnet_ws ws;
    if ((rc = tnet_ws_init(&ws, s, B, 1, err)))
        return rc;
    /* one block: g, m, v [P], x batch [B, D], y batch [B], order [n] */
    size_t floats = 3 * P + (size_t)B * D;
    float *blk = calloc(floats, sizeof(float));
    int32_t *yb = malloc(sizeof(int32_t) * (size_t)B);
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!blk || !yb || !order) {
        free(blk);
        free(yb);
        free(order);
        tnet_ws_free(&ws);
        return d2_fail(err, D2_ENOMEM, "target_train: out of memory");
    }
    float *g = blk, *m = blk + P, *v = blk + 2 * P, *xb = blk + 3 * P;
    for (int i = 0; i < n; i++)
        order[i] = i;
    rng r;
    rng_init(&r, rng_derive(cfg->seed, "target-shuffle", 0), 0);
    int per_epoch = (n + B - 1) / B;
    int epochs = cfg->epochs;
    if (cfg->min_steps > 0 && (long)epochs * per_epoch < cfg->min_steps)
        epochs = (cfg->min_steps + per_epoch - 1) / per_epoch;
    double total_steps = (double)epochs * per_epoch;
    int t = 0;
    for (int ep = 0; ep < epochs; ep++) {
        rng_shuffle_int(&r, order, n);
        for (int b0 = 0; b0 < n; b0 += B) {
            int b = n - b0 < B ? n - b0 : B;
            // gather x: [b, D], y: [b]
            for (int i = 0; i < b; i++) {
                int row = order[b0 + i];
                memcpy(xb + (size_t)i * D, feat->x + (size_t)row * D, sizeof(float) * (size_t)D);
                yb[i] = feat->y[row];
            }
            float *z = (float *)tnet_forward(&ws, s, theta, xb, b);
            softmax_xent_grad(z, yb, b, s->out_dim, way);
            tnet_backward(&ws, s, theta, xb, z, b, g);
            /* cosine decay from lr to 0 over the whole run */
            float lr_t = (float)(0.5 * cfg->lr * (1.0 + cos(M_PI * t / total_steps)));
            t++;
            adamw_update(theta, g, m, v, P, lr_t, cfg->weight_decay, t);
        }
    }
    free(blk);
    free(yb);
    free(order);
    tnet_ws_free(&ws);
    rc = target_check_theta(s, theta, err);
    return rc ? d2_wrap(err, "target_train: training diverged") : 0;
}
