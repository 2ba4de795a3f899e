/* cmd_defaults.c - `d2nwg defaults`: a copy of a generator bundle with other
 * sampler and refinement defaults (settings chosen on validation data after
 * training), the weights untouched. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "generator.h"

static const char *const SAMPLERS[] = {"ddim", "ddpm", NULL};
static const char *const RULES[] = {"adaptive", "fixed", NULL};
static const char *const FALLBACKS[] = {"prototypes", "logreg", NULL};

typedef struct defaults_opts {
    const char *generator, *out;
    int candidates, steps, sampler, refine_rule, fallback;
    double guidance, refine_c, one_shot;
} defaults_opts;

#define DEF_OFF(f) .off = offsetof(defaults_opts, f)
static const cli_option DEFAULTS_OPTS[] = {
    {.name = "--generator", .type = CLI_PATH, DEF_OFF(generator), .metavar = "GEN",
     .help = "the bundle to start from", .required = 1},
    {.name = "--out", .type = CLI_PATH, DEF_OFF(out), .metavar = "FILE",
     .help = "where to write the new bundle (may be GEN itself)", .required = 1},
    {.name = "--candidates", .type = CLI_INT, DEF_OFF(candidates), .metavar = "K",
     .help = "candidates per generation", .unset = "unchanged", .lo = 1, .hi = 4096},
    {.name = "--steps", .type = CLI_INT, DEF_OFF(steps), .metavar = "N",
     .help = "sampler steps (at most the schedule's T)", .unset = "unchanged", .lo = 1,
     .hi = 100000},
    {.name = "--guidance", .type = CLI_FLOAT, DEF_OFF(guidance), .metavar = "W",
     .help = "guidance scale", .unset = "unchanged", .flo = 0.0, .fhi = 20.0},
    {.name = "--sampler", .type = CLI_CHOICE, DEF_OFF(sampler), .metavar = "S",
     .help = "the sampler", .unset = "unchanged", .choices = SAMPLERS},
    {.name = "--refine-rule", .type = CLI_CHOICE, DEF_OFF(refine_rule), .metavar = "R",
     .help = "refinement's prior width: adaptive (C scaled by\nthe sample's misfit) or "
             "fixed (C)", .unset = "unchanged", .choices = RULES},
    {.name = "--refine-c", .type = CLI_FLOAT, DEF_OFF(refine_c), .metavar = "C",
     .help = "refinement's C (1: the logreg baseline's strength)", .unset = "unchanged",
     .flo = 1e-6, .fhi = 1e6},
    {.name = "--one-shot-agreement", .type = CLI_FLOAT, DEF_OFF(one_shot), .metavar = "A",
     .help = "the gate at 1 shot keeps the diffusion head when\nits samples classify at least "
             "this share of their\nsupport set (above 1: never)", .unset = "unchanged",
     .flo = 0.0, .fhi = 2.0},
    {.name = "--one-shot-fallback", .type = CLI_CHOICE, DEF_OFF(fallback), .metavar = "M",
     .help = "what the gate returns at 1 shot otherwise", .unset = "unchanged",
     .choices = FALLBACKS},
};

static const cli_command DEFAULTS_CMD = {
    .name = "defaults",
    .synopsis = "--generator GEN --out FILE [options]",
    .about = "Writes a copy of a generator bundle with other sampler, refinement and\n"
             "1-shot gate defaults, for settings chosen on validation data after training: the\n"
             "weights, statistics and zoo index stay byte for byte; the provenance\n"
             "records the bundle it came from. --json prints the new bundle's id and\n"
             "defaults.",
    .opts = DEFAULTS_OPTS,
    .nopts = CLI_NOPTS(DEFAULTS_OPTS),
    .globals = CLI_G_JSON,
};

static gen_defaults defaults_from(const gen_info *in, const defaults_opts *o)
{
    gen_defaults d = {in->default_candidates, in->default_steps, in->default_guidance,
                      in->default_sampler, in->default_refine_rule, in->default_refine_c,
                      in->default_gate_one_shot, in->default_gate_fallback};
    if (o->candidates != CLI_UNSET_INT)
        d.candidates = o->candidates;
    if (o->steps != CLI_UNSET_INT)
        d.steps = o->steps;
    if (!isnan(o->guidance))
        d.guidance = (float)o->guidance;
    if (o->sampler != CLI_UNSET_CHOICE)
        d.sampler = (gen_sampler)o->sampler;
    if (o->refine_rule != CLI_UNSET_CHOICE)
        d.refine_rule = (gen_refine_rule)o->refine_rule;
    if (!isnan(o->refine_c))
        d.refine_c = (float)o->refine_c;
    if (!isnan(o->one_shot))
        d.gate_one_shot = (float)o->one_shot;
    if (o->fallback != CLI_UNSET_CHOICE)
        d.gate_fallback = o->fallback == 0 ? GEN_METHOD_PROTOTYPES : GEN_METHOD_LOGREG;
    return d;
}

static int report(const char *path, const gen_defaults *d, int as_json, d2_error *err)
{
    backend_t *be = NULL;
    generator *g = NULL;
    int rc = backend_create(&be, "cpu", 1, err);
    if (!rc && !(rc = generator_load(&g, path, be, err))) {
        const gen_info *in = generator_info(g);
        if (as_json)
            rc = cli_print_json(
                "defaults",
                json_pack("{s:s,s:s,s:i,s:i,s:f,s:s,s:s,s:f,s:f,s:s}", "generator", in->id,
                          "path", path, "candidates", d->candidates, "steps", d->steps,
                          "guidance", (double)d->guidance, "sampler",
                          d->sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", "refine_rule",
                          gen_refine_rule_name(d->refine_rule), "refine_c", (double)d->refine_c,
                          "one_shot_agreement", (double)d->gate_one_shot, "one_shot_fallback",
                          gen_method_name(d->gate_fallback)));
        else
            printf("wrote %s (generator %.12s): %s, %d steps, %d candidates, guidance %.2f; "
                   "refine %s, C = %g; 1 shot: agreement %g, else %s\n", path, in->id,
                   d->sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", d->steps, d->candidates,
                   (double)d->guidance, gen_refine_rule_name(d->refine_rule),
                   (double)d->refine_c, (double)d->gate_one_shot,
                   gen_method_name(d->gate_fallback));
    }
    generator_free(g);
    backend_destroy(be);
    return rc;
}

int cmd_defaults(cli_globals *gl, int argc, char **argv)
{
    defaults_opts o;
    int code;
    if (!cli_parse(&DEFAULTS_CMD, &o, gl, argc, argv, &code))
        return code;
    d2_error err = {0};
    backend_t *be = NULL;
    generator *g = NULL;
    gen_defaults d;
    int rc = backend_create(&be, "cpu", 1, &err), usage = 0;
    if (!rc && !(rc = generator_load(&g, o.generator, be, &err))) {
        d = defaults_from(generator_info(g), &o);
        rc = generator_save_with_defaults(g, &d, o.out, &err);
        usage = rc == D2_ERANGE; // a value this bundle cannot take (steps above its T)
    }
    generator_free(g);
    backend_destroy(be);
    if (!rc)
        rc = report(o.out, &d, gl->json, &err);
    if (rc) {
        cli_error("defaults", "%s", err.msg);
        return usage ? EXIT_USAGE : EXIT_FAILED;
    }
    return EXIT_OK;
}
