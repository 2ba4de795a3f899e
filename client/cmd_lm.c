/* cmd_lm.c - `d2nwg lm train | eval`: the byte-level language model on Debian's word
 * lists (core/lm/lm_train.h); `lm lora` is in cmd_lm_lora.c. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "lm_train.h"

#define CMD "lm"

typedef struct lm_opts {
    const char *out, *source, *resume, *device;
    int steps, batch, layers, width, heads, context, warmup, threads, stop_at, eval_words;
    double lr, wd, every;
    uint64_t seed;
} lm_opts;

static const cli_option LM_TRAIN_OPTS[] = {
    {.name = "--out", .type = CLI_PATH, .off = offsetof(lm_opts, out), .metavar = "FILE",
     .help = "the model to write (safetensors, GPT-2-style names)", .required = 1},
    {.name = "--source", .type = CLI_STRING, .off = offsetof(lm_opts, source), .metavar = "SRC",
     .help = "words:background or a list of background languages; held-out ones are refused",
     .def = "words:background"},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(lm_opts, steps), .metavar = "N",
     .help = "training steps", .def = "2000", .lo = 1, .hi = 100000000},
    {.name = "--batch", .type = CLI_INT, .off = offsetof(lm_opts, batch), .metavar = "N",
     .help = "rows of CONTEXT bytes per step (words packed)", .def = "32", .lo = 1, .hi = 4096},
    {.name = "--lr", .type = CLI_FLOAT, .off = offsetof(lm_opts, lr), .metavar = "X",
     .help = "AdamW peak learning rate (warm-up, cosine decay to 10%)", .def = "0.002",
     .flo = 1e-7, .fhi = 1.0},
    {.name = "--weight-decay", .type = CLI_FLOAT, .off = offsetof(lm_opts, wd), .metavar = "X",
     .help = "AdamW decoupled weight decay", .def = "0.01", .flo = 0.0, .fhi = 1.0},
    {.name = "--warmup", .type = CLI_INT, .off = offsetof(lm_opts, warmup), .metavar = "N",
     .help = "warm-up steps", .def = "100", .lo = 0, .hi = 100000000},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(lm_opts, seed), .metavar = "S",
     .help = "seed (initialisation and batches)", .def = "1"},
    {.name = "--layers", .type = CLI_INT, .off = offsetof(lm_opts, layers), .metavar = "N",
     .help = "transformer blocks", .def = "4", .lo = 1, .hi = LM_MAX_LAYERS},
    {.name = "--width", .type = CLI_INT, .off = offsetof(lm_opts, width), .metavar = "N",
     .help = "model width", .def = "128", .lo = 1, .hi = 4096},
    {.name = "--heads", .type = CLI_INT, .off = offsetof(lm_opts, heads), .metavar = "N",
     .help = "attention heads (divide the width)", .def = "4", .lo = 1, .hi = 4096},
    {.name = "--context", .type = CLI_INT, .off = offsetof(lm_opts, context), .metavar = "N",
     .help = "positions (a word needs its bytes + 1)", .def = "32", .lo = 2,
     .hi = LM_MAX_CONTEXT},
    {.name = "--resume", .type = CLI_PATH, .off = offsetof(lm_opts, resume), .metavar = "CKPT",
     .help = "continue from a checkpoint (OUT.ckpt of a stopped run)"},
    {.name = "--checkpoint-every", .type = CLI_SECONDS, .off = offsetof(lm_opts, every),
     .help = "seconds between checkpoints (OUT.ckpt)", .def = "120", .flo = 1.0, .fhi = 1e9},
    {.name = "--stop-at", .type = CLI_INT, .off = offsetof(lm_opts, stop_at), .metavar = "STEP",
     .help = "stop with a checkpoint after STEP steps (continue with --resume)",
     .unset = "never", .lo = 1, .hi = 100000000},
    {.name = "--eval-words", .type = CLI_INT, .off = offsetof(lm_opts, eval_words),
     .metavar = "N", .help = "validation words per language for the final figure (0: all)",
     .def = "2000", .lo = 0, .hi = 100000000},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(lm_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
    {.name = "--threads", .type = CLI_INT, .off = offsetof(lm_opts, threads), .metavar = "N",
     .help = "CPU threads", .unset = "all cores", .lo = 1, .hi = 1024},
};

static const cli_command LM_TRAIN_CMD = {
    .name = "lm train",
    .synopsis = "--out MODEL.safetensors [options]",
    .about = "Trains a byte-level causal transformer (pre-norm GPT-2 blocks) on words of the\n"
             "background languages, a uniform language then a uniform word of its train\n"
             "split, packed into rows of CONTEXT bytes. Held-out languages (catalan, danish,\n"
             "manx, bulgarian) are refused. Prints bits per byte on the validation split.",
    .opts = LM_TRAIN_OPTS,
    .nopts = CLI_NOPTS(LM_TRAIN_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

static lm_train_cfg lm_cfg(const lm_opts *o, int quiet)
{
    lm_train_cfg c = lm_train_defaults();
    c.source = o->source;
    c.model = (lm_config){o->layers, o->width, o->heads, o->context};
    c.batch = o->batch;
    c.steps = o->steps;
    c.warmup = o->warmup;
    c.lr = (float)o->lr;
    c.weight_decay = (float)o->wd;
    c.seed = o->seed;
    c.progress = !quiet;
    c.resume = o->resume;
    c.checkpoint_every = o->every;
    c.stop_at = o->stop_at == CLI_UNSET_INT ? 0 : o->stop_at;
    c.eval_words = o->eval_words;
    return c;
}

/* a JSON number, or null for NaN (no step run in this process, no word evaluated) */
static json_t *lm_json_num(double x)
{
    return isnan(x) ? json_null() : json_real(x);
}

