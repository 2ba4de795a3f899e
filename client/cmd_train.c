/* cmd_train.c - `d2nwg train`: learn a generator from a zoo, and
 * `d2nwg info`: describe a generator bundle. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "gen_train.h"
#include "generator.h"
#include "train_dist.h"
#include "zoo.h"

typedef struct train_opts {
    const char *zoo, *out, *device;
    uint64_t seed;
    int resume, quick, align, vae_steps, steps, threads, query_shots, token_latent;
    int per_class, den_hidden;
    double every, stop_after, query_loss;
} train_opts;

static const cli_option TRAIN_OPTS[] = {
    {.name = "--zoo", .type = CLI_PATH, .off = offsetof(train_opts, zoo), .metavar = "DIR",
     .help = "zoo built by 'd2nwg zoo build' or 'zoo import'", .required = 1},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(train_opts, out), .metavar = "FILE",
     .help = "the generator bundle to write (one safetensors file)", .required = 1},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(train_opts, seed), .metavar = "S",
     .help = "seed; same seed and threads -> same bytes", .def = "1"},
    {.name = "--resume", .type = CLI_FLAG, .off = offsetof(train_opts, resume),
     .help = "continue from FILE.ckpt if a killed run left one"},
    {.name = "--checkpoint-every", .type = CLI_SECONDS, .off = offsetof(train_opts, every),
     .help = "seconds between checkpoints", .def = "120", .flo = 1.0, .fhi = 1e9},
    {.name = "--quick", .type = CLI_FLAG, .off = offsetof(train_opts, quick),
     .help = "tiny configuration (tests; under a minute)"},
    {.name = "--align", .type = CLI_INT, .off = offsetof(train_opts, align), .metavar = "N",
     .help = "N steps of contrastive encoder/latent alignment first",
     .unset = "the configuration's", .lo = 0, .hi = 10000000},
    {.name = "--vae-steps", .type = CLI_INT, .off = offsetof(train_opts, vae_steps),
     .metavar = "N", .help = "stage-1 steps", .unset = "the configuration's", .lo = 1,
     .hi = 10000000},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(train_opts, steps), .metavar = "N",
     .help = "stage-2 (diffusion) steps", .unset = "the configuration's", .lo = 1,
     .hi = 10000000},
    {.name = "--token-latent", .type = CLI_INT, .off = offsetof(train_opts, token_latent),
     .metavar = "N", .help = "latent values per neuron token of the weight VAE",
     .unset = "the configuration's", .lo = 1, .hi = 4096},
    {.name = "--per-class", .type = CLI_FLAG, .off = offsetof(train_opts, per_class),
     .help = "one condition per class: the encoder keeps each\nclass's token and the denoiser "
     "generates each\nrow of the head from its own class's (heads of\none linear layer, "
     "one row per class)"},
    {.name = "--den-hidden", .type = CLI_INT, .off = offsetof(train_opts, den_hidden),
     .metavar = "H", .help = "the denoiser's width", .unset = "the configuration's", .lo = 8,
     .hi = 16384},
    {.name = "--query-loss", .type = CLI_FLOAT, .off = offsetof(train_opts, query_loss),
     .metavar = "W", .help = "weight of stage 2's query term: the denoiser's\n"
     "x0 decoded into a head, scored by cross-entropy\non other samples of the task's classes "
     "(heads of\none linear layer)", .def = "0", .flo = 0.0, .fhi = 1000.0},
    {.name = "--query-shots", .type = CLI_INT, .off = offsetof(train_opts, query_shots),
     .metavar = "Q", .help = "query samples per class for --query-loss", .def = "5", .lo = 1,
     .hi = 100},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(train_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
    {.name = "--threads", .type = CLI_INT, .off = offsetof(train_opts, threads), .metavar = "N",
     .help = "CPU threads", .unset = "all cores", .lo = 1, .hi = 1024},
    {.name = "--stop-after", .type = CLI_SECONDS, .off = offsetof(train_opts, stop_after),
     .help = "stop (with a checkpoint) after S seconds", .unset = "never", .flo = 0.001,
     .fhi = 1e9},
};

static const cli_command TRAIN_CMD = {
    .name = "train",
    .synopsis = "--zoo DIR --out GEN.safetensors [options]",
    .about = "Learns a generator (weight VAE, dataset encoder, latent diffusion) from a zoo.\n"
             "Under mpirun, a d2nwg built with 'make MPI=1' trains data parallel: every\n"
             "process draws the same batches from the one seed, trains on its slice of each\n"
             "and the gradients are summed (MPI_Allreduce); rank 0 reports and writes.\n"
             "Give each process its share of the cores with --threads.",
    .opts = TRAIN_OPTS,
    .nopts = CLI_NOPTS(TRAIN_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

static gen_train_cfg train_cfg(const train_opts *o, int quiet)
{
    gen_train_cfg cfg = gen_train_defaults(o->quick);
    cfg.seed = o->seed;
    cfg.progress = !quiet;
    cfg.resume = o->resume;
    cfg.checkpoint_every = o->every;
    cfg.stop_after = isnan(o->stop_after) ? 0.0 : o->stop_after;
    if (o->align != CLI_UNSET_INT)
        cfg.align_steps = o->align;
    if (o->vae_steps != CLI_UNSET_INT)
        cfg.vae_steps = o->vae_steps;
    if (o->steps != CLI_UNSET_INT)
        cfg.steps = o->steps;
    if (o->token_latent != CLI_UNSET_INT)
        cfg.tok_latent = o->token_latent;
    if (o->den_hidden != CLI_UNSET_INT)
        cfg.den_hidden = o->den_hidden;
    cfg.per_class = o->per_class;
    cfg.query_loss = (float)o->query_loss;
    cfg.query_shots = o->query_shots;
    return cfg;
}

static void print_report(const char *out, const gen_train_report *rep)
{
    printf("wrote %s in %.1f s\n", out, rep->seconds);
    printf("  stage 1 (vae):      %d steps, loss %.5f, zoo reconstruction mse %.5f\n",
           rep->vae_steps_done, (double)rep->vae_loss, (double)rep->vae_recon_mse);
    if (rep->align_steps_done)
        printf("  alignment:          %d steps, infonce %.4f\n", rep->align_steps_done,
               (double)rep->align_loss);
    printf("  stage 2 (diffusion): %d steps, loss %.4f\n", rep->steps_done,
           (double)rep->diffusion_loss);
}

/* --json: the report as one object on stdout. */
static int print_report_json(const char *out, const gen_train_report *rep)
{
    json_t *j = json_pack("{s:s,s:b,s:f,s:{s:i,s:f,s:f},s:{s:i,s:f},s:{s:i,s:f}}", "out", out,
                          "stopped", rep->stopped, "seconds", rep->seconds, "vae", "steps",
                          rep->vae_steps_done, "loss", (double)rep->vae_loss, "recon_mse",
                          (double)rep->vae_recon_mse, "align", "steps", rep->align_steps_done,
                          "loss", (double)rep->align_loss, "diffusion", "steps", rep->steps_done,
                          "loss", (double)rep->diffusion_loss);
    return cli_print_json("train", j) ? EXIT_FAILED : EXIT_OK;
}

