/* feature_map_pca.c - PCA feature map: the top-k eigenvectors of the sample
 * covariance (divided by n - 1, as numpy and scikit-learn do).
 *
 * Covariance: float syrk over chunks of centred rows, accumulated in double.
 * Eigenvectors: for small problems a cyclic Jacobi method on the whole
 * covariance; otherwise subspace iteration on m = k + max(k/2, 16) vectors
 * (CholeskyQR2 orthonormalisation, Gram-Schmidt twice as the fallback), with a
 * Rayleigh-Ritz step (Jacobi on the m x m projection) every few iterations,
 * until every kept Ritz pair has a residual below 1e-7 of the top eigenvalue.
 * Everything is deterministic: fixed start vectors, fixed order of work. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "target.h"

#define COV_CHUNK 2048
#define PCA_MAX_ITERS 600
#define PCA_RR_EVERY 4
#define PCA_RESID_TOL 1e-7
#define PCA_START_SEED 0x5043412d53544152ull /* "PCA-STAR" */

/* Cyclic Jacobi: A [n, n] symmetric (destroyed) -> eigenvalues ev [n] and
 * eigenvectors as the rows of V [n, n], sorted by eigenvalue descending. */
static int jacobi_eigen(double *A, int n, double *ev, double *V)
{
    double *tmpv = malloc(sizeof(double) * (size_t)n * n);
    int *ord = malloc(sizeof(int) * (size_t)n);
    if (!tmpv || !ord) {
        free(tmpv);
        free(ord);
        return D2_ENOMEM;
    }
    memset(V, 0, sizeof(double) * (size_t)n * n);
    for (int i = 0; i < n; i++)
        V[(size_t)i * n + i] = 1.0;
    double total = 0.0;
    for (size_t i = 0; i < (size_t)n * n; i++)
        total += A[i] * A[i];
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++)
                off += 2.0 * A[(size_t)p * n + q] * A[(size_t)p * n + q];
        if (off <= 1e-30 * total || off == 0.0)
            break;
        for (int p = 0; p < n - 1; p++) {
            for (int q = p + 1; q < n; q++) {
                double *rp = A + (size_t)p * n, *rq = A + (size_t)q * n;
                double apq = rp[q];
                if (apq == 0.0 || fabs(apq) < 1e-300)
                    continue;
                double app = rp[p], aqq = rq[q];
                /* skip rotations that cannot change the diagonal in double */
                if (fabs(apq) < 1e-18 * (fabs(app) + fabs(aqq)))
                    continue;
                double th = (aqq - app) / (2.0 * apq);
                double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                /* rows p and q: A <- J^T A J applied as row then column update */
                for (int k = 0; k < n; k++) {
                    double xp = rp[k], xq = rq[k];
                    rp[k] = c * xp - s * xq;
                    rq[k] = s * xp + c * xq;
                }
                for (int k = 0; k < n; k++) {
                    double *rk = A + (size_t)k * n;
                    double xp = rk[p], xq = rk[q];
                    rk[p] = c * xp - s * xq;
                    rk[q] = s * xp + c * xq;
                }
                rp[q] = rq[p] = 0.0;
                double *vp = V + (size_t)p * n, *vq = V + (size_t)q * n;
                for (int k = 0; k < n; k++) {
                    double xp = vp[k], xq = vq[k];
                    vp[k] = c * xp - s * xq;
                    vq[k] = s * xp + c * xq;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        ev[i] = A[(size_t)i * n + i];
        ord[i] = i;
    }
    /* insertion sort by eigenvalue descending, index ascending on ties */
    for (int i = 1; i < n; i++) {
        int o = ord[i], j = i;
        while (j > 0 && ev[ord[j - 1]] < ev[o]) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = o;
    }
    double *tmpe = malloc(sizeof(double) * (size_t)n);
    if (!tmpe) {
        free(tmpv);
        free(ord);
        return D2_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        tmpe[i] = ev[ord[i]];
        memcpy(tmpv + (size_t)i * n, V + (size_t)ord[i] * n, sizeof(double) * (size_t)n);
    }
    memcpy(ev, tmpe, sizeof(double) * (size_t)n);
    memcpy(V, tmpv, sizeof(double) * (size_t)n * n);
    free(tmpe);
    free(tmpv);
    free(ord);
    return 0;
}

/* Q [m, D] rows -> orthonormal rows by Gram-Schmidt twice; a row that
 * vanishes is replaced by a unit vector e_j not yet in the span. */
static void orth_cgs2(double *Q, int m, int D, double *r)
{
    int next_e = 0;
    for (int j = 0; j < m; j++) {
        double *qj = Q + (size_t)j * D;
        for (int attempt = 0;; attempt++) {
            double before = cblas_dnrm2(D, qj, 1);
            for (int pass = 0; pass < 2 && j > 0; pass++) {
                // r: [j] = Q[0:j] @ qj; qj -= Q[0:j]^T @ r
                cblas_dgemv(CblasRowMajor, CblasNoTrans, j, D, 1.0, Q, D, qj, 1, 0.0, r, 1);
                cblas_dgemv(CblasRowMajor, CblasTrans, j, D, -1.0, Q, D, r, 1, 1.0, qj, 1);
            }
            double nrm = cblas_dnrm2(D, qj, 1);
            if (nrm > 1e-10 * before && nrm > 1e-300) {
                cblas_dscal(D, 1.0 / nrm, qj, 1);
                break;
            }
            memset(qj, 0, sizeof(double) * (size_t)D);
            qj[next_e++ % D] = 1.0;
            if (attempt > D)
                break; /* cannot happen for m <= D */
        }
    }
}

/* Cholesky G [m, m] = R^T R in place (upper R); 0 when positive definite. */
static int cholesky_upper(double *G, int m)
{
    double maxd = 0.0;
    for (int i = 0; i < m; i++)
        maxd = fmax(maxd, G[(size_t)i * m + i]);
    for (int i = 0; i < m; i++) {
        double *gi = G + (size_t)i * m;
        for (int k = 0; k < i; k++)
            gi[i] -= G[(size_t)k * m + i] * G[(size_t)k * m + i];
        if (!(gi[i] > 1e-13 * maxd))
            return -1;
        gi[i] = sqrt(gi[i]);
        for (int j = i + 1; j < m; j++) {
            for (int k = 0; k < i; k++)
                gi[j] -= G[(size_t)k * m + i] * G[(size_t)k * m + j];
            gi[j] /= gi[i];
        }
    }
    return 0;
}

/* Q [m, D] rows -> orthonormal rows spanning the same space. CholeskyQR2:
 * G = Q Q^T = R^T R, Q <- R^-T Q, twice; Gram-Schmidt when G is singular. */
static void orth_rows(double *Q, int m, int D, double *G, double *r)
{
    for (int pass = 0; pass < 2; pass++) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, D, 1.0, Q, D, 0.0, G, m);
        if (cholesky_upper(G, m)) {
            orth_cgs2(Q, m, D, r);
            return;
        }
        // Q: [m, D] <- R^-T Q, R upper [m, m]
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, m, D, 1.0, G,
                    m, Q, D);
    }
}

