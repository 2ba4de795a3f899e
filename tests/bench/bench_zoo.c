/* bench_zoo.c - zoo-build throughput for the configuration: 5-way
 * linear heads on PCA-128 Fashion-MNIST features, 300 training samples per
 * class (1500), AdamW defaults. The source is loaded and the feature map
 * fitted once; then the same 200 heads are trained with one worker per core
 * and, as the baseline in the same run, single-threaded. Reports heads/s of
 * both, the parallel speed-up, and the mean query accuracy (which must be
 * identical in both runs: the zoo does not depend on the thread count).
 * Goal: >= 25 heads/s. Exits 1 when the goal is missed or the runs differ.
 *
 *   bench_zoo [tasks]      (default 200) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zoo.h"

#define GOAL_HEADS_PER_S 25.0

static double mean_query_acc(const zoo *z)
{
    double m = 0.0;
    for (int i = 0; i < z->n; i++)
        m += z->e[i].query_acc;
    return m / z->n;
}

int main(int argc, char **argv)
{
    int tasks = argc > 1 ? atoi(argv[1]) : 200;
    if (tasks < 1) {
        fprintf(stderr, "usage: bench_zoo [tasks]\n");
        return 2;
    }
    zoo_build_cfg cfg = zoo_build_defaults();
    cfg.tasks = tasks;
    zoo z;
    d2_error err = {0};
    double t0 = d2_now();
    if (zoo_prepare(&z, &cfg, &err)) {
        fprintf(stderr, "bench_zoo: %s\n", err.msg);
        return 1;
    }
    double prep = d2_now() - t0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("zoo build: %d x '%s' from %s, %d train samples per class (prepare %.2f s: load, "
           "PCA, features)\n", z.n, z.spec.text, z.source, z.per_class, prep);

    t0 = d2_now();
    if (zoo_train_entries(&z, 0, 0, &err)) {
        fprintf(stderr, "bench_zoo: %s\n", err.msg);
        zoo_free(&z);
        return 1;
    }
    double par = d2_now() - t0;
    char fp[65];
    memcpy(fp, z.fingerprint, sizeof fp);
    double acc = mean_query_acc(&z);

    t0 = d2_now();
    if (zoo_train_entries(&z, 1, 0, &err)) {
        fprintf(stderr, "bench_zoo: %s\n", err.msg);
        zoo_free(&z);
        return 1;
    }
    double one = d2_now() - t0;
    int same = !strcmp(fp, z.fingerprint);

    double rate_par = z.n / par, rate_one = z.n / one;
    printf("  %ld workers (one per core): %8.1f heads/s  (%.2f s)\n", cores, rate_par, par);
    printf("  baseline, 1 worker:        %8.1f heads/s  (%.2f s)\n", rate_one, one);
    printf("  parallel speed-up:         %8.2fx\n", rate_par / rate_one);
    printf("  mean query accuracy:       %8.4f  (same zoo in both runs: %s)\n", acc,
           same ? "yes" : "NO");
    printf("  goal >= %.0f heads/s:       %s (%.1fx the goal)\n", GOAL_HEADS_PER_S,
           rate_par >= GOAL_HEADS_PER_S ? "met" : "MISSED", rate_par / GOAL_HEADS_PER_S);
    zoo_free(&z);
    return rate_par >= GOAL_HEADS_PER_S && same ? 0 : 1;
}
