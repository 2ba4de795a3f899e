/* cmd_zoo.c - `d2nwg zoo build | import | info`: build a zoo of trained
 * target networks from a data source, import one from checkpoints, or
 * describe one. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "zoo.h"

static const char *CMD = "zoo";

static void zoo_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg zoo <build|import|info> [options]\n"
                 "\n"
                 "  build    train one target network per task drawn from a data source\n"
                 "  import   make a zoo from your own checkpoints (JSONL manifest)\n"
                 "  info     counts, spec, accuracy distribution, held-out combinations\n"
                 "\n"
                 "'d2nwg zoo <subcommand> --help' describes one subcommand.\n");
}

static void build_usage(FILE *out)
{
    zoo_build_cfg d = zoo_build_defaults();
    fprintf(out,
            "usage: d2nwg zoo build --out DIR [options]\n"
            "\n"
            "Draws tasks (ordered lists of `way` distinct classes, never one of the held-out\n"
            "class combinations), trains one target network per task on the source's train\n"
            "split, evaluates it on every test sample of its classes, and saves the zoo.\n"
            "\n"
            "  --source SRC         fashion-mnist | digits | iris | wine | csv:PATH | idx:PREFIX\n"
            "                       (default %s)\n"
            "  --way N              classes per task (default %d)\n"
            "  --tasks N            number of tasks / heads (default %d)\n"
            "  --feature F          pca:K or identity (default %s)\n"
            "  --per-class N        training samples per class (default %d)\n"
            "  --heldout-frac F     fraction of class combinations held out (default %.2f;\n"
            "                       at least one)\n"
            "  --seed S             seed (default %llu); the zoo does not depend on --threads\n"
            "  --threads N          worker threads (default: one per core)\n"
            "  --epochs N           training epochs per head (default %d)\n"
            "  --batch N            mini-batch size (default %d)\n"
            "  --lr F               AdamW learning rate, cosine-decayed (default %g)\n"
            "  --weight-decay F     AdamW weight decay (default %g)\n"
            "  --min-steps N        raise the epochs of small tasks to reach N updates\n"
            "                       (default %d; 0: off)\n"
            "  --quiet              no progress bar\n",
            d.source, d.way, d.tasks, d.feature, d.per_class, (double)d.heldout_frac,
            (unsigned long long)d.seed, d.train.epochs, d.train.batch, (double)d.train.lr,
            (double)d.train.weight_decay, d.train.min_steps);
}

static void import_usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg zoo import --manifest FILE --out DIR [--spec SPEC]\n"
            "\n"
            "FILE has one JSON object per line (paths relative to FILE):\n"
            "  {\"weights\": \"a.safetensors\", \"dataset\": \"a_data.safetensors\",\n"
            "   \"spec\": \"pca:128 | linear 128->5\", \"metrics\": {\"query_acc\": 0.9}}\n"
            "Weights use PyTorch nn.Sequential names (0.weight, 0.bias, ...); datasets hold x [n, D]\n"
            "and y [n]. Every checkpoint is checked against the spec (names, shapes, finite\n"
            "values); a bad line is reported with its number and skipped. Each dataset is copied\n"
            "to DIR/data/. Exits 1 only when no line could be imported.\n"
            "\n"
            "  --spec SPEC          the zoo's spec (default: the first valid line's)\n");
}

static void info_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg zoo info DIR [--json]\n"
                 "\n"
                 "Counts, spec, source, query accuracy distribution (mean, min, quartiles, max)\n"
                 "and held-out class combinations of a zoo. --json prints one JSON object with\n"
                 "keys tasks, spec, source, way, accuracy{mean,min,p25,median,p75,max}, heldout,\n"
                 "fingerprint.\n");
}

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

static int cmd_zoo_build(int argc, char **argv)
{
    zoo_build_cfg cfg = zoo_build_defaults();
    cfg.progress = 1;
    const char *out = NULL, *v;
    long l;
    double f;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            build_usage(stdout);
            return EXIT_OK;
        } else if (cli_flag(argv, i, "--quiet")) {
            cfg.progress = 0;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--source", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            cfg.source = v;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--out", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--feature", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            cfg.feature = v;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--way", &v))) {
            if (r < 0 || cli_int(CMD, "--way", v, 2, D2_MAX_WAY, &l))
                return EXIT_USAGE;
            cfg.way = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--tasks", &v))) {
            if (r < 0 || cli_int(CMD, "--tasks", v, 1, 10000000, &l))
                return EXIT_USAGE;
            cfg.tasks = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--per-class", &v))) {
            if (r < 0 || cli_int(CMD, "--per-class", v, 1, 100000000, &l))
                return EXIT_USAGE;
            cfg.per_class = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_int(CMD, "--threads", v, 1, 256, &l))
                return EXIT_USAGE;
            cfg.threads = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--epochs", &v))) {
            if (r < 0 || cli_int(CMD, "--epochs", v, 1, 100000, &l))
                return EXIT_USAGE;
            cfg.train.epochs = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--batch", &v))) {
            if (r < 0 || cli_int(CMD, "--batch", v, 1, 1000000, &l))
                return EXIT_USAGE;
            cfg.train.batch = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--min-steps", &v))) {
            if (r < 0 || cli_int(CMD, "--min-steps", v, 0, 100000000, &l))
                return EXIT_USAGE;
            cfg.train.min_steps = (int)l;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_u64(CMD, "--seed", v, &cfg.seed))
                return EXIT_USAGE;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--heldout-frac", &v))) {
            if (r < 0 || cli_float(CMD, "--heldout-frac", v, 0.0, 0.99, &f))
                return EXIT_USAGE;
            cfg.heldout_frac = (float)f;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--lr", &v))) {
            if (r < 0 || cli_float(CMD, "--lr", v, 1e-9, 100.0, &f))
                return EXIT_USAGE;
            cfg.train.lr = (float)f;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--weight-decay", &v))) {
            if (r < 0 || cli_float(CMD, "--weight-decay", v, 0.0, 100.0, &f))
                return EXIT_USAGE;
            cfg.train.weight_decay = (float)f;
        } else {
            cli_error(CMD, "build: unknown option '%s' (see 'd2nwg zoo build --help')", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!out) {
        cli_error(CMD, "build: --out DIR is required (see 'd2nwg zoo build --help')");
        return EXIT_USAGE;
    }
    if (strcmp(cfg.feature, "identity") && strncmp(cfg.feature, "pca:", 4)) {
        cli_error(CMD, "build: --feature '%s' (expected pca:K or identity)", cfg.feature);
        return EXIT_USAGE;
    }
    d2_error err = {0};
    zoo z;
    double t0 = d2_now();
    if (zoo_prepare(&z, &cfg, &err)) {
        cli_error(CMD, "%s", err.msg);
        return EXIT_FAILED;
    }
    double t1 = d2_now();
    if (zoo_train_entries(&z, cfg.threads, cfg.progress, &err)) {
        cli_error(CMD, "%s", err.msg);
        zoo_free(&z);
        return EXIT_FAILED;
    }
    double t2 = d2_now();
    if (zoo_save(&z, out, &err)) {
        cli_error(CMD, "%s", err.msg);
        zoo_free(&z);
        return EXIT_FAILED;
    }
    acc_stats q;
    if (acc_stats_of(&z, 1, &q)) {
        cli_error(CMD, "out of memory");
        zoo_free(&z);
        return EXIT_FAILED;
    }
    printf("zoo         %s\n", out);
    printf("heads       %d x '%s' from %s (%d train samples per class)\n", z.n, z.spec.text,
           z.source, z.per_class);
    printf("time        %.1f s: data + feature map %.1f s, training %.1f s (%.1f heads/s)\n",
           d2_now() - t0, t1 - t0, t2 - t1, (t2 - t1) > 0 ? z.n / (t2 - t1) : 0.0);
    print_stats("query acc", &q);
    printf("held out    %d class combinations\n", z.n_heldout);
    printf("fingerprint %s\n", z.fingerprint);
    zoo_free(&z);
    return EXIT_OK;
}

/* ---- import ---- */

