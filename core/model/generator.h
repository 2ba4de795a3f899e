/* generator.h - the generator bundle (weight VAE + dataset encoder + latent
 * denoiser + feature map + normalisation statistics + zoo index) and the one
 * call that turns a support set into ranked candidate weights.
 *
 * A generator is loaded once (weights resident on its backend) and is then
 * read-only: several workers may call generator_generate at once, each with
 * its own gen_workspace. */
#ifndef D2_GENERATOR_H
#define D2_GENERATOR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "data.h"
#include "target.h"

typedef struct generator generator;
typedef struct gen_workspace gen_workspace;

typedef enum gen_sampler { GEN_SAMPLER_DDIM = 0, GEN_SAMPLER_DDPM = 1 } gen_sampler;

/* How refinement (gen_request.refine) sets the prior's width C for a sample:
 * adaptive: c scaled by the sample's misfit (gen_refine_strength); fixed: c. */
typedef enum gen_refine_rule { GEN_REFINE_ADAPTIVE = 0, GEN_REFINE_FIXED = 1 } gen_refine_rule;
const char *gen_refine_rule_name(gen_refine_rule r); /* "adaptive", "fixed" */
int gen_refine_rule_parse(const char *s, gen_refine_rule *out); /* 0, or -1 unknown */

/* What produced a head: the diffusion generator, or one of the baselines the
 * gate (gate.h) compares it with. */
typedef enum gen_method {
    GEN_METHOD_DIFFUSION = 0,
    GEN_METHOD_PROTOTYPES = 1, /* nearest class mean as a linear head */
    GEN_METHOD_LOGREG = 2,     /* support-set logistic regression (L2, C = 1) */
    GEN_METHODS = 3
} gen_method;
const char *gen_method_name(gen_method m); /* "diffusion", "prototypes", "logreg" */
/* "prototypes" or "logreg" -> the method; -1 for anything else. */
int gen_method_parse_baseline(const char *s, gen_method *out);

typedef struct gen_info {
    char id[65];             /* sha256 of the bundle file */
    const char *path;
    const char *config_json;     /* __metadata__ "config": spec, dims, schedule, defaults */
    const char *provenance_json; /* __metadata__ "provenance": zoo fingerprint, seeds, losses */
    const target_spec *spec;
    int input_dim;           /* dimension of raw samples (feature map input) */
    int feature_dim;         /* dimension of embeddings (feature map output) */
    int max_way;             /* most classes a request may have */
    int min_way;
    int params;              /* generated (trainable) parameters per candidate */
    int zoo_size;
    char zoo_fingerprint[65];
    int max_steps;           /* T of the diffusion schedule: the most sampler steps */
    /* sampler defaults from the bundle */
    int default_candidates, default_steps;
    float default_guidance;
    gen_sampler default_sampler;
    gen_refine_rule default_refine_rule; /* the bundle's refinement (generator_with_defaults) */
    float default_refine_c;
    float default_gate_one_shot;         /* the gate at 1 shot (gate.h) */
    gen_method default_gate_fallback;
} gen_info;

int generator_load(generator **out, const char *path, backend_t *be, d2_error *err);
void generator_free(generator *g);
const gen_info *generator_info(const generator *g);

/* Per-worker scratch memory for generation. */
int gen_workspace_create(gen_workspace **out, const generator *g, backend_t *be,
                         int max_candidates, d2_error *err);
void gen_workspace_free(gen_workspace *ws);

typedef struct gen_request {
    const dataset *support; /* labels 0..N-1: row i of the head is label i */
    int embeddings;         /* 1: support->x already in feature space (feature_dim) */
    int candidates;         /* K >= 1 */
    int steps;              /* sampler steps (DDIM) */
    gen_sampler sampler;
    float guidance;         /* classifier-free guidance scale; 1 = conditional only */
    uint64_t seed;
    /* optional: set by another thread, read between sampler steps; nonzero ->
     * D2_ECANCELLED */
    const atomic_int *cancel;
    /* 1: compare the candidates with the baselines and return the best (gate.h) */
    int gate;
    /* 1: each decoded sample becomes the centre of the prior of logistic
     * regression on the support set (GEN_REFINE_C; one-linear-layer heads) */
    int refine;
    /* optional: progress in [0, 1] */
    void (*progress)(void *ctx, float fraction);
    void *progress_ctx;
} gen_request;

typedef struct gen_candidate {
    gen_method method;
    int index;            /* position in sampling order (0..K-1); -1 for a baseline */
    float support_acc;    /* accuracy on the support set */
    float support_loss;   /* mean cross-entropy on the support set */
    float norm;           /* L2 norm of the generated parameters */
    float zoo_distance;   /* L2 distance to the nearest zoo entry (memorisation check) */
    int zoo_nearest;      /* index of that entry */
    float *theta;         /* [params] generated trainable parameters (host, owned) */
    float *sample;        /* [params] the decoded sample before refinement (owned);
                             NULL when the request did not refine */
    float sample_acc;     /* support accuracy of the sample (= support_acc unrefined) */
} gen_candidate;

/* Refinement (gen_request.refine): a decoded sample theta0 = (W0, b0) is the
 * mean of a Gaussian prior, and the returned head maximises the posterior on
 * the support set: min sum CE + 1/(2C) |W - W0|^2 (baseline.h). C = 1 is the
 * support-set logistic regression baseline's own strength, so the two differ
 * only in the prior's centre (the generated head instead of zero); chosen on
 * glyphs:validation (README "Results"). */
