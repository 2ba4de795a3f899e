/* bench_gpu.c - CUDA against CPU in one run (issue 7), at the generator's own sizes
 * (gen_config_defaults for a 5-way linear head on 128 features):
 *   1. GEMMs: the shapes of the weight VAE, the denoiser (sampling and training rows)
 *      and one large square problem, cuBLAS FP32 against OpenBLAS;
 *   2. one training step of a residual MLP (forward, MSE, backward, AdamW with
 *      global-norm clipping) at the VAE's size and at a wider size;
 *   3. the device part of generation: dataset encoder on a 5-way 5-shot support set,
 *      50 DDIM steps of the denoiser with guidance (2 condition rows x K candidates),
 *      VAE decode of the K latents, read back - for K = 8 (one job) and K = 256.
 * Every figure is a ratio of two timings taken in this run (CPU time / GPU time; above 1
 * means the GPU is faster). Parameters are random (timing does not depend on training).
 * Built in every configuration; without CUDA it says so and exits 0.
 *
 *   bench_gpu [--max-seconds S]   (default 240)
 *   bench_gpu --devices           prints "cuda devices: N" (N = 0 without CUDA) and exits
 * Past S seconds the remaining rows are skipped, each named with "skipped (time budget)",
 * and the summary says which figures are missing; tests/bench/gpu.sh passes what is left
 * of its own deadline. Output is line-buffered, so a run killed by a timeout keeps its
 * finished rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifdef D2_WITH_CUDA

#include "arena.h"
#include "gen_model.h"
#include "optim.h"
#include "rng.h"

#define BENCH_P 645 /* 128 * 5 + 5: a 5-way linear head on 128 features */
#define BENCH_FEAT 128
#define BENCH_WAY 5

typedef struct bench_be {
    backend_t *be;
    const char *name;
} bench_be;

static int bench_sync(backend_t *be, const char *what)
{
    int rc = be->ops->sync(be);
    if (rc)
        fprintf(stderr, "bench_gpu: %s on %s failed: %s\n", what, be->ops->name,
                be->ops->error_message ? be->ops->error_message(be) : d2_strerror(rc));
    return rc;
}

static float *bench_random(backend_t *be, size_t n, uint64_t seed, float std)
{
    float *d = backend_alloc_floats(be, n);
    if (d)
        be->ops->rand_normal(be, d, n, seed, 0, 0.0f, std);
    return d;
}

/* ---- 1. GEMMs ---- */

typedef struct gemm_case {
    const char *what;
    int ta, tb, M, N, K;
} gemm_case;

/* seconds per call of one gemm shape on be, `reps` calls after a warm-up */
static double bench_gemm_one(backend_t *be, const gemm_case *g, int reps, int *fail)
{
    size_t na = (size_t)g->M * g->K, nb = (size_t)g->K * g->N, nc = (size_t)g->M * g->N;
    float *A = bench_random(be, na, 1, 1.0f), *B = bench_random(be, nb, 2, 1.0f);
    float *C = backend_alloc_floats(be, nc);
    double dt = -1.0;
    if (!A || !B || !C) {
        fprintf(stderr, "bench_gpu: out of memory on %s\n", be->ops->name);
        *fail = 1;
        goto out;
    }
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    for (int i = 0; i < 3; i++)
        be->ops->gemm(be, g->ta, g->tb, g->M, g->N, g->K, 1.0f, A, lda, B, ldb, 0.0f, C, g->N);
    if (bench_sync(be, g->what)) {
        *fail = 1;
        goto out;
    }
    double t0 = d2_now();
    for (int i = 0; i < reps; i++)
        be->ops->gemm(be, g->ta, g->tb, g->M, g->N, g->K, 1.0f, A, lda, B, ldb, 0.0f, C, g->N);
    if (bench_sync(be, g->what)) {
        *fail = 1;
        goto out;
    }
    dt = (d2_now() - t0) / reps;
out:
    be->ops->free(be, A);
    be->ops->free(be, B);
    be->ops->free(be, C);
    return dt;
}

static int bench_past(double deadline, const char *what)
{
    if (d2_now() <= deadline)
        return 0;
    printf("%-34s skipped (time budget)\n", what);
    return 1;
}

