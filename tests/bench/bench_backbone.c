/* bench_backbone.c - what a convolutional backbone buys, and what it costs to train.
 *
 * Quality: N-way K-shot nearest-class-mean accuracy (the support's class means, Euclidean)
 * on glyph scripts, tasks drawn within one script (the glyph protocol), 15 queries per
 * class, in PCA-128 space (fitted on the backbone's own background data) and in the
 * backbone's feature space, on the same tasks: glyphs:validation (tuning) and
 * glyphs:heldout (never trained or tuned on).
 * Throughput: training steps (forward, backward, AdamW) of the same Conv-4 at batch 64 in
 * d2nwg and in PyTorch (Debian's python3-torch, same thread count), as a ratio.
 *
 *   bench_backbone [BACKBONE.safetensors] [tasks]
 *   (default var/backbone.safetensors, 600 tasks; without the file only throughput runs) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convnet.h"
#include "data.h"
#include "optim.h"
#include "rng.h"
#include "target.h"

#define BB_QUERIES 15
#define BB_WAY 5

typedef struct groups {
    int n;
    int first[512], count[512]; /* classes of a script are contiguous in glyph sources */
} groups;

static void script_groups(const data_source *s, groups *g)
{
    g->n = 0;
    const char *prev = NULL;
    for (int c = 0; c < s->train.classes && g->n < 512; c++) {
        int part;
        const char *name = data_source_class_group(s, c, &part);
        if (!prev || strcmp(prev, name)) {
            g->first[g->n] = c;
            g->count[g->n++] = 0;
        }
        g->count[g->n - 1]++;
        prev = name;
    }
}

/* one task's NCM accuracy in feature space f (rows of feat indexed like the source) */
static double ncm_task(const dataset *feat, const class_index *ci, const int *cls, int shots,
                       rng *r)
{
    const int F = feat->dim;
    double mean[BB_WAY][256] = {{0}};
    int q[BB_WAY][BB_QUERIES], right = 0, total = 0;
    for (int w = 0; w < BB_WAY; w++) {
        int m = ci->count[cls[w]], order[64];
        for (int i = 0; i < m && i < 64; i++)
            order[i] = ci->rows[cls[w]][i];
        for (int i = 0; i < m - 1 && i < 63; i++) { /* Fisher-Yates */
            int j = i + (int)rng_below(r, (uint32_t)(m - i));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int s = 0; s < shots; s++)
            for (int k = 0; k < F; k++)
                mean[w][k] += feat->x[(size_t)order[s] * F + k] / shots;
        for (int i = 0; i < BB_QUERIES; i++)
            q[w][i] = shots + i < m ? order[shots + i] : -1;
    }
    for (int w = 0; w < BB_WAY; w++)
        for (int i = 0; i < BB_QUERIES && q[w][i] >= 0; i++) {
            const float *x = feat->x + (size_t)q[w][i] * F;
            int best = 0;
            double bd = INFINITY;
            for (int v = 0; v < BB_WAY; v++) {
                double d = 0.0;
                for (int k = 0; k < F; k++)
                    d += (x[k] - mean[v][k]) * (x[k] - mean[v][k]);
                if (d < bd) {
                    bd = d;
                    best = v;
                }
            }
            right += best == w;
            total++;
        }
    return total ? (double)right / total : 0.0;
}

/* mean accuracy and 95% interval over `tasks` tasks (task t from stream t of seed 7) */
static void ncm_eval(const dataset *feat, const class_index *ci, const groups *g, int tasks,
                     int shots, double *mean, double *ci95)
{
    double s = 0.0, q = 0.0;
    int eligible[512], ne = 0;
    for (int i = 0; i < g->n; i++)
        if (g->count[i] >= BB_WAY)
            eligible[ne++] = i;
    for (int t = 0; t < tasks; t++) {
        rng r;
        rng_init(&r, rng_derive(7, "bench-backbone-task", (uint64_t)t), 0);
        int gi = eligible[rng_below(&r, (uint32_t)ne)], cls[BB_WAY], n = 0;
        while (n < BB_WAY) {
            int c = g->first[gi] + (int)rng_below(&r, (uint32_t)g->count[gi]), dup = 0;
            for (int k = 0; k < n; k++)
                dup |= cls[k] == c;
            if (!dup)
                cls[n++] = c;
        }
        double a = ncm_task(feat, ci, cls, shots, &r);
        s += a;
        q += a * a;
    }
    *mean = s / tasks;
    double var = q / tasks - *mean * *mean;
    *ci95 = 1.96 * sqrt(var > 0 ? var / tasks : 0);
}