#define GEN_REFINE_C 1.0
/* The prior's width for a sample that classifies sample_acc of its support
 * set: GEN_REFINE_C at chance (1 / way) or below, shrinking linearly to 0 (the
 * sample kept as it is) for a sample that fits every support row. */
double gen_refine_strength(float sample_acc, int way);
/* The width this generator's refinement gives a sample: its rule and c
 * (gen_info.default_refine_*; adaptive c = GEN_REFINE_C is gen_refine_strength). */
double generator_refine_c(const generator *g, float sample_acc, int way);
/* What refinement does to the heads of this generator: 1 when the target
 * network is one linear layer, else 0 (req.refine is then ignored). */
int generator_can_refine(const generator *g);

/* The gate's decision (gate.h). */
typedef struct gen_gate {
    int applied;              /* 0: off, or not applicable (reason says why) */
    gen_method chosen;        /* what ranked[0] is */
    int folds;                /* cross-validation folds; 0 at 1 shot */
    int heldout;              /* held-out predictions per method over the folds */
    float cv_acc[GEN_METHODS]; /* held-out accuracy per method; NAN when not measured */
    char reason[192];
    float ood_distance;       /* support condition to the nearest zoo entry's; NAN: no zoo */
    float ood_percentile;     /* 0..100 among the zoo's own nearest-neighbour distances */
    int ood;                  /* ood_percentile above GATE_OOD_PERCENTILE */
} gen_gate;

typedef struct gen_result {
    int count;             /* K, plus the 2 baselines when the gate applied */
    gen_candidate *ranked; /* best first: the gate's choice, then the diffusion candidates
                              by support accuracy desc, loss asc, index; then the rest */
    int way;               /* classes of the support set: rows of each head */
    target_spec spec;      /* the heads' network: the generator's spec, its head narrowed
                              to `way` rows for an any-way generator (min_way < max_way) */
    gen_gate gate;
    char dataset_fingerprint[65];
    double seconds;
} gen_result;

/* A support set's fit to a generator, on its shape alone: rows of input_dim
 * values (feature_dim with embeddings) and min_way..max_way classes. It needs
 * only the info, so a caller can check a stored data set before reading it.
 * On refusal err says why and *part (may be NULL) which part is wrong. */
typedef enum gen_support_part { GEN_SUPPORT_ROWS = 0, GEN_SUPPORT_LABELS = 1 } gen_support_part;
int gen_info_check_support(const gen_info *gi, int embeddings, int dim, int classes,
                           gen_support_part *part, d2_error *err);
/* The whole rule for a support set, the one every path goes through
 * (generator_generate and generator_retrieve call it): not empty, labels
 * 0..N-1 each present, finite values, and gen_info_check_support. */
int generator_check_support(const generator *g, const dataset *support, int embeddings,
                            d2_error *err);

int generator_generate(const generator *g, gen_workspace *ws, const gen_request *req,
                       gen_result *out, d2_error *err);
void gen_result_free(gen_result *r);

/* The complete target network for candidate `rank` as safetensors bytes (the
 * frozen feature map as layer 0, then the generated layers, PyTorch
 * nn.Sequential names), with __metadata__ repeating the lineage: spec,
 * generator id, dataset fingerprint, seed, sampler settings, support scores.
 * Deterministic: the same inputs give the same bytes (no clock, no host name). */
int generator_checkpoint_bytes(const generator *g, const gen_request *req,
                               const gen_result *res, int rank, unsigned char **bytes,
                               size_t *len, d2_error *err);

/* Nearest zoo checkpoints to a dataset by dataset embedding (model retrieval). */
typedef struct gen_retrieval {
    int zoo_index;
    float distance;
    float support_acc;     /* that zoo head's accuracy on the given support set */
    int classes[D2_MAX_WAY]; /* the zoo task's classes in order (way entries) */
    int way;
} gen_retrieval;
int generator_retrieve(const generator *g, gen_workspace *ws, const dataset *support,
                       int embeddings, int k, gen_retrieval *hits, int *nhits, d2_error *err);

/* The sampler and refinement defaults a bundle carries (gen_info.default_*). */
typedef struct gen_defaults {
    int candidates, steps;
    float guidance;
    gen_sampler sampler;
    gen_refine_rule refine_rule;
    float refine_c;
    float gate_one_shot;      /* 0..2; above 1: never keep the diffusion head at 1 shot */
    gen_method gate_fallback; /* GEN_METHOD_PROTOTYPES or GEN_METHOD_LOGREG */
} gen_defaults;
/* Write g as a new bundle at path (atomically) with other defaults: the same
 * weights, statistics and zoo index; the provenance records the bundle it came
 * from and the defaults it changed. Settings chosen on validation data after
 * training land here. */
int generator_save_with_defaults(const generator *g, const gen_defaults *d, const char *path,
                                 d2_error *err);

/* The feature map (raw samples -> features) of the generator. */
const feature_map *generator_feature_map(const generator *g);
/* Copy zoo entry `index`'s parameters from the bundle's zoo index. */
int generator_zoo_theta(const generator *g, int index, float *theta, d2_error *err);

/* Pass heads through the weight VAE (encode to the mean latent, decode):
 * theta, out: [n, params] host. Measures what the VAE keeps of a head. */
int generator_vae_roundtrip(const generator *g, gen_workspace *ws, const float *theta, int n,
                            float *out, d2_error *err);

#endif
