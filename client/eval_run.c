/* eval_run.c - `d2nwg eval`'s measurements: for every task, the oracle head
 * and its weight-VAE round trip, then per shot count every method of
 * eval_types.h on the task's query set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "eval_types.h"
#include "progress.h"
#include "target.h"

const int FT_STEPS[FT_POINTS] = {0, 10, 25, 50, 100};

/* One evaluation's state: the generator, the settings, scratch heads and the
 * current task's data sets. */
typedef struct eval_ctx {
    const generator *g;
    gen_workspace *ws;
    const gen_info *in;
    const eval_src *src;
    const eval_opts *o;
    eval_results *r;
    int way;
    target_spec hs;              /* heads of `way` rows (the generator's, or narrowed) */
    float *theta, *oracle, *rec; /* [params]: room for the generator's widest head */
    float *wide;                 /* [params] */
    dataset q, tr, sup;          /* query, oracle training, support */
    dataset larger;              /* FT_LARGER_PER_CLASS training samples per class */
    gen_result res;
} eval_ctx;

static float query_acc(const eval_ctx *c, const float *theta, d2_error *err, int *rc)
{
    float acc = 0, loss = 0;
    *rc = target_eval(&c->hs, theta, &c->q, &acc, &loss, err);
    return acc;
}

/* The task's query and training sets; the oracle head trained on the
 * training set, as the zoo's are; what the weight VAE keeps of it. */
static int eval_oracle(eval_ctx *c, const task *t, int i, rng *tr_rng, d2_error *err)
{
    const eval_opts *o = c->o;
    const eval_src *src = c->src;
    int rc;
    dataset_free(&c->q);
    dataset_free(&c->tr);
    dataset_free(&c->larger);
    rng larger_rng; // its own stream: the support sets drawn from tr_rng stay as they were
    rng_init(&larger_rng, rng_derive(o->seed, "ft-larger", (uint64_t)i), 0);
    if ((rc = task_draw(&src->test, &src->qci, t, 0, tr_rng, &c->q, err)) ||
        (rc = task_draw(&src->train, &src->tci, t, src->per_class, tr_rng, &c->tr, err)) ||
        (rc = task_draw(&src->train, &src->tci, t, FT_LARGER_PER_CLASS, &larger_rng,
                        &c->larger, err)))
        return rc;
    target_train_cfg tc = target_train_defaults();
    tc.seed = rng_derive(o->seed, "oracle", (uint64_t)i);
    target_init_random(&c->hs, tc.seed, c->oracle);
    if ((rc = target_train(&c->hs, &c->tr, c->oracle, 0, &tc, err)))
        return rc;
    float acc = query_acc(c, c->oracle, err, &rc);
    if (rc)
        return rc;
    for (int s = 0; s < o->nshots; s++)
        c->r->acc[M_ORACLE][s][i] = acc;
    c->r->vae_orig[i] = acc;
    if (c->hs.numel == (size_t)c->in->params) {
        rc = generator_vae_roundtrip(c->g, c->ws, c->oracle, 1, c->rec, err);
    } else { // an any-way generator: its rows after `way` zero, as its zoo keeps them
        target_theta_widen(c->in->spec, &c->hs, c->oracle, c->wide);
        if (!(rc = generator_vae_roundtrip(c->g, c->ws, c->wide, 1, c->wide, err)))
            target_theta_narrow(c->in->spec, &c->hs, c->wide, c->rec);
    }
    if (rc)
        return rc;
    c->r->vae_rec[i] = query_acc(c, c->rec, err, &rc);
    return rc;
}

/* Full-batch fine-tuning of theta on data for `steps` steps. */
static int finetune(eval_ctx *c, const dataset *data, float *theta, int steps, uint64_t seed,
                    d2_error *err)
{
    if (steps <= 0)
        return 0;
    target_train_cfg fc = target_train_defaults();
    fc.batch = data->n;
    fc.epochs = steps;
    fc.min_steps = 0;
    fc.seed = seed;
    return target_train(&c->hs, data, theta, 1, &fc, err);
}

/* Fine-tuning curves from the best generated head (ranked[best]) and from a
 * random one, on the support set and on a larger training set of the task's
 * classes: does a generated start converge faster? */
static int eval_finetune(eval_ctx *c, int i, int s, int best, d2_error *err)
{
    const eval_opts *o = c->o;
    const size_t bytes = c->hs.numel * sizeof(float);
    const dataset *sets[FT_SETS] = {&c->sup, &c->larger};
    int rc = 0;
    for (int d = 0; d < FT_SETS && !rc; d++)
        for (int f = 0; f < FT_POINTS && !rc; f++) {
            uint64_t seed = rng_derive(o->seed, "ft", (uint64_t)i);
            memcpy(c->theta, c->res.ranked[best].theta, bytes);
            if ((rc = finetune(c, sets[d], c->theta, FT_STEPS[f], seed, err)))
                break;
            c->r->ft_gen[d][s][f][i] = query_acc(c, c->theta, err, &rc);
            if (rc)
                break;
            target_init_random(&c->hs, rng_derive(o->seed, "ft-random", (uint64_t)i),
                               c->theta);
            if ((rc = finetune(c, sets[d], c->theta, FT_STEPS[f], seed, err)))
                break;
            c->r->ft_rand[d][s][f][i] = query_acc(c, c->theta, err, &rc);
        }
    return rc;
}

/* D2NWG with the gate on: the diffusion candidates (their mean, and the best
 * by support score), what the gate returned, then the fine-tuning curves
 * from the best diffusion candidate. */
