/* bench_core.c - the CPU backend's speed, as ratios measured in the same run:
 *   1. sgemm GFLOP/s at the shapes the model uses (generation: 8 candidates x 645 weights;
 *      features; training), against the best shape;
 *   2. one training step of a 3-block residual MLP (LayerNorm + SiLU + Linear, width 512,
 *      batch 256: forward + MSE + backward + AdamW with clipping) against the time its 9
 *      GEMMs alone take, on one thread and on all. Step and GEMMs-alone rounds alternate and
 *      the ratio is the median of the per-round ratios, so that other load on the machine
 *      weighs on both sides alike. Goal: step <= 1.3x GEMM time.
 * Usage: bench_core [threads]   (default: all cores). Exits 0 unless something fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "layers.h"
#include "optim.h"
#include "bench_stats.h"

#define WIDTH 512
#define BATCH 256
#define BLOCKS 3
#define GOAL 1.3

/* ---- 1. sgemm ---- */

typedef struct gemm_shape {
    const char *what;
    int ta, tb, M, N, K;
} gemm_shape;

static double bench_gemm(backend_t *be, const gemm_shape *s)
{
    int ar = s->ta ? s->K : s->M, ac = s->ta ? s->M : s->K;
    int br = s->tb ? s->N : s->K, bc = s->tb ? s->K : s->N;
    float *A = backend_alloc_floats(be, (size_t)ar * ac);
    float *B = backend_alloc_floats(be, (size_t)br * bc);
    float *C = backend_alloc_floats(be, (size_t)s->M * s->N);
    if (!A || !B || !C)
        return -1;
    be->ops->rand_normal(be, A, (size_t)ar * ac, 1, 0, 0.0f, 1.0f);
    be->ops->rand_normal(be, B, (size_t)br * bc, 2, 0, 0.0f, 1.0f);
    double flop = 2.0 * s->M * s->N * s->K;
    int reps = 1;
    double best = 1e30;
    /* repeat until 0.15 s has passed, 5 rounds; keep the best round */
    for (int round = 0; round < 5; round++) {
        double t0 = d2_now();
        for (int r = 0; r < reps; r++)
            be->ops->gemm(be, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, ac, B, bc, 0.0f, C, s->N);
        double dt = (d2_now() - t0) / reps;
        if (dt < best)
            best = dt;
        if (dt * reps < 0.03)
            reps = (int)(0.03 / (dt + 1e-9)) + 1;
    }
    be->ops->free(be, A);
    be->ops->free(be, B);
    be->ops->free(be, C);
    return flop / best * 1e-9;
}

/* ---- 2. residual MLP step ---- */

typedef struct rmlp {
    layernorm ln[BLOCKS];
    linear fc[BLOCKS];
} rmlp;

typedef struct rmlp_act {
    float *h[BLOCKS + 1];            /* [B, W] block inputs; h[BLOCKS] = output */
    float *n[BLOCKS], *a[BLOCKS];    /* [B, W] LN output, SiLU output */
    float *mean[BLOCKS], *rstd[BLOCKS];
} rmlp_act;

/* n floats from the arena: zeroed (for buffers accumulated into) or left as they are */
static int take(arena *ar, float **p, size_t n)
{
    *p = arena_floats(ar, n);
    return *p ? 0 : -1;
}

static int scratch(arena *ar, float **p, size_t n)
{
    *p = arena_floats_uninit(ar, n);
    return *p ? 0 : -1;
}

// x: [B, W] -> h[BLOCKS]: [B, W]
static int rmlp_forward(backend_t *be, const rmlp *m, const paramset *ps, arena *ar,
                        rmlp_act *c, const float *x)
{
    const size_t n = (size_t)BATCH * WIDTH;
    c->h[0] = (float *)x;
    for (int i = 0; i < BLOCKS; i++) {
        if (scratch(ar, &c->n[i], n) || scratch(ar, &c->a[i], n) ||
            scratch(ar, &c->mean[i], BATCH) || scratch(ar, &c->rstd[i], BATCH) ||
            scratch(ar, &c->h[i + 1], n))
            return -1;
        layernorm_fwd(be, &m->ln[i], ps, c->n[i], c->mean[i], c->rstd[i], c->h[i], BATCH);
        be->ops->act_forward(be, ACT_SILU, c->a[i], c->n[i], n);
        linear_forward(be, &m->fc[i], ps, c->h[i + 1], c->a[i], BATCH);
        be->ops->axpby(be, c->h[i + 1], 1.0f, c->h[i], 1.0f, n);
    }
    return 0;
}

// dy: [B, W] -> parameter gradients
static int rmlp_backward(backend_t *be, const rmlp *m, paramset *ps, arena *ar,
                         const rmlp_act *c, float *dy)
{
    const size_t n = (size_t)BATCH * WIDTH;
    float *dh = dy, *da, *dn, *dprev;
    for (int i = BLOCKS - 1; i >= 0; i--) {
        if (take(ar, &da, n) || take(ar, &dn, n) || scratch(ar, &dprev, n))
            return -1;
        linear_backward(be, &m->fc[i], ps, da, dh, c->a[i], BATCH);
        be->ops->act_backward(be, ACT_SILU, dn, da, c->n[i], n);
        be->ops->copy(be, dprev, dh, n * sizeof(float)); /* residual */
        layernorm_bwd(be, &m->ln[i], ps, dprev, dn, c->h[i], c->mean[i], c->rstd[i], BATCH);
        dh = dprev;
    }
    return 0;
}

