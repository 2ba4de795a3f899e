/* cmd_zoo.c - `d2nwg zoo build | import | info | merge`: build a zoo of
 * trained target networks from a data source (or one shard of it), import one
 * from checkpoints, describe one; merge (cmd_zoo_merge.c) joins shards. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "zoo.h"

static const char *CMD = "zoo";

static void zoo_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg zoo <build|import|info|merge> [options]\n"
                 "\n"
                 "  build    train one target network per task drawn from a data source\n"
                 "           (--shard I/N: one slice of the tasks, for zoo merge)\n"
                 "  import   make a zoo from your own checkpoints (JSONL manifest)\n"
                 "  info     counts, spec, accuracy distribution, held-out combinations\n"
                 "  merge    join the shards of a build into the whole zoo\n"
                 "\n"
                 "'d2nwg zoo <subcommand> --help' describes one subcommand.\n");
}

/* zoo build: the defaults are zoo_build_defaults()'s (keep = 1), so the help
 * shows the values the build really uses. */
typedef struct build_opts {
    const char *source, *feature, *out, *shard;
    int way, min_way, tasks, per_class, threads, epochs, batch, min_steps;
    double heldout_frac, lr, weight_decay;
    uint64_t seed;
} build_opts;

#define BUILD_OFF(f) .off = offsetof(build_opts, f)
static const cli_option BUILD_OPTS[] = {
    {.name = "--out", .type = CLI_PATH, BUILD_OFF(out), .metavar = "DIR",
     .help = "where to save the zoo", .required = 1},
    {.name = "--source", .type = CLI_STRING, BUILD_OFF(source), .metavar = "SRC", .keep = 1,
     .help = "fashion-mnist | digits | iris | wine | csv:PATH |\nidx:PREFIX"},
    {.name = "--way", .type = CLI_INT, BUILD_OFF(way), .metavar = "N", .keep = 1,
     .help = "classes per task (with --min-way: the most)", .lo = 2, .hi = D2_MAX_WAY},
    {.name = "--min-way", .type = CLI_INT, BUILD_OFF(min_way), .metavar = "N",
     .help = "an any-way zoo: each task draws its classes\nuniformly in N..--way; heads keep --way rows,\nthe unused ones zero",
     .lo = 2, .hi = D2_MAX_WAY, .unset = "every task has --way classes"},
    {.name = "--tasks", .type = CLI_INT, BUILD_OFF(tasks), .metavar = "N", .keep = 1,
     .help = "number of tasks / heads", .lo = 1, .hi = 10000000},
    {.name = "--feature", .type = CLI_STRING, BUILD_OFF(feature), .metavar = "F", .keep = 1,
     .help = "pca:K, cnn:FILE (a 'd2nwg backbone train' file)\nor identity"},
    {.name = "--per-class", .type = CLI_INT, BUILD_OFF(per_class), .metavar = "N", .keep = 1,
     .help = "training samples per class", .lo = 1, .hi = 100000000},
    {.name = "--heldout-frac", .type = CLI_FLOAT, BUILD_OFF(heldout_frac), .metavar = "F",
     .keep = 1, .help = "fraction of class combinations held out (at least one)",
     .flo = 0.0, .fhi = 0.99},
    {.name = "--seed", .type = CLI_U64, BUILD_OFF(seed), .metavar = "S", .keep = 1,
     .help = "seed; the zoo does not depend on --threads"},
    {.name = "--threads", .type = CLI_INT, BUILD_OFF(threads), .metavar = "N",
     .help = "worker threads", .unset = "one per core", .lo = 1, .hi = 256},
    {.name = "--epochs", .type = CLI_INT, BUILD_OFF(epochs), .metavar = "N", .keep = 1,
     .help = "training epochs per head", .lo = 1, .hi = 100000},
    {.name = "--batch", .type = CLI_INT, BUILD_OFF(batch), .metavar = "N", .keep = 1,
     .help = "mini-batch size", .lo = 1, .hi = 1000000},
    {.name = "--lr", .type = CLI_FLOAT, BUILD_OFF(lr), .metavar = "F", .keep = 1,
     .help = "AdamW learning rate, cosine-decayed", .flo = 1e-9, .fhi = 100.0},
    {.name = "--weight-decay", .type = CLI_FLOAT, BUILD_OFF(weight_decay), .metavar = "F",
     .keep = 1, .help = "AdamW weight decay", .flo = 0.0, .fhi = 100.0},
    {.name = "--min-steps", .type = CLI_INT, BUILD_OFF(min_steps), .metavar = "N", .keep = 1,
     .help = "raise the epochs of small tasks to reach N updates\n(0: off)", .lo = 0,
     .hi = 100000000},
    {.name = "--shard", .type = CLI_STRING, BUILD_OFF(shard), .metavar = "I/N",
     .help = "build shard I of N only (0 <= I < N): its slice of the\ntasks, with the seeds "
             "of the whole build; join the\nshards with 'd2nwg zoo merge'",
     .unset = "the whole zoo"},
};

