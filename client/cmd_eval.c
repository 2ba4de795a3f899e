/* cmd_eval.c - `d2nwg eval`: how good are the generated heads, honestly.
 *
 * Over the zoo's held-out class combinations (never seen in training), or
 * tasks of another data source, compares per shot count:
 *   random head; nearest class mean (prototypes); logistic regression on the
 *   support set; D2NWG mean of the K candidates; D2NWG best-of-K chosen by
 *   support score (model retrieval); the zoo head of the nearest task by dataset
 *   embedding; the head trained on the task's full training data (oracle),
 * and fine-tuning curves from the generated head vs a random head. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli_args.h"
#include "commands.h"
#include "data.h"
#include "baseline.h"
#include "generator.h"
#include "svg_plot.h"
#include "target.h"
#include "zoo.h"

enum {
    M_RANDOM,
    M_PROTO,
    M_LOGREG,
    M_GEN_MEAN,
    M_GEN_BEST,
    M_ZOO_NEAREST,
    M_ORACLE,
    M_COUNT
};
static const char *const METHOD_NAMES[M_COUNT] = {
    "random head",
    "nearest class mean (prototypes)",
    "logistic regression on the support set (L2, C=1)",
    "D2NWG, mean of candidates",
    "D2NWG, best of K by support score",
    "zoo head of the nearest task (retrieval)",
    "head trained on the full training data (oracle)",
};
static const char *const METHOD_KEYS[M_COUNT] = {"random",   "prototypes",  "logreg", "d2nwg_mean",
                                                 "d2nwg_best", "zoo_nearest", "oracle"};

#define MAX_SHOTS 8
#define FT_POINTS 5
static const int FT_STEPS[FT_POINTS] = {0, 10, 25, 50, 100};

typedef struct eval_src {
    const char *name;
    dataset train, test; /* feature space */
    class_index tci, qci;
    int classes;
    int owned;
    int per_class;       /* oracle training samples per class */
} eval_src;

typedef struct stat {
    double mean, ci95;
} stat;

static stat stats_of(const double *v, int n)
{
    stat s = {0, 0};
    if (n <= 0)
        return s;
    double m = 0;
    for (int i = 0; i < n; i++)
        m += v[i];
    m /= n;
    double var = 0;
    for (int i = 0; i < n; i++)
        var += (v[i] - m) * (v[i] - m);
    var = n > 1 ? var / (n - 1) : 0;
    s.mean = m;
    s.ci95 = 1.96 * sqrt(var / n);
    return s;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg eval --generator GEN --zoo DIR [options]\n"
            "\n"
            "Evaluates generated heads on the zoo's held-out class combinations against\n"
            "baselines, as a Markdown table (mean and 95%% interval of query accuracy).\n"
            "\n"
            "  --tasks N          tasks per shot count (default 100)\n"
            "  --shots LIST       comma-separated support sizes per class (default 1,5)\n"
            "  --candidates K     candidates per generation (default: the bundle's)\n"
            "  --steps N          sampler steps (default: the bundle's)\n"
            "  --guidance W       guidance scale (default: the bundle's)\n"
            "  --seed S           seed of the task draw and sampling (default 1)\n"
            "  --source NAME      tasks from another data source (digits, csv:PATH, ...):\n"
            "                     a dataset the generator never saw; square images are\n"
            "                     resized to the generator's input size\n"
            "  --no-finetune      skip the fine-tuning curves\n"
            "  --plot FILE        write the fine-tuning curves as SVG\n"
            "  --json             print one JSON object instead of tables\n"
            "  --device DEV       cpu (default) or cuda:N\n");
}