static int bench_gemms(bench_be *cpu, bench_be *gpu, const gen_config *c, double deadline,
                       double *geo)
{
    const int P = c->P, H = c->vae_hidden, L = c->latent, Hd = c->den_hidden,
              R = c->den_ratio * c->den_hidden;
    const int Bv = 128, Bt = 128, Bs = 16; /* VAE batch, denoiser train rows, sampling rows */
    gemm_case cases[] = {
        {"vae enc in      x[128,645] W^T", 0, 1, Bv, H, P},
        {"vae block       x[128,256] W^T", 0, 1, Bv, H, H},
        {"vae dec out     x[128,256] W^T", 0, 1, Bv, P, H},
        {"vae enc in dW   dy^T x", 1, 0, H, P, Bv},
        {"vae dec in dx   dy W", 0, 0, Bv, L, H},
        {"den fc1 sample  x[16,256] W^T", 0, 1, Bs, R, Hd},
        {"den fc2 sample  x[16,512] W^T", 0, 1, Bs, Hd, R},
        {"den fc1 train   x[128,256] W^T", 0, 1, Bt, R, Hd},
        {"den fc2 dW      dy^T x", 1, 0, Hd, R, Bt},
        {"square 1024^3", 0, 0, 1024, 1024, 1024},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    printf("\n== GEMM: cuBLAS FP32 vs OpenBLAS (%d threads), seconds per call\n",
           cpu->be->threads);
    printf("%-34s %5s %5s %5s %11s %11s %8s %9s\n", "shape", "M", "N", "K", "cpu ms",
           "gpu ms", "cpu/gpu", "gpu GF/s");
    double logsum = 0.0;
    int fail = 0, done = 0;
    for (int i = 0; i < n && !fail; i++) {
        gemm_case *g = &cases[i];
        if (bench_past(deadline, g->what))
            continue;
        double flops = 2.0 * g->M * g->N * g->K;
        /* about 0.25 s of CPU work per shape */
        double probe = bench_gemm_one(cpu->be, g, 3, &fail);
        if (fail)
            break;
        int reps = probe > 0 ? (int)(0.25 / probe) : 1000;
        reps = reps < 5 ? 5 : reps > 5000 ? 5000 : reps;
        double tc = bench_gemm_one(cpu->be, g, reps, &fail);
        double tg = fail ? -1 : bench_gemm_one(gpu->be, g, reps, &fail);
        if (fail)
            break;
        printf("%-34s %5d %5d %5d %11.4f %11.4f %8.2f %9.1f\n", g->what, g->M, g->N, g->K,
               tc * 1e3, tg * 1e3, tc / tg, flops / tg * 1e-9);
        logsum += log(tc / tg);
        done++;
    }
    *geo = fail || !done ? 0.0 : exp(logsum / done);
    if (!fail && done)
        printf("geometric mean cpu/gpu over %d of the %d shapes: %.2f\n", done, n, *geo);
    return fail;
}

/* ---- 2. training step of a residual MLP ---- */

typedef struct train_case {
    const char *what;
    int in, hidden, out, blocks, batch;
} train_case;

/* seconds per step (after 3 warm-up steps); *loss receives the last loss */
static double bench_train(backend_t *be, const train_case *tc, int steps, float *loss, int *fail)
{
    d2_error err = {0};
    paramset ps;
    resmlp m;
    arena ar;
    memset(&ar, 0, sizeof ar);
    paramset_init(&ps);
    double dt = -1.0;
    float *x = NULL, *y = NULL, *dy = NULL, *out = NULL;
    if (resmlp_init(&m, &ps, "mlp", tc->in, tc->hidden, tc->out, tc->blocks, 0.1f, &err) ||
        paramset_alloc(&ps, be, 11, &err) || paramset_alloc_optim(&ps, &err) ||
        arena_init(&ar, be, (size_t)256 << 20, &err)) {
        fprintf(stderr, "bench_gpu: %s on %s: %s\n", tc->what, be->ops->name, err.msg);
        *fail = 1;
        goto out;
    }
    x = bench_random(be, (size_t)tc->batch * tc->in, 3, 1.0f);
    y = bench_random(be, (size_t)tc->batch * tc->out, 4, 1.0f);
    dy = backend_alloc_floats(be, (size_t)tc->batch * tc->out);
    out = backend_alloc_floats(be, 1);
    if (!x || !y || !dy || !out) {
        fprintf(stderr, "bench_gpu: out of memory on %s\n", be->ops->name);
        *fail = 1;
        goto out;
    }
    adamw_cfg oc = adamw_defaults();
    size_t mark = arena_mark(&ar);
    double t0 = 0.0;
    for (int s = 0; s < steps + 3; s++) {
        if (s == 3) {
            if (bench_sync(be, tc->what)) {
                *fail = 1;
                goto out;
            }
            t0 = d2_now();
        }
        resmlp_cache c;
        paramset_zero_grad(&ps);
        if (resmlp_forward(be, &m, &ps, &ar, &c, x, tc->batch, &err))
            goto fail_err;
        be->ops->mse(be, out, dy, c.y, y, (size_t)tc->batch * tc->out, 1.0f);
        if (resmlp_backward(be, &m, &ps, &ar, &c, NULL, dy, &err))
            goto fail_err;
        /* the clipping reads the gradient norm back: one host round-trip per step */
        if (optim_adamw_step(&ps, &oc, s, NULL, &err))
            goto fail_err;
        arena_reset(&ar, mark);
    }
    if (be->ops->to_host(be, loss, out, sizeof *loss) || bench_sync(be, tc->what)) {
        *fail = 1;
        goto out;
    }
    dt = (d2_now() - t0) / steps;
    goto out;
fail_err:
    fprintf(stderr, "bench_gpu: %s on %s: %s\n", tc->what, be->ops->name, err.msg);
    *fail = 1;
out:
    be->ops->free(be, x);
    be->ops->free(be, y);
    be->ops->free(be, dy);
    be->ops->free(be, out);
    if (ar.be)
        arena_free(&ar);
    paramset_free(&ps);
    return dt;
}

static int bench_training(bench_be *cpu, bench_be *gpu, const gen_config *c, double deadline,
                          double *ratio)
{
    train_case cases[] = {
        {"VAE encoder (model size)", c->P, c->vae_hidden, 2 * c->latent, c->vae_blocks, 128},
        {"wide residual MLP", 1024, 1024, 1024, 4, 512},
    };
    printf("\n== training step of a residual MLP (forward, MSE, backward, AdamW + clipping)\n");
    printf("%-26s %5s %6s %6s %6s %11s %11s %8s\n", "case", "in", "hidden", "blocks", "batch",
           "cpu ms", "gpu ms", "cpu/gpu");
    int fail = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && !fail; i++) {
        train_case *t = &cases[i];
        if (bench_past(deadline, t->what))
            continue;
        float lc = 0, lg = 0;
        double probe = bench_train(cpu->be, t, 2, &lc, &fail);
        if (fail)
            break;
        int steps = probe > 0 ? (int)(0.5 / probe) : 50;
        steps = steps < 5 ? 5 : steps > 400 ? 400 : steps;
        double tc = bench_train(cpu->be, t, steps, &lc, &fail);
        double tg = fail ? -1 : bench_train(gpu->be, t, steps, &lg, &fail);
        if (fail)
            break;
        printf("%-26s %5d %6d %6d %6d %11.3f %11.3f %8.2f   (loss after %d steps: cpu %.5g, "
               "gpu %.5g)\n",
               t->what, t->in, t->hidden, t->blocks, t->batch, tc * 1e3, tg * 1e3, tc / tg,
               steps + 3, (double)lc, (double)lg);
        if (i == 0)
            *ratio = tc / tg;
    }
    return fail;
}

