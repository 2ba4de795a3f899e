/* cmd_sample.c - `d2nwg sample`: write a K-shot support set drawn from a data
 * source, as CSV, as a JSON job request for the daemon (curl --data @FILE),
 * or as safetensors - so there is something real to try the tools on. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "data.h"
#include "safetensors.h"
#include "strbuf.h"

static const char *const SPLITS[] = {"train", "test", NULL};
static const char *const FORMATS[] = {"csv", "json", "safetensors", NULL};
enum { FORMAT_CSV, FORMAT_JSON, FORMAT_SAFETENSORS };

typedef struct sample_opts {
    const char *source, *out;
    cli_int_list classes;
    int shots, split, format;
    uint64_t seed;
} sample_opts;

static const cli_option SAMPLE_OPTS[] = {
    {.name = "--source", .type = CLI_STRING, .off = offsetof(sample_opts, source),
     .metavar = "SRC", .help = "fashion-mnist, digits, iris, wine, csv:PATH, idx:PREFIX",
     .def = "fashion-mnist"},
    {.name = "--classes", .type = CLI_INT_LIST, .off = offsetof(sample_opts, classes),
     .help = "source classes in label order", .def = "0,1,2,3,4", .lo = 0, .hi = 100000,
     .max_items = D2_MAX_WAY},
    {.name = "--shots", .type = CLI_INT, .off = offsetof(sample_opts, shots), .metavar = "K",
     .help = "rows per class", .def = "5", .lo = 1, .hi = 100000},
    {.name = "--split", .type = CLI_CHOICE, .off = offsetof(sample_opts, split), .metavar = "S",
     .help = "which split of the source", .def = "test", .choices = SPLITS},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(sample_opts, seed), .metavar = "S",
     .help = "seed of the draw", .def = "1"},
    {.name = "--format", .type = CLI_CHOICE, .off = offsetof(sample_opts, format),
     .metavar = "F",
     .help = "csv (header: label,x0,x1,...), json (a POST /v1/jobs\n"
             "body for the generator 'default'), or safetensors (x, y)",
     .unset = "from the file name", .choices = FORMATS},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(sample_opts, out), .metavar = "FILE",
     .help = "where to write it", .required = 1},
};

static const cli_command SAMPLE_CMD = {
    .name = "sample",
    .synopsis = "--out FILE [options]",
    .about = "Draws a support set: `shots` rows of each listed class, labelled 0..N-1 in the\n"
             "order the classes are given.",
    .opts = SAMPLE_OPTS,
    .nopts = CLI_NOPTS(SAMPLE_OPTS),
    .globals = CLI_G_JSON,
};

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

static int write_as(int format, const dataset *d, uint64_t seed, const char *path,
                    d2_error *err)
{
    if (format == FORMAT_JSON)
        return write_json(d, seed, path, err);
    if (format == FORMAT_SAFETENSORS)
        return write_st(d, path, err);
    return write_csv(d, path, err);
}

/* --json: what was written, one object on stdout. */
static int print_sample_json(const dataset *d, const task *t, int format, const char *split,
                             const sample_opts *o)
{
    json_t *classes = json_array();
    for (int i = 0; classes && i < t->way; i++)
        json_array_append_new(classes, json_integer(t->classes[i]));
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:o,s:s,s:s,s:I}", "out", o->out, "format",
                          FORMATS[format], "rows", d->n, "dim", d->dim, "classes",
                          classes ? classes : json_null(), "split", split, "source", o->source,
                          "seed", (json_int_t)o->seed);
    return cli_print_json("sample", j) ? EXIT_FAILED : EXIT_OK;
}

int cmd_sample(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "sample";
    sample_opts o;
    int code;
    if (!cli_parse(&SAMPLE_CMD, &o, g, argc, argv, &code))
        return code;
    int format = o.format >= 0                       ? o.format
                 : ends_with(o.out, ".json")        ? FORMAT_JSON
                 : ends_with(o.out, ".safetensors") ? FORMAT_SAFETENSORS
                                                    : FORMAT_CSV;
    task t;
    memset(&t, 0, sizeof t);
    t.way = o.classes.n;
    memcpy(t.classes, o.classes.v, sizeof(int) * (size_t)t.way);
    d2_error err = {0};
    data_source src;
    memset(&src, 0, sizeof src);
    class_index ci;
    memset(&ci, 0, sizeof ci);
    dataset d = {0};
    if (data_source_load(&src, o.source, &err)) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    const dataset *from = strcmp(SPLITS[o.split], "train") ? &src.test : &src.train;
    rng r;
    rng_init(&r, rng_derive(o.seed, "sample", 0), 0);
    code = EXIT_OK;
    if (class_index_build(&ci, from, &err) || task_draw(from, &ci, &t, o.shots, &r, &d, &err) ||
        write_as(format, &d, o.seed, o.out, &err)) {
        cli_error(cmd, "%s", err.msg);
        code = EXIT_FAILED;
    } else {
        fprintf(stderr, "wrote %s: %d rows of %d values, %d classes (%s split of %s)\n", o.out,
                d.n, d.dim, t.way, SPLITS[o.split], o.source);
        if (g->json)
            code = print_sample_json(&d, &t, format, SPLITS[o.split], &o);
    }
    dataset_free(&d);
    class_index_free(&ci);
    data_source_free(&src);
    return code;
}
