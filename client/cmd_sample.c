/* cmd_sample.c - `d2nwg sample`: write a K-shot support set drawn from a data
 * source, as CSV, as a JSON job request for the daemon (curl --data @FILE),
 * or as safetensors - so there is something real to try the tools on. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "cli_args.h"
#include "commands.h"
#include "data.h"
#include "safetensors.h"
#include "strbuf.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg sample --out FILE [options]\n"
            "\n"
            "Draws a support set: `shots` rows of each listed class, labelled 0..N-1 in the\n"
            "order the classes are given.\n"
            "\n"
            "  --source SRC      fashion-mnist (default), digits, iris, wine, csv:PATH, idx:PREFIX\n"
            "  --classes LIST    source classes in label order (default 0,1,2,3,4)\n"
            "  --shots K         rows per class (default 5)\n"
            "  --split S         train or test (default test)\n"
            "  --seed S          seed of the draw (default 1)\n"
            "  --format F        csv (header: label,x0,x1,...), json (a POST /v1/jobs body\n"
            "                    for the generator 'default'), or safetensors (x, y);\n"
            "                    default: from the file name\n"
            "  --out FILE        where to write it\n");
}

static int parse_classes(const char *s, task *t)
{
    t->way = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 100000 || t->way >= D2_MAX_WAY)
            return -1;
        t->classes[t->way++] = (int)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return t->way >= 1 ? 0 : -1;
}

static int write_csv(const dataset *d, const char *path, d2_error *err)
{
    strbuf b = {0};
    strbuf_printf(&b, "label");
    for (int j = 0; j < d->dim; j++)
        strbuf_printf(&b, ",x%d", j);
    strbuf_printf(&b, "\n");
    for (int i = 0; i < d->n; i++) {
        strbuf_printf(&b, "%d", d->y[i]);
        for (int j = 0; j < d->dim; j++) // 9 digits: float32 values read back exactly
            strbuf_printf(&b, ",%.9g", (double)d->x[(size_t)i * d->dim + j]);
        strbuf_printf(&b, "\n");
    }
    int rc = b.oom ? d2_fail(err, D2_ENOMEM, "out of memory")
                   : d2_write_file_atomic(path, b.p, b.len, err);
    strbuf_free(&b);
    return rc;
}

static int write_json(const dataset *d, uint64_t seed, const char *path, d2_error *err)
{
    json_t *samples = json_array(), *labels = json_array();
    for (int i = 0; i < d->n; i++) {
        json_t *row = json_array();
        for (int j = 0; j < d->dim; j++)
            json_array_append_new(row, json_real(d->x[(size_t)i * d->dim + j]));
        json_array_append_new(samples, row);
        json_array_append_new(labels, json_integer(d->y[i]));
    }
    json_t *o = json_pack("{s:s,s:{s:o,s:o},s:i,s:i,s:f,s:I}", "generator", "default", "dataset",
                          "samples", samples, "labels", labels, "candidates", 8, "steps", 50,
                          "guidance", 2.0, "seed", (json_int_t)seed);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    if (!s)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    size_t n = strlen(s);
    s[n] = '\n';
    int rc = d2_write_file_atomic(path, s, n + 1, err);
    free(s);
    return rc;
}

static int write_st(const dataset *d, const char *path, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int64_t sx[2] = {d->n, d->dim}, sy[1] = {d->n};
    int rc = st_writer_add_f32(&w, "x", 2, sx, d->x, err);
    if (!rc)
        rc = st_writer_add(&w, "y", ST_I32, 1, sy, d->y, (size_t)d->n * sizeof(int32_t), err);
    if (!rc)
        rc = st_writer_save(&w, path, err);
    st_writer_free(&w);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int cmd_sample(int argc, char **argv)
{
    const char *cmd = "sample", *v;
    const char *source = "fashion-mnist", *classes = "0,1,2,3,4", *split = "test";
    const char *format = NULL, *out = NULL;
    long shots = 5;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return EXIT_OK;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--source", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            source = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--classes", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            classes = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--split", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            split = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--format", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            format = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--shots", &v))) {
            if (r < 0 || cli_int(cmd, "--shots", v, 1, 100000, &shots))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_u64(cmd, "--seed", v, &seed))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!out) {
        cli_error(cmd, "--out is required (see --help)");
        return EXIT_USAGE;
    }
    if (!format)
        format = ends_with(out, ".json") ? "json"
                 : ends_with(out, ".safetensors") ? "safetensors"
                                                  : "csv";
    if (strcmp(format, "csv") && strcmp(format, "json") && strcmp(format, "safetensors")) {
        cli_error(cmd, "--format must be csv, json or safetensors, not '%s'", format);
        return EXIT_USAGE;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        cli_error(cmd, "--split must be train or test, not '%s'", split);
        return EXIT_USAGE;
    }
    task t;
    if (parse_classes(classes, &t)) {
        cli_error(cmd, "--classes: '%s' is not a list such as 0,1,2,3,4 (at most %d)", classes,
                  D2_MAX_WAY);
        return EXIT_USAGE;
    }
    d2_error err = {0};
    data_source src;
    memset(&src, 0, sizeof src);
    class_index ci;
    memset(&ci, 0, sizeof ci);
    dataset d = {0};
    int code = EXIT_FAILED;
    if (data_source_load(&src, source, &err)) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    const dataset *from = strcmp(split, "train") ? &src.test : &src.train;
    rng r;
    rng_init(&r, rng_derive(seed, "sample", 0), 0);
    if (class_index_build(&ci, from, &err) || task_draw(from, &ci, &t, (int)shots, &r, &d, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    int rc = !strcmp(format, "csv")    ? write_csv(&d, out, &err)
             : !strcmp(format, "json") ? write_json(&d, seed, out, &err)
                                       : write_st(&d, out, &err);
    if (rc) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    fprintf(stderr, "wrote %s: %d rows of %d values, %d classes (%s split of %s)\n", out, d.n,
            d.dim, t.way, split, source);
    code = EXIT_OK;
out:
    dataset_free(&d);
    class_index_free(&ci);
    data_source_free(&src);
    return code;
}
