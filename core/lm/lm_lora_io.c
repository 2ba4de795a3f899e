/* lm_lora_io.c - adapter files in PEFT's layout (lm_lora.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "lm_io.h"
#include "lm_lora.h"
#include "sha256.h"

int lm_file_sha256(const char *path, char hex[65], d2_error *err)
{
    unsigned char *buf;
    size_t len;
    int rc = d2_read_file(path, &buf, &len, 0, err);
    if (rc)
        return rc;
    sha256_hex(buf, len, hex);
    free(buf);
    return 0;
}

/* PEFT's target_modules as a JSON list */
static void lm_targets_json(int mlp, char *out, size_t cap)
{
    snprintf(out, cap, "%s", mlp ? "[\"q_proj\", \"v_proj\", \"fc_in\", \"fc_out\"]"
                                 : "[\"q_proj\", \"v_proj\"]");
}

static int lm_lora_meta(st_writer *w, const lm_lora_cfg *lc, const char *base_sha, d2_error *err)
{
    char r[32], alpha[32], targets[96];
    snprintf(r, sizeof r, "%d", lc->rank);
    snprintf(alpha, sizeof alpha, "%g", (double)lc->alpha);
    lm_targets_json(lc->mlp, targets, sizeof targets);
    const char *kv[] = {"peft_type", "LORA", "task_type", "CAUSAL_LM", "r", r, "lora_alpha",
                        alpha, "target_modules", targets, "lora_dropout", "0.0", "bias", "none",
                        "fan_in_fan_out", "false", "base_model_name_or_path", base_sha};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i += 2) {
        int rc = st_writer_meta(w, kv[i], kv[i + 1], err);
        if (rc)
            return rc;
    }
    return 0;
}

int lm_lora_save(const lm_model *m, const lm_lora_cfg *lc, const char *base_sha,
                 const char *path, const char *const *kv, int n, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc = lm_lora_meta(&w, lc, base_sha, err);
    for (int i = 0; !rc && i < n; i++)
        rc = st_writer_meta(&w, kv[2 * i], kv[2 * i + 1], err);
    if (!rc)
        rc = lm_write_set(&w, m->lora, err);
    if (!rc)
        rc = st_writer_save(&w, path, err);
    st_writer_free(&w);
    return rc;
}

/* the adapter configuration from a file's metadata */
static int lm_lora_read_cfg(const st_file *f, const char *path, lm_lora_cfg *lc, d2_error *err)
{
    const char *r = st_meta(f, "r"), *alpha = st_meta(f, "lora_alpha");
    const char *targets = st_meta(f, "target_modules"), *type = st_meta(f, "peft_type");
    char want[2][96];
    lm_targets_json(0, want[0], sizeof want[0]);
    lm_targets_json(1, want[1], sizeof want[1]);
    if (!r || !alpha || !targets || !type || strcmp(type, "LORA"))
        return d2_fail(err, D2_EFORMAT, "%s is not a LoRA adapter (peft_type, r, lora_alpha, "
                       "target_modules in __metadata__)", path);
    lc->rank = atoi(r);
    lc->alpha = (float)atof(alpha);
    lc->mlp = !strcmp(targets, want[1]);
    if (!lc->mlp && strcmp(targets, want[0]))
        return d2_fail(err, D2_EFORMAT, "%s: target_modules %s is not %s or %s", path, targets,
                       want[0], want[1]);
    return 0;
}

int lm_load_adapter(lm_model *m, paramset *lora, const char *path, const char *base_sha256,
                    d2_error *err)
{
    st_file f;
    lm_lora_cfg lc;
    int rc = st_load(&f, path, err);
    if (rc)
        return rc;
    const char *base = st_meta(&f, "base_model_name_or_path");
    paramset_init(lora);
    if (!(rc = lm_lora_read_cfg(&f, path, &lc, err)) && base_sha256 &&
        (!base || strcmp(base, base_sha256)))
        rc = d2_fail(err, D2_EINVAL, "%s was trained on base %.12s..., not this model "
                     "(%.12s...)", path, base ? base : "(none)", base_sha256);
    if (!rc && !(rc = lm_attach_lora(m, lora, &lc, err)) &&
        !(rc = paramset_alloc(lora, m->ps->be, 0, err)))
        rc = lm_read_set(&f, path, lora, err);
    st_free(&f);
    return rc;
}
