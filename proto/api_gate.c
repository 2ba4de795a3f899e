/* api_gate.c - the generation gate's decision on the wire: the method of a
 * checkpoint, a job's `gate` object and the `warnings` it implies. */
#include "api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *api_method_name(int method)
{
    return gen_method_name((gen_method)method);
}

int api_method_parse(const char *s, int *method)
{
    for (int m = 0; s && m < GEN_METHODS; m++)
        if (!strcmp(s, gen_method_name((gen_method)m))) {
            *method = m;
            return 0;
        }
    return D2_EINVAL;
}

void api_gate_init(api_gate *g)
{
    memset(g, 0, sizeof *g);
    g->chosen = GEN_METHOD_DIFFUSION;
    for (int m = 0; m < GEN_METHODS; m++)
        g->cv_acc[m] = NAN;
    g->ood_distance = NAN;
    g->ood_percentile = NAN;
}

void api_gate_from_result(api_gate *a, const gen_gate *g, int requested)
{
    api_gate_init(a);
    if (!requested) {
        snprintf(a->reason, sizeof a->reason,
                 "off: the request turned the gate off; the diffusion candidates alone");
        return;
    }
    a->applied = g->applied;
    a->chosen = g->chosen;
    a->folds = g->folds;
    a->heldout = g->heldout;
    for (int m = 0; m < GEN_METHODS; m++)
        a->cv_acc[m] = g->cv_acc[m];
    api_snprintf(a->reason, sizeof a->reason, "%s", g->reason);
    a->ood_distance = g->ood_distance;
    a->ood_percentile = g->ood_percentile;
    a->ood = g->ood;
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static double num_or_nan(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

json_t *api_gate_to_json(const api_gate *g)
{
    json_t *cv = json_object();
    int bad = cv ? 0 : -1;
    for (int m = 0; cv && m < GEN_METHODS; m++)
        bad |= json_object_set_new(cv, api_method_name(m), num_or_null(g->cv_acc[m]));
    if (bad) {
        json_decref(cv);
        return NULL;
    }
    return json_pack("{s:b, s:s, s:i, s:i, s:o, s:s, s:o, s:o, s:b}", "applied", g->applied,
                     "chosen", api_method_name(g->chosen), "folds", g->folds, "heldout",
                     g->heldout, "cv_accuracy", cv, "reason", g->reason, "ood_distance",
                     num_or_null(g->ood_distance), "ood_percentile",
                     num_or_null(g->ood_percentile), "ood", g->ood);
}

int api_gate_from_json(const json_t *o, api_gate *g, api_error *e)
{
    api_gate_init(g);
    const char *chosen = json_string_value(json_object_get(o, "chosen"));
    if (!json_is_object(o) || !chosen || api_method_parse(chosen, &g->chosen) != 0)
        return api_fail(e, 0, "invalid_json", NULL, "gate: expected an object with a method "
                                                    "in chosen");
    g->applied = json_is_true(json_object_get(o, "applied"));
    g->folds = (int)json_integer_value(json_object_get(o, "folds"));
    g->heldout = (int)json_integer_value(json_object_get(o, "heldout"));
    const json_t *cv = json_object_get(o, "cv_accuracy");
    for (int m = 0; m < GEN_METHODS; m++)
        g->cv_acc[m] = num_or_nan(json_object_get(cv, api_method_name(m)));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    snprintf(g->reason, sizeof g->reason, "%s", reason ? reason : "");
    g->ood_distance = num_or_nan(json_object_get(o, "ood_distance"));
    g->ood_percentile = num_or_nan(json_object_get(o, "ood_percentile"));
    g->ood = json_is_true(json_object_get(o, "ood"));
    return 0;
}

json_t *api_gate_warnings_to_json(const api_gate *g)
{
    json_t *arr = json_array();
    if (!arr || !g || !g->ood)
        return arr;
    char msg[API_MESSAGE_LEN];
    api_snprintf(msg, sizeof msg,
                 "the support set is out of the zoo's distribution: its distance to the nearest "
                 "zoo task (%.4g) is above %.1f%% of the zoo's own nearest-neighbour distances; "
                 "the generated weights may be poor (the gate chose %s)",
                 g->ood_distance, g->ood_percentile, api_method_name(g->chosen));
    json_t *w = json_pack("{s:s, s:s}", "code", "out_of_distribution", "message", msg);
    if (!w || json_array_append_new(arr, w) != 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}