static int quality_source(const char *spec, const feature_map *pca, const feature_map *cnn,
                          int tasks)
{
    data_source s;
    d2_error err = {0};
    dataset fp = {0}, fc = {0};
    class_index ci;
    if (data_source_load(&s, spec, &err) || class_index_build(&ci, &s.train, &err) ||
        feature_map_apply(pca, &s.train, &fp, &err) ||
        feature_map_apply(cnn, &s.train, &fc, &err)) {
        fprintf(stderr, "bench_backbone: %s: %s\n", spec, err.msg);
        return 1;
    }
    groups g;
    script_groups(&s, &g);
    for (int shots = 1; shots <= 5; shots += 4) {
        double mp, cp, mc, cc;
        ncm_eval(&fp, &ci, &g, tasks, shots, &mp, &cp);
        ncm_eval(&fc, &ci, &g, tasks, shots, &mc, &cc);
        printf("  %-18s %d-way %d-shot NCM: PCA-128 %.3f +- %.3f   CNN-%d %.3f +- %.3f\n", spec,
               BB_WAY, shots, mp, cp, cnn->out_dim, mc, cc);
    }
    dataset_free(&fp);
    dataset_free(&fc);
    class_index_free(&ci);
    data_source_free(&s);
    return 0;
}

/* PCA-128 fitted on every 4th row of the background data */
static int fit_pca(feature_map *pca, d2_error *err)
{
    data_source bg;
    int rc = data_source_load(&bg, "fashion-mnist+glyphs:train", err);
    if (rc)
        return rc;
    dataset sub;
    int n = (bg.train.n + 3) / 4;
    if (!(rc = dataset_alloc(&sub, n, bg.train.dim, err))) {
        for (int i = 0; i < n; i++) {
            memcpy(sub.x + (size_t)i * sub.dim, bg.train.x + (size_t)4 * i * sub.dim,
                   sizeof(float) * (size_t)sub.dim);
            sub.y[i] = bg.train.y[4 * i];
        }
        sub.classes = bg.train.classes;
        rc = feature_map_fit_pca(pca, &sub, 128, err);
        dataset_free(&sub);
    }
    data_source_free(&bg);
    return rc;
}

static int quality(const char *path, int tasks)
{
    d2_error err = {0};
    feature_map cnn, pca;
    if (feature_map_load_cnn(&cnn, path, &err)) {
        printf("  quality skipped: %s (make one: d2nwg backbone train --out %s)\n", err.msg,
               path);
        return 0;
    }
    if (fit_pca(&pca, &err)) {
        fprintf(stderr, "bench_backbone: PCA: %s\n", err.msg);
        feature_map_free(&cnn);
        return 1;
    }
    printf("backbone %s (sha256 %.12s...), %d tasks each:\n", path, feature_map_cnn_sha256(&cnn),
           tasks);
    int rc = quality_source("glyphs:validation", &pca, &cnn, tasks) ||
             quality_source("glyphs:heldout", &pca, &cnn, tasks);
    feature_map_free(&pca);
    feature_map_free(&cnn);
    return rc;
}

#define TP_BATCH 64
#define TP_WARM 3
#define TP_STEPS 20

static const char *TORCH_BENCH =
    "import sys, time, torch\n"
    "from torch import nn\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "def block(i, o):\n"
    "    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),\n"
    "                         nn.ReLU(), nn.MaxPool2d(2))\n"
    "model = nn.Sequential(block(1, 64), block(64, 64), block(64, 64), block(64, 64),\n"
    "                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 64))\n"
    "opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)\n"
    "x = torch.rand(64, 1, 28, 28)\n"
    "y = torch.randint(0, 64, (64,))\n"
    "def step():\n"
    "    opt.zero_grad()\n"
    "    nn.functional.cross_entropy(model(x), y).backward()\n"
    "    opt.step()\n"
    "for _ in range(3):\n"
    "    step()\n"
    "t = time.perf_counter()\n"
    "for _ in range(20):\n"
    "    step()\n"
    "print((time.perf_counter() - t) / 20)\n";