static int cmd_zoo_import(int argc, char **argv)
{
    const char *manifest = NULL, *out = NULL, *spec = NULL, *v;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            import_usage(stdout);
            return EXIT_OK;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--manifest", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            manifest = v;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--out", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(CMD, argc, argv, &i, "--spec", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            spec = v;
        } else {
            cli_error(CMD, "import: unknown option '%s' (see 'd2nwg zoo import --help')",
                      argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!manifest || !out) {
        cli_error(CMD, "import: --manifest FILE and --out DIR are required");
        return EXIT_USAGE;
    }
    zoo_import_report rep;
    d2_error err = {0};
    int rc = zoo_import(manifest, spec, out, &rep, &err);
    for (int i = 0; i < rep.rejected; i++)
        cli_error(CMD, "%s line %d: %s", manifest, rep.rejects[i].line, rep.rejects[i].msg);
    if (rc)
        cli_error(CMD, "%s", err.msg);
    printf("imported %d, rejected %d%s%s\n", rep.imported, rep.rejected, rc ? "" : " -> ",
           rc ? "" : out);
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

static int info_json(const zoo *z, const acc_stats *q, const acc_stats *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "tasks", json_integer(z->n));
    json_object_set_new(o, "spec", json_string(z->spec.text));
    json_object_set_new(o, "source", json_string(z->source));
    json_object_set_new(o, "way", json_integer(z->way));
    json_object_set_new(o, "per_class", json_integer(z->per_class));
    json_object_set_new(o, "params", json_integer(z->P));
    json_object_set_new(o, "accuracy", stats_json(q));
    json_object_set_new(o, "train_accuracy", stats_json(t));
    json_t *ho = json_array();
    for (int i = 0; i < z->n_heldout; i++) {
        json_t *c = json_array();
        for (int j = 0; j < z->way; j++)
            json_array_append_new(c, json_integer(z->heldout[i][j]));
        json_array_append_new(ho, c);
    }
    json_object_set_new(o, "heldout", ho);
    json_object_set_new(o, "fingerprint", json_string(z->fingerprint));
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!s)
        return -1;
    printf("%s\n", s);
    free(s);
    return 0;
}