static const cli_command BUILD_CMD = {
    .name = "zoo build",
    .synopsis = "--out DIR [options]",
    .about = "Draws tasks (ordered lists of `way` distinct classes, never one of the held-out\n"
             "class combinations), trains one target network per task on the source's train\n"
             "split, evaluates it on every test sample of its classes, and saves the zoo.\n"
             "With --shard I/N it trains tasks floor(I*T/N) .. floor((I+1)*T/N)-1 of the T\n"
             "tasks and saves a shard, which only zoo info and zoo merge read.",
    .opts = BUILD_OPTS,
    .nopts = CLI_NOPTS(BUILD_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

typedef struct import_opts {
    const char *manifest, *out, *spec;
    int skip_bad;
} import_opts;

static const cli_option IMPORT_OPTS[] = {
    {.name = "--manifest", .type = CLI_PATH, .off = offsetof(import_opts, manifest),
     .metavar = "FILE", .help = "the JSONL manifest", .required = 1},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(import_opts, out), .metavar = "DIR",
     .help = "where to save the zoo", .required = 1},
    {.name = "--spec", .type = CLI_STRING, .off = offsetof(import_opts, spec), .metavar = "SPEC",
     .help = "the zoo's spec", .unset = "the first valid line's"},
    {.name = "--skip-bad", .type = CLI_FLAG, .off = offsetof(import_opts, skip_bad),
     .help = "import the good lines when some are rejected\n(default: all or nothing)"},
};

static const cli_command IMPORT_CMD = {
    .name = "zoo import",
    .synopsis = "--manifest FILE --out DIR [--spec SPEC] [--skip-bad] [--json]",
    .about = "FILE has one JSON object per line (paths relative to FILE):\n"
             "  {\"weights\": \"a.safetensors\", \"dataset\": \"a_data.safetensors\",\n"
             "   \"spec\": \"pca:128 | linear 128->5\", \"metrics\": {\"query_acc\": 0.9}}\n"
             "Weights use PyTorch nn.Sequential names (0.weight, 0.bias, ...); datasets hold\n"
             "x [n, D] and y [n]. Every checkpoint is checked against the spec (names, shapes,\n"
             "finite values, the first one's frozen module 0; F16/BF16 compared after\n"
             "conversion); a bad line is reported with its number. Any bad line: exit 1 and\n"
             "nothing written, unless --skip-bad (then exit 1 only when no line was good).\n"
             "Each dataset is copied to DIR/data/.",
    .opts = IMPORT_OPTS,
    .nopts = CLI_NOPTS(IMPORT_OPTS),
    .globals = CLI_G_JSON,
};

typedef struct info_opts {
    const char *dir;
} info_opts;

static const cli_command INFO_CMD = {
    .name = "zoo info",
    .synopsis = "DIR [--json]",
    .about = "Counts, spec, source, query accuracy distribution (mean, min, quartiles, max)\n"
             "and held-out class combinations of a zoo, or of a shard of a build (zoo build\n"
             "--shard). --json prints one JSON object with keys tasks, spec, source, way,\n"
             "accuracy{mean,min,p25,median,p75,max}, heldout, shard (null for a whole zoo;\n"
             "else index, of, first, rows, tasks), fingerprint.",
    .globals = CLI_G_JSON,
    .positional = "DIR",
    .positional_off = offsetof(info_opts, dir),
    .missing_positional = "the zoo directory is required (d2nwg zoo info DIR)",
};

/* ---- accuracy distribution ---- */

typedef struct acc_stats {
    int n; /* finite values */
    double mean, min, p25, median, p75, max;
} acc_stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* quantile with linear interpolation between order statistics (numpy's default) */
static double quantile(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

static int acc_stats_of(const zoo *z, int query, acc_stats *st)
{
    memset(st, 0, sizeof *st);
    double *v = malloc(sizeof(double) * (size_t)(z->n > 0 ? z->n : 1));
    if (!v)
        return -1;
    double sum = 0.0;
    for (int i = 0; i < z->n; i++) {
        float a = query ? z->e[i].query_acc : z->e[i].train_acc;
        if (isfinite(a)) {
            v[st->n++] = a;
            sum += a;
        }
    }
    if (st->n > 0) {
        qsort(v, (size_t)st->n, sizeof(double), cmp_double);
        st->mean = sum / st->n;
        st->min = v[0];
        st->max = v[st->n - 1];
        st->p25 = quantile(v, st->n, 0.25);
        st->median = quantile(v, st->n, 0.5);
        st->p75 = quantile(v, st->n, 0.75);
    }
    free(v);
    return 0;
}

static void print_stats(const char *label, const acc_stats *s)
{
    if (s->n == 0) {
        printf("%-12s unknown\n", label);
        return;
    }
    printf("%-12s mean %.4f  min %.4f  p25 %.4f  median %.4f  p75 %.4f  max %.4f  (%d heads)\n",
           label, s->mean, s->min, s->p25, s->median, s->p75, s->max, s->n);
}

/* ---- build ---- */

static void build_opts_from(const zoo_build_cfg *c, build_opts *o)
{
    memset(o, 0, sizeof *o);
    o->source = c->source;
    o->feature = c->feature;
    o->way = c->way;
    o->tasks = c->tasks;
    o->per_class = c->per_class;
    o->heldout_frac = c->heldout_frac;
    o->seed = c->seed;
    o->epochs = c->train.epochs;
    o->batch = c->train.batch;
    o->lr = c->train.lr;
    o->weight_decay = c->train.weight_decay;
    o->min_steps = c->train.min_steps;
}

static void build_cfg_from(const build_opts *o, int quiet, zoo_build_cfg *c)
{
    c->source = o->source;
    c->feature = o->feature;
    c->way = o->way;
    c->min_way = o->min_way != CLI_UNSET_INT ? o->min_way : 0;
    c->tasks = o->tasks;
    c->per_class = o->per_class;
    c->heldout_frac = (float)o->heldout_frac;
    c->seed = o->seed;
    c->threads = o->threads != CLI_UNSET_INT ? o->threads : 0;
    c->train.epochs = o->epochs;
    c->train.batch = o->batch;
    c->train.lr = (float)o->lr;
    c->train.weight_decay = (float)o->weight_decay;
    c->train.min_steps = o->min_steps;
    c->progress = !quiet;
}

/* "I/N" with 0 <= I < N -> cfg; 0 when absent; -1 (after a message) when malformed. */
static int parse_shard(const char *s, zoo_build_cfg *c)
{
    if (!s)
        return 0;
    int i, n, used = 0;
    if (sscanf(s, "%d/%d%n", &i, &n, &used) != 2 || s[used] || s[0] < '0' || s[0] > '9' ||
        i < 0 || n < 1 || i >= n || n > c->tasks) {
        cli_error(CMD, "build: --shard '%s': expected I/N with 0 <= I < N <= --tasks (%d)", s,
                  c->tasks);
        return -1;
    }
    c->shard_index = i;
    c->shard_count = n;
    return 0;
}

static void print_build(const zoo *z, const char *out, double t0, double t1, double t2,
                        const acc_stats *q)
{
    printf("zoo         %s\n", out);
    printf("heads       %d x '%s' from %s (%d train samples per class)\n", z->n, z->spec.text,
           z->source, z->per_class);
    printf("time        %.1f s: data + feature map %.1f s, training %.1f s (%.1f heads/s)\n",
           d2_now() - t0, t1 - t0, t2 - t1, (t2 - t1) > 0 ? z->n / (t2 - t1) : 0.0);
    if (z->part.count)
        printf("shard       %d of %d: tasks %d..%d of %d (join with 'd2nwg zoo merge')\n",
               z->part.index, z->part.count, z->part.first, z->part.first + z->n - 1,
               z->part.tasks);
    print_stats("query acc", q);
    printf("held out    %d class combinations\n", z->n_heldout);
    printf("fingerprint %s\n", z->fingerprint);
}

/* {"index", "of", "first", "rows", "tasks"} of a shard; null for a whole zoo. */
static json_t *shard_json(const zoo *z)
{
    if (!z->part.count)
        return json_null();
    return json_pack("{s:i,s:i,s:i,s:i,s:i}", "index", z->part.index, "of", z->part.count,
                     "first", z->part.first, "rows", z->n, "tasks", z->part.tasks);
}

static json_t *stats_json(const acc_stats *s);
static json_t *shard_json(const zoo *z);

/* --json: the build summary as one object on stdout. */
static int print_build_json(const zoo *z, const char *out, double t0, double t1, double t2,
                            const acc_stats *q)
{
    json_t *j = json_pack("{s:s,s:i,s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:o,s:i,s:o,s:s}", "zoo", out,
                          "heads", z->n, "spec", z->spec.text, "source", z->source, "way",
                          z->way, "per_class", z->per_class, "seconds", d2_now() - t0,
                          "data_seconds", t1 - t0, "train_seconds", t2 - t1, "accuracy",
                          stats_json(q), "heldout", z->n_heldout, "shard", shard_json(z),
                          "fingerprint", z->fingerprint);
    return cli_print_json("zoo build", j);
}

static int cmd_zoo_build(cli_globals *g, int argc, char **argv)
{
    zoo_build_cfg cfg = zoo_build_defaults();
    build_opts o;
    build_opts_from(&cfg, &o);
    int code;
    if (!cli_parse(&BUILD_CMD, &o, g, argc, argv, &code))
        return code;
    build_cfg_from(&o, g->quiet, &cfg);
    if (strcmp(cfg.feature, "identity") && strncmp(cfg.feature, "pca:", 4) &&
        strncmp(cfg.feature, "cnn:", 4)) {
        cli_error(CMD, "build: --feature '%s' (expected pca:K, cnn:FILE or identity)",
                  cfg.feature);
        return EXIT_USAGE;
    }
    if (parse_shard(o.shard, &cfg))
        return EXIT_USAGE;
    d2_error err = {0};
    zoo z;
    double t0 = d2_now(), t1 = t0;
    if (zoo_prepare(&z, &cfg, &err)) {
        cli_error(CMD, "%s", err.msg);
        return EXIT_FAILED;
    }
    t1 = d2_now();
    acc_stats q;
    int rc = zoo_train_entries(&z, cfg.threads, cfg.progress, &err);
    double t2 = d2_now();
    if (!rc)
        rc = zoo_save(&z, o.out, &err);
    if (!rc && acc_stats_of(&z, 1, &q))
        rc = d2_fail(&err, D2_ENOMEM, "out of memory");
    if (rc)
        cli_error(CMD, "%s", err.msg);
    else if (g->json)
        rc = print_build_json(&z, o.out, t0, t1, t2, &q);
    else
        print_build(&z, o.out, t0, t1, t2, &q);
    zoo_free(&z);
    return rc ? EXIT_FAILED : EXIT_OK;
}

/* ---- import ---- */

/* --json: counts, each rejected line and where the zoo went (null: nowhere). */
static int print_import_json(const zoo_import_report *rep, const char *out, int written)
{
    json_t *rejects = json_array();
    for (int i = 0; rejects && i < rep->rejected; i++)
        json_array_append_new(rejects, json_pack("{s:i,s:s}", "line", rep->rejects[i].line,
                                                 "message", rep->rejects[i].msg));
    json_t *j = json_pack("{s:i,s:i,s:o,s:o}", "imported", written ? rep->imported : 0,
                          "rejected", rep->rejected, "rejects", rejects ? rejects : json_null(),
                          "zoo", written ? json_string(out) : json_null());
    return cli_print_json("zoo import", j);
}

static int cmd_zoo_import(cli_globals *g, int argc, char **argv)
{
    import_opts o;
    int code;
    if (!cli_parse(&IMPORT_CMD, &o, g, argc, argv, &code))
        return code;
    const char *manifest = o.manifest, *out = o.out, *spec = o.spec;
    zoo_import_report rep;
    d2_error err = {0};
    int rc = zoo_import_lines(manifest, spec, out, o.skip_bad, &rep, &err);
    for (int i = 0; i < rep.rejected; i++)
        cli_error(CMD, "%s line %d: %s", manifest, rep.rejects[i].line, rep.rejects[i].msg);
    if (rc)
        cli_error(CMD, "%s", err.msg);
    if (g->json && print_import_json(&rep, out, !rc))
        rc = -1;
    else if (!g->json)
        printf("imported %d, rejected %d%s%s\n", rc ? 0 : rep.imported, rep.rejected,
               rc ? "" : " -> ", rc ? "" : out);
    zoo_import_report_free(&rep);
    return rc ? EXIT_FAILED : EXIT_OK;
}

/* ---- info ---- */

static json_t *stats_json(const acc_stats *s)
{
    json_t *o = json_object();
    const char *keys[] = {"mean", "min", "p25", "median", "p75", "max"};
    double vals[] = {s->mean, s->min, s->p25, s->median, s->p75, s->max};
    for (int i = 0; i < 6; i++)
        json_object_set_new(o, keys[i], s->n ? json_real(vals[i]) : json_null());
    json_object_set_new(o, "count", json_integer(s->n));
    return o;
}

/* The class groups tasks were drawn within (scripts, sources), with how many
 * of the zoo's tasks each holds; one group for a zoo of one ungrouped source. */
static json_t *groups_json(const zoo *z)
{
    json_t *a = json_array();
    for (int g = 0; g < z->ngroups; g++) {
        const zoo_group *grp = &z->groups[g];
        int tasks = 0;
        for (int i = 0; i < z->n; i++)
            tasks += z->e[i].classes[0] >= grp->first &&
                     z->e[i].classes[0] < grp->first + grp->count;
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:i,s:i}", "name", grp->name, "part",
                                           grp->part, "first_class", grp->first, "classes",
                                           grp->count, "tasks", tasks));
    }
    if (!z->ngroups) // every class of the source; their count is the source's
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:n,s:i}", "name", z->source, "part",
                                           0, "first_class", 0, "classes", "tasks", z->n));
    return a;
}

