/* gate.h - the guard against worse-than-baseline weights (internal to core/model).
 *
 * After the diffusion candidates are sampled, the gate fits the two simple
 * baselines (nearest class mean and support-set logistic regression, as heads
 * of the same linear target) and estimates, by cross-validation on the support
 * set, which of the three generalises best:
 *   - with s >= 2 shots in every class, F = min(s, 5) folds; fold f holds out
 *     the samples whose index within their class is f mod F (one or more per
 *     class) and every method is fitted on the rest: the baselines refitted,
 *     the generator re-run on the rest with the same seed and settings, its
 *     best-of-K by support score taken as the product would take it. The held-
 *     out accuracy over all folds decides; diffusion wins ties.
 *   - at 1 shot no sample can be left out without removing its class, so no
 *     method can be measured: the gate keeps the diffusion candidates when they
 *     agree with their support set (mean support accuracy of the K candidates
 *     >= GATE_ONE_SHOT_AGREEMENT) and the support set is not out of the zoo's
 *     distribution, and returns the prototypes otherwise (a bundle may carry
 *     another threshold, above 1 for never, and logreg as the fallback:
 *     gen_config.gate_one_shot / gate_fallback, d2nwg defaults). The threshold was
 *     chosen on background data only: 5-way 1-shot tasks of the zoo's own
 *     (training) class combinations against tasks of glyphs:validation scripts
 *     the generator never saw; tests/unit/test_gate.c checks that it is still
 *     the best of a grid there.
 * The winner is ranked first; the other entries follow (diffusion candidates
 * in their order, then the remaining baseline), each marked with its method.
 *
 * Out-of-distribution: the distance from the support set's condition vector to
 * the nearest zoo entry's, and its percentile among the zoo entries' own
 * nearest-neighbour distances (computed once at load, gen_gate_reference). */
#ifndef D2_GATE_H
#define D2_GATE_H

#include "gen_model.h"

#define GATE_MAX_FOLDS 5
#define GATE_OOD_PERCENTILE 99.0f
#define GATE_ONE_SHOT_AGREEMENT 0.7f

/* Sorted nearest-neighbour distances among zoo embeddings (g->zoo_nn, at most
 * GATE_REF_ENTRIES entries); none when the zoo has fewer than 2 entries. */
#define GATE_REF_ENTRIES 512
int gen_gate_reference(generator *g, d2_error *err);

/* Progress of one part of a job: lo + (hi - lo) * fraction to the caller's
 * callback (gen_progress_span_fn as a gen_request's progress, the span as its ctx). */
typedef struct gen_progress_span {
    void (*fn)(void *ctx, float fraction);
    void *ctx;
    float lo, hi;
} gen_progress_span;
void gen_progress_span_fn(void *span, float fraction);

/* Cross-validation folds the gate will run for a support set of counts[way]
 * rows per class (0 at 1 shot, or when the gate does not apply). */
int gen_gate_folds(const generator *g, const int *counts, int way);

/* The decision when the request turned the gate off: not applied, nothing
 * measured (NaN), the out-of-distribution measure all the same. */
void gen_gate_off(const generator *g, const float *cond, gen_gate *gate);

/* Apply the gate to res (the diffusion candidates, ranked) for the support set
 * feat (feature space, rows sorted by class, counts[c] rows of class c) whose
 * condition vector is cond, res->spec and res->way set. Fills res->gate and
 * appends the baselines (heads of res->spec) to res->ranked when the target
 * is a single linear layer. */
int gen_gate_run(const generator *g, gen_workspace *ws, const gen_request *req,
                 const dataset *feat, const int *counts, const float *cond, gen_result *res,
                 d2_error *err);

/* Mean support accuracy of the diffusion candidates in res (the 1-shot rule). */
float gen_gate_agreement(const gen_result *res);

#endif