/* seconds per d2nwg training step of Conv-4 (64 channels, 64 classes) at batch 64 */
static double d2nwg_step_seconds(int threads, d2_error *err)
{
    backend_t *be = NULL;
    if (backend_cpu_create(&be, threads, err))
        return -1;
    convnet n;
    paramset ps, bufs;
    arena ar;
    paramset_init(&ps);
    paramset_init(&bufs);
    double sec = -1;
    float *x = NULL, *dl = NULL, *loss = NULL;
    int32_t y[TP_BATCH], *yd = NULL;
    adamw_cfg opt = adamw_defaults();
    if (convnet_init(&n, &ps, &bufs, 1, 28, 28, 64, 4, 64, err) ||
        paramset_alloc(&ps, be, 1, err) || paramset_alloc(&bufs, be, 1, err) ||
        paramset_alloc_optim(&ps, err) ||
        arena_init(&ar, be, convnet_arena_bytes(&n, TP_BATCH), err))
        goto out;
    x = backend_alloc_floats(be, TP_BATCH * 784);
    dl = backend_alloc_floats(be, TP_BATCH * 64);
    loss = backend_alloc_floats(be, 1);
    yd = be->ops->alloc(be, sizeof y);
    for (int i = 0; i < TP_BATCH; i++)
        y[i] = i;
    be->ops->to_device(be, yd, y, sizeof y);
    be->ops->rand_normal(be, x, TP_BATCH * 784, 3, 0, 0.5f, 0.25f);
    double t0 = 0;
    for (int s = 0; s < TP_WARM + TP_STEPS; s++) {
        if (s == TP_WARM)
            t0 = d2_now();
        convnet_cache c;
        arena_reset(&ar, 0);
        paramset_zero_grad(&ps);
        if (convnet_forward(be, &n, &ps, &bufs, &ar, &c, x, TP_BATCH, 1, err))
            goto out_ar;
        be->ops->cross_entropy(be, loss, dl, c.logits, yd, TP_BATCH, 64, 1.0f);
        if (convnet_backward(be, &n, &ps, &ar, &c, NULL, dl, err) ||
            optim_adamw_step(&ps, &opt, s, NULL, err))
            goto out_ar;
    }
    float l;
    be->ops->to_host(be, &l, loss, sizeof l);
    sec = (d2_now() - t0) / TP_STEPS;
out_ar:
    arena_free(&ar);
out:
    if (x)
        be->ops->free(be, x);
    if (dl)
        be->ops->free(be, dl);
    if (loss)
        be->ops->free(be, loss);
    if (yd)
        be->ops->free(be, yd);
    paramset_free(&ps);
    paramset_free(&bufs);
    backend_destroy(be);
    return sec;
}

/* PyTorch's seconds per step, or -1 (no torch) */
static double torch_step_seconds(int threads)
{
    char py[] = "/tmp/d2nwg-bench-backbone-XXXXXX";
    int fd = mkstemp(py);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f)
        return -1;
    fputs(TORCH_BENCH, f);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %d 2>/dev/null", py, threads);
    FILE *p = popen(cmd, "r");
    double sec = -1;
    if (p) {
        if (fscanf(p, "%lf", &sec) != 1)
            sec = -1;
        pclose(p);
    }
    remove(py);
    return sec;
}

static int throughput(void)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nproc > 0 ? (int)nproc : 1;
    d2_error err = {0};
    double d = d2nwg_step_seconds(threads, &err);
    if (d < 0) {
        fprintf(stderr, "bench_backbone: %s\n", err.msg);
        return 1;
    }
    double t = torch_step_seconds(threads);
    printf("Conv-4 training, batch %d, %d threads: d2nwg %.1f ms/step (%.0f images/s)", TP_BATCH,
           threads, d * 1e3, TP_BATCH / d);
    if (t < 0)
        printf("; PyTorch skipped (/usr/bin/python3 cannot import torch)\n");
    else
        printf("; PyTorch %.1f ms/step; d2nwg/PyTorch throughput %.2fx\n", t * 1e3, t / d);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "var/backbone.safetensors";
    int tasks = argc > 2 ? atoi(argv[2]) : 600;
    if (tasks < 1) {
        fprintf(stderr, "usage: bench_backbone [BACKBONE.safetensors] [tasks]\n");
        return 2;
    }
    int rc = throughput();
    return quality(path, tasks) || rc;
}
