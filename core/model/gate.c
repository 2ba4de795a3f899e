/* gate.c - cross-validated choice between the diffusion candidates and the
 * baselines, and the out-of-distribution measure (see gate.h). */
#include "gate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"

int gen_method_parse_baseline(const char *s, gen_method *out)
{
    if (!strcmp(s, "prototypes"))
        *out = GEN_METHOD_PROTOTYPES;
    else if (!strcmp(s, "logreg"))
        *out = GEN_METHOD_LOGREG;
    else
        return -1;
    return 0;
}

const char *gen_method_name(gen_method m)
{
    switch (m) {
    case GEN_METHOD_DIFFUSION: return "diffusion";
    case GEN_METHOD_PROTOTYPES: return "prototypes";
    case GEN_METHOD_LOGREG: return "logreg";
    default: return "unknown";
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float emb_dist(const float *a, const float *b, int C)
{
    double d = 0;
    for (int j = 0; j < C; j++) {
        double e = (double)a[j] - b[j];
        d += e * e;
    }
    return (float)sqrt(d);
}

/* Distance from cond [C] to the nearest zoo embedding other than `skip`. */
static float nearest_emb(const generator *g, const float *cond, int skip)
{
    const int C = g->cfg.cond_dim;
    float best = INFINITY;
    for (int i = 0; i < g->zoo_n; i++)
        if (i != skip) {
            float d = emb_dist(cond, g->zoo_emb + (size_t)i * C, C);
            best = d < best ? d : best;
        }
    return best;
}

int gen_gate_reference(generator *g, d2_error *err)
{
    free(g->zoo_nn);
    g->zoo_nn = NULL;
    g->zoo_nn_n = 0;
    if (g->zoo_n < 2)
        return 0;
    const int n = g->zoo_n < GATE_REF_ENTRIES ? g->zoo_n : GATE_REF_ENTRIES;
    if (!(g->zoo_nn = malloc((size_t)n * sizeof(float))))
        return d2_fail(err, D2_ENOMEM, "out of memory for the zoo distance reference");
    // entries spread evenly over the zoo, each against every other entry
    for (int r = 0; r < n; r++) {
        int i = (int)((long long)r * g->zoo_n / n);
        g->zoo_nn[r] = nearest_emb(g, g->zoo_emb + (size_t)i * g->cfg.cond_dim, i);
    }
    qsort(g->zoo_nn, (size_t)n, sizeof(float), cmp_float);
    g->zoo_nn_n = n;
    return 0;
}

void gen_progress_span_fn(void *span, float fraction)
{
    const gen_progress_span *sp = span;
    sp->fn(sp->ctx, sp->lo + (sp->hi - sp->lo) * fraction);
}

static int gate_applies(const generator *g)
{
    return g->spec.nlayers == 1 && g->spec.layers[0].kind == TL_LINEAR;
}

int gen_gate_folds(const generator *g, const int *counts, int way)
{
    int shots = counts[0];
    for (int c = 1; c < way; c++)
        shots = counts[c] < shots ? counts[c] : shots;
    if (!gate_applies(g) || shots < 2)
        return 0;
    return shots < GATE_MAX_FOLDS ? shots : GATE_MAX_FOLDS;
}

static void gate_ood(const generator *g, const float *cond, gen_gate *gate)
{
    gate->ood_distance = NAN;
    gate->ood_percentile = NAN;
    gate->ood = 0;
    if (g->zoo_nn_n < 1)
        return;
    float d = nearest_emb(g, cond, -1);
    int below = 0;
    while (below < g->zoo_nn_n && g->zoo_nn[below] < d)
        below++;
    gate->ood_distance = d;
    gate->ood_percentile = 100.0f * (float)below / (float)g->zoo_nn_n;
    gate->ood = gate->ood_percentile > GATE_OOD_PERCENTILE;
}

/* Split the support set (rows sorted by class) into fold f's training and
 * held-out parts: a row is held out when its index within its class is f mod folds. */
static int fold_split(const dataset *feat, int folds, int f, dataset *train, dataset *held,
                      d2_error *err)
{
    const int F = feat->dim;
    int nh = 0, seen[D2_MAX_WAY] = {0};
    for (int i = 0; i < feat->n; i++)
        nh += seen[feat->y[i]]++ % folds == f;
    int rc;
    if ((rc = dataset_alloc(train, feat->n - nh, F, err)) ||
        (rc = dataset_alloc(held, nh, F, err)))
        return rc;
    memset(seen, 0, sizeof seen);
    int a = 0, b = 0;
    for (int i = 0; i < feat->n; i++) {
        dataset *d = seen[feat->y[i]]++ % folds == f ? held : train;
        int row = d == held ? b++ : a++;
        memcpy(d->x + (size_t)row * F, feat->x + (size_t)i * F, (size_t)F * sizeof(float));
        d->y[row] = feat->y[i];
    }
    train->classes = held->classes = feat->classes;
    return 0;
}

/* Held-out correct predictions of each method on one fold. */
static int fold_scores(const generator *g, gen_workspace *ws, const gen_request *req,
                       const dataset *train, const dataset *held, int fold, int folds, float *W,
                       double *right, d2_error *err)
{
    const int N = train->classes, F = train->dim;
    float *b = W + (size_t)N * F;
    int rc;
    if ((rc = baseline_prototype_head(train, N, W, b, err)))
        return rc;
    right[GEN_METHOD_PROTOTYPES] += baseline_head_accuracy(W, b, N, held) * held->n;
    if ((rc = baseline_logreg_head(train, N, 1.0, W, b, err)))
        return rc;
    right[GEN_METHOD_LOGREG] += baseline_head_accuracy(W, b, N, held) * held->n;
    gen_request sub = *req;
    sub.support = train;
    sub.embeddings = 1;
    sub.gate = 0;
    // the job's first generation is part 0 of 1 + folds; this fold is part 1 + fold
    gen_progress_span span = {req->progress, req->progress_ctx, (float)(1 + fold) / (1 + folds),
                              (float)(2 + fold) / (1 + folds)};
    sub.progress = req->progress ? gen_progress_span_fn : NULL;
    sub.progress_ctx = &span;
    gen_result r;
    if ((rc = generator_generate(g, ws, &sub, &r, err)))
        return rc;
    float acc, loss;
    rc = target_eval(&r.spec, r.ranked[0].theta, held, &acc, &loss, err);
    gen_result_free(&r);
    if (rc == 0)
        right[GEN_METHOD_DIFFUSION] += (double)acc * held->n;
    return rc;
}

static int cross_validate(const generator *g, gen_workspace *ws, const gen_request *req,
                          const dataset *feat, gen_gate *gate, d2_error *err)
{
    const int N = feat->classes, F = feat->dim;
    double right[GEN_METHODS] = {0};
    float *W = malloc(((size_t)N * F + N) * sizeof(float));
    if (!W)
        return d2_fail(err, D2_ENOMEM, "gate: out of memory");
    int rc = 0, held_total = 0;
    for (int f = 0; f < gate->folds && rc == 0; f++) {
        dataset train = {0}, held = {0};
        if ((rc = fold_split(feat, gate->folds, f, &train, &held, err)) == 0 &&
            (rc = fold_scores(g, ws, req, &train, &held, f, gate->folds, W, right, err)) == 0)
            held_total += held.n;
        dataset_free(&train);
        dataset_free(&held);
    }
    free(W);
    if (rc)
        return rc;
    gate->heldout = held_total;
    for (int m = 0; m < GEN_METHODS; m++)
        gate->cv_acc[m] = (float)(right[m] / held_total);
    return 0;
}

/* The best method by held-out accuracy; diffusion wins ties, then logreg. */
static void choose_cv(gen_gate *gate)
{
    const float *a = gate->cv_acc;
    gen_method best = GEN_METHOD_DIFFUSION;
    if (a[GEN_METHOD_LOGREG] > a[best])
        best = GEN_METHOD_LOGREG;
    if (a[GEN_METHOD_PROTOTYPES] > a[best])
        best = GEN_METHOD_PROTOTYPES;
    gate->chosen = best;
    snprintf(gate->reason, sizeof gate->reason,
             "%d-fold cross-validation on the support set (%d held-out predictions): "
             "diffusion %.3f, prototypes %.3f, logreg %.3f", gate->folds, gate->heldout,
             (double)a[GEN_METHOD_DIFFUSION], (double)a[GEN_METHOD_PROTOTYPES],
             (double)a[GEN_METHOD_LOGREG]);
}

float gen_gate_agreement(const gen_result *res)
{
    double sum = 0;
    int n = 0;
    for (int k = 0; k < res->count; k++)
        if (res->ranked[k].method == GEN_METHOD_DIFFUSION) {
            sum += res->ranked[k].sample_acc; // before refinement, which fits the support set
            n++;
        }
    return n ? (float)(sum / n) : NAN;
}

static void choose_one_shot(const generator *g, const gen_result *res, gen_gate *gate)
{
    const float agree = gen_gate_agreement(res), tau = g->cfg.gate_one_shot;
    int keep = agree >= tau && !gate->ood;
    gate->chosen = keep ? GEN_METHOD_DIFFUSION : g->cfg.gate_fallback;
    if (tau > 1.0f) {
        snprintf(gate->reason, sizeof gate->reason,
                 "1 shot: no sample can be held out, and this generator returns %s at 1 shot "
                 "(chosen on its validation data)", gen_method_name(g->cfg.gate_fallback));
        return;
    }
    snprintf(gate->reason, sizeof gate->reason,
             "1 shot: no sample can be held out; the diffusion samples classify %.0f%% of "
             "their support set (threshold %.0f%%) and the support set is %s the zoo's "
             "distribution", 100.0 * agree, 100.0 * tau, gate->ood ? "outside" : "inside");
}

/* A baseline head as a candidate: theta of the single linear layer of hs. */
static int baseline_candidate(const generator *g, backend_t *be, const target_spec *hs,
                              const dataset *feat, gen_method m, gen_candidate *c, d2_error *err)
{
    const target_layer *L = &hs->layers[0];
    const int N = L->out;
    memset(c, 0, sizeof *c);
    c->method = m;
    c->index = -1;
    if (!(c->theta = calloc(hs->numel, sizeof(float))))
        return d2_fail(err, D2_ENOMEM, "gate: out of memory");
    float *W = c->theta + L->w_off, *b = c->theta + L->b_off;
    int rc = m == GEN_METHOD_PROTOTYPES ? baseline_prototype_head(feat, N, W, b, err)
                                        : baseline_logreg_head(feat, N, 1.0, W, b, err);
    if (rc || (rc = target_eval(hs, c->theta, feat, &c->support_acc, &c->support_loss, err)) ||
        (rc = gen_nearest_zoo(g, be, hs, c->theta, 1, &c->zoo_nearest, &c->zoo_distance, err)))
        return rc;
    double nn = 0;
    for (size_t j = 0; j < hs->numel; j++)
        nn += (double)c->theta[j] * c->theta[j];
    c->norm = (float)sqrt(nn);
    c->sample_acc = c->support_acc;
    return 0;
}

/* ranked = [winner, diffusion candidates..., other baseline] */
static int append_baselines(const generator *g, backend_t *be, const dataset *feat,
                            gen_result *res, d2_error *err)
{
    const int K = res->count;
    gen_candidate *all = realloc(res->ranked, (size_t)(K + 2) * sizeof *all);
    if (!all)
        return d2_fail(err, D2_ENOMEM, "gate: out of memory");
    res->ranked = all;
    gen_candidate base[2];
    int rc;
    if ((rc = baseline_candidate(g, be, &res->spec, feat, GEN_METHOD_PROTOTYPES, &base[0], err))) {
        free(base[0].theta);
        return rc;
    }
    if ((rc = baseline_candidate(g, be, &res->spec, feat, GEN_METHOD_LOGREG, &base[1], err))) {
        free(base[0].theta);
        free(base[1].theta);
        return rc;
    }
    gen_method chosen = res->gate.chosen;
    if (chosen == GEN_METHOD_DIFFUSION) {
        all[K] = base[0];
        all[K + 1] = base[1];
    } else {
        int w = chosen == GEN_METHOD_PROTOTYPES ? 0 : 1;
        memmove(all + 1, all, (size_t)K * sizeof *all);
        all[0] = base[w];
        all[K + 1] = base[1 - w];
    }
    res->count = K + 2;
    return 0;
}

void gen_gate_off(const generator *g, const float *cond, gen_gate *gate)
{
    memset(gate, 0, sizeof *gate);
    for (int m = 0; m < GEN_METHODS; m++)
        gate->cv_acc[m] = NAN;
    gate->chosen = GEN_METHOD_DIFFUSION;
    snprintf(gate->reason, sizeof gate->reason, "not applied: the request turned the gate off");
    gate_ood(g, cond, gate);
}

int gen_gate_run(const generator *g, gen_workspace *ws, const gen_request *req,
                 const dataset *feat, const int *counts, const float *cond, gen_result *res,
                 d2_error *err)
{
    gen_gate *gate = &res->gate;
    memset(gate, 0, sizeof *gate);
    for (int m = 0; m < GEN_METHODS; m++)
        gate->cv_acc[m] = NAN;
    gate_ood(g, cond, gate);
    if (!gate_applies(g)) {
        snprintf(gate->reason, sizeof gate->reason,
                 "not applied: the baselines are linear heads and this target has hidden "
                 "layers");
        return 0;
    }
    gate->applied = 1;
    gate->folds = gen_gate_folds(g, counts, res->way);
    int rc;
    if (gate->folds) {
        if ((rc = cross_validate(g, ws, req, feat, gate, err)))
            return rc;
        choose_cv(gate);
    } else {
        choose_one_shot(g, res, gate);
    }
    return append_baselines(g, ws->be, feat, res, err);
}