/* ---- 3. generation (device part) ---- */

typedef struct gen_net {
    paramset ps, vae_ps;
    setenc enc;
    denoiser den;
    resmlp dec;
    arena ar;
} gen_net;

static void gen_net_free(backend_t *be, gen_net *n)
{
    (void)be;
    if (n->ar.be)
        arena_free(&n->ar);
    paramset_free(&n->ps);
    paramset_free(&n->vae_ps);
}

static int gen_net_init(gen_net *n, backend_t *be, const gen_config *c, int K, d2_error *err)
{
    memset(n, 0, sizeof *n);
    paramset_init(&n->ps);
    paramset_init(&n->vae_ps);
    setenc_cfg ec = {c->feat_dim, c->enc_d, c->enc_heads, c->enc_inducing, c->way, c->cond_dim};
    denoiser_cfg dc = {c->latent, c->den_hidden, c->den_ratio, c->den_blocks, c->cond_dim,
                       c->temb_dim};
    int rc;
    if ((rc = setenc_init(&n->enc, &n->ps, "enc", &ec, err)) ||
        (rc = denoiser_init(&n->den, &n->ps, "den", &dc, err)) ||
        (rc = resmlp_init(&n->dec, &n->vae_ps, "dec", c->latent, c->vae_hidden, c->P,
                          c->vae_blocks, 1.0f, err)) ||
        (rc = paramset_alloc(&n->ps, be, 21, err)) ||
        (rc = paramset_alloc(&n->vae_ps, be, 22, err)))
        return rc;
    /* random weights everywhere (adaLN-Zero would start mod/fout at 0) */
    be->ops->rand_normal(be, n->ps.w, n->ps.total, 23, 0, 0.0f, 0.05f);
    /* the denoiser's caches for 2K rows plus the encoder and decoder */
    size_t bytes = ((size_t)64 << 20) + (size_t)K * ((size_t)256 << 10);
    return arena_init(&n->ar, be, bytes, err);
}

