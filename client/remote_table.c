/* remote_table.c - human-readable views of the daemon's answers. */
#include "remote_table.h"

#include <stdlib.h>
#include <string.h>

#include "api.h"

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* A time as "2026-01-31 12:00:00" (display only), or "-" when absent. */
static const char *time_of(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0)
        return "-";
    char iso[32];
    api_format_time(ms, iso);
    snprintf(buf, cap, "%.10s %.8s", iso, iso + 11);
    return buf;
}

/* A value printed with fmt, or "-" when absent (negative). */
static const char *secs_of(double v, char *buf, size_t cap)
{
    if (v < 0)
        return "-";
    snprintf(buf, cap, "%.3f", v);
    return buf;
}

/* The answer did not have the shape openapi.yaml gives it. */
static void unexpected(FILE *out, const api_error *e)
{
    fprintf(out, "unexpected answer from the daemon: %s\n", e->message);
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

static void checkpoint_rows(FILE *out, const api_checkpoint *cks, int n)
{
    fprintf(out, "| rank | checkpoint                  | method     | candidate | support acc |"
                 " support loss | norm   | nearest zoo (dist) | bytes    |\n");
    fprintf(out, "|-----:|:----------------------------|:-----------|----------:|------------:|"
                 "-------------:|-------:|-------------------:|---------:|\n");
    for (int i = 0; i < n; i++) {
        const api_checkpoint *ck = &cks[i];
        char index[16] = "-"; /* a baseline is no sampled candidate */
        if (ck->candidate_index >= 0)
            snprintf(index, sizeof index, "%d", ck->candidate_index);
        fprintf(out,
                "| %4d | %-27s | %-10s | %9s | %11.4f | %12.4f | %6.3f | %7d (%8.3f) | %8lld |\n",
                ck->rank, or_dash(ck->id), api_method_name(ck->method), index,
                ck->support_acc, ck->support_loss, ck->norm, ck->zoo_nearest, ck->zoo_distance,
                (long long)ck->size_bytes);
    }
}

/* The gate's decision: what it chose and why, and the out-of-distribution
 * warning when there is one. */
static void gate_lines(FILE *out, const api_job *j)
{
    if (!j->has_gate) { /* not finished yet, or finished before the gate existed */
        fprintf(out, "gate         %s\n",
                j->state == API_JOB_SUCCEEDED ? "-" : j->gate_requested ? "on" : "off");
        return;
    }
    const api_gate *g = &j->gate;
    fprintf(out, "gate         %s: %s\n", g->applied ? api_method_name(g->chosen) : "not applied",
            or_dash(g->reason));
    if (g->ood) {
        json_t *w = api_gate_warnings_to_json(g);
        const char *msg = json_string_value(json_object_get(json_array_get(w, 0), "message"));
        fprintf(out, "warning      %s\n", or_dash(msg));
        json_decref(w);
    }
}

void remote_table_jobs(FILE *out, const json_t *root)
{
    api_job_list list;
    api_error e;
    if (api_job_list_from_json(root, &list, &e) != 0) {
        unexpected(out, &e);
        return;
    }
    fprintf(out, "| job                    | state     | progress | generator    | K   | steps |"
                 " seed                 | created             | run s   | best acc |\n");
    fprintf(out, "|:-----------------------|:----------|---------:|:-------------|----:|------:|"
                 "---------------------:|:--------------------|--------:|---------:|\n");
    for (int i = 0; i < list.n; i++) {
        const api_job *j = &list.jobs[i];
        char tb[32], rb[32], ab[32] = "-";
        if (j->ncheckpoints > 0)
            snprintf(ab, sizeof ab, "%.4f", j->checkpoints[0].support_acc);
        fprintf(out,
                "| %-22s | %-9s | %7.0f%% | %-12.12s | %3d | %5d | %20lld | %-19s | %7s | %8s |\n",
                or_dash(j->id), api_job_state_name(j->state), 100.0 * j->progress,
                or_dash(j->generator_name), j->candidates, j->steps, (long long)j->seed,
                time_of(j->created_ms, tb, sizeof tb), secs_of(j->run_seconds, rb, sizeof rb),
                ab);
    }
    fprintf(out, "%d job%s%s%s\n", list.n, list.n == 1 ? "" : "s",
            list.next_after[0] ? "; more with --after " : "", list.next_after);
    api_job_list_free(&list);
}

void remote_table_job(FILE *out, const json_t *root)
{
    api_job j;
    api_error e;
    if (api_job_from_json(root, &j, &e) != 0) {
        unexpected(out, &e);
        return;
    }
    char b1[32], b2[32], b3[32], q[32], r[32];
    fprintf(out, "job          %s\n", or_dash(j.id));
    fprintf(out, "state        %s%s, progress %.0f%%\n", api_job_state_name(j.state),
            j.cancel_requested ? " (cancel requested)" : "", 100.0 * j.progress);
    fprintf(out, "generator    %s (%.12s)\n", or_dash(j.generator_name), or_dash(j.generator_id));
    fprintf(out, "dataset      %.12s (%s)\n", or_dash(j.dataset_id), api_kind_name(j.kind));
    fprintf(out,
            "params       %s, %d steps, guidance %.2f, %d candidates, seed %lld, "
            "priority %d\n",
            api_sampler_name(j.sampler), j.steps, j.guidance, j.candidates, (long long)j.seed,
            j.priority);
    double queued = j.started_ms > 0 ? (double)(j.started_ms - j.created_ms) / 1000.0 : -1.0;
    fprintf(out, "times        created %s, started %s, finished %s (queued %s s, ran %s s)\n",
            time_of(j.created_ms, b1, sizeof b1), time_of(j.started_ms, b2, sizeof b2),
            time_of(j.finished_ms, b3, sizeof b3), secs_of(queued, q, sizeof q),
            secs_of(j.run_seconds, r, sizeof r));
    fprintf(out, "attempts     %d\n", j.attempts);
    gate_lines(out, &j);
    if (j.parent_checkpoint[0])
        fprintf(out, "parent       %s\n", j.parent_checkpoint);
    if (j.error_code[0])
        fprintf(out, "error        %s: %s\n", j.error_code, or_dash(j.error_message));
    if (j.state == API_JOB_SUCCEEDED) {
        fprintf(out, "result       %d-way head, %d checkpoints, best first\n", j.way,
                j.ncheckpoints);
        checkpoint_rows(out, j.checkpoints, j.ncheckpoints);
    }
    api_job_free(&j);
}

void remote_table_generators(FILE *out, const json_t *root)
{
    api_generator *gens;
    int n;
    api_error e;
    if (api_generator_list_from_json(root, &gens, &n, &e) != 0) {
        unexpected(out, &e);
        return;
    }
    fprintf(out,
            "| name         | id           | target                         | input | feature |"
            " way   | params | zoo    | defaults                    |\n");
    fprintf(out,
            "|:-------------|:-------------|:-------------------------------|------:|--------:|"
            "------:|-------:|-------:|:----------------------------|\n");
    for (int i = 0; i < n; i++) {
        const api_generator *g = &gens[i];
        char way[32], defs[96], spec[128];
        if (strcmp(g->state, "ready") != 0) { /* loading or failed: no details yet */
            char what[API_MESSAGE_LEN + 32];
            snprintf(what, sizeof what, "%s: %s", g->state, g->message);
            fprintf(out, "| %-12.12s | %-12s | %-30s | %5s | %7s | %5s | %6s | %6s | %-27s |\n",
                    or_dash(g->name), "-", cell(what, spec, sizeof spec), "-", "-", "-", "-", "-",
                    "-");
            continue;
        }
        snprintf(way, sizeof way, "%d..%d", g->min_way, g->max_way);
        snprintf(defs, sizeof defs, "%s %d steps, K %d, w %.2f",
                 api_sampler_name(g->default_sampler), g->default_steps, g->default_candidates,
                 g->default_guidance);
        fprintf(out, "| %-12.12s | %-12.12s | %-30s | %5d | %7d | %5s | %6d | %6d | %-27s |\n",
                or_dash(g->name), or_dash(g->id), cell(or_dash(g->spec), spec, sizeof spec),
                g->input_dim, g->feature_dim, way, g->params, g->zoo_size, defs);
    }
    fprintf(out, "%d generator%s\n", n, n == 1 ? "" : "s");
    free(gens);
}

static void lineage_lines(FILE *out, const api_lineage *l)
{
    const api_checkpoint *ck = &l->checkpoint;
    const api_dataset_info *d = &l->dataset;
    const api_job *j = &l->job;
    char b1[32], b2[32];
    fprintf(out, "checkpoint   %s (rank %d, candidate %d, method %s)\n", or_dash(ck->id),
            ck->rank, ck->candidate_index, api_method_name(ck->method));
    fprintf(out,
            "support      accuracy %.4f, loss %.4f; norm %.3f; nearest zoo entry %d "
            "(distance %.3f)\n",
            ck->support_acc, ck->support_loss, ck->norm, ck->zoo_nearest, ck->zoo_distance);
    fprintf(out, "weights      %lld bytes, sha256 %s\n", (long long)ck->size_bytes,
            or_dash(ck->sha256));
    fprintf(out, "generator    %s %s\n", or_dash(l->generator_name), or_dash(l->generator_id));
    fprintf(out, "target       %s\n", or_dash(l->spec));
    fprintf(out, "zoo          %d entries, fingerprint %s\n", l->zoo_size,
            or_dash(l->zoo_fingerprint));
    fprintf(out, "dataset      %s\n", or_dash(d->id));
    fprintf(out, "             %s, %d rows x %d, %d classes [", api_kind_name(d->kind), d->n,
            d->dim, d->classes);
    for (int c = 0; c < d->classes && c < D2_MAX_WAY; c++)
        fprintf(out, "%s%d", c ? " " : "", d->class_counts[c]);
    fprintf(out, "] rows per class\n");
    fprintf(out, "job          %s %s, created %s, finished %s, priority %d\n", or_dash(j->id),
            api_job_state_name(j->state), time_of(j->created_ms, b1, sizeof b1),
            time_of(j->finished_ms, b2, sizeof b2), j->priority);
    fprintf(out, "sampler      %s, %d steps, guidance %.2f, %d candidates, seed %lld\n",
            api_sampler_name(j->sampler), j->steps, j->guidance, j->candidates,
            (long long)j->seed);
    gate_lines(out, j);
    fprintf(out, "parent       %s\n", or_dash(j->parent_checkpoint));
    fprintf(out, "derived      ");
    if (l->nderived == 0)
        fprintf(out, "-");
    for (int i = 0; i < l->nderived; i++)
        fprintf(out, "%s%s", i ? ", " : "", l->derived[i]);
    fputc('\n', out);
}

void remote_table_lineage(FILE *out, const json_t *root)
{
    api_lineage l;
    api_error e;
    if (api_lineage_from_json(root, &l, &e) != 0) {
        unexpected(out, &e);
        return;
    }
    lineage_lines(out, &l);
    api_lineage_free(&l);
}

void remote_table_retrieve(FILE *out, const json_t *root)
{
    api_retrieve_result r;
    api_error e;
    if (api_retrieve_result_from_json(root, &r, &e) != 0) {
        unexpected(out, &e);
        return;
    }
    fprintf(out, "generator %s (%.12s), dataset %.12s\n", or_dash(r.generator_name),
            or_dash(r.generator_id), or_dash(r.dataset_fingerprint));
    fprintf(out, "| hit | zoo entry | distance | support acc | source classes      |\n");
    fprintf(out, "|----:|----------:|---------:|------------:|:--------------------|\n");
    for (int i = 0; i < r.nhits; i++) {
        const gen_retrieval *h = &r.hits[i];
        char classes[128] = "";
        size_t used = 0;
        for (int k = 0; k < h->way; k++) {
            int n = snprintf(classes + used, sizeof classes - used, "%s%d", k ? " " : "",
                             h->classes[k]);
            if (n < 0 || (size_t)n >= sizeof classes - used)
                break;
            used += (size_t)n;
        }
        fprintf(out, "| %3d | %9d | %8.3f | %11.4f | %-19s |\n", i + 1, h->zoo_index,
                (double)h->distance, (double)h->support_acc, classes);
    }
}
