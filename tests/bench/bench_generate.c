/* bench_generate.c - generation latency of one job (8 candidates x 50 DDIM
 * steps, guidance 2, 5-shot 5-way support set) against the time the same
 * arithmetic takes as bare GEMMs, in the same run.
 *
 * The GEMMs are found by running one generation through a recording backend
 * (the CPU backend with gemm/gemm_batched wrapped), then replayed alone.
 * Usage: bench_generate [GEN.safetensors]  (default: var/default.safetensors,
 * else the test fixture built by tests/fixture.sh) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "data.h"
#include "generator.h"
#include "bench_stats.h"

#define MAX_CALLS 20000
#define RUNS 15

typedef struct gemm_call {
    int ta, tb, M, N, K, batch;
} gemm_call;

typedef struct rec_backend {
    backend_t be; /* first: the ops receive &rec->be */
    const backend_ops *orig;
    gemm_call calls[MAX_CALLS];
    int n;
} rec_backend;

static void rec_gemm(backend_t *be, int ta, int tb, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    rec_backend *r = (rec_backend *)be;
    if (r->n < MAX_CALLS)
        r->calls[r->n++] = (gemm_call){ta, tb, M, N, K, 1};
    r->orig->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void rec_gemm_batched(backend_t *be, int ta, int tb, int M, int N, int K, float alpha,
                             const float *A, int lda, long long sa, const float *B, int ldb,
                             long long sb, float beta, float *C, int ldc, long long sc, int batch)
{
    rec_backend *r = (rec_backend *)be;
    if (r->n < MAX_CALLS)
        r->calls[r->n++] = (gemm_call){ta, tb, M, N, K, batch};
    r->orig->gemm_batched(be, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc,
                          batch);
}

static int find_generator(char *out, size_t n, const char *arg)
{
    if (arg) {
        snprintf(out, n, "%s", arg);
        return 0;
    }
    if (access("var/default.safetensors", R_OK) == 0) {
        snprintf(out, n, "var/default.safetensors");
        return 0;
    }
    const char *b = getenv("D2NWG_BUILD");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sh tests/fixture.sh '%s'", b && *b ? b : "build");
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(out, (int)n, p))
        return -1;
    out[strcspn(out, "\n")] = '\0';
    return pclose(p) == 0 ? 0 : -1;
}

