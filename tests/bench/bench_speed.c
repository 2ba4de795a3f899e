/* bench_speed.c - the time of one generation job (8 candidates x 50 DDIM steps, guidance 2,
 * 5-way 5-shot Fashion-MNIST support set: the daemon's default request) at 1 and 2 threads,
 * alternating, medians of 3 rounds: the second core's speed-up on a job (issue 19).
 *
 * Usage: bench_speed                        the speed-up table (default generator)
 *        bench_speed gen GEN THREADS REPS   one line "RESULT gen <ms>": the median of REPS
 *                                           jobs after a warm-up (bench_torch.sh compares it
 *                                           with its PyTorch replica) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "data.h"
#include "generator.h"
#include "bench_stats.h"

#define ROUNDS 3
#define JOBS 10

/* the 5-way 5-shot support set of the Fashion-MNIST test split (seed 1) */
static int draw_support(data_source *src, class_index *ci, dataset *sup, d2_error *err)
{
    task t = {.way = 5, .classes = {0, 1, 2, 3, 4}};
    rng r;
    rng_init(&r, 1, 0);
    memset(src, 0, sizeof *src);
    memset(ci, 0, sizeof *ci);
    int rc = data_source_load(src, "fashion-mnist", err);
    if (!rc)
        rc = class_index_build(ci, &src->test, err);
    if (!rc)
        rc = task_draw(&src->test, ci, &t, 5, &r, sup, err);
    return rc;
}

/* median ms of `jobs` generation jobs on `threads` threads, after one warm-up job */
static int time_jobs(const char *path, const dataset *sup, int threads, int jobs, double *ms,
                     d2_error *err)
{
    backend_t *cpu = NULL;
    generator *g = NULL;
    gen_workspace *ws = NULL;
    double *t = calloc((size_t)jobs + 1, sizeof *t);
    int rc = t ? 0 : d2_fail(err, D2_ENOMEM, "out of memory");
    if (!rc)
        rc = backend_cpu_create(&cpu, threads, err);
    if (!rc)
        rc = generator_load(&g, path, cpu, err);
    if (!rc)
        rc = gen_workspace_create(&ws, g, cpu, 8, err);
    gen_request req = {.support = sup, .candidates = 8, .steps = 50,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 1};
    for (int i = 0; !rc && i <= jobs; i++) {
        gen_result res;
        double t0 = d2_now();
        rc = generator_generate(g, ws, &req, &res, err);
        t[i] = d2_now() - t0;
        if (!rc)
            gen_result_free(&res);
    }
    if (!rc)
        *ms = 1e3 * bench_median(t + 1, jobs);
    free(t);
    gen_workspace_free(ws);
    generator_free(g);
    backend_destroy(cpu);
    return rc;
}

static int speedup_table(const char *path, const dataset *sup, d2_error *err)
{
    double t1[ROUNDS], t2[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        int rc = time_jobs(path, sup, 1, JOBS, &t1[r], err);
        if (!rc)
            rc = time_jobs(path, sup, 2, JOBS, &t2[r], err);
        if (rc)
            return rc;
    }
    double m1 = bench_median(t1, ROUNDS), m2 = bench_median(t2, ROUNDS);
    printf("generation job (8 candidates x 50 DDIM steps, guidance 2, 5-way 5-shot), %s\n",
           path);
    printf("medians of %d rounds of %d jobs, 1 and 2 threads alternating\n\n", ROUNDS, JOBS);
    printf("| threads | job (ms) |\n|--------:|---------:|\n| 1 | %.1f |\n| 2 | %.1f |\n", m1,
           m2);
    printf("\nsecond core: %.2fx (goal >= 1.7x)\n", m1 / m2);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = "var/default.safetensors";
    int gen_mode = argc >= 5 && strcmp(argv[1], "gen") == 0;
    if (argc > 1 && !gen_mode) {
        fprintf(stderr, "usage: bench_speed [gen GEN THREADS REPS]\n");
        return 2;
    }
    if (gen_mode)
        path = argv[2];
    if (access(path, R_OK) != 0) {
        printf("bench_speed: skipped (no %s; make generators)\n", path);
        return 0;
    }
    d2_error err = {0};
    data_source src;
    class_index ci;
    dataset sup = {0};
    int rc = draw_support(&src, &ci, &sup, &err);
    if (!rc && gen_mode) {
        double ms = 0;
        rc = time_jobs(path, &sup, atoi(argv[3]), atoi(argv[4]) > 0 ? atoi(argv[4]) : 1, &ms,
                       &err);
        if (!rc)
            printf("RESULT gen %.3f\n", ms);
    } else if (!rc) {
        rc = speedup_table(path, &sup, &err);
    }
    if (rc)
        fprintf(stderr, "bench_speed: %s\n", err.msg);
    dataset_free(&sup);
    class_index_free(&ci);
    data_source_free(&src);
    return rc ? 1 : 0;
}