static int eval_generated(eval_ctx *c, int i, int s, d2_error *err)
{
    const eval_opts *o = c->o;
    gen_request req = {.support = &c->sup,
                       .embeddings = 1,
                       .candidates = o->candidates,
                       .steps = o->steps,
                       .sampler = c->in->default_sampler,
                       .guidance = o->guidance,
                       .seed = rng_derive(o->seed, "generate",
                                          (uint64_t)i * MAX_SHOTS + (uint64_t)s),
                       .gate = 1,
                       .refine = 1};
    int rc = generator_generate(c->g, c->ws, &req, &c->res, err);
    if (rc)
        return rc;
    c->r->gen_ms += c->res.seconds * 1000.0;
    c->r->gen_count++;
    c->r->chosen[s][c->res.ranked[0].method]++;
    double mean = 0;
    int n = 0, best = -1;
    for (int k = 0; k < c->res.count; k++) {
        float acc = query_acc(c, c->res.ranked[k].theta, err, &rc);
        if (rc)
            return rc;
        if (k == 0)
            c->r->acc[M_GATED][s][i] = acc;
        if (c->res.ranked[k].method != GEN_METHOD_DIFFUSION)
            continue;
        mean += acc;
        if (n++ == 0) {
            c->r->acc[M_GEN_BEST][s][i] = acc;
            best = k;
        }
    }
    c->r->acc[M_GEN_MEAN][s][i] = mean / n;
    const gen_candidate *b = &c->res.ranked[best]; // the same candidate before refinement
    c->r->acc[M_GEN_SAMPLE][s][i] = b->sample ? query_acc(c, b->sample, err, &rc)
                                              : c->r->acc[M_GEN_BEST][s][i];
    if (rc)
        return rc;
    if (o->finetune)
        rc = eval_finetune(c, i, s, best, err);
    gen_result_free(&c->res);
    return rc;
}

/* The zoo head of the task nearest to the support set (NAN without a zoo). */
static int eval_zoo_nearest(eval_ctx *c, int i, int s, d2_error *err)
{
    c->r->acc[M_ZOO_NEAREST][s][i] = NAN;
    if (c->in->zoo_size <= 0)
        return 0;
    gen_retrieval hit;
    int nh = 0, rc;
    if ((rc = generator_retrieve(c->g, c->ws, &c->sup, 1, 1, &hit, &nh, err)) || nh != 1)
        return rc;
    if ((rc = generator_zoo_theta(c->g, hit.zoo_index, c->wide, err)))
        return rc;
    if (c->hs.numel == (size_t)c->in->params)
        memcpy(c->theta, c->wide, c->hs.numel * sizeof(float));
    else
        target_theta_narrow(c->in->spec, &c->hs, c->wide, c->theta);
    c->r->acc[M_ZOO_NEAREST][s][i] = query_acc(c, c->theta, err, &rc);
    return rc;
}

/* Shot count s of task i: draw the support set, then every method. */
static int eval_shot(eval_ctx *c, const task *t, int i, int s, rng *tr_rng, d2_error *err)
{
    const eval_opts *o = c->o;
    int rc;
    dataset_free(&c->sup);
    if ((rc = task_draw(&c->src->train, &c->src->tci, t, o->shots[s], tr_rng, &c->sup, err)))
        return rc;
    target_init_random(&c->hs, rng_derive(o->seed, "random-head", (uint64_t)i), c->theta);
    c->r->acc[M_RANDOM][s][i] = query_acc(c, c->theta, err, &rc);
    if (rc)
        return rc;
    c->r->acc[M_PROTO][s][i] = baseline_prototypes(&c->sup, &c->q, c->way);
    c->r->acc[M_LOGREG][s][i] = baseline_logreg(&c->sup, &c->q, c->way, 1.0);
    if ((rc = eval_generated(c, i, s, err)))
        return rc;
    return eval_zoo_nearest(c, i, s, err);
}

static int eval_tasks(eval_ctx *c, const task *tasks, d2_error *err)
{
    const eval_opts *o = c->o;
    progress bar;
    progress_begin(&bar, "eval", "tasks", o->tasks, !o->as_json);
    for (int i = 0; i < o->tasks; i++) {
        rng tr_rng;
        rng_init(&tr_rng, rng_derive(o->seed, "eval-task", (uint64_t)i), 0);
        int rc = eval_oracle(c, &tasks[i], i, &tr_rng, err);
        for (int s = 0; s < o->nshots && !rc; s++)
            rc = eval_shot(c, &tasks[i], i, s, &tr_rng, err);
        if (rc)
            return rc;
        progress_update(&bar, i + 1, NULL);
    }
    progress_end(&bar, o->tasks, NULL);
    return 0;
}

int eval_run(const generator *g, gen_workspace *ws, const eval_src *src, const task *tasks,
             int way, const eval_opts *o, eval_results *r, d2_error *err)
{
    eval_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.ws = ws;
    c.in = generator_info(g);
    c.src = src;
    c.o = o;
    c.r = r;
    c.way = way;
    const size_t bytes = (size_t)c.in->params * sizeof(float);
    c.theta = malloc(bytes);
    c.oracle = malloc(bytes);
    c.rec = malloc(bytes);
    c.wide = malloc(bytes);
    int rc = !c.theta || !c.oracle || !c.rec || !c.wide ? d2_fail(err, D2_ENOMEM, "out of memory")
             : way == c.in->max_way ? (c.hs = *c.in->spec, 0)
                                    : target_spec_with_way(c.in->spec, way, &c.hs, err);
    if (!rc)
        rc = eval_tasks(&c, tasks, err);
    gen_result_free(&c.res);
    dataset_free(&c.q);
    dataset_free(&c.tr);
    dataset_free(&c.sup);
    dataset_free(&c.larger);
    free(c.theta);
    free(c.oracle);
    free(c.rec);
    free(c.wide);
    return rc;
}