static int cmd_zoo_info(int argc, char **argv)
{
    const char *dir = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            info_usage(stdout);
            return EXIT_OK;
        } else if (cli_flag(argv, i, "--json")) {
            as_json = 1;
        } else if (argv[i][0] == '-' || dir) {
            cli_error(CMD, "info: unexpected argument '%s' (see 'd2nwg zoo info --help')",
                      argv[i]);
            return EXIT_USAGE;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        cli_error(CMD, "info: the zoo directory is required");
        return EXIT_USAGE;
    }
    zoo z;
    d2_error err = {0};
    if (zoo_load(&z, dir, 0, &err)) {
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
            printf("tasks       %d (%d-way, %d train samples per class, seed %llu)\n", z.n,
                   z.way, z.per_class, (unsigned long long)z.seed);
        else
            printf("tasks       %d imported checkpoints (up to %d-way)\n", z.n, z.way);
        print_stats("query acc", &q);
        print_stats("train acc", &t);
        printf("held out    %d class combinations", z.n_heldout);
        for (int i = 0; i < z.n_heldout && i < 20; i++) {
            printf("%s[", i ? " " : ": ");
            for (int j = 0; j < z.way; j++)
                printf("%s%d", j ? "," : "", z.heldout[i][j]);
            printf("]");
        }
        printf("%s\n", z.n_heldout > 20 ? " ..." : "");
        printf("fingerprint %s\n", z.fingerprint);
    }
    zoo_free(&z);
    if (rc) {
        cli_error(CMD, "out of memory");
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

int cmd_zoo(int argc, char **argv)
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
        return cmd_zoo_build(argc - 1, argv + 1);
    if (!strcmp(sub, "import"))
        return cmd_zoo_import(argc - 1, argv + 1);
    if (!strcmp(sub, "info"))
        return cmd_zoo_info(argc - 1, argv + 1);
    cli_error(CMD, "unknown subcommand '%s' (build, import or info)", sub);
    zoo_usage(stderr);
    return EXIT_USAGE;
}
