/* cmd_generate.c - `d2nwg generate`: weights for a support set, offline. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "backend.h"
#include "cli_args.h"
#include "commands.h"
#include "data.h"
#include "generator.h"
#include "safetensors.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg generate --generator GEN --support FILE --out MODEL.safetensors\n"
            "                      [options]\n"
            "\n"
            "Generates a network for the support set without training: samples K candidate\n"
            "weight sets, scores each on the support set and writes the best.\n"
            "\n"
            "  --generator FILE     generator bundle ('d2nwg train')\n"
            "  --support FILE       support set: CSV (header; first column 'label'),\n"
            "                       NPY features with --labels y.npy, or safetensors (x, y)\n"
            "  --labels FILE        labels for an NPY support set\n"
            "  --embeddings         rows are already in the generator's feature space\n"
            "  --candidates K       candidates to sample (default: the bundle's, 8)\n"
            "  --steps N            sampler steps (default: the bundle's, 50)\n"
            "  --sampler S          ddim (deterministic) or ddpm (ancestral)\n"
            "  --guidance W         classifier-free guidance scale (default: the bundle's)\n"
            "  --seed S             seed (default 1); same seed -> same bytes\n"
            "  --out FILE           the best network, as safetensors (PyTorch state_dict names)\n"
            "  --all DIR            also write every candidate, ranked: DIR/rank-01.safetensors...\n"
            "  --device DEV         cpu (default) or cuda:N\n"
            "  --quiet              no table\n");
}

int cmd_generate(int argc, char **argv)
{
    const char *cmd = "generate", *v;
    const char *gen_path = NULL, *support = NULL, *labels = NULL, *out = NULL, *all = NULL;
    const char *device = "cpu", *sampler = NULL;
    long candidates = -1, steps = -1;
    double guidance = -1.0;
    uint64_t seed = 1;
    int embeddings = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return EXIT_OK;
        }
#define STR_OPT(flag, var)                                                                 \
    else if ((r = cli_opt(cmd, argc, argv, &i, flag, &v)))                                 \
    {                                                                                      \
        if (r < 0)                                                                         \
            return EXIT_USAGE;                                                             \
        var = v;                                                                           \
    }
        STR_OPT("--generator", gen_path)
        STR_OPT("--support", support)
        STR_OPT("--labels", labels)
        STR_OPT("--out", out)
        STR_OPT("--all", all)
        STR_OPT("--device", device)
        STR_OPT("--sampler", sampler)
#undef STR_OPT
        else if ((r = cli_opt(cmd, argc, argv, &i, "--candidates", &v)))
        {
            if (r < 0 || cli_int(cmd, "--candidates", v, 1, 1024, &candidates))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--steps", &v)))
        {
            if (r < 0 || cli_int(cmd, "--steps", v, 1, 4000, &steps))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--guidance", &v)))
        {
            if (r < 0 || cli_float(cmd, "--guidance", v, 0.0, 20.0, &guidance))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v)))
        {
            if (r < 0 || cli_u64(cmd, "--seed", v, &seed))
                return EXIT_USAGE;
        }
        else if (cli_flag(argv, i, "--embeddings")) embeddings = 1;
        else if (cli_flag(argv, i, "--quiet")) quiet = 1;
        else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!gen_path || !support || !out) {
        cli_error(cmd, "--generator, --support and --out are required (see --help)");
        return EXIT_USAGE;
    }
    gen_sampler smp = GEN_SAMPLER_DDIM;
    if (sampler && !strcmp(sampler, "ddpm"))
        smp = GEN_SAMPLER_DDPM;
    else if (sampler && strcmp(sampler, "ddim")) {
        cli_error(cmd, "--sampler must be ddim or ddpm, not '%s'", sampler);
        return EXIT_USAGE;
    }
    d2_error err = {0};
    dataset sup = {0};
    if (data_load_support(&sup, support, labels, &err)) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    backend_t *be = NULL;
    generator *g = NULL;
    gen_workspace *ws = NULL;
    gen_result res = {0};
    int code = EXIT_FAILED;
    if (backend_create(&be, device, 0, &err) || generator_load(&g, gen_path, be, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    const gen_info *in = generator_info(g);
    gen_request req = {
        .support = &sup,
        .embeddings = embeddings,
        .candidates = candidates > 0 ? (int)candidates : in->default_candidates,
        .steps = steps > 0 ? (int)steps : in->default_steps,
        .sampler = sampler ? smp : in->default_sampler,
        .guidance = guidance >= 0 ? (float)guidance : in->default_guidance,
        .seed = seed,
    };
    if (generator_check_support(g, &sup, embeddings, &err)) {
        cli_error(cmd, "%s: %s", support, err.msg);
        goto out;
    }
    if (gen_workspace_create(&ws, g, be, req.candidates, &err) ||
        generator_generate(g, ws, &req, &res, &err)) {
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    unsigned char *bytes = NULL;
    size_t len = 0;
    if (generator_checkpoint_bytes(g, &req, &res, 0, &bytes, &len, &err) ||
        d2_write_file_atomic(out, bytes, len, &err)) {
        free(bytes);
        cli_error(cmd, "%s", err.msg);
        goto out;
    }
    free(bytes);
    if (all) {
        if (mkdir(all, 0777) && errno != EEXIST) {
            cli_error(cmd, "cannot create %s: %s", all, strerror(errno));
            goto out;
        }
        for (int k = 0; k < res.count; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/rank-%02d.safetensors", all, k + 1);
            if (generator_checkpoint_bytes(g, &req, &res, k, &bytes, &len, &err) ||
                d2_write_file_atomic(path, bytes, len, &err)) {
                free(bytes);
                cli_error(cmd, "%s", err.msg);
                goto out;
            }
            free(bytes);
        }
    }
    if (!quiet) {
        printf("generator %.12s  dataset %.12s  %d-way, %d support rows  seed %llu  %s %d steps, "
               "guidance %.2f  (%.0f ms)\n",
               in->id, res.dataset_fingerprint, res.way, sup.n, (unsigned long long)seed,
               req.sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", req.steps,
               (double)req.guidance, res.seconds * 1000.0);
        printf("| rank | candidate | support acc | support loss | norm   | nearest zoo (dist) |\n");
        printf("|-----:|----------:|------------:|-------------:|-------:|-------------------:|\n");
        for (int k = 0; k < res.count; k++) {
            const gen_candidate *c = &res.ranked[k];
            printf("| %4d | %9d | %11.4f | %12.4f | %6.3f | %7d (%8.3f) |\n", k + 1, c->index,
                   (double)c->support_acc, (double)c->support_loss, (double)c->norm,
                   c->zoo_nearest, (double)c->zoo_distance);
        }
        printf("wrote %s%s%s\n", out, all ? " and " : "", all ? all : "");
    }
    code = EXIT_OK;
out:
    gen_result_free(&res);
    gen_workspace_free(ws);
    generator_free(g);
    backend_destroy(be);
    dataset_free(&sup);
    return code;
}