/* Bilinear resize of square images (side s -> side t). */
static void resize_square(const float *in, int s, float *out, int t)
{
    for (int i = 0; i < t; i++)
        for (int j = 0; j < t; j++) {
            double y = (i + 0.5) * s / t - 0.5, x = (j + 0.5) * s / t - 0.5;
            int y0 = (int)floor(y), x0 = (int)floor(x);
            double fy = y - y0, fx = x - x0;
            double acc = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int yy = y0 + dy, xx = x0 + dx;
                    yy = yy < 0 ? 0 : (yy >= s ? s - 1 : yy);
                    xx = xx < 0 ? 0 : (xx >= s ? s - 1 : xx);
                    double w = (dy ? fy : 1 - fy) * (dx ? fx : 1 - fx);
                    acc += w * in[yy * s + xx];
                }
            out[i * t + j] = (float)acc;
        }
}

/* Bring a raw data set to the generator's input space (resize square images,
 * scale to [0,1]) and apply its feature map. */
static int to_features(const dataset *raw, int input_dim, const feature_map *fm, dataset *out,
                       d2_error *err)
{
    dataset tmp = {0};
    const dataset *src = raw;
    if (raw->dim != input_dim) {
        int s = (int)lround(sqrt((double)raw->dim)), t = (int)lround(sqrt((double)input_dim));
        if (s * s != raw->dim || t * t != input_dim)
            return d2_fail(err, D2_EINVAL,
                           "the source has %d features per row and the generator takes %d; "
                           "only square images can be resized",
                           raw->dim, input_dim);
        int rc = dataset_alloc(&tmp, raw->n, input_dim, err);
        if (rc)
            return rc;
        float mx = 0;
        for (size_t i = 0; i < (size_t)raw->n * raw->dim; i++)
            mx = raw->x[i] > mx ? raw->x[i] : mx;
        float scale = mx > 1.0f ? 1.0f / mx : 1.0f;
        float *row = malloc((size_t)raw->dim * sizeof(float));
        if (!row) {
            dataset_free(&tmp);
            return d2_fail(err, D2_ENOMEM, "out of memory");
        }
        for (int i = 0; i < raw->n; i++) {
            for (int j = 0; j < raw->dim; j++)
                row[j] = raw->x[(size_t)i * raw->dim + j] * scale;
            resize_square(row, s, tmp.x + (size_t)i * input_dim, t);
        }
        free(row);
        memcpy(tmp.y, raw->y, (size_t)raw->n * sizeof(int32_t));
        tmp.classes = raw->classes;
        src = &tmp;
    }
    int rc = feature_map_apply(fm, src, out, err);
    if (!rc)
        out->classes = raw->classes;
    dataset_free(&tmp);
    return rc;
}

static int parse_shots(const char *s, int *shots, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1000 || *n >= MAX_SHOTS)
            return -1;
        shots[(*n)++] = (int)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return *n ? 0 : -1;
}

typedef struct eval_opts {
    int tasks, nshots, shots[MAX_SHOTS];
    int candidates, steps;
    float guidance;
    uint64_t seed;
    int finetune, as_json;
    const char *plot;
} eval_opts;

typedef struct eval_results {
    double *acc[M_COUNT][MAX_SHOTS];            /* [tasks] */
    double *ft_gen[MAX_SHOTS][FT_POINTS];       /* [tasks] */
    double *ft_rand[MAX_SHOTS][FT_POINTS];
    double *vae_orig, *vae_rec;                 /* [tasks] */
    double gen_ms;
    int gen_count;
} eval_results;

static int train_cfg_logreg(const dataset *sup, target_train_cfg *c, int steps, uint64_t seed)
{
    *c = target_train_defaults();
    c->batch = sup->n;
    c->epochs = steps;
    c->min_steps = 0;
    c->seed = seed;
    return 0;
}

