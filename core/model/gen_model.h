/* gen_model.h - the generator's parts as one struct, shared by loading and
 * generation (generator.c), saving (gen_bundle.c) and training (gen_train.c).
 * Internal to core/: server and client use generator.h. */
#ifndef D2_GEN_MODEL_H
#define D2_GEN_MODEL_H

#include "diffusion.h"
#include "denoiser.h"
#include "generator.h"
#include "resmlp.h"
#include "setenc.h"
#include "wtokens.h"

typedef struct gen_config {
    char spec[256];
    int P;          /* generated parameters per head */
    int input_dim;  /* raw sample dimension (feature map input) */
    int feat_dim;   /* feature dimension (feature map output) */
    int way;        /* rows of the generated head: the most classes a request has */
    int min_way;    /* the fewest (< way: an any-way generator, setenc.h's absent token) */
    /* weight VAE: one latent of tok_latent values per neuron token (wtokens.h);
     * latent = tokens * tok_latent is the diffusion's vector */
    int vae_hidden, vae_blocks, tok_latent, latent;
    float vae_beta;
    /* dataset encoder; per_class: one condition per class and a denoiser that
     * generates each row of the head (one neuron token) from its class's
     * condition (needs a head of one linear layer of `way` rows) */
    int enc_d, enc_heads, enc_inducing, cond_dim, per_class;
    /* denoiser */
    int den_hidden, den_blocks, den_ratio, temb_dim;
    /* diffusion */
    int T;
    float beta_start, beta_end;
    /* sampler defaults */
    int candidates, steps;
    float guidance;
    gen_sampler sampler;
    gen_refine_rule refine_rule; /* how refinement sets the prior's width (generator.h) */
    float refine_c;
    /* the gate at 1 shot (gate.h): keep the diffusion candidates when they agree with
     * their support set at least this much (above 1: never), else return the fallback */
    float gate_one_shot;
    gen_method gate_fallback;
} gen_config;

/* Floats of the condition gen_encode_* writes: the task's embedding
 * [cond_dim] (what the zoo index and the gate compare), then with per_class
 * the per-class conditions [way, cond_dim] the denoiser reads. */
static inline int gen_cond_len(const gen_config *c)
{
    return c->per_class ? (c->way + 1) * c->cond_dim : c->cond_dim;
}

/* emb [cond_dim] = the mean of the way per-class conditions class_cond [way, cond_dim]. */
void gen_class_cond_mean(const gen_config *c, const float *class_cond, float *emb);

struct generator {
    gen_config cfg;
    gen_info info;
    target_spec spec;
    feature_map fmap;
    feature_map_dev fmap_dev; /* fmap resident on be (set by generator_load) */
    backend_t *be;
    wtok tok;          /* parameters <-> neuron tokens */
    paramset vae_ps;   /* weight VAE, per token: */
    resmlp vae_enc;    /* token (len + layer one-hot) -> 2 tok_latent (mu, logvar) */
    resmlp vae_dec;    /* tok_latent + layer one-hot -> token (len) */
    paramset net_ps;   /* encoder + denoiser (EMA weights in a bundle) */
    setenc enc;
    denoiser den;
    diffusion_schedule sched;
    /* host-side statistics */
    float *w_mean, *w_std; /* [P] weight normalisation */
    float *z_mean, *z_std; /* [L] latent standardisation */
    float *f_mean, *f_std; /* [F] encoder input standardisation */
    /* zoo index for retrieval and the memorisation check */
    int zoo_n;
    float *zoo_theta;      /* [zoo_n, P] */
    float *zoo_theta_dev;  /* the same on be (set by generator_load) */
    float *zoo_sqnorm;     /* [zoo_n] |theta|^2 of each entry (nearest-entry search) */
    float *zoo_emb;        /* [zoo_n, cond_dim] */
    int32_t *zoo_classes;  /* [zoo_n, way] */
    float *zoo_nn;         /* [zoo_nn_n] sorted nearest-neighbour distances among zoo_emb */
    int zoo_nn_n;
    char *config_json, *provenance_json, *path;
};

