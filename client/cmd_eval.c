/* cmd_eval.c - `d2nwg eval`: how good are the generated heads, honestly.
 *
 * Over the zoo's held-out class combinations (never seen in training), or
 * tasks of another data source, compares per shot count:
 *   random head; nearest class mean (prototypes); logistic regression on the
 *   support set; D2NWG mean of the K candidates; D2NWG best-of-K chosen by
 *   support score (model retrieval); the zoo head of the nearest task by dataset
 *   embedding; the head trained on the task's full training data (oracle),
 * and fine-tuning curves from the generated head vs a random head.
 * This file: the options, the generator and the tasks; eval_run.c measures,
 * eval_report.c prints. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli_args.h"
#include "cli_opts.h"
#include "commands.h"
#include "eval_types.h"
#include "zoo.h"

typedef struct eval_cli {
    const char *generator, *zoo, *source, *device, *plot;
    int tasks, candidates, steps, no_finetune, way;
    cli_int_list shots;
    double guidance;
    uint64_t seed;
} eval_cli;

static const cli_option EVAL_OPTS[] = {
    {.name = "--generator", .type = CLI_PATH, .off = offsetof(eval_cli, generator),
     .metavar = "GEN", .help = "generator bundle ('d2nwg train')", .required = 1},
    {.name = "--zoo", .type = CLI_PATH, .off = offsetof(eval_cli, zoo), .metavar = "DIR",
     .help = "the zoo whose held-out class combinations are the\ntasks (or --source)"},
    {.name = "--tasks", .type = CLI_INT, .off = offsetof(eval_cli, tasks), .metavar = "N",
     .help = "tasks per shot count", .def = "100", .lo = 1, .hi = 100000},
    {.name = "--way", .type = CLI_INT, .off = offsetof(eval_cli, way), .metavar = "N",
     .help = "classes per task (an any-way generator takes\nits min..max way)", .unset =
     "the generator's most (--zoo: at most its held-out\ncombinations' size)", .lo = 2,
     .hi = D2_MAX_WAY},
    {.name = "--shots", .type = CLI_INT_LIST, .off = offsetof(eval_cli, shots),
     .help = "support sizes per class", .def = "1,5", .lo = 1, .hi = 1000,
     .max_items = MAX_SHOTS},
    {.name = "--candidates", .type = CLI_INT, .off = offsetof(eval_cli, candidates),
     .metavar = "K", .help = "candidates per generation", .unset = "the bundle's", .lo = 1,
     .hi = 1024},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(eval_cli, steps), .metavar = "N",
     .help = "sampler steps", .unset = "the bundle's", .lo = 1, .hi = 4000},
    {.name = "--guidance", .type = CLI_FLOAT, .off = offsetof(eval_cli, guidance),
     .metavar = "W", .help = "guidance scale", .unset = "the bundle's", .flo = 0.0, .fhi = 20.0},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(eval_cli, seed), .metavar = "S",
     .help = "seed of the task draw and sampling", .def = "1"},
    {.name = "--source", .type = CLI_STRING, .off = offsetof(eval_cli, source),
     .metavar = "NAME",
     .help = "tasks from another data source (digits, csv:PATH, ...):\n"
             "a dataset the generator never saw; square images are\n"
             "resized to the generator's input size"},
    {.name = "--no-finetune", .type = CLI_FLAG, .off = offsetof(eval_cli, no_finetune),
     .help = "skip the fine-tuning curves"},
    {.name = "--plot", .type = CLI_PATH, .off = offsetof(eval_cli, plot), .metavar = "FILE",
     .help = "write the fine-tuning curves as SVG"},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(eval_cli, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
};

static const cli_command EVAL_CMD = {
    .name = "eval",
    .synopsis = "--generator GEN --zoo DIR [options]",
    .about = "Evaluates generated heads on the zoo's held-out class combinations against\n"
             "baselines, as a Markdown table (mean and 95% interval of query accuracy);\n"
             "--json prints one JSON object instead.",
    .opts = EVAL_OPTS,
    .nopts = CLI_NOPTS(EVAL_OPTS),
    .globals = CLI_G_JSON,
};

/* Everything one evaluation holds, freed by eval_state_free. */
typedef struct eval_state {
    backend_t *be;
    generator *g;
    gen_workspace *ws;
    zoo z;
    eval_src src;
    eval_results res;
    task *tlist;
    char what[300]; /* the tasks, in words */
} eval_state;

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
            data_resize_square(row, s, tmp.x + (size_t)i * input_dim, t);
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

