/* baseline.h - the few-shot baselines every generated head is compared with,
 * as linear heads in feature space (W [way, F] row-major, b [way]), so they
 * can be scored, gated and written in the same file format as generated heads:
 *   - nearest class mean (prototypes): W_c = mu_c, b_c = -|mu_c|^2 / 2, whose
 *     argmax is the class whose mean is nearest in Euclidean distance;
 *   - L2-regularised multinomial logistic regression fitted to convergence
 *     (as scikit-learn's LogisticRegression, C = 1) on the support set.
 * Labels are 0..way-1; a class with no sample gets a zero row and a bias of
 * -1e30, so it is never predicted. */
#ifndef D2_BASELINE_H
#define D2_BASELINE_H

#include "data.h"

/* Fit the head; 0 or D2_ENOMEM / D2_EINVAL (labels outside 0..way-1). */
int baseline_prototype_head(const dataset *support, int way, float *W, float *b,
                            d2_error *err);
/* Minimise sum CE + 1/(2C) ||W||^2 (b unpenalised) by accelerated gradient
 * descent to a gradient norm of 1e-6 per sample (at most 3000 steps). */
int baseline_logreg_head(const dataset *support, int way, double C, float *W, float *b,
                         d2_error *err);
/* The same with the penalty centred on a head (W0, b0) instead of zero:
 * minimise sum CE + 1/(2C) ||W - W0||^2, starting at (W0, b0): logistic
 * regression whose prior is that head (maximum a posteriori under a Gaussian
 * prior with mean W0). W0 = b0 = NULL is baseline_logreg_head. */
int baseline_logreg_head_prior(const dataset *support, int way, double C, const float *W0,
                               const float *b0, float *W, float *b, d2_error *err);

/* Accuracy of a linear head on a feature-space data set (ties: lowest class). */
float baseline_head_accuracy(const float *W, const float *b, int way, const dataset *q);

/* Fit on the support set and return the query accuracy; NAN on failure. */
float baseline_prototypes(const dataset *support, const dataset *query, int way);
float baseline_logreg(const dataset *support, const dataset *query, int way, double C);

#endif