struct gen_workspace {
    backend_t *be;
    arena ar;
    int max_candidates;
};

/* Defaults for a target of P parameters, features F, way N. */
gen_config gen_config_defaults(int P, int input_dim, int feat_dim, int way, const char *spec);
char *gen_config_to_json(const gen_config *c); /* malloc'd */
int gen_config_from_json(gen_config *c, const char *json, d2_error *err);

/* Register every module's parameters and allocate them on be (seeded init). */
int gen_model_init(generator *g, const gen_config *cfg, backend_t *be, uint64_t seed,
                   d2_error *err);
void gen_model_free(generator *g);

/* Host buffers of the statistics and zoo index (allocated by gen_model_init). */
int gen_model_alloc_index(generator *g, int zoo_n, d2_error *err);

/* Save the bundle: VAE weights, encoder + denoiser weights (ps->ema when
 * use_ema, else ps->w), statistics, feature map, zoo index, metadata. */
int gen_bundle_save(const generator *g, const char *path, int use_ema, d2_error *err);

/* These run their ops on `be`, which must share memory with the backend the
 * generator was loaded on (the same host, or the same GPU): a backend is used
 * by one thread at a time, so each worker passes its own. */

/* The conditioning vector of a support set in feature space (not yet
 * standardised): counts[N] rows per class, rows sorted by class. cond: host
 * [gen_cond_len], its first cond_dim values the embedding the zoo index holds. */
int gen_encode_support(const generator *g, backend_t *be, arena *ar, const float *feat,
                       const int *counts, int N, float *cond, d2_error *err);

/* The same from rows already standardised with f_mean/f_std (the trainer's
 * support sets are). */
int gen_encode_standardized(const generator *g, backend_t *be, arena *ar, const float *x,
                            const int *counts, int N, float *cond, d2_error *err);

/* Decode standardised latents z [n, L] (host) into theta [n, P] (host). */
int gen_decode_latents(const generator *g, backend_t *be, arena *ar, const float *z, int n,
                       float *theta, d2_error *err);

/* Heads scored on a feature-space support set on a backend: the target
 * network's forward, the cross-entropy and the accuracy (gen_score.c). */
typedef struct gen_scorer {
    backend_t *be;
    const target_spec *spec;
    const dataset *feat;   /* the support set (host), kept for its labels */
    int n, way, rows;      /* rows: the forward's chunk */
    float *x;              /* device [n, feat_dim] */
    int32_t *labels;       /* device [n] */
    float *act;            /* device: every layer's output for a chunk */
    float *logits;         /* device [n, way] */
    float *loss;           /* device [1] */
    float *theta;          /* device [P]: the head being scored */
    float *host_logits;    /* [n, way] */
} gen_scorer;
int gen_scorer_init(gen_scorer *sc, backend_t *be, const target_spec *s, const dataset *feat,
                    d2_error *err);
/* theta: host [P]; acc and mean cross-entropy as target_eval gives them. */
int gen_scorer_run(gen_scorer *sc, const float *theta, float *acc, float *loss, d2_error *err);
void gen_scorer_free(gen_scorer *sc);

/* Nearest zoo entry (index, L2 distance) of K heads theta [K, hs->numel]
 * (host) of the heads' spec hs (the generator's, or narrowed to fewer classes:
 * compared as the generator's heads with the other rows zero, as an any-way
 * zoo keeps them), with the GEMM on be; index -1 and dist NaN when the bundle
 * has no zoo index. */
int gen_nearest_zoo(const generator *g, backend_t *be, const target_spec *hs, const float *theta,
                    int K, int *index, float *dist, d2_error *err);
/* Classes of zoo entry `index`: the way, or in an any-way zoo those before
 * the first -1 of its zoo_classes row. */
int gen_zoo_entry_way(const generator *g, int index);
/* The spec of a head of `way` rows: the generator's own, or narrowed. */
int gen_head_spec(const generator *g, int way, target_spec *hs, d2_error *err);

#endif