/* one generation: encode the support set, `steps` guided DDIM steps for K candidates,
 * decode, read the weights back */
static int gen_once(backend_t *be, gen_net *n, const gen_config *c, const float *support,
                    int K, int steps, float *theta_host, d2_error *err)
{
    const backend_ops *op = be->ops;
    const int S = 2, L = c->latent, C = c->cond_dim, shots = 5;
    size_t mark = arena_mark(&n->ar);
    int rc = 0;
    setenc_cache ec;
    if ((rc = setenc_forward(be, &n->enc, &n->ps, &n->ar, &ec, support, 1, c->way, shots, NULL, err)))
        goto out;
    float *condS = arena_floats(&n->ar, (size_t)S * C);
    float *z = arena_floats(&n->ar, (size_t)K * L);
    float *zin = arena_floats(&n->ar, (size_t)S * K * L);
    float *tembd = arena_floats(&n->ar, (size_t)S * c->temb_dim);
    float *temb = malloc((size_t)S * c->temb_dim * sizeof(float));
    if (!condS || !z || !zin || !tembd || !temb) {
        free(temb);
        rc = d2_fail(err, D2_ENOMEM, "generation scratch does not fit");
        goto out;
    }
    op->copy(be, condS, ec.cond, (size_t)C * sizeof(float));
    op->copy(be, condS + C, n->ps.w + n->den.null_cond, (size_t)C * sizeof(float));
    op->rand_normal(be, z, (size_t)K * L, 99, 0, 0.0f, 1.0f);
    for (int i = 0; i < steps && rc == 0; i++) {
        int t = (steps - 1 - i) * c->T / steps;
        int ts[2] = {t, t};
        denoiser_timestep_features(c->temb_dim, ts, S, temb);
        if ((rc = op->to_device(be, tembd, temb, (size_t)S * c->temb_dim * sizeof(float))))
            break;
        for (int s = 0; s < S; s++)
            op->copy(be, zin + (size_t)s * K * L, z, (size_t)K * L * sizeof(float));
        size_t inner = arena_mark(&n->ar);
        denoiser_cache dc;
        if ((rc = denoiser_forward(be, &n->den, &n->ps, &n->ar, &dc, zin, tembd, condS, S, K,
                                   err)))
            break;
        op->axpby(be, dc.eps, -1.0f, dc.eps + (size_t)K * L, 2.0f, (size_t)K * L);
        op->axpby(be, z, -0.02f, dc.eps, 0.999f, (size_t)K * L);
        arena_reset(&n->ar, inner);
    }
    free(temb);
    if (rc)
        goto out;
    resmlp_cache vc;
    if ((rc = resmlp_forward(be, &n->dec, &n->vae_ps, &n->ar, &vc, z, K, err)))
        goto out;
    rc = op->to_host(be, theta_host, vc.y, (size_t)K * c->P * sizeof(float));
out:
    arena_reset(&n->ar, mark);
    return rc;
}

static double bench_gen_one(backend_t *be, const gen_config *c, int K, int steps, int reps,
                            int *fail)
{
    d2_error err = {0};
    gen_net n;
    double dt = -1.0;
    float *theta = malloc((size_t)K * c->P * sizeof(float));
    float *sup_h = malloc((size_t)c->way * 5 * c->feat_dim * sizeof(float));
    float *sup = backend_alloc_floats(be, (size_t)c->way * 5 * c->feat_dim);
    int init_rc = gen_net_init(&n, be, c, K, &err);
    if (!theta || !sup_h || !sup || init_rc) {
        fprintf(stderr, "bench_gpu: generation setup on %s: %s\n", be->ops->name,
                err.msg[0] ? err.msg : "out of memory");
        *fail = 1;
        be->ops->free(be, sup);
        gen_net_free(be, &n);
        free(theta);
        free(sup_h);
        return dt;
    }
    rng_fill_normal(sup_h, (size_t)c->way * 5 * c->feat_dim, 5, 0, 0.0f, 1.0f);
    int rc = be->ops->to_device(be, sup, sup_h, (size_t)c->way * 5 * c->feat_dim * sizeof(float));
    if (!rc)
        rc = gen_once(be, &n, c, sup, K, steps, theta, &err); /* warm-up */
    double t0 = d2_now();
    for (int r = 0; r < reps && !rc; r++)
        rc = gen_once(be, &n, c, sup, K, steps, theta, &err);
    if (rc) {
        fprintf(stderr, "bench_gpu: generation on %s: %s\n", be->ops->name,
                err.msg[0] ? err.msg : d2_strerror(rc));
        *fail = 1;
    } else {
        dt = (d2_now() - t0) / reps;
    }
    be->ops->free(be, sup);
    gen_net_free(be, &n);
    free(theta);
    free(sup_h);
    return dt;
}

