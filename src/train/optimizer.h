/* Optimizers: Keras's update rules over flat float buffers. */
#ifndef LAMINA_OPTIMIZER_H
#define LAMINA_OPTIMIZER_H

#include "core/core.h"
#include <lamina/train.h>

typedef enum lm_optimizer_kind {
  LM_OPT_SGD,
  LM_OPT_RMSPROP,
  LM_OPT_ADAM,
  LM_OPT_ADAMW,
  LM_OPT_ADAGRAD
} lm_optimizer_kind;

struct lm_optimizer {
  lm_optimizer_kind kind;
  double learning_rate, momentum, rho, epsilon, beta_1, beta_2, weight_decay,
      initial_accumulator_value;
  bool nesterov;
  int64_t iterations; /* updates applied so far (Keras's optimizer.iterations) */
};

LM_INTERNAL const char *lm__optimizer_name(const lm_optimizer *opt); /* "RMSprop", ... */
/* How many float buffers of a weight's size the optimizer keeps per weight. */
LM_INTERNAL int lm__optimizer_n_slots(const lm_optimizer *opt);
/* Fills freshly allocated slots with their initial values (zeros, or Adagrad's
 * initial_accumulator_value). */
LM_INTERNAL void lm__optimizer_init_slots(const lm_optimizer *opt, float **slots, int64_t n);
/* Applies one update to w from g. Uses opt->iterations as the number of updates already
 * applied (Adam's bias correction uses iterations + 1); the caller increments
 * opt->iterations once after updating every weight of the step. */
LM_INTERNAL void lm__optimizer_update(const lm_optimizer *opt, float *w, const float *g,
                                      float **slots, int64_t n);

/* The optimizer state of a compiled model (struct lm_compiled, src/train/train.h): the
 * n_slots buffers of weight w, made at their initial values when fit has not made them yet
 * (saving writes them, loading fills them before training resumes). NULL when memory runs
 * out. */
struct lm_compiled;
struct lm_weight;
LM_INTERNAL float **lm__compiled_slots(struct lm_compiled *c, struct lm_weight *w);

#endif