/* Top k eigenpairs of C [D, D] (symmetric) by subspace iteration with
 * Rayleigh-Ritz; out: rows of Wk [k, D]. */
static int subspace_eigen(const double *C, int D, int k, int m, double *Wk, d2_error *err)
{
    size_t md = (size_t)m * D, mm = (size_t)m * m;
    double *blk = malloc(sizeof(double) * (3 * md + 3 * mm + (size_t)m + (size_t)D));
    if (!blk)
        return d2_fail(err, D2_ENOMEM, "pca: out of memory for the eigen solver");
    double *Q = blk, *Y = Q + md, *T = Y + md, *H = T + md, *S = H + mm, *G = S + mm;
    double *ev = G + mm, *r = ev + m;
    /* deterministic Gaussian start, in float from the Philox stream */
    float *start = malloc(sizeof(float) * md);
    if (!start) {
        free(blk);
        return d2_fail(err, D2_ENOMEM, "pca: out of memory for the eigen solver");
    }
    rng_fill_normal(start, md, PCA_START_SEED, 0, 0.0f, 1.0f);
    for (size_t i = 0; i < md; i++)
        Q[i] = start[i];
    free(start);
    orth_rows(Q, m, D, G, r);
    int converged = 0;
    for (int it = 1; it <= PCA_MAX_ITERS && !converged; it++) {
        // Y: [m, D] = Q [m, D] @ C [D, D] (C symmetric, so rows of Y = C q_i)
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, m, D, 1.0, C, D, Q, D, 0.0, Y, D);
        if (it % PCA_RR_EVERY != 0 && it != PCA_MAX_ITERS) {
            memcpy(Q, Y, sizeof(double) * md);
            orth_rows(Q, m, D, G, r);
            continue;
        }
        /* Rayleigh-Ritz: H = Q C Q^T, eigenvectors S (rows), Q <- S Q, Y <- S Y */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, D, 1.0, Q, D, Y, D, 0.0, H, m);
        for (int i = 0; i < m; i++)
            for (int j = i + 1; j < m; j++) {
                double a = 0.5 * (H[(size_t)i * m + j] + H[(size_t)j * m + i]);
                H[(size_t)i * m + j] = H[(size_t)j * m + i] = a;
            }
        if (jacobi_eigen(H, m, ev, S)) {
            free(blk);
            return d2_fail(err, D2_ENOMEM, "pca: out of memory for the eigen solver");
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, m, 1.0, S, m, Q, D, 0.0, T, D);
        memcpy(Q, T, sizeof(double) * md);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, m, 1.0, S, m, Y, D, 0.0, T, D);
        /* residuals of the kept pairs: |C q_i - ev_i q_i| */
        double worst = 0.0, scale = fabs(ev[0]) > 0 ? fabs(ev[0]) : 1.0;
        for (int i = 0; i < k; i++) {
            double s2 = 0.0;
            const double *yi = T + (size_t)i * D, *qi = Q + (size_t)i * D;
            for (int j = 0; j < D; j++) {
                double d = yi[j] - ev[i] * qi[j];
                s2 += d * d;
            }
            worst = fmax(worst, sqrt(s2) / scale);
        }
        if (worst <= PCA_RESID_TOL || it == PCA_MAX_ITERS) {
            converged = 1;
            break;
        }
        memcpy(Q, T, sizeof(double) * md);
        orth_rows(Q, m, D, G, r);
    }
    /* even without full convergence the last Ritz vectors are the best
     * estimate (only possible for nearly equal eigenvalues at the cut-off) */
    memcpy(Wk, Q, sizeof(double) * (size_t)k * D);
    free(blk);
    return 0;
}