/* Load the zoo and train; 0 or EXIT_FAILED after a message. */
static int train_run(const train_opts *o, gen_train_cfg *cfg, gen_train_report *rep)
{
    d2_error err = {0};
    zoo z;
    memset(&z, 0, sizeof z);
    if (zoo_load(&z, o->zoo, 1, &err)) {
        cli_error("train", "%s", err.msg);
        return EXIT_FAILED;
    }
    backend_t *be = NULL;
    int threads = o->threads != CLI_UNSET_INT ? o->threads : 0;
    int rc = backend_create(&be, o->device, threads, &err);
    if (!rc)
        rc = generator_train(&z, cfg, o->out, be, rep, &err);
    backend_destroy(be);
    zoo_free(&z);
    if (rc) {
        if (cfg->dist)
            cli_error("train", "process %d of %d: %s", cfg->dist->rank, cfg->dist->world,
                      err.msg);
        else
            cli_error("train", "%s", err.msg);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

int cmd_train(cli_globals *g, int argc, char **argv)
{
    train_opts o;
    int code;
    if (!cli_parse(&TRAIN_CMD, &o, g, argc, argv, &code))
        return code;
    gen_train_cfg cfg = train_cfg(&o, g->quiet);
    gen_train_dist dist;
    d2_error err = {0};
    if (train_dist_begin(&dist, &err)) {
        cli_error("train", "%s", err.msg);
        return EXIT_FAILED;
    }
    if (dist.world > 1) { /* under mpirun: rank 0 reports and writes */
        cfg.dist = &dist;
        cfg.progress = cfg.progress && dist.rank == 0;
    }
    gen_train_report rep;
    int rc = train_run(&o, &cfg, &rep);
    if (rc)
        train_dist_abort(&dist, rc);
    train_dist_end(&dist);
    if (rc || dist.rank != 0)
        return rc;
    if (rep.stopped)
        fprintf(stderr, "stopped after %.1f s; continue with --resume\n", rep.seconds);
    if (g->json)
        return print_report_json(o.out, &rep);
    if (!rep.stopped)
        print_report(o.out, &rep);
    return EXIT_OK;
}

typedef struct info_opts {
    const char *path;
} info_opts;

static const cli_command INFO_CMD = {
    .name = "info",
    .synopsis = "GEN.safetensors [--json]",
    .about = "Prints a generator bundle's id, target, configuration and provenance.",
    .globals = CLI_G_JSON,
    .positional = "GEN.safetensors",
    .positional_off = offsetof(info_opts, path),
};

int cmd_info(cli_globals *gl, int argc, char **argv)
{
    const char *cmd = "info";
    info_opts o;
    int code;
    if (!cli_parse(&INFO_CMD, &o, gl, argc, argv, &code))
        return code;
    const char *path = o.path;
    int as_json = gl->json;
    d2_error err = {0};
    backend_t *be = NULL;
    generator *g = NULL;
    if (backend_create(&be, "cpu", 1, &err) || generator_load(&g, path, be, &err)) {
        cli_error(cmd, "%s", err.msg);
        backend_destroy(be);
        return EXIT_FAILED;
    }
    const gen_info *in = generator_info(g);
    json_error_t je;
    json_t *cfg = json_loads(in->config_json, 0, &je);
    json_t *prov = json_loads(in->provenance_json, 0, &je);
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(in->id));
        json_object_set_new(o, "path", json_string(path));
        json_object_set_new(o, "spec", json_string(in->spec->text));
        json_object_set_new(o, "input_dim", json_integer(in->input_dim));
        json_object_set_new(o, "feature_dim", json_integer(in->feature_dim));
        json_object_set_new(o, "way", json_integer(in->max_way));
        json_object_set_new(o, "min_way", json_integer(in->min_way));
        json_object_set_new(o, "params", json_integer(in->params));
        json_object_set_new(o, "zoo_size", json_integer(in->zoo_size));
        json_object_set_new(o, "config", cfg ? json_incref(cfg) : json_null());
        json_object_set_new(o, "provenance", prov ? json_incref(prov) : json_null());
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
        if (s)
            puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("generator  %s\n", in->id);
        printf("file       %s\n", path);
        if (in->min_way < in->max_way)
            printf("target     %s (%d generated parameters; heads of %d..%d classes)\n",
                   in->spec->text, in->params, in->min_way, in->max_way);
        else
            printf("target     %s (%d generated parameters, %d-way)\n", in->spec->text,
                   in->params, in->max_way);
        printf("input      %d values per sample, %d-dimensional features\n", in->input_dim,
               in->feature_dim);
        printf("zoo        %d entries, fingerprint %s\n", in->zoo_size, in->zoo_fingerprint);
        printf("sampler    %s, %d steps, %d candidates, guidance %.2f\n",
               in->default_sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", in->default_steps,
               in->default_candidates, (double)in->default_guidance);
        printf("refine     %s, C = %g\n", gen_refine_rule_name(in->default_refine_rule),
               (double)in->default_refine_c);
        printf("gate       at 1 shot: diffusion kept at agreement >= %g%s, else %s\n",
               (double)in->default_gate_one_shot,
               in->default_gate_one_shot > 1.0f ? " (never)" : "",
               gen_method_name(in->default_gate_fallback));
        char *c = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6))
                      : NULL;
        char *p = prov ? json_dumps(prov, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6))
                       : NULL;
        printf("config     %s\n", c ? c : in->config_json);
        printf("provenance %s\n", p ? p : in->provenance_json);
        free(c);
        free(p);
    }
    json_decref(cfg);
    json_decref(prov);
    generator_free(g);
    backend_destroy(be);
    return EXIT_OK;
}