static int lm_train_report_print(const cli_globals *g, const char *out,
                                 const lm_train_report *r)
{
    if (g->json) {
        json_t *j = json_pack("{s:s,s:b,s:i,s:i,s:I,s:o,s:o,s:I,s:f,s:f}", "out", out,
                              "stopped", r->stopped, "steps", r->steps_done, "languages",
                              r->languages, "params", (json_int_t)r->params, "train_bits_per_byte",
                              lm_json_num(r->train_bits), "validation_bits_per_byte",
                              lm_json_num(r->val_bits),
                              "validation_words", (json_int_t)r->val_words, "seconds",
                              r->seconds, "tokens_per_s", r->tokens_per_s);
        return cli_print_json(CMD, j) ? EXIT_FAILED : EXIT_OK;
    }
    if (r->stopped) {
        fprintf(stderr, "stopped at step %d after %.1f s; continue with --resume %s\n",
                r->steps_done, r->seconds, r->ckpt);
        return EXIT_OK;
    }
    printf("wrote %s in %.1f s (%.0f tokens/s; tokens = bytes predicted)\n", out, r->seconds,
           r->tokens_per_s);
    printf("  %zu parameters, %d languages, %d steps, train %.4f bits/byte\n", r->params,
           r->languages, r->steps_done, r->train_bits);
    printf("  validation %.4f bits/byte on %ld words (%ld longer than the context skipped)\n",
           r->val_bits, r->val_words, r->val_skipped);
    return EXIT_OK;
}

static int cmd_lm_train(cli_globals *g, int argc, char **argv)
{
    lm_opts o;
    int code;
    if (!cli_parse(&LM_TRAIN_CMD, &o, g, argc, argv, &code))
        return code;
    lm_train_cfg cfg = lm_cfg(&o, g->quiet);
    d2_error err = {0};
    if (words_check_background(cfg.source, &err) || lm_config_check(&cfg.model, &err)) {
        cli_error(CMD, "train: %s", err.msg);
        return EXIT_USAGE;
    }
    backend_t *be = NULL;
    lm_train_report rep;
    int rc = backend_create(&be, o.device, o.threads != CLI_UNSET_INT ? o.threads : 0, &err);
    if (!rc)
        rc = lm_train(&cfg, o.out, be, &rep, &err);
    backend_destroy(be);
    if (rc) {
        cli_error(CMD, "train: %s", err.msg);
        return EXIT_FAILED;
    }
    return lm_train_report_print(g, o.out, &rep);
}

typedef struct lm_eval_opts {
    const char *model, *adapter, *source, *device;
    int split, max_words, batch, threads;
} lm_eval_opts;

static const char *const LM_SPLITS[] = {"train", "validation", "test", NULL};

