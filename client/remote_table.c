/* remote_table.c - human-readable views of the daemon's answers. */
#include "remote_table.h"

#include <string.h>

static const char *str_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : "-";
}

/* A number field printed with fmt, or "-" when absent/null. */
static const char *num_of(const json_t *o, const char *key, const char *fmt, char *buf, size_t cap)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return "-";
    snprintf(buf, cap, fmt, json_number_value(v));
    return buf;
}

static long long int_of(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* A table cell: '|' escaped as Markdown wants ("\\|"). */
static const char *cell(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '|')
            buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n] = '\0';
    return buf;
}

/* "2026-01-31T12:00:00.000Z" -> "2026-01-31 12:00:00" (display only). */
static const char *short_time(const char *iso, char *buf, size_t cap)
{
    if (strlen(iso) < 19)
        return iso;
    snprintf(buf, cap, "%.10s %.8s", iso, iso + 11);
    return buf;
}

static void checkpoint_rows(FILE *out, const json_t *cks)
{
    fprintf(out, "| rank | checkpoint                  | candidate | support acc | support loss |"
                 " norm   | nearest zoo (dist) | bytes    |\n");
    fprintf(out, "|-----:|:----------------------------|----------:|------------:|-------------:|"
                 "-------:|-------------------:|---------:|\n");
    size_t i;
    const json_t *ck;
    json_array_foreach(cks, i, ck)
    {
        fprintf(out,
                "| %4lld | %-27s | %9lld | %11.4f | %12.4f | %6.3f | %7lld (%8.3f) | %8lld |\n",
                int_of(ck, "rank"), str_of(ck, "id"), int_of(ck, "candidate_index"),
                json_number_value(json_object_get(ck, "support_accuracy")),
                json_number_value(json_object_get(ck, "support_loss")),
                json_number_value(json_object_get(ck, "norm")), int_of(ck, "zoo_nearest"),
                json_number_value(json_object_get(ck, "zoo_distance")), int_of(ck, "size_bytes"));
    }
}

void remote_table_jobs(FILE *out, const json_t *list)
{
    const json_t *jobs = json_object_get(list, "jobs");
    fprintf(out, "| job                    | state     | progress | generator    | K   | steps |"
                 " seed                 | created             | run s   | best acc |\n");
    fprintf(out, "|:-----------------------|:----------|---------:|:-------------|----:|------:|"
                 "---------------------:|:--------------------|--------:|---------:|\n");
    size_t i;
    const json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const json_t *p = json_object_get(j, "params");
        const json_t *cks = json_object_get(json_object_get(j, "result"), "checkpoints");
        char tb[32], rb[32], ab[32];
        const char *best = "-";
        if (json_array_size(cks) > 0)
            best = num_of(json_array_get(cks, 0), "support_accuracy", "%.4f", ab, sizeof ab);
        fprintf(
            out,
            "| %-22s | %-9s | %7.0f%% | %-12.12s | %3lld | %5lld | %20lld | %-19s | %7s | %8s |\n",
            str_of(j, "id"), str_of(j, "state"),
            100.0 * json_number_value(json_object_get(j, "progress")),
            str_of(json_object_get(j, "generator"), "name"), int_of(p, "candidates"),
            int_of(p, "steps"), int_of(p, "seed"),
            short_time(str_of(j, "created_at"), tb, sizeof tb),
            num_of(j, "run_seconds", "%.3f", rb, sizeof rb), best);
    }
    const char *next = json_string_value(json_object_get(list, "next_after"));
    fprintf(out, "%zu job%s%s%s\n", json_array_size(jobs), json_array_size(jobs) == 1 ? "" : "s",
            next ? "; more with --after " : "", next ? next : "");
}