static void src_free(eval_src *s)
{
    if (s->owned) {
        dataset_free(&s->train);
        dataset_free(&s->test);
        class_index_free(&s->tci);
        class_index_free(&s->qci);
    }
}

/* The generator and its workspace; the settings its defaults complete. */
static int eval_setup(eval_state *st, const eval_cli *cli, int as_json, eval_opts *o,
                      d2_error *err)
{
    int rc = backend_create(&st->be, cli->device, 0, err);
    if (!rc)
        rc = generator_load(&st->g, cli->generator, st->be, err);
    if (rc)
        return rc;
    const gen_info *in = generator_info(st->g);
    memset(o, 0, sizeof *o);
    o->tasks = cli->tasks;
    o->nshots = cli->shots.n;
    memcpy(o->shots, cli->shots.v, sizeof(int) * (size_t)cli->shots.n);
    o->candidates = cli->candidates != CLI_UNSET_INT ? cli->candidates : in->default_candidates;
    o->steps = cli->steps != CLI_UNSET_INT ? cli->steps : in->default_steps;
    o->guidance = !isnan(cli->guidance) ? (float)cli->guidance : in->default_guidance;
    o->seed = cli->seed;
    o->finetune = !cli->no_finetune;
    o->as_json = as_json;
    o->plot = cli->plot;
    o->way_given = cli->way != CLI_UNSET_INT;
    o->way = o->way_given ? cli->way : in->max_way;
    if (o->way < in->min_way || o->way > in->max_way)
        return d2_fail(err, D2_ERANGE, "--way %d: this generator makes heads of %d..%d classes",
                       o->way, in->min_way, in->max_way);
    return gen_workspace_create(&st->ws, st->g, st->be, o->candidates, err);
}

static int results_alloc(eval_results *r, int tasks, int nshots, d2_error *err)
{
    int ok = 1;
    for (int s = 0; s < nshots; s++) {
        for (int m = 0; m < M_COUNT; m++)
            ok &= (r->acc[m][s] = calloc((size_t)tasks, sizeof(double))) != NULL;
        for (int d = 0; d < FT_SETS; d++)
            for (int f = 0; f < FT_POINTS; f++) {
                ok &= (r->ft_gen[d][s][f] = calloc((size_t)tasks, sizeof(double))) != NULL;
                ok &= (r->ft_rand[d][s][f] = calloc((size_t)tasks, sizeof(double))) != NULL;
            }
    }
    ok &= (r->vae_orig = calloc((size_t)tasks, sizeof(double))) != NULL;
    ok &= (r->vae_rec = calloc((size_t)tasks, sizeof(double))) != NULL;
    return ok ? 0 : d2_fail(err, D2_ENOMEM, "out of memory");
}

static void results_free(eval_results *r)
{
    for (int s = 0; s < MAX_SHOTS; s++) {
        for (int m = 0; m < M_COUNT; m++)
            free(r->acc[m][s]);
        for (int d = 0; d < FT_SETS; d++)
            for (int f = 0; f < FT_POINTS; f++) {
                free(r->ft_gen[d][s][f]);
                free(r->ft_rand[d][s][f]);
            }
    }
    free(r->vae_orig);
    free(r->vae_rec);
}

/* The source's class groups (glyph scripts; data_source_class_group) that
 * can make a `way`-way task: group g is classes first[g] .. first[g] + count[g] - 1. */
typedef struct class_groups {
    int n, *first, *count;
} class_groups;

