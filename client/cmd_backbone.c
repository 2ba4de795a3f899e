/* cmd_backbone.c - `d2nwg backbone train`: a convolutional backbone for the `cnn:FILE`
 * feature map (core/train/backbone_train.h). */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backbone_train.h"
#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"

#define CMD "backbone"

typedef struct bb_opts {
    const char *out, *data, *device;
    int ch, blocks, batch, steps, shift, resume, threads;
    double lr, wd, every, stop_after;
    uint64_t seed;
} bb_opts;

static const cli_option BB_OPTS[] = {
    {.name = "--out", .type = CLI_PATH, .off = offsetof(bb_opts, out), .metavar = "FILE",
     .help = "the backbone to write (safetensors, PyTorch names)", .required = 1},
    {.name = "--data", .type = CLI_STRING, .off = offsetof(bb_opts, data), .metavar = "SRC",
     .help = "background data source; digits and held-out glyph scripts are refused",
     .def = "fashion-mnist+glyphs:train"},
    {.name = "--channels", .type = CLI_INT, .off = offsetof(bb_opts, ch), .metavar = "N",
     .help = "channels of every conv block", .def = "64", .lo = 1, .hi = 1024},
    {.name = "--blocks", .type = CLI_INT, .off = offsetof(bb_opts, blocks), .metavar = "N",
     .help = "conv blocks (Conv-N)", .def = "4", .lo = 1, .hi = 6},
    {.name = "--batch", .type = CLI_INT, .off = offsetof(bb_opts, batch), .metavar = "N",
     .help = "images per step", .def = "64", .lo = 2, .hi = 4096},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(bb_opts, steps), .metavar = "N",
     .help = "training steps", .def = "3000", .lo = 1, .hi = 100000000},
    {.name = "--lr", .type = CLI_FLOAT, .off = offsetof(bb_opts, lr), .metavar = "X",
     .help = "AdamW peak learning rate (warm-up, cosine decay)", .def = "0.002", .flo = 1e-7,
     .fhi = 1.0},
    {.name = "--weight-decay", .type = CLI_FLOAT, .off = offsetof(bb_opts, wd), .metavar = "X",
     .help = "AdamW decoupled weight decay", .def = "0.0005", .flo = 0.0, .fhi = 1.0},
    {.name = "--shift", .type = CLI_INT, .off = offsetof(bb_opts, shift), .metavar = "PX",
     .help = "augmentation: random shifts of up to +-PX pixels", .def = "2", .lo = 0, .hi = 8},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(bb_opts, seed), .metavar = "S",
     .help = "seed (initialisation and batches)", .def = "1"},
    {.name = "--resume", .type = CLI_FLAG, .off = offsetof(bb_opts, resume),
     .help = "continue from FILE.ckpt if a stopped run left one"},
    {.name = "--checkpoint-every", .type = CLI_SECONDS, .off = offsetof(bb_opts, every),
     .help = "seconds between checkpoints", .def = "120", .flo = 1.0, .fhi = 1e9},
    {.name = "--stop-after", .type = CLI_SECONDS, .off = offsetof(bb_opts, stop_after),
     .help = "stop (with a checkpoint) after S seconds", .unset = "never", .flo = 0.001,
     .fhi = 1e9},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(bb_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
    {.name = "--threads", .type = CLI_INT, .off = offsetof(bb_opts, threads), .metavar = "N",
     .help = "CPU threads", .unset = "all cores", .lo = 1, .hi = 1024},
};

static const cli_command BB_TRAIN_CMD = {
    .name = "backbone train",
    .synopsis = "--out BACKBONE.safetensors [options]",
    .about = "Trains a Conv-N backbone (3x3 conv, BatchNorm, ReLU, 2x2 max pool per block;\n"
             "global average pool) with cross-entropy over every class of the background\n"
             "data, for the feature map cnn:BACKBONE.safetensors. The file loads in PyTorch:\n"
             "its __metadata__ 'architecture' is the torch.nn expression of the network.",
    .opts = BB_OPTS,
    .nopts = CLI_NOPTS(BB_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

static backbone_train_cfg bb_cfg(const bb_opts *o, int quiet)
{
    backbone_train_cfg c = backbone_train_defaults();
    c.data = o->data;
    c.ch = o->ch;
    c.blocks = o->blocks;
    c.batch = o->batch;
    c.steps = o->steps;
    c.lr = (float)o->lr;
    c.weight_decay = (float)o->wd;
    c.shift = o->shift;
    c.seed = o->seed;
    c.progress = !quiet;
    c.resume = o->resume;
    c.checkpoint_every = o->every;
    c.stop_after = isnan(o->stop_after) ? 0.0 : o->stop_after;
    return c;
}

static int bb_report(const cli_globals *g, const char *out, const backbone_train_report *r)
{
    if (g->json) {
        json_t *j = json_pack("{s:s,s:b,s:i,s:i,s:i,s:f,s:f,s:f,s:f}", "out", out, "stopped",
                              r->stopped, "steps", r->steps_done, "classes", r->classes,
                              "train_rows", r->train_rows, "loss", (double)r->loss,
                              "test_acc", (double)r->test_acc, "seconds", r->seconds,
                              "images_per_s", r->images_per_s);
        return cli_print_json(CMD, j) ? EXIT_FAILED : EXIT_OK;
    }
    if (r->stopped) {
        fprintf(stderr, "stopped after %.1f s at step %d; continue with --resume\n", r->seconds,
                r->steps_done);
        return EXIT_OK;
    }
    printf("wrote %s in %.1f s (%.0f images/s)\n", out, r->seconds, r->images_per_s);
    printf("  %d classes, %d training images; %d steps, loss %.4f\n", r->classes, r->train_rows,
           r->steps_done, (double)r->loss);
    printf("  test-split accuracy %.4f on %d images\n", (double)r->test_acc, r->test_rows);
    return EXIT_OK;
}

static int cmd_backbone_train(cli_globals *g, int argc, char **argv)
{
    bb_opts o;
    int code;
    if (!cli_parse(&BB_TRAIN_CMD, &o, g, argc, argv, &code))
        return code;
    backbone_train_cfg cfg = bb_cfg(&o, g->quiet);
    d2_error err = {0};
    if (backbone_check_source(cfg.data, &err)) {
        cli_error(CMD, "train: --data: %s", err.msg);
        return EXIT_USAGE;
    }
    backend_t *be = NULL;
    backbone_train_report rep;
    int rc = backend_create(&be, o.device, o.threads != CLI_UNSET_INT ? o.threads : 0, &err);
    if (!rc)
        rc = backbone_train(&cfg, o.out, be, &rep, &err);
    backend_destroy(be);
    if (rc) {
        cli_error(CMD, "train: %s", err.msg);
        return EXIT_FAILED;
    }
    return bb_report(g, o.out, &rep);
}

static void bb_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg backbone train --out BACKBONE.safetensors [options]\n"
                 "'d2nwg backbone train --help' lists the options.\n");
}

int cmd_backbone(cli_globals *g, int argc, char **argv)
{
    if (argc < 2) {
        bb_usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        bb_usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(sub, "train"))
        return cmd_backbone_train(g, argc - 1, argv + 1);
    cli_error(CMD, "unknown subcommand '%s' (train)", sub);
    bb_usage(stderr);
    return EXIT_USAGE;
}