void remote_table_job(FILE *out, const json_t *j)
{
    const json_t *g = json_object_get(j, "generator");
    const json_t *p = json_object_get(j, "params");
    char b1[32], b2[32], b3[32], q[32], r[32];
    fprintf(out, "job          %s\n", str_of(j, "id"));
    fprintf(out, "state        %s%s, progress %.0f%%\n", str_of(j, "state"),
            json_is_true(json_object_get(j, "cancel_requested")) ? " (cancel requested)" : "",
            100.0 * json_number_value(json_object_get(j, "progress")));
    fprintf(out, "generator    %s (%.12s)\n", str_of(g, "name"), str_of(g, "id"));
    fprintf(out, "dataset      %.12s (%s)\n", str_of(j, "dataset_id"), str_of(j, "dataset_kind"));
    fprintf(out,
            "params       %s, %lld steps, guidance %.2f, %lld candidates, seed %lld, "
            "priority %lld\n",
            str_of(p, "sampler"), int_of(p, "steps"),
            json_number_value(json_object_get(p, "guidance")), int_of(p, "candidates"),
            int_of(p, "seed"), int_of(j, "priority"));
    fprintf(out, "times        created %s, started %s, finished %s (queued %s s, ran %s s)\n",
            short_time(str_of(j, "created_at"), b1, sizeof b1),
            short_time(str_of(j, "started_at"), b2, sizeof b2),
            short_time(str_of(j, "finished_at"), b3, sizeof b3),
            num_of(j, "queue_seconds", "%.3f", q, sizeof q),
            num_of(j, "run_seconds", "%.3f", r, sizeof r));
    fprintf(out, "attempts     %lld\n", int_of(j, "attempts"));
    if (json_is_string(json_object_get(j, "parent_checkpoint")))
        fprintf(out, "parent       %s\n", str_of(j, "parent_checkpoint"));
    const json_t *e = json_object_get(j, "error");
    if (json_is_object(e))
        fprintf(out, "error        %s: %s\n", str_of(e, "code"), str_of(e, "message"));
    const json_t *res = json_object_get(j, "result");
    if (json_is_object(res)) {
        fprintf(out, "result       %lld-way head, %zu checkpoints, best first\n",
                int_of(res, "way"), json_array_size(json_object_get(res, "checkpoints")));
        checkpoint_rows(out, json_object_get(res, "checkpoints"));
    }
}

void remote_table_generators(FILE *out, const json_t *list)
{
    const json_t *gens = json_object_get(list, "generators");
    fprintf(out,
            "| name         | id           | target                         | input | feature |"
            " way   | params | zoo    | defaults                    |\n");
    fprintf(out,
            "|:-------------|:-------------|:-------------------------------|------:|--------:|"
            "------:|-------:|-------:|:----------------------------|\n");
    size_t i;
    const json_t *g;
    json_array_foreach(gens, i, g)
    {
        const json_t *d = json_object_get(g, "defaults");
        char way[32], defs[96], spec[128];
        snprintf(way, sizeof way, "%lld..%lld", int_of(g, "min_way"), int_of(g, "max_way"));
        snprintf(defs, sizeof defs, "%s %lld steps, K %lld, w %.2f", str_of(d, "sampler"),
                 int_of(d, "steps"), int_of(d, "candidates"),
                 json_number_value(json_object_get(d, "guidance")));
        fprintf(out,
                "| %-12.12s | %-12.12s | %-30s | %5lld | %7lld | %5s | %6lld | %6lld | %-27s |\n",
                str_of(g, "name"), str_of(g, "id"), cell(str_of(g, "spec"), spec, sizeof spec),
                int_of(g, "input_dim"), int_of(g, "feature_dim"), way, int_of(g, "params"),
                int_of(g, "zoo_size"), defs);
    }
    fprintf(out, "%zu generator%s\n", json_array_size(gens), json_array_size(gens) == 1 ? "" : "s");
}

