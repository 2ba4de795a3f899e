/* gen_defaults.c - a bundle with other sampler and refinement defaults
 * (generator.h: generator_save_with_defaults). */
#include <math.h>
#include <stdlib.h>

#include <jansson.h>

#include "gen_model.h"

static int check_defaults(const generator *g, const gen_defaults *d, d2_error *err)
{
    if (d->candidates < 1 || d->candidates > 4096)
        return d2_fail(err, D2_ERANGE, "candidates %d outside 1..4096", d->candidates);
    if (d->steps < 1 || d->steps > g->cfg.T)
        return d2_fail(err, D2_ERANGE, "steps %d outside 1..%d", d->steps, g->cfg.T);
    if (!(d->guidance >= 0.0f && d->guidance <= 20.0f))
        return d2_fail(err, D2_ERANGE, "guidance %g outside 0..20", (double)d->guidance);
    if (d->sampler != GEN_SAMPLER_DDIM && d->sampler != GEN_SAMPLER_DDPM)
        return d2_fail(err, D2_EINVAL, "unknown sampler");
    if (d->refine_rule != GEN_REFINE_ADAPTIVE && d->refine_rule != GEN_REFINE_FIXED)
        return d2_fail(err, D2_EINVAL, "unknown refinement rule");
    if (!(d->refine_c > 0.0f && d->refine_c <= 1e6f))
        return d2_fail(err, D2_ERANGE, "refine C %g outside (0, 1e6]", (double)d->refine_c);
    if (!(d->gate_one_shot >= 0.0f && d->gate_one_shot <= 2.0f))
        return d2_fail(err, D2_ERANGE, "1-shot agreement %g outside 0..2",
                       (double)d->gate_one_shot);
    if (d->gate_fallback != GEN_METHOD_PROTOTYPES && d->gate_fallback != GEN_METHOD_LOGREG)
        return d2_fail(err, D2_EINVAL, "the 1-shot fallback must be prototypes or logreg");
    return 0;
}

/* The provenance with "defaults": {from: the source bundle's id, and the new values}. */
static char *provenance_with(const generator *g, const gen_defaults *d)
{
    json_error_t je;
    json_t *p = json_loads(g->provenance_json ? g->provenance_json : "{}", 0, &je);
    if (!p)
        p = json_object();
    json_t *o = json_pack("{s:s,s:i,s:i,s:f,s:s,s:s,s:f,s:f,s:s}", "from", g->info.id,
                          "candidates", d->candidates, "steps", d->steps, "guidance",
                          (double)d->guidance, "sampler",
                          d->sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", "refine_rule",
                          gen_refine_rule_name(d->refine_rule), "refine_c", (double)d->refine_c,
                          "gate_one_shot_agreement", (double)d->gate_one_shot,
                          "gate_one_shot_fallback", gen_method_name(d->gate_fallback));
    char *s = NULL;
    if (p && o && !json_object_set_new(p, "defaults", o))
        s = json_dumps(p, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(9));
    else
        json_decref(o);
    json_decref(p);
    return s;
}

int generator_save_with_defaults(const generator *g, const gen_defaults *d, const char *path,
                                 d2_error *err)
{
    int rc = check_defaults(g, d, err);
    if (rc)
        return rc;
    char *prov = provenance_with(g, d);
    if (!prov)
        return d2_fail(err, D2_ENOMEM, "out of memory for the provenance");
    generator copy = *g; // the same weights and tables, read only; other settings
    copy.cfg.candidates = d->candidates;
    copy.cfg.steps = d->steps;
    copy.cfg.guidance = d->guidance;
    copy.cfg.sampler = d->sampler;
    copy.cfg.refine_rule = d->refine_rule;
    copy.cfg.refine_c = d->refine_c;
    copy.cfg.gate_one_shot = d->gate_one_shot;
    copy.cfg.gate_fallback = d->gate_fallback;
    copy.provenance_json = prov;
    rc = gen_bundle_save(&copy, path, 0, err); // a loaded bundle's weights are its EMA's
    free(prov);
    return rc;
}
