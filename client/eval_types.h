/* eval_types.h - what `d2nwg eval` (cmd_eval.c) measures and how its parts
 * share it: the methods compared, the task source, the settings, the
 * per-task results; eval_run.c fills them, eval_report.c prints them. */
#ifndef D2_CLIENT_EVAL_TYPES_H
#define D2_CLIENT_EVAL_TYPES_H

#include <stdint.h>

#include "common.h"
#include "data.h"
#include "generator.h"

enum {
    M_RANDOM,
    M_PROTO,
    M_LOGREG,
    M_GEN_MEAN,
    M_GEN_SAMPLE,
    M_GEN_BEST,
    M_GATED,
    M_ZOO_NEAREST,
    M_ORACLE,
    M_COUNT
};

#define MAX_SHOTS 8
#define FT_POINTS 5
enum { FT_SUPPORT, FT_LARGER, FT_SETS };
#define FT_LARGER_PER_CLASS 20
extern const int FT_STEPS[FT_POINTS]; /* fine-tuning steps measured: 0, 10, 25, 50, 100 */

/* Where the tasks' data comes from (feature space). */
typedef struct eval_src {
    dataset train, test;
    class_index tci, qci;
    int classes;
    int owned;     /* the data sets are the source's own (else the zoo's) */
    int per_class; /* oracle training samples per class */
} eval_src;

typedef struct eval_opts {
    int tasks, nshots, shots[MAX_SHOTS];
    int way;       /* classes per task */
    int way_given; /* --way given (else the default, which --zoo may lower) */
    int candidates, steps;
    float guidance;
    uint64_t seed;
    int finetune, as_json;
    const char *plot;
} eval_opts;

typedef struct eval_results {
    double *acc[M_COUNT][MAX_SHOTS];      /* [tasks] */
    /* fine-tuning on [FT_SUPPORT] the support set, [FT_LARGER] up to FT_LARGER_PER_CLASS
     * training samples per class of the same classes */
    double *ft_gen[FT_SETS][MAX_SHOTS][FT_POINTS]; /* [tasks] */
    double *ft_rand[FT_SETS][MAX_SHOTS][FT_POINTS];
    double *vae_orig, *vae_rec; /* [tasks] */
    double gen_ms;
    int gen_count;
    int chosen[MAX_SHOTS][GEN_METHODS]; /* how often the gate returned each method */
} eval_results;

/* eval_run.c: every task, every shot count, every method. */
int eval_run(const generator *g, gen_workspace *ws, const eval_src *src, const task *tasks,
             int way, const eval_opts *o, eval_results *r, d2_error *err);

/* eval_report.c */
void eval_print_tables(const eval_opts *o, const eval_results *r, const char *what);
void eval_print_json(const eval_opts *o, const eval_results *r, const char *gen_id,
                     const char *what);
int eval_write_plot(const eval_opts *o, const eval_results *r, const char *path, d2_error *err);

#endif
