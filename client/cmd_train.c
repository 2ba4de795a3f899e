/* cmd_train.c - `d2nwg train`: learn a generator from a zoo, and
 * `d2nwg info`: describe a generator bundle. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli_args.h"
#include "commands.h"
#include "gen_train.h"
#include "generator.h"
#include "zoo.h"

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg train --zoo DIR --out GEN.safetensors [options]\n"
            "\n"
            "Learns a generator (weight VAE, dataset encoder, latent diffusion) from a zoo.\n"
            "\n"
            "  --zoo DIR            zoo built by 'd2nwg zoo build' or 'zoo import'\n"
            "  --out FILE           the generator bundle to write (one safetensors file)\n"
            "  --seed S             seed (default 1); same seed and threads -> same bytes\n"
            "  --resume             continue from FILE.ckpt if a killed run left one\n"
            "  --checkpoint-every S seconds between checkpoints (default 120)\n"
            "  --quick              tiny configuration (tests; under a minute)\n"
            "  --align N            N steps of contrastive encoder/latent alignment first\n"
            "  --vae-steps N        stage-1 steps\n"
            "  --steps N            stage-2 (diffusion) steps\n"
            "  --device DEV         cpu (default) or cuda:N\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --stop-after S       stop (with a checkpoint) after S seconds\n"
            "  --quiet              no progress bars\n");
}

int cmd_train(int argc, char **argv)
{
    const char *cmd = "train";
    const char *zoo_dir = NULL, *out = NULL, *device = "cpu", *v;
    int quick = 0, resume = 0, quiet = 0;
    long align = -1, vae_steps = -1, steps = -1, threads = 0;
    uint64_t seed = 1;
    double every = 120.0, stop_after = 0.0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            train_usage(stdout);
            return EXIT_OK;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--zoo", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            zoo_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--device", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            device = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_u64(cmd, "--seed", v, &seed))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--align", &v))) {
            if (r < 0 || cli_int(cmd, "--align", v, 0, 10000000, &align))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--vae-steps", &v))) {
            if (r < 0 || cli_int(cmd, "--vae-steps", v, 1, 10000000, &vae_steps))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--steps", &v))) {
            if (r < 0 || cli_int(cmd, "--steps", v, 1, 10000000, &steps))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_int(cmd, "--threads", v, 1, 1024, &threads))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--checkpoint-every", &v))) {
            if (r < 0 || cli_float(cmd, "--checkpoint-every", v, 1.0, 1e9, &every))
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--stop-after", &v))) {
            if (r < 0 || cli_float(cmd, "--stop-after", v, 0.001, 1e9, &stop_after))
                return EXIT_USAGE;
        } else if (cli_flag(argv, i, "--quick")) {
            quick = 1;
        } else if (cli_flag(argv, i, "--resume")) {
            resume = 1;
        } else if (cli_flag(argv, i, "--quiet")) {
            quiet = 1;
        } else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!zoo_dir || !out) {
        cli_error(cmd, "--zoo and --out are required (see --help)");
        return EXIT_USAGE;
    }
    gen_train_cfg cfg = gen_train_defaults(quick);
    cfg.seed = seed;
    cfg.progress = !quiet;
    cfg.resume = resume;
    cfg.checkpoint_every = every;
    cfg.stop_after = stop_after;
    if (align >= 0)
        cfg.align_steps = (int)align;
    if (vae_steps > 0)
        cfg.vae_steps = (int)vae_steps;
    if (steps > 0)
        cfg.steps = (int)steps;
    d2_error err = {0};
    zoo z;
    memset(&z, 0, sizeof z);
    if (zoo_load(&z, zoo_dir, 1, &err)) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    backend_t *be = NULL;
    if (backend_create(&be, device, (int)threads, &err)) {
        cli_error(cmd, "%s", err.msg);
        zoo_free(&z);
        return EXIT_FAILED;
    }
    gen_train_report rep;
    int rc = generator_train(&z, &cfg, out, be, &rep, &err);
    backend_destroy(be);
    zoo_free(&z);
    if (rc) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    if (rep.stopped) {
        fprintf(stderr, "stopped after %.1f s; continue with --resume\n", rep.seconds);
        return EXIT_OK;
    }
    printf("wrote %s in %.1f s\n", out, rep.seconds);
    printf("  stage 1 (vae):      %d steps, loss %.5f, zoo reconstruction mse %.5f\n",
           rep.vae_steps_done, (double)rep.vae_loss, (double)rep.vae_recon_mse);
    if (rep.align_steps_done)
        printf("  alignment:          %d steps, infonce %.4f\n", rep.align_steps_done,
               (double)rep.align_loss);
    printf("  stage 2 (diffusion): %d steps, loss %.4f\n", rep.steps_done,
           (double)rep.diffusion_loss);
    return EXIT_OK;
}

static void info_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg info GEN.safetensors [--json]\n"
                 "\nPrints a generator bundle's id, target, configuration and provenance.\n");
}

int cmd_info(int argc, char **argv)
{
    const char *cmd = "info", *path = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            info_usage(stdout);
            return EXIT_OK;
        } else if (cli_flag(argv, i, "--json")) {
            as_json = 1;
        } else if (argv[i][0] == '-') {
            cli_error(cmd, "unknown option '%s'", argv[i]);
            return EXIT_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            cli_error(cmd, "one bundle at a time");
            return EXIT_USAGE;
        }
    }
    if (!path) {
        info_usage(stderr);
        return EXIT_USAGE;
    }
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
        printf("target     %s (%d generated parameters, %d-way)\n", in->spec->text, in->params,
               in->max_way);
        printf("input      %d values per sample, %d-dimensional features\n", in->input_dim,
               in->feature_dim);
        printf("zoo        %d entries, fingerprint %s\n", in->zoo_size, in->zoo_fingerprint);
        printf("sampler    %s, %d steps, %d candidates, guidance %.2f\n",
               in->default_sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", in->default_steps,
               in->default_candidates, (double)in->default_guidance);
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
