/* lm_eval.c - bits per byte of a model file on a split of a words source (lm_train.h). */
#include <stdio.h>
#include <string.h>

#include "lm_io.h"
#include "lm_lora.h"
#include "lm_train.h"

int lm_eval_file(const char *model, const char *adapter, const char *source, int split, long max_words, int batch,
                 backend_t *be, lm_eval_result *all, lm_eval_result *per, char names[][32],
                 int *nlang, d2_error *err)
{
    words_source src;
    paramset ps, lora;
    char sha[65];
    lm_model m;
    lm_runner r;
    memset(all, 0, sizeof *all);
    *nlang = 0;
    if (split < 0 || split >= WORDS_NSPLITS)
        return d2_fail(err, D2_EINVAL, "lm eval: bad split %d", split);
    paramset_init(&ps);
    paramset_init(&lora);
    int rc = lm_load(&m, &ps, be, model, err);
    if (!rc && adapter && !(rc = lm_file_sha256(model, sha, err)))
        rc = lm_load_adapter(&m, &lora, adapter, sha, err);
    if (!rc)
        rc = words_source_load(&src, source, NULL, err);
    if (rc) {
        paramset_free(&lora);
        paramset_free(&ps);
        return rc;
    }
    rc = lm_runner_open(&r, be, &m.cfg, batch, adapter ? m.blk[0].q.rank : 0, err);
    for (int k = 0; !rc && k < src.nlang; k++) {
        lm_eval_result one = {0};
        rc = lm_eval_list(&r, &m, &src.lang[k].split[split], max_words, &one, err);
        if (per)
            per[k] = one;
        if (names)
            snprintf(names[k], 32, "%s", src.lang[k].name);
        all->words += one.words;
        all->skipped += one.skipped;
        all->targets += one.targets;
        all->nats += one.nats;
        *nlang = k + 1;
    }
    if (r.b.ids)
        lm_runner_close(&r);
    words_source_free(&src);
    paramset_free(&lora);
    paramset_free(&ps);
    return rc;
}