static int run_eval(const generator *g, gen_workspace *ws, const eval_src *src, const task *tasks,
                    int way, const eval_opts *o, eval_results *r, d2_error *err)
{
    const gen_info *in = generator_info(g);
    const target_spec *spec = in->spec;
    const int P = in->params;
    float *theta = malloc((size_t)P * sizeof(float));
    float *oracle = malloc((size_t)P * sizeof(float));
    float *rec = malloc((size_t)P * sizeof(float));
    dataset q = {0}, tr = {0}, sup = {0};
    gen_result res = {0};
    int rc = 0;
    float acc, loss;
    if (!theta || !oracle || !rec) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < o->tasks; i++) {
        const task *t = &tasks[i];
        rng tr_rng;
        rng_init(&tr_rng, rng_derive(o->seed, "eval-task", (uint64_t)i), 0);
        dataset_free(&q);
        dataset_free(&tr);
        if ((rc = task_draw(&src->test, &src->qci, t, 0, &tr_rng, &q, err)) ||
            (rc = task_draw(&src->train, &src->tci, t, src->per_class, &tr_rng, &tr, err)))
            goto out;
        // the oracle: a head trained on the task's training data, as the zoo's are
        target_train_cfg tc = target_train_defaults();
        tc.seed = rng_derive(o->seed, "oracle", (uint64_t)i);
        target_init_random(spec, tc.seed, oracle);
        if ((rc = target_train(spec, &tr, oracle, 0, &tc, err)) ||
            (rc = target_eval(spec, oracle, &q, &acc, &loss, err)))
            goto out;
        for (int s = 0; s < o->nshots; s++)
            r->acc[M_ORACLE][s][i] = acc;
        r->vae_orig[i] = acc;
        // what the weight VAE keeps of it
        if ((rc = generator_vae_roundtrip(g, ws, oracle, 1, rec, err)) ||
            (rc = target_eval(spec, rec, &q, &acc, &loss, err)))
            goto out;
        r->vae_rec[i] = acc;
        for (int s = 0; s < o->nshots; s++) {
            dataset_free(&sup);
            if ((rc = task_draw(&src->train, &src->tci, t, o->shots[s], &tr_rng, &sup, err)))
                goto out;
            target_init_random(spec, rng_derive(o->seed, "random-head", (uint64_t)i), theta);
            if ((rc = target_eval(spec, theta, &q, &acc, &loss, err)))
                goto out;
            r->acc[M_RANDOM][s][i] = acc;
            r->acc[M_PROTO][s][i] = baseline_prototypes(&sup, &q, way);
            r->acc[M_LOGREG][s][i] = baseline_logreg(&sup, &q, way, 1.0);
            gen_request req = {.support = &sup,
                               .embeddings = 1,
                               .candidates = o->candidates,
                               .steps = o->steps,
                               .sampler = in->default_sampler,
                               .guidance = o->guidance,
                               .seed = rng_derive(o->seed, "generate",
                                                  (uint64_t)i * MAX_SHOTS + (uint64_t)s)};
            if ((rc = generator_generate(g, ws, &req, &res, err)))
                goto out;
            r->gen_ms += res.seconds * 1000.0;
            r->gen_count++;
            double mean = 0;
            for (int k = 0; k < res.count; k++) {
                if ((rc = target_eval(spec, res.ranked[k].theta, &q, &acc, &loss, err)))
                    goto out;
                mean += acc;
                if (k == 0)
                    r->acc[M_GEN_BEST][s][i] = acc;
            }
            r->acc[M_GEN_MEAN][s][i] = mean / res.count;
            for (int f = 0; o->finetune && f < FT_POINTS; f++) {
                target_train_cfg fc;
                train_cfg_logreg(&sup, &fc, FT_STEPS[f], rng_derive(o->seed, "ft", (uint64_t)i));
                memcpy(theta, res.ranked[0].theta, (size_t)P * sizeof(float));
                if ((FT_STEPS[f] > 0 && (rc = target_train(spec, &sup, theta, 1, &fc, err))) ||
                    (rc = target_eval(spec, theta, &q, &acc, &loss, err)))
                    goto out;
                r->ft_gen[s][f][i] = acc;
                target_init_random(spec, rng_derive(o->seed, "ft-random", (uint64_t)i), theta);
                if ((FT_STEPS[f] > 0 && (rc = target_train(spec, &sup, theta, 1, &fc, err))) ||
                    (rc = target_eval(spec, theta, &q, &acc, &loss, err)))
                    goto out;
                r->ft_rand[s][f][i] = acc;
            }
            gen_result_free(&res);
            r->acc[M_ZOO_NEAREST][s][i] = NAN;
            if (in->zoo_size > 0) {
                gen_retrieval hit;
                int nh = 0;
                if ((rc = generator_retrieve(g, ws, &sup, 1, 1, &hit, &nh, err)))
                    goto out;
                if (nh == 1) {
                    if ((rc = generator_zoo_theta(g, hit.zoo_index, theta, err)) ||
                        (rc = target_eval(spec, theta, &q, &acc, &loss, err)))
                        goto out;
                    r->acc[M_ZOO_NEAREST][s][i] = acc;
                }
            }
        }
        if (!o->as_json)
            fprintf(stderr, "\reval: task %d/%d", i + 1, o->tasks);
    }
    if (!o->as_json)
        fprintf(stderr, "\n");
