/* lbfgs.h - limited-memory BFGS for smooth convex objectives over doubles
 * (the logistic-regression heads of baseline.c): two-loop recursion with the
 * s'y / y'y initial scaling and a backtracking Armijo line search.
 * Deterministic: the same start and objective give the same iterates. */
#ifndef D2_LBFGS_H
#define D2_LBFGS_H

#include <stddef.h>

#include "common.h"

/* f(x) and its gradient g (n values); ctx is the caller's. */
typedef double (*lbfgs_fn)(void *ctx, const double *x, double *g);

typedef struct lbfgs_cfg {
    int memory;        /* pairs kept (m) */
    int max_iter;      /* iterations (each one or more evaluations) */
    double gtol;       /* stop when |g| <= gtol */
} lbfgs_cfg;

typedef struct lbfgs_report {
    int iterations, evaluations;
    double f, gnorm;
} lbfgs_report;

/* Minimise from x (n values, overwritten with the result). */
int lbfgs_minimize(lbfgs_fn fn, void *ctx, double *x, size_t n, const lbfgs_cfg *cfg,
                   lbfgs_report *rep, d2_error *err);

#endif