typedef struct step_times {
    double fwd, bwd, opt, total;
    double ratio; /* median over rounds of step / GEMMs alone */
} step_times;

static int bench_step(backend_t *be, int reps, step_times *out, double *gemm_only,
                      d2_error *err)
{
    const size_t n = (size_t)BATCH * WIDTH;
    paramset ps;
    rmlp m;
    arena ar;
    int rc;
    paramset_init(&ps);
    for (int i = 0; i < BLOCKS; i++) {
        char name[32];
        snprintf(name, sizeof name, "%d.ln", i);
        if ((rc = layernorm_init(&m.ln[i], &ps, name, WIDTH, 1, err)))
            return rc;
        snprintf(name, sizeof name, "%d.fc", i);
        if ((rc = linear_init(&m.fc[i], &ps, name, WIDTH, WIDTH, 1, 1.0f, err)))
            return rc;
    }
    if ((rc = paramset_alloc(&ps, be, 1, err)) || (rc = paramset_alloc_optim(&ps, err)) ||
        (rc = arena_init(&ar, be, 16 * n * sizeof(float) * BLOCKS, err))) {
        paramset_free(&ps);
        return rc;
    }
    float *x = backend_alloc_floats(be, n), *target = backend_alloc_floats(be, n);
    float *dy = backend_alloc_floats(be, n), *loss = backend_alloc_floats(be, 1);
    if (!x || !target || !dy || !loss) {
        paramset_free(&ps);
        arena_free(&ar);
        return d2_fail(err, D2_ENOMEM, "bench: out of memory");
    }
    be->ops->rand_normal(be, x, n, 3, 0, 0.0f, 1.0f);
    be->ops->rand_normal(be, target, n, 4, 0, 0.0f, 1.0f);
    adamw_cfg cfg = adamw_defaults();
    cfg.lr = 1e-4f;

    /* scratch for the GEMMs-alone pass (the step's own buffers stay untouched) */
    float *ga = backend_alloc_floats(be, n), *gb = backend_alloc_floats(be, n);
    float *gc = backend_alloc_floats(be, n);
    float *gw = backend_alloc_floats(be, (size_t)WIDTH * WIDTH); /* dW: [W, W] */
    double *tf = calloc((size_t)reps, sizeof(double)), *tb = calloc((size_t)reps, sizeof(double));
    double *to = calloc((size_t)reps, sizeof(double)), *tt = calloc((size_t)reps, sizeof(double));
    double *tg = calloc((size_t)reps, sizeof(double)), *tr = calloc((size_t)reps, sizeof(double));
    rc = (tf && tb && to && tt && tg && tr && ga && gb && gc && gw) ? 0 : D2_ENOMEM;
    if (rc)
        d2_fail(err, rc, "bench: out of memory");
    const int warm = 3;
    /* step and GEMMs alone alternate, so that both see the same machine; the ratio is the
     * median of the per-round ratios */
    for (int r = -warm; r < reps && rc == 0; r++) {
        rmlp_act c;
        be->ops->sync(be);
        double t0 = d2_now();
        arena_reset(&ar, 0);
        paramset_zero_grad(&ps);
        if (rmlp_forward(be, &m, &ps, &ar, &c, x)) {
            rc = d2_fail(err, D2_ENOMEM, "bench: arena too small");
            break;
        }
        be->ops->mse(be, loss, dy, c.h[BLOCKS], target, n, 1.0f);
        be->ops->sync(be);
        double t1 = d2_now();
        if (rmlp_backward(be, &m, &ps, &ar, &c, dy)) {
            rc = d2_fail(err, D2_ENOMEM, "bench: arena too small");
            break;
        }
        be->ops->sync(be);
        double t2 = d2_now();
        if ((rc = optim_adamw_step(&ps, &cfg, r + warm, NULL, err)))
            break;
        be->ops->sync(be);
        double t3 = d2_now();
        /* the same 9 GEMMs alone: per block y = a W^T, then da = dy W and dW = dy^T a */
        for (int i = 0; i < BLOCKS; i++)
            be->ops->gemm(be, 0, 1, BATCH, WIDTH, WIDTH, 1.0f, ga, WIDTH, ps.w + m.fc[i].w,
                          WIDTH, 1.0f, gb, WIDTH);
        for (int i = BLOCKS - 1; i >= 0; i--) {
            be->ops->gemm(be, 0, 0, BATCH, WIDTH, WIDTH, 1.0f, ga, WIDTH, ps.w + m.fc[i].w,
                          WIDTH, 1.0f, gc, WIDTH);
            be->ops->gemm(be, 1, 0, WIDTH, WIDTH, BATCH, 1.0f, ga, WIDTH, gb, WIDTH, 1.0f, gw,
                          WIDTH);
        }
        be->ops->sync(be);
        double t4 = d2_now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t1;
            to[r] = t3 - t2;
            tt[r] = t3 - t0;
            tg[r] = t4 - t3;
            tr[r] = tt[r] / tg[r];
        }
    }
    if (rc == 0) {
        out->fwd = bench_median(tf, reps);
        out->bwd = bench_median(tb, reps);
        out->opt = bench_median(to, reps);
        out->total = bench_median(tt, reps);
        out->ratio = bench_median(tr, reps);
        *gemm_only = bench_median(tg, reps);
    }
    free(tf);
    free(tb);
    free(to);
    free(tt);
    free(tg);
    free(tr);
    float *bufs[] = {ga, gb, gc, gw};
    for (int i = 0; i < 4; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    be->ops->free(be, x);
    be->ops->free(be, target);
    be->ops->free(be, dy);
    be->ops->free(be, loss);
    arena_free(&ar);
    paramset_free(&ps);
    return rc;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    backend_t *be;
    d2_error err;
    if (backend_cpu_create(&be, threads, &err)) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        return 1;
    }
    printf("bench_core: CPU backend (OpenBLAS), %d thread(s)\n\n", be->threads);

    static const gemm_shape shapes[] = {
        {"generation: 8 cand x 645 <- 512", 0, 1, 8, 645, 512},
        {"generation: 8 cand x 512 <- 645", 0, 1, 8, 512, 645},
        {"features: 256 x 128 <- 128", 0, 1, 256, 128, 128},
        {"features: 256 x 128 <- 784", 0, 1, 256, 128, 784},
        {"train: 64 x 256 <- 256", 0, 1, 64, 256, 256},
        {"train: 256 x 512 <- 512 (fwd)", 0, 1, 256, 512, 512},
        {"train: 256 x 512 <- 512 (dx)", 0, 0, 256, 512, 512},
        {"train: 512 x 512 <- 256 (dW)", 1, 0, 512, 512, 256},
        {"train: 512 x 1024 <- 1024", 0, 1, 512, 1024, 1024},
    };
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    double ref = 0;
    double gf[16];
    for (int i = 0; i < ns; i++) {
        gf[i] = bench_gemm(be, &shapes[i]);
        if (gf[i] < 0) {
            fprintf(stderr, "bench_core: out of memory\n");
            backend_destroy(be);
            return 1;
        }
        if (gf[i] > ref)
            ref = gf[i];
    }
    printf("%-36s %5s %5s %5s %4s %9s %8s\n", "sgemm shape (C[M,N] <- K)", "M", "N", "K", "op",
           "GFLOP/s", "vs best");
    for (int i = 0; i < ns; i++)
        printf("%-36s %5d %5d %5d  %c%c  %9.1f %7.2fx\n", shapes[i].what, shapes[i].M,
               shapes[i].N, shapes[i].K, shapes[i].ta ? 'T' : 'N', shapes[i].tb ? 'T' : 'N',
               gf[i], gf[i] / ref);

    /* the step on one thread and on all of them, each against its own GEMMs */
    int counts[2] = {1, be->threads};
    for (int c = 0; c < (be->threads > 1 ? 2 : 1); c++) {
        backend_t *bs = be;
        if (counts[c] != be->threads && backend_cpu_create(&bs, counts[c], &err)) {
            fprintf(stderr, "bench_core: %s\n", err.msg);
            backend_destroy(be);
            return 1;
        }
        step_times st = {0, 0, 0, 0, 0};
        double gemm_only = 0;
        int rc = bench_step(bs, 30, &st, &gemm_only, &err);
        if (bs != be)
            backend_destroy(bs);
        if (rc) {
            fprintf(stderr, "bench_core: %s\n", err.msg);
            backend_destroy(be);
            return 1;
        }
        double ratio = st.ratio;
        printf("\nresidual MLP training step: %d blocks (LayerNorm + SiLU + Linear), width %d, "
               "batch %d, %d thread(s)\n", BLOCKS, WIDTH, BATCH, counts[c]);
        printf("%-34s %10s %10s\n", "phase (median of 30 rounds)", "ms", "x GEMMs");
        printf("%-34s %10.3f %10.3f\n", "its 9 GEMMs alone", gemm_only * 1e3, 1.0);
        printf("%-34s %10.3f %10.3f\n", "forward + MSE", st.fwd * 1e3, st.fwd / gemm_only);
        printf("%-34s %10.3f %10.3f\n", "backward", st.bwd * 1e3, st.bwd / gemm_only);
        printf("%-34s %10.3f %10.3f\n", "AdamW (+ clip norm)", st.opt * 1e3,
               st.opt / gemm_only);
        printf("%-34s %10.3f %10.3f\n", "whole step", st.total * 1e3, st.total / gemm_only);
        printf("step / GEMM time (median of the per-round ratios) = %.3f (goal <= %.2f): %s\n",
               ratio, GOAL,
               ratio <= GOAL ? "met" : "NOT met");
    }
    backend_destroy(be);
    return 0;
}