void remote_table_lineage(FILE *out, const json_t *l)
{
    const json_t *ck = json_object_get(l, "checkpoint");
    const json_t *g = json_object_get(l, "generator");
    const json_t *d = json_object_get(l, "dataset");
    const json_t *j = json_object_get(l, "job");
    const json_t *s = json_object_get(l, "sampler");
    char b1[32], b2[32];
    fprintf(out, "checkpoint   %s (rank %lld, candidate %lld)\n", str_of(ck, "id"),
            int_of(l, "rank"), int_of(ck, "candidate_index"));
    fprintf(out,
            "support      accuracy %.4f, loss %.4f; norm %.3f; nearest zoo entry %lld "
            "(distance %.3f)\n",
            json_number_value(json_object_get(ck, "support_accuracy")),
            json_number_value(json_object_get(ck, "support_loss")),
            json_number_value(json_object_get(ck, "norm")), int_of(ck, "zoo_nearest"),
            json_number_value(json_object_get(ck, "zoo_distance")));
    fprintf(out, "weights      %lld bytes, sha256 %s\n", int_of(ck, "size_bytes"),
            str_of(ck, "sha256"));
    fprintf(out, "generator    %s %s\n", str_of(g, "name"), str_of(g, "id"));
    fprintf(out, "target       %s\n", str_of(g, "spec"));
    fprintf(out, "zoo          %lld entries, fingerprint %s\n", int_of(g, "zoo_size"),
            str_of(g, "zoo_fingerprint"));
    fprintf(out, "dataset      %s\n", str_of(d, "id"));
    fprintf(out, "             %s, %lld rows x %lld, %lld classes [", str_of(d, "kind"),
            int_of(d, "n"), int_of(d, "dim"), int_of(d, "classes"));
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(d, "class_counts"), i, v)
        fprintf(out, "%s%lld", i ? " " : "", (long long)json_integer_value(v));
    fprintf(out, "] rows per class\n");
    fprintf(out, "job          %s %s, created %s, finished %s, priority %lld\n", str_of(j, "id"),
            str_of(j, "state"), short_time(str_of(j, "created_at"), b1, sizeof b1),
            short_time(str_of(j, "finished_at"), b2, sizeof b2), int_of(j, "priority"));
    fprintf(out, "sampler      %s, %lld steps, guidance %.2f, %lld candidates, seed %lld\n",
            str_of(s, "sampler"), int_of(s, "steps"),
            json_number_value(json_object_get(s, "guidance")), int_of(s, "candidates"),
            int_of(l, "seed"));
    fprintf(out, "parent       %s\n", str_of(l, "parent"));
    fprintf(out, "derived      ");
    const json_t *der = json_object_get(l, "derived");
    if (json_array_size(der) == 0)
        fprintf(out, "-");
    json_array_foreach(der, i, v)
        fprintf(out, "%s%s", i ? ", " : "", json_string_value(v) ? json_string_value(v) : "?");
    fputc('\n', out);
}

void remote_table_retrieve(FILE *out, const json_t *r)
{
    const json_t *g = json_object_get(r, "generator");
    fprintf(out, "generator %s (%.12s), dataset %.12s\n", str_of(g, "name"), str_of(g, "id"),
            str_of(r, "dataset_fingerprint"));
    fprintf(out, "| hit | zoo entry | distance | support acc | source classes      |\n");
    fprintf(out, "|----:|----------:|---------:|------------:|:--------------------|\n");
    size_t i;
    const json_t *h;
    json_array_foreach(json_object_get(r, "hits"), i, h)
    {
        char classes[128] = "";
        size_t k, used = 0;
        const json_t *c;
        json_array_foreach(json_object_get(h, "classes"), k, c)
        {
            int n = snprintf(classes + used, sizeof classes - used, "%s%lld", k ? " " : "",
                             (long long)json_integer_value(c));
            if (n < 0 || (size_t)n >= sizeof classes - used)
                break;
            used += (size_t)n;
        }
        fprintf(out, "| %3zu | %9lld | %8.3f | %11.4f | %-19s |\n", i + 1, int_of(h, "zoo_index"),
                json_number_value(json_object_get(h, "distance")),
                json_number_value(json_object_get(h, "support_accuracy")), classes);
    }
}