out:
    gen_result_free(&res);
    dataset_free(&q);
    dataset_free(&tr);
    dataset_free(&sup);
    free(theta);
    free(oracle);
    free(rec);
    return rc;
}

static void print_tables(const eval_opts *o, const eval_results *r, const char *what)
{
    printf("\nQuery accuracy on %d %s tasks per column (mean +- 95%% interval)\n\n", o->tasks,
           what);
    printf("| method |");
    for (int s = 0; s < o->nshots; s++)
        printf(" %d-shot |", o->shots[s]);
    printf("\n|---|");
    for (int s = 0; s < o->nshots; s++)
        printf("---:|");
    printf("\n");
    for (int m = 0; m < M_COUNT; m++) {
        printf("| %s |", METHOD_NAMES[m]);
        for (int s = 0; s < o->nshots; s++) {
            stat st = stats_of(r->acc[m][s], o->tasks);
            if (isnan(st.mean))
                printf(" n/a |");
            else
                printf(" %.3f +- %.3f |", st.mean, st.ci95);
        }
        printf("\n");
    }
    printf("| D2NWG best / oracle |");
    for (int s = 0; s < o->nshots; s++) {
        stat b = stats_of(r->acc[M_GEN_BEST][s], o->tasks);
        stat or = stats_of(r->acc[M_ORACLE][s], o->tasks);
        printf(" %.1f%% |", 100.0 * b.mean / or.mean);
    }
    printf("\n");
    stat vo = stats_of(r->vae_orig, o->tasks), vr = stats_of(r->vae_rec, o->tasks);
    printf("\nWeight VAE round trip of the oracle heads: %.3f -> %.3f (%.1f%% kept)\n", vo.mean,
           vr.mean, 100.0 * vr.mean / vo.mean);
    if (r->gen_count)
        printf("Generation: %.1f ms per request on average (%d requests)\n",
               r->gen_ms / r->gen_count, r->gen_count);
    if (o->finetune) {
        printf("\nFine-tuning on the support set (query accuracy after N full-batch steps)\n\n");
        printf("| start | shots |");
        for (int f = 0; f < FT_POINTS; f++)
            printf(" %d |", FT_STEPS[f]);
        printf("\n|---|---:|");
        for (int f = 0; f < FT_POINTS; f++)
            printf("---:|");
        printf("\n");
        for (int s = 0; s < o->nshots; s++)
            for (int init = 0; init < 2; init++) {
                printf("| %s | %d |", init ? "random head" : "generated head", o->shots[s]);
                for (int f = 0; f < FT_POINTS; f++) {
                    stat st = stats_of(init ? r->ft_rand[s][f] : r->ft_gen[s][f], o->tasks);
                    printf(" %.3f |", st.mean);
                }
                printf("\n");
            }
    }
}

static json_t *stat_json(const double *v, int n)
{
    stat st = stats_of(v, n);
    if (isnan(st.mean))
        return json_null();
    return json_pack("{s:f,s:f}", "mean", st.mean, "ci95", st.ci95);
}

