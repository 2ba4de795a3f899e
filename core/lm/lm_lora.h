/* lm_lora.h - `d2nwg lm lora`: one LoRA adapter (lm.h) trained on a words source with the
 * base model frozen, and its file in PEFT's layout.
 *
 * Adapter file (safetensors): base_model.model.<module>.lora_A.weight [r, in] and
 * .lora_B.weight [out, r] for every adapted module (transformer.h.N.attn.q_proj,
 * .attn.v_proj, and with --mlp mlp.fc_in, mlp.fc_out); __metadata__ holds PEFT's
 * adapter_config fields as strings: peft_type "LORA", task_type "CAUSAL_LM", r,
 * lora_alpha, target_modules (a JSON list, e.g. ["q_proj", "v_proj"]), lora_dropout "0.0",
 * bias "none", base_model_name_or_path = the sha256 of the base model file; plus
 * d2nwg.source, d2nwg.steps, d2nwg.seed, and the test-split bits per byte of the base and
 * of the adapted model. Batches as lm_train (lm_draw_batch on the source's train split). */
#ifndef D2_LM_LORA_H
#define D2_LM_LORA_H

#include "lm.h"
#include "lm_run.h"

typedef struct lm_lora_train_cfg {
    const char *model, *source;
    lm_lora_cfg lora;
    int batch, steps, warmup;
    float lr, weight_decay;
    uint64_t seed;
    int progress;
    long eval_words; /* test words per language for the figures (0: all) */
} lm_lora_train_cfg;

lm_lora_train_cfg lm_lora_train_defaults(void);

typedef struct lm_lora_report {
    int steps, modules;
    size_t params;
    double train_bits;           /* mean of the last 50 steps */
    double base_bits, lora_bits; /* on the test split */
    long test_words;
    double seconds, tokens_per_s;
    char base_sha256[65];
} lm_lora_report;

int lm_lora_train(const lm_lora_train_cfg *cfg, const char *out, backend_t *be,
                  lm_lora_report *rep, d2_error *err);

/* Attach the adapter of an adapter file to a loaded model: lora gets its tensors (fresh
 * paramset, allocated on the model's backend). Refuses an adapter whose
 * base_model_name_or_path is not base_sha256 (when base_sha256 is not NULL). */
int lm_load_adapter(lm_model *m, paramset *lora, const char *path, const char *base_sha256,
                    d2_error *err);

/* m's adapters (m->lora) in PEFT's layout, with kv[0..2n) extra metadata; atomic */
int lm_lora_save(const lm_model *m, const lm_lora_cfg *lc, const char *base_sha,
                 const char *path, const char *const *kv, int n, d2_error *err);

/* sha256 of a file, in hex */
int lm_file_sha256(const char *path, char hex[65], d2_error *err);

#endif