static int bench_generation(bench_be *cpu, bench_be *gpu, const gen_config *c,
                            double deadline, double *ratio)
{
    const int Ks[] = {c->candidates, 256};
    printf("\n== generation, device part: encoder + %d guided DDIM steps + VAE decode + read "
           "back\n", c->steps);
    printf("%-12s %11s %11s %8s\n", "candidates", "cpu ms", "gpu ms", "cpu/gpu");
    int fail = 0;
    for (size_t i = 0; i < 2 && !fail; i++) {
        int K = Ks[i];
        char what[48];
        snprintf(what, sizeof what, "K = %d", K);
        if (bench_past(deadline, what))
            continue;
        double probe = bench_gen_one(cpu->be, c, K, c->steps, 1, &fail);
        if (fail)
            break;
        int reps = probe > 0 ? (int)(1.0 / probe) : 10;
        reps = reps < 2 ? 2 : reps > 50 ? 50 : reps;
        double tc = bench_gen_one(cpu->be, c, K, c->steps, reps, &fail);
        double tg = fail ? -1 : bench_gen_one(gpu->be, c, K, c->steps, reps, &fail);
        if (fail)
            break;
        printf("%-12d %11.2f %11.2f %8.2f\n", K, tc * 1e3, tg * 1e3, tc / tg);
        if (i == 0)
            *ratio = tc / tg;
    }
    return fail;
}

static int bench_run(double max_seconds)
{
    const double deadline = d2_now() + max_seconds;
    int count = backend_cuda_device_count();
    if (count <= 0) {
        printf("no GPU visible: nothing to time\n");
        return 0;
    }
    d2_error err = {0};
    bench_be cpu = {NULL, "cpu"}, gpu = {NULL, "cuda:0"};
    if (backend_cpu_create(&cpu.be, 0, &err) || backend_cuda_create(&gpu.be, 0, &err)) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg);
        if (cpu.be)
            backend_destroy(cpu.be);
        return 1;
    }
    size_t used = 0, total = 0;
    gpu.be->ops->memory(gpu.be, &used, &total);
    const char *tf = getenv("D2NWG_TF32");
    printf("bench_gpu: cuda:0 (%zu MiB device memory, GEMMs %s) vs cpu (%d threads)\n",
           total >> 20, tf && !strcmp(tf, "1") ? "TF32" : "FP32", cpu.be->threads);
    gen_config c = gen_config_defaults(BENCH_P, 784, BENCH_FEAT, BENCH_WAY, "linear 128->5");
    printf("generation: K = %d candidates x %d DDIM steps; time budget %.0f s\n", c.candidates,
           c.steps, max_seconds);
    /* 0: not measured (skipped for the time budget) */
    double g_gemm = 0, g_train = 0, g_gen = 0;
    int fail = bench_gemms(&cpu, &gpu, &c, deadline, &g_gemm);
    if (!fail)
        fail = bench_training(&cpu, &gpu, &c, deadline, &g_train);
    if (!fail)
        fail = bench_generation(&cpu, &gpu, &c, deadline, &g_gen);
    if (!fail)
        printf("\nsummary cpu/gpu (above 1: GPU faster; 0: skipped for time): gemm geomean "
               "%.2f, VAE training step %.2f, generation (K=%d, %d steps) %.2f\n",
               g_gemm, g_train, c.candidates, c.steps, g_gen);
    backend_destroy(gpu.be);
    backend_destroy(cpu.be);
    return fail;
}

#endif /* D2_WITH_CUDA */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    double max_seconds = 240.0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--devices") == 0) {
#ifdef D2_WITH_CUDA
            printf("cuda devices: %d\n", backend_cuda_device_count());
#else
            printf("cuda devices: 0 (no CUDA in this build)\n");
#endif
            return 0;
        }
        if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc &&
            (max_seconds = strtod(argv[i + 1], &end)) > 0 && end && !*end) {
            i++;
        } else {
            fprintf(stderr, "usage: bench_gpu [--max-seconds S | --devices]  (S > 0, default "
                            "240)\n");
            return 2;
        }
    }
#ifdef D2_WITH_CUDA
    return bench_run(max_seconds);
#else
    printf("no CUDA in this build (%.0f s budget unused)\n", max_seconds);
    return 0;
#endif
}
