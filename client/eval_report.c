/* eval_report.c - `d2nwg eval`'s results: Markdown tables, one JSON object,
 * the fine-tuning curves as SVG. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval_types.h"
#include "svg_plot.h"

static const char *const METHOD_NAMES[M_COUNT] = {
    "random head",
    "nearest class mean (prototypes)",
    "logistic regression on the support set (L2, C=1)",
    "D2NWG, mean of candidates",
    "D2NWG, best of K, the diffusion sample before refinement",
    "D2NWG, best of K by support score",
    "D2NWG as returned (the gate's choice)",
    "zoo head of the nearest task (retrieval)",
    "head trained on the full training data (oracle)",
};
static const char *const METHOD_KEYS[M_COUNT] = {
    "random",      "prototypes",  "logreg",      "d2nwg_mean", "d2nwg_sample",
    "d2nwg_best",  "d2nwg_gated", "zoo_nearest", "oracle"};

/* Paired differences reported: method a minus method b on the same tasks. */
static const int PAIRS[][2] = {{M_GEN_BEST, M_PROTO}, {M_GEN_BEST, M_LOGREG},
                               {M_GEN_SAMPLE, M_LOGREG},
                               {M_GATED, M_PROTO}, {M_GATED, M_LOGREG}};
#define NPAIRS ((int)(sizeof PAIRS / sizeof PAIRS[0]))

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

/* mean and 95% interval of a[i] - b[i] */
static stat paired(const double *a, const double *b, int n)
{
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    stat st = {NAN, NAN};
    if (!d)
        return st;
    for (int i = 0; i < n; i++)
        d[i] = a[i] - b[i];
    st = stats_of(d, n);
    free(d);
    return st;
}

static void print_paired(const eval_opts *o, const eval_results *r)
{
    printf("\nPaired differences on the same tasks (mean +- 95%% interval; above zero: "
           "better)\n\n| difference |");
    for (int s = 0; s < o->nshots; s++)
        printf(" %d-shot |", o->shots[s]);
    printf("\n|---|");
    for (int s = 0; s < o->nshots; s++)
        printf("---:|");
    printf("\n");
    for (int p = 0; p < NPAIRS; p++) {
        printf("| %s - %s |", METHOD_KEYS[PAIRS[p][0]], METHOD_KEYS[PAIRS[p][1]]);
        for (int s = 0; s < o->nshots; s++) {
            stat st = paired(r->acc[PAIRS[p][0]][s], r->acc[PAIRS[p][1]][s], o->tasks);
            printf(" %+.3f +- %.3f |", st.mean, st.ci95);
        }
        printf("\n");
    }
    printf("\nThe gate returned:");
    for (int s = 0; s < o->nshots; s++) {
        printf(" %d-shot:", o->shots[s]);
        for (int m = 0; m < GEN_METHODS; m++)
            printf(" %s %d%s", gen_method_name((gen_method)m), r->chosen[s][m],
                   m + 1 < GEN_METHODS ? "," : s + 1 < o->nshots ? ";" : "");
    }
    printf(" (of %d tasks each)\n", o->tasks);
}

static const char *const FT_SET_NAMES[FT_SETS] = {
    "the support set", "up to 20 training samples per class of the same classes"};
static const char *const FT_SET_KEYS[FT_SETS] = {"support", "larger"};

/* Query accuracy after N full-batch fine-tuning steps on data set d. */
static void print_finetune(const eval_opts *o, const eval_results *r, int d)
{
    printf("\nFine-tuning on %s (query accuracy after N full-batch steps)\n\n",
           FT_SET_NAMES[d]);
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
                const double *v = init ? r->ft_rand[d][s][f] : r->ft_gen[d][s][f];
                printf(" %.3f |", stats_of(v, o->tasks).mean);
            }
            printf("\n");
        }
}

void eval_print_tables(const eval_opts *o, const eval_results *r, const char *what)
{
    printf("\nQuery accuracy on %d %d-way %s tasks per column (mean +- 95%% interval)\n\n",
           o->tasks, o->way, what);
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
    print_paired(o, r);
    stat vo = stats_of(r->vae_orig, o->tasks), vr = stats_of(r->vae_rec, o->tasks);
    printf("\nWeight VAE round trip of the oracle heads: %.3f -> %.3f (%.1f%% kept)\n", vo.mean,
           vr.mean, 100.0 * vr.mean / vo.mean);
    if (r->gen_count)
        printf("Generation: %.1f ms per request on average (%d requests)\n",
               r->gen_ms / r->gen_count, r->gen_count);
    if (o->finetune)
        for (int d = 0; d < FT_SETS; d++)
            print_finetune(o, r, d);
}