static int info_json(const zoo *z, const acc_stats *q, const acc_stats *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "tasks", json_integer(z->n));
    json_object_set_new(o, "spec", json_string(z->spec.text));
    json_object_set_new(o, "source", json_string(z->source));
    json_object_set_new(o, "way", json_integer(z->way));
    json_object_set_new(o, "min_way", json_integer(z->min_way > 0 ? z->min_way : z->way));
    json_object_set_new(o, "per_class", json_integer(z->per_class));
    json_object_set_new(o, "params", json_integer(z->P));
    json_object_set_new(o, "accuracy", stats_json(q));
    json_object_set_new(o, "train_accuracy", stats_json(t));
    json_t *ho = json_array();
    for (int i = 0; i < z->n_heldout; i++) {
        json_t *c = json_array();
        for (int j = 0; j < zoo_heldout_way(z); j++)
            json_array_append_new(c, json_integer(z->heldout[i][j]));
        json_array_append_new(ho, c);
    }
    json_object_set_new(o, "heldout", ho);
    json_object_set_new(o, "groups", groups_json(z));
    json_object_set_new(o, "shard", shard_json(z));
    json_object_set_new(o, "fingerprint", json_string(z->fingerprint));
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!s)
        return -1;
    printf("%s\n", s);
    free(s);
    return 0;
}