// x: [n, D] -> mean [D] (double sums), C [D, D] covariance (divided by n - 1)
static int covariance(const dataset *d, float *mean, double *C, d2_error *err)
{
    int n = d->n, D = d->dim;
    double *acc = calloc((size_t)D, sizeof(double));
    int rows = n < COV_CHUNK ? n : COV_CHUNK;
    float *chunk = malloc(sizeof(float) * (size_t)rows * D);
    float *Cf = malloc(sizeof(float) * (size_t)D * D);
    if (!acc || !chunk || !Cf) {
        free(acc);
        free(chunk);
        free(Cf);
        return d2_fail(err, D2_ENOMEM, "pca: out of memory for a %dx%d covariance", D, D);
    }
    for (int i = 0; i < n; i++) {
        const float *xi = d->x + (size_t)i * D;
        for (int j = 0; j < D; j++)
            acc[j] += xi[j];
    }
    for (int j = 0; j < D; j++)
        mean[j] = (float)(acc[j] / n);
    memset(C, 0, sizeof(double) * (size_t)D * D);
    for (int r0 = 0; r0 < n; r0 += rows) {
        int b = n - r0 < rows ? n - r0 : rows;
        for (int i = 0; i < b; i++) {
            const float *xi = d->x + (size_t)(r0 + i) * D;
            float *ci = chunk + (size_t)i * D;
            for (int j = 0; j < D; j++)
                ci[j] = xi[j] - mean[j];
        }
        // Cf: [D, D] (upper) = chunk^T @ chunk, chunk: [b, D]
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, D, b, 1.0f, chunk, D, 0.0f, Cf, D);
        for (int i = 0; i < D; i++)
            for (int j = i; j < D; j++)
                C[(size_t)i * D + j] += Cf[(size_t)i * D + j];
    }
    double inv = 1.0 / (double)(n - 1);
    for (int i = 0; i < D; i++)
        for (int j = i; j < D; j++) {
            double v = C[(size_t)i * D + j] * inv;
            C[(size_t)i * D + j] = C[(size_t)j * D + i] = v;
        }
    free(acc);
    free(chunk);
    free(Cf);
    return 0;
}

int feature_map_fit_pca(feature_map *f, const dataset *d, int k, d2_error *err)
{
    memset(f, 0, sizeof *f);
    if (!d || !d->x || d->n < 2 || d->dim < 1)
        return d2_fail(err, D2_EINVAL, "pca: needs a data set with at least 2 rows");
    int D = d->dim;
    if (k < 1 || k > D)
        return d2_fail(err, D2_EINVAL, "pca: %d components requested from %d features (1..%d)",
                       k, D, D);
    size_t dd = (size_t)D * D;
    double *C = malloc(sizeof(double) * dd);
    double *Wk = malloc(sizeof(double) * (size_t)k * D);
    f->mean = malloc(sizeof(float) * (size_t)D);
    f->W = malloc(sizeof(float) * (size_t)k * D);
    int rc = 0;
    if (!C || !Wk || !f->mean || !f->W) {
        rc = d2_fail(err, D2_ENOMEM, "pca: out of memory");
        goto done;
    }
    if ((rc = covariance(d, f->mean, C, err)))
        goto done;
    int m = k + (k / 2 > 16 ? k / 2 : 16);
    if (m >= D || D <= 64) {
        double *ev = malloc(sizeof(double) * (size_t)D), *V = malloc(sizeof(double) * dd);
        if (!ev || !V || jacobi_eigen(C, D, ev, V)) {
            free(ev);
            free(V);
            rc = d2_fail(err, D2_ENOMEM, "pca: out of memory for the eigen solver");
            goto done;
        }
        memcpy(Wk, V, sizeof(double) * (size_t)k * D);
        free(ev);
        free(V);
    } else if ((rc = subspace_eigen(C, D, k, m, Wk, err))) {
        goto done;
    }
    /* sign: the largest-magnitude entry of each component is positive */
    for (int i = 0; i < k; i++) {
        double *w = Wk + (size_t)i * D;
        int arg = 0;
        for (int j = 1; j < D; j++)
            if (fabs(w[j]) > fabs(w[arg]))
                arg = j;
        double sg = w[arg] < 0 ? -1.0 : 1.0;
        for (int j = 0; j < D; j++)
            f->W[(size_t)i * D + j] = (float)(sg * w[j]);
    }
    f->in_dim = D;
    f->out_dim = k;
done:
    free(C);
    free(Wk);
    if (rc)
        feature_map_free(f);
    return rc;
}