static int bench(const char *path, int threads, const dataset *sup)
{
    d2_error err = {0};
    backend_t *cpu = NULL;
    generator *g = NULL;
    gen_workspace *ws = NULL;
    if (backend_cpu_create(&cpu, threads, &err) || generator_load(&g, path, cpu, &err) ||
        gen_workspace_create(&ws, g, cpu, 8, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    gen_request req = {.support = sup, .candidates = 8, .steps = 50,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 1};
    gen_result res;
    // warm-up
    if (generator_generate(g, ws, &req, &res, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    gen_result_free(&res);
    // record the GEMMs of one generation
    rec_backend *rec = calloc(1, sizeof *rec);
    backend_ops ops = *cpu->ops;
    ops.gemm = rec_gemm;
    ops.gemm_batched = rec_gemm_batched;
    rec->orig = cpu->ops;
    {
        // a second copy of the generator on a backend struct that records GEMMs
        // (same CPU state underneath)
        generator *g2 = NULL;
        gen_workspace *ws2 = NULL;
        rec->be = *cpu;
        rec->be.ops = &ops;
        if (generator_load(&g2, path, &rec->be, &err) ||
            gen_workspace_create(&ws2, g2, &rec->be, 8, &err)) {
            fprintf(stderr, "bench_generate: %s\n", err.msg);
            return 1;
        }
        rec->n = 0;
        if (generator_generate(g2, ws2, &req, &res, &err)) {
            fprintf(stderr, "bench_generate: %s\n", err.msg);
            return 1;
        }
        gen_result_free(&res);
        gen_workspace_free(ws2);
        generator_free(g2);
    }
    // time full generations
    double t_gen[RUNS], t_gemm[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = d2_now();
        if (generator_generate(g, ws, &req, &res, &err)) {
            fprintf(stderr, "bench_generate: %s\n", err.msg);
            return 1;
        }
        t_gen[r] = d2_now() - t0;
        gen_result_free(&res);
    }
    // replay the recorded GEMMs on buffers of the largest size
    size_t maxa = 1, maxb = 1, maxc = 1;
    double flops = 0;
    for (int i = 0; i < rec->n; i++) {
        gemm_call *c = &rec->calls[i];
        size_t a = (size_t)c->M * c->K * c->batch, b = (size_t)c->K * c->N * c->batch,
               cc = (size_t)c->M * c->N * c->batch;
        maxa = a > maxa ? a : maxa;
        maxb = b > maxb ? b : maxb;
        maxc = cc > maxc ? cc : maxc;
        flops += 2.0 * c->M * c->N * c->K * c->batch;
    }
    float *A = backend_alloc_floats(cpu, maxa), *B = backend_alloc_floats(cpu, maxb),
          *C = backend_alloc_floats(cpu, maxc);
    for (int r = 0; r < RUNS; r++) {
        double t0 = d2_now();
        for (int i = 0; i < rec->n; i++) {
            gemm_call *c = &rec->calls[i];
            int lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
            if (c->batch == 1)
                cpu->ops->gemm(cpu, c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, lda, B, ldb, 0.0f,
                               C, c->N);
            else
                cpu->ops->gemm_batched(cpu, c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, lda,
                                       (long long)c->M * c->K, B, ldb, (long long)c->K * c->N,
                                       0.0f, C, c->N, (long long)c->M * c->N, c->batch);
        }
        t_gemm[r] = d2_now() - t0;
    }
    double mg = bench_median(t_gen, RUNS), mm = bench_median(t_gemm, RUNS);
    printf("| %7d | %8.1f | %8.1f | %6.2fx | %5d | %6.2f |\n", threads, mg * 1e3, mm * 1e3,
           mg / mm, rec->n, flops / mm * 1e-9);
    cpu->ops->free(cpu, A);
    cpu->ops->free(cpu, B);
    cpu->ops->free(cpu, C);
    free(rec);
    gen_workspace_free(ws);
    generator_free(g);
    backend_destroy(cpu);
    return 0;
}

int main(int argc, char **argv)
{
    char path[1024];
    if (find_generator(path, sizeof path, argc > 1 ? argv[1] : NULL)) {
        fprintf(stderr, "bench_generate: no generator (give a path, or make the fixture)\n");
        return 1;
    }
    d2_error err = {0};
    data_source src;
    memset(&src, 0, sizeof src);
    class_index ci;
    dataset sup = {0};
    task t = {.way = 5, .classes = {0, 1, 2, 3, 4}};
    rng r;
    rng_init(&r, 1, 0);
    if (data_source_load(&src, "fashion-mnist", &err) || class_index_build(&ci, &src.test, &err) ||
        task_draw(&src.test, &ci, &t, 5, &r, &sup, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    printf("generation of one job: 8 candidates x 50 DDIM steps, guidance 2, 5-way 5-shot\n");
    printf("generator %s; medians of %d runs; GEMM-only = the same GEMM calls replayed alone\n\n",
           path, RUNS);
    printf("| threads | job (ms) | GEMM (ms) | ratio  | GEMMs | GFLOP/s in GEMM |\n");
    printf("|--------:|---------:|----------:|-------:|------:|-------:|\n");
    int rc = bench(path, 1, &sup) || bench(path, 2, &sup);
    printf("\ngoals: job under 50 ms on this machine's CPU, within 2x of its GEMM time\n");
    dataset_free(&sup);
    class_index_free(&ci);
    data_source_free(&src);
    return rc;
}