static int groups_build(class_groups *gr, const data_source *ds, int way, d2_error *err)
{
    const int C = ds->train.classes;
    gr->n = 0;
    gr->first = malloc((size_t)C * sizeof(int));
    gr->count = malloc((size_t)C * sizeof(int));
    if (!gr->first || !gr->count)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    for (int c = 0, start = 0; c < C; c++) {
        int last = c + 1 == C || strcmp(data_source_class_group(ds, c, NULL),
                                        data_source_class_group(ds, c + 1, NULL)) != 0;
        if (!last)
            continue;
        if (c + 1 - start >= way) {
            gr->first[gr->n] = start;
            gr->count[gr->n++] = c + 1 - start;
        }
        start = c + 1;
    }
    if (gr->n == 0)
        return d2_fail(err, D2_EINVAL, "%s: no class group has %d classes for a %d-way task",
                       ds->name, way, way);
    return 0;
}

/* Task i: a group drawn uniformly, then `way` of its classes in random order. */
static void draw_grouped_task(const class_groups *gr, int way, rng *r, task *t, int *scratch)
{
    int g = (int)rng_below(r, (uint32_t)gr->n);
    for (int c = 0; c < gr->count[g]; c++)
        scratch[c] = gr->first[g] + c;
    rng_shuffle_int(r, scratch, gr->count[g]);
    t->way = way;
    memcpy(t->classes, scratch, (size_t)way * sizeof(int));
}

/* Tasks from a data source the generator never saw: each one the classes of
 * one group of the source (one glyph script; the whole source otherwise). */
static int tasks_from_source(eval_state *st, const char *source, const eval_opts *o, rng *r0,
                             d2_error *err)
{
    const gen_info *in = generator_info(st->g);
    const int way = o->way;
    eval_src *src = &st->src;
    data_source ds;
    memset(&ds, 0, sizeof ds);
    class_groups gr = {0};
    int rc = data_source_load(&ds, source, err);
    if (!rc)
        rc = groups_build(&gr, &ds, way, err);
    src->owned = 1;
    if (!rc)
        rc = to_features(&ds.train, in->input_dim, generator_feature_map(st->g), &src->train,
                         err);
    if (!rc)
        rc = to_features(&ds.test, in->input_dim, generator_feature_map(st->g), &src->test, err);
    src->classes = ds.train.classes;
    data_source_free(&ds);
    int *scratch = malloc((size_t)(src->classes > 0 ? src->classes : 1) * sizeof(int));
    if (!rc && !scratch)
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
    if (!rc && !((rc = class_index_build(&src->tci, &src->train, err)) ||
                 (rc = class_index_build(&src->qci, &src->test, err)))) {
        src->per_class = 300;
        for (int i = 0; i < o->tasks; i++)
            draw_grouped_task(&gr, way, r0, &st->tlist[i], scratch);
        snprintf(st->what, sizeof st->what, "'%s' (%d class groups; never seen in training)",
                 source, gr.n);
    }
    free(scratch);
    free(gr.first);
    free(gr.count);
    return rc;
}