static const cli_option LM_EVAL_OPTS[] = {
    {.name = "--model", .type = CLI_PATH, .off = offsetof(lm_eval_opts, model),
     .metavar = "FILE", .help = "a model of `d2nwg lm train`", .required = 1},
    {.name = "--adapter", .type = CLI_PATH, .off = offsetof(lm_eval_opts, adapter),
     .metavar = "FILE", .help = "a LoRA adapter of `d2nwg lm lora` for this model",
     .unset = "none"},
    {.name = "--source", .type = CLI_STRING, .off = offsetof(lm_eval_opts, source),
     .metavar = "SRC", .help = "words:LANG[,LANG...], words:heldout or words:background",
     .required = 1},
    {.name = "--split", .type = CLI_CHOICE, .off = offsetof(lm_eval_opts, split),
     .metavar = "NAME", .help = "which split of each language", .def = "test",
     .choices = LM_SPLITS},
    {.name = "--max-words", .type = CLI_INT, .off = offsetof(lm_eval_opts, max_words),
     .metavar = "N", .help = "at most N words per language, evenly spaced (0: all)",
     .def = "0", .lo = 0, .hi = 100000000},
    {.name = "--batch", .type = CLI_INT, .off = offsetof(lm_eval_opts, batch), .metavar = "N",
     .help = "rows per forward pass", .def = "64", .lo = 1, .hi = 4096},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(lm_eval_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
    {.name = "--threads", .type = CLI_INT, .off = offsetof(lm_eval_opts, threads),
     .metavar = "N", .help = "CPU threads", .unset = "all cores", .lo = 1, .hi = 1024},
};

static const cli_command LM_EVAL_CMD = {
    .name = "lm eval",
    .synopsis = "--model MODEL.safetensors --source words:LANG [options]",
    .about = "Bits per byte of a language model on a split of word lists: the bits of each\n"
             "byte of every word and its final newline, over those bytes. Words longer than\n"
             "the context are skipped and counted.",
    .opts = LM_EVAL_OPTS,
    .nopts = CLI_NOPTS(LM_EVAL_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

static int lm_eval_print(const cli_globals *g, const lm_eval_opts *o, const lm_eval_result *all,
                         const lm_eval_result *per, char names[][32], int n)
{
    if (g->json) {
        json_t *langs = json_array();
        for (int k = 0; k < n; k++)
            json_array_append_new(langs, json_pack("{s:s,s:f,s:I,s:I,s:I}", "language",
                                                   names[k], "bits_per_byte",
                                                   lm_bits_per_byte(&per[k]), "words",
                                                   (json_int_t)per[k].words, "bytes",
                                                   (json_int_t)per[k].targets, "skipped",
                                                   (json_int_t)per[k].skipped));
        json_t *j = json_pack("{s:s,s:s,s:s,s:f,s:I,s:o}", "model", o->model, "source",
                              o->source, "split", LM_SPLITS[o->split], "bits_per_byte",
                              lm_bits_per_byte(all), "words", (json_int_t)all->words,
                              "languages", langs);
        return cli_print_json(CMD, j) ? EXIT_FAILED : EXIT_OK;
    }
    printf("%-18s %8s %9s %8s %s\n", "language", "words", "bytes", "skipped", "bits/byte");
    for (int k = 0; k < n; k++)
        printf("%-18s %8ld %9ld %8ld %.4f\n", names[k], per[k].words, per[k].targets,
               per[k].skipped, lm_bits_per_byte(&per[k]));
    printf("%-18s %8ld %9ld %8ld %.4f (%s split)\n", "all", all->words, all->targets,
           all->skipped, lm_bits_per_byte(all), LM_SPLITS[o->split]);
    return EXIT_OK;
}

static int cmd_lm_eval(cli_globals *g, int argc, char **argv)
{
    lm_eval_opts o;
    int code, n = 0;
    if (!cli_parse(&LM_EVAL_CMD, &o, g, argc, argv, &code))
        return code;
    d2_error err = {0};
    int idx[WORDS_MAX_LANGS];
    if (words_select(o.source, idx, &n, &err)) {
        cli_error(CMD, "eval: --source: %s", err.msg);
        return EXIT_USAGE;
    }
    backend_t *be = NULL;
    lm_eval_result all, per[WORDS_MAX_LANGS];
    char names[WORDS_MAX_LANGS][32];
    int rc = backend_create(&be, o.device, o.threads != CLI_UNSET_INT ? o.threads : 0, &err);
    if (!rc)
        rc = lm_eval_file(o.model, o.adapter, o.source, o.split, o.max_words, o.batch, be, &all, per,
                          names, &n, &err);
    backend_destroy(be);
    if (rc) {
        cli_error(CMD, "eval: %s", err.msg);
        return EXIT_FAILED;
    }
    return lm_eval_print(g, &o, &all, per, names, n);
}

static void lm_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg lm train --out MODEL.safetensors [options]\n"
                 "       d2nwg lm eval --model MODEL.safetensors --source words:LANG\n"
                 "       d2nwg lm lora --model MODEL.safetensors --source words:LANG "
                 "--out ADAPTER.safetensors\n"
                 "'d2nwg lm SUBCOMMAND --help' lists the options.\n");
}

int cmd_lm(cli_globals *g, int argc, char **argv)
{
    if (argc < 2) {
        lm_usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        lm_usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(sub, "train"))
        return cmd_lm_train(g, argc - 1, argv + 1);
    if (!strcmp(sub, "eval"))
        return cmd_lm_eval(g, argc - 1, argv + 1);
    if (!strcmp(sub, "lora"))
        return cmd_lm_lora(g, argc - 1, argv + 1);
    cli_error(CMD, "unknown subcommand '%s' (train, eval, lora)", sub);
    lm_usage(stderr);
    return EXIT_USAGE;
}