static void print_json(const eval_opts *o, const eval_results *r, const char *gen_id,
                       const char *what)
{
    json_t *root = json_object();
    json_object_set_new(root, "generator", json_string(gen_id));
    json_object_set_new(root, "tasks", json_integer(o->tasks));
    json_object_set_new(root, "source", json_string(what));
    json_t *shots = json_array();
    for (int s = 0; s < o->nshots; s++)
        json_array_append_new(shots, json_integer(o->shots[s]));
    json_object_set_new(root, "shots", shots);
    json_t *methods = json_object();
    for (int m = 0; m < M_COUNT; m++) {
        json_t *per = json_object();
        for (int s = 0; s < o->nshots; s++) {
            char key[16];
            snprintf(key, sizeof key, "%d", o->shots[s]);
            json_object_set_new(per, key, stat_json(r->acc[m][s], o->tasks));
        }
        json_object_set_new(methods, METHOD_KEYS[m], per);
    }
    json_object_set_new(root, "methods", methods);
    json_object_set_new(root, "vae", json_pack("{s:o,s:o}", "original", stat_json(r->vae_orig, o->tasks),
                                               "reconstructed", stat_json(r->vae_rec, o->tasks)));
    if (r->gen_count)
        json_object_set_new(root, "generation_ms", json_real(r->gen_ms / r->gen_count));
    if (o->finetune) {
        json_t *ft = json_object();
        json_t *steps = json_array();
        for (int f = 0; f < FT_POINTS; f++)
            json_array_append_new(steps, json_integer(FT_STEPS[f]));
        json_object_set_new(ft, "steps", steps);
        for (int s = 0; s < o->nshots; s++) {
            json_t *gen = json_array(), *rnd = json_array();
            for (int f = 0; f < FT_POINTS; f++) {
                json_array_append_new(gen, json_real(stats_of(r->ft_gen[s][f], o->tasks).mean));
                json_array_append_new(rnd, json_real(stats_of(r->ft_rand[s][f], o->tasks).mean));
            }
            char key[16];
            snprintf(key, sizeof key, "%d", o->shots[s]);
            json_object_set_new(ft, key, json_pack("{s:o,s:o}", "generated", gen, "random", rnd));
        }
        json_object_set_new(root, "finetune", ft);
    }
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (txt)
        puts(txt);
    free(txt);
    json_decref(root);
}

static int write_plot(const eval_opts *o, const eval_results *r, const char *path, d2_error *err)
{
    svg_chart c = {.title = "Fine-tuning on the support set: generated vs random start",
                   .xlabel = "full-batch training steps",
                   .ylabel = "query accuracy"};
    static double xs[FT_POINTS];
    double ys[MAX_SHOTS * 2][FT_POINTS], es[MAX_SHOTS * 2][FT_POINTS];
    char labels[MAX_SHOTS * 2][64];
    for (int f = 0; f < FT_POINTS; f++)
        xs[f] = FT_STEPS[f];
    for (int s = 0; s < o->nshots && c.nseries + 2 <= SVG_MAX_SERIES; s++)
        for (int init = 0; init < 2; init++) {
            int k = c.nseries;
            for (int f = 0; f < FT_POINTS; f++) {
                stat st = stats_of(init ? r->ft_rand[s][f] : r->ft_gen[s][f], o->tasks);
                ys[k][f] = st.mean;
                es[k][f] = st.ci95;
            }
            snprintf(labels[k], sizeof labels[k], "%s, %d-shot", init ? "random" : "generated",
                     o->shots[s]);
            c.series[k] = (svg_series){labels[k], FT_POINTS, xs, ys[k], es[k]};
            c.nseries++;
        }
    return svg_plot_write(&c, path, err);
}

static void src_free(eval_src *s)
{
    if (s->owned) {
        dataset_free(&s->train);
        dataset_free(&s->test);
        class_index_free(&s->tci);
        class_index_free(&s->qci);
    }
}