/* Tasks from the zoo's held-out class combinations, in shuffled order. */
static int tasks_from_zoo(eval_state *st, const char *zoo_dir, eval_opts *o, rng *r0,
                          d2_error *err)
{
    const gen_info *in = generator_info(st->g);
    zoo *z = &st->z;
    int rc = zoo_load(z, zoo_dir, 1, err);
    if (rc)
        return rc;
    if (z->way != in->max_way || z->fmap.out_dim != in->feature_dim || z->P != in->params)
        return d2_fail(err, D2_EINVAL,
                       "zoo %s (%d-way, %d features, %d parameters) does not match the "
                       "generator (%d-way, %d features, %d parameters)",
                       zoo_dir, z->way, z->fmap.out_dim, z->P, in->max_way, in->feature_dim,
                       in->params);
    const int way = zoo_heldout_way(z);
    if (!o->way_given && o->way > way) // an any-way zoo's held-out combinations are smaller
        o->way = way;
    if (o->way > way)
        return d2_fail(err, D2_EINVAL, "zoo %s holds out combinations of %d classes; --way %d "
                       "needs --source", zoo_dir, way, o->way);
    if (z->n_heldout < 1)
        return d2_fail(err, D2_EINVAL, "zoo %s has no held-out class combinations to evaluate on",
                       zoo_dir);
    if (in->zoo_fingerprint[0] && strcmp(in->zoo_fingerprint, z->fingerprint))
        fprintf(stderr, "d2nwg eval: warning: the generator was trained on zoo %.12s, not "
                        "on %s (%.12s)\n",
                in->zoo_fingerprint, zoo_dir, z->fingerprint);
    st->src.train = z->train_feat;
    st->src.test = z->test_feat;
    st->src.tci = z->train_ci;
    st->src.qci = z->test_ci;
    st->src.per_class = z->per_class;
    for (int i = 0; i < o->tasks; i++) { // a combination's first o->way classes, shuffled
        st->tlist[i].way = o->way;
        memcpy(st->tlist[i].classes, z->heldout[i % z->n_heldout], (size_t)way * sizeof(int));
        rng_shuffle_int(r0, st->tlist[i].classes, way);
    }
    snprintf(st->what, sizeof st->what, "held-out (%d class combinations never in the zoo)",
             z->n_heldout);
    return 0;
}

/* The tables (or JSON), and the plot. */
static int eval_report(const eval_state *st, const eval_opts *o, d2_error *err)
{
    const gen_info *in = generator_info(st->g);
    if (o->as_json) {
        eval_print_json(o, &st->res, in->id, st->what);
    } else {
        printf("generator %.12s, %d candidates, %d steps, guidance %.2f, seed %llu\n", in->id,
               o->candidates, o->steps, (double)o->guidance, (unsigned long long)o->seed);
        eval_print_tables(o, &st->res, st->what);
    }
    if (!o->plot || !o->finetune)
        return 0;
    int rc = eval_write_plot(o, &st->res, o->plot, err);
    if (!rc && !o->as_json)
        printf("\nwrote %s\n", o->plot);
    return rc;
}

static int eval_all(eval_state *st, const eval_cli *cli, int as_json, d2_error *err)
{
    eval_opts o;
    int rc = eval_setup(st, cli, as_json, &o, err);
    if (!rc && !(st->tlist = calloc((size_t)o.tasks, sizeof *st->tlist)))
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
    if (!rc)
        rc = results_alloc(&st->res, o.tasks, o.nshots, err);
    if (rc)
        return rc;
    rng r0;
    rng_init(&r0, rng_derive(o.seed, "eval-tasks", 0), 0);
    rc = cli->source ? tasks_from_source(st, cli->source, &o, &r0, err)
                     : tasks_from_zoo(st, cli->zoo, &o, &r0, err);
    if (!rc)
        rc = eval_run(st->g, st->ws, &st->src, st->tlist, o.way, &o, &st->res, err);
    if (!rc)
        rc = eval_report(st, &o, err);
    return rc;
}

int cmd_eval(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "eval";
    eval_cli cli;
    int code;
    if (!cli_parse(&EVAL_CMD, &cli, g, argc, argv, &code))
        return code;
    if (!cli.zoo && !cli.source) {
        cli_error(cmd, "--zoo (or --source) is required (see 'd2nwg eval --help')");
        return EXIT_USAGE;
    }
    d2_error err = {0};
    eval_state st;
    memset(&st, 0, sizeof st);
    code = EXIT_OK;
    if (eval_all(&st, &cli, g->json, &err)) {
        cli_error(cmd, "%s", err.msg);
        code = EXIT_FAILED;
    }
    results_free(&st.res);
    free(st.tlist);
    src_free(&st.src);
    zoo_free(&st.z);
    gen_workspace_free(st.ws);
    generator_free(st.g);
    backend_destroy(st.be);
    return code;
}
