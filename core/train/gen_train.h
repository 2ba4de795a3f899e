/* gen_train.h - training a generator from a zoo (the paper's three stages):
 *   stage 1  weight VAE on the zoo's normalised weights (MSE + beta KL, input
 *            and latent noise augmentation);
 *   align    optional: contrastive (InfoNCE) alignment of dataset-encoder
 *            embeddings with the weight latents, as the paper offers;
 *   stage 2  dataset encoder + denoiser jointly: each example pairs a zoo
 *            entry's latent with a fresh K-shot support set of its task
 *            (K in kmin..kmax), condition drop-out for guidance, EMA weights.
 * Every step draws its data from a stream derived from (seed, stage, step), so
 * a run resumed from a checkpoint reaches the same bundle as an unbroken one,
 * and the same seed and thread count give identical bytes. */
#ifndef D2_GEN_TRAIN_H
#define D2_GEN_TRAIN_H

#include "backend.h"
#include "zoo.h"

/* Data-parallel training over several processes (d2nwg train under mpirun):
 * every process draws the same whole batch from the one seed schedule, runs
 * forward and backward on its own slice of it (process r of W takes rows
 * floor(r B / W) .. floor((r+1) B / W) - 1), and the slices' gradients,
 * weighted by their share of the batch, are summed by allreduce_sum before
 * every process takes the same optimiser step; so the weights stay equal
 * everywhere and equal one process's up to the order of float additions.
 * The alignment stage (InfoNCE couples the batch) runs whole on each process.
 * Only rank 0 writes checkpoints and the bundle. */
typedef struct gen_train_dist {
    int rank, world;
    void *ctx;
    /* sum buf[0..n) over the processes in place, the same sums on every one;
     * 0, or -1 (a message in err) */
    int (*allreduce_sum)(void *ctx, float *buf, size_t n, d2_error *err);
} gen_train_dist;

typedef struct gen_train_cfg {
    uint64_t seed;
    int progress;            /* progress bars on stderr */
    /* model sizes (defaults from gen_config_defaults) */
    int vae_hidden, vae_blocks, tok_latent; /* latent values per neuron token */
    int enc_d, enc_heads, enc_inducing, cond_dim;
    int per_class;           /* one condition per class (gen_model.h) */
    int den_hidden, den_blocks, den_ratio;
    /* stage 1 */
    int vae_steps, vae_batch;
    float vae_lr, vae_beta, in_noise, lat_noise;
    /* alignment (0 steps: skipped) */
    int align_steps;
    float align_lr, align_temp;
    /* stage 2 */
    int steps, tasks_per_step, noise_per_task;
    float lr, p_uncond, ema_decay;
    int kmin, kmax;
    int zoo_emb_shots;       /* support size for the zoo index embeddings */
    /* the query-loss term (gen_train_query.c): weight (0: off) and query
     * samples per class drawn beside each support set */
    float query_loss;
    int query_shots;
    /* checkpoints */
    const char *checkpoint_path; /* NULL: OUT.ckpt */
    double checkpoint_every;     /* seconds */
    int resume;
    /* stop after this many seconds of training (tests of --resume); 0: never */
    double stop_after;
    /* stop after this many optimiser steps of this run, any stage; 0: never */
    int stop_after_steps;
    const gen_train_dist *dist; /* NULL (or world 1): this process alone */
} gen_train_cfg;

gen_train_cfg gen_train_defaults(int quick);

typedef struct gen_train_report {
    float vae_loss, vae_recon_mse;  /* final stage-1 loss and reconstruction MSE of zoo means */
    float align_loss;
    float diffusion_loss;           /* final stage-2 loss (EMA of the per-step loss) */
    int vae_steps_done, align_steps_done, steps_done;
    int stopped;                    /* 1 when stop_after(_steps) interrupted the run */
    double seconds;
} gen_train_report;

int generator_train(const zoo *z, const gen_train_cfg *cfg, const char *out_path,
                    backend_t *be, gen_train_report *rep, d2_error *err);

#endif
