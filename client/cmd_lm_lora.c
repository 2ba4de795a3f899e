/* cmd_lm_lora.c - `d2nwg lm lora`: one LoRA adapter for a base model of `d2nwg lm train`,
 * trained on a words source with the base frozen, written in PEFT's layout
 * (core/lm/lm_lora.h). Any language may be adapted to, held-out ones included: that is
 * what an adapter is for. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "lm_lora.h"

#define CMD "lm"

typedef struct lora_opts {
    const char *model, *source, *out, *device;
    int rank, mlp, steps, batch, warmup, threads, eval_words;
    double alpha, lr;
    uint64_t seed;
} lora_opts;

static const cli_option LORA_OPTS[] = {
    {.name = "--model", .type = CLI_PATH, .off = offsetof(lora_opts, model), .metavar = "FILE",
     .help = "the base model (`d2nwg lm train`), frozen", .required = 1},
    {.name = "--source", .type = CLI_STRING, .off = offsetof(lora_opts, source),
     .metavar = "SRC", .help = "words:LANG[,LANG...] to adapt to (its train split)",
     .required = 1},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(lora_opts, out), .metavar = "FILE",
     .help = "the adapter to write (safetensors, PEFT layout)", .required = 1},
    {.name = "--rank", .type = CLI_INT, .off = offsetof(lora_opts, rank), .metavar = "R",
     .help = "LoRA rank r", .def = "4", .lo = 1, .hi = 256},
    {.name = "--alpha", .type = CLI_FLOAT, .off = offsetof(lora_opts, alpha), .metavar = "X",
     .help = "LoRA alpha (the update is scaled by alpha / r)", .def = "8", .flo = 1e-6,
     .fhi = 1e6},
    {.name = "--mlp", .type = CLI_FLAG, .off = offsetof(lora_opts, mlp),
     .help = "adapt mlp.fc_in and mlp.fc_out too (default: q_proj and v_proj)"},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(lora_opts, steps), .metavar = "N",
     .help = "training steps", .def = "300", .lo = 1, .hi = 100000000},
    {.name = "--batch", .type = CLI_INT, .off = offsetof(lora_opts, batch), .metavar = "N",
     .help = "rows of context bytes per step (words packed)", .def = "16", .lo = 1,
     .hi = 4096},
    {.name = "--lr", .type = CLI_FLOAT, .off = offsetof(lora_opts, lr), .metavar = "X",
     .help = "AdamW peak learning rate (warm-up, cosine decay to 10%)", .def = "0.003",
     .flo = 1e-7, .fhi = 1.0},
    {.name = "--warmup", .type = CLI_INT, .off = offsetof(lora_opts, warmup), .metavar = "N",
     .help = "warm-up steps", .def = "20", .lo = 0, .hi = 100000000},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(lora_opts, seed), .metavar = "S",
     .help = "seed (A's initialisation and batches)", .def = "1"},
    {.name = "--eval-words", .type = CLI_INT, .off = offsetof(lora_opts, eval_words),
     .metavar = "N", .help = "test words per language for the figures (0: all)",
     .def = "2000", .lo = 0, .hi = 100000000},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(lora_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
    {.name = "--threads", .type = CLI_INT, .off = offsetof(lora_opts, threads), .metavar = "N",
     .help = "CPU threads", .unset = "all cores", .lo = 1, .hi = 1024},
};

static const cli_command LORA_CMD = {
    .name = "lm lora",
    .synopsis = "--model BASE.safetensors --source words:LANG --out ADAPTER.safetensors",
    .about = "Trains one LoRA adapter (B A, scaled by alpha / r) on the attention q and v\n"
             "projections of a frozen base model, on a language's train split, and prints\n"
             "the test-split bits per byte of the base and of the adapted model. The file\n"
             "has PEFT's keys and adapter_config fields (base_model_name_or_path: the\n"
             "base's sha256).",
    .opts = LORA_OPTS,
    .nopts = CLI_NOPTS(LORA_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

static int lora_print(const cli_globals *g, const char *out, const lm_lora_report *r)
{
    if (g->json) {
        json_t *j = json_pack("{s:s,s:i,s:i,s:I,s:f,s:f,s:f,s:I,s:f,s:f,s:s}", "out", out,
                              "steps", r->steps, "modules", r->modules, "params",
                              (json_int_t)r->params, "train_bits_per_byte", r->train_bits,
                              "base_test_bits_per_byte", r->base_bits, "test_bits_per_byte",
                              r->lora_bits, "test_words", (json_int_t)r->test_words, "seconds",
                              r->seconds, "tokens_per_s", r->tokens_per_s, "base_sha256",
                              r->base_sha256);
        return cli_print_json(CMD, j) ? EXIT_FAILED : EXIT_OK;
    }
    printf("wrote %s in %.1f s (%.0f tokens/s): %d modules, %zu parameters, %d steps\n", out,
           r->seconds, r->tokens_per_s, r->modules, r->params, r->steps);
    printf("  test split (%ld words): base %.4f bits/byte, with the adapter %.4f\n",
           r->test_words, r->base_bits, r->lora_bits);
    return EXIT_OK;
}

int cmd_lm_lora(cli_globals *g, int argc, char **argv)
{
    lora_opts o;
    int code, n;
    if (!cli_parse(&LORA_CMD, &o, g, argc, argv, &code))
        return code;
    lm_lora_train_cfg cfg = lm_lora_train_defaults();
    cfg.model = o.model;
    cfg.source = o.source;
    cfg.lora = (lm_lora_cfg){o.rank, (float)o.alpha, o.mlp};
    cfg.steps = o.steps;
    cfg.batch = o.batch;
    cfg.lr = (float)o.lr;
    cfg.warmup = o.warmup;
    cfg.seed = o.seed;
    cfg.progress = !g->quiet;
    cfg.eval_words = o.eval_words;
    d2_error err = {0};
    int idx[WORDS_MAX_LANGS];
    if (words_select(o.source, idx, &n, &err)) {
        cli_error(CMD, "lora: --source: %s", err.msg);
        return EXIT_USAGE;
    }
    backend_t *be = NULL;
    lm_lora_report rep;
    int rc = backend_create(&be, o.device, o.threads != CLI_UNSET_INT ? o.threads : 0, &err);
    if (!rc)
        rc = lm_lora_train(&cfg, o.out, be, &rep, &err);
    backend_destroy(be);
    if (rc) {
        cli_error(CMD, "lora: %s", err.msg);
        return EXIT_FAILED;
    }
    return lora_print(g, o.out, &rep);
}
