/* baseline.h - the few-shot baselines every generated head is compared with:
 * nearest class mean (prototypes) and L2-regularised multinomial logistic
 * regression fitted to convergence (as scikit-learn's LogisticRegression,
 * C = 1), both on the support set's features. */
#ifndef D2_BASELINE_H
#define D2_BASELINE_H

#include "data.h"

/* Query accuracy of the nearest class mean classifier; NAN on failure. */
float baseline_prototypes(const dataset *support, const dataset *query, int way);

/* Fit W [way, F], b [way] minimising sum CE + 1/(2C) ||W||^2 (b unpenalised)
 * by accelerated gradient descent, then return its query accuracy; NAN on
 * failure. */
float baseline_logreg(const dataset *support, const dataset *query, int way, double C);

#endif