static int cmd_zoo_info(cli_globals *g, int argc, char **argv)
{
    info_opts o;
    int code;
    if (!cli_parse(&INFO_CMD, &o, g, argc, argv, &code))
        return code;
    const char *dir = o.dir;
    int as_json = g->json;
    zoo z;
    d2_error err = {0};
    if (zoo_load_any(&z, dir, &err)) { /* a shard too: info says which */
        cli_error(CMD, "%s", err.msg);
        return EXIT_FAILED;
    }
    acc_stats q, t;
    int rc = acc_stats_of(&z, 1, &q) || acc_stats_of(&z, 0, &t) ? -1 : 0;
    if (!rc && as_json) {
        rc = info_json(&z, &q, &t);
    } else if (!rc) {
        printf("zoo         %s\n", dir);
        printf("source      %s\n", z.source);
        printf("spec        %s (%d parameters per head)\n", z.spec.text, z.P);
        if (strcmp(z.source, "import"))
            if (z.min_way > 0 && z.min_way < z.way)
                printf("tasks       %d (%d..%d-way, %d train samples per class, seed %llu)\n",
                       z.n, z.min_way, z.way, z.per_class, (unsigned long long)z.seed);
            else
                printf("tasks       %d (%d-way, %d train samples per class, seed %llu)\n", z.n,
                       z.way, z.per_class, (unsigned long long)z.seed);
        else
            printf("tasks       %d imported checkpoints (up to %d-way)\n", z.n, z.way);
        if (z.part.count)
            printf("shard       %d of %d of a build: tasks %d..%d of %d; not a whole zoo "
                   "(join the shards with 'd2nwg zoo merge')\n", z.part.index, z.part.count,
                   z.part.first, z.part.first + z.n - 1, z.part.tasks);
        print_stats("query acc", &q);
        print_stats("train acc", &t);
        printf("held out    %d class combinations", z.n_heldout);
        for (int i = 0; i < z.n_heldout && i < 20; i++) {
            printf("%s[", i ? " " : ": ");
            for (int j = 0; j < zoo_heldout_way(&z); j++)
                printf("%s%d", j ? "," : "", z.heldout[i][j]);
            printf("]");
        }
        printf("%s\n", z.n_heldout > 20 ? " ..." : "");
        if (z.ngroups) {
            printf("groups      %d (tasks drawn within one):", z.ngroups);
            for (int i = 0; i < z.ngroups; i++)
                printf("%s%s", i ? ", " : " ", z.groups[i].name);
            printf("\n");
        }
        printf("fingerprint %s\n", z.fingerprint);
    }
    zoo_free(&z);
    if (rc) {
        cli_error(CMD, "out of memory");
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

int cmd_zoo(cli_globals *g, int argc, char **argv)
{
    if (argc < 2) {
        zoo_usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        zoo_usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(sub, "build"))
        return cmd_zoo_build(g, argc - 1, argv + 1);
    if (!strcmp(sub, "import"))
        return cmd_zoo_import(g, argc - 1, argv + 1);
    if (!strcmp(sub, "info"))
        return cmd_zoo_info(g, argc - 1, argv + 1);
    if (!strcmp(sub, "merge"))
        return cmd_zoo_merge(g, argc - 1, argv + 1);
    cli_error(CMD, "unknown subcommand '%s' (build, import, info or merge)", sub);
    zoo_usage(stderr);
    return EXIT_USAGE;
}