static json_t *stat_json(const double *v, int n)
{
    stat st = stats_of(v, n);
    if (isnan(st.mean))
        return json_null();
    return json_pack("{s:f,s:f}", "mean", st.mean, "ci95", st.ci95);
}

/* {"<shots>": {"generated": [...], "random": [...]}} for fine-tuning set d */
static json_t *finetune_json(const eval_opts *o, const eval_results *r, int d)
{
    json_t *per = json_object();
    for (int s = 0; s < o->nshots; s++) {
        json_t *gen = json_array(), *rnd = json_array();
        for (int f = 0; f < FT_POINTS; f++) {
            json_array_append_new(gen, json_real(stats_of(r->ft_gen[d][s][f], o->tasks).mean));
            json_array_append_new(rnd, json_real(stats_of(r->ft_rand[d][s][f], o->tasks).mean));
        }
        char key[16];
        snprintf(key, sizeof key, "%d", o->shots[s]);
        json_object_set_new(per, key, json_pack("{s:o,s:o}", "generated", gen, "random", rnd));
    }
    return per;
}

void eval_print_json(const eval_opts *o, const eval_results *r, const char *gen_id,
                       const char *what)
{
    json_t *root = json_object();
    json_object_set_new(root, "generator", json_string(gen_id));
    json_object_set_new(root, "tasks", json_integer(o->tasks));
    json_object_set_new(root, "way", json_integer(o->way));
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
    json_t *diffs = json_object(), *chosen = json_object();
    for (int p = 0; p < NPAIRS; p++) {
        json_t *per = json_object();
        for (int s = 0; s < o->nshots; s++) {
            char key[16];
            snprintf(key, sizeof key, "%d", o->shots[s]);
            stat st = paired(r->acc[PAIRS[p][0]][s], r->acc[PAIRS[p][1]][s], o->tasks);
            json_object_set_new(per, key, json_pack("{s:f,s:f}", "mean", st.mean, "ci95",
                                                    st.ci95));
        }
        char name[64];
        snprintf(name, sizeof name, "%s-%s", METHOD_KEYS[PAIRS[p][0]], METHOD_KEYS[PAIRS[p][1]]);
        json_object_set_new(diffs, name, per);
    }
    for (int s = 0; s < o->nshots; s++) {
        json_t *per = json_object();
        for (int m = 0; m < GEN_METHODS; m++)
            json_object_set_new(per, gen_method_name((gen_method)m),
                                json_integer(r->chosen[s][m]));
        char key[16];
        snprintf(key, sizeof key, "%d", o->shots[s]);
        json_object_set_new(chosen, key, per);
    }
    json_object_set_new(root, "paired_differences", diffs);
    json_object_set_new(root, "gate_chose", chosen);
    json_object_set_new(root, "vae",
                        json_pack("{s:o,s:o}", "original", stat_json(r->vae_orig, o->tasks),
                                  "reconstructed", stat_json(r->vae_rec, o->tasks)));
    if (r->gen_count)
        json_object_set_new(root, "generation_ms", json_real(r->gen_ms / r->gen_count));
    if (o->finetune) {
        json_t *ft = json_object();
        json_t *steps = json_array();
        for (int f = 0; f < FT_POINTS; f++)
            json_array_append_new(steps, json_integer(FT_STEPS[f]));
        json_object_set_new(ft, "steps", steps);
        for (int d = 0; d < FT_SETS; d++)
            json_object_set_new(ft, FT_SET_KEYS[d], finetune_json(o, r, d));
        json_object_set_new(root, "finetune", ft);
    }
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (txt)
        puts(txt);
    free(txt);
    json_decref(root);
}

int eval_write_plot(const eval_opts *o, const eval_results *r, const char *path, d2_error *err)
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
                stat st = stats_of(init ? r->ft_rand[FT_SUPPORT][s][f]
                                        : r->ft_gen[FT_SUPPORT][s][f],
                                   o->tasks);
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