int cmd_eval(int argc, char **argv)
{
    const char *cmd = "eval", *v;
    const char *gen_path = NULL, *zoo_dir = NULL, *source = NULL, *device = "cpu";
    eval_opts o = {.tasks = 100, .nshots = 2, .shots = {1, 5}, .seed = 1, .finetune = 1};
    long tasks = -1, cand = -1, steps = -1;
    double guidance = -1;
    for (int i = 1; i < argc; i++) {
        int rr;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return EXIT_OK;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--generator", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            gen_path = v;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--zoo", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            zoo_dir = v;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--source", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            source = v;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--device", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            device = v;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--plot", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            o.plot = v;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--tasks", &v))) {
            if (rr < 0 || cli_int(cmd, "--tasks", v, 1, 100000, &tasks))
                return EXIT_USAGE;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--candidates", &v))) {
            if (rr < 0 || cli_int(cmd, "--candidates", v, 1, 1024, &cand))
                return EXIT_USAGE;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--steps", &v))) {
            if (rr < 0 || cli_int(cmd, "--steps", v, 1, 4000, &steps))
                return EXIT_USAGE;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--guidance", &v))) {
            if (rr < 0 || cli_float(cmd, "--guidance", v, 0, 20, &guidance))
                return EXIT_USAGE;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (rr < 0 || cli_u64(cmd, "--seed", v, &o.seed))
                return EXIT_USAGE;
        } else if ((rr = cli_opt(cmd, argc, argv, &i, "--shots", &v))) {
            if (rr < 0)
                return EXIT_USAGE;
            if (parse_shots(v, o.shots, &o.nshots)) {
                cli_error(cmd, "--shots: '%s' is not a list such as 1,5 (at most %d values)", v,
                          MAX_SHOTS);
                return EXIT_USAGE;
            }
        } else if (cli_flag(argv, i, "--json")) {
            o.as_json = 1;
        } else if (cli_flag(argv, i, "--no-finetune")) {
            o.finetune = 0;
        } else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!gen_path || (!zoo_dir && !source)) {
        cli_error(cmd, "--generator and --zoo (or --source) are required (see --help)");
        return EXIT_USAGE;
    }
    if (tasks > 0)
        o.tasks = (int)tasks;
    d2_error err = {0};
    backend_t *be = NULL;
    generator *g = NULL;
    gen_workspace *ws = NULL;
    zoo z;
    memset(&z, 0, sizeof z);
    eval_src src;
    memset(&src, 0, sizeof src);
    eval_results res;
    memset(&res, 0, sizeof res);
    task *tlist = NULL;
    int code = EXIT_FAILED;
    if (backend_create(&be, device, 0, &err) || generator_load(&g, gen_path, be, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    const gen_info *in = generator_info(g);
    o.candidates = cand > 0 ? (int)cand : in->default_candidates;
    o.steps = steps > 0 ? (int)steps : in->default_steps;
    o.guidance = guidance >= 0 ? (float)guidance : in->default_guidance;
    const int way = in->max_way;
    if (gen_workspace_create(&ws, g, be, o.candidates, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    tlist = calloc((size_t)o.tasks, sizeof *tlist);
    for (int m = 0; m < M_COUNT; m++)
        for (int s = 0; s < o.nshots; s++)
            res.acc[m][s] = calloc((size_t)o.tasks, sizeof(double));
    for (int s = 0; s < o.nshots; s++)
        for (int f = 0; f < FT_POINTS; f++) {
            res.ft_gen[s][f] = calloc((size_t)o.tasks, sizeof(double));
            res.ft_rand[s][f] = calloc((size_t)o.tasks, sizeof(double));
        }
    res.vae_orig = calloc((size_t)o.tasks, sizeof(double));
    res.vae_rec = calloc((size_t)o.tasks, sizeof(double));
    if (!tlist || !res.vae_orig || !res.vae_rec) {
        cli_error(cmd, "out of memory");
        goto out;
    }
    rng r0;
    rng_init(&r0, rng_derive(o.seed, "eval-tasks", 0), 0);
    char what[300];
    if (source) {
        // a data source the generator never saw: tasks are random ordered class subsets
        data_source ds;
        memset(&ds, 0, sizeof ds);
        if (data_source_load(&ds, source, &err)) {
            cli_error(cmd, "%s", err.msg);
            goto out;
        }
        src.owned = 1;
        int bad = to_features(&ds.train, in->input_dim, generator_feature_map(g), &src.train,
                              &err) ||
                  to_features(&ds.test, in->input_dim, generator_feature_map(g), &src.test, &err);
        data_source_free(&ds);
        if (bad) {
            cli_error(cmd, "%s", err.msg);
            goto out;
        }
        src.classes = src.train.classes;
        if (src.classes < way || src.classes > 64) {
            cli_error(cmd, "%s has %d classes; %d-way tasks need at least %d (and at most 64)",
                      source, src.classes, way, way);
            goto out;
        }
        if (class_index_build(&src.tci, &src.train, &err) ||
            class_index_build(&src.qci, &src.test, &err)) {
            cli_error(cmd, "%s", err.msg);
            goto out;
        }
        src.per_class = 300;
        for (int i = 0; i < o.tasks; i++) {
            int cls[64];
            for (int c = 0; c < src.classes; c++)
                cls[c] = c;
            rng_shuffle_int(&r0, cls, src.classes);
            tlist[i].way = way;
            memcpy(tlist[i].classes, cls, (size_t)way * sizeof(int));
        }
        snprintf(what, sizeof what, "'%s' (never seen in training)", source);
    } else {
        if (zoo_load(&z, zoo_dir, 1, &err)) {
            cli_error(cmd, "%s", err.msg);
            goto out;
        }
        if (z.way != way || z.fmap.out_dim != in->feature_dim || z.P != in->params) {
            cli_error(cmd, "zoo %s (%d-way, %d features, %d parameters) does not match the "
                      "generator (%d-way, %d features, %d parameters)",
                      zoo_dir, z.way, z.fmap.out_dim, z.P, way, in->feature_dim, in->params);
            goto out;
        }
        if (z.n_heldout < 1) {
            cli_error(cmd, "zoo %s has no held-out class combinations to evaluate on", zoo_dir);
            goto out;
        }
        if (in->zoo_fingerprint[0] && strcmp(in->zoo_fingerprint, z.fingerprint))
            fprintf(stderr, "d2nwg eval: warning: the generator was trained on zoo %.12s, not "
                            "on %s (%.12s)\n",
                    in->zoo_fingerprint, zoo_dir, z.fingerprint);
        src.train = z.train_feat;
        src.test = z.test_feat;
        src.tci = z.train_ci;
        src.qci = z.test_ci;
        src.per_class = z.per_class;
        for (int i = 0; i < o.tasks; i++) {
            tlist[i].way = way;
            memcpy(tlist[i].classes, z.heldout[i % z.n_heldout], (size_t)way * sizeof(int));
            rng_shuffle_int(&r0, tlist[i].classes, way);
        }
        snprintf(what, sizeof what, "held-out (%d class combinations never in the zoo)",
                 z.n_heldout);
    }
    if (run_eval(g, ws, &src, tlist, way, &o, &res, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    if (o.as_json)
        print_json(&o, &res, in->id, what);
    else {
        printf("generator %.12s, %d candidates, %d steps, guidance %.2f, seed %llu\n", in->id,
               o.candidates, o.steps, (double)o.guidance, (unsigned long long)o.seed);
        print_tables(&o, &res, what);
    }
    if (o.plot && o.finetune) {
        if (write_plot(&o, &res, o.plot, &err)) {
            cli_error(cmd, "%s", err.msg);
            goto out;
        }
        if (!o.as_json)
            printf("\nwrote %s\n", o.plot);
    }
    code = EXIT_OK;
out:
    for (int m = 0; m < M_COUNT; m++)
        for (int s = 0; s < MAX_SHOTS; s++)
            free(res.acc[m][s]);
    for (int s = 0; s < MAX_SHOTS; s++)
        for (int f = 0; f < FT_POINTS; f++) {
            free(res.ft_gen[s][f]);
            free(res.ft_rand[s][f]);
        }
    free(res.vae_orig);
    free(res.vae_rec);
    free(tlist);
    src_free(&src);
    zoo_free(&z);
    gen_workspace_free(ws);
    generator_free(g);
    backend_destroy(be);
    return code;
}
