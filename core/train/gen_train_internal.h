/* gen_train_internal.h - the trainer state shared by the training files:
 * gen_train.c (set-up, the pipeline, zoo index, provenance), gen_train_ckpt.c
 * (checkpoints), gen_train_vae.c (stage 1 and the latents) and
 * gen_train_diffusion.c (alignment and stage 2). Internal to core/. */
#ifndef D2_GEN_TRAIN_INTERNAL_H
#define D2_GEN_TRAIN_INTERNAL_H

#include "gen_model.h"
#include "gen_train.h"
#include "rng.h"


typedef struct trainer {
    const zoo *z;
    const gen_train_cfg *cfg;
    generator g;
    backend_t *be;
    arena ar;
    int n, P, L, F, N, C;
    float *wn;   /* [n, P] normalised zoo weights (host) */
    float *Z;    /* [n, L] standardised latents (host) */
    paramset align_ps;
    linear align_proj; /* latent -> cond space */
    float *dev_scalar;
    /* progress of the stages (for checkpoints) */
    int stage;   /* 1 vae, 2 align, 3 diffusion, 4 done */
    int step;
    float vae_loss_ema, align_loss_ema, diff_loss_ema;
    float vae_recon_mse; /* of the zoo through the finished VAE (set with the latents) */
    double last_ckpt, started;
    int steps_this_run; /* optimiser steps taken since this run started */
    float *reduce_buf;  /* host copy of a gradient for the all-reduce (several processes) */
    size_t reduce_cap;
    char ckpt_path[1024];
} trainer;

/* device <-> host helpers (errors name the direction) */
float gtrain_read_scalar(trainer *t);
int gtrain_upload(trainer *t, float *dst, const float *src, size_t n, d2_error *err);
int gtrain_download(trainer *t, float *dst, const float *src, size_t n, d2_error *err);
/* K-shot support of zoo entry e, standardised, laid out [N][K][F] into X (host);
 * classes with fewer than K rows are filled by repeating rows. */
int gtrain_fill_support(trainer *t, int e, int K, rng *r, float *X, d2_error *err);
/* Classes of zoo entry e (N, or fewer in an any-way zoo). */
int gtrain_entry_way(const trainer *t, int e);
/* 1 when cfg->stop_after seconds or cfg->stop_after_steps steps have passed;
 * counts one step per call (call it once before each step) */
int gtrain_should_stop(trainer *t);

/* data parallelism (gen_train_dist): this process's rows b0 .. b0 + *bn - 1 of
 * a batch of B (all of them alone); 1 when this process writes files */
void gtrain_slice(const trainer *t, int B, int *b0, int *bn);
int gtrain_writes(const trainer *t);
/* With several processes: scale ps's gradient and the step's nstats losses
 * (means over this process's share) by the share of the batch (bn / B) and
 * sum them over the processes, giving the whole batch's. Alone: nothing. */
int gtrain_reduce_grads(trainer *t, paramset *ps, int bn, int B, float *stats, int nstats,
                        d2_error *err);

/* stage 2's query-loss term (gen_train_query.c; cfg->query_loss > 0) */
typedef struct gtrain_queries {
    int Q;        /* queries per class (cfg->query_shots) */
    int per_task; /* N * Q slots per task */
    float *x;     /* [B, per_task, F] raw features (the head's input) */
    int *y;       /* [B, per_task] class of each */
    int *n;       /* [B] queries each task has */
} gtrain_queries;
/* The rows of one step: this process's tasks b0 .. b0 + bn - 1 of B, M noise
 * draws each, row m bn + b; ts [M B] and drop, ways [B] over the whole batch;
 * zt [M bn, L] (host) this process's noised latents. */
typedef struct gtrain_qrows {
    int b0, bn, B, M;
    const int *ts;
    const unsigned char *drop;
    const int *ways;
    const float *zt;
} gtrain_qrows;
/* 0 when the target allows the term (a head of one linear layer) */
int gtrain_query_check(const trainer *t, d2_error *err);
int gtrain_queries_alloc(gtrain_queries *q, const trainer *t, int B, d2_error *err);
void gtrain_queries_free(gtrain_queries *q);
/* gtrain_fill_support's support set of entry e into X, drawn with Q more rows
 * per class, which become task b's queries in q (classes with one row: none) */
int gtrain_fill_task(trainer *t, int e, int K, rng *r, float *X, gtrain_queries *q, int b,
                     d2_error *err);
/* Adds the term's gradient to deps (device [M bn, L]) from the denoiser's
 * eps_hat (device, same shape); *qloss: mean query cross-entropy of the rows
 * that count. Leaves the VAE's gradients zero. */
int gtrain_query_grad(trainer *t, const gtrain_queries *q, const gtrain_qrows *rows,
                      const float *eps_hat, float *deps, float *qloss, d2_error *err);
/* The same on any generator (tests): lambda the weight; deps NULL: the value
 * alone; *objective (may be NULL): lambda / R sum_r w_r CE_r, what deps is
 * the gradient of. The scratch comes from ar (the caller resets it). */
typedef struct gtrain_qctx {
    generator *g;
    backend_t *be;
    arena *ar;
    float lambda;
} gtrain_qctx;
int gtrain_query_term(const gtrain_qctx *cx, const gtrain_queries *q, const gtrain_qrows *rows,
                      const float *eps_hat, float *deps, float *qloss, double *objective,
                      d2_error *err);

/* checkpoints: the whole training state, so a resumed run gives the same bytes */
int gtrain_checkpoint_save(trainer *t, d2_error *err);
int gtrain_checkpoint_load(trainer *t, d2_error *err);
/* save when cfg->checkpoint_every seconds have passed since the last one */
int gtrain_maybe_checkpoint(trainer *t, d2_error *err);

/* the stages; each continues from t->step and stops early when asked */
int gtrain_stage_vae(trainer *t, gen_train_report *rep, d2_error *err);
/* encode the zoo to standardised mean latents (t->Z, z_mean, z_std) */
int gtrain_compute_latents(trainer *t, gen_train_report *rep, d2_error *err);
int gtrain_stage_align(trainer *t, gen_train_report *rep, d2_error *err);
int gtrain_stage_diffusion(trainer *t, gen_train_report *rep, d2_error *err);

#endif
